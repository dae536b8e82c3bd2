//! The reference strategies a policy is compared with. See the module docs of
//! [`crate::backtest`] for what each one models and where its parameters come from.
//!
//! `hpa` and `target-tracking` run in the same simulator as the policy and read the same
//! CPU signal (mean CPU % of the serving instances, delivered `metric_lag` late); `static` and
//! `oracle` need no simulation: their fleets follow from the whole trace.
//!
//! Not here: the policy's own controller (`policy_run.rs`).

use std::collections::VecDeque;

use serde::Serialize;

use super::metrics::{Recorder, RowSink, SupplyRow};
use super::sim::{Controller, PipelineSpec, Pool, Signal, Stat};
use crate::decide::ceil_u32;

/// Bounds and target shared by every strategy (the policy's).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Limits {
    pub min: u32,
    pub max: u32,
    /// CPU target in %.
    pub target: f64,
}

impl Limits {
    fn clamp(&self, n: u32) -> u32 {
        n.clamp(self.min, self.max.max(self.min))
    }
}

// ---------------------------------------------------------------------------------------------
// Kubernetes HorizontalPodAutoscaler (autoscaling/v2), default settings. Sources:
// [controller] kubernetes/kubernetes pkg/controller/podautoscaler/horizontal.go
//   (`reconcileAutoscaler`, `stabilizeRecommendationWithBehaviors`,
//   `convertDesiredReplicasWithBehaviorRate`, `getReplicasChangePerPeriod`);
// [calculator] pkg/controller/podautoscaler/replica_calculator.go (`GetResourceReplicas`,
//   `groupPods`);
// [defaults] pkg/apis/autoscaling/v2/defaults.go (`GenerateHPAScaleUpRules`,
//   `GenerateHPAScaleDownRules`) and the kube-controller-manager flags
//   `--horizontal-pod-autoscaler-{sync-period,tolerance,cpu-initialization-period}`;
// [docs] kubernetes.io "Horizontal Pod Autoscaling" (algorithm details, default behavior).

/// `--horizontal-pod-autoscaler-sync-period` default: the controller reconciles every 15 s.
pub const HPA_SYNC_MS: i64 = 15_000;
/// `--horizontal-pod-autoscaler-tolerance` default: no change while `|1 - ratio| <= 0.1`.
pub const HPA_TOLERANCE: f64 = 0.1;
/// `behavior.scaleDown.stabilizationWindowSeconds` default 300 [defaults]: scale down only to
/// the highest recommendation of the last 300 s.
pub const HPA_DOWN_STABILIZATION_MS: i64 = 300_000;
/// `behavior.scaleUp.stabilizationWindowSeconds` default 0 [defaults]: scale up at once.
pub const HPA_UP_STABILIZATION_MS: i64 = 0;
/// Default scale-up policies [defaults]: `Percent 100` and `Pods 4`, each per 15 s,
/// `selectPolicy: Max`: at most `max(2 x, x + 4)` replicas, `x` the replicas at the start of the
/// 15 s period.
pub const HPA_UP_PERCENT: u32 = 100;
pub const HPA_UP_PODS: u32 = 4;
pub const HPA_POLICY_PERIOD_MS: i64 = 15_000;
/// Default scale-down policy [defaults]: `Percent 100` per 15 s, i.e. no rate limit.
pub const HPA_DOWN_PERCENT: u32 = 100;

