//! One bad station must not cost a poll its good ones.
//!
//! A station list arrives as one JSON document, and serde reads a document whole: invalid UTF-8
//! in one address, a number out of range (`1e400`), a `NaN`, or a 100,000-deep value in one
//! station's extra field makes the whole document unreadable. So when a document does not parse,
//! the station array inside it is taken apart at the byte level — strings, escapes and nesting
//! tracked without recursion — and each station is parsed on its own; the rest of the document
//! (with the array emptied) must still parse. A station that does not parse is reported by its
//! index and skipped like any unreadable record.
//!
//! The common case, a valid document, costs one ordinary parse: the byte-level reading only
//! runs after it failed.

use serde_json::Value;

/// A document and the stations of its array at `path`, each parsed on its own.
#[derive(Debug)]
pub struct Split {
    /// The document, with the array at `path` emptied when it had to be taken apart.
    pub document: Value,
    /// The array's elements, in order: the parsed value, or why it could not be parsed.
    pub items: Vec<Result<Value, String>>,
}

/// Reads `bytes` as a JSON document holding a station array at `path` (object keys from the
/// top; empty when the document is the array itself).
///
/// # Errors
///
/// The parse error of the whole document when the array cannot be found or the rest of the
/// document is not JSON either: then nothing can be trusted.
pub fn split(bytes: &[u8], path: &[&str]) -> Result<Split, serde_json::Error> {
    let whole_error = match serde_json::from_slice::<Value>(bytes) {
        Ok(mut document) => {
            let items = take_array(&mut document, path)
                .into_iter()
                .map(Ok)
                .collect();
            return Ok(Split { document, items });
        }
        Err(e) => e,
    };
    let Some((start, end, elements)) = locate(bytes, path) else {
        return Err(whole_error);
    };
    let mut rest = Vec::with_capacity(bytes.len() - (end - start) + 2);
    rest.extend_from_slice(&bytes[..start]);
    rest.extend_from_slice(b"[]");
    rest.extend_from_slice(&bytes[end..]);
    let Ok(document) = serde_json::from_slice::<Value>(&rest) else {
        return Err(whole_error);
    };
    let items = elements
        .into_iter()
        .map(|(a, b)| serde_json::from_slice::<Value>(&bytes[a..b]).map_err(|e| e.to_string()))
        .collect();
    Ok(Split { document, items })
}

/// Moves the array at `path` out of `document`, leaving an empty one; nothing when there is
/// none (the caller reports what is missing, from the document).
fn take_array(document: &mut Value, path: &[&str]) -> Vec<Value> {
    let mut at = document;
    for key in path {
        match at.get_mut(*key) {
            Some(next) => at = next,
            None => return Vec::new(),
        }
    }
    match at {
        Value::Array(items) => std::mem::take(items),
        _ => Vec::new(),
    }
}

fn ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// The end of the string whose opening quote is at `i` (one past the closing quote).
fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
    i += 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// The end of the value starting at `i` (after whitespace), by structure alone: brackets and
