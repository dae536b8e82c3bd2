//! Pools behind load balancers, against moto's Elastic Load Balancing v2: a scale-in
//! deregisters before it stops (the order read from the requests moto received, through a
//! logging proxy), a rise during a drain cancels the stop, a member counts as serving only once
//! healthy in its target group, a started member is registered, an unknown target group
//! degrades the pool without stopping anything, a dry run touches no target group, and a
//! daemon SIGKILLed mid-drain is reconciled either way.
//!
//! The emulator's limits, stated honestly: moto drains instantly (a deregistered target is
//! `unused` at once, never `draining`), reports a registered running instance `healthy` at
//! once (no `initial` state, no health checks), and registers only instances already
//! `running`. So here a drain lasts until the next drain check (5 s later) and "not yet
//! healthy" is shown with a member running outside its target group; the wait on a real
//! `draining` state and the timeout are covered by the unit tests of `daemon::drain` and
//! `aws::elb` and the decision tests of the engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use jiff::{Timestamp, ToSpan};
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::state::{PoolState, StateStore};

use crate::daemon_loop::{FAST_SCALING, Scratch, base_time, daemon, put_cpu, tagged_policy};
use crate::support::Moto;
use crate::support::faults::{FaultConfig, FaultProxy};

/// A proxy that injects nothing: it only logs what reaches moto, and when.
async fn logging_proxy(moto: &Moto) -> FaultProxy {
    let config = FaultConfig {
        seed: 1,
        per_mille: 0,
        operations: vec![],
        kinds: vec![],
        hang: Duration::from_secs(30),
        slow: Duration::ZERO,
    };
    FaultProxy::start(&moto.endpoint, config).await
}

/// A daemon whose AWS calls go through `proxy`.
async fn daemon_through(proxy: &FaultProxy, cfg: vmscaler::config::Config, now: Timestamp) -> vmscaler::daemon::Daemon {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new(crate::support::REGION))
        .endpoint_url(&proxy.endpoint)
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "drain-test"))
        .load()
        .await;
    let (d, report) =
        vmscaler::daemon::Daemon::new(cfg, vmscaler::aws::Aws::from_sdk_config(&config), now).expect("daemon starts");
    assert!(report.rejected.is_empty(), "policies rejected: {:?}", report.rejected);
    d
}

async fn target_group(moto: &Moto, name: &str) -> String {
    moto.create_target_group(name).await
}

async fn register(moto: &Moto, arn: &str, ids: &[String]) {
    moto.register_targets(arn, ids).await;
}

/// Health state of each of `ids` in the group (`healthy`, `unused`, ...).
async fn health(moto: &Moto, arn: &str, ids: &[String]) -> Vec<String> {
    let elb = moto.aws().await.elb().clone();
    let targets = ids.iter().map(|id| TargetDescription::builder().id(id).build()).collect();
    let resp =
        elb.describe_target_health().target_group_arn(arn).set_targets(Some(targets)).send().await.expect("health");
    let by_id: BTreeMap<String, String> = resp
        .target_health_descriptions()
        .iter()
        .filter_map(|d| {
            let id = d.target()?.id()?.to_owned();
            Some((id, d.target_health()?.state()?.as_str().to_owned()))
        })
        .collect();
    ids.iter().map(|id| by_id.get(id).cloned().unwrap_or_else(|| "absent".into())).collect()
}

fn web_policy(arn: &str, extra: &str) -> String {
    tagged_policy("web", &format!("{FAST_SCALING}{extra}")).replace(
        "  tag: { key: \"vmscaler:pool\", value: web }\n",
        &format!("  tag: {{ key: \"vmscaler:pool\", value: web }}\n  target_groups: [\"{arn}\"]\n"),
    )
}

fn state_of(states: &BTreeMap<String, String>, id: &str) -> String {
    states.get(id).cloned().unwrap_or_else(|| "missing".into())
}

