//! The decision: one pure function from (policy, history, fleet, now) to what to do and why.
//!
//! The daemon, `vmscaler plan` and the backtest all call [`decide`]; nothing else decides.
//! The steps, in order (the README's "How vmscaler decides" section says the same):
//! 1. each metric's newest datapoint (no older than `history.max_age`) becomes a ratio to its
//!    target; ratios blend by weight into a score; a metric at or above its `ceiling` is
//!    saturated and its own ratio wins if higher than the blend;
//! 2. outside the tolerance band, the proposal is `ceil(current * score)`;
//! 3. up: confirmed over `confirmations` consecutive evaluations (or at once when the score
//!    reaches `fast_threshold`), then the scale-up cooldown and step limit;
//! 4. down: never with missing data; only to the highest proposal over the stabilisation window
//!    (and only once the window has been observed), then the scale-down cooldown (from the last
//!    action of either direction) and step limit; with `confirmed_stabilization`, a window in
//!    which no evaluation asked for more than the current capacity confirms the descent: only
//!    its recent part counts, no step limit;
//! 5. the active pre-warm floor (unless its `release_after` released it: nothing asked for it
//!    lately), then `[min, max]`, then the Auto Scaling group's own bounds;
//! 6. concrete actions that never touch a member in transit or a protected member.

use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::duration::{Human, after};
use crate::fleet::{Fleet, Member, MemberState};
use crate::forecast::{Forecaster, Unavailable};
use crate::history::{Direction, EvalRecord, PoolHistory};
use crate::policy::{Adopt, Goal, MissingData, Policy, PredictiveMode, ScaleInOrder, ScaleOutOrder};
use crate::schedule::{self, Floor, ScheduleCache};

mod actions;
mod gates;
mod scoring;

pub use actions::sort_for_start;
use actions::*;
use gates::*;
use scoring::*;

/// What one evaluation decided, and why. Data only: the caller carries out `actions`.
#[must_use = "a decision does nothing until its actions are carried out"]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub policy: String,
    pub at: Timestamp,
    pub current: u32,
    /// Instances in service (running, not booting): what a utilisation was measured on.
    pub serving: u32,
    pub desired: u32,
    /// Blended score (1.0 = on target); `None` when no metric had data or capacity was zero.
    pub score: Option<f64>,
    /// Capacity the metrics alone asked for, before any guard.
    pub proposal: u32,
    pub readings: Vec<Reading>,
    /// The pre-warm floor that holds now; one its `release_after` released is in `bounds`.
    pub floor: Option<Floor>,
    /// Every rule or guard that shaped `desired`, in the order applied.
    pub bounds: Vec<Bound>,
    pub actions: Vec<Action>,
    /// Instances wanted but not available (warm pool empty).
    pub shortfall: u32,
    pub next_evaluation: Timestamp,
}

/// One metric's contribution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    pub metric: String,
    pub value: Option<f64>,
    pub sampled_at: Option<Timestamp>,
    /// Value relative to target (utilisation), or wanted capacity relative to current (backlog).
    pub ratio: Option<f64>,
    pub weight: f64,
    pub saturated: bool,
    /// What the metric is measured against.
    pub goal: Goal,
    /// The capacity this metric alone asked for.
    pub wanted: Option<f64>,
    /// For a utilisation: the instances in service it was measured on (a harmonic mean).
    pub measured_on: Option<f64>,
    /// Without data: the query, and why its newest datapoint (if any) was not used.
    pub missing: Option<String>,
}

