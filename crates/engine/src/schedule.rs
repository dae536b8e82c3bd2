//! Pre-warm floors: which scheduled capacity floor is active at `now`.
//!
//! Windows are computed from `now` on every evaluation (never from a timer armed earlier), so a
//! restart, a missed tick or a DST change cannot lose or shift a promotion. Cron patterns are
//! matched by croner in the rule's own IANA zone through jiff, which is DST-correct: a daily
//! `30 1 * * *` fires once on the day the clocks go back and once on the day they go forward.
//!
//! Not here: deciding what to do with the floor (see [`crate::decide`]).

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

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

fn sub(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_sub(d).unwrap_or(Timestamp::MIN)
}

fn add(t: Timestamp, d: Duration) -> Timestamp {
    t.checked_add(d).unwrap_or(Timestamp::MAX)
}

impl PrewarmRule {
    /// The latest window whose event starts at or before `t`.
    fn window_starting_by(&self, t: Timestamp) -> Option<Window> {
        match &self.when {
            PrewarmWhen::Once { start, end } => (*start <= t).then_some(Window { start: *start, end: *end }),
            PrewarmWhen::Cron { cron, duration, .. } => {
                let z = t.to_zoned(self.time_zone.clone());
                let s = cron.find_previous_occurrence(&z, true).ok()?.timestamp();
                Some(Window { start: s, end: add(s, *duration) })
            }
        }
    }

    /// The first window whose event starts after `t`.
    fn window_starting_after(&self, t: Timestamp) -> Option<Window> {
        match &self.when {
            PrewarmWhen::Once { start, end } => (*start > t).then_some(Window { start: *start, end: *end }),
            PrewarmWhen::Cron { cron, duration, .. } => {
                let z = t.to_zoned(self.time_zone.clone());
                let s = cron.find_next_occurrence(&z, false).ok()?.timestamp();
                Some(Window { start: s, end: add(s, *duration) })
            }
        }
    }

    /// The floor this rule imposes at `now`, given the policy's `min` (the ramp's base).
    pub fn floor_at(&self, now: Timestamp, min: u32) -> Option<Floor> {
        let floor = |w: Window, capacity, ramping| Floor {
            rule: self.name.clone(),
            capacity,
            event_start: w.start,
            event_end: w.end,
            ramping,
        };
        // Full capacity from `start - lead` until `end`.
        if let Some(w) = self.window_starting_by(add(now, self.lead)) {
            if now < w.end {
                return Some(floor(w, self.capacity, false));
            }
        }
        // Ramping towards the next window.
        if self.ramp > Duration::ZERO {
            let w = self.window_starting_after(add(now, self.lead))?;
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
        let w = self.window_starting_after(add(now, self.lead))?;
        Some(sub(sub(w.start, self.lead), self.ramp))
    }
}

/// The highest floor of all the policy's rules at `now`, capped at nothing (the caller caps at
/// `max` and says so).
pub fn active_floor(policy: &Policy, now: Timestamp) -> Option<Floor> {
    policy
        .prewarm
        .iter()
        .filter_map(|r| r.floor_at(now, policy.min))
        .max_by(|a, b| a.capacity.cmp(&b.capacity).then_with(|| b.rule.cmp(&a.rule)))
}

/// The soonest instant after `now` at which any rule's floor starts rising.
pub fn next_activation(policy: &Policy, now: Timestamp) -> Option<Timestamp> {
    policy.prewarm.iter().filter_map(|r| r.next_activation(now)).filter(|t| *t > now).min()
}
