//! Learning from the past before the first evaluation: a pool's metric history, read in bulk
//! (the daemon reads it from CloudWatch at start and for a new `predictive:` policy), turned
//! into the demand the daemon's own evaluations would have observed, so the model does not
//! wait [`super::MIN_HISTORY_HOURS`] to learn.
//!
//! Demand comes out of [`crate::decide`] itself, one decision per past period (on a copy of
//! the policy without pre-warm floors or forecast, which do not change the score): the one
//! function that turns metrics into capacity stays the only one, and a backfilled slot means
//! exactly what a live one does (`score × current`, at the reading's period start).
//!
//! Not here: reading CloudWatch (`src/aws/metrics/history.rs` in the root package).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jiff::Timestamp;

use super::{Forecaster, MAX_SLOTS, Slot, slot_of, slot_start};
use crate::decide::decide;
use crate::fleet::{Fleet, GroupState};
use crate::history::{PoolHistory, Sample};
use crate::policy::{Goal, Policy};

/// A pool's past load, one datapoint per metric per period (all metrics on one period grid).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PastLoad {
    /// Datapoints by metric id, at their period's start. Values are in the metric's own
    /// period's terms (a `Sum` over 1 minute stays a 1-minute sum).
    pub samples: BTreeMap<String, Vec<Sample>>,
    /// Instances in service per period start (needed by utilisation metrics: the load is the
    /// utilisation times the instances that carried it).
    pub serving: BTreeMap<Timestamp, u32>,
    /// The period of the grid.
    pub period: Duration,
}

/// What a backfill did, for logs and the pool's board.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backfilled {
    /// Past periods with a demand.
    pub periods: usize,
    /// 5-minute slots filled (slots that already had live data are left as they were).
    pub slots: usize,
    /// Periods left out because the pool's size at the time is unknown.
    pub no_size: usize,
}

/// The demand (capacity units, unrounded) each past period's metrics asked for, oldest first.
/// Periods where no metric had a usable value, or where a utilisation metric's instances in
/// service are unknown, give none.
pub fn past_demand(policy: &Policy, past: &PastLoad) -> (Vec<(Timestamp, f64)>, usize) {
    let mut replay = policy.clone();
    replay.prewarm.clear();
    replay.predictive = None;
    let needs_size = policy.metrics.iter().any(|m| matches!(m.goal, Goal::Utilization { .. }));
    let times: BTreeSet<Timestamp> = past.samples.values().flatten().map(|s| s.at).collect();
    let mut cursors: BTreeMap<&str, usize> = BTreeMap::new();
    let mut out = Vec::with_capacity(times.len());
    let mut no_size = 0;
    for t in times {
        // The size at `t`: its own period's, or the one just before it (a missed datapoint).
        let size = past
            .serving
            .range(..=t)
            .next_back()
            .filter(|(at, _)| t.duration_since(**at).unsigned_abs() <= past.period.max(Duration::from_secs(60)))
            .map(|(_, n)| *n);
        if needs_size && size.is_none() {
            no_size += 1;
            continue;
        }
        let mut history = PoolHistory::default();
        for (id, series) in &past.samples {
            let i = cursors.entry(id.as_str()).or_default();
            while series.get(*i).is_some_and(|s| s.at < t) {
                *i += 1;
            }
            if let Some(s) = series.get(*i).filter(|s| s.at == t) {
                history.push_sample(id, *s);
            }
        }
        // Any positive size does for metrics that want a capacity of their own (backlogs).
        let n = size.unwrap_or(1);
        let fleet = Fleet::Group(GroupState {
            name: String::new(),
            desired: n,
            min: 0,
            max: n.max(policy.max),
            in_service: n,
            activity_in_progress: false,
        });
        if let Some((_, d)) = decide(&replay, &history, &fleet, t).demand() {
            out.push((t, d));
        }
    }
    (out, no_size)
}

impl Forecaster {
    /// Learns a pool's past load: [`past_demand`], [`Forecaster::backfill`], and a refit at
    /// `now` (for a policy with `predictive:`; without one, nothing).
    pub fn learn_past(&mut self, policy: &Policy, past: &PastLoad, now: Timestamp) -> Backfilled {
        let Some(spec) = &policy.predictive else { return Backfilled::default() };
        let (demand, no_size) = past_demand(policy, past);
        let slots = self.backfill(&demand);
        self.refresh(spec, now);
        Backfilled { periods: demand.len(), slots, no_size }
    }

    /// Adds past demand (from [`past_demand`]) to the slots that have no data yet, keeping at
    /// most the usual span of history, and drops the fitted model so that the next
    /// [`Forecaster::refresh`] refits at once. Returns the number of slots filled.
    pub fn backfill(&mut self, points: &[(Timestamp, f64)]) -> usize {
        let fresh: Vec<(Timestamp, f64)> = points
            .iter()
            .copied()
            .filter(|(t, d)| d.is_finite() && *d >= 0.0 && self.value(slot_of(*t)).is_none())
            .collect();
        let Some(earliest) = fresh.iter().map(|(t, _)| slot_of(*t)).min() else { return 0 };
        if !self.slots.is_empty() && earliest < self.first {
            // Older than what is kept: make room in front, within the span kept.
            let len = i64::try_from(self.slots.len()).unwrap_or(MAX_SLOTS);
            let newest = self.first + len;
            let new_first = earliest.max(newest - MAX_SLOTS);
            while self.first > new_first {
                self.slots.push_front(Slot::default());
                self.first -= 1;
            }
        }
        let before = self.observed_slots();
        for (t, d) in fresh {
            self.observe(t, d);
        }
        self.fitted = None;
        self.observed_slots().saturating_sub(before)
    }

