//! More than one ops host: leases in moto's DynamoDB.
//!
//! In-process: the table protocol (take, renew, contention, takeover only after expiry with a
//! higher token, a stale holder's fence failing, release) and the fair-share keeper of three
//! daemons driven on a manual clock (spreading, a dead daemon's pools taken over within the
//! TTL, a paused daemon fenced off and rebalanced back in, hand-back on shutdown).
//!
//! Processes: three `vmscaler run` daemons sharing one moto (EC2 and DynamoDB) and one policy
//! directory of six pools, on a clock ten times faster than wall time (TTL 30 s = 3 s), while
//! an outside hand keeps stopping members so the daemons keep acting. One is killed with
//! SIGKILL, another paused with SIGSTOP in the middle of an evaluation for twice the TTL. The
//! daemons' JSON logs (every take, fence and action with its token) must show no action under
//! a token that had been superseded, the killed daemon's pools taken over within the TTL, and
//! the paused daemon fenced off after resuming; the fleet ends at its min with no overshoot.
//!
//! moto runs with requests serialised ([`Moto::start_serialized`]): its threaded server does
//! not make conditional writes atomic, DynamoDB does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use vmscaler::aws::lease::{Lease, LeaseTable};
use vmscaler::aws::stats::Operation;
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::config::LeaseConfig;
use vmscaler::daemon::runloop::ScaledClock;
use vmscaler::lease::Leases;

use crate::support::Moto;
use crate::support::faults::{Fault, FaultConfig, FaultProxy};

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

/// moto's adapters and the lease table, created.
async fn created_table(moto: &Moto) -> (vmscaler::aws::Aws, LeaseTable) {
    let aws = moto.aws().await;
    let table = LeaseTable::new(&aws, TABLE);
    table.create().await.unwrap();
    (aws, table)
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
        let (aws, _table) = created_table(&moto).await;
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
        assert!(takeover <= TTL, "takeover took {takeover:?} (ttl {TTL:?})");
        let (_, new_token) = sim.holders().into_iter().find(|(p, _)| *p == c_pool).map(|(_, v)| v).unwrap();
        assert!(new_token > c_token, "takeover raises the token: {c_token} -> {new_token}");

        // c resumes: its fence fails (the action is not made), and the pool is dropped locally.
        sim.until("c's pause", secs(120), |s| s.now() >= paused_at + TTL * 2).await;
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

/// A pool that changes hosts keeps its cooldown: daemon a scales it up and dies; b takes the
/// lease over after the TTL and, although the load still asks for more, waits out a's cooldown
/// before scaling up again.
#[test]
fn a_pool_taken_over_keeps_the_previous_holders_cooldown() {
    use jiff::ToSpan;
    let moto = Moto::start_serialized();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (aws, _table) = created_table(&moto).await;
        let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 5, 0, None).await;
        let t0 = {
            let now = SystemClock.now().as_second();
            Timestamp::from_second(now - now.rem_euclid(60) - 3 * 3600).unwrap()
        };
        // A backlog of 40: four instances' worth, one instance a step, 10 minutes apart.
        let points: Vec<(Timestamp, f64)> = (-10..30).map(|m| (t0 + (m * 60).seconds(), 40.0)).collect();
        moto.put_metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", &[("QueueName", "jobs")], &points).await;
        let policy = format!(
            "name: web\npool:\n  tag: {{ key: \"vmscaler:pool\", value: web }}\nmin: 1\nmax: 6\ninterval: 1m\n\
             metrics:\n{}scaling:\n  scale_up: {{ confirmations: 1, cooldown: 10m, max_step: 1 }}\n",
            crate::support::policy::backlog_metric("backlog", "jobs")
        );
        let clock = Arc::new(ManualClock(Mutex::new(t0)));
        let daemon = |holder: &'static str| {
            let s = crate::daemon_loop::Scratch::new(&format!("handover-{holder}"));
            s.write_policy("web.yaml", &policy);
            let cfg = s.config(&moto);
            let (mut d, report) = vmscaler::daemon::Daemon::new(cfg, aws.clone(), t0).expect("daemon");
            assert!(report.rejected.is_empty(), "{report:?}");
            let lease_cfg = LeaseConfig { table: TABLE.into(), ttl: TTL, holder: holder.into(), create_table: false };
            let leases = Leases::new(LeaseTable::new(&aws, TABLE), &lease_cfg, Arc::clone(&clock) as Arc<dyn Clock>);
            d.set_leases(leases.clone());
            (s, d, leases)
        };
        let (_sa, mut a, a_leases) = daemon("a");
        let (_sb, mut b, b_leases) = daemon("b");
        a_leases.round(t0).await;
        assert_eq!(a_leases.held().len(), 1, "a takes the free lease");
        let r = a.tick(t0).await;
        let e = &r.decisions[0];
        assert_eq!((e.current, e.desired), (1, 2), "{e:?}");

        // a dies. b's rounds find the lease held until it expires, then take it.
        let mut now = t0;
        while b_leases.held().is_empty() {
            now += 10.seconds();
            clock.set(now);
            b_leases.round(now).await;
            assert!(now < t0 + 2.minutes(), "b never took the lease");
        }
        // b's first evaluations: the load still asks for 4, a's cooldown (10m from t0) holds.
        let mut minute = now + 1.minute();
        while minute < t0 + 10.minutes() {
            clock.set(minute);
            b_leases.round(minute).await;
            let r = b.tick(minute).await;
            if let Some(e) = r.decisions.first() {
                assert_eq!(e.desired, 2, "b scaled up within a's cooldown at {minute}: {e:?}");
                assert!(e.reasons.iter().any(|r| r.contains("cooldown")), "{e:?}");
            }
            minute += 1.minute();
        }
        for _ in 0..2 {
            clock.set(minute);
            b_leases.round(minute).await;
            b.tick(minute).await;
            minute += 1.minute();
        }
        let states = moto.instance_states().await;
        let running = pool.running.iter().chain(&pool.stopped).filter(|i| states[*i] == "running").count();
        assert_eq!(running, 3, "b scaled up once a's cooldown was over: {states:?}");
    });
}

