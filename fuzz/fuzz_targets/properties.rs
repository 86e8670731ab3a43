//! Kafka client properties files (`--command-config`, Java's `java.util.Properties` text), read
//! through `PropertiesFile::load` from a scratch file, as the binaries read them.
//!
//! Checked: only a file that is not UTF-8 fails to read, and a syntax error points at a line of
//! the file; every entry has a key; the entries written back the way Java's
//! `Properties.store` writes them (what Kafka's tools produce) read back the same; and no
//! secret value shows in `Debug` or in the errors of the librdkafka translation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::LazyLock;
use velib_fuzz::java_properties_store;
use velib_kafka::properties::{PropertiesError, PropertiesFile, is_secret};

/// One scratch file per fuzzing process (libFuzzer's `-jobs` run several), on a RAM disk when
/// there is one.
static SCRATCH: LazyLock<PathBuf> = LazyLock::new(|| {
    let shm = PathBuf::from("/dev/shm");
    let dir = if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("velib-fuzz-properties-{}", std::process::id()))
});

fn load(bytes: &[u8]) -> Result<PropertiesFile, PropertiesError> {
    std::fs::write(&*SCRATCH, bytes).expect("write the scratch properties file");
    PropertiesFile::load(&SCRATCH)
}

fuzz_target!(|data: &[u8]| {
    let file = match load(data) {
        Ok(file) => file,
        Err(PropertiesError::Read { .. }) => {
            assert!(
                std::str::from_utf8(data).is_err(),
                "a UTF-8 file could not be read"
            );
            return;
        }
        Err(PropertiesError::Syntax { line, .. }) => {
            let text = std::str::from_utf8(data).expect("a syntax error in a non-UTF-8 file");
            assert!(
                line >= 1 && line <= text.lines().count(),
                "line {line} of {text:?}"
            );
            return;
        }
        Err(other) => panic!("load gave an error it never gives: {other:?}"),
    };
    assert!(file.entries.iter().all(|(key, _)| !key.is_empty()));

    let written = java_properties_store(&file.entries);
    let again = load(written.as_bytes()).unwrap_or_else(|e| {
        panic!("entries written as Java writes them are refused ({e}): {written:?}")
    });
    assert_eq!(again.entries, file.entries, "{written:?}");

    // Secret values that can be told apart from the rest of what is shown: long enough, not
    // part of another key or value, and holding a digit, which no fixed wording of the errors
    // has (`amLoginModule` is a fine password and also part of "PlainLoginModule").
    let others: Vec<&str> = file
        .entries
        .iter()
        .filter(|(k, _)| !is_secret(k))
        .flat_map(|(k, v)| [k.as_str(), v.as_str()])
        .chain(file.entries.iter().map(|(k, _)| k.as_str()))
        .collect();
    let secrets: Vec<&str> = file
        .entries
        .iter()
        .filter(|(k, v)| is_secret(k) && v.chars().count() >= 8 && !v.contains("${"))
        .map(|(_, v)| v.as_str())
        .filter(|v| v.bytes().any(|b| b.is_ascii_digit()))
        .filter(|v| !others.iter().any(|o| o.contains(v)))
        .collect();
    // `Debug` shows each value quoted: a secret would show as its own quoted string.
    let debug = format!("{file:?}");
    let translated = file.librdkafka_entries().err().map(|e| e.to_string());
    for secret in secrets {
        let quoted = format!("{secret:?}");
        assert!(!debug.contains(&quoted), "Debug shows a secret: {debug}");
        if let Some(err) = &translated {
            assert!(!err.contains(secret), "an error shows a secret: {err}");
        }
    }
});
