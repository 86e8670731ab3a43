//! Station keys (`contract:id`), the Kafka message key of every station record: `FromStr`,
//! `StationKey::new` and `write_text` (the writers), serde, and `StationId::from_text`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use velib_model::{StationId, StationKey};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<StationKey>() {
        Ok(key) => {
            assert_eq!(key.as_str(), text);
            assert_eq!(key.to_string(), text);
            assert!(
                !key.contract().is_empty() && !key.contract().contains(':'),
                "{text:?}"
            );
            assert!(!key.id().is_empty(), "{text:?}");
            assert_eq!(format!("{}:{}", key.contract(), key.id()), text);
            assert_eq!(StationKey::new(key.contract(), key.id()), key);
            let json = serde_json::to_string(&key).unwrap();
            assert_eq!(serde_json::from_str::<StationKey>(&json).unwrap(), key);
        }
        Err(err) => {
            assert_eq!(err.input, text);
            let refused = match text.split_once(':') {
                None => true,
                Some((contract, id)) => contract.is_empty() || id.is_empty(),
            };
            assert!(refused, "a well-formed key was refused: {text:?}");
            assert!(
                serde_json::from_str::<StationKey>(&serde_json::to_string(text).unwrap()).is_err()
            );
        }
    }

    // Any contract and id make a key that splits back into them (a `:` in the contract becomes
    // `_`) and, both being non-empty, parses back to itself.
    let mut at = usize::from(data.first().copied().unwrap_or(0)) % (text.len() + 1);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let (contract, id) = text.split_at(at);
    let key = StationKey::new(contract, id);
    assert_eq!(key.contract(), contract.replace(':', "_"));
    assert_eq!(key.id(), id);
    let mut written = String::from("left over");
    StationKey::write_text(contract, id, &mut written);
    assert_eq!(written, key.as_str());
    if !contract.is_empty() && !id.is_empty() {
        assert_eq!(key.as_str().parse::<StationKey>().as_ref(), Ok(&key));
    }

    // A station id read from text is written back as the same text.
    assert_eq!(StationId::from_text(text).to_string(), text);
});
