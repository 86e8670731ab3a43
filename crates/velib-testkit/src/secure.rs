//! Secured endpoints for tests: a throwaway certificate authority, a TLS-terminating proxy in
//! front of a plaintext broker, and tansu brokers started with extra flags (for example
//! `--authentication`) and a chosen advertised address.
//!
//! Kafka clients follow the addresses the broker advertises, so a proxy only works when the
//! broker advertises the proxy's address: [`SecuredTansu::tls`] starts tansu that way.

use crate::tansu::{TansuOptions, TansuProcess};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The environment variable through which `cargo xtask test` hands the tansu binary to the
/// tests that start brokers of their own.
pub const TANSU_BIN_ENV: &str = "VELIB_TANSU_BIN";

/// A certificate authority made for one test, and a server certificate it signed for
/// `localhost` and `127.0.0.1`. Its files live in a temporary directory removed on drop.
#[derive(Debug)]
pub struct TestCa {
    dir: PathBuf,
    ca_pem: String,
    server_chain: Vec<CertificateDer<'static>>,
    server_key: Vec<u8>,
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
        TestCa {
            dir,
            ca_pem,
            server_chain: vec![server.der().clone(), ca.der().clone()],
            server_key: server_key.serialize_der(),
        }
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

    fn server_config(&self) -> rustls::ServerConfig {
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            self.server_chain.clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone())),
        )
        .unwrap()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TLS-terminating proxy on 127.0.0.1: each TLS connection is forwarded, decrypted, to
/// `upstream`. It runs on its own thread and runtime, so blocking test code cannot starve it;
/// it stops when dropped.
#[derive(Debug)]
pub struct TlsProxy {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TlsProxy {
    /// Serves TLS with `ca`'s server certificate on `listener`, forwarding to `upstream`.
    pub fn start(listener: TcpListener, upstream: SocketAddr, ca: &TestCa) -> TlsProxy {
        let addr = listener.local_addr().unwrap();
        listener.set_nonblocking(true).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(ca.server_config()));
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let (socket, _) = tokio::select! {
                        _ = &mut stopped => break,
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                    };
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        // A client that does not speak TLS (or distrusts the certificate) ends
                        // here: the connection is closed, as a TLS listener does.
                        let Ok(mut tls) = acceptor.accept(socket).await else {
                            return;
                        };
                        let Ok(mut plain) = tokio::net::TcpStream::connect(upstream).await else {
                            return;
                        };
                        let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                    });
                }
            });
        });
        TlsProxy {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for TlsProxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A tansu broker of a test's own, started from the binary `cargo xtask test` names in
/// [`TANSU_BIN_ENV`]; stopped when dropped.
#[derive(Debug)]
pub struct SecuredTansu {
    // Dropped first: the proxy stops before the broker behind it.
    _proxy: Option<TlsProxy>,
    broker: TansuProcess,
    bootstrap: String,
}

impl SecuredTansu {
    /// tansu behind a [`TlsProxy`]: clients reach it (and its advertised address) through
    /// TLS with `ca`'s certificate only.
    pub fn tls(ca: &TestCa) -> SecuredTansu {
        let proxy_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let proxy_addr = proxy_listener.local_addr().unwrap();
        let broker = start(&TansuOptions {
            advertised: Some(proxy_addr),
            ..TansuOptions::default()
        });
        let upstream = broker.bootstrap().parse().unwrap();
        SecuredTansu {
            _proxy: Some(TlsProxy::start(proxy_listener, upstream, ca)),
            broker,
            bootstrap: proxy_addr.to_string(),
        }
    }

    /// tansu started with `--authentication`: it requires SASL from every client.
    pub fn authenticating() -> SecuredTansu {
        let broker = start(&TansuOptions {
            extra: &["--authentication"],
            ..TansuOptions::default()
        });
        SecuredTansu {
            _proxy: None,
            bootstrap: broker.bootstrap().to_owned(),
            broker,
        }
    }

    /// The address clients bootstrap from (the proxy's, for [`SecuredTansu::tls`]).
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    /// tansu's log file.
    pub fn log(&self) -> &Path {
        self.broker.log_path()
    }
}

fn start(options: &TansuOptions<'_>) -> TansuProcess {
    let bin = std::env::var_os(TANSU_BIN_ENV).unwrap_or_else(|| {
        panic!(
            "{TANSU_BIN_ENV} is not set: this test starts tansu brokers of its own. Run \
             `cargo xtask test`, or set {TANSU_BIN_ENV} to a tansu 0.6.0 binary"
        )
    });
    TansuProcess::start(Path::new(&bin), options).unwrap_or_else(|e| panic!("{e}"))
}
