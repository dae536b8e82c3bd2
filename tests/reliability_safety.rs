//! Safety against a hostile day (issue 10's findings), on moto: never act on instances that are
//! not the pool's own, never act twice on an ambiguous failure, a clock that was ahead, dry-run
//! records, a vanished state directory, health that tells the truth, a slowloris client.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::{Credentials, Region};
use jiff::ToSpan;
use vmscaler::aws::Aws;
use vmscaler::aws::fleet::describe_owned;
use vmscaler::daemon::Daemon;
use vmscaler_engine::Direction;
use vmscaler_engine::policy::PoolTarget;

use crate::daemon_loop::{FAST_SCALING, Scratch, base_time, put_cpu, tagged_policy};
use crate::support::faults::{FaultConfig, FaultProxy};
use crate::support::{Moto, REGION};

fn running(states: &std::collections::BTreeMap<String, String>, ids: &[String]) -> usize {
    ids.iter().filter(|i| states.get(*i).map(String::as_str) == Some("running")).count()
}

/// A policy on tag `key=value` with `max`, CPU metric, fast scaling.
fn policy_on(name: &str, key: &str, value: &str, max: u32) -> String {
    tagged_policy(name, FAST_SCALING)
        .replace(&format!("key: \"vmscaler:pool\", value: {name}"), &format!("key: \"{key}\", value: {value}"))
        .replace("max: 8", &format!("max: {max}"))
}

/// Finding 1: ten running instances tagged `Name=shared-web` (another team's), a new policy on
/// that tag with `max: 2` and no metric data: the first evaluation stops one (the scale-down
/// step), not eight, and says it is adopting the pool. Three instances of an Auto Scaling group
/// carrying the same tag are never members, never stopped, and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_foreign_fleet_is_adopted_gradually_and_group_instances_are_left_alone() {
    let moto = Moto::start();
    let shared = moto.create_tagged_pool(("Name", "shared-web"), 10, 0, 0, None).await;
    let grouped =
        moto.create_tagged_pool(("Name", "shared-web"), 0, 0, 3, Some(("aws:autoscaling:groupName", "asg-web"))).await;
    let s = Scratch::new("adopt");
    s.write_policy("shared.yaml", &policy_on("shared", "Name", "shared-web", 2));
    let t0 = base_time();
    let (mut d, report) = Daemon::new(s.config(&moto), moto.aws().await, t0).expect("daemon starts");
    assert!(report.rejected.is_empty(), "{report:?}");
    let r = d.tick(t0).await;
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (10, 9), "{e:#?}");
    assert!(e.reasons.iter().any(|x| x.starts_with("adopting a pool of 10 above max 2")), "{:?}", e.reasons);
    let states = moto.instance_states().await;
    assert_eq!(running(&states, &shared.running), 9, "one step, not a slam");
    assert_eq!(running(&states, &grouped.protected), 3, "an Auto Scaling group's instances are never touched");
    let board = d.board().snapshot();
    let warnings = &board.pools["shared"].warnings;
    assert!(warnings.iter().any(|w| w.contains("3 instance(s) with the pool's tag left alone")), "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("asg-web")), "{warnings:?}");
    // Within the descent's cooldown (3m, halved after one step: acceleration 2) nothing more;
    // then the next, accelerated, step: like any descent.
    let r = d.tick(t0 + 1.minutes()).await;
    assert_eq!(r.decisions[0].desired, 9, "{:?}", r.decisions[0].reasons);
    assert!(r.decisions[0].reasons.iter().any(|x| x.contains("scale-down cooldown")), "{:?}", r.decisions[0].reasons);
    let r = d.tick(t0 + 2.minutes()).await;
    assert_eq!(r.decisions[0].desired, 7, "{:?}", r.decisions[0].reasons);
    let states = moto.instance_states().await;
    assert_eq!(running(&states, &shared.running), 7);
    assert_eq!(running(&states, &grouped.protected), 3);
}