/// A rule or guard that bound the result.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "guard")]
pub enum Bound {
    WithinTolerance {
        score: f64,
        tolerance: f64,
    },
    Saturated {
        metric: String,
        ratio: f64,
    },
    AwaitingConfirmation {
        seen: u32,
        needed: u32,
    },
    FastScaleUp {
        score: f64,
        threshold: f64,
    },
    CooldownUp {
        remaining_secs: u64,
    },
    StepUp {
        limit: u32,
    },
    MissingData {
        metrics: Vec<String>,
        rule: MissingData,
    },
    NoScaleInWithMissingData {
        metrics: Vec<String>,
    },
    Stabilizing {
        observed_secs: u64,
        window_secs: u64,
    },
    Stabilized {
        highest: u32,
    },
    /// No evaluation asked for more than the current capacity for a whole stabilisation
    /// window: down to the highest proposal of the recent `recent_secs`, without a step limit.
    ConfirmedDescent {
        recent_secs: u64,
        highest: u32,
    },
    CooldownDown {
        remaining_secs: u64,
    },
    StepDown {
        limit: u32,
    },
    Floor {
        rule: String,
        capacity: u32,
    },
    FloorAboveMax {
        rule: String,
        capacity: u32,
        max: u32,
    },
    /// A pre-warm rule's `release_after` released its floor: no evaluation since `since` asked
    /// for `capacity` (the floor, capped at `max`).
    FloorReleased {
        rule: String,
        capacity: u32,
        since: Timestamp,
    },
    /// The forecast floor (`predictive:`): the quantile forecast over `[now, now + lead]`,
    /// capped at `max`. `applied`: the floor raised `desired` (only in `active` mode).
    Forecast {
        capacity: u32,
        forecast: f64,
        quantile: f64,
        peak_at: Timestamp,
        mode: PredictiveMode,
        applied: bool,
    },
    /// `predictive:` is set but gives no floor now, and why.
    /// A scale-down held: the fleet is within the tolerance band above the forecast floor.
    NearForecastFloor {
        capacity: u32,
        tolerance: f64,
    },
    ForecastUnavailable {
        why: Unavailable,
    },
    /// A firing alert (see [`AlertFloor`]) holds this floor.
    AlertFloor {
        alert: String,
        capacity: u32,
    },
    AlertFloorAboveMax {
        alert: String,
        capacity: u32,
        max: u32,
    },
    Min {
        min: u32,
    },
    Max {
        max: u32,
    },
    /// The fleet is above `max` (a pool adopted as found, or a lowered `max`): the descent
    /// to it goes through the scale-down step limit and cooldown (policy `adopt: gradual`).
    /// `first` when the pool has no history yet: its first evaluation.
    AboveMax {
        current: u32,
        max: u32,
        first: bool,
    },
    GroupMin {
        min: u32,
    },
    GroupMax {
        max: u32,
    },
    GroupBoundsInvalid {
        min: u32,
        max: u32,
    },
    ActivityInProgress,
    Protected {
        kept: u32,
    },
    WarmPoolShort {
        shortfall: u32,
    },
    /// The composite rule: its score against a threshold, for `seen` of `needed` periods.
    Composite {
        score: f64,
        threshold: f64,
        up: bool,
        seen: u32,
        needed: u32,
    },
    /// `freeze_scale_in`: no scale-in while this rule's floor is in force.
    ScaleInFrozen {
        rule: String,
    },
    /// The composite rule's score between its thresholds, or incomplete (`score: None`).
    CompositeHold {
        score: Option<f64>,
    },
}

/// A concrete change to the fleet (persisted by the daemon as a pending intent).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "action")]
pub enum Action {
    Start {
        instance_ids: Vec<String>,
    },
    Stop {
        instance_ids: Vec<String>,
    },
    SetDesiredCapacity {
        group: String,
        desired: u32,
    },
    /// Bring draining members back into service (register them in their target groups again)
    /// instead of stopping them: cheaper than starting a stopped member, and at once.
    CancelDrain {
        instance_ids: Vec<String>,
    },
}

impl Decision {
    /// Which direction this decision scales the fleet, if any action was issued.
    pub fn direction(&self) -> Option<Direction> {
        if self.actions.is_empty() || self.desired == self.current {
            None
        } else if self.desired > self.current {
            Some(Direction::Up)
        } else {
            Some(Direction::Down)
        }
    }

    /// What later evaluations need to remember of this one.
    pub fn record(&self, tolerance: f64) -> EvalRecord {
        EvalRecord {
            at: self.at,
            score: self.score,
            above_band: match self.score {
                Some(s) => s > 1.0 + tolerance,
                None => self.proposal > self.current,
            },
            proposal: self.proposal,
            current: self.current,
            serving: self.serving,
            desired: self.desired,
            scaled: self.direction(),
            dry_run: false,
        }
    }

