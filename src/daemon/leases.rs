//! The daemon's side of leases (several daemons sharing pools, see [`crate::lease`]): only the
//! due pools whose lease this daemon holds are described, read and evaluated, each under a
//! [`LeaseGuard`] the actuator checks before every mutating call; the others are shown on the
//! board as leased by their holder and looked at again a third of the lease TTL later.
//!
//! A pool that changes hosts keeps its cooldowns: before every mutating call the fence also
//! writes the pool's latest scaling records (the one about to be made included) into the lease
//! item (as a [`crate::formats::HandoverV1`]), and the next holder merges them into its own
//! history at its first evaluation under the new lease (`PoolCycle::handover`,
//! `PoolCycle::merge`).
//!
//! Not here: taking, renewing and handing back leases (the keeper in [`crate::lease`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use tracing::debug;

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
        if let Some(lb) = self.board.lock().lease.as_mut() {
            lb.counters = leases.counters();
        }
        for name in due {
            let Some(pool) = self.pools.get_mut(&name) else { continue };
            match leases.begin(&name, now) {
                Ok(guard) => {
                    pool.lease = Some(leases.status(&name));
                    kept.push(name.clone());
                    guards.insert(name.clone(), guard);
                }
                Err(status) => {
                    debug!(policy = %name, holder = ?status.holder, "not this daemon's lease: not evaluated");
                    pool.next_due = crate::clock::later(now, recheck);
                    // Its health is for the daemon that evaluates it to report.
                    pool.failures = 0;
                    pool.last_error = None;
                    pool.lease = Some(status);
                }
            }
            self.publish_pool(&name);
        }
        (kept, guards)
    }
}

#[cfg(test)]
mod tests {
    use vmscaler_engine::{Direction, EvalRecord};

    use crate::formats::HandoverV1;

    fn record(secs: i64, scaled: Option<Direction>) -> EvalRecord {
        EvalRecord {
            at: jiff::Timestamp::from_second(1_800_000_000 + secs).expect("ts"),
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
    fn a_handover_round_trips_and_one_from_before_versions_still_parses() {
        let records = [record(60, Some(Direction::Down)), record(180, Some(Direction::Up))];
        let text = HandoverV1::text(&records);
        assert_eq!(HandoverV1::parse(&text), Ok(records.to_vec()));
        // As the release before format versions wrote it.
        let old = r#"{"records":[{"at":"2027-01-15T08:01:00Z","score":1.0,"above_band":false,"proposal":2,"current":2,"desired":2,"serving":2,"scaled":"down"}]}"#;
        assert_eq!(HandoverV1::parse(old), Ok(vec![record(60, Some(Direction::Down))]));
        assert!(HandoverV1::parse("{").is_err());
        assert!(HandoverV1::parse(r#"{"version":2,"records":[]}"#).is_err());
    }
}
