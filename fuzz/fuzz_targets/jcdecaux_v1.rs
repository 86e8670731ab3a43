//! The JCDecaux v1 station array (`/vls/v1/stations`), read as a poll reads it: the document
//! taken apart at the byte level when serde refuses it whole (`velib_source::readers::split`),
//! then each record with `Station::from_value`.
//!
//! Checked: the split agrees with serde (see `velib_fuzz::assert_split_agrees`); a record's
//! parsed value reads the same as its JSON text (`from_value` against `from_json`, the reader
//! the monitor uses); and every accepted station reads back unchanged where it is published.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use velib_fuzz::{assert_reads_back, assert_split_agrees, bits};
use velib_model::Station;
use velib_source::contract_key;
use velib_source::readers::split;

fuzz_target!(|data: &[u8]| {
    let Ok(split) = split(data, &[]) else {
        assert!(serde_json::from_slice::<Value>(data).is_err());
        return;
    };
    assert_split_agrees(data, &split, &[]);
    for record in split.items.iter().flatten() {
        let from_value = Station::from_value(record);
        let text = serde_json::to_vec(record).unwrap();
        let from_json = Station::from_json(&text);
        match (&from_value, &from_json) {
            (Ok(a), Ok(b)) => {
                assert_eq!(a, b, "{record}");
                assert_eq!(bits(a), bits(b), "{record}");
            }
            (Err(a), Err(b)) => assert_eq!(a.field, b.field, "{record}"),
            _ => panic!(
                "from_value and from_json disagree on {record}: {from_value:?} {from_json:?}"
            ),
        }
        if let Ok(mut station) = from_value {
            station.contract_name = contract_key(&station.contract_name);
            assert_reads_back(&station);
        }
    }
});