    /// The capacity the metrics asked for, unrounded (`score × current`), and when it was
    /// measured (the newest reading's period start, not the evaluation time: a metric arrives
    /// a period and a lag late, and the forecast must learn when the load came). What the
    /// forecast learns from; `None` when every metric was missing.
    pub fn demand(&self) -> Option<(Timestamp, f64)> {
        if self.bounds.iter().any(|b| matches!(b, Bound::MissingData { .. })) {
            return None;
        }
        let at = self.readings.iter().filter_map(|r| r.sampled_at).max().unwrap_or(self.at).min(self.at);
        match self.score {
            Some(s) => Some((at, s * f64::from(self.current))),
            None => Some((at, f64::from(self.proposal))),
        }
    }

    /// The forecast floor this decision computed, if any: `(capacity, applied)`.
    pub fn forecast_floor(&self) -> Option<(u32, bool)> {
        self.bounds.iter().find_map(|b| match b {
            Bound::Forecast { capacity, applied, .. } => Some((*capacity, *applied)),
            _ => None,
        })
    }

    /// Human-readable reasons: each metric, then each guard.
    pub fn reasons(&self) -> Vec<String> {
        let mut out: Vec<String> = self.readings.iter().map(ToString::to_string).collect();
        if let Some(s) = self.score {
            out.push(format!("score {s:.3} -> proposal {} (current {})", self.proposal, self.current));
        }
        out.extend(self.bounds.iter().map(ToString::to_string));
        out
    }
}

impl fmt::Display for Reading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (m, w) = (&self.metric, self.weight);
        match (self.value, self.ratio, self.wanted, self.goal) {
            (Some(v), _, _, _) if v < 0.0 => write!(f, "{m}: {v:.2} is negative: counted as missing")?,
            (Some(v), Some(r), Some(want), Goal::Utilization { target }) => {
                let on = crate::reasons::count(self.measured_on.unwrap_or(0.0));
                write!(
                    f,
                    "{m}: {v:.2} against target {target} -> wants {want:.1} (ratio {r:.3} of {on} serving, weight {w})"
                )?;
            }
            (Some(v), _, Some(want), Goal::PerInstance { target_per_instance }) => {
                write!(f, "{m}: {v:.2} against {target_per_instance} per instance -> wants {want:.1} (weight {w})")?;
            }
            (Some(v), Some(r), None, _) => write!(f, "{m}: {v:.2} (ratio {r:.3}, weight {w})")?,
            (Some(v), None, _, _) => write!(f, "{m}: {v:.2} (weight {w})")?,
            (None, ..) => match &self.missing {
                Some(why) => write!(f, "{m}: no data {why}")?,
                None => write!(f, "{m}: no data")?,
            },
        }
        if self.saturated {
            f.write_str(", saturated")?;
        }
        Ok(())
    }
}

