//! `SMTP_URL` (velib-alerts): the mail server, its security and its credentials.
//!
//! Checked: the password never shows in `Display`, `Debug` or an error; plaintext is chosen
//! for loopback hosts only; and the URL as displayed (password shown as `***`) parses back to
//! the same server, security, port and user.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::net::IpAddr;
use velib_alerts::smtp_url::{Security, SmtpUrl};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The same URL with a password only this target uses, wherever it can hold one: it must
    // never show (unless the rest of the URL already spells it).
    if let Ok(mut with_secret) = url::Url::parse(text.trim())
        && with_secret.set_password(Some(MARKER)).is_ok()
    {
        let mut without = with_secret.clone();
        let _ = without.set_password(None);
        if !without.as_str().contains(MARKER) {
            check_hidden(with_secret.as_str());
        }
    }
    match text.parse::<SmtpUrl>() {
        Ok(url) => {
            let shown = url.to_string();
            let debug = format!("{url:?}");
            assert!(!debug.contains("SecretString"), "{debug}");
            assert!(debug.contains(&format!("{shown:?}")), "{debug}");
            if url.security() == Security::Plaintext {
                let host = url.host();
                assert!(
                    host.eq_ignore_ascii_case("localhost")
                        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()),
                    "plaintext to {host}"
                );
            }
            let again: SmtpUrl = shown
                .parse()
                .unwrap_or_else(|e| panic!("{shown} (shown for {text:?}) does not parse: {e}"));
            assert_eq!(
                (
                    again.security(),
                    again.host(),
                    again.port(),
                    again.username()
                ),
                (url.security(), url.host(), url.port(), url.username()),
                "{text:?} shown as {shown}"
            );
            assert_eq!(again.has_password(), url.has_password(), "{shown}");
            assert_eq!(again.to_string(), shown);
        }
        Err(err) => assert!(!err.to_string().is_empty()),
    }
});

const MARKER: &str = "pw-Zq7Xw9Kp3";

/// `text` holds the password [`MARKER`]: it must show nowhere.
fn check_hidden(text: &str) {
    match text.parse::<SmtpUrl>() {
        Ok(url) => {
            let (shown, debug) = (url.to_string(), format!("{url:?}"));
            assert!(
                !shown.contains(MARKER) && !debug.contains(MARKER),
                "{shown} {debug}"
            );
            assert!(url.has_password(), "{shown}");
        }
        Err(err) => {
            assert!(!err.to_string().contains(MARKER), "{err}");
            assert!(!format!("{err:?}").contains(MARKER), "{err:?}");
        }
    }
}