/// strings are matched, scalars run to the next delimiter. No recursion, whatever the depth.
fn value_end(b: &[u8], i: usize) -> Option<usize> {
    let mut i = ws(b, i);
    match *b.get(i)? {
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        i = string_end(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        b'"' => string_end(b, i),
        b',' | b'}' | b']' | b':' => None,
        _ => {
            while i < b.len() && !matches!(b[i], b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r')
            {
                i += 1;
            }
            Some(i)
        }
    }
}

/// Where the array at `path` starts and ends in `b`, and where each of its elements does.
#[allow(clippy::type_complexity)]
fn locate(b: &[u8], path: &[&str]) -> Option<(usize, usize, Vec<(usize, usize)>)> {
    let mut i = ws(b, 0);
    for key in path {
        // An object: find the member `key`.
        if *b.get(i)? != b'{' {
            return None;
        }
        i += 1;
        loop {
            i = ws(b, i);
            if *b.get(i)? != b'"' {
                return None;
            }
            let end = string_end(b, i)?;
            let name = &b[i + 1..end - 1];
            i = ws(b, end);
            if *b.get(i)? != b':' {
                return None;
            }
            i = ws(b, i + 1);
            if name == key.as_bytes() {
                break;
            }
            i = ws(b, value_end(b, i)?);
            if *b.get(i)? != b',' {
                return None;
            }
            i += 1;
        }
    }
    if *b.get(i)? != b'[' {
        return None;
    }
    let start = i;
    let mut elements = Vec::new();
    i = ws(b, i + 1);
    if *b.get(i)? == b']' {
        return Some((start, i + 1, elements));
    }
    loop {
        let from = ws(b, i);
        let to = value_end(b, from)?;
        elements.push((from, to));
        i = ws(b, to);
        match *b.get(i)? {
            b',' => i += 1,
            b']' => return Some((start, i + 1, elements)),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station(n: u32) -> String {
        format!(r#"{{"station_id": "{n}", "name": "S{n}", "n": [1, {{"x": "]}}\"["}}]}}"#)
    }

    fn poisoned(bad: &[u8]) -> Vec<u8> {
        let mut doc = format!(
            r#"{{"last_updated": 5, "data": {{"x": [1], "stations": [{}, "#,
            station(1)
        )
        .into_bytes();
        doc.extend_from_slice(bad);
        doc.extend_from_slice(format!(", {}]}}, \"ttl\": 1}}", station(2)).as_bytes());
        doc
    }

    #[test]
    fn a_valid_document_is_one_parse() {
        let doc = poisoned(station(9).as_bytes());
        let got = split(&doc, &["data", "stations"]).unwrap();
        assert_eq!(got.items.len(), 3);
        assert!(got.items.iter().all(Result::is_ok));
        assert_eq!(got.document["data"]["stations"], serde_json::json!([]));
        assert_eq!(got.document["ttl"], 1);
    }

    #[test]
    fn one_bad_station_is_one_error_and_the_others_stay() {
        let deep = format!(
            r#"{{"station_id": "3", "extra": {}{}}}"#,
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let cases: Vec<Vec<u8>> = vec![
            b"{\"station_id\": \"3\", \"address\": \"bad \xff\xfe utf-8\"}".to_vec(),
            br#"{"station_id": "3", "lat": 1e400}"#.to_vec(),
            br#"{"station_id": "3", "lat": NaN}"#.to_vec(),
            br#"{"station_id": "3", "lat": 45.7,}"#.to_vec(),
            deep.into_bytes(),
        ];
        for bad in cases {
            let doc = poisoned(&bad);
            assert!(serde_json::from_slice::<Value>(&doc).is_err());
            let got = split(&doc, &["data", "stations"])
                .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(&bad[..40])));
            assert_eq!(got.items.len(), 3);
            assert_eq!(got.items[0].as_ref().unwrap()["station_id"], "1");
            assert!(got.items[1].is_err());
            assert_eq!(got.items[2].as_ref().unwrap()["station_id"], "2");
            assert_eq!(got.document["last_updated"], 5);
            assert_eq!(got.document["ttl"], 1);
        }
    }

    #[test]
    fn a_top_level_array_splits_too() {
        let doc = format!("[{}, {{\"a\": NaN}}, {}]", station(1), station(2));
        let got = split(doc.as_bytes(), &[]).unwrap();
        assert_eq!(got.items.iter().filter(|i| i.is_ok()).count(), 2);
    }

    #[test]
    fn a_broken_document_is_still_an_error() {
        for doc in [
            &br#"{"data": {"stations": [{"a": 1}, {"b": 2}"#[..],
            br#"{"data": {"stations": [{"a": 1}]}, "ttl": NaN}"#,
            br#"<html>502</html>"#,
            br#"{"data": {"stations": [{"a": 1}] }, "#,
            b"",
        ] {
            assert!(split(doc, &["data", "stations"]).is_err(), "{doc:?}");
        }
    }
}
