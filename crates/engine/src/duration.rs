//! Human durations as people write them in policies and on the command line: `90s`, `5m`,
//! `1h30m`, `14d`. One parser, so `interval: 1m` and `--since 14d` mean the same thing.
//!
//! Deliberately small: integer amounts and the units `ms`, `s`, `m`, `h`, `d` only.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;

/// Why a duration did not parse; the message names the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{input:?} is not a duration ({why}; write e.g. 90s, 5m, 1h30m, 2d)")]
pub struct DurationError {
    input: String,
    why: &'static str,
}

/// Parses `1h30m`, `90s`, `500ms`, `2d`. Zero is allowed (`0s`); callers that need a positive
/// duration check it themselves so they can name the field.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let err = |why| DurationError { input: input.to_owned(), why };
    let s = input.trim();
    if s.is_empty() {
        return Err(err("empty"));
    }
    let bytes = s.as_bytes();
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if start == i {
            return Err(err("expected a number"));
        }
        let amount: u64 = s[start..i].parse().map_err(|_| err("number too large"))?;
        let unit_start = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let millis_per_unit: u64 = match &s[unit_start..i] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(err("missing unit")),
            _ => return Err(err("unknown unit")),
        };
        let part = amount.checked_mul(millis_per_unit).ok_or_else(|| err("too large"))?;
        total = total.checked_add(part).ok_or_else(|| err("too large"))?;
    }
    Ok(Duration::from_millis(total))
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `t + d`, saturating at the end of time. Millisecond precision: this is integer arithmetic,
/// much cheaper than jiff's general `Timestamp + std::time::Duration`, and it runs several
/// times per evaluation (a year-long backtest makes half a million evaluations).
pub fn after(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond().saturating_add(millis(d))).unwrap_or(Timestamp::MAX)
}

/// `t - d`, saturating at the beginning of time. See [`after`].
pub fn before(t: Timestamp, d: Duration) -> Timestamp {
    Timestamp::from_millisecond(t.as_millisecond().saturating_sub(millis(d))).unwrap_or(Timestamp::MIN)
}

/// Displays a duration the way [`parse_duration`] reads it: `1h30m`, `90s` → `1m30s`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.0.as_millis();
        if ms == 0 {
            return f.write_str("0s");
        }
        let mut rest = ms;
        let mut wrote = false;
        for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
            if rest >= size {
                write!(f, "{}{unit}", rest / size)?;
                rest %= size;
                wrote = true;
            }
        }
        debug_assert!(wrote);
        Ok(())
    }
}

impl fmt::Debug for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (text, secs, shown) in
            [("90s", 90, "1m30s"), ("5m", 300, "5m"), ("1h30m", 5400, "1h30m"), ("2d", 172_800, "2d"), ("0s", 0, "0s")]
        {
            let d = parse_duration(text).unwrap();
            assert_eq!(d, Duration::from_secs(secs), "{text}");
            assert_eq!(Human(d).to_string(), shown);
        }
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Timestamp::from_second(1_000).unwrap();
        assert_eq!(after(t, Duration::from_millis(1_500)).as_millisecond(), 1_001_500);
        assert_eq!(before(t, Duration::from_secs(60)).as_second(), 940);
        assert_eq!(after(t, Duration::MAX), Timestamp::MAX);
        assert_eq!(before(t, Duration::MAX), Timestamp::MIN);
    }

    #[test]
    fn rejects_with_reason() {
        for (text, why) in [
            ("", "empty"),
            ("5", "missing unit"),
            ("5y", "unknown unit"),
            ("m", "expected a number"),
            ("-5m", "expected a number"),
        ] {
            let e = parse_duration(text).unwrap_err();
            assert!(e.to_string().contains(why), "{text}: {e}");
        }
        assert!(parse_duration("99999999999999999999d").is_err());
    }
}