/// Finding 2: an instance tagged `team=web` and `vmscaler:pool=api` matched by two policies.
/// Validation rejects the second policy (naming both files); and were both to run (another
/// host's policies, a kept version), the instance is left alone by each, and reported.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_in_two_pools_is_rejected_and_left_alone() {
    let moto = Moto::start();
    let both = moto.create_tagged_pool(("team", "web"), 0, 0, 1, Some(("vmscaler:pool", "api"))).await;
    let web_only = moto.create_tagged_pool(("team", "web"), 2, 0, 0, None).await;
    let s = Scratch::new("twopools");
    s.write_policy("api.yaml", &policy_on("api", "vmscaler:pool", "api", 4));
    s.write_policy("web.yaml", &policy_on("web", "team", "web", 4));
    let t0 = base_time();
    let (d, report) = Daemon::new(s.config(&moto), moto.aws().await, t0).expect("daemon starts");
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    let (file, why) = &report.rejected[0];
    assert!(file.ends_with("web.yaml"), "{report:?}");
    assert!(why.contains("web.yaml") && why.contains("api.yaml") && why.contains("overlaps"), "{why}");
    assert_eq!(d.policies().len(), 1);

    let parse = |t: &str| crate::support::policy::parse(t);
    let (web, api) = (parse(&policy_on("web", "team", "web", 4)), parse(&policy_on("api", "vmscaler:pool", "api", 4)));
    let claims: Vec<&PoolTarget> = vec![&web.pool, &api.pool];
    let aws = moto.aws().await;
    let mut described = describe_owned(&aws, &[&web, &api], &claims).await;
    for name in ["web", "api"] {
        let got = described.remove(name).expect("described").expect("ok");
        let vmscaler_engine::Fleet::Instances { members } = &got.fleet else { panic!("a tagged pool") };
        assert!(!members.iter().any(|m| m.id == both.protected[0]), "{name} claims the shared instance");
        assert_eq!(got.left_alone.len(), 1, "{name}: {:?}", got.left_alone);
        assert!(got.left_alone[0].reason.contains("the tag of another pool"), "{:?}", got.left_alone);
        if name == "web" {
            assert_eq!(members.len(), web_only.running.len());
        }
    }
}

/// Finding 3: adding `aaa-steal.yaml` with the running pool's tag (and `max: 1`) rejects the
/// new file; the running file keeps its pool and nothing is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_never_lets_a_new_file_take_a_running_pool() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 3, 0, 0, None).await;
    let s = Scratch::new("steal");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0 + 10.minutes(), 15, 50.0).await;
    let (mut d, _) = Daemon::new(s.config(&moto), moto.aws().await, t0).expect("daemon starts");
    d.tick(t0).await;
    s.write_policy(
        "aaa-steal.yaml",
        &tagged_policy("steal", FAST_SCALING).replace("value: steal", "value: web").replace("max: 8", "max: 1"),
    );
    let report = d.reload(t0 + 30.seconds());
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert!(report.rejected[0].0.ends_with("aaa-steal.yaml"), "the newcomer is rejected: {report:?}");
    assert!(report.rejected[0].1.contains("web.yaml"), "{report:?}");
    assert!(report.removed.is_empty() && report.kept.is_empty(), "the running file is untouched: {report:?}");
    assert!(d.policy("web").is_some() && d.policy("steal").is_none());
    for minute in 1..4 {
        d.tick(t0 + (minute * 60).seconds()).await;
    }
    assert_eq!(running(&moto.instance_states().await, &pool.running), 3, "nothing stopped");
    let board = d.board().snapshot();
    assert!(board.invalid_files.keys().any(|f| f.ends_with("aaa-steal.yaml")), "{:?}", board.invalid_files);
    assert!(!board.invalid_files.keys().any(|f| f.ends_with("/web.yaml")), "{:?}", board.invalid_files);
}

