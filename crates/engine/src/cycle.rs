//! One pool's evaluation state, and the only way to advance it.
//!
//! A [`PoolCycle`] owns the pool's [`PoolHistory`] (samples and evaluation records), its
//! forecast model (a policy with `predictive:`) and the cron occurrences its schedule last
//! found. Every driver (the daemon, `vmscaler plan`, the
//! backtest, the fuzz target, the bench) advances a pool through the same steps:
//!
//! 1. [`PoolCycle::observe`] the metric datapoints that arrived;
//! 2. [`PoolCycle::evaluate`]: [`crate::decide`] on the history, the fleet, the forecast, the
//!    alerts firing and `now` (the forecast refits when due and learns the demand the
//!    decision measured); the decision's record waits ([`PoolCycle::pending`]) while the caller acts;
//! 3. [`PoolCycle::complete`] with what the actions [`Achieved`]: the record says the capacity
//!    really reached (no cooldown when nothing changed), joins the history, and the history is
//!    pruned to the policy's window.
//!
//! Records written elsewhere come back in through [`PoolCycle::replay`] (an intent left by a
//! run that stopped before recording its outcome) and [`PoolCycle::merge`] (the scaling
//! records a previous lease holder handed over), inserted in time order. Records are kept in
//! the order the scoring (`serving_during`) and the stabilisation window rely on because only
//! the engine adds them: nothing outside it can add, reorder or drop one.
//!
//! Not here: what the decision means (see [`crate::decide`]); carrying out the actions, and
//! persisting the history (the daemon converts it to its own file format).

use std::time::Duration;

use jiff::Timestamp;

use crate::decide::{AlertFloor, Decision, decide_in};
use crate::fleet::Fleet;
use crate::forecast::Forecaster;
use crate::history::{Direction, Discarded, EvalRecord, PoolHistory, Sample};
use crate::policy::Policy;
use crate::schedule::ScheduleCache;

/// What carrying out a decision achieved, for [`PoolCycle::complete`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Achieved {
    /// Everything decided took effect (or there was nothing to do).
    AsDecided,
    /// A dry run: recorded as decided (it paces later dry-run evaluations) and marked, so that
    /// once the pool goes live it starts no cooldown ([`PoolCycle::end_dry_run`]).
    DryRun,
    /// The fleet reached this capacity: actions failed, or were not carried out at all
    /// (`plan` replays a history without acting). Reaching the capacity it started from
    /// records no scaling, so no cooldown starts.
    Capacity(u32),
    /// Not known: actions may still be under way. The record is not added here; the caller
    /// keeps it (in its intent) and brings it back with [`PoolCycle::replay`].
    Unknown,
}

/// A decision's record waiting for [`PoolCycle::complete`].
#[derive(Debug, Clone)]
struct Pending {
    record: EvalRecord,
    window: Duration,
}

/// One pool's history and the steps that advance it (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct PoolCycle {
    history: PoolHistory,
    /// Present while the policy has a `predictive:` block.
    forecaster: Option<Forecaster>,
    schedule: ScheduleCache,
    pending: Option<Pending>,
}

impl PoolCycle {
    /// A pool with no history yet.
    pub fn new() -> PoolCycle {
        PoolCycle::default()
    }

    /// A pool resuming from a saved history (see [`PoolHistory::from_parts`]) and forecast
    /// model.
    pub fn restore(history: PoolHistory, forecaster: Option<Forecaster>) -> PoolCycle {
        PoolCycle { history, forecaster, ..PoolCycle::default() }
    }

    /// The history as the next evaluation will see it.
    pub fn history(&self) -> &PoolHistory {
        &self.history
    }

    /// The forecast model, for a policy with `predictive:` that has been evaluated.
    pub fn forecaster(&self) -> Option<&Forecaster> {
        self.forecaster.as_ref()
    }

    /// When the newest recorded evaluation was made.
    pub fn last_evaluated(&self) -> Option<Timestamp> {
        self.history.records.back().map(|r| r.at)
    }

    /// Adds a datapoint of `metric` (see [`PoolHistory`]: kept in time order, a revision of a
    /// period replaces it, non-finite values are dropped).
    pub fn observe(&mut self, metric: &str, sample: Sample) {
        self.history.push_sample(metric, sample);
    }

