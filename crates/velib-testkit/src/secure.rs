//! Secured endpoints for tests: a throwaway certificate authority whose server certificate an
//! Apache Kafka `SSL` listener serves (see [`crate::kafka::KafkaOptions::tls_keystore_pem`]),
//! and the secured listeners `cargo xtask test` hands to the tests.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};

/// The environment variable through which `cargo xtask test` hands the tests the address of
/// its Apache Kafka node's `SASL_PLAINTEXT` listener (SCRAM-SHA-512).
pub const SASL_BOOTSTRAP_ENV: &str = "VELIB_KAFKA_SASL_BOOTSTRAP";

/// The environment variable naming the password of [`crate::kafka::TEST_SCRAM_USER`] on the
/// `SASL_PLAINTEXT` listener.
pub const SCRAM_PASSWORD_ENV: &str = "VELIB_KAFKA_SCRAM_PASSWORD";

/// The environment variable holding the address of the node's `SSL` listener.
pub const TLS_BOOTSTRAP_ENV: &str = "VELIB_KAFKA_TLS_BOOTSTRAP";

/// The environment variable naming the PEM file of the CA that signed the `SSL` listener's
/// certificate.
pub const TLS_CA_ENV: &str = "VELIB_KAFKA_TLS_CA";

/// The secured listeners of the Apache Kafka node `cargo xtask test` starts.
#[derive(Clone)]
pub struct SecuredListeners {
    /// `SASL_PLAINTEXT` with SCRAM-SHA-512, user [`crate::kafka::TEST_SCRAM_USER`].
    pub sasl_bootstrap: String,
    /// The user's password (a throwaway made for the run).
    pub scram_password: String,
    /// `SSL`, its certificate signed by [`tls_ca`](SecuredListeners::tls_ca).
    pub tls_bootstrap: String,
    /// The CA certificate, PEM, as a file (for `ssl.ca.location`).
    pub tls_ca: PathBuf,
}

impl std::fmt::Debug for SecuredListeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecuredListeners")
            .field("sasl_bootstrap", &self.sasl_bootstrap)
            .field("scram_password", &"<redacted>")
            .field("tls_bootstrap", &self.tls_bootstrap)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl SecuredListeners {
    /// The listeners named in the environment by `cargo xtask test`.
    ///
    /// # Panics
    ///
    /// When a variable is missing, saying how to run the test.
    pub fn from_env() -> SecuredListeners {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!(
                    "{name} is not set: this test needs the secured listeners of the Apache \
                     Kafka node `cargo xtask test` starts; run it through `cargo xtask test`"
                )
            })
        };
        SecuredListeners {
            sasl_bootstrap: var(SASL_BOOTSTRAP_ENV),
            scram_password: var(SCRAM_PASSWORD_ENV),
            tls_bootstrap: var(TLS_BOOTSTRAP_ENV),
            tls_ca: PathBuf::from(var(TLS_CA_ENV)),
        }
    }
}

/// A certificate authority made for one test run, and a server certificate it signed for
/// `localhost` and `127.0.0.1`. Its files live in a temporary directory removed on drop.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    ca_pem: String,
}

impl TestCa {
    /// Generates a CA and a server certificate (ECDSA P-256, valid from now on).
    pub fn generate(name: &str) -> TestCa {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("velib test CA {name}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let server_key = KeyPair::generate().unwrap();
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server = params.signed_by(&server_key, &ca).unwrap();

        let dir = std::env::temp_dir().join(crate::unique_name("velib-ca"));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_pem = ca.pem();
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        // Kafka's PEM key store: the PKCS#8 key (unencrypted, so no `ssl.key.password`), then
        // the chain from the server certificate up.
        let keystore = format!("{}{}{}", server_key.serialize_pem(), server.pem(), ca_pem);
        std::fs::write(dir.join("server-keystore.pem"), keystore).unwrap();
        TestCa { dir, ca_pem }
    }

    /// The server's key and certificate chain, PEM, as a file (for an Apache Kafka listener's
    /// `ssl.keystore.location` with `ssl.keystore.type=PEM`).
    pub fn server_keystore_file(&self) -> PathBuf {
        self.dir.join("server-keystore.pem")
    }

    /// The CA certificate, PEM, as a file (for `ssl.ca.location`).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA certificate, PEM.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A directory removed with this CA, for a test's other files (properties files…).
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