    /// Start of the newest 5-minute slot with data.
    pub fn last_observed(&self) -> Option<Timestamp> {
        self.last_seen.map(slot_start)
    }

    /// Start of the oldest 5-minute slot with data.
    pub fn first_observed_at(&self) -> Option<Timestamp> {
        self.first_observed().map(slot_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Fit;
    use crate::policy::{Predictive, parse_policy};

    const T0: i64 = 1_793_577_600; // Monday 2026-11-02 00:00 UTC
    const DAY: i64 = 86_400;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(T0 + secs).unwrap()
    }

    fn policy(metrics: &str) -> Policy {
        let text = format!(
            "name: t\npool: {{auto_scaling_group: g}}\nmin: 1\nmax: 50\nmetrics:\n{metrics}predictive: {{mode: active}}\nprewarm:\n  - {{name: daily, cron: \"0 3 * * *\", duration: 1h, time_zone: UTC, capacity: 40}}\n"
        );
        let r = parse_policy("t.yaml", &text);
        r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics))
    }

    const CPU: &str = "  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\n";
    const BACKLOG: &str =
        "  - {id: q, namespace: AWS/SQS, name: ApproximateNumberOfMessagesVisible, target_per_instance: 100}\n";

    /// `days` of 5-minute CPU at 50 % on a pool whose size is 4, and 12 from 10:00 to 11:00.
    fn cpu_past(days: i64) -> PastLoad {
        let mut past = PastLoad { period: Duration::from_secs(300), ..PastLoad::default() };
        let mut series = Vec::new();
        for k in 0..days * 288 {
            let t = at(k * 300);
            let n = if (10 * 3600..11 * 3600).contains(&(k * 300).rem_euclid(DAY)) { 12 } else { 4 };
            series.push(Sample { at: t, value: 50.0 });
            past.serving.insert(t, n);
        }
        past.samples.insert("cpu".into(), series);
        past
    }

    #[test]
    fn utilisation_times_the_instances_that_carried_it() {
        let (demand, no_size) = past_demand(&policy(CPU), &cpu_past(1));
        assert_eq!(no_size, 0);
        assert_eq!(demand.len(), 288);
        assert_eq!(demand[0], (at(0), 4.0));
        assert_eq!(demand[10 * 12], (at(10 * 3600), 12.0), "the pre-warm floor does not change demand");
    }

    #[test]
    fn a_period_without_the_pool_size_gives_no_demand_but_a_backlog_needs_none() {
        let mut past = cpu_past(1);
        past.serving.retain(|t, _| *t < at(3600));
        let (demand, no_size) = past_demand(&policy(CPU), &past);
        assert_eq!((demand.len(), no_size), (13, 275), "one period of grace after the last size");
        let backlog = PastLoad {
            samples: [("q".to_owned(), vec![Sample { at: at(0), value: 750.0 }])].into(),
            period: Duration::from_secs(300),
            ..PastLoad::default()
        };
        assert_eq!(past_demand(&policy(BACKLOG), &backlog), (vec![(at(0), 7.5)], 0));
    }

    #[test]
    fn garbage_gives_nothing() {
        let past = PastLoad {
            samples: [(
                "q".to_owned(),
                vec![Sample { at: at(0), value: -3.0 }, Sample { at: at(300), value: f64::NAN }],
            )]
            .into(),
            period: Duration::from_secs(300),
            ..PastLoad::default()
        };
        assert_eq!(past_demand(&policy(BACKLOG), &past).0, vec![]);
    }

    #[test]
    fn backfill_makes_a_model_at_once_and_keeps_live_slots() {
        let spec = Predictive::default();
        let (demand, _) = past_demand(&policy(CPU), &cpu_past(4));
        let now = at(4 * DAY);
        let mut f = Forecaster::new();
        // Live data of the last hour first (the daemon ran for an hour before the fetch ended).
        for k in 0..12 {
            f.observe(at(4 * DAY - 3600 + k * 300), 7.0);
        }
        f.refresh(&spec, now);
        assert!(matches!(f.fit_result(), Some(Fit::Learning { hours: 1, .. })));
        let filled = f.backfill(&demand);
        assert_eq!(filled, 4 * 288 - 12, "the live hour is kept, everything before it added");
        assert_eq!(f.observed(at(4 * DAY - 300), now), vec![(at(4 * DAY - 300), 7.0)]);
        assert!(f.refresh(&spec, now), "a backfill refits at the next refresh");
        let Some(Fit::Ready(_)) = f.fit_result() else { panic!("{:?}", f.fit_result()) };
        assert_eq!(f.outlook(&spec, now).map(|o| o.capacity), Ok(4), "midnight as on the past days");
        let hours = f.hourly(&spec, 50, now, 24);
        assert_eq!((hours[9].floor, hours[10].floor), (12, 12), "the 10:00 peak, from 09:55 on");
        assert_eq!(f.first_observed_at(), Some(at(0)));
        assert_eq!(f.last_observed(), Some(at(4 * DAY - 300)));
        assert_eq!(f.backfill(&demand), 0, "nothing twice");
    }

    #[test]
    fn backfill_keeps_at_most_the_span_kept() {
        let mut f = Forecaster::new();
        f.observe(at(70 * DAY), 1.0);
        let old: Vec<(Timestamp, f64)> = (0..70 * 288).map(|k| (at(k * 300), 2.0)).collect();
        f.backfill(&old);
        assert_eq!(f.observed_slots(), usize::try_from(MAX_SLOTS).unwrap());
        assert_eq!(f.first_observed_at(), Some(at(7 * DAY + 300)));
    }
}