/// Ticks once a minute on low CPU until the pool begins a drain; that minute and the member.
async fn tick_until_a_drain(
    moto: &Moto,
    d: &mut vmscaler::daemon::Daemon,
    members: &[String],
    t0: Timestamp,
) -> (Timestamp, String, Vec<String>) {
    for minute in 0..=8 {
        let now = t0 + (minute * 60).seconds();
        if minute > 0 {
            put_cpu(moto, members, now, 1, 10.0).await;
        }
        let r = d.tick(now).await;
        let outcomes: Vec<String> = r.decisions.iter().flat_map(|e| e.outcomes.clone()).collect();
        if let Some(line) = outcomes.iter().find(|o| o.starts_with("deregistered ")) {
            let id = line.split_whitespace().nth(1).expect("id").to_owned();
            return (now, id, outcomes);
        }
    }
    panic!("no drain began within 8 minutes of low load");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_in_deregisters_first_and_stops_only_once_drained() {
    let moto = Moto::start();
    let proxy = logging_proxy(&moto).await;
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 0, 0, None).await;
    let arn = target_group(&moto, "web").await;
    register(&moto, &arn, &pool.running).await;
    let s = Scratch::new("drain-order");
    s.write_policy("web.yaml", &web_policy(&arn, ""));
    let mut cfg = s.config(&moto);
    cfg.endpoint_url = Some(proxy.endpoint.clone());
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 3, 10.0).await;
    let mut d = daemon_through(&proxy, cfg, t0).await;
    let (at, id, outcomes) = tick_until_a_drain(&moto, &mut d, &pool.running, t0).await;
    assert!(
        outcomes.iter().any(|o| o == &format!("deregistered {id} from 1 target group(s): stopping it once drained"))
    );

    // Deregistered, not stopped: the stop waits for the drain, outside this evaluation.
    let states = moto.instance_states().await;
    assert_eq!(state_of(&states, &id), "running", "stopped before its drain was seen to end");
    assert_eq!(health(&moto, &arn, std::slice::from_ref(&id)).await, ["unused"]);
    assert!(proxy.arrivals("StopInstances").is_empty(), "a stop went out in the deregistering evaluation");
    let board = d.board().snapshot();
    let draining: Vec<String> = board.pools["web"].draining.iter().map(|x| x.id.clone()).collect();
    assert_eq!(draining, std::slice::from_ref(&id));
    assert!(board.render_prometheus().contains("vmscaler_pool_draining{policy=\"web\"} 1\n"));
    let others: Vec<String> = pool.running.iter().filter(|m| **m != id).cloned().collect();
    assert_eq!(health(&moto, &arn, &others).await, ["healthy", "healthy"], "only the chosen member left");
    // The draining member is neither capacity nor chosen again.
    assert_eq!(d.history("web").and_then(|h| h.records().back()).map(|r| (r.current, r.desired)), Some((3, 2)));

    // The drain check 5 s later (not a decision): moto shows it drained, so it stops.
    let r = d.tick(at + 5.seconds()).await;
    assert!(r.evaluated.is_empty(), "a drain check is not an evaluation");
    let states = moto.instance_states().await;
    assert!(["stopping", "stopped"].contains(&state_of(&states, &id).as_str()), "{states:?}");
    let dereg = proxy.arrivals("DeregisterTargets");
    let stops = proxy.arrivals("StopInstances");
    assert_eq!((dereg.len(), stops.len()), (1, 1), "{:?}", proxy.requests());
    assert!(dereg[0] < stops[0], "StopInstances reached moto before DeregisterTargets");
    println!(
        "drain order: DeregisterTargets at {:?}, StopInstances at {:?} ({} ms later, one drain check after the decision)",
        dereg[0],
        stops[0],
        (stops[0] - dereg[0]).as_millis()
    );
    let board = d.board().snapshot();
    assert!(board.pools["web"].draining.is_empty());
    let text = board.render_prometheus();
    assert!(text.contains("vmscaler_drain_duration_seconds_count 1\n"), "{text}");
    assert!(text.contains("vmscaler_drain_duration_seconds_bucket{le=\"5\"} 1\n"), "{text}");
    assert!(text.contains("vmscaler_actions_total{policy=\"web\",kind=\"stop_after_drain\"} 1\n"), "{text}");
    assert!(text.contains("vmscaler_pool_draining{policy=\"web\"} 0\n"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rise_during_a_drain_registers_the_member_again_instead_of_stopping_it() {
    let moto = Moto::start();
    let proxy = logging_proxy(&moto).await;
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 1, 0, None).await;
    let arn = target_group(&moto, "web").await;
    register(&moto, &arn, &pool.running).await;
    let s = Scratch::new("drain-cancel");
    s.write_policy("web.yaml", &web_policy(&arn, ""));
    let mut cfg = s.config(&moto);
    cfg.endpoint_url = Some(proxy.endpoint.clone());
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 3, 10.0).await;
    let mut d = daemon_through(&proxy, cfg, t0).await;
    let (at, id, _) = tick_until_a_drain(&moto, &mut d, &pool.running, t0).await;

    // The crowd arrives before the drain is checked again (moto drains at once, a real target
    // group takes up to its deregistration delay): 2 serving at 90 % want 4. Datapoints are read
    // a minute late (metric_offset), so the evaluation that sees them is 2 minutes on.
    let next = at + 120.seconds();
    let serving: Vec<String> = pool.running.iter().filter(|m| **m != id).cloned().collect();
    put_cpu(&moto, &serving, next, 2, 90.0).await;
    let r = d.tick(next).await;
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (2, 4), "{e:?}");
    assert!(
        e.outcomes.contains(&format!("drain of {id} cancelled: registered again, not stopped")),
        "{:?}",
        e.outcomes
    );
    // The drained member came back first; the one stopped member started for the rest.
    assert!(e.outcomes.iter().any(|o| o == &format!("started {}", pool.stopped[0])), "{:?}", e.outcomes);
    let states = moto.instance_states().await;
    assert_eq!(state_of(&states, &id), "running");
    assert_eq!(health(&moto, &arn, std::slice::from_ref(&id)).await, ["healthy"]);
    assert!(proxy.arrivals("StopInstances").is_empty(), "the cancelled drain's member was stopped");
    // Later checks leave it alone.
    d.tick(next + 5.seconds()).await;
    d.tick(next + 10.seconds()).await;
    assert_eq!(state_of(&moto.instance_states().await, &id), "running");
    assert!(proxy.arrivals("StopInstances").is_empty());
    assert!(d.board().snapshot().pools["web"].draining.is_empty());
    println!(
        "cancel: {id} deregistered at minute {}, registered again by the next evaluation ({} RegisterTargets), 0 StopInstances",
        at.duration_since(t0).as_mins(),
        proxy.arrivals("RegisterTargets").len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_counts_as_serving_only_once_healthy_and_started_members_are_registered() {
    let moto = Moto::start();
    let proxy = logging_proxy(&moto).await;
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 2, 0, None).await;
    let arn = target_group(&moto, "web").await;
    // The third running member is outside the target group: running, but serving nothing.
    register(&moto, &arn, &pool.running[..2]).await;
    let outsider = pool.running[2].clone();
    let s = Scratch::new("drain-health");
    s.write_policy("web.yaml", &web_policy(&arn, ""));
    let mut cfg = s.config(&moto);
    cfg.endpoint_url = Some(proxy.endpoint.clone());
    let t0 = base_time();
    put_cpu(&moto, &pool.running[..2], t0, 3, 50.0).await;
    let mut d = daemon_through(&proxy, cfg, t0).await;
    let r = d.tick(t0).await;
    let e = &r.decisions[0];
    let last = d.history("web").and_then(|h| h.records().back()).cloned().expect("record");
    assert_eq!((last.current, last.serving), (3, 2), "the member outside the group is capacity, not serving");
    assert!(e.outcomes.contains(&format!("registered {outsider} in target group web")), "{:?}", e.outcomes);
    assert_eq!(health(&moto, &arn, std::slice::from_ref(&outsider)).await, ["healthy"]);
    // Next evaluation: healthy there, so serving.
    put_cpu(&moto, &pool.running, t0 + 60.seconds(), 1, 50.0).await;
    d.tick(t0 + 60.seconds()).await;
    let last = d.history("web").and_then(|h| h.records().back()).cloned().expect("record");
    assert_eq!((last.current, last.serving), (3, 3));

    // A scale-out: started members are registered after StartInstances.
    put_cpu(&moto, &pool.running, t0 + 180.seconds(), 2, 95.0).await;
    let r = d.tick(t0 + 180.seconds()).await;
    let e = &r.decisions[0];
    assert!(e.desired > e.current, "{e:?}");
    let starts = proxy.arrivals("StartInstances");
    let registers = proxy.arrivals("RegisterTargets");
    assert_eq!(starts.len(), 1, "{:?}", proxy.requests());
    assert!(registers.iter().any(|r| *r > starts[0]), "no RegisterTargets after StartInstances");
    for id in &pool.stopped {
        // moto makes a started instance running at once, so it registers in the same evaluation.
        assert!(e.outcomes.contains(&format!("registered {id} in target group web")), "{:?}", e.outcomes);
    }
    assert_eq!(health(&moto, &arn, &pool.stopped).await, ["healthy", "healthy"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_target_group_degrades_the_pool_and_stops_nothing() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 0, 0, None).await;
    // Well shaped (validation accepts it), but no such group in this account.
    let arn = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/nope/0123456789abcdef";
    let s = Scratch::new("drain-unknown");
    s.write_policy("web.yaml", &web_policy(arn, ""));
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 3, 10.0).await;
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    for minute in 0..=8 {
        let now = t0 + (minute * 60).seconds();
        put_cpu(&moto, &pool.running, now, 1, 10.0).await;
        let r = d.tick(now).await;
        assert!(r.decisions.is_empty(), "decided without its target groups: {r:?}");
    }
    let states = moto.instance_states().await;
    assert!(pool.running.iter().all(|id| state_of(&states, id) == "running"), "{states:?}");
    let board = d.board().snapshot();
    let pb = &board.pools["web"];
    assert!(pb.consecutive_failures >= 8, "{pb:?}");
    let error = pb.last_error.clone().unwrap_or_default();
    assert!(error.contains("target group not found") && error.contains("targetgroup/nope/"), "{error}");
    assert_eq!(board.degraded_pools(), ["web"]);
}

