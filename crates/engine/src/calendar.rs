//! The schedule view: every pre-warm rule's windows over the coming days, each with the moments
//! an operator asks about (the ramp begins, the floor is full, the event starts and ends, and
//! the earliest moment `release_after` may release it), in the rule's zone and in UTC.
//!
//! Computed from `now` like the floors themselves, with the same cron matching (croner in the
//! rule's IANA zone), so what `vmscaler schedule` shows is what the daemon will do.
//!
//! Not here: whether a floor holds at an instant (see [`crate::schedule`]).

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::duration::{after as add, before as sub};
use crate::policy::{Policy, PrewarmWhen};

/// One occurrence of a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Occurrence {
    pub policy: String,
    pub rule: String,
    pub time_zone: String,
    pub capacity: u32,
    /// The floor starts rising (`start - lead - ramp`); equal to `full_at` without a ramp.
    pub ramp_from: Timestamp,
    /// The floor is at full capacity (`start - lead`).
    pub full_at: Timestamp,
    pub start: Timestamp,
    pub end: Timestamp,
    /// With `release_after`: the earliest moment the floor may be released (`start +
    /// release_after`) if nothing asks for it.
    pub release_from: Option<Timestamp>,
    /// The floor is in force at `now` (ramping or full).
    pub active: bool,
}

/// Every window of every rule of `policy` that is in force at `now` or begins (ramp included)
/// within `horizon`, in time order. At most `limit_per_rule` occurrences per rule.
pub fn upcoming(policy: &Policy, now: Timestamp, horizon: Duration, limit_per_rule: usize) -> Vec<Occurrence> {
    let until = add(now, horizon);
    let mut out = Vec::new();
    for rule in &policy.prewarm {
        let occurrence = |start: Timestamp, end: Timestamp| {
            let full_at = sub(start, rule.lead);
            let ramp_from = sub(full_at, rule.ramp);
            Occurrence {
                policy: policy.name.clone(),
                rule: rule.name.clone(),
                time_zone: rule.time_zone_name.clone(),
                capacity: rule.capacity,
                ramp_from,
                full_at,
                start,
                end,
                release_from: rule.release_after.map(|d| add(start, d)),
                active: ramp_from <= now && now < end,
            }
        };
        let mut n = 0;
        match &rule.when {
            PrewarmWhen::Once { start, end } => {
                let o = occurrence(*start, *end);
                if o.end > now && o.ramp_from <= until {
                    out.push(o);
                }
            }
            PrewarmWhen::Cron { cron, duration, .. } => {
                // From far enough back to include a window in force now.
                let from = sub(sub(now, *duration), rule.lead + rule.ramp);
                let z = from.to_zoned(rule.time_zone.clone());
                for t in cron.iter_after(z) {
                    let start = t.timestamp();
                    let o = occurrence(start, add(start, *duration));
                    if o.ramp_from > until || n >= limit_per_rule {
                        break;
                    }
                    if o.end > now {
                        out.push(o);
                        n += 1;
                    }
                }
            }
        }
    }
    out.sort_by(|a, b| (a.ramp_from, &a.rule).cmp(&(b.ramp_from, &b.rule)));
    out
}

/// The next moment a floor starts rising after `now`, and its rule.
pub fn next_floor_start(policy: &Policy, now: Timestamp) -> Option<(String, Timestamp)> {
    policy
        .prewarm
        .iter()
        .filter_map(|r| r.next_activation(now).map(|t| (r.name.clone(), t)))
        .min_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    #[test]
    fn lists_one_off_and_cron_windows_with_lead_ramp_and_release() {
        let p = parse_policy(
            "t.yaml",
            "name: web
pool: {tag: {key: pool, value: web}}
min: 2
max: 60
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}
prewarm:
  - {name: d11, start: 2027-11-11T00:00, duration: 24h, time_zone: Asia/Shanghai, lead: 20m, ramp: 30m, capacity: 50}
  - {name: sms, cron: \"0 20 * * *\", duration: 2h, time_zone: Asia/Shanghai, lead: 15m, capacity: 12, release_after: 30m}
",
        )
        .policy
        .unwrap();
        let now: Timestamp = "2027-11-10T11:00:00Z".parse().unwrap(); // 19:00 Shanghai
        let all = upcoming(&p, now, Duration::from_secs(2 * 86_400), 10);
        let brief: Vec<String> = all
            .iter()
            .map(|o| {
                format!(
                    "{} {} {} {} {} {:?}",
                    o.rule,
                    o.ramp_from,
                    o.full_at,
                    o.start,
                    o.end,
                    o.release_from.map(|t| t.to_string())
                )
            })
            .collect();
        assert_eq!(
            brief,
            [
                "sms 2027-11-10T11:45:00Z 2027-11-10T11:45:00Z 2027-11-10T12:00:00Z 2027-11-10T14:00:00Z Some(\"2027-11-10T12:30:00Z\")",
                "d11 2027-11-10T15:10:00Z 2027-11-10T15:40:00Z 2027-11-10T16:00:00Z 2027-11-11T16:00:00Z None",
                "sms 2027-11-11T11:45:00Z 2027-11-11T11:45:00Z 2027-11-11T12:00:00Z 2027-11-11T14:00:00Z Some(\"2027-11-11T12:30:00Z\")",
            ]
        );
        // During the SMS window it is listed as active.
        let during = upcoming(&p, "2027-11-10T12:10:00Z".parse().unwrap(), Duration::from_secs(3600), 10);
        assert!(during[0].active && during[0].rule == "sms", "{during:?}");
        assert_eq!(next_floor_start(&p, now), Some(("sms".to_owned(), "2027-11-10T11:45:00Z".parse().unwrap())));
    }
}
