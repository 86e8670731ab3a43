//! The times the sources read: RFC 3339 in GBFS 3.0 through the `time` crate, which takes
//! offsets (`+02:00`) as GBFS feeds may carry them; HTTP dates in `Retry-After` through
//! `httpdate` (already in the tree with hyper).

use std::time::{Duration, SystemTime, UNIX_EPOCH};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Parses an RFC 3339 date-time (`2024-05-01T12:30:05Z`, `2024-05-01T14:30:05.250+02:00`) into
/// epoch milliseconds, through the `time` crate. Lower-case `t`/`z` and a space separator are
/// accepted, as RFC 3339 allows; digits finer than milliseconds are dropped (rounded down).
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    // `time` takes any character between date and time; velib has always taken only these.
    if !matches!(t.as_bytes().get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    // A second of 60 (a leap second) has always read as the next minute's first second,
    // wherever it falls; `time` takes it only at the end of a month. So it is read as 59 and
    // the second added back.
    let (t, leap_ms) = match (t.get(16..17), t.get(17..19)) {
        (Some(":"), Some("60")) => (format!("{}59{}", &t[..17], &t[19..]), 1000),
        _ => (t.to_owned(), 0),
    };
    let at = OffsetDateTime::parse(&t, &Rfc3339).ok()?;
    let ms = i64::try_from(at.unix_timestamp_nanos().div_euclid(1_000_000)).ok()?;
    Some(ms + leap_ms)
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (IMF-fixdate such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`, or the two obsolete forms HTTP still accepts, read by the
/// `httpdate` crate) turned into a delay from `now` (zero if it is past).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<u32>()
            .ok()
            .map(|s| Duration::from_secs(s.into()));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_table() {
        let cases: &[(&str, Option<i64>)] = &[
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2024-05-01T12:30:05Z", Some(1_714_566_605_000)),
            ("2024-05-01T14:30:05+02:00", Some(1_714_566_605_000)),
            ("2024-05-01T07:00:05-05:30", Some(1_714_566_605_000)),
            ("2024-05-01t12:30:05.25z", Some(1_714_566_605_250)),
            ("2024-05-01 12:30:05.123456Z", Some(1_714_566_605_123)),
            ("2024-02-29T00:00:00Z", Some(1_709_164_800_000)),
            ("2023-02-29T00:00:00Z", None),
            ("2024-13-01T00:00:00Z", None),
            ("2024-05-01T12:30:05", None),
            ("2024-05-01T12:30:05.Z", None),
            ("2024-05-01T12:30:05+0200", None),
            ("1714566605", None),
            ("", None),
            ("2024-05-01T1é:30:05Z", None),
            // Only `T`, `t` or a space between date and time.
            ("2024-05-01X12:30:05Z", None),
            ("2024-05-01_12:30:05Z", None),
            // A leap second is the next minute's first, wherever it falls.
            ("2024-05-01T12:30:60Z", Some(1_714_566_660_000)),
            ("2024-05-01T12:30:60.5+02:00", Some(1_714_559_460_500)),
            ("2016-12-31T23:59:60Z", Some(1_483_228_800_000)),
            // Before 1970, finer digits are dropped towards the past.
            ("1969-12-31T23:59:59.5004Z", Some(-500)),
            ("0000-01-01T00:00:00Z", Some(-62_167_219_200_000)),
            (
                "9999-12-31T23:59:59.999999999-23:59",
                Some(253_402_387_139_999),
            ),
            ("2024-05-01T12:30:05+24:00", None),
            ("2024-05-01T12:30:05+02:60", None),
            ("2024-05-01T24:00:00Z", None),
            ("2024-05-01T12:30:61Z", None),
            (" 2024-05-01T12:30:05Z\n", Some(1_714_566_605_000)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_rfc3339_ms(text), *want, "{text}");
        }
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_757); // Sun, 06 Nov 1994 08:49:17 GMT
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        // RFC 850 and asctime, the obsolete forms HTTP/1.1 still asks recipients to accept.
        assert_eq!(
            parse_retry_after("Sunday, 06-Nov-94 08:49:37 GMT", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(
            parse_retry_after("Sun Nov  6 08:49:37 1994", now),
            Some(Duration::from_secs(20))
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }
}