#[test]
fn a_malformed_target_group_arn_is_a_validation_error() {
    let s = Scratch::new("drain-validate");
    s.write_policy("web.yaml", &web_policy("targetgroup/web", ""));
    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler")).arg("validate").arg(s.policies()).output().expect("run");
    assert_eq!(out.status.code(), Some(78));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("pool.target_groups[0]: \"targetgroup/web\" is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_says_it_would_drain_and_touches_no_target_group() {
    let moto = Moto::start();
    let proxy = logging_proxy(&moto).await;
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 0, 0, None).await;
    let arn = target_group(&moto, "web").await;
    register(&moto, &arn, &pool.running).await;
    let s = Scratch::new("drain-dry");
    s.write_policy("web.yaml", &web_policy(&arn, ""));
    let mut cfg = s.config(&moto);
    cfg.endpoint_url = Some(proxy.endpoint.clone());
    cfg.dry_run = true;
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 3, 10.0).await;
    let mut d = daemon_through(&proxy, cfg, t0).await;
    let mut would = Vec::new();
    for minute in 0..=8 {
        let now = t0 + (minute * 60).seconds();
        put_cpu(&moto, &pool.running, now, 1, 10.0).await;
        would.extend(d.tick(now).await.decisions.iter().flat_map(|e| e.outcomes.clone()));
    }
    assert!(
        would.iter().any(|o| o.starts_with("would deregister i-") && o.ends_with("from 1 target group(s) and stop after drain")),
        "{would:?}"
    );
    assert!(would.iter().any(|o| o.starts_with("would stop i-") && o.contains("permission checked")), "{would:?}");
    let requests = proxy.requests();
    for op in ["RegisterTargets", "DeregisterTargets"] {
        assert_eq!(requests.get(op), None, "dry run sent {op}: {requests:?}");
    }
    assert_eq!(health(&moto, &arn, &pool.running).await, ["healthy", "healthy", "healthy"]);
}

