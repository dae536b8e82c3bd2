//! The daemon's invariants on the in-memory cloud ([`MemoryCloud`]) and tokio's paused clock:
//! no emulator, no sleeping (every tick is given its `now`; a budget or a slow answer passes on
//! the paused clock), each test runs in milliseconds. The emulator tests in `tests/` keep what
//! only the AWS adapter can show.

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use jiff::{SignedDuration, Timestamp};

use super::cloud::memory::MemoryCloud;
use super::cloud::{Cloud, CloudFuture};
use super::*;
use crate::aws::lease::Fence;

/// A policy directory and a state directory of their own.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let d = std::env::temp_dir().join(format!("vmscaler-fast-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("policies")).expect("policies dir");
        Scratch(d)
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.0.join("policies").join(name), text).expect("write policy");
    }

    fn config(&self) -> Config {
        Config::new(self.0.join("policies"), self.0.join("state"))
    }

    fn daemon(&self, cloud: &Arc<MemoryCloud>, now: Timestamp) -> Daemon {
        let cloud: Arc<dyn Cloud> = Arc::clone(cloud) as Arc<dyn Cloud>;
        let (d, report) = Daemon::with_cloud(self.config(), cloud, now).expect("daemon starts");
        assert!(report.rejected.is_empty(), "{report:?}");
        d
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const WEB: &str = "name: web\npool: { tag: { key: pool, value: web } }\nmin: 2\nmax: 10\ninterval: 1m\nmetrics:\n  - { id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50 }\nscaling:\n  scale_up: { confirmations: 1, cooldown: 10m }\n  scale_down: { stabilization: 2m, cooldown: 1m }\n";

fn t0() -> Timestamp {
    Timestamp::from_second(1_800_000_000).expect("ts")
}

fn at(minutes: i64) -> Timestamp {
    t0() + SignedDuration::from_mins(minutes)
}

fn web_cloud(running: u32, stopped: u32, cpu: Option<f64>) -> Arc<MemoryCloud> {
    let cloud = Arc::new(MemoryCloud::new());
    cloud.add_tagged("web", running, stopped);
    cloud.set_metric("web", "cpu", cpu);
    cloud
}

#[tokio::test(start_paused = true)]
async fn intent_before_action() {
    let s = Scratch::new("intent");
    s.write("web.yaml", WEB);
    let cloud = web_cloud(2, 6, Some(100.0));
    let store = StateStore::open(&s.0.join("state")).expect("store");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (store_in_hook, seen_in_hook) = (store.clone(), Arc::clone(&seen));
    cloud.before_mutation(Arc::new(move |policy: &str| {
        // What a crash right now would leave: the intent must already be on disk.
        let state = store_in_hook.load(policy, t0()).ok().flatten();
        let intent = state.and_then(|s| s.intent).map(|i| (i.record.desired, i.actions.len()));
        seen_in_hook.lock().expect("lock").push(intent);
    }));
    let mut d = s.daemon(&cloud, t0());
    let r = d.tick(t0()).await;
    assert_eq!(r.decisions[0].desired, 4, "{r:?}");
    assert_eq!(cloud.mutations().len(), 2, "two starts: {:?}", cloud.log());
    assert_eq!(*seen.lock().expect("lock"), [Some((4, 1)), Some((4, 1))], "the intent was durable before each call");
    let after = store.load("web", t0()).expect("load").expect("state");
    assert!(after.intent.is_none(), "cleared once the outcome is recorded");
    assert_eq!(cloud.capacity("web"), Some(4));
}

/// A fence that says the lease was lost, counting its checks.
struct Lost(AtomicUsize);

impl Fence for Lost {
    fn check(&self) -> CloudFuture<'_, Result<(), String>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Box::pin(async { Err("lease lost to d2".to_owned()) })
    }
}

#[tokio::test(start_paused = true)]
async fn fence_before_action() {
    // The seam's contract, which the daemon relies on: with a fence that fails, no mutating
    // call is made at all (checked before each one), and the outcome says why.
    let cloud = web_cloud(2, 6, Some(100.0));
    let policy = vmscaler_engine::policy::parse_policy("web.yaml", WEB).policy.expect("policy");
    let fleets = cloud.fleets(&[&policy], &[&policy.pool]).await;
    let fleet = &fleets["web"].as_ref().expect("fleet").fleet;
    let mut cycle = vmscaler_engine::PoolCycle::new();
    cycle.observe("cpu", vmscaler_engine::Sample { at: t0(), value: 100.0 });
    let decision = cycle.evaluate(&policy, fleet, t0());
    assert_eq!(decision.actions.len(), 1);
    let lost = Lost(AtomicUsize::new(0));
    let outcomes = cloud.act(&policy, fleet, &decision, false, Some(&lost)).await;
    assert!(outcomes.iter().all(|o| matches!(o, Outcome::Fenced { .. })), "{outcomes:?}");
    assert_eq!(lost.0.load(Ordering::Relaxed), 2, "checked before each of the two starts");
    assert!(cloud.mutations().is_empty(), "{:?}", cloud.log());
    assert_eq!(cloud.capacity("web"), Some(2));
    // And a fenced outcome records no scaling: the cooldown does not start.
    cycle.complete(achieved(decision.current, &outcomes));
    assert!(cycle.history().last_scaled(vmscaler_engine::Direction::Up).is_none());
}