    /// Decides what the pool should do at `now`. The decision's record waits for
    /// [`Self::complete`]; one still waiting from an earlier evaluation is completed first, as
    /// decided (its cooldown kept).
    pub fn evaluate(&mut self, policy: &Policy, fleet: &Fleet, now: Timestamp) -> Decision {
        self.evaluate_with(policy, fleet, &[], now)
    }

    /// [`Self::evaluate`] with the floors of the alerts firing for this pool. With a
    /// `predictive:` block the forecast refits first when due (once an hour) and then learns
    /// the demand this decision measured; without one, a model left from an earlier version of
    /// the policy is dropped.
    pub fn evaluate_with(&mut self, policy: &Policy, fleet: &Fleet, alerts: &[AlertFloor], now: Timestamp) -> Decision {
        if self.pending.is_some() {
            self.complete(Achieved::AsDecided);
        }
        match &policy.predictive {
            Some(spec) => {
                self.forecaster.get_or_insert_with(Forecaster::new).refresh(spec, now);
            }
            None => self.forecaster = None,
        }
        let decision = decide_in(policy, &self.history, fleet, self.forecaster.as_ref(), alerts, now, &self.schedule);
        if let (Some(f), Some((measured, demand))) = (self.forecaster.as_mut(), decision.demand()) {
            f.observe(measured, demand);
        }
        self.pending =
            Some(Pending { record: decision.record(policy.scaling.tolerance), window: policy.history.window });
        decision
    }

    /// The record of the evaluation awaiting [`Self::complete`], as decided.
    pub fn pending(&self) -> Option<&EvalRecord> {
        self.pending.as_ref().map(|p| &p.record)
    }

    /// Folds in what the last evaluation's actions achieved: its record joins the history
    /// (unless [`Achieved::Unknown`]), saying the capacity really reached, and the history is
    /// pruned to the policy's window. Returns the record as completed.
    pub fn complete(&mut self, achieved: Achieved) -> Option<EvalRecord> {
        let Pending { mut record, window } = self.pending.take()?;
        if let Achieved::Capacity(reached) = achieved
            && record.scaled.is_some()
        {
            record.desired = reached;
            if reached == record.current {
                record.scaled = None;
            }
        }
        record.dry_run = achieved == Achieved::DryRun;
        if achieved != Achieved::Unknown {
            self.history.push_record(record);
        }
        self.history.prune(record.at, window);
        Some(record)
    }

    /// Records an evaluation made earlier whose outcome was never completed (an intent found
    /// after a crash, or after actions outlasted their budget), as decided: its cooldown holds.
    pub fn replay(&mut self, record: EvalRecord) {
        self.history.merge_record(record);
    }

    /// Merges scaling records another holder of the pool made (a lease handover), in time
    /// order, skipping any already here; how many were added.
    pub fn merge(&mut self, records: impl IntoIterator<Item = EvalRecord>) -> usize {
        records.into_iter().filter(|r| self.history.merge_record(*r)).count()
    }

    /// What the next holder of the pool needs to keep its cooldowns: the newest scaling record
    /// of each direction, the pending evaluation's included, oldest first.
    pub fn handover(&self) -> Vec<EvalRecord> {
        let newest = |d: Direction| {
            self.history
                .records
                .iter()
                .chain(self.pending())
                .filter(|r| r.scaled == Some(d))
                .max_by_key(|r| r.at)
                .copied()
        };
        let mut records: Vec<EvalRecord> =
            [newest(Direction::Up), newest(Direction::Down)].into_iter().flatten().collect();
        records.sort_by_key(|r| r.at);
        records
    }

    /// Drops records and samples dated beyond `now + tolerance` (a clock that was ahead), the
    /// newest scaling record of each direction re-dated to `now` so its cooldown still holds
    /// (see [`PoolHistory::discard_future`]).
    pub fn discard_future(&mut self, now: Timestamp, tolerance: Duration) -> Discarded {
        self.history.discard_future(now, tolerance)
    }

    /// The pool goes live after a dry run: the dry-run records stop pacing it (see
    /// [`PoolHistory::end_dry_run`]); how many there were.
    pub fn end_dry_run(&mut self) -> usize {
        self.history.end_dry_run()
    }