// --- SIGKILL mid-drain ---

fn write_config(s: &Scratch, endpoint: &str, origin: Timestamp) -> PathBuf {
    let path = s.root.join("vmscaler.yaml");
    let text = format!(
        "policy_dir: policies\nstate_dir: state\nlisten: off\nregion: {}\nendpoint_url: {endpoint}\n\
         log_format: json\nreload_poll: 1h\ntime_scale: 60\ntime_origin: {origin}\n",
        crate::support::REGION
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// A backlog policy (one instance per 10 messages), fast at 60× time.
fn backlog_policy(arn: &str) -> String {
    format!(
        r#"name: web
pool:
  tag: {{ key: "vmscaler:pool", value: web }}
  target_groups: ["{arn}"]
min: 1
max: 6
interval: 1m
metrics:
  - id: backlog
    namespace: Custom/Drain
    name: Backlog
    dimensions: {{ Queue: web }}
    statistic: Maximum
    period: 1m
    target_per_instance: 10
history: {{ window: 2h, max_age: 5m }}
scaling:
  tolerance: 0.1
  scale_up: {{ confirmations: 1, cooldown: 3m, max_step: 100% }}
  scale_down: {{ stabilization: 2m, cooldown: 3m, max_step: 1, acceleration: 1 }}
scale_in: {{ order: newest, drain_timeout: 10m }}
"#
    )
}

fn read_state(state_dir: &Path) -> PoolState {
    let store = StateStore::open(state_dir).expect("state dir");
    store.load("web", jiff::Timestamp::UNIX_EPOCH).expect("state parses").expect("state file")
}

/// Runs `vmscaler run` until its first DeregisterTargets has reached moto, SIGKILLs it while
/// moto's answer is held back, then lets an in-process daemon on the same state directory
/// evaluate with the backlog at `after_backlog`. Returns (member, its state, its health,
/// what the reconciling evaluation reported).
async fn crash_mid_drain(after_backlog: f64) -> (String, String, String, Vec<String>) {
    let moto = Moto::start();
    let proxy = logging_proxy(&moto).await;
    proxy.hold_answers(&["DeregisterTargets"], Duration::from_secs(5));
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 0, 0, None).await;
    let arn = target_group(&moto, "web").await;
    register(&moto, &arn, &pool.running).await;
    let origin = Timestamp::from_second(SystemClock.now().as_second() + 2).expect("origin");
    let policy_time =
        |wall: Timestamp| origin + ((wall.as_millisecond() - origin.as_millisecond()) * 60).milliseconds();
    // 3 instances' worth at first, then 1 (a scale-in after the 2-minute stabilisation).
    let points: Vec<(Timestamp, f64)> =
        (-10..40).map(|m| (origin + (m * 60).seconds(), if m < 1 { 30.0 } else { 10.0 })).collect();
    moto.put_metric("Custom/Drain", "Backlog", &[("Queue", "web")], &points).await;
    let s = Scratch::new("drain-crash");
    s.write_policy("web.yaml", &backlog_policy(&arn));
    let config = write_config(&s, &proxy.endpoint, origin);
    let log = s.root.join("daemon.log");
    let mut child = moto.spawn_daemon(&config, &log);
    let deadline = vmscaler::clock::monotonic() + Duration::from_secs(60);
    while proxy.arrivals("DeregisterTargets").is_empty() {
        assert!(
            vmscaler::clock::monotonic() < deadline,
            "no drain began: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // moto has deregistered the member; its answer is held back: kill the daemon now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = child.kill();
    let _ = child.wait();
    let killed_at = policy_time(SystemClock.now());

    let state = read_state(&s.state());
    let intent = state.intent.clone().expect("the kill left the scale-in's intent");
    let stopping: Vec<String> = intent
        .actions
        .iter()
        .filter_map(|a| {
            if let vmscaler_engine::Action::Stop { instance_ids } = a { Some(instance_ids.clone()) } else { None }
        })
        .flatten()
        .collect();
    assert_eq!(stopping.len(), 1, "{intent:?}");
    let id = stopping[0].clone();
    assert!(state.draining.is_empty(), "the drain was recorded before the kill: nothing to reconcile");
    // What the kill left: the member outside its target group, but running.
    assert_eq!(health(&moto, &arn, std::slice::from_ref(&id)).await, ["unused"]);
    assert_eq!(state_of(&moto.instance_states().await, &id), "running");

    // The restart: the new decision sees the load as it is now.
    let now = killed_at + 60.seconds();
    moto.put_metric(
        "Custom/Drain",
        "Backlog",
        &[("Queue", "web")],
        &[(now - 60.seconds(), after_backlog), (now - 120.seconds(), after_backlog)],
    )
    .await;
    let cfg = s.config(&moto);
    let mut d = daemon(&moto, cfg, now).await;
    let r = d.tick(now).await;
    let mut outcomes: Vec<String> = r.decisions.iter().flat_map(|e| e.outcomes.clone()).collect();
    let board = d.board().snapshot();
    outcomes.extend(board.pools["web"].decisions.iter().flat_map(|e| e.outcomes.clone()));
    // A drain check (5 s later) finishes what is left.
    d.tick(now + 5.seconds()).await;
    let state_after = state_of(&moto.instance_states().await, &id);
    let health_after = health(&moto, &arn, std::slice::from_ref(&id)).await.remove(0);
    assert!(read_state(&s.state()).intent.is_none());
    (id, state_after, health_after, outcomes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_drain_then_low_load_finishes_the_drain() {
    let (id, state, health, outcomes) = crash_mid_drain(10.0).await;
    assert!(["stopping", "stopped"].contains(&state.as_str()), "{id} {state}: {outcomes:?}");
    assert_eq!(health, "unused", "stopped outside its target group");
    assert!(outcomes.iter().any(|o| o.contains(&format!("stop {id} unconfirmed"))), "{outcomes:?}");
    println!(
        "crash (low load after restart): {id} was deregistered and running after SIGKILL; reconciled as draining, then {state}, target {health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_drain_then_a_rise_undoes_the_drain() {
    let (id, state, health, outcomes) = crash_mid_drain(40.0).await;
    assert_eq!(state, "running", "{outcomes:?}");
    assert_eq!(health, "healthy", "back in its target group: {outcomes:?}");
    assert!(
        outcomes.iter().any(|o| o == &format!("drain of {id} cancelled: registered again, not stopped")),
        "{outcomes:?}"
    );
    println!(
        "crash (rise after restart): {id} was deregistered and running after SIGKILL; the new decision registered it again: {state}, target {health}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pre_stop_hook_runs_after_the_drain_and_before_the_stop() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let moto = Moto::start();
    let proxy = std::sync::Arc::new(logging_proxy(&moto).await);
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 0, 0, None).await;
    let arn = target_group(&moto, "web").await;
    register(&moto, &arn, &pool.running).await;
    // The hook: records the request line and how many stops and deregistrations moto had seen.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind hook");
    let port = listener.local_addr().expect("addr").port();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(String, usize, usize)>::new()));
    {
        let (seen, proxy) = (std::sync::Arc::clone(&seen), std::sync::Arc::clone(&proxy));
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let line = String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned();
                let counts = (proxy.arrivals("StopInstances").len(), proxy.arrivals("DeregisterTargets").len());
                seen.lock().expect("lock").push((line, counts.0, counts.1));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
            }
        });
    }
    let s = Scratch::new("drain-hook");
    // moto's private addresses are not reachable from here: the hook goes to a fixed address
    // (validation warns about a URL without {private_ip}; a warning does not stop the pool).
    let hook =
        format!("scale_in:\n  order: newest\n  pre_stop: {{ url: \"http://127.0.0.1:{port}/drain\", timeout: 2s }}\n");
    s.write_policy("web.yaml", &web_policy(&arn, "").replace("scale_in:\n  order: newest\n", &hook));
    let mut cfg = s.config(&moto);
    cfg.endpoint_url = Some(proxy.endpoint.clone());
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 3, 10.0).await;
    let mut d = daemon_through(&proxy, cfg, t0).await;
    let (at, id, _) = tick_until_a_drain(&moto, &mut d, &pool.running, t0).await;
    assert!(seen.lock().expect("lock").is_empty(), "the hook ran before the drain was seen to end");
    d.tick(at + 5.seconds()).await;
    let calls = seen.lock().expect("lock").clone();
    assert_eq!(
        calls,
        [("POST /drain HTTP/1.1".to_owned(), 0, 1)],
        "one POST, after the deregistration, before any stop"
    );
    assert_eq!(proxy.arrivals("StopInstances").len(), 1);
    let states = moto.instance_states().await;
    assert!(["stopping", "stopped"].contains(&state_of(&states, &id).as_str()), "{states:?}");
    let metrics = d.board().snapshot().render_prometheus();
    assert!(metrics.contains("kind=\"stop_after_drain\"} 1"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ip_target_groups_take_the_members_private_addresses() {
    use aws_sdk_elasticloadbalancingv2::types::TargetTypeEnum;
    let moto = Moto::start();
    let proxy = logging_proxy(&moto).await;
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 0, 0, None).await;
    let arn = moto.create_target_group_of("web-ip", TargetTypeEnum::Ip).await;
    let ec2 = moto.ec2().await;
    let described =
        ec2.describe_instances().set_instance_ids(Some(pool.running.clone())).send().await.expect("describe");
    let ips: BTreeMap<String, String> = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .filter_map(|i| Some((i.instance_id()?.to_owned(), i.private_ip_address()?.to_owned())))
        .collect();
    assert_eq!(ips.len(), 3, "moto gives every instance a private address");
    let addresses: Vec<String> = pool.running.iter().map(|id| ips[id].clone()).collect();
    register(&moto, &arn, &addresses).await;
    let s = Scratch::new("drain-ip");
    s.write_policy("web.yaml", &web_policy(&arn, ""));
    let mut cfg = s.config(&moto);
    cfg.endpoint_url = Some(proxy.endpoint.clone());
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 3, 10.0).await;
    let mut d = daemon_through(&proxy, cfg, t0).await;
    // All three are healthy by address: serving 3 (by instance id they would look unregistered).
    d.tick(t0).await;
    let last = d.history("web").and_then(|h| h.records().back()).cloned().expect("record");
    assert_eq!((last.current, last.serving), (3, 3));
    assert!(proxy.arrivals("RegisterTargets").is_empty(), "registered members registered again");
    let (at, id, _) = tick_until_a_drain(&moto, &mut d, &pool.running, t0 + 60.seconds()).await;
    // The member's address left the group, the others' stayed.
    let health_by_ip = health(&moto, &arn, &addresses).await;
    let expected: Vec<&str> = pool.running.iter().map(|m| if *m == id { "unused" } else { "healthy" }).collect();
    assert_eq!(health_by_ip, expected);
    d.tick(at + 5.seconds()).await;
    assert!(["stopping", "stopped"].contains(&state_of(&moto.instance_states().await, &id).as_str()));
    let (dereg, stops) = (proxy.arrivals("DeregisterTargets"), proxy.arrivals("StopInstances"));
    assert_eq!((dereg.len(), stops.len()), (1, 1));
    assert!(dereg[0] < stops[0]);
}