// ---------------------------------------------------------------------------------------------
// Three `vmscaler run` processes on one moto and one policy directory.
// ---------------------------------------------------------------------------------------------

/// Daemon clock speed: a 10 s evaluation interval is 1 s of wall time.
const SCALE: f64 = 10.0;
/// The lease TTL on the daemons' clock (3 s of wall time).
const PROC_TTL: Duration = Duration::from_secs(30);
/// Members every pool keeps running (its policy's `min`; no metrics, so nothing more).
const RUNNING: usize = 3;

fn wall(d: Duration) -> Duration {
    d.div_f64(SCALE)
}

fn pool_policy(name: &str) -> String {
    crate::daemon_loop::tagged_policy(name, "")
        .replace("min: 1\n", "min: 3\n")
        .replace("max: 8\n", "max: 6\n")
        .replace("interval: 1m\n", "interval: 10s\n")
}

struct Node {
    name: &'static str,
    child: Child,
    log: PathBuf,
    url: String,
}

impl Node {
    fn start(moto: &Moto, root: &Path, name: &'static str, endpoint: &str, origin: Timestamp) -> Node {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let config = root.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "policy_dir: policies\nstate_dir: state-{name}\nlisten: 127.0.0.1:{port}\nregion: us-east-1\n\
                 endpoint_url: {endpoint}\nlog_format: json\nreload_poll: 1h\ntime_scale: {SCALE}\n\
                 time_origin: {origin}\nlease:\n  table: {TABLE}\n  ttl: {}s\n  holder: {name}\n  create_table: true\n",
                PROC_TTL.as_secs()
            ),
        )
        .unwrap();
        let log = root.join(format!("{name}.log"));
        let child = moto.spawn_daemon(&config, &log);
        Node { name, child, log, url: format!("http://127.0.0.1:{port}") }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().unwrap().success();
        assert!(ok, "kill {sig} {}", self.name);
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_exit(&mut self, limit: Duration) -> Option<i32> {
        let start = vmscaler::clock::monotonic();
        while start.elapsed() < limit {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{} did not exit; log:\n{}", self.name, self.log_text());
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-CONT", &self.child.id().to_string()]).stderr(Stdio::null()).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One line of a daemon's JSON log.
#[derive(Debug, Clone)]
struct Event {
    node: &'static str,
    at: Timestamp,
    message: String,
    policy: Option<String>,
    token: Option<u64>,
    line: serde_json::Value,
}

fn events(node: &Node) -> Vec<Event> {
    node.log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let at: Timestamp = v["timestamp"].as_str()?.parse().ok()?;
            let message = v["message"].as_str()?.to_owned();
            let policy = v["policy"].as_str().or_else(|| v["span"]["policy"].as_str()).map(str::to_owned);
            let token = v["token"].as_u64().or_else(|| v["span"]["lease_token"].as_u64());
            Some(Event { node: node.name, at, message, policy, token, line: v })
        })
        .collect()
}

