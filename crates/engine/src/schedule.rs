//! Pre-warm floors: which scheduled capacity floor is active at `now`.
//!
//! Windows are computed from `now` on every evaluation (never from a timer armed earlier), so a
//! restart, a missed tick or a DST change cannot lose or shift a promotion. Cron patterns are
//! matched by croner in the rule's own IANA zone through jiff, which is DST-correct: a daily
//! `30 1 * * *` fires once on the day the clocks go back and once on the day they go forward.
//!
//! A rule with `release_after` stops holding its floor when the crowd it was written for does
//! not come: once the event has run `release_after`, the floor holds only while some evaluation
//! in the last `release_after` asked for its capacity (see [`holding_floor`]). That too is read
//! from `now` and the evaluation records, never from state of its own.
//!
//! Not here: deciding what to do with the floor (see [`crate::decide`]).

use std::sync::Mutex;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::duration::{after as add, before as sub};
use crate::history::PoolHistory;
use crate::policy::{Policy, PrewarmRule, PrewarmWhen};

/// The floor a rule imposes at some instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Floor {
    pub rule: String,
    /// Capacity required now (below the rule's capacity while ramping).
    pub capacity: u32,
    /// When the event itself starts (the floor is at full capacity from `start - lead`).
    pub event_start: Timestamp,
    pub event_end: Timestamp,
    pub ramping: bool,
}

/// One occurrence of a rule: the event's own start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

/// Remembers, per cron pattern and zone, the two occurrences around the last instant asked
/// about, so evaluating every minute (or replaying a year in a backtest) searches the pattern
/// once per occurrence instead of once per evaluation. It belongs to whoever evaluates a pool
/// again and again (a [`crate::cycle::PoolCycle`]), not to the policy: the policy model stays
/// plain data with equality, and a reloaded pattern simply finds nothing remembered under it.
#[derive(Debug, Default)]
pub struct ScheduleCache(Mutex<Vec<Remembered>>);

#[derive(Debug)]
struct Remembered {
    pattern: String,
    zone: String,
    prev: Timestamp,
    next: Option<Timestamp>,
}

impl Clone for ScheduleCache {
    /// A clone starts empty: it is a cache.
    fn clone(&self) -> Self {
        ScheduleCache::default()
    }
}

impl ScheduleCache {
    /// `(latest occurrence <= t, first occurrence > t)` of `rule`'s pattern, from memory when
    /// `t` falls between the remembered pair, else from `search` (which must return that pair).
    fn around(
        &self,
        rule: &PrewarmRule,
        pattern: &str,
        t: Timestamp,
        search: impl FnOnce() -> (Option<Timestamp>, Option<Timestamp>),
    ) -> (Option<Timestamp>, Option<Timestamp>) {
        let mut guard = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = guard.iter().position(|r| r.pattern == pattern && r.zone == rule.time_zone_name);
        if let Some(r) = slot.and_then(|i| guard.get(i))
            && r.prev <= t
            && r.next.is_none_or(|n| t < n)
        {
            return (Some(r.prev), r.next);
        }
        let (prev, next) = search();
        match (slot, prev) {
            (Some(i), Some(prev)) => {
                if let Some(r) = guard.get_mut(i) {
                    (r.prev, r.next) = (prev, next);
                }
            }
            (Some(i), None) => {
                guard.swap_remove(i);
            }
            (None, Some(prev)) => {
                guard.push(Remembered { pattern: pattern.to_owned(), zone: rule.time_zone_name.clone(), prev, next })
            }
            (None, None) => {}
        }
        (prev, next)
    }
}

impl PrewarmRule {
    /// For a cron rule: the latest occurrence at or before `t` and the first one after it.
    fn occurrences_around(&self, t: Timestamp, cache: &ScheduleCache) -> (Option<Timestamp>, Option<Timestamp>) {
        let PrewarmWhen::Cron { cron, pattern, .. } = &self.when else { return (None, None) };
        cache.around(self, pattern, t, || {
            let z = t.to_zoned(self.time_zone.clone());
            let prev = cron.find_previous_occurrence(&z, true).ok().map(|o| o.timestamp());
            let next = cron.find_next_occurrence(&z, false).ok().map(|o| o.timestamp());
            (prev, next)
        })
    }

