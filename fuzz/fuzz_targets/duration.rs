//! The duration flags of every binary (`--interval 30s`, `1.5h`, bare seconds from the
//! environment): `parse_duration` and `parse_positive_duration`.
//!
//! Checked: never a panic; never more than `MAX_DURATION`; the positive parser refuses zero
//! only, and gives the same value otherwise; surrounding whitespace does not matter; and a
//! duration written back in whole seconds or whole milliseconds reads back the same, with
//! larger units never reading shorter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;
use velib_kafka::duration::{MAX_DURATION, parse_duration, parse_positive_duration};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = parse_duration(text);
    let positive = parse_positive_duration(text);
    assert_eq!(parse_duration(&format!(" \t{text} ")), parsed, "{text:?}");
    match &parsed {
        Ok(d) => {
            assert!(*d <= MAX_DURATION, "{text:?} gave {d:?}");
            match &positive {
                Ok(p) => assert!(p == d && !d.is_zero(), "{text:?}"),
                Err(_) => assert!(d.is_zero(), "{text:?} refused as not positive"),
            }
            if d.subsec_nanos() == 0 {
                let secs = d.as_secs();
                assert_eq!(
                    parse_duration(&format!("{secs}s")).as_ref(),
                    Ok(d),
                    "{text:?}"
                );
                assert_eq!(
                    parse_duration(&format!("{secs}")).as_ref(),
                    Ok(d),
                    "{text:?}"
                );
            }
            // Durations are f64 seconds: milliseconds are exact to the nanosecond up to about
            // eleven days (beyond, one f64 step is more than half a nanosecond).
            if d.subsec_nanos() % 1_000_000 == 0 && *d <= Duration::from_secs(1_000_000) {
                let ms = d.as_millis();
                assert_eq!(
                    parse_duration(&format!("{ms}ms")).as_ref(),
                    Ok(d),
                    "{text:?}"
                );
            }
        }
        Err(message) => {
            assert!(positive.is_err(), "{text:?}");
            assert!(!message.is_empty());
        }
    }
    // The same number in a larger unit is never shorter.
    let number = text.trim();
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let mut previous = Duration::ZERO;
        for unit in ["ms", "s", "m", "h", "d"] {
            match parse_duration(&format!("{number}{unit}")) {
                Ok(d) => {
                    assert!(
                        d >= previous,
                        "{number}{unit} is shorter than the unit before"
                    );
                    previous = d;
                }
                Err(_) => break,
            }
        }
    }
});
