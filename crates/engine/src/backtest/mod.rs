//! Backtest: replay a real load trace through a policy's [`crate::decide`], beside reference
//! strategies, on a simulated fleet and clock.
//!
//! [`run`] turns a [`Trace`] into demand in instance units (`value / capacity_per_instance`
//! for request rates, `value / 100 * fleet` for CPU % recorded on a fixed fleet), simulates
//! the policy and each strategy asked for on the same fleet model (see `sim.rs`), and returns
//! each one's supply rows and [`Figures`]. [`report`] renders `report.md`, [`chart`] the SVG.
//! [`run_with`] streams the rows to a callback instead of collecting them: figures and chart
//! buckets are summed as the rows go by, so its memory does not grow with the trace beyond the
//! demand series itself (see the README's "Speed" for the figures).
//!
//! # Reference strategies
//!
//! All use the policy's `min` and `max`, and the CPU target of the policy's first utilisation
//! metric (or an explicit target). `hpa` and `target-tracking` see the same signal as the
//! policy: the mean CPU % of the serving instances, delivered `metric_lag` late.
//!
//! - **`hpa`**: the Kubernetes HorizontalPodAutoscaler (autoscaling/v2) with its default
//!   settings: `pkg/controller/podautoscaler` (`horizontal.go`, `replica_calculator.go`), the
//!   autoscaling/v2 defaults and the kube-controller-manager flags. Every 15 s it reads the
//!   newest 15 s CPU average; pods count as ready only if they were in service for the whole
//!   sample (the CPU-initialisation rule of `groupPods`); outside the tolerance of 0.1 it
//!   recommends `ceil(ready * utilisation / target)`, counting unready pods as 0 % busy when
//!   that would scale up; it scales down only to the highest recommendation of the last 300 s,
//!   and up by at most `max(+100 %, +4 pods)` per 15 s. Each parameter and its source:
//!   `strategies.rs`.
//! - **`target-tracking`**: AWS EC2 Auto Scaling target tracking on average CPU: AlarmHigh (3 of
//!   3 one-minute datapoints above the target) and AlarmLow (15 of 15 below 90 % of it); an
//!   alarm in ALARM runs the policy on every datapoint (CloudWatch repeats Auto Scaling actions);
//!   capacity `ceil(n * metric / target)` with `n` the instances past their warm-up (the boot
//!   delay), warming instances counted as capacity, scale-in blocked while any instance warms.
//!   Sources: `strategies.rs`.
//! - **`static`**: a constant fleet sized for the trace's peak at the target:
//!   `ceil(peak_demand * 100 / target)`, within `[min, max]`. What you buy without autoscaling.
//! - **`oracle`**: perfect foresight at 100 % utilisation: `ceil(demand)` instances (within
//!   `[min, max]`) serving at every instant, each started exactly `boot_delay` before it is
//!   needed and stopped as soon as it is not (kept when its next use is less than a boot away,
//!   which costs the same). The cost floor no strategy can beat without under-provisioning;
//!   the report's `cost_vs_oracle` divides by its instance-hours.
//!
//! Not here: files, progress bars or timing (the `vmscaler backtest` command does those).

pub mod aws_predictive;
pub mod chart;
pub mod frontier;
pub mod metrics;
pub mod policy_run;
pub mod report;
pub mod sim;
pub mod strategies;
pub mod trace;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

pub use metrics::{FigureSum, Figures, SupplyRow, figures};
pub use strategies::Limits;
pub use trace::{Fill, Trace, TraceError, TraceOptions, TraceSummary, read_trace, read_trace_lines};

use crate::policy::{Goal, Policy};
use chart::Chart;
use metrics::{RowSink, RowStream};
use policy_run::PolicyController;
use sim::{Load, Pool};
use strategies::{Hpa, TargetTracking, oracle_into, static_into, static_size};

/// How trace values become demand in instance units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DemandUnit {
    /// Request-rate traces: `value / capacity_per_instance`.
    CapacityPerInstance(f64),
    /// CPU % recorded on a fixed fleet of this many instances: `value / 100 * fleet`.
    CpuFleet(f64),
}

impl DemandUnit {
    fn factor(self) -> f64 {
        match self {
            DemandUnit::CapacityPerInstance(c) => 1.0 / c,
            DemandUnit::CpuFleet(n) => n / 100.0,
        }
    }
}

