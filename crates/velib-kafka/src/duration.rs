//! The duration flags of velib's binaries (`--interval 1s`, `--cooldown 15m`,
//! `VELIB_FLUSH_TIMEOUT=30`): one parser, so every flag accepts the same forms and the same
//! bounds.

use std::time::Duration;

/// The longest duration any flag accepts: a year. Longer is surely a typo, and bounding it
/// keeps every deadline computed from a flag (`now + duration`) far from overflowing.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86_400);

/// Parses a duration flag that may be `0`: a number with a unit, `ms`, `s`, `m`, `h` or `d`
/// (`500ms`, `1s`, `1.5h`, `15m`, `1d`); a bare number is seconds. What `0` means is the flag's
/// to say (no cooldown, no age limit, no wait).
///
/// This is velib's own parser rather than `humantime`'s: it keeps the forms velib documented
/// from the start (decimals such as `1.5h`, bare seconds in environment variables), which
/// humantime refuses, and it is short enough to bound and fuzz here.
///
/// # Errors
///
/// A message naming the accepted forms, or the limit ([`MAX_DURATION`]).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number.parse().map_err(|_| {
        format!(
            "invalid duration {s:?}: expected a number and a unit, e.g. 500ms, 1s, 15m, 2h or 1d"
        )
    })?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86_400.0,
        other => {
            return Err(format!(
                "invalid duration unit {other:?} in {s:?}: use ms, s, m, h or d"
            ));
        }
    };
    // `number` holds only digits and dots, so `value` is finite and not negative; a long run of
    // digits can still be far beyond what `Duration` holds.
    if !(0.0..=MAX_DURATION.as_secs_f64()).contains(&seconds) {
        return Err(format!("duration {s:?} is too long: at most 365d"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// Parses a duration flag that must be more than zero (a poll interval, a timeout): as
/// [`parse_duration`], refusing `0`.
///
/// # Errors
///
/// As [`parse_duration`], and for zero (or less than a nanosecond).
pub fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    let duration = parse_duration(s)?;
    if duration.is_zero() {
        return Err(format!(
            "{:?} is not allowed here: the duration must be more than 0, e.g. 500ms or 1s",
            s.trim()
        ));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration(".").is_err());
        assert_eq!(parse_duration("365d"), Ok(MAX_DURATION));
    }

    #[test]
    fn durations_are_bounded_and_never_panic() {
        for huge in [
            "366d",
            "99999999999999999999999",
            "18446744073709551616s",
            &"9".repeat(400),
            "1000000000000h",
        ] {
            let err = parse_duration(huge).unwrap_err();
            assert!(err.contains("at most 365d"), "{huge}: {err}");
        }
    }

    #[test]
    fn positive_durations_refuse_zero_without_suggesting_it() {
        assert_eq!(
            parse_positive_duration("250ms"),
            Ok(Duration::from_millis(250))
        );
        for zero in ["0", "0s", "0.0ms", "0.0000000001s"] {
            let err = parse_positive_duration(zero).unwrap_err();
            assert!(err.contains("more than 0"), "{zero}: {err}");
        }
        let err = parse_positive_duration("soon").unwrap_err();
        assert!(!err.contains(" 0"), "{err}");
    }
}
