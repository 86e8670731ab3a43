//! Checks shared by velib's fuzz targets (`fuzz_targets/*.rs`): the properties every reader of
//! outside input must keep, whichever target reaches it.

use serde_json::Value;
use velib_model::{Station, StationView};
use velib_source::readers::Split;

/// A station a source produced must be readable where it goes: the producer publishes
/// `to_json`, the monitor reads it with [`StationView::from_json`], the alerts consumer with
/// [`Station::from_json`]. Both must give back exactly this station (coordinates to the bit).
pub fn assert_reads_back(station: &Station) {
    let json = station.to_json();
    let text = String::from_utf8_lossy(&json);
    // The hand-written writer publishes what serde_json writes for the same station.
    let by_serde = serde_json::to_vec(station).expect("a station serialises");
    assert_eq!(text, String::from_utf8_lossy(&by_serde));
    let owned = Station::from_json(&json)
        .unwrap_or_else(|e| panic!("a published station cannot be read back ({e}): {text}"));
    assert_eq!(&owned, station, "{text}");
    assert_eq!(bits(&owned), bits(station), "{text}");
    let view = StationView::from_json(&json)
        .unwrap_or_else(|e| panic!("the monitor cannot read a published station ({e}): {text}"));
    assert_eq!(&view.to_station(), station, "{text}");
    assert_eq!(bits(&view.to_station()), bits(station), "{text}");
}

/// The coordinates' bits: `==` on `f64` does not tell `0.0` from `-0.0`.
pub fn bits(station: &Station) -> (u64, u64) {
    (
        station.position.lat.to_bits(),
        station.position.lng.to_bits(),
    )
}

/// serde_json refuses documents nested deeper than this; the byte-level split does not, by
/// design, so the split's own checks stay below it.
const SERDE_DEPTH_LIMIT_MARGIN: usize = 120;

/// Checks `split` (what `velib_source::readers::split(doc, path)` returned) against serde_json
/// reading `doc` whole.
///
/// - A document serde reads is read once, the same: the array at `path` moved out whole.
/// - A document serde refuses was taken apart at the byte level. If then every element read
///   on its own and nothing nests near serde's depth limit, the fault cannot have been inside
///   the array: the split cut at the wrong place or hid an error outside the array.
pub fn assert_split_agrees(doc: &[u8], split: &Split, path: &[&str]) {
    match serde_json::from_slice::<Value>(doc) {
        Ok(mut whole) => {
            // The paths used hold no `/` or `~`, so they are JSON pointers as they are.
            let pointer: String = path.iter().map(|key| format!("/{key}")).collect();
            let items = match whole.pointer_mut(&pointer) {
                Some(Value::Array(array)) => std::mem::take(array),
                _ => Vec::new(),
            };
            assert_eq!(split.document, whole);
            let got: Vec<&Value> = split
                .items
                .iter()
                .map(|i| {
                    i.as_ref()
                        .expect("an element of a readable document failed")
                })
                .collect();
            assert_eq!(got, items.iter().collect::<Vec<_>>());
        }
        Err(whole) => {
            if split.items.iter().all(Result::is_ok) && json_depth(doc) < SERDE_DEPTH_LIMIT_MARGIN {
                panic!(
                    "the split read every element of a document serde refuses ({whole}): {}",
                    String::from_utf8_lossy(doc)
                );
            }
        }
    }
}

/// The deepest nesting of arrays and objects in `doc`, strings skipped.
pub fn json_depth(doc: &[u8]) -> usize {
    let (mut depth, mut max, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in doc {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// Writes `entries` as Java's `Properties.store` does (`saveConvert` with Unicode escapes):
/// what Kafka's own tools write, so velib must read it back to the same entries.
pub fn java_properties_store(entries: &[(String, String)]) -> String {
    let mut out = String::from("#written by java.util.Properties.store\n");
    for (key, value) in entries {
        java_save_convert(key, true, &mut out);
        out.push('=');
        java_save_convert(value, false, &mut out);
        out.push('\n');
    }
    out
}

fn java_save_convert(text: &str, escape_space: bool, out: &mut String) {
    // Java works on UTF-16 units: a character outside the BMP is written as two `\uXXXX`.
    for (x, c) in text.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c > '=' && c < '\u{7f}' => out.push(c),
            ' ' if x == 0 || escape_space => out.push_str("\\ "),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\x0c' => out.push_str("\\f"),
            '=' | ':' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            c if !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
}
