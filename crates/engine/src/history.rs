//! The history window: recent metric samples and recent evaluation records of one pool.
//!
//! A [`PoolHistory`] is owned and advanced by a [`crate::cycle::PoolCycle`] (the daemon's,
//! `plan`'s and the backtest's alike), which prunes it to the policy's window. Outside the
//! engine it is read-only: records stay in time order (what `serving_during` and the
//! stabilisation window rely on) because only the engine adds them. Not serializable: the
//! daemon's state file and lease handover have format types of their own.

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

/// One pool-level datapoint (per-instance series already aggregated).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub at: Timestamp,
    pub value: f64,
}

/// What one evaluation leaves behind for later ones: enough for confirmation counts,
/// the scale-down stabilisation window and cooldowns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalRecord {
    pub at: Timestamp,
    /// Blended score; `None` when every metric was missing.
    pub score: Option<f64>,
    /// Whether the score was above the tolerance band (a confirming evaluation).
    pub above_band: bool,
    /// Capacity the metrics asked for before guards (stabilisation uses it).
    pub proposal: u32,
    pub current: u32,
    pub desired: u32,
    /// Instances in service (running, not booting) when this evaluation was made.
    pub serving: u32,
    /// Whether this evaluation changed capacity (in either direction); cooldowns start here.
    pub scaled: Option<Direction>,
    /// Made in dry-run: nothing was changed. Its `scaled` paces later dry-run evaluations, but
    /// once the pool is live it starts no cooldown (see [`PoolHistory::end_dry_run`]).
    pub dry_run: bool,
}

/// How far in the future a record or sample may be dated before it is taken for the mark of a
/// clock that was ahead and discarded: beyond ordinary clock corrections (NTP steps are seconds),
/// short enough that a clock stepped back by more than this cannot hold a cooldown for long.
pub const FUTURE_TOLERANCE: Duration = Duration::from_secs(300);

/// What [`PoolHistory::discard_future`] dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Discarded {
    pub records: usize,
    pub samples: usize,
    /// The latest date among them.
    pub latest: Option<Timestamp>,
    /// Scaling records re-dated to `now` instead (the newest of each direction), so their
    /// cooldown still holds, counted from now.
    pub redated: usize,
}

impl Discarded {
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.samples == 0 && self.redated == 0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
}

/// Metric samples by metric id, and evaluation records, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolHistory {
    pub(crate) samples: BTreeMap<String, VecDeque<Sample>>,
    pub(crate) records: VecDeque<EvalRecord>,
}

impl PoolHistory {
    /// A history restored from its parts (a state file): samples are ordered and deduplicated
    /// by time (non-finite ones dropped) and records put in time order, whatever order they
    /// came in.
    pub fn from_parts(
        samples: impl IntoIterator<Item = (String, Vec<Sample>)>,
        records: impl IntoIterator<Item = EvalRecord>,
    ) -> PoolHistory {
        let mut h = PoolHistory::default();
        for (metric, series) in samples {
            for s in series {
                h.push_sample(&metric, s);
            }
        }
        let mut records: Vec<EvalRecord> = records.into_iter().collect();
        records.sort_by_key(|r| r.at);
        h.records = records.into();
        h
    }

    /// Metric samples by metric id, each series oldest first.
    pub fn samples(&self) -> &BTreeMap<String, VecDeque<Sample>> {
        &self.samples
    }

    /// Evaluation records, oldest first.
    pub fn records(&self) -> &VecDeque<EvalRecord> {
        &self.records
    }

    /// Adds a datapoint, keeping each series ordered by time; a datapoint for a timestamp
    /// already present replaces it (CloudWatch revises a period as it fills).
    pub(crate) fn push_sample(&mut self, metric: &str, sample: Sample) {
        if !sample.value.is_finite() {
            return;
        }
        let series = self.samples.entry(metric.to_owned()).or_default();
        match series.back() {
            Some(last) if last.at < sample.at => series.push_back(sample),
            None => series.push_back(sample),
            Some(_) => match series.binary_search_by(|s| s.at.cmp(&sample.at)) {
                Ok(i) => series[i] = sample,
                Err(i) => series.insert(i, sample),
            },
        }
    }

    /// Appends the record of the evaluation just made. Records are in evaluation order, which
    /// is time order unless the wall clock stepped back (then the newest evaluation is still
    /// last: its confirmations and cooldowns are read from it, see the clock-jump tests).
    pub(crate) fn push_record(&mut self, record: EvalRecord) {
        self.records.push_back(record);
    }