/// The Kubernetes HPA on the pool's mean CPU %, scaling `spec.replicas` (= billed instances;
/// every started instance is a pod).
///
/// Per evaluation (every [`HPA_SYNC_MS`]), with the newest CPU datapoint (a 15 s average,
/// metrics-server's default `--metric-resolution`, delivered `metric_lag` late):
/// 1. Pods [calculator `groupPods`]: a booting instance is `Pending`, hence *unready*; a pod
///    inside its CPU initialisation period (`--horizontal-pod-autoscaler-cpu-initialization-period`,
///    5 min) is also unready while its sample was taken before one metric window had passed
///    since it became ready (`metric.Timestamp < readyTransition + metric.Window`). With a sample
///    covering `[at, at + 15 s]` that is: *ready* = in service since `at` or earlier. No ready
///    pod with a sample: the controller gets an error and does not scale (nor records a
///    recommendation). All pods that serve publish metrics, so no pod is *missing*.
/// 2. Replica calculator [calculator `GetResourceReplicas`]: `ratio = utilisation / target`
///    over the ready pods. Without unready pods, or when scaling down: within the tolerance keep
///    `spec.replicas`, else `ceil(ratio × ready)` (unready pods are left out of a scale-down).
///    Scaling up with unready pods: they count as 0 % busy, `ratio' = utilisation × ready /
///    (target × pods)`; within the tolerance, or `ratio' < 1` (a change of direction), keep
///    `spec.replicas`, else `ceil(ratio' × pods)`, never below `spec.replicas`.
/// 3. Stabilisation [controller `stabilizeRecommendationWithBehaviors`]: up to the lowest
///    recommendation of the last 0 s (i.e. this one), down only to the highest of the last 300 s.
/// 4. Rate limits and bounds [controller `convertDesiredReplicasWithBehaviorRate`]: up by at
///    most `max(+100 %, +4)` of the replicas at the start of the last 15 s; down unlimited
///    (100 % per 15 s); then `[minReplicas, maxReplicas]`.
#[derive(Debug)]
pub struct Hpa {
    limits: Limits,
    next: i64,
    /// Newest datapoint: (sample start, CPU %).
    latest: Option<(i64, f64)>,
    /// Recommendations of the last 300 s, for scale-down stabilisation.
    recs: VecDeque<(i64, u32)>,
    /// Replica changes within the last policy period: (time, +added / -removed).
    events: VecDeque<(i64, i64)>,
    desired: u32,
}

impl Hpa {
    pub fn new(limits: Limits, start: i64, initial: u32) -> Hpa {
        Hpa { limits, next: start, latest: None, recs: VecDeque::new(), events: VecDeque::new(), desired: initial }
    }

    /// The replica calculator (`GetResourceReplicas`) for `pods` pods of which `ready` are
    /// ready, `current` being `spec.replicas`.
    fn recommend(&self, current: u32, pods: u32, ready: u32, util: f64) -> u32 {
        let ratio = util / self.limits.target;
        let unready = pods.saturating_sub(ready);
        if unready == 0 || ratio <= 1.0 {
            if (1.0 - ratio).abs() <= HPA_TOLERANCE {
                return current;
            }
            return ceil_u32(ratio * f64::from(ready));
        }
        let new_ratio = util * f64::from(ready) / (self.limits.target * f64::from(pods));
        if (1.0 - new_ratio).abs() <= HPA_TOLERANCE || new_ratio < 1.0 {
            return current;
        }
        let n = ceil_u32(new_ratio * f64::from(pods));
        if n < current { current } else { n }
    }
}

impl Controller for Hpa {
    fn pipelines(&self) -> Vec<PipelineSpec> {
        vec![PipelineSpec { signal: Signal::Cpu, stat: Stat::Average, period_ms: HPA_SYNC_MS }]
    }

    fn on_datapoint(&mut self, _which: usize, at: i64, value: f64, _now: i64, _pool: &mut Pool) {
        self.latest = Some((at, value));
    }

    fn next_evaluation(&self) -> Option<i64> {
        Some(self.next)
    }

