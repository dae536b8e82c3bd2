//! The daemon's side of leases (several daemons sharing pools, see [`crate::lease`]): only the
//! due pools whose lease this daemon holds are described, read and evaluated, each under a
//! [`LeaseGuard`] the actuator checks before every mutating call; the others are shown on the
//! board as leased by their holder and looked at again a third of the lease TTL later.
//!
//! A pool that changes hosts keeps its cooldowns: before every mutating call the fence also
//! writes the pool's latest scaling records (the one about to be made included) into the lease
//! item, and the next holder merges them into its own history at its first evaluation under
//! the new lease ([`handover_text`], [`inherit`]).
//!
//! Not here: taking, renewing and handing back leases (the keeper in [`crate::lease`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::debug;
use vmscaler_engine::{Direction, EvalRecord, PoolHistory};

use super::Daemon;
use super::board::LeaseBoard;
use crate::lease::{LeaseGuard, Leases};

impl Daemon {
    /// Evaluates only the pools whose lease `leases` holds from now on.
    pub fn set_leases(&mut self, leases: Leases) {
        leases.set_policies(self.pools.keys().cloned());
        self.board.lock().lease = Some(LeaseBoard {
            holder: leases.holder().to_owned(),
            table: leases.table().name().to_owned(),
            counters: leases.counters(),
        });
        self.leases = Some(leases);
    }

    /// The leases in use, if any.
    pub fn leases(&self) -> Option<&Leases> {
        self.leases.as_ref()
    }

    /// Tells the keeper which policies this daemon runs (after a reload).
    pub(super) fn sync_lease_policies(&self) {
        if let Some(l) = &self.leases {
            l.set_policies(self.pools.keys().cloned());
        }
    }

    /// Keeps the due pools this daemon holds the lease of, with their guards; the others are
    /// put off by a third of the lease TTL and shown with their holder. Without leases every
    /// due pool is kept, unguarded.
    pub(super) fn gate(&mut self, due: Vec<String>, now: Timestamp) -> (Vec<String>, BTreeMap<String, LeaseGuard>) {
        let Some(leases) = self.leases.clone() else { return (due, BTreeMap::new()) };
        let recheck = leases.ttl() / 3;
        let mut kept = Vec::new();
        let mut guards = BTreeMap::new();
        let mut b = self.board.lock();
        if let Some(lb) = b.lease.as_mut() {
            lb.counters = leases.counters();
        }
        for name in due {
            let Some(pool) = self.pools.get_mut(&name) else { continue };
            let pb = b.pools.entry(name.clone()).or_default();
            pb.policy = name.clone();
            match leases.begin(&name, now) {
                Ok(guard) => {
                    pb.lease = Some(leases.status(&name));
                    kept.push(name.clone());
                    guards.insert(name, guard);
                }
                Err(status) => {
                    debug!(policy = %name, holder = ?status.holder, "not this daemon's lease: not evaluated");
                    pool.next_due = crate::clock::later(now, recheck);
                    // Its health is for the daemon that evaluates it to report.
                    pool.failures = 0;
                    pb.consecutive_failures = 0;
                    pb.last_error = None;
                    pb.next_evaluation = Some(pool.next_due);
                    pb.lease = Some(status);
                }
            }
        }
        (kept, guards)
    }
}

/// What a lease holder leaves the next one.
#[derive(Debug, Serialize, Deserialize)]
struct Handover {
    /// The newest scaling record of each direction, oldest first.
    records: Vec<EvalRecord>,
}

/// The handover for a pool about to act with `pending` (the decision's record as decided): the
/// newest scale-up and scale-down records of `history` and `pending`.
pub(super) fn handover_text(history: &PoolHistory, pending: EvalRecord) -> String {
    let newest = |d: Direction| {
        history.records.iter().chain([&pending]).filter(|r| r.scaled == Some(d)).max_by_key(|r| r.at).copied()
    };
    let mut records: Vec<EvalRecord> = [newest(Direction::Up), newest(Direction::Down)].into_iter().flatten().collect();
    records.sort_by_key(|r| r.at);
    serde_json::to_string(&Handover { records }).unwrap_or_default()
}

/// Merges a previous holder's records into `history` (in time order, skipping any it already
/// has); how many were added.
pub(super) fn inherit(history: &mut PoolHistory, text: &str) -> Result<usize, String> {
    let handover: Handover = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let mut added = 0;
    for r in handover.records {
        if history.records.iter().any(|x| x.at == r.at && x.scaled == r.scaled) {
            continue;
        }
        let i = history.records.partition_point(|x| x.at <= r.at);
        history.records.insert(i, r);
        added += 1;
    }
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(secs: i64, scaled: Option<Direction>) -> EvalRecord {
        EvalRecord {
            at: Timestamp::from_second(1_800_000_000 + secs).expect("ts"),
            score: Some(1.0),
            above_band: false,
            proposal: 2,
            current: 2,
            serving: 2,
            desired: 2,
            scaled,
            dry_run: false,
        }
    }

    #[test]
    fn handover_carries_the_newest_record_of_each_direction_and_merges_in_order() {
        let mut old = PoolHistory::default();
        for r in [record(0, Some(Direction::Up)), record(60, Some(Direction::Down)), record(120, None)] {
            old.push_record(r);
        }
        let text = handover_text(&old, record(180, Some(Direction::Up)));
        let mut new = PoolHistory::default();
        new.push_record(record(30, None));
        new.push_record(record(200, None));
        assert_eq!(inherit(&mut new, &text), Ok(2));
        let seen: Vec<(i64, Option<Direction>)> =
            new.records.iter().map(|r| (r.at.as_second() - 1_800_000_000, r.scaled)).collect();
        assert_eq!(seen, [(30, None), (60, Some(Direction::Down)), (180, Some(Direction::Up)), (200, None)]);
        assert_eq!(inherit(&mut new, &text), Ok(0), "merging twice adds nothing");
        assert!(inherit(&mut new, "{").is_err());
    }
}
