//! More than one ops host: leases in moto's DynamoDB.
//!
//! In-process: the table protocol (take, renew, contention, takeover only after expiry with a
//! higher token, a stale holder's fence failing, release) and the fair-share keeper of three
//! daemons driven on a manual clock (spreading, a dead daemon's pools taken over within the
//! TTL, a paused daemon fenced off and rebalanced back in, hand-back on shutdown).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use vmscaler::aws::lease::{Lease, LeaseTable};
use vmscaler::aws::stats::Operation;
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::config::LeaseConfig;
use vmscaler::lease::Leases;

use crate::support::Moto;

const TABLE: &str = "vmscaler-leases";
const TTL: Duration = Duration::from_secs(30);

/// A clock the test moves by hand, shared by every simulated daemon.
#[derive(Debug)]
struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap() = t;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap()
    }
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// A whole second near the real time (moto may expire membership items by their TTL).
fn start_time() -> Timestamp {
    Timestamp::from_second(SystemClock.now().as_second()).unwrap()
}

#[test]
fn lease_protocol_takes_renews_fences_and_hands_over_by_token() {
    let moto = Moto::start_serialized();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let aws = moto.aws().await;
        let table = LeaseTable::new(&aws, TABLE);
        assert!(table.create().await.unwrap(), "the table is created");
        assert!(!table.create().await.unwrap(), "an existing table is left alone");
        let t0 = start_time();

        let a = table.take("web", "a", t0, TTL).await.unwrap().expect("a free lease is taken");
        assert_eq!((a.token, a.expires), (1, t0 + TTL));
        // Contention: held and unexpired, so b cannot take it, even a second before expiry.
        assert_eq!(table.take("web", "b", t0 + secs(1), TTL).await.unwrap(), None);
        assert_eq!(table.take("web", "b", t0 + secs(29), TTL).await.unwrap(), None);
        // Renewal keeps the token and moves the expiry.
        let a = table.extend(&a, t0 + secs(10), TTL).await.unwrap().expect("renewed");
        assert_eq!((a.token, a.expires), (1, t0 + secs(40)));
        assert_eq!(table.take("web", "b", t0 + secs(35), TTL).await.unwrap(), None, "renewed: still a's");

        // a stops renewing (paused): after expiry b takes over with a higher token.
        let b = table.take("web", "b", t0 + secs(41), TTL).await.unwrap().expect("expired: b takes it");
        assert_eq!(b.token, 2);
        // The stale holder's fence fails, even when its own clock says the lease is still valid.
        assert_eq!(table.extend(&a, t0 + secs(41), TTL).await.unwrap(), None);
        assert_eq!(table.extend(&a, t0 + secs(20), TTL).await.unwrap(), None, "a lagging clock does not help");
        assert!(!table.release(&a, t0 + secs(41)).await.unwrap(), "a cannot release b's lease");
        // A lease never renews past its expiry, even for its own holder.
        assert_eq!(table.extend(&b, b.expires + secs(1), TTL).await.unwrap(), None);
        let b = table.extend(&b, t0 + secs(50), TTL).await.unwrap().expect("b renews");

        let view = table.read().await.unwrap();
        let rec = &view.leases["web"];
        assert_eq!((rec.holder.as_deref(), rec.token, rec.expires), (Some("b"), 2, t0 + secs(80)));

        // Release hands it back at once, token kept; the next take increments it.
        assert!(table.release(&b, t0 + secs(51)).await.unwrap());
        let rec = table.read().await.unwrap().leases["web"].clone();
        assert_eq!((rec.holder, rec.token), (None, 2));
        let a2 = table.take("web", "a", t0 + secs(52), TTL).await.unwrap().expect("released: free at once");
        assert_eq!(a2.token, 3);
        assert_eq!(table.extend(&b, t0 + secs(52), TTL).await.unwrap(), None, "b's old token is dead");

        // Two daemons racing for a free lease: exactly one wins.
        for round in 0..5 {
            let policy = format!("race-{round}");
            let (x, y) = tokio::join!(table.take(&policy, "x", t0, TTL), table.take(&policy, "y", t0, TTL));
            let winners = [x.unwrap(), y.unwrap()].into_iter().flatten().collect::<Vec<Lease>>();
            assert_eq!(winners.len(), 1, "{winners:?}");
            assert_eq!(winners[0].token, 1);
        }

        // Membership.
        table.heartbeat("a", t0, TTL).await.unwrap();
        table.heartbeat("b", t0, secs(5)).await.unwrap();
        let members = table.read().await.unwrap().members;
        let live: Vec<&str> = members.iter().filter(|m| m.expires > t0 + secs(10)).map(|m| m.holder.as_str()).collect();
        assert_eq!(live, vec!["a"], "{members:?}");
        assert!(aws.stats().calls(Operation::UpdateItem) >= 20);
        assert!(aws.stats().calls(Operation::Scan) >= 3);
        assert_eq!(aws.stats().calls(Operation::CreateTable), 2);
    });
}