    fn evaluate(&mut self, now: i64, pool: &mut Pool) {
        self.next = now + HPA_SYNC_MS;
        let current = pool.billed;
        // `reconcileAutoscaler`: replicas outside [min, max] are brought inside first.
        if current < self.limits.min || current > self.limits.max.max(self.limits.min) {
            self.desired = self.limits.clamp(current);
            self.record_event(now, current, self.desired);
            pool.scale_to(self.desired, now);
            return;
        }
        let Some((at, util)) = self.latest else { return };
        let ready = pool.serving_since(at);
        if ready == 0 {
            return; // no metrics for ready pods: the reconcile fails, nothing changes
        }
        let rec = self.recommend(current, pool.billed, ready, util);
        // Stabilisation: the window holds recommendations strictly after `now - 300 s`.
        while self.recs.front().is_some_and(|&(t, _)| t <= now - HPA_DOWN_STABILIZATION_MS) {
            self.recs.pop_front();
        }
        let down_rec = self.recs.iter().map(|&(_, r)| r).fold(rec, u32::max);
        self.recs.push_back((now, rec));
        let stabilized = if rec > current { rec } else { down_rec.min(current) };
        // Rate limits over the events of the last period (strictly after `now - 15 s`).
        while self.events.front().is_some_and(|&(t, _)| t <= now - HPA_POLICY_PERIOD_MS) {
            self.events.pop_front();
        }
        let desired = if stabilized > current {
            let added: i64 = self.events.iter().map(|&(_, c)| c.max(0)).sum();
            let start = u32::try_from((i64::from(current) - added).max(0)).unwrap_or(current);
            let by_percent = ceil_u32(f64::from(start) * (1.0 + f64::from(HPA_UP_PERCENT) / 100.0));
            let limit = by_percent.max(start.saturating_add(HPA_UP_PODS)).max(current);
            stabilized.min(limit).min(self.limits.max.max(self.limits.min))
        } else if stabilized < current {
            let removed: i64 = self.events.iter().map(|&(_, c)| (-c).max(0)).sum();
            let start = u32::try_from(i64::from(current) + removed).unwrap_or(current);
            let floor = ceil_u32(f64::from(start) * (1.0 - f64::from(HPA_DOWN_PERCENT) / 100.0)).min(current);
            stabilized.max(floor).max(self.limits.min)
        } else {
            current
        };
        self.desired = desired;
        if desired != current {
            self.record_event(now, current, desired);
            pool.scale_to(desired, now);
        }
    }

    fn desired(&self) -> u32 {
        self.desired
    }
}

impl Hpa {
    fn record_event(&mut self, now: i64, from: u32, to: u32) {
        self.events.push_back((now, i64::from(to) - i64::from(from)));
    }
}

// ---------------------------------------------------------------------------------------------
// AWS EC2 Auto Scaling target tracking on average CPU. Sources:
// [tt] EC2 Auto Scaling user guide, "Target tracking scaling policies for Amazon EC2 Auto
//   Scaling" (how it works; "a target tracking scaling policy is more aggressive in adding
//   capacity when utilization increases than it is in removing capacity when utilization
//   decreases"; the group prioritises availability);
// [warmup] "Set the default instance warmup for an Auto Scaling group" (warming instances do
//   not contribute to the aggregated metric; scale-in is blocked until they finish warming up;
//   warming instances count as current capacity when deciding how much to add);
// [alarms] the alarms target tracking creates, as `describe-alarms` shows them:
//   `TargetTracking-<group>-AlarmHigh-*`: `GreaterThanThreshold` the target, 3 of 3 one-minute
//   datapoints; `TargetTracking-<group>-AlarmLow-*`: `LessThanThreshold` 0.9 × target, 15 of 15;
// [cw] CloudWatch user guide, "Alarm actions": "except for Auto Scaling actions, the actions
//   happen only on state transitions": an alarm in ALARM invokes its Auto Scaling policy again
//   for every period it stays there.

/// One-minute datapoints (EC2 detailed monitoring, [alarms]).
pub const TT_PERIOD_MS: i64 = 60_000;
/// AlarmHigh: 3 of 3 datapoints above the target [alarms].
pub const TT_OUT_DATAPOINTS: u32 = 3;
/// AlarmLow: 15 of 15 datapoints below 90 % of the target [alarms].
pub const TT_IN_DATAPOINTS: u32 = 15;
pub const TT_IN_FACTOR: f64 = 0.9;

