//! `SMTP_URL`: the mail server, its transport security and its credentials, in one string.
//!
//! | URL | security | default port |
//! |---|---|---|
//! | `smtps://host` | implicit TLS (TLS from the first byte) | 465 |
//! | `smtp://host` | STARTTLS, required: the connection fails rather than send in clear | 587 |
//! | `smtp://localhost`, `smtp://127.0.0.1`, `smtp://[::1]` | plaintext, for a local sink | 25 |
//!
//! Plaintext is only ever chosen for a loopback host, where nothing crosses a network.
//!
//! Credentials come from the URL's userinfo (`smtps://user:pass@host`, percent-encoded) or,
//! for whatever the URL leaves out, from `SMTP_USERNAME` and `SMTP_PASSWORD` (passed in by the
//! binary through [`SmtpUrl::with_credentials`]). Prefer `SMTP_PASSWORD`: a password in the URL
//! needs percent-encoding and ends up wherever the URL is copied.
//!
//! The password is held in a [`SecretString`]; [`SmtpUrl`]'s `Debug` and `Display`, and every
//! error of this module, show the URL with the password replaced by `***`.

use crate::mail::SmtpMailer;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, Tokio1Executor};
use percent_encoding::percent_decode_str;
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

/// How the connection to the mail server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// No TLS: only for loopback hosts.
    Plaintext,
    /// Plain connection upgraded with STARTTLS, which the server must offer.
    StartTls,
    /// TLS from the first byte (`smtps://`, usually port 465).
    ImplicitTls,
}

/// A parsed `SMTP_URL`. See the [module docs](self).
///
/// ```
/// use velib_alerts::smtp_url::{Security, SmtpUrl};
///
/// let url: SmtpUrl = "smtps://alerts%40example.com:hunter2@mail.example.com".parse()?;
/// assert_eq!(url.security(), Security::ImplicitTls);
/// assert_eq!(url.port(), 465);
/// assert_eq!(url.username(), Some("alerts@example.com"));
/// assert_eq!(url.to_string(), "smtps://alerts%40example.com:***@mail.example.com:465");
/// assert!(!format!("{url:?}").contains("hunter2"));
/// # Ok::<(), velib_alerts::smtp_url::SmtpUrlError>(())
/// ```
#[derive(Clone)]
pub struct SmtpUrl {
    security: Security,
    host: String,
    port: u16,
    username: Option<String>,
    password: Option<SecretString>,
}

/// An `SMTP_URL` that cannot be used. Never contains the password.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SmtpUrlError {
    /// Not a URL at all.
    #[error(
        "SMTP_URL is not a valid URL ({0}); expected smtps://USER@HOST:465, smtp://HOST:587 or smtp://127.0.0.1:1025"
    )]
    Syntax(String),
    /// A scheme other than `smtp` or `smtps`.
    #[error(
        "SMTP_URL scheme {0:?} is not supported: use smtps:// (implicit TLS) or smtp:// (STARTTLS, plaintext on loopback only)"
    )]
    Scheme(String),
    /// No host.
    #[error("SMTP_URL has no host: expected for example smtps://mail.example.com")]
    NoHost,
    /// A path or query, which would be silently ignored otherwise.
    #[error("SMTP_URL {0} has a path or query, which velib-alerts does not support")]
    Extra(String),
    /// Percent-encoded userinfo that is not UTF-8.
    #[error("SMTP_URL {0}: the user name or password is not valid percent-encoded UTF-8")]
    Userinfo(String),
    /// A password without a user name.
    #[error(
        "SMTP_URL {0}: a password is set (SMTP_PASSWORD or the URL) but no user name: set SMTP_USERNAME or put it in the URL"
    )]
    PasswordWithoutUser(String),
    /// lettre refused the TLS setup (for example, no usable certificate verifier).
    #[error("cannot set up TLS for {url}: {message}")]
    Tls {
        /// The redacted URL.
        url: String,
        /// lettre's error.
        message: String,
    },
}