/// Three simulated daemons on one manual clock; each runs its keeper round when it asked to.
struct Sim {
    clock: Arc<ManualClock>,
    daemons: Vec<Leases>,
    next: Vec<Timestamp>,
    last: Vec<Timestamp>,
    alive: Vec<bool>,
}

impl Sim {
    /// Runs the alive daemon whose round is due first, at its time; returns its index.
    async fn step(&mut self) -> usize {
        let i = (0..self.daemons.len()).filter(|i| self.alive[*i]).min_by_key(|i| self.next[*i]).unwrap();
        self.clock.set(self.next[i]);
        let report = self.daemons[i].round(self.next[i]).await;
        self.last[i] = self.next[i];
        assert!(report.error.is_none(), "{report:?}");
        self.next[i] = report.next.max(self.next[i] + Duration::from_millis(1));
        i
    }

    fn now(&self) -> Timestamp {
        self.clock.now()
    }

    fn counts(&self) -> Vec<usize> {
        self.daemons.iter().map(|d| d.held().len()).collect()
    }

    /// Policy -> (holder, token) over the running daemons' own views (a paused one's view is
    /// stale by design: its fence is what stops it).
    fn holders(&self) -> BTreeMap<String, (usize, u64)> {
        let mut out = BTreeMap::new();
        for (i, d) in self.daemons.iter().enumerate().filter(|(i, _)| self.alive[*i]) {
            for (p, t) in d.held() {
                assert!(out.insert(p.clone(), (i, t)).is_none(), "{p} held by two daemons");
            }
        }
        out
    }

    async fn until(&mut self, what: &str, limit: Duration, cond: impl Fn(&Sim) -> bool) -> Duration {
        let start = self.now();
        while !cond(self) {
            self.step().await;
            assert!(self.now().duration_since(start).unsigned_abs() <= limit, "no {what} within {limit:?}");
        }
        self.now().duration_since(start).unsigned_abs()
    }
}

