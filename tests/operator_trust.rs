//! Issue 16 ("operator trust") end to end: pause and resume through the HTTP API against moto
//! (evaluated, not acted on, kept across a restart, shown in status, /metrics and history), the
//! activity log, `vmscaler schedule` and `validate --now`.

use std::process::Command;
use std::sync::Arc;

use jiff::{Timestamp, ToSpan};
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::cmd::status::http_request;

use crate::daemon_loop::{FAST_SCALING, Scratch, base_time, daemon, put_cpu, tagged_policy};
use crate::support::Moto;

/// The daemon's clock as the test sets it (the HTTP handlers read the same clock).
#[derive(Default)]
struct TestClock(std::sync::Mutex<Option<Timestamp>>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        self.0.lock().unwrap().unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

impl TestClock {
    fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap() = Some(t);
    }
}

/// Serves the daemon's router on a free loopback port; returns its URL and the stop switch.
async fn serve(d: &vmscaler::daemon::Daemon, clock: Arc<TestClock>) -> (String, tokio::sync::watch::Sender<bool>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(vmscaler::http::serve(listener, d.board(), clock, rx));
    (url, tx)
}

/// A blocking HTTP call off the runtime's threads.
async fn call(url: &str, method: &'static str, path: &str, body: Option<&str>) -> anyhow::Result<String> {
    let (url, path, body) = (url.to_owned(), path.to_owned(), body.map(str::to_owned));
    tokio::task::spawn_blocking(move || http_request(&url, method, &path, body.as_deref(), None)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_pool_is_evaluated_not_acted_on_survives_a_restart_and_shows_everywhere() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 3, 0, None).await;
    let s = Scratch::new("pause");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 5, 90.0).await;
    let clock = Arc::new(TestClock::default());
    clock.set(t0);
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let (url, stop) = serve(&d, Arc::clone(&clock)).await;
    d.tick(t0).await; // the pool is on the board (2 -> 4: it acts: nothing paused yet)
    let running = |states: &std::collections::BTreeMap<String, String>| {
        states.values().filter(|v| v.as_str() == "running").count()
    };
    assert_eq!(running(&moto.instance_states().await), 4);

    // Pause it with a reason; an unknown pool is a 404.
    clock.set(t0 + 5.minutes());
    let body = call(&url, "POST", "/v1/pools/web/pause", Some(r#"{"reason":"incident 4711"}"#)).await.unwrap();
    assert!(body.contains("incident 4711"), "{body}");
    let e = call(&url, "POST", "/v1/pools/nope/pause", Some("{}")).await.unwrap_err();
    assert!(e.to_string().contains("404"), "{e}");

    // Load keeps rising: the decision says scale up, nothing is started.
    put_cpu(&moto, &pool.running.iter().chain(&pool.stopped).cloned().collect::<Vec<_>>(), t0 + 11.minutes(), 11, 95.0)
        .await;
    let t1 = t0 + 11.minutes();
    let r = d.tick(t1).await;
    let e = &r.decisions[0];
    assert!(e.desired > e.current, "{e:?}");
    assert!(
        e.outcomes.iter().any(|o| o.contains("not acted on: paused since") && o.contains("incident 4711")),
        "{e:?}"
    );
    assert_eq!(running(&moto.instance_states().await), 4, "a paused pool is not acted on");
    let board = d.board().snapshot();
    assert!(board.pools["web"].paused.is_some());
    let metrics = board.render_prometheus();
    assert!(metrics.contains("vmscaler_pool_paused{policy=\"web\"} 1"), "{metrics}");
    let status = call(&url, "GET", "/v1/decisions", None).await.unwrap();
    assert!(status.contains("\"paused\":{") && status.contains("incident 4711"), "{status}");

    // A restart keeps the pause.
    stop.send(true).unwrap();
    drop(d);
    let mut d = daemon(&moto, s.config(&moto), t1 + 1.minutes()).await;
    let (url, _stop) = serve(&d, Arc::clone(&clock)).await;
    let r = d.tick(t1 + 1.minutes()).await;
    assert!(r.decisions[0].outcomes.iter().any(|o| o.contains("not acted on")), "{:?}", r.decisions[0]);
    assert_eq!(running(&moto.instance_states().await), 4);

    // Resumed: the next evaluation acts (the pause started no cooldown).
    clock.set(t1 + 90.seconds());
    let body = call(&url, "POST", "/v1/pools/web/resume", None).await.unwrap();
    assert!(body.contains("\"was_paused\":true"), "{body}");
    let r = d.tick(t1 + 2.minutes()).await;
    assert!(running(&moto.instance_states().await) > 4, "{:?}", r.decisions[0]);

    // The activity log has it all, changes only (the holds are not there).
    let h = call(&url, "GET", "/v1/history?policy=web&since=30d", None).await.unwrap();
    let view: vmscaler::ops::HistoryView = serde_json::from_str(&h).unwrap();
    let kinds: Vec<&str> = view.events.iter().map(|e| e.kind.as_str()).collect();
    // The evaluation after the restart wanted the same: not logged again.
    assert_eq!(kinds, ["action", "paused", "not_acted_on", "resumed", "action"], "{h}");
    assert!(view.events[0].outcomes.iter().any(|o| o.contains("started")), "{h}");
    // And offline, from the state directory.
    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(["history", "--state-dir", s.state().to_str().unwrap(), "--since", "30d"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("web  paused  paused since") && text.contains("incident 4711"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pause_is_refused_beyond_loopback_without_a_token() {
    let moto = Moto::start();
    moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 0, 0, None).await;
    let s = Scratch::new("pause-token");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let mut cfg = s.config(&moto);
    cfg.listen = Some("0.0.0.0:9464".parse().unwrap()); // what the API would listen on
    let t0 = base_time();
    let mut d = daemon(&moto, cfg, t0).await;
    d.tick(t0).await;
    let (url, _stop) = serve(&d, Arc::new(TestClock::default())).await;
    let e = call(&url, "POST", "/v1/pools/web/pause", Some("{}")).await.unwrap_err();
    assert!(e.to_string().contains("403") && e.to_string().contains("VMSCALER_API_TOKEN"), "{e}");
}

fn vmscaler(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vmscaler")).args(args).current_dir(env!("CARGO_MANIFEST_DIR")).output().unwrap()
}

#[test]
fn schedule_lists_the_next_windows_in_local_time_and_utc_with_a_countdown() {
    let out = vmscaler(&[
        "schedule",
        "--policy",
        "policies/web-storefront.yaml",
        "--now",
        "2027-11-10T11:00:00Z",
        "--days",
        "2",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // 11.11 in Shanghai: the ramp starts 50 minutes before midnight local, 15:10 UTC the day before.
    assert!(text.contains("web-storefront / singles-day-2027: floor 50"), "{text}");
    assert!(text.contains("ramp from  2027-11-10 23:10 Asia/Shanghai (2027-11-10 15:10Z)  in 4h10m"), "{text}");
    assert!(text.contains("start      2027-11-11 00:00 Asia/Shanghai (2027-11-10 16:00Z)  in 5h00m"), "{text}");
    assert!(text.contains("web-storefront / nightly-sms-campaign: floor 12"), "{text}");
    assert!(text.contains("releasable 2027-11-10 20:30 Asia/Shanghai (2027-11-10 12:30Z)"), "{text}");
    let json = vmscaler(&["schedule", "--policy", "policies/", "--now", "2027-11-10T11:00:00Z", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["windows"][0]["rule"], "nightly-sms-campaign");
    assert_eq!(v["windows"][0]["full_at"], "2027-11-10T11:45:00Z");
}

#[test]
fn validate_judges_windows_at_now_and_reports_every_unknown_field() {
    let dir = std::env::temp_dir().join(format!("vmscaler-trust-{}-{}", std::process::id(), SystemClock.now()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("web.yaml"),
        "name: web\npool: {tag: {key: pool, value: web}}\nmin: 2\nmax: 10\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\nprewarm:\n  - {name: bf, start: 2026-11-27T00:00, duration: 24h, time_zone: America/New_York, capacity: 5}\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    // Before the event: fine. After it: a warning, and --deny-warnings fails.
    assert_eq!(vmscaler(&["validate", d, "--now", "2026-11-01T00:00:00Z", "--deny-warnings"]).status.code(), Some(0));
    let out = vmscaler(&["validate", d, "--now", "2026-12-03T00:00:00Z", "--deny-warnings"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"bf\" ended 2026-11-28T00:00 America/New_York"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Finding 9: without credentials, `vmscaler run` said nothing at start and then logged a raw
/// ~1,100-character IMDS error per pool per tick. Now: one clear error, a bounded retry, exit 78.
#[test]
fn missing_credentials_are_one_clear_error_at_start() {
    let s = Scratch::new("nocreds");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    s.write_policy("api.yaml", &tagged_policy("api", FAST_SCALING));
    let config = s.root.join("vmscaler.yaml");
    std::fs::write(&config, "policy_dir: policies\nstate_dir: state\nlisten: 127.0.0.1:0\nregion: us-east-1\n")
        .unwrap();
    // Nothing to find: no keys, no profile files, IMDS refused at once (a closed loopback port).
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(["run", "--config"])
        .arg(&config)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &s.root)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:9")
        .env("VMSCALER_CREDENTIALS_RETRIES", "2")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = SystemClock.now();
    let mut status = None;
    while SystemClock.now().duration_since(start) < jiff::SignedDuration::from_secs(60) {
        if let Some(s) = child.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    if status.is_none() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(status.and_then(|s| s.code()), Some(78), "exits with EX_CONFIG; log:\n{err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("no AWS credentials")).collect();
    assert_eq!(lines.len(), 1, "one error, not one per pool per tick:\n{err}");
    assert!(lines[0].contains("checked environment, profile, web identity, container and IMDS"), "{}", lines[0]);
    eprintln!("{}", lines[0]);
    assert!(lines[0].len() < 600, "short: {} chars: {}", lines[0].len(), lines[0]);
    assert!(err.len() < 2_000, "the whole log is short: {} chars:\n{err}", err.len());
}