impl SmtpUrl {
    /// Fills the user name and password the URL does not give (from `SMTP_USERNAME` and
    /// `SMTP_PASSWORD`). The URL's own userinfo wins.
    pub fn with_credentials(
        mut self,
        username: Option<String>,
        password: Option<SecretString>,
    ) -> SmtpUrl {
        if self.username.is_none() {
            self.username = username.filter(|u| !u.is_empty());
        }
        if self.password.is_none() {
            self.password = password.filter(|p| !p.expose_secret().is_empty());
        }
        self
    }

    /// The transport security chosen by the URL.
    pub fn security(&self) -> Security {
        self.security
    }

    /// The server's host name or address.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The user name, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// Whether a password is set.
    pub fn has_password(&self) -> bool {
        self.password.is_some()
    }

    /// A [`SmtpMailer`] for this server, giving up a mail after `timeout` (see its docs), its
    /// logs naming this URL without the password.
    ///
    /// # Errors
    ///
    /// As [`SmtpUrl::transport`].
    pub fn mailer(&self, timeout: Duration) -> Result<SmtpMailer, SmtpUrlError> {
        Ok(SmtpMailer::new(
            self.transport(timeout)?,
            self.to_string(),
            timeout,
        ))
    }

    /// A lettre transport for this server, its TCP connection timing out after `timeout`.
    /// (lettre's async transport bounds nothing else: [`SmtpUrl::mailer`] bounds whole sends.)
    ///
    /// # Errors
    ///
    /// A password without a user name; a TLS setup lettre refuses.
    pub fn transport(
        &self,
        timeout: Duration,
    ) -> Result<AsyncSmtpTransport<Tokio1Executor>, SmtpUrlError> {
        type T = AsyncSmtpTransport<Tokio1Executor>;
        let tls_error = |e: lettre::transport::smtp::Error| SmtpUrlError::Tls {
            url: self.to_string(),
            message: e.to_string(),
        };
        let builder = match self.security {
            Security::Plaintext => T::builder_dangerous(&self.host),
            Security::StartTls => T::starttls_relay(&self.host).map_err(tls_error)?,
            Security::ImplicitTls => T::relay(&self.host).map_err(tls_error)?,
        };
        let mut builder = builder.port(self.port).timeout(Some(timeout));
        match (&self.username, &self.password) {
            (Some(user), password) => {
                let password = password
                    .as_ref()
                    .map(|p| p.expose_secret().to_owned())
                    .unwrap_or_default();
                builder = builder.credentials(Credentials::new(user.clone(), password));
            }
            (None, Some(_)) => return Err(SmtpUrlError::PasswordWithoutUser(self.to_string())),
            (None, None) => {}
        }
        Ok(builder.build())
    }
}

impl std::str::FromStr for SmtpUrl {
    type Err = SmtpUrlError;

    fn from_str(s: &str) -> Result<SmtpUrl, SmtpUrlError> {
        // `url::Url`'s Debug shows the password: it must not outlive this function.
        let url = url::Url::parse(s.trim()).map_err(|e| SmtpUrlError::Syntax(e.to_string()))?;
        let host = match url.host() {
            Some(url::Host::Domain(d)) if !d.is_empty() => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            _ => return Err(SmtpUrlError::NoHost),
        };
        let loopback = host.eq_ignore_ascii_case("localhost")
            || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        let (security, default_port) = match url.scheme() {
            "smtps" => (Security::ImplicitTls, 465),
            "smtp" if loopback => (Security::Plaintext, 25),
            "smtp" => (Security::StartTls, 587),
            other => return Err(SmtpUrlError::Scheme(other.to_owned())),
        };
        let decode = |s: &str| {
            percent_decode_str(s)
                .decode_utf8()
                .map(|c| c.into_owned())
                .ok()
        };
        let username = if url.username().is_empty() {
            None
        } else {
            Some(decode(url.username()))
        };
        let password = url.password().map(decode);
        let mut parsed = SmtpUrl {
            security,
            host,
            port: url.port().unwrap_or(default_port),
            username: None,
            password: None,
        };
        if username.as_ref().is_some_and(Option::is_none)
            || password.as_ref().is_some_and(Option::is_none)
        {
            return Err(SmtpUrlError::Userinfo(parsed.to_string()));
        }
        parsed.username = username.flatten();
        parsed.password = password.flatten().map(SecretString::from);
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err(SmtpUrlError::Extra(parsed.to_string()));
        }
        Ok(parsed)
    }
}

