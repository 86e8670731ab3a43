//! One v1 station record, as the monitor and the alerts consumer read it from Kafka.
//!
//! Two readers: serde (`Station::from_json`) and the borrowed reader (`StationView::from_json`,
//! whose hand-written fast path is `velib_model`'s `scan`). Their contract (see the agreement
//! tests in `crates/velib-model/src/tests.rs`): they accept and refuse exactly the same records,
//! with the same values (coordinates to the bit) and the same error; and whenever the fast path
//! answers, serde alone on the view type gives the same answer. An accepted station must also
//! survive a write (`to_json`, what the producer publishes) and a read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use velib_fuzz::{assert_reads_back, bits};
use velib_model::{Station, StationView};

fuzz_target!(|data: &[u8]| {
    let owned = Station::from_json(data);
    let view = StationView::from_json(data);
    let by_serde = serde_json::from_slice::<StationView<'_>>(data);
    let text = String::from_utf8_lossy(data);
    match (&owned, &view) {
        (Ok(station), Ok(view)) => {
            let from_view = view.to_station();
            assert_eq!(&from_view, station, "{text}");
            assert_eq!(bits(&from_view), bits(station), "{text}");
            assert_eq!(&station.view(), view, "{text}");
            assert_eq!(view.key(), station.key(), "{text}");
            assert_eq!(view.is_empty(), station.is_empty(), "{text}");
            // The fast path may only answer what serde answers.
            let serde_view = by_serde.as_ref().unwrap_or_else(|e| {
                panic!("StationView accepted what serde refuses ({e}): {text}")
            });
            assert_eq!(&serde_view.to_station(), station, "{text}");
            assert_eq!(bits(&serde_view.to_station()), bits(station), "{text}");
            assert_reads_back(station);
            // The key the producer writes is the key written without allocating.
            let mut key = String::new();
            station.write_key(&mut key);
            assert_eq!(key, station.key().as_str(), "{text}");
        }
        (Err(a), Err(b)) => {
            assert_eq!(a, b, "{text}");
            assert!(
                by_serde.is_err(),
                "serde reads what both readers refuse: {text}"
            );
            assert!(!a.reason.is_empty(), "{text}");
        }
        _ => panic!(
            "the station readers disagree on {text}: Station {owned:?}, StationView {view:?}"
        ),
    }
});
