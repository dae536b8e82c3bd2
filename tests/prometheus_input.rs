//! Prometheus and Alertmanager as inputs, against the real servers (Debian packages) and moto:
//! the shipped transcoding policy blending CloudWatch CPU with a Prometheus queue backlog and
//! GPU utilisation; a Prometheus outage as missing data; an Alertmanager alert raising a pool's
//! floor through the webhook and releasing it when resolved; the webhook's rejections; a
//! `predictive:` pool learning its daily peak from Prometheus history; and `promtool check
//! metrics` on the daemon's exposition.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use vmscaler::alerts::AlertsConfig;
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::prometheus::PrometheusConfig;

use crate::daemon_loop::{FAST_SCALING, Scratch, base_time, daemon, put_cpu, tagged_policy};
use crate::support::Moto;
use crate::support::prometheus::{Alertmanager, Prometheus, http};

/// OpenMetrics text for the transcoding pool over the half hour before `t0`, a point every
/// 15 s: the queue's jobs, and each member's GPU utilisation.
fn transcode_series(t0: Timestamp, jobs: f64, gpus: &[(&str, f64)]) -> String {
    let mut om = String::from("# HELP transcode_queue_jobs Jobs waiting.\n# TYPE transcode_queue_jobs gauge\n");
    let times: Vec<i64> = (0..=120).rev().map(|i| t0.as_second() - i * 15).collect();
    for t in &times {
        let _ = writeln!(om, "transcode_queue_jobs{{queue=\"transcode-jobs\"}} {jobs} {t}");
    }
    om.push_str("# HELP DCGM_FI_DEV_GPU_UTIL GPU utilisation.\n# TYPE DCGM_FI_DEV_GPU_UTIL gauge\n");
    for (id, v) in gpus {
        for t in &times {
            let _ = writeln!(om, "DCGM_FI_DEV_GPU_UTIL{{instance_id=\"{id}\",gpu=\"0\"}} {v} {t}");
        }
    }
    // A stray series of an instance that is not a pool member: it must be ignored.
    for t in &times {
        let _ = writeln!(om, "DCGM_FI_DEV_GPU_UTIL{{instance_id=\"i-00000000stranger\",gpu=\"0\"}} 100 {t}");
    }
    om.push_str("# EOF\n");
    om
}