#[tokio::test(start_paused = true)]
async fn missing_data_never_scales_in() {
    let s = Scratch::new("missing");
    s.write("web.yaml", WEB);
    // Eight running on a quiet pool would scale in, but the metric has no data at all.
    let cloud = web_cloud(8, 2, None);
    let mut d = s.daemon(&cloud, t0());
    for m in 0..30 {
        let r = d.tick(at(m)).await;
        assert_eq!(r.evaluated, ["web"], "minute {m}");
    }
    assert!(cloud.mutations().is_empty(), "{:?}", cloud.mutations());
    assert_eq!(cloud.capacity("web"), Some(8));
    // With data that low, the same pool does scale in: the test can fail.
    cloud.set_metric("web", "cpu", Some(5.0));
    for m in 30..40 {
        d.tick(at(m)).await;
    }
    assert!(cloud.capacity("web").is_some_and(|c| c < 8), "{:?}", cloud.mutations());
}

#[tokio::test(start_paused = true)]
async fn reload_keeps_the_last_good_policy_and_reports_only_what_changed() {
    let s = Scratch::new("reload");
    let cron = format!(
        "{WEB}prewarm:\n  - {{ name: nightly, cron: \"0 20 * * *\", duration: 2h, time_zone: Asia/Shanghai, capacity: 6 }}\n"
    );
    s.write("web.yaml", &cron);
    let cloud = web_cloud(2, 6, Some(50.0));
    let mut d = s.daemon(&cloud, t0());
    let good = d.policy("web").cloned().expect("policy");
    d.tick(t0()).await; // the cron rule has been evaluated (its occurrences looked up)
    let r = d.reload(at(1));
    assert_eq!(r, ReloadReport::default(), "an evaluated cron policy, unchanged, is not reported as updated");
    s.write("web.yaml", "name: web\nmin: [\n");
    let r = d.reload(at(2));
    assert_eq!((r.rejected.len(), r.kept.clone()), (1, vec!["web".to_owned()]), "{r:?}");
    assert_eq!(d.policy("web"), Some(&good), "the last good version runs on");
    assert_eq!(d.tick(at(2)).await.evaluated, ["web"]);
    s.write("web.yaml", &cron.replace("capacity: 6", "capacity: 7"));
    let r = d.reload(at(3));
    assert_eq!(r.updated, ["web"], "{r:?}");
    assert_eq!(d.policy("web").map(|p| p.prewarm[0].capacity), Some(7));
}

#[tokio::test(start_paused = true)]
async fn a_cooldown_survives_a_restart() {
    let s = Scratch::new("restart");
    s.write("web.yaml", WEB);
    let cloud = web_cloud(2, 8, Some(100.0));
    let mut d = s.daemon(&cloud, t0());
    d.tick(t0()).await;
    assert_eq!(cloud.capacity("web"), Some(4));
    drop(d);
    // Restarted a minute later, the load still asks for more: the 10m cooldown holds.
    let mut d = s.daemon(&cloud, at(1));
    let r = d.tick(at(1)).await;
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (4, 4), "{e:?}");
    assert!(e.reasons.iter().any(|r| r.contains("scale-up cooldown")), "{:?}", e.reasons);
    assert_eq!(cloud.mutations().len(), 2, "only the first run's starts: {:?}", cloud.mutations());
    // Once it has run out, the pool scales up again.
    let r = d.tick(at(11)).await;
    assert!(r.decisions[0].desired > 4, "{r:?}");
}

