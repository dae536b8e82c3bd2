//! The composite-threshold rule: `Σ weight × min(value / target, cap)` over the metrics, against
//! an up and a down threshold, confirmed over consecutive metric *periods*.
//!
//! A period is a distinct datapoint time in the pool's history (the finest metric's periods);
//! at each, every metric counts with its newest datapoint at or before it (no older than
//! `history.max_age`). Counting periods, not evaluations, means a 30 s interval on a 1-minute
//! metric does not confirm twice on the same datapoint. Computed from the samples on every
//! call: no state of its own.
//!
//! Not here: what happens once the rule fires (steps, cooldowns, stabilisation: `decide.rs`).

use std::collections::BTreeSet;

use jiff::Timestamp;

use crate::history::PoolHistory;
use crate::policy::{Composite, Goal, Policy};

/// The rule's view at `now`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// The composite score of the newest period.
    pub score: f64,
    /// Consecutive periods (newest first) above `scale_up_above`.
    pub above: u32,
    /// Consecutive periods (newest first) below `scale_down_below`.
    pub below: u32,
}

/// The score at period time `t`: `None` when a weighted metric has no datapoint there.
fn score_at(policy: &Policy, history: &PoolHistory, t: Timestamp) -> Option<f64> {
    let mut sum = 0.0;
    for m in &policy.metrics {
        let divisor = match m.goal {
            Goal::Utilization { target } => target,
            Goal::PerInstance { target_per_instance } => target_per_instance,
        };
        let Some(s) = history.latest(&m.id, t, policy.history.max_age).filter(|s| s.value >= 0.0) else {
            if m.weight > 0.0 {
                return None;
            }
            continue;
        };
        let normalised = s.value / divisor;
        sum += m.weight * m.cap.map_or(normalised, |c| normalised.min(c));
    }
    sum.is_finite().then_some(sum)
}

/// The rule at `now`; `None` when the newest period has no complete reading (missing data).
pub(crate) fn evaluate(policy: &Policy, c: &Composite, history: &PoolHistory, now: Timestamp) -> Option<Outcome> {
    let times: BTreeSet<Timestamp> = policy
        .metrics
        .iter()
        .filter_map(|m| history.samples.get(&m.id))
        .flat_map(|s| s.iter().map(|s| s.at))
        .filter(|t| *t <= now)
        .collect();
    let newest = *times.last()?;
    // The newest period must itself be fresh.
    history
        .latest(&policy.metrics.first()?.id, now, policy.history.max_age)
        .or_else(|| policy.metrics.iter().find_map(|m| history.latest(&m.id, now, policy.history.max_age)))?;
    let score = score_at(policy, history, newest)?;
    let (mut above, mut below) = (0u32, 0u32);
    let (mut up_run, mut down_run) = (true, true);
    for t in times.iter().rev().take(usize::try_from(c.periods).unwrap_or(usize::MAX)) {
        let Some(s) = score_at(policy, history, *t) else { break };
        up_run &= s > c.scale_up_above;
        down_run &= c.scale_down_below.is_some_and(|d| s < d);
        above += u32::from(up_run);
        below += u32::from(down_run);
    }
    Some(Outcome { score, above, below })
}