#[test]
fn three_keepers_spread_take_over_within_the_ttl_and_fence_off_a_paused_one() {
    let moto = Moto::start_serialized();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let aws = moto.aws().await;
        let table = LeaseTable::new(&aws, TABLE);
        table.create().await.unwrap();
        let t0 = start_time();
        let clock = Arc::new(ManualClock(Mutex::new(t0)));
        let policies: Vec<String> = (1..=6).map(|i| format!("pool-{i}")).collect();
        let daemons: Vec<Leases> = ["a", "b", "c"]
            .iter()
            .map(|h| {
                let cfg = LeaseConfig { table: TABLE.into(), ttl: TTL, holder: (*h).into(), create_table: false };
                let dyn_clock: Arc<dyn Clock> = Arc::clone(&clock) as Arc<dyn Clock>;
                let l = Leases::new(LeaseTable::new(&aws, TABLE), &cfg, dyn_clock);
                l.set_policies(policies.clone());
                l
            })
            .collect();
        // Staggered starts: a first, alone, takes everything; the others join a second apart.
        let next = vec![t0, t0 + secs(1), t0 + secs(2)];
        let mut sim = Sim { clock, daemons, last: next.clone(), next, alive: vec![true; 3] };
        let spread = sim.until("spread", secs(300), |s| s.counts() == vec![2, 2, 2]).await;
        assert_eq!(sim.holders().len(), 6);
        println!("lease: 6 pools spread 2/2/2 over 3 daemons {spread:?} (daemon time) after the first start");
        // Stable: more rounds change nothing.
        let before = sim.holders();
        for _ in 0..12 {
            sim.step().await;
        }
        assert_eq!(sim.holders(), before, "balanced leases stay put");

        // c is paused in the middle of an evaluation: it holds a guard on one of its pools.
        let c_pool = sim.daemons[2].held().keys().next().unwrap().clone();
        let c_token = sim.daemons[2].held()[&c_pool];
        let guard = sim.daemons[2].begin(&c_pool, sim.now()).expect("c holds its pool");
        sim.alive[2] = false;
        let paused_at = sim.now();
        // a and b take c's pools over as soon as they expire: within the TTL of c's last round.
        let c_last_round = sim.last[2];
        sim.until("takeover", secs(120), |s| s.holders().len() == 6 && s.counts()[0] + s.counts()[1] == 6).await;
        let takeover = sim.now().duration_since(c_last_round).unsigned_abs();
        println!("lease: c's pools taken over {takeover:?} after its last renewal (ttl {TTL:?})");
        assert!(takeover <= TTL + secs(1), "takeover took {takeover:?}");
        let (_, new_token) = sim.holders().into_iter().find(|(p, _)| *p == c_pool).map(|(_, v)| v).unwrap();
        assert!(new_token > c_token, "takeover raises the token: {c_token} -> {new_token}");

        // c resumes: its fence fails (the action is not made), and the pool is dropped locally.
        sim.clock.set(paused_at + TTL * 2);
        let err = guard.check().await.expect_err("a paused holder is fenced off");
        assert!(err.contains("lease lost"), "{err}");
        drop(guard);
        assert!(!sim.daemons[2].held().contains_key(&c_pool));
        assert_eq!(sim.daemons[2].counters().fenced_off, 1);
        assert!(sim.daemons[2].begin(&c_pool, sim.now()).is_err(), "c no longer evaluates the pool");
        // It rejoins: a and b hand back one lease a round until it has its share again, never
        // one under evaluation (a is evaluating one of its pools throughout).
        let a_pool = sim.daemons[0].held().keys().next().unwrap().clone();
        let a_guard = sim.daemons[0].begin(&a_pool, sim.now()).unwrap();
        sim.next[2] = sim.now();
        sim.next[0] = sim.next[0].max(sim.now());
        sim.next[1] = sim.next[1].max(sim.now());
        sim.alive[2] = true;
        let rejoin = sim.until("rebalance", secs(300), |s| s.counts() == vec![2, 2, 2]).await;
        println!("lease: paused daemon back to its share {rejoin:?} after resuming");
        let c_now = sim.daemons[2].held();
        assert!(c_now.values().all(|t| *t > c_token), "c acts only under fresh tokens: {c_now:?}");

        assert!(sim.daemons[0].held().contains_key(&a_pool), "a busy lease stays");
        a_guard.check().await.expect("a holds its lease: the fence passes");

        // A clean shutdown hands leases back: no waiting for expiry.
        let released = sim.daemons[1].shutdown().await;
        assert_eq!(released.len(), 2);
        sim.alive[1] = false;
        let handover = sim.until("hand-over", secs(60), |s| s.counts()[0] + s.counts()[2] == 6).await;
        println!("lease: a clean shutdown's pools taken over {handover:?} later");
        assert!(handover <= TTL / 3 + secs(1), "released leases need no expiry: {handover:?}");
        a_guard.check().await.expect("still a's");
        assert_eq!(sim.daemons[0].counters().fence_passed, 2);
    });
}
