//! `vmscaler run` as a process against moto: HTTP endpoints, `vmscaler status`, reload on
//! SIGHUP and on a file change (a broken file keeps the old policy), structured JSON logs, and
//! a clean exit 0 on SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use vmscaler::cmd::status::http_get;

use crate::daemon_loop::{FAST_SCALING, Scratch, tagged_policy};
use crate::support::Moto;

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

struct Daemon {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Daemon {
    fn start(moto: &Moto, s: &Scratch, extra_config: &str) -> Daemon {
        let port = free_port();
        let config = s.root.join("vmscaler.yaml");
        std::fs::write(
            &config,
            format!(
                "policy_dir: policies\nstate_dir: state\nlisten: 127.0.0.1:{port}\nregion: us-east-1\n{extra_config}"
            ),
        )
        .expect("write config");
        let log = s.root.join("daemon.log");
        let child = moto.spawn_daemon(&config, &log);
        let d = Daemon { child, url: format!("http://127.0.0.1:{port}"), log };
        d.wait_for("first decision", |d| {
            http_get(&d.url, "/v1/decisions").is_ok_and(|b| b.contains("\"decisions\":[{"))
        });
        d
    }

    fn get(&self, path: &str) -> String {
        http_get(&self.url, path).unwrap_or_else(|e| panic!("GET {path}: {e:#}\nlog:\n{}", self.log_text()))
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill").args([sig, &self.child.id().to_string()]).status().expect("kill").success();
        assert!(ok, "kill {sig} failed");
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut(&Daemon) -> bool) {
        for _ in 0..300 {
            if cond(self) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.log_text());
    }

    fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let mut waited = Duration::ZERO;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                return st;
            }
            assert!(waited < limit, "daemon did not exit within {limit:?}; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
            waited += Duration::from_millis(50);
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines().find(|l| l.starts_with(line_prefix)).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

fn status_output(url: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler")).args(["status", "--url", url]).output().expect("status");
    assert!(out.status.success(), "vmscaler status failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

fn break_policy(file: &Path) {
    std::fs::write(file, tagged_policy("web", FAST_SCALING).replace("min: 1", "min: 50")).expect("write");
}

#[test]
fn run_serves_http_reloads_on_sighup_and_exits_0_on_sigterm() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 1, 0, None));
    let s = Scratch::new("proc-hup");
    let file = s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    // Polling effectively off: only SIGHUP can reload here.
    let mut d = Daemon::start(&moto, &s, "reload_poll: 1h\nlog_format: json\n");

    // No metric data yet: degraded, and `/healthz` says why (issue 10, finding 9).
    let health = d.get("/healthz");
    assert!(
        health.contains("\"status\":\"degraded\"") && health.contains("no datapoint within max_age 5m for cpu"),
        "{health}"
    );
    let metrics = d.get("/metrics");
    assert_eq!(metric(&metrics, "vmscaler_evaluations_total{policy=\"web\",result=\"ok\"}"), Some(1.0), "{metrics}");
    assert_eq!(metric(&metrics, "vmscaler_pool_current_capacity{policy=\"web\"}"), Some(1.0), "{metrics}");
    assert!(metric(&metrics, "vmscaler_api_calls_total{operation=\"DescribeInstances\"}").is_some_and(|n| n >= 1.0));
    let status = status_output(&d.url);
    assert!(status.contains("web: current 1 desired 1"), "{status}");
    assert!(status.contains("no data for cpu"), "reasons are printed: {status}");

    break_policy(&file);
    d.signal("-HUP");
    d.wait_for("reload failure metric", |d| {
        metric(&d.get("/metrics"), "vmscaler_policy_reload_failures_total") == Some(1.0)
    });
    let health = d.get("/healthz");
    assert!(health.contains("\"status\":\"degraded\"") && health.contains("web.yaml"), "{health}");
    assert!(d.get("/v1/decisions?policy=web").contains("\"policy\":\"web\""), "old policy still listed");

    d.signal("-TERM");
    let st = d.wait_exit(Duration::from_secs(20));
    assert_eq!(st.code(), Some(0), "log:\n{}", d.log_text());
    // Structured JSON logs: the decision carries its fields and the evaluation span's policy.
    let log = d.log_text();
    let decision = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["message"] == "hold" || v["message"] == "decision")
        .unwrap_or_else(|| panic!("no decision line in:\n{log}"));
    assert_eq!(decision["span"]["policy"], "web", "{decision}");
    assert_eq!(decision["current"], 1, "{decision}");
    assert!(decision["reason"].as_str().is_some_and(|r| r.contains("cpu")), "{decision}");
    assert!(log.contains("policy file rejected") && log.contains("stopping"), "{log}");
}

