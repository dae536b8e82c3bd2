//! Scoring: each metric's reading (the per-instance value over the members in service during
//! its period), its ratio to target and the capacity it asks for, blended by weight (a
//! saturated metric is never averaged away), or the composite rule's proposal. Part of [`super::decide`].

use super::*;

/// Blended view of the metrics.
pub(super) struct Score {
    pub(super) readings: Vec<Reading>,
    pub(super) missing: Vec<String>,
    /// Capacity the metrics want, as a real number; `None` when no metric had data.
    pub(super) wanted: Option<f64>,
    pub(super) saturated: Option<(String, f64)>,
}

/// Instances in service while a datapoint's period ran, as the average utilisation it reports
/// was measured on them. Booting instances are not in service; a lagged datapoint gets the
/// counts of its own time, not today's.
///
/// The counts: at the period's start, as the last evaluation at or before it left the fleet
/// (a scale-down's stopped instances stop serving at once; a scale-up's are still booting);
/// as the evaluations within the period saw it; and at its end, as the first evaluation at or
/// after that moment saw it (records are time-ordered), or as it is now if that evaluation is
/// this one. When the count changed during the period, its average utilisation mixes a busy
/// smaller fleet with a calmer larger one: for a steady load `d`, the mean of `d / n` is `d`
/// times the mean of `1 / n`, so the load is the average utilisation times the harmonic mean
/// of the counts. (The count at the end alone took the calmer fleet for the whole period and
/// overshot after every scale-up: 8 in service at 100 % then 15 at 67 % read as 15 at 83 %,
/// asking for 23.) Moments with nothing in service carried no load and are left out.
///
/// A saturated datapoint (at or above the metric's `ceiling`) is the exception: the fleet was
/// busy through the period, so it reports what the fleet could carry, not the load, and the
/// load is at least what the largest fleet of the period carries at that utilisation. It is
/// scaled by the highest count (`saturated`): after a scale-up whose instances came into
/// service mid-period and are still saturated, the next step then answers at once instead of
/// a period later (and not with a blend of the old and the new fleet that is too small to be
/// above the fast threshold).
pub(super) fn serving_during(
    history: &PoolHistory,
    period_start: Timestamp,
    period_end: Timestamp,
    now_serving: u32,
    saturated: bool,
) -> f64 {
    let inside = history.records.partition_point(|r| r.at <= period_start);
    let end = history.records.partition_point(|r| r.at < period_end).max(inside);
    let at_end = history.records.get(end).map_or(now_serving, |r| r.serving);
    let at_start = inside.checked_sub(1).and_then(|i| history.records.get(i)).map(|r| match r.scaled {
        Some(Direction::Down) => r.serving.saturating_sub(r.current.saturating_sub(r.desired)),
        _ => r.serving,
    });
    let counts = at_start.into_iter().chain(history.records.range(inside..end).map(|r| r.serving)).chain([at_end]);
    let (mut n, mut inverse_sum, mut most) = (0.0, 0.0, 0u32);
    for c in counts.filter(|c| *c > 0) {
        n += 1.0;
        inverse_sum += 1.0 / f64::from(c);
        most = most.max(c);
    }
    if saturated {
        f64::from(most)
    } else if n > 0.0 {
        n / inverse_sum
    } else {
        0.0
    }
}

/// Whether `value` is at or above the metric's `ceiling`.
pub(super) fn saturates(m: &crate::policy::MetricSpec, value: f64) -> bool {
    m.ceiling.is_some_and(|c| value >= c)
}