#[tokio::test(start_paused = true)]
async fn one_error_policy_backs_off_a_throttled_pool_and_says_what_to_check() {
    use crate::aws::error::ApiError;
    let s = Scratch::new("errors");
    s.write("web.yaml", WEB);
    let cloud = web_cloud(2, 6, Some(100.0));
    let mut d = s.daemon(&cloud, t0());
    let throttled = ApiError::Throttled { code: "RequestLimitExceeded".into(), detail: "slow down".into() };
    cloud.set_unreadable("web", Some(throttled));
    // Each degraded evaluation waits longer: 1, 2, 4, 8, then 8 intervals (1 minute each).
    let mut now = t0();
    let mut waits = Vec::new();
    for _ in 0..5 {
        let r = d.tick(now).await;
        assert!(r.decisions.is_empty(), "no decision without a fleet");
        let next = d.next_due().expect("due");
        waits.push(next.duration_since(now).as_mins());
        now = next;
    }
    assert_eq!(waits, [1, 2, 4, 8, 8]);
    let board = d.board().snapshot();
    let pb = &board.pools["web"];
    assert_eq!(pb.consecutive_failures, 5);
    assert!(pb.last_error.as_deref().is_some_and(|e| e.contains("throttled: backing off")), "{pb:?}");
    assert!(cloud.mutations().is_empty());

    // Denied: the next interval, and the message says where to look.
    let denied = ApiError::Denied { code: "UnauthorizedOperation".into(), detail: "no".into() };
    cloud.set_unreadable("web", Some(denied));
    d.tick(now).await;
    assert_eq!(d.next_due().expect("due").duration_since(now).as_mins(), 1);
    let board = d.board().snapshot();
    assert!(board.pools["web"].last_error.as_deref().is_some_and(|e| e.contains("vmscaler iam-policy")), "{board:?}");

    // Readable again: recovered, the failures reset, the pool scales up.
    cloud.set_unreadable("web", None);
    let r = d.tick(d.next_due().expect("due")).await;
    assert_eq!(r.decisions[0].desired, 4, "{r:?}");
    let board = d.board().snapshot();
    assert_eq!((board.pools["web"].consecutive_failures, board.pools["web"].last_error.clone()), (0, None));
}

#[tokio::test(start_paused = true)]
async fn an_answer_that_outlasts_the_budget_keeps_the_intent_and_its_cooldown() {
    // tokio's clock is paused: the 20 s budget and the 5-minute answer pass without waiting.
    let s = Scratch::new("budget");
    s.write("web.yaml", WEB);
    let cloud = web_cloud(2, 6, Some(100.0));
    cloud.delay_answers(Some(Duration::from_secs(300)));
    let mut d = s.daemon(&cloud, t0());
    let wall = crate::clock::monotonic();
    let r = d.tick(t0()).await;
    assert!(wall.elapsed() < Duration::from_secs(5), "the budget was waited out in real time");
    let e = &r.decisions[0];
    assert!(e.outcomes.iter().any(|o| o.contains("outcome unknown")), "{e:?}");
    let store = StateStore::open(&s.0.join("state")).expect("store");
    let state = store.load("web", t0()).expect("load").expect("state");
    assert!(state.intent.is_some(), "kept as an intent for the next evaluation");
    assert_eq!(cloud.capacity("web"), Some(3), "the first start took effect unheard");
    // The next evaluations reconcile it with the fleet and hold its 10-minute cooldown: no
    // second step although the load is still high.
    cloud.delay_answers(None);
    for m in 1..10 {
        let r = d.tick(at(m)).await;
        assert!(r.decisions[0].outcomes.iter().all(|o| !o.starts_with("started")), "minute {m}: {r:?}");
    }
    assert_eq!(cloud.mutations().len(), 1, "{:?}", cloud.mutations());
    let h = d.history("web").expect("history");
    assert_eq!(h.records().iter().filter(|r| r.scaled == Some(vmscaler_engine::Direction::Up)).count(), 1);
    // After the cooldown the pool steps again.
    d.tick(at(11)).await;
    assert!(cloud.capacity("web").is_some_and(|c| c > 3), "{:?}", cloud.mutations());
}

#[tokio::test(start_paused = true)]
async fn a_slow_history_read_never_holds_the_tick_and_is_folded_in_at_a_later_one() {
    let s = Scratch::new("history");
    s.write("web.yaml", &format!("{WEB}predictive: {{mode: active}}\n"));
    let cloud = web_cloud(2, 6, Some(50.0));
    // Weeks of CloudWatch history can take longer than a tick should wait.
    cloud.delay_history(Some(Duration::from_secs(20)));
    let mut d = s.daemon(&cloud, t0());
    let started = tokio::time::Instant::now();
    let r = d.tick(t0()).await;
    let waited = started.elapsed();
    assert_eq!(r.evaluated, ["web"], "the pool is evaluated without its history");
    assert_eq!(waited, forecast::HISTORY_GRACE, "the tick waited the grace, not the 20 s read");
    assert!(d.pools["web"].forecast_history.is_none());
    assert!(d.past.is_some(), "the read goes on in the background");
    // A tick while it runs starts no second read.
    d.tick(at(1)).await;
    assert!(d.past.is_some());
    // Once it has answered, the next tick folds it in, and reads nothing again.
    tokio::time::sleep(Duration::from_secs(20)).await;
    d.tick(at(2)).await;
    assert!(d.past.is_none());
    let board = d.pools["web"].forecast_history.as_ref().expect("history folded in");
    assert_eq!(board.state, "loaded");
    d.tick(at(3)).await;
    let reads = cloud.log().iter().filter(|l| l.starts_with("history ")).count();
    assert_eq!(reads, 1, "{:?}", cloud.log());
}
