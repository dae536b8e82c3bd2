//! Running on more than one host: which daemon evaluates which pool.
//!
//! With a `lease:` section in the config, a daemon evaluates (and acts on) a pool only while
//! it holds that pool's lease in DynamoDB (the table protocol is [`crate::aws::lease`]).
//! [`Leases::round`], run by a keeper task every third of the lease TTL, does the bookkeeping:
//! - heartbeats this daemon's membership item first, then renews the leases it holds, so its
//!   membership always lapses before its leases do;
//! - reads the table (strongly consistent) and [`plan`]s: each daemon takes at most its fair
//!   share `ceil(policies / live members)` of free leases, hands back surplus one lease per
//!   round when members join, and takes an orphan (a lease free for a whole TTL) whatever its
//!   share, so a pool is never left unheld because daemons disagree on who is alive;
//! - wakes just after the earliest foreign lease expires, so a dead daemon's pools are taken
//!   over as soon as their leases expire (a live daemon's are renewed before, every third of
//!   the TTL).
//!
//! Leases and memberships are written valid for five sixths of the TTL: a daemon that dies
//! right after renewing has its pools taken over within the TTL, wake-up and take included.
//!
//! The daemon asks [`Leases::begin`] before evaluating a pool: a [`LeaseGuard`] marks the lease
//! busy (never handed back mid-evaluation) and is the [`Fence`] the actuator checks before
//! every mutating call: a conditional write that extends the lease only if this daemon still
//! holds it under the same token and it has not expired. A fence that fails drops the lease
//! locally, so the pool is not evaluated again until it is won back (with a higher token).
//!
//! What fencing cannot cover: EC2 and Auto Scaling take no token, so the check is made by the
//! actor just before the call. A passed fence extends the lease's validity, so another daemon
//! can only take over five sixths of a TTL later; a check that itself took over a third of the
//! TTL (a pause during it) is refused. The one window left is a pause of more than that between
//! a passed check and the request leaving the process. Leases compare expiries written with
//! each daemon's clock: hosts' clocks must agree to well within the TTL (NTP).
//!
//! Not here: the DynamoDB calls ([`crate::aws::lease`]), deciding or acting on pools (the
//! daemon and the actuator), reading the clock other than through the injected [`Clock`].

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use crate::aws::lease::{Fence, Lease, LeaseTable, TableView};
use crate::clock::{Clock, later};
use crate::config::LeaseConfig;

/// What one daemon should do with the leases at one round.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Live members, this daemon included.
    pub members: usize,
    /// `ceil(policies / members)`.
    pub share: usize,
    /// Leases to hand back now.
    pub release: Vec<String>,
    /// Free leases free for a whole TTL: taken whatever the share.
    pub orphans: Vec<String>,
    /// Free leases in the order to try, and how many of them to take.
    pub candidates: Vec<String>,
    pub need: usize,
    /// When a foreign lease expires, or a free one becomes an orphan.
    pub wake: Option<Timestamp>,
}

