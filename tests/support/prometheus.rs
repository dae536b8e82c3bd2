//! Real Prometheus and Alertmanager servers for the tests (the Debian packages installed by
//! `scripts/setup-prometheus.sh`): each on a free loopback port with a temporary data
//! directory, killed and removed when dropped. The packages' own services play no part.
//!
//! Prometheus is seeded by backfilling: the test writes OpenMetrics text, `promtool tsdb
//! create-blocks-from openmetrics` turns it into blocks in the data directory, and the server
//! reads them at start-up, so queries at past instants see exactly the test's data.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn need(bin: &str) -> PathBuf {
    for dir in ["/usr/bin", "/usr/local/bin", "/usr/sbin"] {
        let p = Path::new(dir).join(bin);
        if p.exists() {
            return p;
        }
    }
    panic!("{bin} not found: run scripts/setup-prometheus.sh (make setup) to install prometheus and alertmanager");
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

fn scratch(tag: &str) -> PathBuf {
    use vmscaler::clock::Clock as _;
    let n = vmscaler::clock::SystemClock.now().as_nanosecond();
    let dir = std::env::temp_dir().join(format!("vmscaler-{tag}-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// A plain HTTP/1.0 request to 127.0.0.1:`port`; `(status, body)`, or `None` when nothing answers.
pub fn http(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    // A server may refuse before reading the whole body: a failed write still has an answer.
    let _ = s.write_all(body);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((status, body))
}

fn wait_ready(child: &mut Child, port: u16, what: &str, log: &Path) {
    for _ in 0..600 {
        if http(port, "GET", "/-/ready", &[], b"").is_some_and(|(s, _)| s == 200) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            panic!("{what} exited ({status}) before it was ready:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("{what} was not ready within 30s");
}

/// A running Prometheus server.
pub struct Prometheus {
    pub port: u16,
    pub url: String,
    dir: PathBuf,
    child: Option<Child>,
}

impl Prometheus {
    /// Backfills `openmetrics` (OpenMetrics text ending in `# EOF`) and starts a server on it.
    pub fn start_with(openmetrics: &str) -> Prometheus {
        let dir = scratch("prometheus");
        let data = dir.join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let input = dir.join("seed.om");
        std::fs::write(&input, openmetrics).expect("write seed");
        let out = Command::new(need("promtool"))
            .args(["tsdb", "create-blocks-from", "openmetrics"])
            .arg(&input)
            .arg(&data)
            .output()
            .expect("run promtool");
        assert!(
            out.status.success(),
            "promtool backfill failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let config = dir.join("prometheus.yml");
        std::fs::write(&config, "global:\n  scrape_interval: 1m\nscrape_configs: []\n").expect("write config");
        let mut p = Prometheus { port: 0, url: String::new(), dir, child: None };
        p.spawn(&config, &data);
        p
    }

    fn spawn(&mut self, config: &Path, data: &Path) {
        for _ in 0..3 {
            let port = free_port();
            let log = self.dir.join("prometheus.log");
            let mut child = Command::new(need("prometheus"))
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                // Backfilled blocks are far in the past: keep them.
                .arg("--storage.tsdb.retention.time=30d")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("spawn prometheus");
            if http_ready(&mut child, port) {
                wait_ready(&mut child, port, "prometheus", &log);
                self.port = port;
                self.url = format!("http://127.0.0.1:{port}");
                self.child = Some(child);
                return;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("prometheus did not start");
    }

    /// Stops the server (an outage); its data directory stays.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Whether the child is still alive a moment after starting (a lost port race exits at once).
fn http_ready(child: &mut Child, _port: u16) -> bool {
    std::thread::sleep(Duration::from_millis(200));
    child.try_wait().ok().flatten().is_none()
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running Alertmanager whose one receiver is a webhook.
pub struct Alertmanager {
    pub port: u16,
    dir: PathBuf,
    child: Child,
}

impl Alertmanager {
    /// Starts Alertmanager routing every alert to `webhook` with the bearer token in
    /// `token_file`; grouping waits are a second so a test sees deliveries quickly.
    pub fn start(webhook: &str, token_file: &Path) -> Alertmanager {
        let dir = scratch("alertmanager");
        let config = dir.join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  resolve_timeout: 5m\nroute:\n  receiver: vmscaler\n  group_by: [vmscaler_policy, alertname]\n  group_wait: 1s\n  group_interval: 1s\n  repeat_interval: 1h\nreceivers:\n  - name: vmscaler\n    webhook_configs:\n      - url: {webhook}\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials_file: {}\n",
                token_file.display()
            ),
        )
        .expect("write alertmanager.yml");
        for _ in 0..3 {
            let port = free_port();
            let log = dir.join("alertmanager.log");
            let mut child = Command::new(need("prometheus-alertmanager"))
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.path={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--cluster.listen-address=")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("log"))
                .spawn()
                .expect("spawn alertmanager");
            if http_ready(&mut child, port) {
                wait_ready(&mut child, port, "alertmanager", &log);
                return Alertmanager { port, dir, child };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("alertmanager did not start");
    }

    /// Posts alerts through Alertmanager's API v2, as Prometheus would.
    pub fn post_alerts(&self, alerts: &serde_json::Value) {
        let body = serde_json::to_vec(alerts).expect("json");
        let (status, text) = http(self.port, "POST", "/api/v2/alerts", &[("Content-Type", "application/json")], &body)
            .expect("alertmanager answers");
        assert_eq!(status, 200, "alertmanager refused the alerts: {text}");
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("alertmanager.log")).unwrap_or_default()
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