fn shipped_transcode_policy() -> String {
    std::fs::read_to_string(crate::support::repo_path("policies/prometheus/gpu-transcode-prometheus.yaml"))
        .expect("shipped policy")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cloudwatch_cpu_and_prometheus_queue_and_gpu_blend_in_the_shipped_policy() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "gpu-transcode"), 4, 6, 0, None).await;
    let t0 = base_time();
    // CPU on target (60 %): 4 wanted; 48 jobs at 6 per instance: 8 wanted; the hottest GPU at
    // 84 % of a 70 % target on 4 in service: 4.8 wanted. 0.4×4 + 0.3×8 + 0.3×4.8 = 5.44 on 4:
    // score 1.36, proposal 6.
    put_cpu(&moto, &pool.running, t0 + 60.seconds(), 6, 60.0).await;
    let gpus: Vec<(&str, f64)> =
        pool.running.iter().enumerate().map(|(i, id)| (id.as_str(), if i == 0 { 84.0 } else { 40.0 })).collect();
    let prom = Prometheus::start_with(&transcode_series(t0, 48.0, &gpus));
    let s = Scratch::new("prom-blend");
    s.write_policy("gpu-transcode-prometheus.yaml", &shipped_transcode_policy());
    let mut cfg = s.config(&moto);
    cfg.prometheus = Some(PrometheusConfig::new(prom.url.clone()));
    let mut d = daemon(&moto, cfg, t0).await;

    // First evaluation: above the band, awaiting its second confirmation.
    let r = d.tick(t0).await;
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (4, 4), "{e:?}");
    assert!(e.reasons.iter().any(|r| r.starts_with("backlog: 48.00")), "{:?}", e.reasons);
    assert!(e.reasons.iter().any(|r| r.starts_with("gpu: 84.00")), "the stranger's 100 % is ignored: {:?}", e.reasons);
    assert!(e.reasons.iter().any(|r| r.starts_with("cpu: 60.00")), "{:?}", e.reasons);
    assert!(e.reasons.iter().any(|r| r.contains("awaiting confirmation")), "{:?}", e.reasons);
    // Second: confirmed, 4 -> 6 from the warm pool.
    let r = d.tick(t0 + 60.seconds()).await;
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (4, 6), "{e:?}");
    assert!(e.reasons.iter().any(|r| r.contains("score 1.360 -> proposal 6")), "{:?}", e.reasons);
    let states = moto.instance_states().await;
    let started = pool.stopped.iter().filter(|i| states.get(*i).is_some_and(|s| s == "running")).count();
    assert_eq!(started, 2);
    // Per-metric gauges.
    let metrics = d.board().render_prometheus();
    let line = |name: &str, metric: &str| {
        let prefix = format!("{name}{{policy=\"gpu-transcode-prometheus\",metric=\"{metric}\"}} ");
        metrics.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.parse::<f64>().ok())
    };
    assert_eq!(line("vmscaler_metric_value", "backlog"), Some(48.0), "{metrics}");
    assert_eq!(line("vmscaler_metric_wanted_capacity", "backlog"), Some(8.0), "{metrics}");
    assert_eq!(line("vmscaler_metric_ratio", "gpu"), Some(1.2), "{metrics}");
    // The Prometheus value read at t0 describes the minute before it: two minutes old at t0+1m.
    assert_eq!(line("vmscaler_metric_age_seconds", "backlog"), Some(120.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_outage_is_missing_data_and_never_scales_in() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "gpu-transcode"), 4, 2, 0, None).await;
    let t0 = base_time();
    // Idle everywhere: with all three metrics the pool would shrink after its window.
    put_cpu(&moto, &pool.running, t0 + 120.seconds(), 8, 5.0).await;
    let gpus: Vec<(&str, f64)> = pool.running.iter().map(|id| (id.as_str(), 5.0)).collect();
    let mut prom = Prometheus::start_with(&transcode_series(t0 + 60.seconds(), 0.0, &gpus));
    let s = Scratch::new("prom-outage");
    // The shipped policy with a short stabilisation window so a scale-in is possible at once.
    let text = shipped_transcode_policy()
        .replace("stabilization: 20m", "stabilization: 0s")
        .replace("cooldown: 10m", "cooldown: 0s");
    s.write_policy("gpu-transcode-prometheus.yaml", &text);
    let mut cfg = s.config(&moto);
    let mut pc = PrometheusConfig::new(prom.url.clone());
    pc.timeout = Duration::from_secs(2);
    cfg.prometheus = Some(pc);
    let mut d = daemon(&moto, cfg, t0).await;
    prom.stop();
    let r = d.tick(t0).await;
    let e = &r.decisions[0];
    assert_eq!((e.current, e.desired), (4, 4), "{e:?}");
    let reasons = e.reasons.join("\n");
    assert!(reasons.contains("no scale-in while data is missing for backlog, gpu"), "{reasons}");
    assert!(reasons.contains("prometheus: backlog:"), "the reason is in the decision: {reasons}");
    let b = d.board().snapshot();
    assert!(b.pools["gpu-transcode-prometheus"].last_error.as_deref().is_some_and(|e| e.contains("prometheus")));
    // Without the outage the same data scales in: the hold above was the missing data.
    let prom = Prometheus::start_with(&transcode_series(t0 + 60.seconds(), 0.0, &gpus));
    let s2 = Scratch::new("prom-outage-2");
    s2.write_policy("gpu-transcode-prometheus.yaml", &text);
    let mut cfg = s2.config(&moto);
    cfg.prometheus = Some(PrometheusConfig::new(prom.url.clone()));
    let mut d = daemon(&moto, cfg, t0).await;
    let r = d.tick(t0 + 60.seconds()).await;
    let e = &r.decisions[0];
    assert!(e.desired < 4, "{e:?}");
}

fn token_file(s: &Scratch) -> std::path::PathBuf {
    let p = s.root.join("alertmanager.token");
    std::fs::write(&p, "am-token-5f0c1d2e3a4b\n").expect("token");
    p
}