    /// The latest window whose event starts at or before `t`.
    fn window_starting_by(&self, t: Timestamp, cache: &ScheduleCache) -> Option<Window> {
        match &self.when {
            PrewarmWhen::Once { start, end } => (*start <= t).then_some(Window { start: *start, end: *end }),
            PrewarmWhen::Cron { duration, .. } => {
                let s = self.occurrences_around(t, cache).0?;
                Some(Window { start: s, end: add(s, *duration) })
            }
        }
    }

    /// The first window whose event starts after `t`.
    fn window_starting_after(&self, t: Timestamp, cache: &ScheduleCache) -> Option<Window> {
        match &self.when {
            PrewarmWhen::Once { start, end } => (*start > t).then_some(Window { start: *start, end: *end }),
            PrewarmWhen::Cron { duration, .. } => {
                let s = self.occurrences_around(t, cache).1?;
                Some(Window { start: s, end: add(s, *duration) })
            }
        }
    }

    /// The floor this rule imposes at `now`, given the policy's `min` (the ramp's base).
    pub fn floor_at(&self, now: Timestamp, min: u32) -> Option<Floor> {
        self.floor_in(now, min, &ScheduleCache::default())
    }

    fn floor_in(&self, now: Timestamp, min: u32, cache: &ScheduleCache) -> Option<Floor> {
        let floor = |w: Window, capacity, ramping| Floor {
            rule: self.name.clone(),
            capacity,
            event_start: w.start,
            event_end: w.end,
            ramping,
        };
        // Full capacity from `start - lead` until `end`.
        if let Some(w) = self.window_starting_by(add(now, self.lead), cache)
            && now < w.end
        {
            return Some(floor(w, self.capacity, false));
        }
        // Ramping towards the next window.
        if self.ramp > Duration::ZERO {
            let w = self.window_starting_after(add(now, self.lead), cache)?;
            let full_at = sub(w.start, self.lead);
            let ramp_from = sub(full_at, self.ramp);
            if now >= ramp_from {
                let elapsed = now.duration_since(ramp_from).as_secs_f64();
                let frac = (elapsed / self.ramp.as_secs_f64()).clamp(0.0, 1.0);
                let base = f64::from(min.min(self.capacity));
                let span = f64::from(self.capacity) - base;
                let cap = (base + span * frac).ceil();
                // `cap` lies between `min` and `capacity`, both u32.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let cap = cap as u32;
                return Some(floor(w, cap, true));
            }
        }
        None
    }

    /// The next instant after `now` at which this rule's floor starts rising.
    pub fn next_activation(&self, now: Timestamp) -> Option<Timestamp> {
        self.next_activation_in(now, &ScheduleCache::default())
    }

    fn next_activation_in(&self, now: Timestamp, cache: &ScheduleCache) -> Option<Timestamp> {
        let w = self.window_starting_after(add(now, self.lead), cache)?;
        Some(sub(sub(w.start, self.lead), self.ramp))
    }
}

/// The highest floor of all the policy's rules at `now`, capped at nothing (the caller caps at
/// `max` and says so).
pub fn active_floor(policy: &Policy, now: Timestamp) -> Option<Floor> {
    active_floor_in(policy, now, &ScheduleCache::default())
}

/// [`active_floor`], remembering cron occurrences in `cache` (for callers asking about many
/// instants in a row).
pub fn active_floor_in(policy: &Policy, now: Timestamp, cache: &ScheduleCache) -> Option<Floor> {
    highest(policy.prewarm.iter().filter_map(|r| r.floor_in(now, policy.min, cache)))
}