/// An SDK configuration for moto through `endpoint`.
async fn through(endpoint: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(REGION))
        .endpoint_url(endpoint)
        .credentials_provider(Credentials::new("testing", "testing", None, None, "safety-test"))
        .load()
        .await
}

/// Finding 4: the proxy forwards `StartInstances` and drops the answer. The start is kept as an
/// intent and reconciled at the next evaluation with its cooldown (10m): no second step within
/// the cooldown, so 4 running, not 8.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_start_keeps_its_cooldown() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 6, 0, None).await;
    let quiet = FaultConfig {
        seed: 1,
        per_mille: 0,
        operations: vec![],
        kinds: vec![],
        hang: Duration::ZERO,
        slow: Duration::ZERO,
    };
    let proxy = FaultProxy::start(&moto.endpoint, quiet).await;
    proxy.set_enabled(true);
    let s = Scratch::new("unanswered");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let all: Vec<String> = pool.running.iter().chain(&pool.stopped).cloned().collect();
    // 100 % CPU throughout: 2 -> 4, then (if the cooldown were lost) 4 -> 8.
    put_cpu(&moto, &all, t0 + 12.minutes(), 20, 100.0).await;
    let aws = Aws::from_sdk_config_with(
        &through(&proxy.endpoint).await,
        vmscaler::aws::ApiLimits {
            max_attempts: 2,
            attempt_timeout: Duration::from_secs(3),
            operation_timeout: Duration::from_secs(8),
            connect_timeout: Duration::from_secs(2),
        },
    );
    let (mut d, _) = Daemon::new(s.config(&moto), aws, t0).expect("daemon starts");
    proxy.drop_answers(&["StartInstances"]);
    let r = d.tick(t0).await;
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (2, 4), "{e:#?}");
    assert!(e.outcomes.iter().any(|o| o.contains("outcome unknown")), "{:?}", e.outcomes);
    proxy.drop_answers(&[]);
    let states = moto.instance_states().await;
    assert_eq!(running(&states, &all), 4, "moto carried the start out");
    for minute in 1..10 {
        let r = d.tick(t0 + (minute * 60).seconds()).await;
        let e = &r.decisions[0];
        assert!(e.outcomes.is_empty(), "minute {minute}: acted within the cooldown: {e:#?}");
    }
    assert_eq!(running(&moto.instance_states().await, &all), 4, "no second step within the cooldown");
    let h = d.history("web").expect("history");
    assert_eq!(h.records().iter().filter(|r| r.scaled == Some(Direction::Up)).count(), 1, "{:?}", h.records());
    let listed = d.board().snapshot().pools["web"].decisions.clone();
    assert!(listed.iter().any(|e| e.outcomes.iter().any(|o| o.contains("confirmed by the fleet"))), "{listed:#?}");
    // After the cooldown the next step is made.
    d.tick(t0 + 10.minutes()).await;
    assert_eq!(running(&moto.instance_states().await, &all), 8);
}