impl fmt::Display for Bound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = |s: &u64| Human(Duration::from_secs(*s));
        match self {
            Bound::WithinTolerance { score, tolerance } => {
                write!(f, "score {score:.3} within tolerance ±{tolerance}: hold")
            }
            Bound::Saturated { metric, ratio } => {
                write!(f, "{metric} saturated: its ratio {ratio:.3} drives the score")
            }
            Bound::AwaitingConfirmation { seen, needed } => {
                write!(f, "scale-up awaiting confirmation ({seen}/{needed} evaluations above band)")
            }
            Bound::FastScaleUp { score, threshold } => {
                write!(f, "score {score:.3} >= fast threshold {threshold}: scale up without confirmation")
            }
            Bound::CooldownUp { remaining_secs } => write!(f, "scale-up cooldown: {} left", secs(remaining_secs)),
            Bound::StepUp { limit } => write!(f, "scale-up step limited to +{limit}"),
            Bound::MissingData { metrics, rule } => {
                write!(f, "no data for {}: missing-data rule {rule:?}", metrics.join(", "))
            }
            Bound::NoScaleInWithMissingData { metrics } => {
                write!(f, "no scale-in while data is missing for {}", metrics.join(", "))
            }
            Bound::Stabilizing { observed_secs, window_secs } => write!(
                f,
                "scale-down waits for a full stabilisation window (observed {} of {})",
                secs(observed_secs),
                secs(window_secs)
            ),
            Bound::Stabilized { highest } => {
                write!(f, "scale-down limited to {highest}, the highest proposal in the stabilisation window")
            }
            Bound::ConfirmedDescent { recent_secs, highest } => write!(
                f,
                "nothing asked for more than the current capacity for a whole stabilisation window: descent \
                 confirmed, down to {highest} (the highest proposal of the last {}) without a step limit",
                secs(recent_secs)
            ),
            Bound::CooldownDown { remaining_secs } => write!(f, "scale-down cooldown: {} left", secs(remaining_secs)),
            Bound::StepDown { limit } => write!(f, "scale-down step limited to -{limit}"),
            Bound::Floor { rule, capacity } => write!(f, "pre-warm rule {rule:?} holds a floor of {capacity}"),
            Bound::FloorAboveMax { rule, capacity, max } => {
                write!(f, "pre-warm rule {rule:?} asks for {capacity}, capped at max {max}")
            }
            Bound::FloorReleased { rule, capacity, since } => write!(
                f,
                "pre-warm rule {rule:?} released: nothing has asked for its floor of {capacity} since {since}"
            ),
            Bound::Forecast { capacity, forecast, quantile, peak_at, mode, applied } => {
                write!(
                    f,
                    "forecast floor {capacity} (median {forecast:.2}, p{:.0} for the slot at {peak_at})",
                    quantile * 100.0
                )?;
                match (mode, applied) {
                    (PredictiveMode::Active, true) => f.write_str(": raised"),
                    (PredictiveMode::Active, false) => f.write_str(": already met"),
                    (PredictiveMode::ForecastOnly, _) => f.write_str(": forecast_only, not applied"),
                }
            }
            Bound::NearForecastFloor { capacity, tolerance } => write!(
                f,
                "within +{tolerance} of the forecast floor {capacity}: no scale-down until the floor falls further"
            ),
            Bound::ForecastUnavailable { why } => write!(f, "no forecast floor: {why}"),
            Bound::AlertFloor { alert, capacity } => write!(f, "alert {alert:?} holds a floor of {capacity}"),
            Bound::AlertFloorAboveMax { alert, capacity, max } => {
                write!(f, "alert {alert:?} asks for {capacity}, capped at max {max}")
            }
            Bound::Min { min } => write!(f, "raised to min {min}"),
            Bound::Max { max } => write!(f, "capped at max {max}"),
            Bound::AboveMax { current, max, first: true } => write!(
                f,
                "adopting a pool of {current} above max {max}: brought down through the scale-down step limit and \
                 cooldown (adopt: gradual)"
            ),
            Bound::AboveMax { current, max, first: false } => write!(
                f,
                "a pool of {current} above max {max}: brought down through the scale-down step limit and cooldown \
                 (adopt: gradual)"
            ),
            Bound::GroupMin { min } => write!(f, "raised to the group's min {min}"),
            Bound::GroupMax { max } => write!(f, "capped at the group's max {max}"),
            Bound::GroupBoundsInvalid { min, max } => {
                write!(f, "the group's min {min} is above its max {max}: no action until it is fixed")
            }
            Bound::ActivityInProgress => f.write_str("a scaling activity of the group is in progress: no new action"),
            Bound::Protected { kept } => write!(f, "{kept} member(s) kept: protected or in transit"),
            Bound::WarmPoolShort { shortfall } => write!(f, "warm pool short by {shortfall} instance(s)"),
            Bound::Composite { score, threshold, up, seen, needed } => {
                let side = if *up { "above" } else { "below" };
                if seen >= needed {
                    let what = if *up { "scale up" } else { "scale down" };
                    write!(f, "composite score {score:.3} {side} {threshold} for {seen} consecutive periods: {what}")
                } else {
                    write!(f, "composite score {score:.3} {side} {threshold} for {seen} of {needed} periods: hold")
                }
            }
            Bound::ScaleInFrozen { rule } => write!(f, "scale-in frozen while pre-warm rule {rule:?} is in force"),
            Bound::CompositeHold { score: Some(s) } => write!(f, "composite score {s:.3} between its thresholds: hold"),
            Bound::CompositeHold { score: None } => f.write_str(
                "composite score incomplete (a weighted metric has no datapoint in the newest period): hold",
            ),
        }
    }
}

/// `ceil` into a capacity, tolerating float noise and saturating (NaN and negatives are 0).
pub(crate) fn ceil_u32(x: f64) -> u32 {
    // Tolerate float noise such as 4 * 1.25 = 5.000000000000001.
    let c = (x - 1e-9).ceil();
    if c.is_nan() || c <= 0.0 {
        0
    } else if c >= f64::from(u32::MAX) {
        u32::MAX
    } else {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let n = c as u32;
        n
    }
}

