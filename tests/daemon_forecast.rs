//! Predictive pre-warm in the daemon against moto (issue 13): the metric history a pool left in
//! CloudWatch (four days with a daily peak, written with PutMetricData at past timestamps) is
//! read at start, so the model forecasts at once instead of after 72 hours of its own; an
//! `active` pool gets its floor before the peak, a `forecast_only` one only reports it. The
//! forecast shows on `/v1/forecast`, `/metrics`, `vmscaler status` and `vmscaler forecast`.

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use jiff::{Timestamp, ToSpan};
use vmscaler::clock::Clock;

use crate::daemon_loop::{FAST_SCALING, Scratch, base_time, daemon, tagged_policy};
use crate::support::faults::{Fault, FaultConfig, FaultProxy};
use crate::support::{Moto, TaggedPool};

/// The daemon's clock as the test sets it.
#[derive(Default)]
struct TestClock(std::sync::Mutex<Option<Timestamp>>);

impl Clock for TestClock {
    fn now(&self) -> Timestamp {
        self.0.lock().unwrap().unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

/// Four days of 5-minute CPU history before `t0`: 50 % on the two members that run now, and in
/// the hour from `peak` (each day) on all six, so the load was 2 instances' worth, and 6 during
/// the peak. Then a minute-by-minute 50 % on the two running members from `t0 - 10m` to `until`
/// (the live readings).
async fn put_history(moto: &Moto, pool: &TaggedPool, t0: Timestamp, peak: Timestamp, until: Timestamp) {
    let members: Vec<&String> = pool.running.iter().chain(&pool.stopped).collect();
    let in_peak = |t: Timestamp| (t.as_second() - peak.as_second()).rem_euclid(86_400) < 3600;
    let past: Vec<Timestamp> = (1..=4 * 288).map(|k| t0 - (k * 300).seconds()).collect();
    for (i, id) in members.iter().enumerate() {
        let mut points: Vec<(Timestamp, f64)> =
            past.iter().filter(|t| i < 2 || in_peak(**t)).map(|t| (*t, 50.0)).collect();
        if i < 2 {
            let mut t = t0 - 10.minutes();
            while t < until {
                points.push((t, 50.0));
                t += 1.minutes();
            }
        }
        moto.put_metric("AWS/EC2", "CPUUtilization", &[("InstanceId", id)], &points).await;
    }
}

fn running(states: &std::collections::BTreeMap<String, String>, pool: &TaggedPool) -> usize {
    pool.running.iter().chain(&pool.stopped).filter(|i| states[*i] == "running").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_from_cloudwatch_raises_the_floor_before_a_daily_peak_and_forecast_only_reports() {
    let moto = Moto::start();
    let active = moto.create_tagged_pool(("vmscaler:pool", "active"), 2, 4, 0, None).await;
    let report = moto.create_tagged_pool(("vmscaler:pool", "report"), 2, 4, 0, None).await;
    let t0 = base_time();
    let peak = t0 + 60.minutes();
    let until = peak + 20.minutes();
    put_history(&moto, &active, t0, peak, until).await;
    put_history(&moto, &report, t0, peak, until).await;
    let s = Scratch::new("forecast");
    // Four days of history (moto buckets every period of the window in Python: 14 days of
    // empty periods would take it longer than the daemon waits).
    let predictive = |mode: &str| format!("{FAST_SCALING}predictive: {{ mode: {mode}, lead: 10m, history: 4d }}\n");
    s.write_policy("active.yaml", &tagged_policy("active", &predictive("active")));
    s.write_policy("report.yaml", &tagged_policy("report", &predictive("forecast_only")));
    let clock = Arc::new(TestClock::default());
    *clock.0.lock().unwrap() = Some(t0);
    let mut d = daemon(&moto, s.config(&moto), t0).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (_stop, rx) = tokio::sync::watch::channel(false);
    tokio::spawn(vmscaler::http::serve(listener, d.board(), Arc::clone(&clock) as Arc<dyn Clock>, rx));

    // The first tick reads the history: the model is ready at once, not in 72 hours.
    let started = vmscaler::clock::monotonic();
    d.tick(t0).await;
    eprintln!("first tick, history read included: {:?}", started.elapsed());
    let board = d.board().snapshot();
    for name in ["active", "report"] {
        let f = board.pools[name].forecast.as_ref().expect("a forecast on the board");
        let h = f.history.as_ref().expect("the history was read");
        assert_eq!(h.state, "loaded", "{name}: {h:?}");
        assert!(h.slots >= 4 * 288 - 2, "{name}: four days of 5-minute slots learned: {h:?}");
        assert_eq!(f.state, "ready", "{name}: {f:?}");
        assert!(f.hours_learned >= 95, "{f:?}");
        assert!(f.error.is_some_and(|e| e < 0.1), "a clean daily pattern forecasts well: {f:?}");
        let peak_hour = f.next.iter().find(|h| h.at <= peak && peak < h.at + 1.hour()).expect("the peak's hour");
        assert_eq!(peak_hour.floor, 6, "{name}: the next 48 hours show the peak: {:?}", f.next);
        assert!(!board.pools[name].degraded(), "{name}: {:?}", board.pools[name].reasons());
    }
    assert_eq!(running(&moto.instance_states().await, &active), 2, "no floor before the peak's lead");

    // Minute by minute to the peak: the active pool is raised to 6 before the peak starts.
    let mut raised_at = None;
    let mut reported_at = None;
    let mut now = t0;
    while now < peak + 5.minutes() {
        *clock.0.lock().unwrap() = Some(now);
        let r = d.tick(now).await;
        for e in &r.decisions {
            if e.policy == "active" && e.desired == 6 && raised_at.is_none() {
                raised_at = Some(now);
                assert!(
                    e.reasons.iter().any(|r| r.starts_with("forecast floor 6") && r.ends_with(": raised")),
                    "{e:?}"
                );
            }
            if e.policy == "report" {
                assert_eq!(e.desired, 2, "forecast_only never acts: {e:?}");
                if reported_at.is_none() && e.reasons.iter().any(|r| r.contains("forecast floor 6")) {
                    reported_at = Some(now);
                    assert!(e.reasons.iter().any(|r| r.ends_with("forecast_only, not applied")), "{e:?}");
                }
            }
        }
        now = r.next_due.expect("due again").max(now + 1.minutes());
    }
    let raised_at = raised_at.expect("the active pool was raised");
    assert!(raised_at < peak && raised_at >= peak - 30.minutes(), "raised at {raised_at}, peak at {peak}");
    assert_eq!(reported_at, Some(raised_at), "both pools forecast alike");
    let states = moto.instance_states().await;
    assert_eq!(running(&states, &active), 6, "the floor started the stopped members");
    assert_eq!(running(&states, &report), 2, "forecast_only started nothing");

    // Every surface shows it.
    let metrics = d.board().snapshot().render_prometheus();
    for needle in [
        "vmscaler_forecast_floor_capacity{policy=\"active\"} 6",
        "vmscaler_forecast_applied{policy=\"report\"} 0",
        "vmscaler_forecast_error_ratio{policy=\"active\"}",
        "vmscaler_forecast_learned_hours{policy=\"report\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from:\n{metrics}");
    }
    let svg = s.root.join("active.svg");
    let bin = env!("CARGO_BIN_EXE_vmscaler");
    let (u, svg_path) = (url.clone(), svg.clone());
    let (json, text, status) = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| {
            let out = Command::new(bin).args(args).output().expect("run vmscaler");
            assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).expect("utf-8")
        };
        let svg_arg = svg_path.to_str().expect("path");
        (
            run(&["forecast", "active", "--url", &u, "--output", "json"]),
            run(&["forecast", "report", "--url", &u, "--svg", svg_arg, "--time-zone", "UTC"]),
            run(&["status", "--url", &u, "--last", "1"]),
        )
    })
    .await
    .unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).expect("json");
    assert_eq!(v["forecast"]["mode"], "active", "{v}");
    assert_eq!(v["forecast"]["floor"], 6, "{v}");
    assert_eq!(v["forecast"]["history"]["state"], "loaded", "{v}");
    eprintln!("{text}");
    assert!(text.starts_with("report: forecast (forecast_only): floor 6, not applied (forecast_only)"), "{text}");
    assert!(text.contains("next 48 hours:"), "{text}");
    assert!(status.contains("forecast (active): floor 6, "), "{status}");
    let chart = std::fs::read_to_string(&svg).expect("svg written");
    assert!(chart.starts_with("<svg") && chart.matches("<polyline").count() == 5, "{chart}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_history_that_cannot_be_read_degrades_is_retried_and_never_stops_the_evaluation() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "web"), 2, 1, 0, None).await;
    let t0 = base_time();
    put_history(&moto, &pool, t0, t0 + 60.minutes(), t0 + 40.minutes()).await;
    // Every GetMetricData answered 500: the history read and the evaluation's own read fail.
    let faults = FaultConfig {
        seed: 1,
        per_mille: 1000,
        operations: vec!["GetMetricData"],
        kinds: vec![(Fault::Status500, 1)],
        hang: Duration::ZERO,
        slow: Duration::ZERO,
    };
    let proxy = FaultProxy::start(&moto.endpoint, faults).await;
    let s = Scratch::new("forecast-fail");
    s.write_policy("web.yaml", &tagged_policy("web", "predictive: { history: 4d }\n"));
    let aws = crate::reliability_faults::aws_through(&proxy.endpoint).await;
    let (mut d, _) = vmscaler::daemon::Daemon::new(s.config(&moto), aws, t0).expect("daemon starts");
    let r = d.tick(t0).await;
    assert_eq!(r.evaluated, ["web"], "evaluated whatever the history read did");
    let pb = d.board().snapshot().pools["web"].clone();
    let f = pb.forecast.clone().expect("forecast");
    assert_eq!(f.state, "learning", "{f:?}");
    let h = f.history.expect("tried");
    assert_eq!(h.state, "failed", "{h:?}");
    assert!(h.problems.iter().any(|p| p.contains("GetMetricData")), "{h:?}");
    assert!(pb.reasons().iter().any(|r| r.starts_with("forecast history not read")), "{:?}", pb.reasons());
    // CloudWatch answers again: not re-read before the retry time, read at it.
    proxy.set_enabled(false);
    d.tick(t0 + 5.minutes()).await;
    let h = d.board().snapshot().pools["web"].forecast.clone().and_then(|f| f.history).expect("history");
    assert_eq!(h.state, "failed", "retried only after {:?}", vmscaler::daemon::forecast::RETRY_AFTER);
    d.tick(t0 + 31.minutes()).await;
    let pb = d.board().snapshot().pools["web"].clone();
    let f = pb.forecast.clone().expect("forecast");
    assert_eq!(f.history.as_ref().map(|h| h.state.as_str()), Some("loaded"), "{f:?}");
    assert_eq!(f.state, "ready", "{f:?}");
    assert!(!pb.reasons().iter().any(|r| r.starts_with("forecast history")), "{:?}", pb.reasons());
}