/// Live holders by policy (holder, token), read from the table at the daemons' clock.
async fn table_holders(table: &LeaseTable, clock: &ScaledClock) -> BTreeMap<String, (String, u64)> {
    let now = clock.now();
    // Empty until a daemon has created the table.
    let Ok(view) = table.read().await else { return BTreeMap::new() };
    view.leases
        .into_values()
        .filter_map(|r| {
            let holder = r.live_holder(now)?.to_owned();
            Some((r.policy, (holder, r.token)))
        })
        .collect()
}

fn count_by_holder(holders: &BTreeMap<String, (String, u64)>) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (h, _) in holders.values() {
        *out.entry(h.clone()).or_default() += 1;
    }
    out
}

/// Polls the table every 20 ms until `cond` holds; returns the wall time it took.
async fn wait_table(
    table: &LeaseTable,
    clock: &ScaledClock,
    what: &str,
    limit: Duration,
    cond: impl Fn(&BTreeMap<String, (String, u64)>) -> bool,
) -> (Duration, BTreeMap<String, (String, u64)>) {
    let start = vmscaler::clock::monotonic();
    loop {
        let h = table_holders(table, clock).await;
        if cond(&h) {
            return (start.elapsed(), h);
        }
        assert!(start.elapsed() < limit, "no {what} within {limit:?}: {h:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Instances of each pool by state, from moto.
async fn pool_states(moto: &Moto, members: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, Vec<(String, String)>> {
    let states = moto.instance_states().await;
    members
        .iter()
        .map(|(p, ids)| (p.clone(), ids.iter().map(|id| (id.clone(), states[id].clone())).collect()))
        .collect()
}

fn running(states: &[(String, String)]) -> Vec<String> {
    states.iter().filter(|(_, s)| s == "running").map(|(id, _)| id.clone()).collect()
}

/// Stops one running member of a pool, as an outside hand would; returns it.
async fn knock_out(moto: &Moto, ec2: &aws_sdk_ec2::Client, members: &BTreeMap<String, Vec<String>>, pool: &str) {
    let states = pool_states(moto, members).await;
    if let Some(id) = running(&states[pool]).first() {
        ec2.stop_instances().instance_ids(id).send().await.expect("stop instance");
    }
}

#[test]
fn three_daemons_never_act_on_one_pool_together_through_kill_and_pause() {
    let started = vmscaler::clock::monotonic();
    let moto = Moto::start_serialized();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let s = crate::daemon_loop::Scratch::new("lease-procs");
    let names: Vec<String> = (1..=6).map(|i| format!("p{i}")).collect();
    let origin = start_time();
    let clock = ScaledClock::new(Arc::new(SystemClock), origin, SCALE);
    let ttl_wall = wall(PROC_TTL);
    let mut nodes = Vec::new();
    let mut knocked = 0u32;
    let (killed_at, d3_pools, paused_at, resumed_at, d2_pools) = rt.block_on(async {
        let ec2 = moto.ec2().await;
        let mut members: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for n in &names {
            let p = moto.create_tagged_pool(("vmscaler:pool", n), RUNNING, 3, 0, None).await;
            members.insert(n.clone(), [p.running, p.stopped].concat());
            s.write_policy(&format!("{n}.yaml"), &pool_policy(n));
        }
        // d2 reads its fleets through a proxy that answers DescribeInstances 400 ms late, so it
        // can be paused in the middle of an evaluation, before it acts.
        let proxy = FaultProxy::start(
            &moto.endpoint,
            FaultConfig {
                seed: 7,
                per_mille: 1000,
                operations: vec!["DescribeInstances"],
                kinds: vec![(Fault::Slow, 1)],
                hang: secs(30),
                slow: Duration::from_millis(400),
            },
        )
        .await;
        nodes.push(Node::start(&moto, &s.root, "d1", &moto.endpoint, origin));
        nodes.push(Node::start(&moto, &s.root, "d2", &proxy.endpoint, origin));
        nodes.push(Node::start(&moto, &s.root, "d3", &moto.endpoint, origin));
        let aws = moto.aws().await;
        let table = LeaseTable::new(&aws, TABLE);
        let balanced = |h: &BTreeMap<String, (String, u64)>, want: &[(&str, usize)]| {
            let c = count_by_holder(h);
            h.len() == names.len() && c.len() == want.len() && want.iter().all(|(n, k)| c.get(*n) == Some(k))
        };
        let (spread, _) =
            wait_table(&table, &clock, "2/2/2", secs(40), |h| balanced(h, &[("d1", 2), ("d2", 2), ("d3", 2)])).await;
        println!("lease procs: 6 pools spread 2/2/2 over 3 daemons {spread:?} after they started");

        // From now on an outside hand stops a running member somewhere every 250 ms, so the
        // daemons keep acting (each pool's min brings it back).
        let mut chaos_at = vmscaler::clock::monotonic();
        let mut next_pool = 0usize;
        let mut chaos = |knocked: &mut u32| {
            let pool = names[next_pool % names.len()].clone();
            next_pool += 1;
            *knocked += 1;
            pool
        };
        let run_chaos_for = async |d: Duration, knocked: &mut u32, pick: &mut dyn FnMut(&mut u32) -> String| {
            let until = vmscaler::clock::monotonic() + d;
            while vmscaler::clock::monotonic() < until {
                let pool = pick(knocked);
                knock_out(&moto, &ec2, &members, &pool).await;
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        };
        run_chaos_for(secs(3), &mut knocked, &mut chaos).await;
        // d1's board shows who holds the pools it does not.
        let view = vmscaler::cmd::status::http_get(&nodes[0].url, "/v1/decisions").unwrap();
        let v: serde_json::Value = serde_json::from_str(&view).unwrap();
        let foreign = v["pools"].as_array().unwrap().iter().filter(|p| p["lease"]["mine"] == false).count();
        assert_eq!(foreign, 4, "d1 shows the 4 pools leased by others: {view}");
        assert!(view.contains("\"holder\":\"d2\"") && view.contains("\"holder\":\"d3\""), "{view}");

        // SIGKILL d3: its pools are taken over as soon as their leases expire.
        let before = table_holders(&table, &clock).await;
        let d3_pools: Vec<String> = before.iter().filter(|(_, (h, _))| h == "d3").map(|(p, _)| p.clone()).collect();
        let killed_at = SystemClock.now();
        nodes[2].signal("-KILL");
        let (takeover, _) =
            wait_table(&table, &clock, "takeover", secs(15), |h| balanced(h, &[("d1", 3), ("d2", 3)])).await;
        println!("lease procs: d3 killed, its pools held again {takeover:?} later (table polled), ttl {ttl_wall:?}");
        run_chaos_for(secs(2), &mut knocked, &mut chaos).await;

        // SIGSTOP d2 while it waits for a DescribeInstances answer, i.e. mid-evaluation; its pools
        // then each lose a member, so the evaluation it resumes will want to start one.
        let held = table_holders(&table, &clock).await;
        let d2_pools: Vec<String> = held.iter().filter(|(_, (h, _))| h == "d2").map(|(p, _)| p.clone()).collect();
        let seen = proxy.requests().get("DescribeInstances").copied().unwrap_or(0);
        let wait_from = vmscaler::clock::monotonic();
        while proxy.requests().get("DescribeInstances").copied().unwrap_or(0) == seen {
            assert!(wait_from.elapsed() < secs(10), "d2 made no DescribeInstances call");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        nodes[1].signal("-STOP");
        let paused_at = SystemClock.now();
        for p in &d2_pools {
            knock_out(&moto, &ec2, &members, p).await;
            knocked += 1;
        }
        chaos_at = chaos_at.min(vmscaler::clock::monotonic());
        run_chaos_for(ttl_wall * 2, &mut knocked, &mut chaos).await;
        let during = table_holders(&table, &clock).await;
        assert!(balanced(&during, &[("d1", 6)]), "d1 holds every pool while d2 is paused: {during:?}");
        nodes[1].signal("-CONT");
        let resumed_at = SystemClock.now();
        let (rejoin, _) =
            wait_table(&table, &clock, "rebalance", secs(20), |h| balanced(h, &[("d1", 3), ("d2", 3)])).await;
        println!("lease procs: d2 paused {:?}, back to 3 pools {rejoin:?} after resuming", ttl_wall * 2);
        run_chaos_for(secs(1), &mut knocked, &mut chaos).await;
        let _ = chaos_at;

        // Quiet: every pool returns to its min and stays there (a pool two daemons both
        // restarted members of would stay above it: missing data never scales in).
        let quiet = vmscaler::clock::monotonic();
        loop {
            let st = pool_states(&moto, &members).await;
            if st.values().all(|v| running(v).len() == RUNNING) {
                break;
            }
            assert!(quiet.elapsed() < secs(10), "pools did not settle: {st:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(secs(2)).await;
        let st = pool_states(&moto, &members).await;
        for (p, v) in &st {
            assert_eq!(running(v).len(), RUNNING, "{p}: {v:?}");
        }

        // Clean shutdown hands the leases back.
        nodes[0].signal("-TERM");
        nodes[1].signal("-TERM");
        assert_eq!(nodes[0].wait_exit(secs(20)), Some(0), "{}", nodes[0].log_text());
        assert_eq!(nodes[1].wait_exit(secs(20)), Some(0), "{}", nodes[1].log_text());
        let left = table_holders(&table, &clock).await;
        assert!(left.is_empty(), "every lease handed back on SIGTERM: {left:?}");
        (killed_at, d3_pools, paused_at, resumed_at, d2_pools)
    });

    // The evidence: every daemon's log.
    let all: Vec<Event> = nodes.iter().flat_map(events).collect();
    let of = |msg: &str| all.iter().filter(|e| e.message == msg).cloned().collect::<Vec<Event>>();
    let takes = of("lease taken");
    let passes = of("lease fence passed");
    let refusals = of("lease fence refused");
    let actions: Vec<Event> = of("decision")
        .into_iter()
        .filter(|e| e.line["outcomes"].as_str().is_some_and(|o| o.contains("started ") || o.contains("stopped ")))
        .collect();
    let mut by_pool: BTreeMap<String, Vec<&Event>> = BTreeMap::new();
    for t in &takes {
        by_pool.entry(t.policy.clone().unwrap()).or_default().push(t);
    }
    for (p, ts) in by_pool.iter_mut() {
        ts.sort_by_key(|t| t.at);
        let tokens: Vec<u64> = ts.iter().map(|t| t.token.unwrap()).collect();
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{p}: tokens of successive takes {tokens:?}");
    }
    // Every action and every fence pass was made under the actor's own token, before any
    // later token of that pool was taken; per pool, action tokens never go back.
    let mut last_token: BTreeMap<String, u64> = BTreeMap::new();
    let mut acts: Vec<&Event> = passes.iter().chain(actions.iter()).collect();
    acts.sort_by_key(|e| e.at);
    for a in &acts {
        let p = a.policy.clone().unwrap_or_else(|| panic!("no policy on {:?}", a.line));
        let k = a.token.unwrap_or_else(|| panic!("no lease token on {:?}", a.line));
        let ts = &by_pool[&p];
        let own = ts.iter().find(|t| t.token == Some(k)).unwrap_or_else(|| panic!("{p}: no take of token {k}"));
        assert_eq!(own.node, a.node, "{p}: {} acted under {}'s token {k}", a.node, own.node);
        assert!(own.at <= a.at, "{p}: acted before taking token {k}");
        if let Some(next) = ts.iter().find(|t| t.token > Some(k)) {
            assert!(
                a.at < next.at,
                "{p}: {} acted under token {k} after {} took token {:?}",
                a.node,
                next.node,
                next.token
            );
        }
        let last = last_token.entry(p.clone()).or_insert(k);
        assert!(k >= *last, "{p}: token went back from {last} to {k}");
        *last = k;
    }
    assert!(actions.len() >= 20, "the daemons acted: {} actions for {knocked} knock-outs", actions.len());

    // Takeover after the kill: every pool of d3 taken again within the TTL (plus a round trip).
    let takeover = d3_pools
        .iter()
        .map(|p| {
            let t = by_pool[p].iter().find(|t| t.at > killed_at).unwrap_or_else(|| panic!("{p} never taken over"));
            assert_ne!(t.node, "d3");
            t.at.duration_since(killed_at).unsigned_abs()
        })
        .max()
        .unwrap();
    assert!(takeover <= ttl_wall, "takeover after SIGKILL took {takeover:?} (ttl {ttl_wall:?})");

    // The paused daemon: its pools passed to d1 while it was stopped; after resuming it made
    // no action, and passed no fence, under a token it held before the pause.
    for p in &d2_pools {
        assert!(
            by_pool[p].iter().any(|t| t.node == "d1" && t.at > paused_at && t.at < resumed_at),
            "{p} was not taken over during the pause"
        );
    }
    let d2_after: Vec<&&Event> = acts.iter().filter(|e| e.node == "d2" && e.at > resumed_at).collect();
    for a in &d2_after {
        let p = a.policy.as_ref().unwrap();
        let own = by_pool[p].iter().find(|t| t.token == a.token).unwrap();
        assert!(own.at > resumed_at, "d2 acted on {p} after resuming under token {:?} taken before", a.token);
    }
    let fenced_d2 = refusals.iter().filter(|e| e.node == "d2" && e.at > resumed_at).count();
    assert!(fenced_d2 >= 1, "the evaluation d2 resumed in was fenced off: {refusals:?}");
    println!(
        "lease procs: {} actions ({} fence passes) for {knocked} knock-outs, {} fenced off ({fenced_d2} by the resumed daemon), \
         takeover after SIGKILL {takeover:?} (ttl {ttl_wall:?}), {} takes, wall {:?}",
        actions.len(),
        passes.len(),
        refusals.len(),
        takes.len(),
        started.elapsed()
    );
}