#[test]
fn a_changed_policy_file_is_reloaded_without_a_signal() {
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 0, 0, None));
    let s = Scratch::new("proc-poll");
    let file = s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let mut d = Daemon::start(&moto, &s, "reload_poll: 200ms\n");
    break_policy(&file);
    d.wait_for("reload failure", |d| metric(&d.get("/metrics"), "vmscaler_policy_reload_failures_total") == Some(1.0));
    // A new, valid file is picked up too, and the broken one's pool keeps running.
    s.write_policy("api.yaml", &tagged_policy("api", FAST_SCALING));
    d.wait_for("new policy", |d| metric(&d.get("/metrics"), "vmscaler_policies_loaded") == Some(2.0));
    let view = d.get("/v1/decisions");
    assert!(view.contains("\"policy\":\"web\"") && view.contains("\"policy\":\"api\""), "{view}");
    d.signal("-TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// A loopback proxy to moto that holds every chunk a client sends for `delay`, so an
/// evaluation takes seconds; `seen` counts the chunks.
async fn slow_proxy(upstream: String, delay: Duration, seen: std::sync::Arc<std::sync::atomic::AtomicU32>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let (up, seen) = (upstream.clone(), std::sync::Arc::clone(&seen));
            tokio::spawn(async move {
                let Ok(server) = tokio::net::TcpStream::connect(up.trim_start_matches("http://")).await else { return };
                let (mut cr, mut cw) = client.into_split();
                let (mut sr, mut sw) = server.into_split();
                let down = tokio::spawn(async move { tokio::io::copy(&mut sr, &mut cw).await });
                let mut buf = vec![0u8; 65536];
                while let Ok(n) = cr.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(delay).await;
                    if sw.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
                let _ = sw.shutdown().await;
                let _ = down.await;
            });
        }
    });
    format!("http://127.0.0.1:{port}")
}

#[test]
fn sigterm_finishes_the_evaluation_under_way_then_exits_0() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let moto = Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(moto.create_tagged_pool(("vmscaler:pool", "web"), 1, 1, 0, None));
    let seen = std::sync::Arc::new(AtomicU32::new(0));
    let proxy =
        rt.block_on(slow_proxy(moto.endpoint.clone(), Duration::from_millis(700), std::sync::Arc::clone(&seen)));
    let s = Scratch::new("proc-term");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let config = s.root.join("vmscaler.yaml");
    std::fs::write(&config, "policy_dir: policies\nstate_dir: state\nlisten: off\nregion: us-east-1\n")
        .expect("config");
    let log = s.root.join("daemon.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(["run", "--config"])
        .arg(&config)
        .args(["--endpoint-url", &proxy])
        .envs(moto.env().into_iter().filter(|(k, _)| *k != "AWS_ENDPOINT_URL"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn");
    // The first tick's first request (DescribeInstances) is in the proxy: the evaluation is
    // under way, and will take a few more slow round trips.
    for _ in 0..300 {
        if seen.load(Ordering::SeqCst) > 0 {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(seen.load(Ordering::SeqCst) > 0, "daemon never called AWS");
    let state = s.state().join("pools/web.json");
    assert!(!state.exists(), "evaluation already finished: the proxy is not slow enough");
    let ok = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill").success();
    assert!(ok);
    let status = (0..400)
        .find_map(|_| {
            std::thread::sleep(Duration::from_millis(50));
            child.try_wait().expect("wait")
        })
        .unwrap_or_else(|| {
            let _ = child.kill();
            panic!("no exit after SIGTERM")
        });
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(0), "{text}");
    assert!(state.exists(), "the evaluation under way was finished and persisted:\n{text}");
    let decided = text.find(": hold ").or_else(|| text.find(": decision ")).expect("decision logged");
    let stopping = text.find("stopping").expect("stopping logged");
    assert!(decided < stopping, "decision before shutdown:\n{text}");
}

/// A listen address already in use is the configuration's to fix: exit 78 (EX_CONFIG, so
/// systemd does not restart in a loop), naming the address, before any pool is evaluated.
#[test]
fn a_listen_port_in_use_exits_78_with_the_address() {
    let moto = Moto::start();
    let s = Scratch::new("proc-port");
    s.write_policy("web.yaml", &tagged_policy("web", FAST_SCALING));
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let config = s.root.join("vmscaler.yaml");
    std::fs::write(&config, format!("policy_dir: policies\nstate_dir: state\nlisten: {addr}\nregion: us-east-1\n"))
        .expect("config");
    let log = s.root.join("daemon.log");
    let mut child = moto.spawn_daemon(&config, &log);
    let mut waited = Duration::ZERO;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        assert!(waited < Duration::from_secs(60), "still running with its port taken");
        std::thread::sleep(Duration::from_millis(50));
        waited += Duration::from_millis(50);
    };
    let err = std::fs::read_to_string(&log).expect("log");
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(err.contains(&format!("cannot listen on {addr}")), "{err}");
    assert!(!s.state().join("pools/web.json").exists(), "a pool was evaluated before the daemon gave up");
    drop(taken);
}