/// EC2 Auto Scaling target tracking on average CPU utilisation.
///
/// On each 1-minute datapoint (delivered `metric_lag` late), the two alarms are evaluated over
/// consecutive datapoints (a missing one breaks the run). While AlarmHigh is in ALARM the policy
/// runs on every datapoint [cw]: the capacity that brings the metric to target,
/// `ceil(n × metric / target)`, with `n` the instances contributing to the metric (those past
/// their warm-up) [tt]; warming instances count as current capacity [warmup], so the group grows
/// only when that capacity exceeds the desired capacity it already has (several breaches asking
/// for the same capacity make one scaling activity). While AlarmLow is in ALARM, the same
/// formula lowers capacity, but not while any instance is warming up [warmup].
///
/// The instance warm-up is the boot delay: the time until a new instance can contribute to the
/// metric, which is what `EstimatedInstanceWarmup` / the default instance warmup estimate
/// ("the time until a newly launched instance can contribute to the CloudWatch metrics", the
/// `PutScalingPolicy` reference). A booting instance serves no load and publishes no CPU.
#[derive(Debug)]
pub struct TargetTracking {
    limits: Limits,
    warmup_ms: i64,
    above: u32,
    below: u32,
    last_at: Option<i64>,
    desired: u32,
}

impl TargetTracking {
    pub fn new(limits: Limits, initial: u32, warmup_ms: i64) -> TargetTracking {
        TargetTracking { limits, warmup_ms, above: 0, below: 0, last_at: None, desired: initial }
    }

    /// Raises (or restores) the minimum it scales within: `aws-predictive`'s forecast minimum.
    pub fn set_min(&mut self, min: u32) {
        self.limits.min = min;
    }

    /// Records a capacity set from outside (a scheduled forecast minimum).
    pub fn set_desired(&mut self, desired: u32) {
        self.desired = desired;
    }
}

impl Controller for TargetTracking {
    fn pipelines(&self) -> Vec<PipelineSpec> {
        vec![PipelineSpec { signal: Signal::Cpu, stat: Stat::Average, period_ms: TT_PERIOD_MS }]
    }

    fn on_datapoint(&mut self, _which: usize, at: i64, value: f64, now: i64, pool: &mut Pool) {
        let consecutive = self.last_at == Some(at - TT_PERIOD_MS);
        self.last_at = Some(at);
        let t = self.limits.target;
        self.above = if value > t { if consecutive { self.above + 1 } else { 1 } } else { 0 };
        self.below = if value < TT_IN_FACTOR * t { if consecutive { self.below + 1 } else { 1 } } else { 0 };
        let current = pool.billed;
        // Current capacity for the computation: the instances past their warm-up now [warmup].
        let warm = pool.older_than(self.warmup_ms, now);
        if warm == 0 {
            return;
        }
        let wanted = self.limits.clamp(ceil_u32(f64::from(warm) * value / t));
        let out = self.above >= TT_OUT_DATAPOINTS && wanted > current;
        let scale_in =
            self.below >= TT_IN_DATAPOINTS && wanted < current && !pool.any_younger_than(self.warmup_ms, now);
        if out || scale_in {
            self.desired = wanted;
            pool.scale_to(wanted, now);
        }
    }

    fn next_evaluation(&self) -> Option<i64> {
        None
    }

    fn evaluate(&mut self, _now: i64, _pool: &mut Pool) {}

    fn desired(&self) -> u32 {
        self.desired
    }
}

/// A constant fleet sized for the trace's peak at the target.
pub fn static_size(limits: &Limits, peak_demand: f64) -> u32 {
    limits.clamp(ceil_u32(peak_demand * 100.0 / limits.target))
}

/// Rows of the static strategy: `n` instances, serving throughout.
pub fn static_rows(points: &[(i64, f64)], n: u32) -> Recorder {
    let mut rec = Recorder::with_capacity(points.len());
    static_into(points, n, &mut rec);
    rec
}

/// [`static_rows`], each row going to `rec` as it is produced.
pub fn static_into(points: &[(i64, f64)], n: u32, rec: &mut dyn RowSink) {
    for &(at_ms, demand) in points {
        rec.set(SupplyRow { at_ms, demand, serving: n, billed: n, desired: n });
    }
}

/// Rows of the oracle: each instance billed from exactly `boot_ms` before it is needed until
/// it is not, at 100 % utilisation (`ceil(demand)` within `[min, max]`). An instance whose next
/// use is less than a boot away is kept (stopping it would cost as much).
pub fn oracle_rows(points: &[(i64, f64)], end_ms: i64, boot_ms: i64, limits: &Limits) -> Recorder {
    let mut rec = Recorder::with_capacity(points.len() * 2);
    oracle_into(points, end_ms, boot_ms, limits, &mut rec);
    rec
}