/// The URL with the password replaced by `***`.
impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.security {
            Security::ImplicitTls => "smtps",
            Security::StartTls | Security::Plaintext => "smtp",
        };
        write!(f, "{scheme}://")?;
        if let Some(user) = &self.username {
            let user = percent_encoding::utf8_percent_encode(user, USERINFO);
            write!(f, "{user}")?;
            if self.password.is_some() {
                f.write_str(":***")?;
            }
            f.write_str("@")?;
        } else if self.password.is_some() {
            f.write_str(":***@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpUrl")
            .field("url", &self.to_string())
            .field("security", &self.security)
            .finish()
    }
}

/// What must be percent-encoded in a URL's userinfo (RFC 3986 §3.2.1).
const USERINFO: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> SmtpUrl {
        s.parse().unwrap()
    }

    #[test]
    fn security_follows_scheme_and_host() {
        let u = parse("smtp://127.0.0.1:1025");
        assert_eq!((u.security(), u.port()), (Security::Plaintext, 1025));
        assert_eq!(parse("smtp://localhost").security(), Security::Plaintext);
        assert_eq!(parse("smtp://[::1]:2525").security(), Security::Plaintext);
        assert_eq!(parse("smtp://[::1]:2525").host(), "::1");
        let u = parse("smtp://mail.example.com");
        assert_eq!((u.security(), u.port()), (Security::StartTls, 587));
        // A LAN address is not loopback: STARTTLS is still required.
        assert_eq!(
            parse("smtp://192.168.1.2:25").security(),
            Security::StartTls
        );
        let u = parse("smtps://mail.example.com");
        assert_eq!((u.security(), u.port()), (Security::ImplicitTls, 465));
    }

    #[test]
    fn bad_urls_are_refused_with_advice() {
        for (url, needle) in [
            ("mail.example.com", "not a valid URL"),
            ("http://mail.example.com", "\"http\""),
            ("smtp://host/path", "path or query"),
            ("smtp://host?tls=none", "path or query"),
        ] {
            let err = url.parse::<SmtpUrl>().unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }

    #[test]
    fn password_never_shows() {
        let url = "smtps://bob:s3cr%3At@mail.example.com:465/x";
        let err = url.parse::<SmtpUrl>().unwrap_err().to_string();
        assert!(!err.contains("s3cr"), "{err}");
        let u = parse("smtps://bob:s3cr%3At@mail.example.com");
        assert_eq!(u.password.as_ref().unwrap().expose_secret(), "s3cr:t");
        for shown in [u.to_string(), format!("{u:?}")] {
            assert!(!shown.contains("s3cr"), "{shown}");
            assert!(shown.contains("bob:***@"), "{shown}");
        }
        let err = parse("smtps://mail.example.com")
            .with_credentials(None, Some(SecretString::from("hunter2")))
            .transport(Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SMTP_USERNAME") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn url_credentials_win_over_environment() {
        let u = parse("smtps://url-user@mail.example.com")
            .with_credentials(Some("env-user".into()), Some(SecretString::from("pw")));
        assert_eq!(u.username(), Some("url-user"));
        assert!(u.has_password());
        let u = parse("smtps://mail.example.com").with_credentials(Some("env-user".into()), None);
        assert_eq!(u.username(), Some("env-user"));
        assert!(!u.has_password());
    }

    #[test]
    fn transports_build_for_every_security() {
        for url in [
            "smtp://127.0.0.1:1025",
            "smtp://mail.example.com",
            "smtps://u:p@mail.example.com",
        ] {
            parse(url).transport(Duration::from_secs(5)).unwrap();
        }
    }
}