    /// Inserts a record made elsewhere (a lease handover, an intent) in time order, after any
    /// of the same instant, unless a record of that instant and direction is already there
    /// (merged twice); whether it was added.
    pub(crate) fn merge_record(&mut self, record: EvalRecord) -> bool {
        if self.records.iter().any(|x| x.at == record.at && x.scaled == record.scaled) {
            return false;
        }
        let i = self.records.partition_point(|x| x.at <= record.at);
        self.records.insert(i, record);
        true
    }

    /// Newest datapoint of `metric` no older than `max_age` at `now` and not in the future.
    pub fn latest(&self, metric: &str, now: Timestamp, max_age: Duration) -> Option<Sample> {
        let series = self.samples.get(metric)?;
        let s = series.iter().rev().find(|s| s.at <= now)?;
        let age = now.duration_since(s.at);
        (age.unsigned_abs() <= max_age).then_some(*s)
    }

    /// Drops samples and records older than `window` before `now`, but always keeps the last
    /// scaling record of each direction so a long cooldown is never forgotten.
    pub(crate) fn prune(&mut self, now: Timestamp, window: Duration) {
        let cutoff = crate::duration::before(now, window);
        for series in self.samples.values_mut() {
            while series.front().is_some_and(|s| s.at < cutoff) {
                series.pop_front();
            }
        }
        self.samples.retain(|_, s| !s.is_empty());
        // Records are pushed in time order: only a prefix can expire, and usually nothing in it
        // needs dropping but the records kept for cooldowns. Skip the retain then (it is most
        // of a backtest's time otherwise).
        let expired = self.records.partition_point(|r| r.at < cutoff);
        if expired == 0 {
            return;
        }
        let keep_up = self.last_scaled(Direction::Up).map(|r| r.at);
        let keep_down = self.last_scaled(Direction::Down).map(|r| r.at);
        let kept = |r: &EvalRecord| Some(r.at) == keep_up || Some(r.at) == keep_down;
        if self.records.iter().take(expired).all(kept) {
            return;
        }
        self.records.retain(|r| r.at >= cutoff || kept(r));
    }

    /// Drops every record and sample dated after `now + tolerance`: a clock that was once ahead
    /// (then corrected, or a restart on a good clock) must not hold cooldowns for years, nor
    /// outlive [`PoolHistory::prune`]. The newest scaling record of each direction among them
    /// is kept, re-dated to `now`: the action it records did happen (the fleet shows it), so
    /// its cooldown holds once more, counted from now: a clock step holds a pool for at most
    /// one cooldown, and never makes it act twice. Records stay in time order.
    pub(crate) fn discard_future(&mut self, now: Timestamp, tolerance: Duration) -> Discarded {
        let limit = crate::duration::after(now, tolerance);
        let mut out = Discarded::default();
        let mut note = |at: Timestamp| {
            out.latest = Some(out.latest.map_or(at, |l: Timestamp| l.max(at)));
        };
        for series in self.samples.values_mut() {
            while series.back().is_some_and(|s| s.at > limit) {
                if let Some(s) = series.pop_back() {
                    note(s.at);
                    out.samples += 1;
                }
            }
        }
        self.samples.retain(|_, s| !s.is_empty());
        let mut future: Vec<EvalRecord> = Vec::new();
        if self.records.iter().any(|r| r.at > limit) {
            self.records.retain(|r| {
                if r.at > limit {
                    future.push(*r);
                    false
                } else {
                    true
                }
            });
        }
        for r in &future {
            note(r.at);
        }
        for direction in [Direction::Up, Direction::Down] {
            if let Some(r) = future.iter().rev().find(|r| r.scaled == Some(direction)) {
                let mut kept = *r;
                kept.at = now;
                let i = self.records.partition_point(|x| x.at <= now);
                self.records.insert(i, kept);
                out.redated += 1;
            }
        }
        out.records = future.len() - out.redated;
        out
    }

    /// The pool goes live after a dry run: its dry-run records no longer start cooldowns (no
    /// action was taken), but still count for confirmations and stabilisation. Returns how many
    /// records changed.
    pub(crate) fn end_dry_run(&mut self) -> usize {
        let mut n = 0;
        for r in self.records.iter_mut().filter(|r| r.dry_run && r.scaled.is_some()) {
            r.scaled = None;
            n += 1;
        }
        n
    }