/// Finding 5: a daemon that ran with its clock ten years ahead leaves records dated then; a
/// restart on a good clock discards them (health degraded, saying so). The scale-up made then
/// is kept re-dated to now (its instances are running: acting again at once could do it twice),
/// so the pool holds for one cooldown (10m), not "3651d", and then scales.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clock_ten_years_ahead_then_back_does_not_freeze_the_pool() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 6, 0, None).await;
    let s = Scratch::new("clock");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let ahead = t0 + jiff::SignedDuration::from_hours(10 * 365 * 24);
    let all: Vec<String> = pool.running.iter().chain(&pool.stopped).cloned().collect();
    put_cpu(&moto, &all, ahead, 5, 100.0).await;
    {
        let (mut d, _) = Daemon::new(s.config(&moto), moto.aws().await, ahead).expect("daemon starts");
        let r = d.tick(ahead).await;
        assert!(r.decisions[0].desired > 2, "scaled with the clock ahead: {:?}", r.decisions[0]);
    }
    // Stop two again, so the pool has room to scale.
    let ec2 = moto.aws().await;
    let started: Vec<String> = {
        let states = moto.instance_states().await;
        pool.stopped.iter().filter(|i| states[*i] == "running").cloned().collect()
    };
    ec2.ec2().stop_instances().set_instance_ids(Some(started)).send().await.expect("stop");
    put_cpu(&moto, &all, t0 + 1.minutes(), 5, 100.0).await;
    let (mut d, _) = Daemon::new(s.config(&moto), moto.aws().await, t0).expect("daemon restarts");
    let h = d.history("web").expect("history");
    assert_eq!(h.records().len(), 1, "only the scale-up is kept: {h:?}");
    assert_eq!(h.records()[0].at, t0, "re-dated to now");
    let r = d.tick(t0).await;
    let e = &r.decisions[0];
    assert!(e.reasons.iter().any(|x| x.contains("scale-up cooldown: 10m left")), "{:?}", e.reasons);
    put_cpu(&moto, &all, t0 + 11.minutes(), 5, 100.0).await;
    let r = d.tick(t0 + 10.minutes()).await;
    let e = &r.decisions[0];
    assert!(e.desired > e.current, "scales once the one cooldown is over: {e:#?}");
    let health = d.board().snapshot();
    let w = &health.pools["web"].warnings;
    assert!(w.iter().any(|x| x.contains("dated after now") && x.contains("discarded")), "{w:?}");
    assert!(health.pools["web"].degraded());
}

/// Finding 7: a dry run's decisions start no cooldown once the pool is live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dry_run_cooldowns_do_not_carry_into_live() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 6, 0, None).await;
    let s = Scratch::new("dryrun");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let all: Vec<String> = pool.running.iter().chain(&pool.stopped).cloned().collect();
    put_cpu(&moto, &all, t0 + 5.minutes(), 10, 100.0).await;
    let mut cfg = s.config(&moto);
    cfg.dry_run = true;
    {
        let (mut d, _) = Daemon::new(cfg, moto.aws().await, t0).expect("daemon starts");
        let r = d.tick(t0).await;
        assert!(r.decisions[0].dry_run && r.decisions[0].desired == 4, "{:?}", r.decisions[0]);
        let h = d.history("web").expect("history");
        assert!(h.records().back().is_some_and(|r| r.dry_run && r.scaled == Some(Direction::Up)), "{h:?}");
    }
    let (mut d, _) = Daemon::new(s.config(&moto), moto.aws().await, t0 + 1.minutes()).expect("live");
    let r = d.tick(t0 + 1.minutes()).await;
    let e = &r.decisions[0];
    assert!(!e.dry_run && e.desired == 4, "the live scale-up does not wait out the dry run's cooldown: {e:#?}");
    assert_eq!(running(&moto.instance_states().await, &all), 4);
}

/// Finding 8 and 9: the state directory deleted under the daemon is recreated (actions are not
/// refused); a pool with no members (wrong tag or region) and no metric data is degraded, with
/// its reasons on `/healthz`; a state file set aside at start-up is reported too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_tells_the_truth_and_the_state_directory_comes_back() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 4, 0, None).await;
    let s = Scratch::new("health");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    s.write_policy("ghost.yaml", &tagged_policy("ghost", FAST_SCALING));
    std::fs::create_dir_all(s.state().join("pools")).expect("mkdir");
    std::fs::write(s.state().join("pools/web.json"), b"{ torn").expect("corrupt state");
    let t0 = base_time();
    let all: Vec<String> = pool.running.iter().chain(&pool.stopped).cloned().collect();
    put_cpu(&moto, &all, t0 + 5.minutes(), 10, 100.0).await;
    let (mut d, _) = Daemon::new(s.config(&moto), moto.aws().await, t0).expect("daemon starts");
    std::fs::remove_dir_all(s.state()).expect("delete the state directory");
    let r = d.tick(t0).await;
    let web = r.decisions.iter().find(|e| e.policy == "web").expect("web");
    assert_eq!((web.current, web.desired), (2, 4), "{web:#?}");
    assert!(web.outcomes.iter().all(|o| o.starts_with("started")), "acted: {:?}", web.outcomes);
    assert!(s.state().join("pools/web.json").is_file(), "state directory recreated");
    let board = d.board().snapshot();
    let ghost = &board.pools["ghost"].warnings;
    assert!(ghost.iter().any(|w| w.contains("no instance carries the pool's tag")), "{ghost:?}");
    assert!(ghost.iter().any(|w| w.contains("no datapoint within max_age 5m for cpu")), "{ghost:?}");
    let web = &board.pools["web"].warnings;
    assert!(web.iter().any(|w| w.contains("state set aside")), "{web:?}");
    let resp = serve_and_get(d.board(), "/healthz").await;
    let json: serde_json::Value = serde_json::from_str(&resp).expect("json");
    assert_eq!(json["status"], "degraded", "{json:#}");
    assert!(json["reasons"]["ghost"].as_array().is_some_and(|r| r.len() >= 2), "{json:#}");
}