/// Serves the daemon's HTTP endpoints and the webhook on a free port, like `vmscaler run`.
async fn serve(d: &vmscaler::daemon::Daemon) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let board = d.board();
    let app = vmscaler::http::router(Arc::clone(&board), Arc::clone(&clock)).merge(vmscaler::alerts::router(
        d.alerts().expect("alerts configured"),
        board,
        clock,
    ));
    let (_tx, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _keep = _tx;
        vmscaler::http::serve_app(listener, app, rx).await
    });
    port
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..300 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alertmanager_alert_raises_the_floor_until_it_resolves() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 4, 0, None).await;
    let now = || SystemClock.now();
    put_cpu(&moto, &pool.running, now(), 5, 50.0).await;
    let s = Scratch::new("alerts");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let mut cfg = s.config(&moto);
    cfg.alerts = Some(AlertsConfig::new(token_file(&s)));
    let mut d = daemon(&moto, cfg, now()).await;
    let e = d.tick(now()).await.decisions.remove(0);
    assert_eq!((e.current, e.desired), (2, 2), "on target: {e:?}");
    let port = serve(&d).await;
    let am = Alertmanager::start(&format!("http://127.0.0.1:{port}/v1/alerts"), &s.root.join("alertmanager.token"));

    let alert = |ends: Option<Timestamp>| {
        let mut a = serde_json::json!({
            "labels": { "alertname": "QueueBacklog", "vmscaler_policy": "web", "severity": "page" },
            "annotations": { "capacity": "5", "summary": "transcode queue backing up" },
        });
        if let Some(t) = ends {
            a["endsAt"] = serde_json::json!(t.to_string());
        }
        serde_json::json!([a])
    };
    am.post_alerts(&alert(None));
    let inbox = d.alerts().expect("inbox");
    let t = now();
    wait_for("the firing alert to reach the daemon", || !inbox.floors("web", t).is_empty()).await;
    assert_eq!(d.expedite_alerted(now()), ["web"], "the pool is due at once");
    let e = d.tick(now()).await.decisions.remove(0);
    assert_eq!((e.current, e.desired), (2, 5), "{e:?}");
    assert!(e.reasons.iter().any(|r| r == "alert \"QueueBacklog\" holds a floor of 5"), "{:?}", e.reasons);
    let b = d.board().snapshot();
    assert_eq!(b.pools["web"].alert_floors.len(), 1);
    let (_, view) = http(port, "GET", "/v1/decisions?policy=web", &[], b"").expect("decisions");
    assert!(view.contains("\"alert_floors\""), "{view}");
    let metrics = d.board().render_prometheus();
    assert!(metrics.contains("vmscaler_alert_floor_capacity{policy=\"web\",alert=\"QueueBacklog\""), "{metrics}");

    // Resolved: Alertmanager sends it, the floor goes.
    am.post_alerts(&alert(Some(now())));
    wait_for("the resolved alert to reach the daemon", || inbox.held("web").is_empty()).await;
    let e = d.tick(now() + 90.seconds()).await.decisions.remove(0);
    assert!(!e.reasons.iter().any(|r| r.contains("QueueBacklog")), "{:?}\n{}", e.reasons, am.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_webhook_rejects_what_it_cannot_trust_and_changes_nothing() {
    let moto = Moto::start();
    moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 1, 0, None).await;
    let s = Scratch::new("alerts-reject");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let mut cfg = s.config(&moto);
    let mut ac = AlertsConfig::new(token_file(&s));
    ac.max_body_bytes = 4096;
    cfg.alerts = Some(ac);
    let d = daemon(&moto, cfg, SystemClock.now()).await;
    let port = serve(&d).await;
    let good = r#"{"version":"4","status":"firing","alerts":[{"status":"firing","labels":{"alertname":"A","vmscaler_policy":"web"},"annotations":{"capacity":"2"},"fingerprint":"f1"}]}"#;
    let auth = ("Authorization", "Bearer am-token-5f0c1d2e3a4b");
    let json = ("Content-Type", "application/json");
    let post = |headers: &[(&str, &str)], body: &[u8]| http(port, "POST", "/v1/alerts", headers, body).expect("answer");
    assert_eq!(post(&[json], good.as_bytes()).0, 401, "no token");
    assert_eq!(post(&[json, ("Authorization", "Bearer am-token-5f0c1d2e3a4c")], good.as_bytes()).0, 401);
    let big = format!("{},\"pad\":\"{}\"}}", &good[..good.len() - 1], "x".repeat(8000));
    assert_eq!(post(&[json, auth], big.as_bytes()).0, 413, "oversized");
    assert_eq!(post(&[json, auth], b"{\"version\":\"4\",").0, 400, "malformed");
    let (status, why) = post(&[json, auth], good.replace("\"web\"", "\"nope\"").as_bytes());
    assert_eq!(status, 422);
    assert!(why.contains("no policy named \"nope\""), "{why}");
    let (status, why) = post(
        &[json, auth],
        good.replace("vmscaler_policy\":\"web\"", "vmscaler_policy\":\"web\",\"vmscaler_pool\":\"x\"").as_bytes(),
    );
    assert_eq!(status, 422);
    assert!(why.contains("unknown label"), "{why}");
    assert!(d.alerts().expect("inbox").held("web").is_empty(), "nothing changed");
    assert!(!s.state().join("alerts.json").exists());
    // And the good one is taken.
    let (status, body) = post(&[json, auth], good.as_bytes());
    assert_eq!((status, body.contains("\"held\":1")), (200, true), "{body}");
    assert!(s.state().join("alerts.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn promtool_accepts_the_exposition() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 2, 0, None).await;
    let t0 = base_time();
    put_cpu(&moto, &pool.running, t0, 5, 90.0).await;
    let s = Scratch::new("promtool");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    d.tick(t0).await;
    d.tick(t0 + 60.seconds()).await;
    let text = d.board().render_prometheus();
    for family in [
        "vmscaler_evaluations_total{",
        "vmscaler_metric_value{policy=\"web\",metric=\"cpu\"} 90",
        "vmscaler_metric_age_seconds{",
        "vmscaler_evaluation_duration_seconds_bucket{policy=\"web\",le=",
        "vmscaler_tick_duration_seconds_count ",
        "vmscaler_pool_desired_capacity{policy=\"web\"}",
    ] {
        assert!(text.contains(family), "{family} missing:\n{text}");
    }
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool (run scripts/setup-prometheus.sh)");
    use std::io::Write as _;
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {said}\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_reads_prometheus_history_with_range_queries() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "gpu-transcode"), 2, 1, 0, None).await;
    let t0 = base_time();
    let gpus = [(pool.running[0].as_str(), 30.0), (pool.running[1].as_str(), 75.0)];
    let prom = Prometheus::start_with(&transcode_series(t0, 12.0, &gpus));
    let policy = crate::support::policy::parse(&shipped_transcode_policy());
    let client = vmscaler::prometheus::PromClient::new(&PrometheusConfig::new(prom.url.clone())).expect("client");
    let rec =
        vmscaler::cmd::record::record_with(&moto.aws().await, Some(&client), &policy, t0, Duration::from_secs(1200))
            .await
            .expect("record");
    let backlog = &rec.metrics.samples["backlog"];
    let gpu = &rec.metrics.samples["gpu"];
    // 20 minutes at a one-minute step: 21 points, each at the start of its period.
    assert_eq!(backlog.len(), 21, "{backlog:?}");
    assert!(backlog.iter().all(|s| s.value == 12.0));
    assert_eq!(backlog.last().map(|s| s.at), Some(t0 - 60.seconds()));
    assert!(gpu.iter().all(|s| s.value == 75.0), "max over the members, the stranger ignored: {gpu:?}");
    let csv = vmscaler::cmd::record::to_csv(&policy, &rec);
    assert!(csv.starts_with("timestamp,cpu,backlog,gpu,pool_size,demand_instances\n"), "{csv}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_pool_learns_its_daily_peak_from_prometheus_history_at_start() {
    let moto = Moto::start();
    let _pool = moto.create_tagged_pool(("vmscaler:pool", "queue"), 2, 4, 0, None).await;
    let t0 = base_time();
    // Four days of a queue, a point every 5 minutes: 12 jobs (2 instances at 6 a piece) all day,
    // 36 (6 instances) for the hour that starts an hour after t0's time of day.
    let peak = t0 + 60.minutes();
    let mut om = String::from("# HELP queue_jobs Jobs waiting.\n# TYPE queue_jobs gauge\n");
    for k in (0..=4 * 288).rev() {
        let t = t0.as_second() - k * 300;
        let jobs = if (t - peak.as_second()).rem_euclid(86_400) < 3600 { 36 } else { 12 };
        let _ = writeln!(om, "queue_jobs{{queue=\"q\"}} {jobs} {t}");
    }
    om.push_str("# EOF\n");
    let prom = Prometheus::start_with(&om);
    let s = Scratch::new("prom-history");
    let policy = "name: queue
pool: { tag: { key: vmscaler:pool, value: queue } }
min: 2
max: 10
interval: 1m
metrics:
  - { id: backlog, source: prometheus, query: 'sum(queue_jobs)', period: 1m, target_per_instance: 6 }
predictive: { mode: forecast_only, lead: 10m, history: 4d }
";
    s.write_policy("queue.yaml", policy);
    let mut cfg = s.config(&moto);
    cfg.prometheus = Some(PrometheusConfig::new(prom.url.clone()));
    let mut d = daemon(&moto, cfg, t0).await;

    // The first tick reads the past from Prometheus: the model is ready at once.
    d.tick(t0).await;
    let board = d.board().snapshot();
    let f = board.pools["queue"].forecast.as_ref().expect("a forecast on the board");
    let h = f.history.as_ref().expect("the history was read");
    assert_eq!(h.state, "loaded", "{h:?}");
    assert!(h.slots >= 4 * 288 - 2, "four days of 5-minute slots learned from Prometheus: {h:?}");
    assert!(h.problems.iter().all(|p| !p.contains("Prometheus")), "{h:?}");
    assert_eq!(f.state, "ready", "{f:?}");
    assert!(f.error.is_some_and(|e| e < 0.1), "a clean daily pattern forecasts well: {f:?}");
    let peak_hour = f.next.iter().find(|h| h.at <= peak && peak < h.at + 1.hour()).expect("the peak's hour");
    assert_eq!(peak_hour.floor, 6, "the next 48 hours show the peak: {:?}", f.next);
}
