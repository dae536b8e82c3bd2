//! The policy under test as a simulator controller: it advances the pool through the same
//! [`PoolCycle`] the daemon uses: the simulated datapoints are observed, each evaluation
//! decides, its actions are carried out on the simulated pool, and the evaluation is completed
//! with the capacity they reached (a start the pool refuses is not counted), exactly as the
//! daemon completes its own with what AWS did.

use std::time::Duration;

use jiff::Timestamp;

use super::sim::{Controller, PipelineSpec, Pool, Signal, Stat};
use crate::cycle::{Achieved, PoolCycle};
use crate::decide::{Action, Bound};
use crate::fleet::{Fleet, GroupState, Member, MemberState};
use crate::history::Sample;
use crate::policy::{DRAIN_TIMEOUT_CAP, Goal, MetricSpec, Policy, PoolTarget, Statistic};

const ID_PREFIX: &str = "i-sim";

pub(crate) fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(if ms < 0 { Timestamp::MIN } else { Timestamp::MAX })
}

fn ms(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// What a policy metric measures in the simulation: utilisation goals are CPU %; of the
/// per-instance goals, request counts (`RequestCount`, `RequestCountPerTarget`: names containing
/// `RequestCount`) are the work arriving per period, per serving instance for `...PerTarget`,
/// and everything else (queue depths) is the backlog.
pub fn signal(m: &MetricSpec) -> Signal {
    let requests = m.name.contains("RequestCount");
    match m.goal {
        // A per-instance request rate against a `target` (RequestCountPerTarget: 1500).
        Goal::Utilization { .. } if requests => Signal::Arrivals { per_target: true },
        Goal::Utilization { .. } => Signal::Cpu,
        Goal::PerInstance { .. } if requests => {
            Signal::Arrivals { per_target: m.name.contains("PerTarget") || m.per_instance.is_some() }
        }
        Goal::PerInstance { .. } => Signal::Backlog,
    }
}

/// AWS's default `deregistration_delay.timeout_seconds`.
const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

/// How long a stopped member of `policy`'s pool drains in the simulation: nothing without target
/// groups; else the whole drain timeout (AWS's default deregistration delay when not given):
/// the most a drain can bill, since a real one ends sooner once no connection is left, which
/// the simulator cannot know. A pre-stop hook's time is not modelled.
pub fn drain_ms(policy: &Policy) -> i64 {
    if policy.target_groups.is_empty() {
        return 0;
    }
    let wait = policy.scale_in.drain_timeout.unwrap_or(DEFAULT_DEREGISTRATION_DELAY.min(DRAIN_TIMEOUT_CAP));
    i64::try_from(wait.as_millis()).unwrap_or(i64::MAX)
}

/// Drives a simulated pool with `decide`.
#[derive(Debug)]
pub struct PolicyController<'p> {
    policy: &'p Policy,
    /// The pool's history and forecast model (with `predictive:`, learning only from this
    /// run's own past decisions).
    cycle: PoolCycle,
    fleet: Fleet,
    next: i64,
    desired: u32,
    /// Intervals during which a pre-warm floor held.
    pub floors: Vec<(i64, i64)>,
    /// Intervals inside a pre-warm window whose floor its `release_after` had released.
    pub released: Vec<(i64, i64)>,
    /// Intervals during which the forecast floor raised capacity (active mode) or would have
    /// (forecast_only).
    pub forecast_floors: Vec<(i64, i64)>,
    pub decisions: u64,
}

impl<'p> PolicyController<'p> {
    /// A controller for `policy` starting at `start` with `pool` (built by [`Self::pool`]).
    pub fn new(policy: &'p Policy, start: i64, pool: &Pool, boot_ms: i64) -> PolicyController<'p> {
        let fleet = match &policy.pool {
            PoolTarget::AutoScalingGroup(name) => Fleet::Group(GroupState {
                name: name.clone(),
                desired: pool.billed,
                min: policy.min,
                max: policy.max,
                in_service: pool.serving,
                activity_in_progress: false,
            }),
            PoolTarget::Tagged(_) => Fleet::Instances {
                members: (0..pool.size())
                    .map(|i| Member {
                        id: format!("{ID_PREFIX}{i:05}"),
                        state: if pool.is_started(i) { MemberState::Running } else { MemberState::Stopped },
                        launched_at: pool.is_started(i).then(|| ts(start - boot_ms)),
                        protected: false,
                        cpu: None,
                    })
                    .collect(),
            },
        };
        PolicyController {
            policy,
            cycle: PoolCycle::new(),
            fleet,
            next: start,
            desired: pool.billed,
            floors: Vec::new(),
            released: Vec::new(),
            forecast_floors: Vec::new(),
            decisions: 0,
        }
    }

    /// The simulated pool for `policy` with `initial` instances serving.
    pub fn pool(policy: &Policy, initial: u32, boot_ms: i64) -> Pool {
        match policy.pool {
            PoolTarget::Tagged(_) => {
                Pool::new(policy.max.max(initial) as usize, initial, boot_ms, true).with_drain(drain_ms(policy))
            }
            PoolTarget::AutoScalingGroup(_) => Pool::new(policy.max.max(initial) as usize, initial, boot_ms, false),
        }
    }

    fn slot(id: &str) -> Option<usize> {
        id.strip_prefix(ID_PREFIX)?.parse().ok()
    }

    fn set_member(&mut self, slot: usize, state: MemberState, launched: Option<Timestamp>) {
        if let Fleet::Instances { members } = &mut self.fleet
            && let Some(m) = members.get_mut(slot)
        {
            m.state = state;
            if launched.is_some() {
                m.launched_at = launched;
            }
        }
    }
}

impl Controller for PolicyController<'_> {
    fn pipelines(&self) -> Vec<PipelineSpec> {
        self.policy
            .metrics
            .iter()
            .map(|m| PipelineSpec {
                signal: signal(m),
                stat: match (signal(m), m.statistic) {
                    (Signal::Arrivals { .. }, _) => Stat::Sum,
                    (_, Statistic::Maximum) => Stat::Maximum,
                    (_, Statistic::Minimum) => Stat::Minimum,
                    (_, Statistic::Average | Statistic::Sum | Statistic::SampleCount) => Stat::Average,
                },
                period_ms: i64::try_from(m.period.as_millis()).unwrap_or(i64::MAX).max(1000),
            })
            .collect()
    }