/// A capacity floor raised from outside the policy while an alert fires (Alertmanager's
/// webhook, in the daemon): data handed to [`decide_with`], applied after the pre-warm floor
/// and before `[min, max]`, never above `max`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertFloor {
    /// The alert's name (and what tells it apart), for reasons.
    pub alert: String,
    pub capacity: u32,
}

/// Decides what one pool should do at `now`.
///
/// `history` holds the pool's recent metric samples (per-instance series already aggregated)
/// and the records of previous decisions. Pure: same inputs, same decision.
pub fn decide(policy: &Policy, history: &PoolHistory, fleet: &Fleet, now: Timestamp) -> Decision {
    decide_with(policy, history, fleet, None, &[], now)
}

/// [`decide`] with the pool's [`Forecaster`] (kept beside its history), for a policy with a
/// `predictive:` block, and the floors of the alerts firing for this pool (the highest one
/// holds). Each floor joins the others: it raises, never lowers, capped at `max`; a forecast
/// floor in `forecast_only` mode is only reported.
pub fn decide_with(
    policy: &Policy,
    history: &PoolHistory,
    fleet: &Fleet,
    forecaster: Option<&Forecaster>,
    alerts: &[AlertFloor],
    now: Timestamp,
) -> Decision {
    decide_in(policy, history, fleet, forecaster, alerts, now, &ScheduleCache::default())
}