/// `GET path` from a server on `board` (loopback, stopped afterwards): the body.
async fn serve_and_get(board: std::sync::Arc<vmscaler::daemon::board::SharedBoard>, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(vmscaler::http::serve(
        listener,
        board,
        std::sync::Arc::new(vmscaler::clock::SystemClock),
        stop_rx,
    ));
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes()).await.expect("send");
    let mut out = String::new();
    c.read_to_string(&mut out).await.expect("read");
    stop_tx.send(true).expect("stop");
    server.await.expect("server task").expect("server");
    out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()
}

/// Finding 6: 300 idle half-sent requests (bounded, loopback) do not stop the daemon: the
/// connection limit closes the excess at once, the header timeout the rest, `/healthz` answers
/// and evaluation continues. HTTP/2 (prior knowledge) is not served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slowloris_client_does_not_starve_the_daemon() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 4, 0, None).await;
    let s = Scratch::new("slowloris");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    let all: Vec<String> = pool.running.iter().chain(&pool.stopped).cloned().collect();
    put_cpu(&moto, &all, t0 + 5.minutes(), 10, 50.0).await;
    let (mut d, _) = Daemon::new(s.config(&moto), moto.aws().await, t0).expect("daemon starts");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let server = tokio::spawn(vmscaler::http::serve(
        listener,
        d.board(),
        std::sync::Arc::new(vmscaler::clock::SystemClock),
        stop_rx,
    ));
    let mut idle = Vec::new();
    for _ in 0..300 {
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let _ = c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await;
        idle.push(c);
    }
    // Evaluation goes on.
    let r = d.tick(t0).await;
    assert_eq!(r.decisions.len(), 1);
    // The excess connections were closed at once: reading gives EOF (or a reset).
    let mut closed = 0;
    for c in idle.iter_mut().skip(vmscaler::http::MAX_CONNECTIONS) {
        let mut b = [0u8; 1];
        if matches!(tokio::time::timeout(Duration::from_millis(200), c.read(&mut b)).await, Ok(Ok(0) | Err(_))) {
            closed += 1;
        }
    }
    assert!(closed >= 300 - vmscaler::http::MAX_CONNECTIONS - 5, "{closed} excess connections closed");
    // After the header timeout the idle ones are gone and a real request is served.
    tokio::time::sleep(vmscaler::http::HEADER_READ_TIMEOUT + Duration::from_secs(1)).await;
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").await.expect("send");
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_string(&mut out)).await.expect("answered").expect("read");
    assert!(out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"), "{out}");
    // HTTP/2 with prior knowledge: not spoken.
    let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("send");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut out)).await;
    assert!(!out.starts_with(&[0, 0]), "an HTTP/2 SETTINGS frame came back: {out:?}");
    drop(idle);
    stop_tx.send(true).expect("stop");
    server.await.expect("server task").expect("server");
}