/// The highest of `floors`; between equal capacities, the rule whose name sorts first.
fn highest(floors: impl Iterator<Item = Floor>) -> Option<Floor> {
    floors.max_by(|a, b| a.capacity.cmp(&b.capacity).then_with(|| b.rule.cmp(&a.rule)))
}

/// A floor that would be active now, released because nothing asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Released {
    pub rule: String,
    /// The floor's capacity, capped at the policy's `max`.
    pub capacity: u32,
    /// No evaluation since this instant asked for `capacity`: the later of the event's start
    /// and `now - release_after`.
    pub since: Timestamp,
}

/// The floor that holds at `now`, and the floors released by their `release_after`.
///
/// A rule without `release_after` holds its floor for its whole window, as [`active_floor`]
/// says. A rule with it holds unconditionally while ramping, through its lead and for the first
/// `release_after` of the event; after that, only while an evaluation since the later of the
/// event's start and `now - release_after` asked for at least the floor (capped at `max`): a
/// record's proposal, or `proposal`, this evaluation's. A proposal is what the metrics wanted
/// before any guard, so a floor is not kept up by the capacity it itself imposed; one within the
/// tolerance band of a fleet held at the floor counts (the fleet is on target), and so does the
/// missing-data rule's proposal (holding the current capacity keeps the floor while nothing can
/// be measured). Released, the floor comes back as soon as a proposal reaches it again, and holds
/// for another `release_after`: a crowd that comes late gets the floor it was written for.
///
/// Why the last `release_after` and not everything since the event started: the records are
/// kept for `history.window` (an hour in the shipped policies), shorter than many events, so
/// "anything since the start" would forget an early crowd and drop the floor mid-event anyway,
/// unless decisions carried state of their own. The look-back is bounded by validation instead
/// (`release_after <= history.window`). On the World Cup 98 backtest the two readings bill
/// within 0.3 instance-hours of each other.
pub fn holding_floor(
    policy: &Policy,
    history: &PoolHistory,
    proposal: u32,
    now: Timestamp,
    cache: &ScheduleCache,
) -> (Option<Floor>, Vec<Released>) {
    let mut holding = Vec::new();
    let mut released = Vec::new();
    for rule in &policy.prewarm {
        let Some(floor) = rule.floor_in(now, policy.min, cache) else { continue };
        let cap = floor.capacity.min(policy.max);
        match rule.release_after.filter(|_| !floor.ramping) {
            Some(after) if now >= add(floor.event_start, after) => {
                let since = floor.event_start.max(sub(now, after));
                let asked = proposal >= cap
                    || history
                        .records
                        .iter()
                        .rev()
                        .take_while(|r| r.at >= since)
                        .any(|r| r.at <= now && r.proposal >= cap);
                if !asked {
                    released.push(Released { rule: floor.rule, capacity: cap, since });
                    continue;
                }
            }
            _ => {}
        }
        holding.push(floor);
    }
    (highest(holding.into_iter()), released)
}

/// The soonest instant after `now` at which any rule's floor starts rising.
pub fn next_activation(policy: &Policy, now: Timestamp) -> Option<Timestamp> {
    next_activation_in(policy, now, &ScheduleCache::default())
}