/// [`decide_with`], remembering cron occurrences in `cache` (see [`crate::cycle::PoolCycle`]).
pub(crate) fn decide_in(
    policy: &Policy,
    history: &PoolHistory,
    fleet: &Fleet,
    forecaster: Option<&Forecaster>,
    alerts: &[AlertFloor],
    now: Timestamp,
    cache: &ScheduleCache,
) -> Decision {
    let current = fleet.current();
    let scaling = &policy.scaling;
    let tol = scaling.tolerance;
    let mut bounds = Vec::new();
    let serving = fleet.serving();
    let s = score_metrics(policy, history, current, serving, now);
    let score = match s.wanted {
        Some(w) if current > 0 => Some(w / f64::from(current)),
        _ => None,
    };
    if let Some((metric, ratio)) = &s.saturated {
        bounds.push(Bound::Saturated { metric: metric.clone(), ratio: *ratio });
    }

    // The composite-threshold rule, when the policy has one, proposes instead of the blend.
    let composite = policy.composite.as_ref().map(|c| (c, crate::composite::evaluate(policy, c, history, now)));
    let score = match &composite {
        Some((_, o)) => o.as_ref().map(|o| o.score),
        None => score,
    };
    // 1-2. Proposal from the score, or from the missing-data rule.
    let from_composite = match &composite {
        Some((c, o)) if s.wanted.is_some() => Some(composite_proposal(c, o.as_ref(), current, policy, &mut bounds)),
        _ => None,
    };
    let (proposal, from_missing_rule) = match (s.wanted, score) {
        _ if from_composite.is_some() => (from_composite.unwrap_or(current), false),
        (None, _) => {
            bounds.push(Bound::MissingData { metrics: s.missing.clone(), rule: policy.missing_data });
            let p = match policy.missing_data {
                MissingData::Hold => current,
                MissingData::ScaleUp => current.saturating_add(scaling.scale_up.max_step.limit(current)),
                MissingData::Fixed(n) => current.max(n),
            };
            (p, true)
        }
        (Some(_), Some(sc)) if (sc - 1.0).abs() <= tol => {
            bounds.push(Bound::WithinTolerance { score: sc, tolerance: tol });
            (current, false)
        }
        (Some(w), _) => (ceil_u32(w), false),
    };

    let mut desired = current;
    if proposal > current {
        // 3. Scale up.
        let needed = scaling.scale_up.confirmations.max(1);
        let fast = match (scaling.scale_up.fast_threshold, score) {
            (Some(t), Some(sc)) if sc >= t => Some((sc, t)),
            // From zero capacity there is no ratio: any demand is a flash crowd.
            (Some(t), None) if !from_missing_rule => Some((f64::INFINITY, t)),
            _ => None,
        };
        let seen = 1 + confirming_records(history, policy.interval, now);
        let confirmed = from_missing_rule || from_composite.is_some() || seen >= needed;
        if let Some((sc, t)) = fast.filter(|_| !confirmed)
            && sc.is_finite()
        {
            bounds.push(Bound::FastScaleUp { score: sc, threshold: t });
        }
        if !confirmed && fast.is_none() {
            bounds.push(Bound::AwaitingConfirmation { seen, needed });
        } else if let Some(left) =
            history.last_scaled(Direction::Up).and_then(|r| remaining(r.at, scaling.scale_up.cooldown, now))
        {
            bounds.push(Bound::CooldownUp { remaining_secs: left });
        } else {
            let limit = scaling.scale_up.max_step.limit(current);
            desired = proposal.min(current.saturating_add(limit));
            if desired < proposal {
                bounds.push(Bound::StepUp { limit });
            }
        }
    } else if proposal < current {
        // 4. Scale down.
        let window = scaling.scale_down.stabilization;
        let streak = descent_streak(history);
        let from = crate::duration::before(now, window);
        let observed_since = history.records.iter().find(|r| r.at >= from).map(|r| r.at);
        // A window counts as observed when its first record is within one interval of its start.
        let slack = policy.interval.max(Duration::from_secs(1));
        let observed = observed_since.map_or(Duration::ZERO, |t| now.duration_since(t).unsigned_abs());
        let highest_since = |t: Timestamp| {
            history.records.iter().filter(|r| r.at >= t).map(|r| r.proposal).max().unwrap_or(0).max(proposal)
        };
        // A confirmed descent: for a whole window the load has not asked for more than the
        // fleet now has (every evaluation in it scored; none above its band for a capacity
        // above the current one: a rise the fleet has since been scaled up to is answered).
        // The window has done its job; only its recent part bounds the step.
        let asked_for_more = |r: &EvalRecord| r.score.is_none() || (r.above_band && r.proposal > current);
        let confirmed = scaling.scale_down.confirmed_stabilization.filter(|_| {
            window > Duration::ZERO && !history.records.iter().filter(|r| r.at >= from).any(asked_for_more)
        });
        let highest = match confirmed {
            Some(recent) => highest_since(crate::duration::before(now, recent)),
            None => highest_since(from),
        };
        if !s.missing.is_empty() {
            bounds.push(Bound::NoScaleInWithMissingData { metrics: s.missing.clone() });
        } else if window > Duration::ZERO && observed + slack < window {
            bounds.push(Bound::Stabilizing { observed_secs: observed.as_secs(), window_secs: window.as_secs() });
        } else if highest >= current {
            bounds.push(Bound::Stabilized { highest });
        } else if let Some(left) = history
            .records
            .iter()
            .rev()
            .find(|r| r.scaled.is_some())
            .and_then(|r| remaining(r.at, down_cooldown(policy, streak), now))
        {
            bounds.push(Bound::CooldownDown { remaining_secs: left });
        } else if let Some(recent) = confirmed {
            bounds.push(Bound::ConfirmedDescent { recent_secs: recent.as_secs(), highest });
            desired = highest;
        } else {
            if highest > proposal {
                bounds.push(Bound::Stabilized { highest });
            }
            let limit = down_step_limit(policy, streak, current);
            desired = highest.max(current.saturating_sub(limit));
            if desired > highest {
                bounds.push(Bound::StepDown { limit });
            }
        }
    }

    // 5. Floor, policy bounds, group bounds.
    let (floor, released) = schedule::holding_floor(policy, history, proposal, now, cache);
    for r in released {
        bounds.push(Bound::FloorReleased { rule: r.rule, capacity: r.capacity, since: r.since });
    }
    if let Some(f) = &floor {
        let cap = f.capacity.min(policy.max);
        if f.capacity > policy.max {
            bounds.push(Bound::FloorAboveMax { rule: f.rule.clone(), capacity: f.capacity, max: policy.max });
        }
        if desired < cap {
            desired = cap;
            bounds.push(Bound::Floor { rule: f.rule.clone(), capacity: cap });
        }
        if policy.freeze_scale_in && desired < current && current <= policy.max {
            desired = current;
            bounds.push(Bound::ScaleInFrozen { rule: f.rule.clone() });
        }
    }
    if let Some(spec) = &policy.predictive {
        let held = forecaster
            .map_or(Err(Unavailable::NoModel), |f| f.outlook_held(spec, now, scaling.scale_down.stabilization));
        match held {
            Ok(o) => {
                let capacity = o.capacity.min(policy.max);
                let active = spec.mode == PredictiveMode::Active;
                // Above the floor, the floor has the upper half of the metrics' tolerance band:
                // a fleet within `[floor, floor × (1 + tolerance)]` is not lowered by the metrics
                // (the next slot would raise it again). Below the floor it is raised to it; a
                // descent from above the band stops at the floor.
                let high = f64::from(capacity) * (1.0 + tol);
                let below = active && desired < capacity;
                let near = below && (f64::from(capacity)..=high).contains(&f64::from(current));
                let applied = below && !near;
                if applied {
                    desired = capacity;
                }
                bounds.push(Bound::Forecast {
                    capacity,
                    forecast: o.forecast,
                    quantile: o.quantile,
                    peak_at: o.peak_at,
                    mode: spec.mode,
                    applied,
                });
                if near {
                    // The metrics want less than the floor and the fleet is in the band above
                    // it: this is a scale-down, held.
                    desired = current;
                    bounds.push(Bound::NearForecastFloor { capacity, tolerance: tol });
                }
            }
            Err(why) => bounds.push(Bound::ForecastUnavailable { why }),
        }
    }
    if let Some(a) = alerts.iter().max_by(|a, b| a.capacity.cmp(&b.capacity).then_with(|| b.alert.cmp(&a.alert))) {
        let cap = a.capacity.min(policy.max);
        if a.capacity > policy.max {
            bounds.push(Bound::AlertFloorAboveMax { alert: a.alert.clone(), capacity: a.capacity, max: policy.max });
        }
        if desired < cap {
            desired = cap;
            bounds.push(Bound::AlertFloor { alert: a.alert.clone(), capacity: cap });
        }
    }
    if desired < policy.min {
        desired = policy.min;
        bounds.push(Bound::Min { min: policy.min });
    }
    if desired > policy.max {
        desired = policy.max;
        bounds.push(Bound::Max { max: policy.max });
    }
    if current > policy.max && desired < current && policy.adopt == Adopt::Gradual {
        // A fleet found above `max` (a first evaluation of a pool someone else sized, or a
        // lowered `max`) descends like any other: a stopped fleet is a worse surprise than a
        // large one, and the step limit bounds how wrong a mistaken policy can be per cooldown.
        bounds.push(Bound::AboveMax { current, max: policy.max, first: history.records.is_empty() });
        let streak = descent_streak(history);
        let cooling = history
            .records
            .iter()
            .rev()
            .find(|r| r.scaled.is_some())
            .and_then(|r| remaining(r.at, down_cooldown(policy, streak), now));
        if let Some(left) = cooling {
            desired = current;
            if !bounds.iter().any(|b| matches!(b, Bound::CooldownDown { .. })) {
                bounds.push(Bound::CooldownDown { remaining_secs: left });
            }
        } else {
            let limit = down_step_limit(policy, streak, current);
            if desired < current.saturating_sub(limit) {
                desired = current.saturating_sub(limit);
                if !bounds.iter().any(|b| matches!(b, Bound::StepDown { .. })) {
                    bounds.push(Bound::StepDown { limit });
                }
            }
        }
    }
    if let Fleet::Group(g) = fleet
        && g.min > g.max
    {
        // AWS would reject any desired capacity for such a group: hold, and say why.
        desired = current;
        bounds.push(Bound::GroupBoundsInvalid { min: g.min, max: g.max });
    } else if let Fleet::Group(g) = fleet {
        if desired < g.min {
            desired = g.min;
            bounds.push(Bound::GroupMin { min: g.min });
        }
        if desired > g.max {
            desired = g.max;
            bounds.push(Bound::GroupMax { max: g.max });
        }
    }

    // 6. Actions.
    let (actions, shortfall) = plan_actions(policy, fleet, current, &mut desired, &mut bounds);

    let mut next = after(now, policy.interval);
    if let Some(t) = schedule::next_activation_in(policy, now, cache) {
        next = next.min(t);
    }
    Decision {
        policy: policy.name.clone(),
        at: now,
        current,
        serving,
        desired,
        score,
        proposal,
        readings: s.readings,
        floor,
        bounds,
        actions,
        shortfall,
        next_evaluation: next,
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod bad_input_tests;

#[cfg(test)]
mod reason_tests;

#[cfg(test)]
mod composite_tests;

#[cfg(test)]
mod alert_tests;