    /// The most recent evaluation that scaled in `direction`.
    pub fn last_scaled(&self, direction: Direction) -> Option<&EvalRecord> {
        self.records.iter().rev().find(|r| r.scaled == Some(direction))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).unwrap()
    }

    #[test]
    fn samples_stay_ordered_and_revisions_replace() {
        let mut h = PoolHistory::default();
        for (t, v) in [(60, 1.0), (180, 3.0), (120, 2.0), (180, 3.5), (0, f64::NAN)] {
            h.push_sample("cpu", Sample { at: ts(t), value: v });
        }
        let vals: Vec<f64> = h.samples["cpu"].iter().map(|s| s.value).collect();
        assert_eq!(vals, [1.0, 2.0, 3.5]);
        assert_eq!(h.latest("cpu", ts(200), Duration::from_secs(60)).map(|s| s.value), Some(3.5));
        assert_eq!(h.latest("cpu", ts(400), Duration::from_secs(60)), None, "stale");
        assert_eq!(h.latest("cpu", ts(150), Duration::from_secs(60)).map(|s| s.value), Some(2.0), "no future");
    }

    /// A record of a pool of one at `t` seconds, scaled in `scaled`'s direction if any.
    fn rec(t: i64, scaled: Option<Direction>) -> EvalRecord {
        EvalRecord {
            at: ts(t),
            score: None,
            above_band: false,
            proposal: 1,
            current: 1,
            serving: 1,
            desired: 1,
            scaled,
            dry_run: false,
        }
    }

    #[test]
    fn prune_keeps_last_scaling_records() {
        let mut h = PoolHistory::default();
        h.push_record(rec(0, Some(Direction::Up)));
        h.push_record(rec(60, None));
        h.push_record(rec(120, Some(Direction::Down)));
        h.push_record(rec(1000, None));
        h.prune(ts(1000), Duration::from_secs(100));
        let kept: Vec<i64> = h.records.iter().map(|r| r.at.as_second()).collect();
        assert_eq!(kept, [0, 120, 1000]);
    }

    /// Finding 5: a record and samples left by a clock ten years ahead are dropped (and said
    /// so); a record within the tolerance stays.
    #[test]
    fn future_records_and_samples_are_discarded() {
        let ten_years = 10 * 365 * 86_400;
        let mut h = PoolHistory::default();
        h.push_record(rec(900, None));
        h.push_record(rec(1100, None));
        h.push_record(rec(ten_years, Some(Direction::Up)));
        h.push_record(rec(ten_years + 60, None));
        h.push_sample("cpu", Sample { at: ts(900), value: 1.0 });
        h.push_sample("cpu", Sample { at: ts(ten_years), value: 2.0 });
        let d = h.discard_future(ts(1000), FUTURE_TOLERANCE);
        assert_eq!(d, Discarded { records: 1, samples: 1, latest: Some(ts(ten_years + 60)), redated: 1 });
        // The future scale-up is kept, re-dated to now: one cooldown from now, not ten years.
        let at: Vec<i64> = h.records.iter().map(|r| r.at.as_second()).collect();
        assert_eq!(at, [900, 1000, 1100], "1100 is within the tolerance");
        assert_eq!(h.last_scaled(Direction::Up).map(|r| r.at), Some(ts(1000)));
        assert_eq!(h.samples["cpu"].len(), 1);
        assert!(h.discard_future(ts(1000), FUTURE_TOLERANCE).is_empty());
    }

    /// Finding 7: dry-run records stop starting cooldowns once the pool is live.
    #[test]
    fn going_live_forgets_dry_run_cooldowns() {
        let mut h = PoolHistory::default();
        let mut r = EvalRecord {
            at: ts(0),
            score: Some(2.0),
            above_band: true,
            proposal: 4,
            current: 2,
            serving: 2,
            desired: 4,
            scaled: Some(Direction::Up),
            dry_run: true,
        };
        h.push_record(r);
        r.dry_run = false;
        r.at = ts(60);
        h.push_record(r);
        assert_eq!(h.end_dry_run(), 1);
        assert_eq!(h.last_scaled(Direction::Up).map(|r| r.at), Some(ts(60)), "the live record keeps its cooldown");
        assert!(h.records[0].above_band, "still a confirming evaluation");
    }
}