/// [`next_activation`], remembering cron occurrences in `cache`.
pub fn next_activation_in(policy: &Policy, now: Timestamp, cache: &ScheduleCache) -> Option<Timestamp> {
    policy.prewarm.iter().filter_map(|r| r.next_activation_in(now, cache)).filter(|t| *t > now).min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    fn policy(prewarm: &str) -> Policy {
        let text = format!(
            "name: t\npool: {{tag: {{key: k, value: v}}}}\nmin: 2\nmax: 50\nmetrics:\n  - {{id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}}\nprewarm:\n{prewarm}"
        );
        let r = parse_policy("t.yaml", &text);
        assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
        r.policy.unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    /// Minutes in `[from, to)` at which the floor switches from inactive to active.
    fn activations(p: &Policy, from: &str, to: &str) -> Vec<String> {
        let (mut t, end) = (ts(from), ts(to));
        let cache = ScheduleCache::default();
        let mut was = false;
        let mut out = vec![];
        while t < end {
            let on = active_floor_in(p, t, &cache).is_some_and(|f| !f.ramping);
            if on && !was {
                out.push(t.to_string());
            }
            was = on;
            t = t.checked_add(Duration::from_secs(60)).unwrap();
        }
        out
    }

    #[test]
    fn daily_rule_fires_once_on_both_dst_days_in_new_york() {
        let p =
            policy("  - {name: n, cron: \"30 1 * * *\", duration: 10m, time_zone: America/New_York, capacity: 9}\n");
        // 2026-03-08: clocks spring forward at 02:00 EST; 01:30 EST = 06:30Z exists once.
        assert_eq!(activations(&p, "2026-03-08T04:00:00Z", "2026-03-09T04:00:00Z"), ["2026-03-08T06:30:00Z"]);
        // 2026-11-01: clocks fall back at 02:00 EDT; 01:30 happens twice (05:30Z EDT, 06:30Z EST).
        assert_eq!(activations(&p, "2026-11-01T04:00:00Z", "2026-11-02T05:00:00Z"), ["2026-11-01T05:30:00Z"]);
        // The days around them: once each, at the local 01:30 of that day's offset.
        assert_eq!(activations(&p, "2026-03-07T04:00:00Z", "2026-03-08T04:00:00Z"), ["2026-03-07T06:30:00Z"]);
        assert_eq!(activations(&p, "2026-03-09T04:00:00Z", "2026-03-10T04:00:00Z"), ["2026-03-09T05:30:00Z"]);
    }

    #[test]
    fn rule_in_the_spring_gap_fires_after_the_gap() {
        // 02:30 does not exist on 2026-03-08 in New York: the window starts at the first real
        // instant after the gap (03:00 EDT = 07:00Z), once.
        let p =
            policy("  - {name: g, cron: \"30 2 * * *\", duration: 10m, time_zone: America/New_York, capacity: 9}\n");
        assert_eq!(activations(&p, "2026-03-08T04:00:00Z", "2026-03-09T04:00:00Z"), ["2026-03-08T07:00:00Z"]);
    }

    #[test]
    fn black_friday_floor_starts_at_the_right_utc_instant() {
        // 2026-11-27T00:00 in New York is EST (UTC-5): 05:00Z; a 20-minute lead makes it 04:40Z.
        let p = policy(
            "  - {name: bf, start: 2026-11-27T00:00, end: 2026-11-28T00:00, time_zone: America/New_York, lead: 20m, capacity: 40}\n",
        );
        assert_eq!(active_floor(&p, ts("2026-11-27T04:39:59Z")), None);
        let f = active_floor(&p, ts("2026-11-27T04:40:00Z")).unwrap();
        assert_eq!(
            (f.capacity, f.event_start, f.event_end),
            (40, ts("2026-11-27T05:00:00Z"), ts("2026-11-28T05:00:00Z"))
        );
        assert!(active_floor(&p, ts("2026-11-28T04:59:59Z")).is_some());
        assert_eq!(active_floor(&p, ts("2026-11-28T05:00:00Z")), None);
        assert_eq!(next_activation(&p, ts("2026-11-20T00:00:00Z")), Some(ts("2026-11-27T04:40:00Z")));
    }

    #[test]
    fn singles_day_in_shanghai_and_a_ramp() {
        // 11.11 00:00 in Shanghai (UTC+8) is 2026-11-10T16:00Z; lead 20m, ramp 30m from min 2 to 50.
        let p = policy(
            "  - {name: s, start: 2026-11-11T00:00, duration: 24h, time_zone: Asia/Shanghai, lead: 20m, ramp: 30m, capacity: 50}\n",
        );
        assert_eq!(active_floor(&p, ts("2026-11-10T15:09:59Z")), None);
        let at = |s| active_floor(&p, ts(s)).map(|f| (f.capacity, f.ramping));
        assert_eq!(at("2026-11-10T15:10:00Z"), Some((2, true)));
        assert_eq!(at("2026-11-10T15:25:00Z"), Some((26, true)));
        assert_eq!(at("2026-11-10T15:39:00Z"), Some((49, true)));
        assert_eq!(at("2026-11-10T15:40:00Z"), Some((50, false)));
        assert_eq!(at("2026-11-11T15:59:00Z"), Some((50, false)));
        assert_eq!(at("2026-11-11T16:00:00Z"), None);
    }

    #[test]
    fn a_released_rule_leaves_the_next_highest_floor_holding() {
        use crate::history::{EvalRecord, PoolHistory};
        // 2026-11-27 20:00-22:00 UTC: a soft floor of 30 and a hard floor of 12 over it.
        let p = policy(
            "  - {name: soft, start: 2026-11-27T20:00, duration: 2h, time_zone: UTC, capacity: 30, release_after: 30m}\n  - {name: hard, start: 2026-11-27T20:00, duration: 2h, time_zone: UTC, capacity: 12}\n",
        );
        let mut h = PoolHistory::default();
        let record = |at: &str, proposal| EvalRecord {
            at: ts(at),
            score: Some(0.5),
            above_band: false,
            proposal,
            current: 30,
            serving: 30,
            desired: 30,
            scaled: None,
            dry_run: false,
        };
        h.push_record(record("2026-11-27T20:10:00Z", 31)); // the crowd came at 20:10...
        h.push_record(record("2026-11-27T20:20:00Z", 9)); // ...and went
        let rules = |now: &str, proposal| {
            let (held, released) = holding_floor(&p, &h, proposal, ts(now), &ScheduleCache::default());
            (held.map(|f| f.rule), released.into_iter().map(|r| (r.rule, r.since.to_string())).collect::<Vec<_>>())
        };
        // Unconditional for the event's first 30 minutes.
        assert_eq!(rules("2026-11-27T20:29:00Z", 9), (Some("soft".into()), vec![]));
        // 20:10's proposal of 31 is in the last 30 minutes until 20:40.
        assert_eq!(rules("2026-11-27T20:40:00Z", 9), (Some("soft".into()), vec![]));
        assert_eq!(
            rules("2026-11-27T20:41:00Z", 9),
            (Some("hard".into()), vec![("soft".into(), "2026-11-27T20:11:00Z".into())])
        );
        // This evaluation asking for 30 (capped at the policy's max of 50: 30) holds it again.
        assert_eq!(rules("2026-11-27T20:41:00Z", 30), (Some("soft".into()), vec![]));
        // The hard rule is never released.
        assert_eq!(rules("2026-11-27T21:59:00Z", 0).0, Some("hard".into()));
        assert_eq!(rules("2026-11-27T22:00:00Z", 0), (None, vec![]), "both windows have ended");
    }

    #[test]
    fn overlapping_rules_take_the_highest_floor() {
        let p = policy(
            "  - {name: daily, cron: \"0 20 * * *\", duration: 2h, time_zone: Asia/Shanghai, capacity: 12}\n  - {name: bf, start: 2026-11-27T00:00, duration: 24h, time_zone: America/New_York, capacity: 40}\n",
        );
        // 2026-11-27T12:30Z is 20:30 in Shanghai and inside Black Friday in New York.
        assert_eq!(active_floor(&p, ts("2026-11-27T12:30:00Z")).map(|f| f.rule), Some("bf".into()));
        assert_eq!(
            active_floor(&p, ts("2026-11-26T12:30:00Z")).map(|f| (f.rule, f.capacity)),
            Some(("daily".into(), 12))
        );
        assert_eq!(active_floor(&p, ts("2026-11-26T14:00:00Z")), None, "the 2h window has ended");
    }
}