pub(super) fn score_metrics(
    policy: &Policy,
    history: &PoolHistory,
    current: u32,
    serving: u32,
    now: Timestamp,
) -> Score {
    let cur = f64::from(current);
    let mut readings = Vec::with_capacity(policy.metrics.len());
    let mut missing = Vec::new();
    let (mut sum_w, mut sum_wanted) = (0.0, 0.0);
    let mut saturated: Option<(String, f64)> = None;
    let mut sat_wanted = f64::NEG_INFINITY;
    for m in &policy.metrics {
        let sample = history.latest(&m.id, now, policy.history.max_age);
        let value = sample.map(|s| s.value);
        // A negative utilisation or backlog cannot be measured: a broken metric. It counts as
        // missing (so it can never drive a scale-in), and its reading says why.
        let usable = value.filter(|v| *v >= 0.0);
        // Capacity this metric wants, and its ratio to current capacity.
        let wanted = usable.and_then(|v| match m.goal {
            // A utilisation was measured on the instances in service when it was sampled:
            // booting instances carry no load yet, and a lagged datapoint predates recent
            // changes. Scaling `current` instead would count booting capacity twice and
            // overshoot. Nothing in service: nothing measured, the metric counts as missing.
            Goal::Utilization { target } => {
                let base = sample.map_or(f64::from(serving), |s| {
                    serving_during(history, s.at, after(s.at, m.period), serving, saturates(m, v))
                });
                (current > 0 && base > 0.0).then(|| base * v / target)
            }
            Goal::PerInstance { target_per_instance } => Some(v.max(0.0) / target_per_instance),
        });
        // A capacity: never negative, never beyond u32, never NaN. Unbounded, extreme values
        // overflowed to infinities that blended into NaN (inf - inf, 0 * inf), a proposal of 0.
        let wanted = wanted.filter(|w| !w.is_nan()).map(|w| w.clamp(0.0, f64::from(u32::MAX)));
        let ratio = match (usable, m.goal) {
            (Some(v), Goal::Utilization { target }) => Some(v / target),
            (Some(_), Goal::PerInstance { .. }) if current > 0 => wanted.map(|w| w / cur),
            _ => None,
        };
        let is_saturated = value.is_some_and(|v| saturates(m, v));
        match wanted {
            Some(w) => {
                sum_w += m.weight;
                sum_wanted += m.weight * w;
                if is_saturated && w > sat_wanted {
                    sat_wanted = w;
                    saturated = Some((m.id.clone(), ratio.unwrap_or(f64::NAN)));
                }
            }
            None => missing.push(m.id.clone()),
        }
        let measured_on = match (usable, m.goal, sample) {
            (Some(_), Goal::Utilization { .. }, Some(s)) => {
                Some(serving_during(history, s.at, after(s.at, m.period), serving, saturates(m, s.value)))
            }
            _ => None,
        };
        readings.push(Reading {
            metric: m.id.clone(),
            value,
            sampled_at: sample.map(|s| s.at),
            ratio,
            weight: m.weight,
            saturated: is_saturated,
            goal: m.goal,
            wanted,
            measured_on,
            missing: sample.is_none().then(|| crate::reasons::why_missing(m, history, now, policy.history.max_age)),
        });
    }
    // Weight-zero metrics count only when saturated; with no weighted data the blend is the
    // saturated metric alone.
    let blended = if sum_w > 0.0 { Some(sum_wanted / sum_w) } else { None };
    let wanted = match (blended, saturated.is_some()) {
        (Some(b), true) if sat_wanted > b => Some(sat_wanted),
        (Some(b), true) => {
            saturated = None; // the blend already asks for more: nothing to report
            Some(b)
        }
        (Some(b), false) => Some(b),
        (None, true) => Some(sat_wanted),
        (None, false) => None,
    };
    Score { readings, missing, wanted, saturated }
}

/// The composite rule's proposal: one `max_step` up after `periods` consecutive periods above
/// `scale_up_above`, one down after as many below `scale_down_below`, else the current capacity.
pub(super) fn composite_proposal(
    c: &crate::policy::Composite,
    o: Option<&crate::composite::Outcome>,
    current: u32,
    policy: &Policy,
    bounds: &mut Vec<Bound>,
) -> u32 {
    let Some(o) = o else {
        bounds.push(Bound::CompositeHold { score: None });
        return current;
    };
    let needed = c.periods;
    if o.score > c.scale_up_above {
        bounds.push(Bound::Composite { score: o.score, threshold: c.scale_up_above, up: true, seen: o.above, needed });
        if o.above >= needed {
            return current.saturating_add(policy.scaling.scale_up.max_step.limit(current)).max(1);
        }
    } else if let Some(down) = c.scale_down_below.filter(|d| o.score < *d) {
        bounds.push(Bound::Composite { score: o.score, threshold: down, up: false, seen: o.below, needed });
        if o.below >= needed {
            return current.saturating_sub(policy.scaling.scale_down.max_step.limit(current));
        }
    } else {
        bounds.push(Bound::CompositeHold { score: Some(o.score) });
    }
    current
}