/// [`oracle_rows`], each row going to `rec` as it is produced.
pub fn oracle_into(points: &[(i64, f64)], end_ms: i64, boot_ms: i64, limits: &Limits, rec: &mut dyn RowSink) {
    if points.is_empty() {
        return;
    }
    // Only where the need changes: the same step function in fewer pieces (a trace's demand
    // changes at every point, its whole-instance need far less often).
    let mut need: Vec<(i64, u32)> = Vec::new();
    for &(t, d) in points {
        let n = limits.clamp(ceil_u32(d));
        if need.last().is_none_or(|l| l.1 != n) {
            need.push((t, n));
        }
    }
    let billed = window_extreme(&need, end_ms, boot_ms, true);
    drop(need);
    let serving = window_extreme(&billed, end_ms, boot_ms, false);
    // Merge the three step functions.
    let (mut i, mut j, mut k) = (0, 0, 0);
    let mut t = points[0].0;
    loop {
        while points.get(i + 1).is_some_and(|p| p.0 <= t) {
            i += 1;
        }
        while billed.get(j + 1).is_some_and(|p| p.0 <= t) {
            j += 1;
        }
        while serving.get(k + 1).is_some_and(|p| p.0 <= t) {
            k += 1;
        }
        let b = billed[j].1;
        rec.set(SupplyRow { at_ms: t, demand: points[i].1, serving: serving[k].1, billed: b, desired: b });
        let next = [points.get(i + 1).map(|p| p.0), billed.get(j + 1).map(|p| p.0), serving.get(k + 1).map(|p| p.0)]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(n) if n < end_ms => t = n,
            _ => break,
        }
    }
}