    /// Drops what is older than `window` before `now` (the last scaling record of each
    /// direction is kept, so a long cooldown is never forgotten). [`Self::complete`] does this
    /// after every evaluation; a driver that only observes calls it itself.
    pub fn prune(&mut self, now: Timestamp, window: Duration) {
        self.history.prune(now, window);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::{Member, MemberState};
    use crate::policy::parse_policy;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn policy() -> Policy {
        let text = "name: w\npool: { tag: { key: k, value: v } }\nmin: 1\nmax: 8\ninterval: 1m\nmetrics:\n  - { id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50 }\nscaling: { scale_up: { confirmations: 1, cooldown: 5m } }\nhistory: { window: 1h }\n";
        let r = parse_policy("w.yaml", text);
        r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics))
    }

    fn fleet(running: usize, stopped: usize) -> Fleet {
        let m =
            |i: usize, state| Member { id: format!("i-{i}"), state, launched_at: None, protected: false, cpu: None };
        Fleet::Instances {
            members: (0..running)
                .map(|i| m(i, MemberState::Running))
                .chain((running..running + stopped).map(|i| m(i, MemberState::Stopped)))
                .collect(),
        }
    }

    #[test]
    fn a_failed_scale_up_records_no_cooldown_and_a_partial_one_what_was_reached() {
        let p = policy();
        let mut c = PoolCycle::new();
        c.observe("cpu", Sample { at: ts(0), value: 100.0 });
        let d = c.evaluate(&p, &fleet(2, 4), ts(30));
        assert_eq!((d.current, d.desired), (2, 4));
        assert_eq!(c.pending().map(|r| r.scaled), Some(Some(Direction::Up)));
        let r = c.complete(Achieved::Capacity(2)).unwrap();
        assert_eq!((r.desired, r.scaled), (2, None), "nothing started: no cooldown");
        let d = c.evaluate(&p, &fleet(2, 4), ts(90));
        assert_eq!(d.desired, 4, "not held by a cooldown that never started");
        let r = c.complete(Achieved::Capacity(3)).unwrap();
        assert_eq!((r.desired, r.scaled), (3, Some(Direction::Up)));
        assert_eq!(c.history().records().len(), 2);
    }

    #[test]
    fn an_unknown_outcome_waits_for_its_replay_and_a_handover_merges_once_in_order() {
        let p = policy();
        let mut c = PoolCycle::new();
        c.observe("cpu", Sample { at: ts(0), value: 100.0 });
        let _ = c.evaluate(&p, &fleet(2, 4), ts(30));
        let handover = c.handover();
        assert_eq!(handover.len(), 1, "the pending scale-up is handed over");
        let intent = *c.pending().unwrap();
        assert!(c.complete(Achieved::Unknown).is_some());
        assert!(c.history().records().is_empty(), "kept by the caller's intent");
        c.replay(intent);
        assert_eq!(c.history().records().len(), 1);

        let mut next = PoolCycle::new();
        let _ = next.evaluate(&p, &fleet(4, 2), ts(10));
        let _ = next.evaluate(&p, &fleet(4, 2), ts(70)); // completes the first as decided
        assert_eq!(next.complete(Achieved::AsDecided).map(|r| r.at), Some(ts(70)));
        assert_eq!(next.merge(handover.clone()), 1);
        assert_eq!(next.merge(handover), 0, "merging twice adds nothing");
        let at: Vec<Timestamp> = next.history().records().iter().map(|r| r.at).collect();
        assert_eq!(at, [ts(10), ts(30), ts(70)]);
        assert_eq!(next.history().last_scaled(Direction::Up).map(|r| r.at), Some(ts(30)));
    }

    #[test]
    fn evaluating_a_cron_policy_leaves_it_equal_to_a_fresh_parse() {
        // The cron occurrences an evaluation finds are remembered in the cycle, not the policy:
        // a reload that compares the running policy with the file's can tell "unchanged".
        let text = "name: w\npool: { tag: { key: k, value: v } }\nmin: 1\nmax: 8\nmetrics:\n  - { id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50 }\nprewarm:\n  - { name: nightly, cron: \"0 20 * * *\", duration: 2h, time_zone: Asia/Shanghai, capacity: 6 }\n";
        let parse = || parse_policy("w.yaml", text).policy.unwrap();
        let running = parse();
        let mut c = PoolCycle::new();
        for m in [0, 60, 120] {
            let _ = c.evaluate(&running, &fleet(2, 6), ts(m));
            c.complete(Achieved::AsDecided);
        }
        assert_eq!(running, parse());
        let mut changed = parse();
        changed.prewarm[0].capacity = 7;
        assert_ne!(running, changed);
    }
}
