//! Checks that make validation say what an operator would otherwise learn too late: which cron
//! field is wrong, a cron that never fires, a one-off window already over. The ones about time
//! take `now` as an argument (validation stays pure; `vmscaler validate --now` sets it).
//!
//! Not here: whether a file parses (see `validate.rs`).

use std::time::Duration;

use croner::Cron;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use crate::duration::Human;

/// The field names and allowed values of a 5-field (or 6-field, with seconds) cron pattern.
const FIELDS5: [(&str, &str); 5] = [
    ("minute", "0-59"),
    ("hour", "0-23"),
    ("day-of-month", "1-31"),
    ("month", "1-12 or JAN-DEC"),
    ("day-of-week", "0-7 or SUN-SAT"),
];

/// A cron pattern croner rejected, explained: the field and its value, when one field alone is
/// at fault (found by parsing it with every other field as `*`), or the field count.
pub(super) fn cron_error(pattern: &str, err: &croner::errors::CronError) -> String {
    let parts: Vec<&str> = pattern.split_whitespace().collect();
    let names = || FIELDS5.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(" ");
    let fields: Vec<(&str, &str)> = match parts.len() {
        5 => FIELDS5.to_vec(),
        6 => std::iter::once(("second", "0-59")).chain(FIELDS5).collect(),
        7 => return format!("{pattern:?} is not a cron pattern: {err} (the fields are second {} year)", names()),
        1 if pattern.starts_with('@') => return format!("{pattern:?} is not a cron pattern: {err}"),
        n => {
            return format!(
                "{pattern:?} has {n} field{} (write 5: {}, e.g. \"0 20 * * *\" for 20:00 daily)",
                if n == 1 { "" } else { "s" },
                names()
            );
        }
    };
    let parser = croner::parser::CronParser::new();
    for (i, (name, allowed)) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..parts.len()).map(|j| if i == j { parts[j] } else { "*" }).collect();
        if parser.parse(&alone.join(" ")).is_err() {
            return format!(
                "{pattern:?}: {name} is {:?} (allowed {allowed}; the fields are {}{})",
                parts[i],
                if parts.len() == 6 { "second " } else { "" },
                names()
            );
        }
    }
    format!("{pattern:?} is not a cron pattern: {err} (the fields are {})", names())
}

/// `Some(warning)` when `cron` has no occurrence within a year of `now` in `tz`.
pub(super) fn never_fires(cron: &Cron, pattern: &str, tz: &TimeZone, zone: &str, now: Timestamp) -> Option<String> {
    let from = now.to_zoned(tz.clone());
    let year_later = now.saturating_add(jiff::SignedDuration::from_hours(366 * 24)).ok()?;
    let next = cron.find_next_occurrence(&from, false).ok().map(|z| z.timestamp());
    match next {
        Some(t) if t <= year_later => None,
        _ => {
            Some(format!("{pattern:?} does not fire in the year after {} ({zone}): the floor never holds", from.date()))
        }
    }
}

/// `369d` or `3h20m`: how long ago, to the minute.
pub(super) fn ago(d: Duration) -> String {
    let day = 86_400;
    if d.as_secs() >= day {
        format!("{}d", d.as_secs() / day)
    } else {
        Human(Duration::from_secs(d.as_secs() / 60 * 60).max(Duration::from_secs(60))).to_string()
    }
}