/// A stable per-daemon order of policies, so daemons starting together try different free
/// leases first instead of all racing for the same one.
fn spread(holder: &str, policy: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in holder.bytes().chain([0]).chain(policy.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What [`plan`] looks at.
#[derive(Debug, Clone, Copy)]
pub struct Situation<'a> {
    /// This daemon's holder name.
    pub me: &'a str,
    /// The policies this daemon runs.
    pub wanted: &'a BTreeSet<String>,
    /// The leases it holds (after this round's renewals).
    pub held: &'a BTreeSet<String>,
    /// Leases under evaluation: never handed back.
    pub busy: &'a BTreeSet<String>,
    pub view: &'a TableView,
    /// When each free lease was first seen free by this daemon.
    pub free_since: &'a BTreeMap<String, Timestamp>,
}

/// Decides which leases this daemon takes and hands back at `now`.
pub fn plan(sit: Situation<'_>, now: Timestamp, ttl: Duration) -> Plan {
    let Situation { me, wanted, held, busy, view, free_since } = sit;
    let mut live: BTreeSet<&str> = view.members.iter().filter(|m| m.expires > now).map(|m| m.holder.as_str()).collect();
    live.insert(me);
    let members = live.len();
    let share = wanted.len().div_ceil(members);
    let mut p = Plan { members, share, ..Plan::default() };
    // Leases of policies this daemon no longer runs go back at once.
    p.release.extend(held.iter().filter(|h| !wanted.contains(*h) && !busy.contains(*h)).cloned());
    let mine: Vec<&String> = held.iter().filter(|h| wanted.contains(*h)).collect();
    if mine.len() > share {
        // One at a time, so a joining member is not flooded and nobody churns.
        let mut spare: Vec<&String> = mine.iter().copied().filter(|h| !busy.contains(*h)).collect();
        spare.sort_by_key(|h| std::cmp::Reverse(spread(me, h)));
        p.release.extend(spare.into_iter().take(1).cloned());
    }
    let mut free: Vec<&String> = Vec::new();
    for policy in wanted.iter().filter(|w| !held.contains(*w)) {
        match view.leases.get(policy).and_then(|r| r.live_holder(now).map(|h| (h, r.expires))) {
            Some((holder, expires)) if holder != me => {
                // A renewed lease expires a TTL ahead, past the next round; one that comes due
                // sooner belongs to a daemon that stopped renewing, whose members item has
                // lapsed first: look again right after it expires.
                let at = expires.checked_add(Duration::from_millis(1)).unwrap_or(expires);
                p.wake = Some(p.wake.map_or(at, |w| w.min(at)));
            }
            // A live lease recorded under this daemon's name that it does not know of: an
            // earlier run's. It is free to take (with a new token).
            _ => free.push(policy),
        }
    }
    free.sort_by_key(|f| spread(me, f));
    for f in free {
        let since = free_since.get(f).copied().unwrap_or(now);
        let orphan_at = later(since, ttl);
        if orphan_at <= now {
            p.orphans.push(f.clone());
        } else {
            p.candidates.push(f.clone());
            p.wake = Some(p.wake.map_or(orphan_at, |w| w.min(orphan_at)));
        }
    }
    p.need = share.saturating_sub(mine.len());
    p
}

/// How a pool's lease stands, as the board shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseStatus {
    /// Who holds it (`None`: nobody, as of the last round).
    pub holder: Option<String>,
    pub token: Option<u64>,
    /// Whether this daemon holds it.
    pub mine: bool,
}

/// Lease events since start, for `/metrics` and the tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseCounters {
    pub taken: u64,
    pub renewed: u64,
    pub lost: u64,
    pub released: u64,
    /// Fence checks that allowed a mutating call.
    pub fence_passed: u64,
    /// Mutating calls not made because the fence failed.
    pub fenced_off: u64,
    pub errors: u64,
}

/// What one [`Leases::round`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub members: usize,
    pub share: usize,
    /// Leases taken, with their new token.
    pub taken: Vec<(String, u64)>,
    pub released: Vec<String>,
    pub lost: Vec<String>,
    pub held: Vec<String>,
    /// When the next round should run.
    pub next: Timestamp,
    pub error: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    wanted: BTreeSet<String>,
    held: BTreeMap<String, Lease>,
    busy: BTreeSet<String>,
    free_since: BTreeMap<String, Timestamp>,
    view: TableView,
    counters: LeaseCounters,
}

struct Inner {
    table: LeaseTable,
    holder: String,
    ttl: Duration,
    /// How long a written lease (and membership) stays valid: five sixths of the TTL, so that
    /// a daemon dying right after a renewal has its pools taken over within the TTL, wake-up
    /// and take included.
    validity: Duration,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

/// This daemon's leases. Cheap to clone; clones share state.
#[derive(Clone)]
pub struct Leases {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases").field("holder", &self.inner.holder).field("table", &self.inner.table).finish()
    }
}