/// The simulation's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    pub demand: DemandUnit,
    #[serde(serialize_with = "secs")]
    pub boot_delay: Duration,
    #[serde(serialize_with = "secs")]
    pub metric_lag: Duration,
    /// Instances serving at the start (default: the policy's `min`).
    pub initial: Option<u32>,
    /// CPU target for the reference strategies (default: the policy's).
    pub target: Option<f64>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// A strategy to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    Policy,
    Hpa,
    TargetTracking,
    Static,
    Oracle,
    AwsPredictive,
}

impl Strategy {
    pub const REFERENCES: [Strategy; 4] = [Strategy::Hpa, Strategy::TargetTracking, Strategy::Static, Strategy::Oracle];

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Policy => "policy",
            Strategy::Hpa => "hpa",
            Strategy::TargetTracking => "target-tracking",
            Strategy::Static => "static",
            Strategy::Oracle => "oracle",
            Strategy::AwsPredictive => "aws-predictive",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Strategy {
    type Err = BacktestError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "hpa" => Ok(Strategy::Hpa),
            "target-tracking" => Ok(Strategy::TargetTracking),
            "static" => Ok(Strategy::Static),
            "oracle" => Ok(Strategy::Oracle),
            "aws-predictive" => Ok(Strategy::AwsPredictive),
            other => Err(BacktestError::UnknownStrategy(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BacktestError {
    #[error("unknown strategy {0:?} (known: hpa, target-tracking, static, oracle, aws-predictive)")]
    UnknownStrategy(String),
    #[error("the policy has no utilisation metric to take a CPU target from; give --target")]
    NoTarget,
    #[error("{0} must be a positive number")]
    NotPositive(&'static str),
    #[error("the trace has no points")]
    EmptyTrace,
}

/// One strategy's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub strategy: Strategy,
    pub figures: Figures,
    /// Every supply row, from [`run`]; empty from [`run_with`], which handed them to its callback.
    pub rows: Vec<SupplyRow>,
}

/// Everything a backtest produced.
#[derive(Debug, Clone)]
pub struct Backtest {
    pub policy: String,
    pub limits: Limits,
    pub scenario: Scenario,
    pub trace: TraceSummary,
    pub end_ms: i64,
    pub runs: Vec<Run>,
    /// Intervals during which a pre-warm floor of the policy held.
    pub prewarm: Vec<(i64, i64)>,
    /// Intervals inside pre-warm windows whose floor `release_after` had released.
    pub prewarm_released: Vec<(i64, i64)>,
    /// Intervals during which the forecast floor (`predictive:`) was above what the metrics
    /// asked for (applied in `active` mode, only reported in `forecast_only`).
    pub forecast_floors: Vec<(i64, i64)>,
    pub decisions: u64,
    /// What `chart.svg` draws, summed from the rows as they went by.
    pub chart: Chart,
}

/// Where the policy's pre-warm floors held, and where their windows ran with the floor
/// released, as `[start, end)` milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyWindows {
    pub held: Vec<(i64, i64)>,
    pub released: Vec<(i64, i64)>,
    /// Where the forecast floor was above the metrics' proposal.
    pub forecast: Vec<(i64, i64)>,
}

/// A prepared backtest: demand computed, limits resolved.
#[derive(Debug, Clone)]
pub struct Prepared<'a> {
    pub policy: &'a Policy,
    pub scenario: Scenario,
    pub limits: Limits,
    pub demand: Vec<(i64, f64)>,
    pub end_ms: i64,
    pub initial: u32,
    boot_ms: i64,
    lag_ms: i64,
    queue: bool,
    queue_unit: f64,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// The CPU target of the policy's first utilisation metric.
pub fn policy_target(policy: &Policy) -> Option<f64> {
    policy.metrics.iter().find_map(|m| match m.goal {
        Goal::Utilization { target } => Some(target),
        Goal::PerInstance { .. } => None,
    })
}

/// Checks the settings and computes demand.
pub fn prepare<'a>(policy: &'a Policy, trace: &Trace, scenario: Scenario) -> Result<Prepared<'a>, BacktestError> {
    match scenario.demand {
        DemandUnit::CapacityPerInstance(c) if !(c.is_finite() && c > 0.0) => {
            return Err(BacktestError::NotPositive("--capacity-per-instance"));
        }
        DemandUnit::CpuFleet(n) if !(n.is_finite() && n > 0.0) => {
            return Err(BacktestError::NotPositive("--cpu-fleet"));
        }
        _ => {}
    }
    let target = match scenario.target {
        Some(t) if !(t.is_finite() && t > 0.0) => return Err(BacktestError::NotPositive("--target")),
        Some(t) => t,
        None => policy_target(policy).ok_or(BacktestError::NoTarget)?,
    };
    if trace.points.is_empty() {
        return Err(BacktestError::EmptyTrace);
    }
    let factor = scenario.demand.factor();
    let demand: Vec<(i64, f64)> = trace.points.iter().map(|p| (p.at_ms, (p.value * factor).max(0.0))).collect();
    let queue = policy.metrics.iter().any(|m| policy_run::signal(m) == sim::Signal::Backlog);
    // Backlog in trace units: an instance serves `1 / factor` units per trace step.
    #[allow(clippy::cast_precision_loss)]
    let queue_unit = 1.0 / factor / (trace.step_ms() as f64 / 1000.0);
    Ok(Prepared {
        policy,
        limits: Limits { min: policy.min, max: policy.max, target },
        initial: scenario.initial.unwrap_or(policy.min),
        boot_ms: millis(scenario.boot_delay),
        lag_ms: millis(scenario.metric_lag),
        scenario,
        demand,
        end_ms: trace.end_ms,
        queue,
        queue_unit,
    })
}

impl Prepared<'_> {
    fn load(&self) -> Load<'_> {
        Load {
            points: &self.demand,
            end_ms: self.end_ms,
            boot_ms: self.boot_ms,
            lag_ms: self.lag_ms,
            queue: self.queue,
            queue_unit: self.queue_unit,
        }
    }

    /// Runs the policy; also returns its pre-warm intervals and number of decisions.
    pub fn run_policy(&self, progress: &mut dyn FnMut(f64)) -> (Run, PolicyWindows, u64) {
        let mut rows = Vec::new();
        let (figures, windows, decisions) = self.stream_policy(progress, &mut |r| rows.push(*r));
        (Run { strategy: Strategy::Policy, figures, rows }, windows, decisions)
    }

    /// [`Prepared::run_policy`], each supply row going to `rows` as soon as it is final
    /// instead of being collected.
    pub fn stream_policy(
        &self,
        progress: &mut dyn FnMut(f64),
        rows: &mut dyn FnMut(&SupplyRow),
    ) -> (Figures, PolicyWindows, u64) {
        let start = self.demand.first().map_or(0, |p| p.0);
        let mut pool = PolicyController::pool(self.policy, self.initial, self.boot_ms);
        let mut ctl = PolicyController::new(self.policy, start, &pool, self.boot_ms);
        let figures = self.summed(Strategy::Policy, rows, &mut |rec| {
            sim::simulate_into(&self.load(), &mut ctl, &mut pool, progress, rec);
        });
        let windows = PolicyWindows { held: ctl.floors, released: ctl.released, forecast: ctl.forecast_floors };
        (figures, windows, ctl.decisions)
    }

    /// Runs one reference strategy.
    pub fn run_reference(&self, strategy: Strategy, progress: &mut dyn FnMut(f64)) -> Run {
        if strategy == Strategy::Policy {
            return self.run_policy(progress).0;
        }
        let mut rows = Vec::new();
        let figures = self.stream_reference(strategy, progress, &mut |r| rows.push(*r));
        Run { strategy, figures, rows }
    }

    /// [`Prepared::run_reference`], each supply row going to `rows` as soon as it is final
    /// instead of being collected.
    pub fn stream_reference(
        &self,
        strategy: Strategy,
        progress: &mut dyn FnMut(f64),
        rows: &mut dyn FnMut(&SupplyRow),
    ) -> Figures {
        let start = self.demand.first().map_or(0, |p| p.0);
        match strategy {
            Strategy::Policy => self.stream_policy(progress, rows).0,
            Strategy::Hpa => self.summed(strategy, rows, &mut |rec| {
                let mut pool = Pool::new(0, self.initial, self.boot_ms, false);
                let mut c = Hpa::new(self.limits, start, self.initial);
                sim::simulate_into(&self.load(), &mut c, &mut pool, progress, rec);
            }),
            Strategy::TargetTracking => self.summed(strategy, rows, &mut |rec| {
                let mut pool = Pool::new(0, self.initial, self.boot_ms, false);
                let mut c = TargetTracking::new(self.limits, self.initial, self.boot_ms);
                sim::simulate_into(&self.load(), &mut c, &mut pool, progress, rec);
            }),
            Strategy::Static => self.summed(strategy, rows, &mut |rec| {
                let peak = self.demand.iter().map(|p| p.1).fold(0.0, f64::max);
                static_into(&self.demand, static_size(&self.limits, peak), rec);
            }),
            Strategy::Oracle => self.summed(strategy, rows, &mut |rec| {
                oracle_into(&self.demand, self.end_ms, self.boot_ms, &self.limits, rec);
            }),
            Strategy::AwsPredictive => self.summed(strategy, rows, &mut |rec| {
                let mut pool = Pool::new(0, self.initial, self.boot_ms, false);
                let mut c = aws_predictive::AwsPredictive::new(self.limits, start, self.initial, self.boot_ms);
                sim::simulate_into(&self.load(), &mut c, &mut pool, progress, rec);
            }),
        }
    }

    /// Runs `produce` on a row stream: each final row is summed into the figures and handed to
    /// `rows`; nothing else is kept.
    fn summed(
        &self,
        strategy: Strategy,
        rows: &mut dyn FnMut(&SupplyRow),
        produce: &mut dyn FnMut(&mut dyn RowSink),
    ) -> Figures {
        let mut sum = FigureSum::default();
        let mut out = |r: &SupplyRow| {
            sum.push(r);
            rows(r);
        };
        let mut stream = RowStream::new(&mut out);
        produce(&mut stream);
        stream.finish();
        sum.finish(strategy.as_str(), self.end_ms)
    }
}

