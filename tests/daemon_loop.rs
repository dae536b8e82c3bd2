//! The daemon's evaluation loop against a real moto server, driven tick by tick with a time of
//! the test's choosing: scale-out from the warm pool, scale-in after the stabilisation window
//! (never a protected member), dry-run, Auto Scaling groups, pre-warm, reload of a broken
//! policy, and state surviving a restart.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::config::Config;
use vmscaler::daemon::{Daemon, TickReport};

use crate::support::Moto;

/// A scratch directory with `policies/` and `state/`, removed when dropped.
pub struct Scratch {
    pub root: PathBuf,
}

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let n = SystemClock.now().as_nanosecond();
        let root = std::env::temp_dir().join(format!("vmscaler-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(root.join("policies")).expect("mkdir policies");
        std::fs::create_dir_all(root.join("state")).expect("mkdir state");
        Scratch { root }
    }

    pub fn policies(&self) -> PathBuf {
        self.root.join("policies")
    }

    pub fn state(&self) -> PathBuf {
        self.root.join("state")
    }

    pub fn write_policy(&self, file: &str, text: &str) -> PathBuf {
        let p = self.policies().join(file);
        std::fs::write(&p, text).expect("write policy");
        p
    }

    pub fn config(&self, moto: &Moto) -> Config {
        let mut cfg = Config::new(self.policies(), self.state());
        cfg.endpoint_url = Some(moto.endpoint.clone());
        cfg.region = Some(crate::support::REGION.to_owned());
        cfg.listen = None;
        cfg
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A tagged-pool policy on per-instance CPU (target 50 %), evaluated every minute.
pub fn tagged_policy(name: &str, extra: &str) -> String {
    format!(
        r#"name: {name}
pool:
  tag: {{ key: "vmscaler:pool", value: {name} }}
min: 1
max: 8
interval: 1m
metrics:
  - id: cpu
    namespace: AWS/EC2
    name: CPUUtilization
    statistic: Average
    period: 1m
    per_instance: avg
    target: 50
history:
  window: 1h
  max_age: 5m
scale_in:
  order: newest
  protect_tag: {{ key: "vmscaler:protect", value: "true" }}
scale_out:
  order: id
{extra}"#
    )
}

pub const FAST_SCALING: &str = r"scaling:
  tolerance: 0.1
  scale_up: { confirmations: 1, cooldown: 10m, max_step: 100% }
  scale_down: { stabilization: 5m, cooldown: 3m, max_step: 1 }
";

/// A whole minute well in the past, so every test datapoint is history for moto too.
pub fn base_time() -> Timestamp {
    let now = SystemClock.now().as_second();
    Timestamp::from_second(now - now.rem_euclid(60) - 3 * 3600).expect("timestamp")
}

/// Publishes per-instance CPU of `value` for each of `ids`, one point a minute over the
/// `minutes` minutes before `at`.
pub async fn put_cpu(moto: &Moto, ids: &[String], at: Timestamp, minutes: i64, value: f64) {
    let points: Vec<(Timestamp, f64)> = (1..=minutes).map(|m| (at - (m * 60).seconds(), value)).collect();
    for id in ids {
        moto.put_metric("AWS/EC2", "CPUUtilization", &[("InstanceId", id)], &points).await;
    }
}

pub async fn daemon(moto: &Moto, cfg: Config, now: Timestamp) -> Daemon {
    let (d, report) = Daemon::new(cfg, moto.aws().await, now).expect("daemon starts");
    assert!(report.rejected.is_empty(), "policies rejected: {:?}", report.rejected);
    d
}

fn states_of(states: &std::collections::BTreeMap<String, String>, ids: &[String]) -> Vec<String> {
    ids.iter().map(|i| states.get(i).cloned().unwrap_or_else(|| "missing".into())).collect()
}

fn only_decision(r: &TickReport) -> &vmscaler::state::DecisionEntry {
    assert_eq!(r.decisions.len(), 1, "one decision expected: {r:?}");
    &r.decisions[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn high_load_starts_stopped_members_in_order() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 3, 0, None).await;
    let s = Scratch::new("highload");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 5, 90.0).await;
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let r = d.tick(t0).await;
    let e = only_decision(&r);
    // 2 × 90/50 = 3.6 → 4: two of the three stopped members start, lowest ids first.
    assert_eq!((e.current, e.desired), (2, 4), "{e:?}");
    let states = moto.instance_states().await;
    assert_eq!(states_of(&states, &pool.running), ["running", "running"]);
    assert_eq!(states_of(&states, &pool.stopped), ["running", "running", "stopped"], "{e:?}");
    assert!(e.outcomes.iter().any(|o| o.contains(&pool.stopped[0])), "{:?}", e.outcomes);
    // Next due one interval later; a tick before that evaluates nothing.
    assert_eq!(r.next_due, Some(t0 + 60.seconds()));
    assert!(d.tick(t0 + 30.seconds()).await.evaluated.is_empty());
    let metrics = d.board().snapshot().render_prometheus();
    assert!(metrics.contains("vmscaler_actions_total{policy=\"web\",kind=\"start\"} 2"), "{metrics}");
    assert!(metrics.contains("vmscaler_pool_desired_capacity{policy=\"web\"} 4"), "{metrics}");
    assert!(metrics.contains("vmscaler_api_calls_total{operation=\"GetMetricData\"}"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_load_stops_after_stabilisation_and_never_a_protected_member() {
    let moto = Moto::start();
    // One older member, then (a second later) a protected one and a newer one: `newest` order
    // must stop the newer one first and never the protected one.
    let old = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 0, 0, None).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let newer = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 0, 1, Some(("vmscaler:protect", "true"))).await;
    let pool = vmscaler_support_pool(&old, &newer);
    let s = Scratch::new("lowload");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let all: Vec<String> = pool.running.iter().chain(&pool.protected).cloned().collect();
    put_cpu(&moto, &all, t0, 3, 10.0).await;
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let mut first_stop = None;
    for minute in 0..=16 {
        let now = t0 + (minute * 60).seconds();
        if minute > 0 {
            put_cpu(&moto, &all, now, 1, 10.0).await;
        }
        let r = d.tick(now).await;
        let e = only_decision(&r);
        if e.desired < e.current && first_stop.is_none() {
            first_stop = Some(minute);
        }
        let states = moto.instance_states().await;
        assert_eq!(states_of(&states, &pool.protected), ["running"], "protected member stopped at minute {minute}");
    }
    // Stabilisation is 5 minutes: nothing stops before the window has been observed.
    let first_stop = first_stop.expect("a scale-in happened");
    assert!((4..=5).contains(&first_stop), "first scale-in at minute {first_stop}");
    // Both unprotected members end stopped (step 1, cooldown 3m; the second step of a descent
    // waits half the cooldown: acceleration 2).
    let states = moto.instance_states().await;
    assert_eq!(states_of(&states, &pool.running), ["stopped", "stopped"]);
    let h = d.history("web").expect("history");
    let downs: Vec<_> = h.records().iter().filter(|r| r.scaled == Some(vmscaler_engine::Direction::Down)).collect();
    assert_eq!(downs.len(), 2, "two separate scale-ins: {downs:?}");
    assert!(downs[1].at.duration_since(downs[0].at) >= jiff::SignedDuration::from_secs(90), "cooldown respected");
    let board = d.board().snapshot();
    let first = board.pools["web"]
        .decisions
        .iter()
        .find(|e| e.desired < e.current)
        .expect("a scale-in decision is on the board");
    assert!(first.outcomes.iter().any(|o| o.contains(&newer.running[0])), "newest stops first: {first:?}");
}

/// The unprotected members (older first) and the protected one of two pool batches.
fn vmscaler_support_pool(
    old: &crate::support::TaggedPool,
    newer: &crate::support::TaggedPool,
) -> crate::support::TaggedPool {
    crate::support::TaggedPool {
        running: old.running.iter().chain(&newer.running).cloned().collect(),
        stopped: vec![],
        protected: newer.protected.clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_leaves_describe_instances_identical() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 3, 0, None).await;
    let s = Scratch::new("dryrun");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0 + 300.seconds(), 10, 95.0).await;
    let ec2 = moto.ec2().await;
    let before = format!("{:?}", ec2.describe_instances().send().await.expect("describe").reservations());
    let mut cfg = s.config(&moto);
    cfg.dry_run = true;
    let mut d = daemon(&moto, cfg, t0).await;
    let mut would = Vec::new();
    for minute in 0..4 {
        let r = d.tick(t0 + (minute * 60).seconds()).await;
        would.extend(r.decisions.iter().flat_map(|e| e.outcomes.clone()));
        assert!(r.decisions.iter().all(|e| e.dry_run));
    }
    let after = format!("{:?}", ec2.describe_instances().send().await.expect("describe").reservations());
    assert_eq!(before, after, "dry-run changed the fleet");
    assert!(
        would.iter().any(|o| o.starts_with("would start") && o.contains("permission checked")),
        "dry-run reports the plan: {would:?}"
    );
    let metrics = d.board().snapshot().render_prometheus();
    assert!(metrics.contains("kind=\"would_start\""), "{metrics}");
    assert!(!metrics.contains("kind=\"start\""), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_scaling_group_desired_capacity_follows_load() {
    let moto = Moto::start();
    moto.create_asg("workers", 1, 6, 2).await;
    let s = Scratch::new("asg");
    s.write_policy(
        "workers.yaml",
        r"name: workers
pool:
  auto_scaling_group: workers
min: 1
max: 5
interval: 1m
metrics:
  - id: cpu
    namespace: AWS/EC2
    name: CPUUtilization
    dimensions: { AutoScalingGroupName: workers }
    statistic: Average
    period: 1m
    target: 50
scaling:
  tolerance: 0.1
  scale_up: { confirmations: 1, cooldown: 2m, max_step: 100% }
  scale_down: { stabilization: 3m, cooldown: 2m, max_step: 100% }
history:
  window: 1h
  max_age: 5m
",
    );
    let t0 = base_time();
    let m = &moto;
    // The newest complete minute at `at` (the default one-minute offset skips the filling one).
    let cpu = |at: Timestamp, v: f64| async move {
        m.put_metric("AWS/EC2", "CPUUtilization", &[("AutoScalingGroupName", "workers")], &[(at - 120.seconds(), v)])
            .await;
    };
    cpu(t0, 100.0).await;
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let e = only_decision(&d.tick(t0).await).clone();
    assert_eq!((e.current, e.desired), (2, 4), "{e:?}");
    assert_eq!(moto.asg_desired("workers").await, 4);
    // Load stays high: max 5 of the policy caps the group (its own max is 6).
    let mut desired = Vec::new();
    for minute in 1..=12 {
        let now = t0 + (minute * 60).seconds();
        cpu(now, if minute <= 3 { 100.0 } else { 20.0 }).await;
        d.tick(now).await;
        desired.push(moto.asg_desired("workers").await);
    }
    assert_eq!(desired.iter().max(), Some(&5), "{desired:?}");
    assert!(*desired.last().expect("some") < 5, "desired came down with the load: {desired:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prewarm_raises_capacity_before_its_start_without_load() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 4, 0, None).await;
    let s = Scratch::new("prewarm");
    let t0 = base_time();
    let start = t0 + 30.minutes();
    let rule = format!(
        "prewarm:\n  - name: launch\n    start: {}\n    duration: 1h\n    time_zone: UTC\n    lead: 10m\n    capacity: 3\n",
        start.strftime("%Y-%m-%dT%H:%M")
    );
    // A 7-minute interval: ticks at 0, 7, 14, 21... would raise capacity at 21 minutes; the
    // loop must wake at 20 (start - lead) for the rule instead.
    let policy = tagged_policy("web", &format!("{FAST_SCALING}{rule}")).replace("interval: 1m", "interval: 7m");
    s.write_policy("web.yaml", &policy);
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    // No metric data at all: the missing-data rule holds.
    let e = only_decision(&d.tick(t0).await).clone();
    assert_eq!((e.current, e.desired), (1, 1), "{e:?}");
    assert!(e.prewarm.is_none());
    let mut now = t0;
    let mut raised_at = None;
    while now < start + 5.minutes() {
        let r = d.tick(now).await;
        if let Some(e) = r.decisions.first().filter(|e| e.desired == 3 && raised_at.is_none()) {
            raised_at = Some(now);
            assert_eq!(e.prewarm.as_deref(), Some("launch"), "{e:?}");
        }
        now = r.next_due.expect("a pool is due");
    }
    // Raised at start - lead exactly: the loop is woken for the rule, not at the next interval.
    assert_eq!(raised_at, Some(start - 10.minutes()));
    let states = moto.instance_states().await;
    let running = pool.running.iter().chain(&pool.stopped).filter(|i| states[*i] == "running").count();
    assert_eq!(running, 3);
    let metrics = d.board().snapshot().render_prometheus();
    assert!(metrics.contains("vmscaler_prewarm_active{policy=\"web\",rule=\"launch\"} 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_policy_on_reload_keeps_the_old_one_running() {
    let moto = Moto::start();
    let web = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 2, 0, None).await;
    let _api = moto.create_tagged_pool(("vmscaler:pool", "api"), 1, 0, 0, None).await;
    let s = Scratch::new("reload");
    let web_file = s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    s.write_policy("api.yaml", &tagged_policy("api", FAST_SCALING).replace("interval: 1m", "interval: 5m"));
    let t0 = base_time();
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let r = d.tick(t0).await;
    assert_eq!(r.evaluated, ["api", "web"]);
    // Break web.yaml: min above max.
    std::fs::write(&web_file, tagged_policy("web", FAST_SCALING).replace("min: 1", "min: 20")).expect("write");
    let rep = d.reload(t0 + 30.seconds());
    assert_eq!(rep.kept, ["web"], "{rep:?}");
    assert_eq!(rep.rejected.len(), 1, "{rep:?}");
    assert!(rep.rejected[0].0.ends_with("web.yaml"));
    assert!(rep.updated.is_empty() && rep.added.is_empty() && rep.removed.is_empty(), "{rep:?}");
    assert_eq!(d.policy("web").map(|p| p.min), Some(1), "last good version runs");
    // Still evaluated on its schedule, with the old policy; api not disturbed (next due in 5m).
    put_cpu(&moto, &web.running, t0 + 60.seconds(), 3, 90.0).await;
    let r = d.tick(t0 + 60.seconds()).await;
    assert_eq!(r.evaluated, ["web"]);
    assert_eq!(only_decision(&r).desired, 2);
    let board = d.board().snapshot();
    assert_eq!(board.invalid_files.len(), 1);
    let text = board.render_prometheus();
    assert!(text.contains("vmscaler_policy_reload_failures_total 1\n"), "{text}");
    assert!(text.contains("vmscaler_policy_files_invalid 1\n"), "{text}");
    // Fixed: the new version replaces the old one and the file is no longer reported.
    std::fs::write(&web_file, tagged_policy("web", FAST_SCALING).replace("max: 8", "max: 2")).expect("write");
    let rep = d.reload(t0 + 90.seconds());
    assert_eq!(rep.updated, ["web"], "{rep:?}");
    assert_eq!(d.policy("web").map(|p| p.max), Some(2));
    assert!(d.board().snapshot().invalid_files.is_empty());
    // A removed file stops its pool.
    std::fs::remove_file(s.policies().join("api.yaml")).expect("rm");
    let rep = d.reload(t0 + 100.seconds());
    assert_eq!(rep.removed, ["api"]);
    assert!(d.policy("api").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_the_cooldown_and_the_window() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 6, 0, None).await;
    let s = Scratch::new("restart");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 3, 100.0).await;
    {
        let mut d = daemon(&moto, s.config(&moto), t0).await;
        let e = only_decision(&d.tick(t0).await).clone();
        assert_eq!((e.current, e.desired), (1, 2), "{e:?}");
    }
    // Restart one minute later under heavier load: the 10m scale-up cooldown still holds.
    let running: Vec<String> =
        moto.instance_states().await.into_iter().filter(|(_, st)| st == "running").map(|(id, _)| id).collect();
    put_cpu(&moto, &running, t0 + 60.seconds(), 1, 100.0).await;
    let mut d = daemon(&moto, s.config(&moto), t0 + 60.seconds()).await;
    let restored = d.history("web").expect("history");
    assert_eq!(restored.records().len(), 1, "the record of the first run is back");
    assert!(!restored.samples().is_empty(), "and so are the samples");
    let e = only_decision(&d.tick(t0 + 60.seconds()).await).clone();
    assert_eq!((e.current, e.desired), (2, 2), "{e:?}");
    // The freshest complete datapoint (metric_offset 1m) was measured on the one instance in
    // service then: the started one covers it, nothing is counted twice.
    assert!(e.reasons.iter().any(|r| r.contains("within tolerance")), "{:?}", e.reasons);
    assert_eq!(d.board().snapshot().pools["web"].decisions.len(), 2, "decisions survive the restart too");
    // A minute later a datapoint measured on both instances still says 100%: only the restored
    // 10m scale-up cooldown (from before the restart) holds the pool.
    put_cpu(&moto, &running, t0 + 120.seconds(), 2, 100.0).await;
    let e = only_decision(&d.tick(t0 + 120.seconds()).await).clone();
    assert_eq!((e.current, e.desired), (2, 2), "{e:?}");
    assert!(e.reasons.iter().any(|r| r.contains("scale-up cooldown")), "{:?}", e.reasons);
    // Once the cooldown is over it scales again.
    put_cpu(&moto, &running, t0 + 11.minutes(), 2, 100.0).await;
    let e = only_decision(&d.tick(t0 + 11.minutes()).await).clone();
    assert_eq!((e.current, e.desired), (2, 4), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_is_set_aside_not_fatal() {
    let moto = Moto::start();
    moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 0, 0, None).await;
    let s = Scratch::new("corrupt");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let pools = s.state().join("pools");
    std::fs::create_dir_all(&pools).expect("mkdir");
    std::fs::write(pools.join("web.json"), b"{\"version\":1,\"policy\":\"web\",\"hist").expect("write");
    let t0 = base_time();
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let aside: Vec<PathBuf> = std::fs::read_dir(&pools)
        .expect("rd")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside");
    assert!(d.board().snapshot().render_prometheus().contains("vmscaler_state_errors_total 1\n"));
    assert_eq!(d.tick(t0).await.decisions.len(), 1, "evaluates normally");
    assert!(valid_state(&pools.join("web.json")), "and writes a fresh state file");
}

fn valid_state(p: &Path) -> bool {
    std::fs::read(p).ok().and_then(|b| serde_json::from_slice::<vmscaler::formats::StateFileV1>(&b).ok()).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_fleet_is_degraded_and_counted() {
    // A server that is not there: every call fails fast (connection refused).
    let s = Scratch::new("degraded");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let moto = Moto::start();
    let aws = moto.aws().await;
    drop(moto);
    let mut cfg = Config::new(s.policies(), s.state());
    cfg.listen = None;
    let t0 = base_time();
    let (mut d, _) = Daemon::new(cfg, aws, t0).expect("starts without AWS");
    for minute in 0..3 {
        let r = tokio::time::timeout(Duration::from_secs(120), d.tick(t0 + (minute * 60).seconds()))
            .await
            .expect("tick returns");
        assert_eq!(r.evaluated, ["web"]);
        assert!(r.decisions.is_empty(), "no decision without a fleet");
    }
    let b = d.board().snapshot();
    assert_eq!(b.pools["web"].consecutive_failures, 3);
    assert_eq!(b.degraded_pools(), ["web"]);
    let text = b.render_prometheus();
    assert!(text.contains("vmscaler_evaluations_total{policy=\"web\",result=\"error\"} 3\n"), "{text}");
}