impl Leases {
    /// Leases in `table` for the holder and TTL of `cfg`; `clock` times fences and the keeper.
    pub fn new(table: LeaseTable, cfg: &LeaseConfig, clock: Arc<dyn Clock>) -> Leases {
        Leases {
            inner: Arc::new(Inner {
                table,
                holder: cfg.holder.clone(),
                ttl: cfg.ttl,
                validity: cfg.ttl - cfg.ttl / 6,
                clock,
                state: Mutex::new(State::default()),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn holder(&self) -> &str {
        &self.inner.holder
    }

    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    pub fn table(&self) -> &LeaseTable {
        &self.inner.table
    }

    pub fn counters(&self) -> LeaseCounters {
        self.state().counters
    }

    /// The policies this daemon runs; only their leases are taken.
    pub fn set_policies<I: IntoIterator<Item = String>>(&self, names: I) {
        self.state().wanted = names.into_iter().collect();
    }

    /// Policies whose lease this daemon holds, with their tokens.
    pub fn held(&self) -> BTreeMap<String, u64> {
        self.state().held.iter().map(|(p, l)| (p.clone(), l.token)).collect()
    }

    /// The lease of `policy` as of the last round.
    pub fn status(&self, policy: &str) -> LeaseStatus {
        let st = self.state();
        if let Some(l) = st.held.get(policy) {
            return LeaseStatus { holder: Some(l.holder.clone()), token: Some(l.token), mine: true };
        }
        match st.view.leases.get(policy) {
            Some(r) if r.holder.as_deref() != Some(self.holder()) => {
                LeaseStatus { holder: r.holder.clone(), token: Some(r.token), mine: false }
            }
            _ => LeaseStatus { holder: None, token: None, mine: false },
        }
    }

    /// A guard for evaluating `policy`, when this daemon holds its lease and it has not
    /// expired at `now`; otherwise the lease as it stands.
    pub fn begin(&self, policy: &str, now: Timestamp) -> Result<LeaseGuard, LeaseStatus> {
        let mut st = self.state();
        match st.held.get(policy) {
            Some(l) if l.expires > now => {
                let lease = l.clone();
                st.busy.insert(policy.to_owned());
                Ok(LeaseGuard { leases: self.clone(), lease, handover: Mutex::new(None) })
            }
            _ => {
                drop(st);
                Err(self.status(policy))
            }
        }
    }

    /// One round of heartbeat, renewals, reading the table, hand-backs and takes at `now`.
    pub async fn round(&self, now: Timestamp) -> RoundReport {
        let table = &self.inner.table;
        let (me, ttl, valid) = (self.inner.holder.as_str(), self.inner.ttl, self.inner.validity);
        let mut report = RoundReport { next: later(now, ttl / 3), ..RoundReport::default() };
        let mut errors = Vec::new();
        if let Err(e) = table.heartbeat(me, now, valid).await {
            errors.push(e.to_string());
        }
        let held: Vec<Lease> = self.state().held.values().cloned().collect();
        for lease in held {
            if lease.expires <= now {
                self.drop_lease(&lease, "expired before it could be renewed");
                report.lost.push(lease.policy.clone());
                continue;
            }
            match table.extend(&lease, now, valid).await {
                Ok(Some(renewed)) => {
                    let mut st = self.state();
                    st.counters.renewed += 1;
                    if let Some(l) = st.held.get_mut(&lease.policy).filter(|l| l.token == renewed.token) {
                        l.expires = l.expires.max(renewed.expires);
                    }
                }
                Ok(None) => {
                    self.drop_lease(&lease, "taken over by another daemon");
                    report.lost.push(lease.policy.clone());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let view = match table.read().await {
            Ok(v) => v,
            Err(e) => {
                errors.push(e.to_string());
                return self.finish(report, errors);
            }
        };
        let plan = {
            let mut st = self.state();
            let free: BTreeSet<String> = st
                .wanted
                .iter()
                .filter(|w| !st.held.contains_key(*w))
                .filter(|w| view.leases.get(*w).and_then(|r| r.live_holder(now)).is_none_or(|h| h == me))
                .cloned()
                .collect();
            st.free_since.retain(|p, _| free.contains(p));
            for f in free {
                st.free_since.entry(f).or_insert(now);
            }
            let held: BTreeSet<String> = st.held.keys().cloned().collect();
            let sit = Situation {
                me,
                wanted: &st.wanted,
                held: &held,
                busy: &st.busy,
                view: &view,
                free_since: &st.free_since,
            };
            let plan = plan(sit, now, ttl);
            st.view = view;
            plan
        };
        report.members = plan.members;
        report.share = plan.share;
        if let Some(w) = plan.wake {
            report.next = report.next.min(w.max(now));
        }
        for policy in &plan.release {
            // Out of `held` (under the lock, unless an evaluation began meanwhile) before the
            // write: from here on no fence for it can pass.
            let lease = {
                let mut st = self.state();
                if st.busy.contains(policy) {
                    continue;
                }
                st.held.remove(policy)
            };
            let Some(lease) = lease else { continue };
            match table.release(&lease, now).await {
                Ok(_) => {
                    info!(policy = %policy, token = lease.token, members = plan.members, share = plan.share, "lease handed back");
                    self.state().counters.released += 1;
                    report.released.push(policy.clone());
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        let mut taken = 0usize;
        let orphans = plan.orphans.iter().map(|p| (p, true));
        let candidates = plan.candidates.iter().map(|p| (p, false));
        for (policy, orphan) in orphans.chain(candidates) {
            if !orphan && taken >= plan.need {
                break;
            }
            match table.take(policy, me, now, valid).await {
                Ok(Some(lease)) => {
                    info!(policy = %policy, token = lease.token, holder = %me, orphan, members = plan.members, share = plan.share, "lease taken");
                    taken += 1;
                    report.taken.push((policy.clone(), lease.token));
                    let mut st = self.state();
                    st.counters.taken += 1;
                    st.free_since.remove(policy);
                    st.held.insert(policy.clone(), lease);
                }
                Ok(None) => debug!(policy = %policy, "lease taken by another daemon first"),
                Err(e) => errors.push(e.to_string()),
            }
        }
        self.finish(report, errors)
    }

    fn finish(&self, mut report: RoundReport, errors: Vec<String>) -> RoundReport {
        let mut st = self.state();
        report.held = st.held.keys().cloned().collect();
        if !errors.is_empty() {
            st.counters.errors += errors.len() as u64;
            let msg = errors.join("; ");
            warn!(error = %msg, "lease round incomplete");
            report.error = Some(msg);
        }
        report
    }

    /// Forgets a lease this daemon no longer holds (same token only: a newer take stays).
    fn drop_lease(&self, lease: &Lease, why: &str) {
        let mut st = self.state();
        if st.held.get(&lease.policy).is_some_and(|l| l.token == lease.token) {
            st.held.remove(&lease.policy);
            st.counters.lost += 1;
            warn!(policy = %lease.policy, token = lease.token, reason = why, "lease lost: pool no longer evaluated here");
        }
    }

    /// Runs [`Leases::round`] until `stop` turns true; `scale` is the daemon clock's speed
    /// relative to wall time (sleeps are in wall time).
    pub async fn keep(&self, scale: f64, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let report = self.round(self.inner.clock.now()).await;
            let virt = report.next.duration_since(self.inner.clock.now()).as_secs_f64().max(0.0);
            let nap = Duration::try_from_secs_f64(virt / scale.max(0.001))
                .unwrap_or(Duration::from_secs(1))
                .clamp(Duration::from_millis(20), Duration::from_secs(60));
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(nap) => {}
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// Hands back every lease and ends the membership (clean shutdown, after the last
    /// evaluation). Returns the leases handed back.
    pub async fn shutdown(&self) -> Vec<String> {
        let now = self.inner.clock.now();
        let held: Vec<Lease> = std::mem::take(&mut self.state().held).into_values().collect();
        let mut released = Vec::new();
        for lease in held {
            match self.inner.table.release(&lease, now).await {
                Ok(true) => released.push(lease.policy.clone()),
                Ok(false) => {}
                Err(e) => warn!(policy = %lease.policy, error = %e, "cannot hand the lease back: it will expire"),
            }
        }
        if let Err(e) = self.inner.table.leave(&self.inner.holder, now).await {
            warn!(error = %e, "cannot end the lease membership: it will expire");
        }
        self.state().counters.released += released.len() as u64;
        info!(released = ?released, "leases handed back");
        released
    }
}

/// This daemon's right to act on one pool during one evaluation; the actuator's [`Fence`].
#[derive(Debug)]
pub struct LeaseGuard {
    leases: Leases,
    lease: Lease,
    /// Written for the next holder by the next fence check.
    handover: Mutex<Option<String>>,
}

impl LeaseGuard {
    pub fn token(&self) -> u64 {
        self.lease.token
    }

    pub fn policy(&self) -> &str {
        &self.lease.policy
    }

    /// What the previous holders left for this one, read when the lease was taken.
    pub fn inherited(&self) -> Option<&str> {
        self.lease.handover.as_deref()
    }

    /// Text for the next holder, written with the next fence check (in the same conditional
    /// write, so only while this daemon still holds the lease).
    pub fn leave_for_next(&self, text: String) {
        *self.handover.lock().unwrap_or_else(PoisonError::into_inner) = Some(text);
    }

    /// Checks with DynamoDB that the lease is still this daemon's under the same token and
    /// unexpired, extending it by a TTL. A check that took more than a third of the TTL (the
    /// process was paused, say) does not count: the lease may be about to pass on.
    pub async fn check(&self) -> Result<(), String> {
        let inner = &self.leases.inner;
        let now = inner.clock.now();
        let handover = self.handover.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let verdict = inner.table.extend_with(&self.lease, now, inner.validity, handover.as_deref()).await;
        let took = inner.clock.now().duration_since(now).unsigned_abs();
        let (policy, token) = (&self.lease.policy, self.lease.token);
        let refused = match verdict {
            Ok(Some(renewed)) if took <= inner.ttl / 3 => {
                let mut st = self.leases.state();
                st.counters.fence_passed += 1;
                if let Some(l) = st.held.get_mut(policy).filter(|l| l.token == renewed.token) {
                    l.expires = l.expires.max(renewed.expires);
                }
                drop(st);
                info!(policy = %policy, token, "lease fence passed");
                return Ok(());
            }
            Ok(Some(_)) => format!("the lease check took {took:?}, too long to act safely (token {token})"),
            Ok(None) => {
                self.leases.drop_lease(&self.lease, "fence check failed");
                format!("lease lost: no longer held under token {token}")
            }
            Err(e) => format!("cannot check the lease: {e}"),
        };
        self.leases.state().counters.fenced_off += 1;
        warn!(policy = %policy, token, reason = %refused, "lease fence refused");
        Err(refused)
    }
}

impl Fence for LeaseGuard {
    fn check(&self) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(LeaseGuard::check(self))
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.leases.state().busy.remove(&self.lease.policy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::aws::lease::{LeaseRecord, MemberRecord};

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + secs).expect("timestamp")
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    fn member(holder: &str, expires: Timestamp) -> MemberRecord {
        MemberRecord { holder: holder.into(), expires }
    }

    fn record(policy: &str, holder: Option<&str>, token: u64, expires: Timestamp) -> LeaseRecord {
        LeaseRecord { policy: policy.into(), holder: holder.map(str::to_owned), token, expires }
    }

    const TTL: Duration = Duration::from_secs(30);

    fn sit<'a>(
        me: &'a str,
        wanted: &'a BTreeSet<String>,
        held: &'a BTreeSet<String>,
        busy: &'a BTreeSet<String>,
        view: &'a TableView,
        free_since: &'a BTreeMap<String, Timestamp>,
    ) -> Situation<'a> {
        Situation { me, wanted, held, busy, view, free_since }
    }

    #[test]
    fn fair_share_takes_at_most_its_part() {
        let wanted = set(&["a", "b", "c", "d", "e", "f"]);
        let view = TableView {
            leases: BTreeMap::new(),
            members: vec![member("x", t(20)), member("y", t(20)), member("z", t(20)), member("gone", t(-1))],
        };
        let p = plan(sit("x", &wanted, &set(&[]), &set(&[]), &view, &BTreeMap::new()), t(0), TTL);
        assert_eq!((p.members, p.share, p.need), (3, 2, 2));
        assert_eq!(p.candidates.len(), 6, "every free lease is a candidate, tried in order");
        assert!(p.orphans.is_empty() && p.release.is_empty());
        // Another daemon orders them differently.
        let q = plan(sit("y", &wanted, &set(&[]), &set(&[]), &view, &BTreeMap::new()), t(0), TTL);
        assert_ne!(p.candidates, q.candidates);
        assert_eq!(p.wake, Some(t(30)), "free leases become orphans after a TTL");
    }

    #[test]
    fn surplus_goes_back_one_at_a_time_and_never_a_busy_one() {
        let wanted = set(&["a", "b", "c", "d", "e", "f"]);
        let view = TableView { leases: BTreeMap::new(), members: vec![member("y", t(20)), member("z", t(20))] };
        let held = set(&["a", "b", "c", "d", "e", "f"]);
        let p = plan(sit("x", &wanted, &held, &set(&[]), &view, &BTreeMap::new()), t(0), TTL);
        assert_eq!((p.share, p.release.len(), p.need), (2, 1, 0));
        let all_busy = plan(sit("x", &wanted, &held, &held, &view, &BTreeMap::new()), t(0), TTL);
        assert!(all_busy.release.is_empty());
        // A policy no longer run goes back at once, whatever the share.
        let p = plan(sit("x", &set(&["a"]), &set(&["a", "z"]), &set(&[]), &view, &BTreeMap::new()), t(0), TTL);
        assert_eq!(p.release, vec!["z".to_owned()]);
    }

    #[test]
    fn orphans_are_taken_whatever_the_share_and_foreign_expiry_wakes() {
        let wanted = set(&["a", "b", "c"]);
        let mut leases = BTreeMap::new();
        leases.insert("a".to_owned(), record("a", Some("y"), 3, t(12)));
        leases.insert("b".to_owned(), record("b", None, 4, t(-40)));
        let view = TableView { leases, members: vec![member("y", t(20)), member("z", t(20))] };
        let since: BTreeMap<String, Timestamp> = [("b".to_owned(), t(-40)), ("c".to_owned(), t(-5))].into();
        // x already holds its share (1 of 3 among 3 members).
        let p = plan(sit("x", &wanted, &set(&["c"]), &set(&[]), &view, &since), t(0), TTL);
        assert_eq!((p.share, p.need), (1, 0));
        assert_eq!(p.orphans, vec!["b".to_owned()], "free since -40s with a 30s TTL");
        // x wakes right after y's lease on a expires.
        let p = plan(sit("x", &wanted, &set(&[]), &set(&[]), &view, &since), t(0), TTL);
        assert_eq!(p.wake, Some(t(12) + Duration::from_millis(1)));
        // An expired lease is free: a dead holder's pools are candidates.
        let p = plan(sit("x", &wanted, &set(&["c"]), &set(&[]), &view, &since), t(13), TTL);
        assert!(p.candidates.contains(&"a".to_owned()), "{p:?}");
    }
}
