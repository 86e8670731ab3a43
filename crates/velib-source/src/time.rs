//! The calendar computations the sources need: RFC 3339 in GBFS 3.0, written out because the
//! small crates that parse it (`humantime`) accept only UTC while GBFS feeds may carry offsets
//! (`+02:00`); HTTP dates in `Retry-After` through `httpdate` (already in the tree with hyper).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Now, in epoch milliseconds.
pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn epoch_ms(y: i64, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> Option<i64> {
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) || h > 23 || mi > 59 || s > 60
    {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400
        + i64::from(h) * 3_600
        + i64::from(mi) * 60
        + i64::from(s);
    secs.checked_mul(1000)
}

fn digits(s: &str) -> Option<u32> {
    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Parses an RFC 3339 date-time (`2024-05-01T12:30:05Z`, `2024-05-01T14:30:05.250+02:00`) into
/// epoch milliseconds. Lower-case `t`/`z` and a space separator are accepted, as RFC 3339 allows.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<i64> {
    let t = text.trim();
    if t.len() < 20 || !t.is_ascii() {
        return None;
    }
    let (date, rest) = t.split_at(10);
    let sep = rest.as_bytes()[0];
    if !matches!(sep, b'T' | b't' | b' ') {
        return None;
    }
    let rest = &rest[1..];
    let mut parts = date.split('-');
    let (y, mo, d) = (parts.next()?, parts.next()?, parts.next()?);
    if y.len() != 4 || mo.len() != 2 || d.len() != 2 {
        return None;
    }
    let (h, mi, s) = (
        digits(rest.get(0..2)?)?,
        digits(rest.get(3..5)?)?,
        digits(rest.get(6..8)?)?,
    );
    if rest.as_bytes().get(2) != Some(&b':') || rest.as_bytes().get(5) != Some(&b':') {
        return None;
    }
    let mut rest = &rest[8..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let n = frac.bytes().take_while(u8::is_ascii_digit).count();
        if n == 0 {
            return None;
        }
        // Keep milliseconds; finer digits are truncated, which is what epoch-ms can hold.
        let ms_digits = &frac[..n.min(3)];
        millis = i64::from(digits(ms_digits)?) * 10i64.pow(3 - ms_digits.len() as u32);
        rest = &frac[n..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            let (oh, om) = (digits(&rest[1..3])?, digits(&rest[4..6])?);
            if oh > 23 || om > 59 {
                return None;
            }
            sign * i64::from(oh * 3600 + om * 60)
        }
    };
    let base = epoch_ms(i64::from(digits(y)?), digits(mo)?, digits(d)?, h, mi, s)?;
    Some(base + millis - offset_secs * 1000)
}

/// Parses a `Retry-After` value: delay-seconds, or an HTTP date (IMF-fixdate such as
/// `Sun, 06 Nov 1994 08:49:37 GMT`, or the two obsolete forms HTTP still accepts, read by the
/// `httpdate` crate) turned into a delay from `now` (zero if it is past).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(secs) = digits(value) {
        return Some(Duration::from_secs(u64::from(secs)));
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