    fn on_datapoint(&mut self, which: usize, period_start: i64, value: f64, _now: i64, _pool: &mut Pool) {
        if let Some(m) = self.policy.metrics.get(which) {
            self.cycle.observe(&m.id, Sample { at: ts(period_start), value });
        }
    }

    fn on_boot(&mut self, slots: &[usize]) {
        for &s in slots {
            self.set_member(s, MemberState::Running, None);
        }
    }

    fn on_drained(&mut self, slots: &[usize]) {
        for &s in slots {
            self.set_member(s, MemberState::Stopped, None);
        }
    }

    fn next_evaluation(&self) -> Option<i64> {
        Some(self.next)
    }

    fn evaluate(&mut self, now: i64, pool: &mut Pool) {
        if let Fleet::Group(g) = &mut self.fleet {
            g.desired = pool.billed;
            g.in_service = pool.serving;
        }
        let at = ts(now);
        let d = self.cycle.evaluate(self.policy, &self.fleet, at);
        self.decisions += 1;
        let (mut started, mut stopped, mut set) = (0u32, 0u32, None);
        for action in &d.actions {
            match action {
                Action::SetDesiredCapacity { desired, .. } => {
                    pool.scale_to(*desired, now);
                    set = Some(pool.billed);
                }
                Action::Start { instance_ids } => {
                    for slot in instance_ids.iter().filter_map(|id| Self::slot(id)) {
                        if pool.start_slot(slot, now) {
                            started += 1;
                            let state = if pool.is_serving(slot) { MemberState::Running } else { MemberState::Pending };
                            self.set_member(slot, state, Some(at));
                        }
                    }
                }
                Action::Stop { instance_ids } => {
                    for slot in instance_ids.iter().filter_map(|id| Self::slot(id)) {
                        if pool.drain_slot(slot, now) {
                            stopped += 1;
                            let state =
                                if pool.is_draining(slot) { MemberState::Draining } else { MemberState::Stopped };
                            self.set_member(slot, state, None);
                        }
                    }
                }
                Action::CancelDrain { instance_ids } => {
                    for slot in instance_ids.iter().filter_map(|id| Self::slot(id)) {
                        if pool.cancel_drain(slot, now) {
                            started += 1;
                            let state = if pool.is_serving(slot) { MemberState::Running } else { MemberState::Pending };
                            self.set_member(slot, state, None);
                        }
                    }
                }
            }
        }
        let reached = set.unwrap_or_else(|| d.current.saturating_add(started).saturating_sub(stopped));
        self.cycle.complete(Achieved::Capacity(reached));
        self.desired = d.desired;
        let next = ms(d.next_evaluation).max(now + 1);
        if d.floor.is_some() {
            extend_window(&mut self.floors, now, next);
        } else if d.bounds.iter().any(|b| matches!(b, Bound::FloorReleased { .. })) {
            extend_window(&mut self.released, now, next);
        }
        if d.forecast_floor().is_some_and(|(cap, _)| cap > d.proposal) {
            extend_window(&mut self.forecast_floors, now, next);
        }
        self.next = next;
    }

    fn desired(&self) -> u32 {
        self.desired
    }
}

/// Adds `[from, to)` to time-ordered `windows`, merging it into the last one when they touch.
fn extend_window(windows: &mut Vec<(i64, i64)>, from: i64, to: i64) {
    match windows.last_mut() {
        Some(last) if last.1 >= from => last.1 = last.1.max(to),
        _ => windows.push((from, to)),
    }
}