/// For a step function `f` (pieces starting at each point, the last ending at `end`):
/// `max` → `g(t) = max f over [t, t + w]` (forward window); `!max` → `g(t) = min f over
/// [t - w, t]` (backward window, `f` before its start taken as its first value).
fn window_extreme(f: &[(i64, u32)], end: i64, w: i64, max: bool) -> Vec<(i64, u32)> {
    let start = f[0].0;
    let piece_end = |i: usize| f.get(i + 1).map_or(end, |p| p.0);
    // Candidate breakpoints: where a piece enters or leaves the window.
    let mut cands: Vec<i64> = Vec::with_capacity(f.len() * 2 + 1);
    cands.push(start);
    for (i, &(a, _)) in f.iter().enumerate() {
        if max {
            cands.push(a - w);
            cands.push(piece_end(i));
        } else {
            cands.push(a);
            cands.push(piece_end(i) + w);
        }
    }
    cands.retain(|&t| t >= start && t < end);
    cands.sort_unstable();
    cands.dedup();
    let mut out: Vec<(i64, u32)> = Vec::with_capacity(cands.len());
    let mut dq: VecDeque<usize> = VecDeque::new();
    let mut hi = 0; // next piece to enter
    let better = |a: u32, b: u32| if max { a >= b } else { a <= b };
    for &t in &cands {
        // Window of pieces intersecting [lo_t, hi_t] (closed).
        let (lo_t, hi_t) = if max { (t, t + w) } else { (t - w, t) };
        while hi < f.len() && f[hi].0 <= hi_t {
            while dq.back().is_some_and(|&b| better(f[hi].1, f[b].1)) {
                dq.pop_back();
            }
            dq.push_back(hi);
            hi += 1;
        }
        // A piece leaves when it ends at or before lo_t (the first piece extends backwards).
        while dq.front().is_some_and(|&i| piece_end(i) <= lo_t && !(!max && i == 0 && lo_t < start)) {
            dq.pop_front();
        }
        if let Some(&i) = dq.front() {
            let v = f[i].1;
            if out.last().is_none_or(|l| l.1 != v) {
                out.push((t, v));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::metrics::figures;
    use super::super::sim::{Load, simulate};
    use super::*;

    const M: i64 = 60_000;
    const L: Limits = Limits { min: 1, max: 20, target: 50.0 };

    /// (seconds, serving, billed) at each change of the fleet (demand changes left out).
    fn rows(rec: &Recorder) -> Vec<(i64, u32, u32)> {
        let mut out: Vec<(i64, u32, u32)> = Vec::new();
        for r in rec.rows() {
            if out.last().is_none_or(|l| (l.1, l.2) != (r.serving, r.billed)) {
                out.push((r.at_ms / 1000, r.serving, r.billed));
            }
        }
        out
    }

    #[test]
    fn static_sizes_for_peak_at_target() {
        // Peak 3.2 instances at 50 % -> 6.4 -> 7.
        assert_eq!(static_size(&L, 3.2), 7);
        assert_eq!(static_size(&L, 30.0), 20, "capped at max");
        assert_eq!(static_size(&L, 0.0), 1, "raised to min");
    }

    #[test]
    fn oracle_starts_a_boot_ahead_and_stops_at_once() {
        // need: 1 until 10 min, 3 from 10 to 20, 1 after; boot 2 min; end 30.
        let points = [(0, 1.0), (10 * M, 2.5), (20 * M, 0.4)];
        let rec = oracle_rows(&points, 30 * M, 2 * M, &L);
        // Billed rises at 8 min, serving at 10; both fall at 20.
        assert_eq!(rows(&rec), [(0, 1, 1), (480, 1, 3), (600, 3, 3), (1200, 1, 1)]);
        let f = figures("oracle", rec.rows(), 30 * M);
        assert_eq!(f.under_provisioned_minutes, 0.0);
        assert!((f.instance_hours - (8.0 + 36.0 + 10.0) / 60.0).abs() < 1e-12);
    }

    #[test]
    fn oracle_keeps_instances_over_short_dips() {
        // need 2, dips to 1 for 1 min (shorter than the 2 min boot), back to 2.
        let points = [(0, 2.0), (5 * M, 1.0), (6 * M, 2.0)];
        let rec = oracle_rows(&points, 10 * M, 2 * M, &L);
        assert_eq!(rows(&rec), [(0, 2, 2)]);
        // A 3-minute dip: stop at 5, restart at 6 (2 min before 8), serving again at 8.
        let points = [(0, 2.0), (5 * M, 1.0), (8 * M, 2.0)];
        let rec = oracle_rows(&points, 10 * M, 2 * M, &L);
        assert_eq!(rows(&rec), [(0, 2, 2), (300, 1, 1), (360, 1, 2), (480, 2, 2)]);
    }

    fn load(points: &[(i64, f64)], end: i64, boot: i64, lag: i64) -> Load<'_> {
        Load { points, end_ms: end, boot_ms: boot, lag_ms: lag, queue: false, queue_unit: 1.0 }
    }

    #[test]
    fn hpa_scales_up_limited_and_down_after_stabilisation() {
        // 2 instances, target 50 %; demand 2 (100 % CPU) from 0 s. No lag, no boot delay.
        // 15 s: datapoint 100 % on 2 -> ceil(2 * 2) = 4 (limit max(4, 6) = 6).
        // 30 s: 2 on 4 = 50 %: within tolerance.
        // Demand drops to 0.5 at 60 s: 75 s sees 12.5 % -> ceil(0.25 * 4) = 1, but the window
        // still holds 4 from 60 s (the recommendation on the sample of [45 s, 60 s)). The window
        // holds recommendations strictly after `now - 300 s` (`After(downCutoff)`): down at 360 s.
        let points = [(0, 2.0), (60_000, 0.5)];
        let l = load(&points, 10 * M, 0, 0);
        let mut hpa = Hpa::new(Limits { min: 1, max: 20, target: 50.0 }, 0, 2);
        let mut pool = Pool::new(0, 2, 0, false);
        let rec = simulate(&l, &mut hpa, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 2, 2), (15, 4, 4), (360, 1, 1)]);
    }

    #[test]
    fn hpa_up_step_is_max_of_double_and_plus_four() {
        // 1 instance at 100 % with target 10 %: wants 10, limited to max(2, 5) = 5 at 15 s,
        // then at 30 s (the 15 s period of the first step has passed): 1 demand on 5 = 20 % ->
        // ceil(5 * 2) = 10, limit max(10, 9).
        let points = [(0, 1.0)];
        let l = load(&points, 40_000, 0, 0);
        let mut hpa = Hpa::new(Limits { min: 1, max: 20, target: 10.0 }, 0, 1);
        let mut pool = Pool::new(0, 1, 0, false);
        let rec = simulate(&l, &mut hpa, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 1, 1), (15, 5, 5), (30, 10, 10)]);
    }

    #[test]
    fn hpa_replica_calculator() {
        let h = Hpa::new(L, 0, 4);
        // 4 pods, 2 ready at 100 %: unready at 0 % -> 100 * 2 / (50 * 4) = 1.0: no change.
        assert_eq!(h.recommend(4, 4, 2, 100.0), 4);
        // 3 ready at 100 %: ratio' 1.5 -> ceil(1.5 * 4) = 6.
        assert_eq!(h.recommend(4, 4, 3, 100.0), 6);
        // All ready, 54 % of 50 %: within tolerance.
        assert_eq!(h.recommend(4, 4, 4, 54.0), 4);
        assert_eq!(h.recommend(4, 4, 4, 20.0), 2);
        // Scaling down, unready pods are left out: ceil(0.4 * 2) = 1.
        assert_eq!(h.recommend(4, 4, 2, 20.0), 1);
        // Scaling up with unready pods: ratio' below 1 would change direction: keep.
        assert_eq!(h.recommend(4, 4, 1, 100.0), 4);
    }

    #[test]
    fn hpa_counts_a_new_pod_ready_only_for_samples_after_its_readiness() {
        // 2 instances, target 50 %, demand 2 (100 %), boot 30 s, lag 60 s: the sample of
        // [0, 15 s) arrives at 75 s -> 4 (started at 75, serving from 105). Until the sample of
        // [105 s, 120 s) arrives (180 s) every sample reads 100 % on the 2 old pods, the new ones
        // count as unready at 0 %: 100 * 2 / (50 * 4) = 1.0 -> hold. (Counting them ready as
        // soon as they serve, at 105 s, would read 100 % on 4 and ask for 8.) From 180 s: 50 %.
        let points = [(0, 2.0)];
        let l = load(&points, 10 * M, 30_000, 60_000);
        let mut hpa = Hpa::new(L, 0, 2);
        let mut pool = Pool::new(0, 2, 30_000, false);
        let rec = simulate(&l, &mut hpa, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 2, 2), (75, 2, 4), (105, 4, 4)]);
    }

    #[test]
    fn hpa_brings_replicas_into_bounds_and_skips_without_metrics() {
        // 1 instance, min 3: raised at the first sync, before any metric.
        let points = [(0, 0.0)];
        let l = load(&points, M, 0, 0);
        let mut hpa = Hpa::new(Limits { min: 3, max: 20, target: 50.0 }, 0, 1);
        let mut pool = Pool::new(0, 1, 0, false);
        let rec = simulate(&l, &mut hpa, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 3, 3)]);
    }

    #[test]
    fn target_tracking_waits_for_three_datapoints_and_fifteen_to_scale_in() {
        // 2 instances, target 50 %, demand 1.5 (75 %); boot 0, lag 0, 1-minute datapoints.
        // Datapoints at 1, 2, 3 min are > 50 %: scale out at 3 min to ceil(2 * 75 / 50) = 3.
        // Then 1.5 on 3 = 50 %: AlarmHigh back to OK. Demand falls to 0.3 at 10 min: 10 % per
        // instance < 45 % from the datapoint of minute 10 (delivered at 11); the 15th such at 25
        // min -> ceil(3 * 10 / 50) = 1.
        let points = [(0, 1.5), (10 * M, 0.3)];
        let l = load(&points, 40 * M, 0, 0);
        let mut tt = TargetTracking::new(L, 2, 0);
        let mut pool = Pool::new(0, 2, 0, false);
        let rec = simulate(&l, &mut tt, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 2, 2), (180, 3, 3), (25 * 60, 1, 1)]);
    }

    #[test]
    fn target_tracking_alarm_in_alarm_runs_the_policy_every_minute() {
        // Demand 3 on 2 (100 %), target 50, boot 0: 4 at 3 min; 3 on 4 = 75 % keeps AlarmHigh
        // in ALARM, so the next datapoint (4 min) runs the policy again: ceil(4 * 75 / 50) = 6.
        let points = [(0, 3.0)];
        let l = load(&points, 10 * M, 0, 0);
        let mut tt = TargetTracking::new(L, 2, 0);
        let mut pool = Pool::new(0, 2, 0, false);
        let rec = simulate(&l, &mut tt, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 2, 2), (180, 4, 4), (240, 6, 6)]);
    }

    #[test]
    fn target_tracking_counts_warming_instances_as_capacity_not_in_the_metric() {
        // Demand 3 on 2, target 50, boot = warm-up 90 s, lag 0. 3 min: 4 (serving from 4.5 min).
        // 4 min: 100 % on the 2 warm ones -> ceil(2 * 2) = 4 = desired: no new activity.
        // 5 min: the new two are warm (150 s old); the minute averaged 100 % and 75 % = 87.5 %
        // -> ceil(4 * 1.75) = 7 (the lagging minute overshoots, as it would in AWS).
        // 6 min: 75 % on 4 warm (the 3 new ones warming) -> 6 < 7: nothing. 7 min: 3 on 4 then
        // on 7 from 6.5 min: (75 + 42.9) / 2 = 58.9 % on 7 warm -> 9.
        let points = [(0, 3.0)];
        let l = load(&points, 9 * M, 90_000, 0);
        let mut tt = TargetTracking::new(L, 2, 90_000);
        let mut pool = Pool::new(0, 2, 90_000, false);
        let rec = simulate(&l, &mut tt, &mut pool, &mut |_| {});
        assert_eq!(
            rows(&rec),
            [(0, 2, 2), (180, 2, 4), (270, 4, 4), (300, 4, 7), (390, 7, 7), (420, 7, 9), (510, 9, 9)]
        );
    }

    #[test]
    fn references_stay_within_min_and_max() {
        // Demand 30 (far above max 5) for 10 minutes, then 0. No boot delay, no lag.
        let points = [(0, 30.0), (10 * M, 0.0)];
        let l = load(&points, 30 * M, 0, 0);
        let lim = Limits { min: 2, max: 5, target: 50.0 };
        // HPA: 2 -> 4 (ceil(2 * 100 / 50)) at 15 s, -> 5 (8 capped at max) at 30 s; the 0 %
        // datapoints from 10:15 bring it to min 2 once the 100 % recommendation of 10:00 has left
        // the 300 s window (strictly after `now - 300 s`), at 15:00.
        let mut hpa = Hpa::new(lim, 0, 2);
        let mut pool = Pool::new(0, 2, 0, false);
        let rec = simulate(&l, &mut hpa, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 2, 2), (15, 4, 4), (30, 5, 5), (900, 2, 2)]);
        // Target tracking: 4 after the third high datapoint (3 min), 5 (capped) on the next one
        // (AlarmHigh still in ALARM, 4 min); min 2 after fifteen low datapoints (25 min).
        let mut tt = TargetTracking::new(lim, 2, 0);
        let mut pool = Pool::new(0, 2, 0, false);
        let rec = simulate(&l, &mut tt, &mut pool, &mut |_| {});
        assert_eq!(rows(&rec), [(0, 2, 2), (180, 4, 4), (240, 5, 5), (1500, 2, 2)]);
        // The oracle is capped too, and under-provisioned for it.
        let rec = oracle_rows(&points, 30 * M, 0, &lim);
        assert_eq!(rows(&rec), [(0, 5, 5), (600, 2, 2)]);
        assert_eq!(figures("oracle", rec.rows(), 30 * M).under_provisioned_minutes, 10.0);
    }

    #[test]
    fn target_tracking_warmup_blocks_scale_in() {
        // Warm-up 300 s: with boot 0, an instance started at 3 min blocks scale-in until 8 min.
        let mut pool = Pool::new(0, 2, 0, false);
        pool.scale_to(3, 3 * M);
        assert!(pool.any_younger_than(5 * M, 7 * M));
        assert!(!pool.any_younger_than(5 * M, 8 * M));
        assert_eq!(pool.older_than(5 * M, 7 * M), 2);
    }
}