/// Runs the policy and each strategy in `compare`; `progress(name, fraction)` is called as
/// each advances. Every run's supply rows are collected in [`Run::rows`].
pub fn run(
    policy: &Policy,
    trace: &Trace,
    scenario: Scenario,
    compare: &[Strategy],
    progress: &mut dyn FnMut(&str, f64),
) -> Result<Backtest, BacktestError> {
    let mut collected: Vec<(Strategy, Vec<SupplyRow>)> = Vec::new();
    let mut b = run_with(policy, trace, scenario, compare, progress, &mut |s, r| match collected.last_mut() {
        Some((last, rows)) if *last == s => rows.push(*r),
        _ => collected.push((s, vec![*r])),
    })?;
    for (s, rows) in collected {
        if let Some(run) = b.runs.iter_mut().find(|r| r.strategy == s) {
            run.rows = rows;
        }
    }
    Ok(b)
}

/// [`run`], streaming: `rows(strategy, row)` gets each strategy's supply rows in time order as
/// they are produced (the strategies one after the other, the policy first), and nothing keeps
/// them: [`Run::rows`] stay empty, the figures and the chart's buckets are summed on the way.
pub fn run_with(
    policy: &Policy,
    trace: &Trace,
    scenario: Scenario,
    compare: &[Strategy],
    progress: &mut dyn FnMut(&str, f64),
    rows: &mut dyn FnMut(Strategy, &SupplyRow),
) -> Result<Backtest, BacktestError> {
    let prep = prepare(policy, trace, scenario)?;
    let start = prep.demand.first().map_or(0, |p| p.0);
    let mut chart = Chart::new(start, prep.end_ms);
    let mut series = chart.series(Strategy::Policy);
    let (figures, windows, decisions) = prep.stream_policy(&mut |f| progress("policy", f), &mut |r| {
        series.push(r);
        rows(Strategy::Policy, r);
    });
    chart.add(series);
    let mut runs = vec![Run { strategy: Strategy::Policy, figures, rows: Vec::new() }];
    for &s in compare.iter().filter(|s| **s != Strategy::Policy) {
        if runs.iter().any(|r| r.strategy == s) {
            continue;
        }
        let mut series = chart.series(s);
        let figures = prep.stream_reference(s, &mut |f| progress(s.as_str(), f), &mut |r| {
            series.push(r);
            rows(s, r);
        });
        chart.add(series);
        runs.push(Run { strategy: s, figures, rows: Vec::new() });
    }
    let oracle_hours = runs.iter().find(|r| r.strategy == Strategy::Oracle).map(|r| r.figures.instance_hours);
    if let Some(o) = oracle_hours.filter(|o| *o > 0.0) {
        for r in &mut runs {
            r.figures.cost_vs_oracle = Some(r.figures.instance_hours / o);
        }
    }
    Ok(Backtest {
        policy: policy.name.clone(),
        limits: prep.limits,
        scenario: prep.scenario,
        trace: trace.summary.clone(),
        end_ms: prep.end_ms,
        runs,
        prewarm: windows.held,
        prewarm_released: windows.released,
        forecast_floors: windows.forecast,
        decisions,
        chart,
    })
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod predictive_tests;

#[cfg(test)]
mod stream_tests;
