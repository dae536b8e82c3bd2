//! A fault-injecting loopback proxy in front of moto, for the reliability tests.
//!
//! Every request is read whole, its operation named (`X-Amz-Target` for CloudWatch's JSON
//! protocol, `Action=` for the EC2 and Auto Scaling query protocols), and, while faults are
//! switched on, a chosen share of the requests of the chosen operations gets a fault instead of
//! moto's answer: the service's own throttling error (`RequestLimitExceeded` for EC2,
//! `Throttling` for Auto Scaling and CloudWatch), HTTP 500 or 503, a connection reset, a hang
//! past the client's attempt timeout, or a slow but good answer. Which request gets which fault
//! is a pure function of the seed, the operation and how many requests of that operation came
//! before, so a run is reproducible whatever the interleaving of operations.
//!
//! Faults are injected *before* the request reaches moto (except a slow answer, which goes
//! through late): a failed attempt never changes the fleet. Each request that reaches moto is
//! answered on its own connection (`Connection: close` both ways), so none bypasses the proxy.
//! For `StartInstances` and `StopInstances` the proxy logs the state changes moto reports,
//! tagged with the tick the test set, so a test can check that no instance changed state twice
//! in one evaluation.
//!
//! For the crash tests, the answers of chosen operations can be held back after moto carried
//! the call out ([`FaultProxy::hold_answers`]), so a client killed in that window has acted
//! without hearing so; every request's arrival is timed, and a start or stop that changed
//! nothing (an instance already in the wanted state) is logged apart as a no-op.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::throttle::{THROTTLED, read_request};

/// What the proxy does to a request instead of passing it on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// The service's throttling error.
    Throttle,
    /// HTTP 500 with the service's internal error.
    Status500,
    /// HTTP 503 with the service's unavailable error.
    Status503,
    /// The connection is reset (RST) without an answer.
    Reset,
    /// The connection is held for [`FaultConfig::hang`], then dropped without an answer.
    Timeout,
    /// The request goes through after [`FaultConfig::slow`].
    Slow,
}

impl Fault {
    pub const ALL: [Fault; 6] =
        [Fault::Throttle, Fault::Status500, Fault::Status503, Fault::Reset, Fault::Timeout, Fault::Slow];

    pub fn as_str(self) -> &'static str {
        match self {
            Fault::Throttle => "throttle",
            Fault::Status500 => "http_500",
            Fault::Status503 => "http_503",
            Fault::Reset => "reset",
            Fault::Timeout => "timeout",
            Fault::Slow => "slow",
        }
    }

    /// Whether the request fails (a slow answer does not).
    pub fn fails(self) -> bool {
        self != Fault::Slow
    }
}

/// Which requests get which faults.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    pub seed: u64,
    /// Share of the matching requests that get a fault, per mille.
    pub per_mille: u32,
    /// Operations that get faults; empty: every operation.
    pub operations: Vec<&'static str>,
    /// Fault kinds and their relative weights.
    pub kinds: Vec<(Fault, u32)>,
    /// How long a [`Fault::Timeout`] holds the connection: beyond the client's attempt timeout.
    pub hang: Duration,
    /// How late a [`Fault::Slow`] answer is: within the client's attempt timeout.
    pub slow: Duration,
}

/// One instance's state change as moto reported it in a `StartInstances`/`StopInstances`
/// answer that reached the client side of the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub tick: u64,
    /// When moto's answer reached the proxy, since the proxy started.
    pub at: Duration,
    pub operation: String,
    pub instance: String,
    pub from: String,
    pub to: String,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    config: Mutex<FaultConfig>,
    enabled: AtomicBool,
    tick: AtomicU64,
    /// Requests seen per operation (the fault sequence number).
    seen: Mutex<BTreeMap<String, u64>>,
    injected: Mutex<BTreeMap<(String, Fault), u64>>,
    transitions: Mutex<Vec<Transition>>,
    /// Starts of running instances and stops of stopped ones: repeated actions.
    noops: Mutex<Vec<Transition>>,
    /// Operations whose answers are held back after moto acted, and for how long.
    hold: Mutex<(Vec<String>, Duration)>,
    /// Operations whose answers are dropped after moto acted: the connection closes unanswered.
    drop_answers: Mutex<Vec<String>>,
    /// Arrival times of requests by operation, since `started`.
    arrivals: Mutex<BTreeMap<String, Vec<Duration>>>,
    started: std::time::Instant,
}

/// The proxy; its tasks live as long as the test's runtime.
pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
}

impl FaultProxy {
    /// Listens on a free loopback port in front of `upstream` (`http://127.0.0.1:port`), with
    /// faults switched on.
    pub async fn start(upstream: &str, config: FaultConfig) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fault proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let shared = Arc::new(Shared {
            upstream: upstream.trim_start_matches("http://").to_owned(),
            config: Mutex::new(config),
            enabled: AtomicBool::new(true),
            tick: AtomicU64::new(0),
            seen: Mutex::default(),
            injected: Mutex::default(),
            transitions: Mutex::default(),
            noops: Mutex::default(),
            hold: Mutex::new((Vec::new(), Duration::ZERO)),
            drop_answers: Mutex::new(Vec::new()),
            arrivals: Mutex::default(),
            started: vmscaler::clock::monotonic(),
        });
        let s = Arc::clone(&shared);
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let s = Arc::clone(&s);
                tokio::spawn(async move {
                    let _ = handle(conn, &s).await;
                });
            }
        });
        FaultProxy { endpoint: format!("http://127.0.0.1:{port}"), shared }
    }

    /// Switches faults on or off; requests already held keep their fault.
    pub fn set_enabled(&self, on: bool) {
        self.shared.enabled.store(on, Ordering::SeqCst);
    }

    /// Tags the state changes logged from now on.
    pub fn set_tick(&self, tick: u64) {
        self.shared.tick.store(tick, Ordering::SeqCst);
    }

    /// Faults injected so far, by operation and kind.
    pub fn injected(&self) -> BTreeMap<(String, Fault), u64> {
        self.shared.injected.lock().expect("lock").clone()
    }

    /// Faults injected so far, by kind (every kind listed).
    pub fn injected_by_kind(&self) -> BTreeMap<Fault, u64> {
        let mut out: BTreeMap<Fault, u64> = Fault::ALL.iter().map(|&f| (f, 0)).collect();
        for ((_, f), n) in self.injected() {
            *out.entry(f).or_default() += n;
        }
        out
    }

    /// Requests seen so far, by operation.
    pub fn requests(&self) -> BTreeMap<String, u64> {
        self.shared.seen.lock().expect("lock").clone()
    }

    /// State changes moto reported for start/stop requests, in order.
    /// Holds the answers of `operations` back for `delay` after moto carried the call out.
    /// From now on, requests of `operations` reach moto (which carries them out) and the
    /// client gets no answer: the connection is closed. An empty list ends it.
    pub fn drop_answers(&self, operations: &[&str]) {
        *self.shared.drop_answers.lock().expect("lock") = operations.iter().map(|o| (*o).to_owned()).collect();
    }

    pub fn hold_answers(&self, operations: &[&str], delay: Duration) {
        *self.shared.hold.lock().expect("lock") = (operations.iter().map(|o| (*o).to_owned()).collect(), delay);
    }

    /// Time since the proxy started, on the clock of [`Transition::at`] and [`Self::arrivals`].
    pub fn elapsed(&self) -> Duration {
        self.shared.started.elapsed()
    }

    /// Arrival times of `operation`'s requests, oldest first.
    pub fn arrivals(&self, operation: &str) -> Vec<Duration> {
        self.shared.arrivals.lock().expect("lock").get(operation).cloned().unwrap_or_default()
    }

    /// Starts and stops that found the instance already in the wanted state.
    pub fn noops(&self) -> Vec<Transition> {
        self.shared.noops.lock().expect("lock").clone()
    }

    pub fn transitions(&self) -> Vec<Transition> {
        self.shared.transitions.lock().expect("lock").clone()
    }
}

/// SplitMix64: a fixed, well-mixed function of its input.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn op_hash(op: &str) -> u64 {
    op.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The fault of the `n`-th request of `op`, if any.
fn choose(config: &FaultConfig, op: &str, n: u64) -> Option<Fault> {
    if !config.operations.is_empty() && !config.operations.contains(&op) {
        return None;
    }
    let h = mix(config.seed ^ mix(op_hash(op) ^ mix(n)));
    if h % 1000 >= u64::from(config.per_mille) {
        return None;
    }
    let total: u64 = config.kinds.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut pick = mix(h) % total;
    for (f, w) in &config.kinds {
        if pick < u64::from(*w) {
            return Some(*f);
        }
        pick -= u64::from(*w);
    }
    None
}

/// Which protocol a request speaks, for an error body the SDK parses like the real thing's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Service {
    Ec2,
    AutoScaling,
    CloudWatch,
}

struct Request {
    head: String,
    body: Vec<u8>,
}

impl Request {
    fn parse(raw: &[u8]) -> Request {
        let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
        let head = String::from_utf8_lossy(&raw[..end]).into_owned();
        let body = raw.get(end + 4..).unwrap_or_default().to_vec();
        Request { head, body }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    fn form(&self, key: &str) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body);
        let query = self.head.lines().next().and_then(|l| l.split_whitespace().nth(1)?.split_once('?')).map(|q| q.1);
        body.split('&')
            .chain(query.into_iter().flat_map(|q| q.split('&')))
            .find_map(|kv| kv.split_once('=').filter(|(k, _)| *k == key).map(|(_, v)| v.to_owned()))
    }

    fn service(&self) -> Service {
        if self.header("x-amz-target").is_some() {
            Service::CloudWatch
        } else if self.form("Version").as_deref() == Some("2011-01-01") {
            Service::AutoScaling
        } else {
            Service::Ec2
        }
    }

    fn operation(&self) -> String {
        match self.header("x-amz-target") {
            Some(t) => t.rsplit('.').next().unwrap_or(t).to_owned(),
            None => self.form("Action").unwrap_or_else(|| "unknown".to_owned()),
        }
    }

    /// The request with `Connection: close`, so moto answers once and closes.
    fn closing(&self) -> Vec<u8> {
        let mut out = close_head(&self.head).into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// `head` (without its blank line) with any `Connection` header replaced by `close`, and the
/// blank line.
fn close_head(head: &str) -> String {
    let mut out = String::with_capacity(head.len() + 24);
    for line in head.split("\r\n").filter(|l| !l.to_ascii_lowercase().starts_with("connection:")) {
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str("Connection: close\r\n\r\n");
    out
}

fn error_response(service: Service, fault: Fault) -> String {
    let (status, code) = match (service, fault) {
        (Service::Ec2, Fault::Throttle) => return http(503, "text/xml;charset=UTF-8", THROTTLED, ""),
        (_, Fault::Throttle) => (400, "Throttling"),
        (Service::Ec2, Fault::Status500) => (500, "InternalError"),
        (_, Fault::Status500) => (500, "InternalFailure"),
        (Service::Ec2, _) => (503, "Unavailable"),
        (_, _) => (503, "ServiceUnavailable"),
    };
    match service {
        Service::CloudWatch => {
            let body = format!("{{\"__type\":\"{code}\",\"message\":\"injected fault\"}}");
            let extra = format!("x-amzn-query-error: {code};Sender\r\n");
            http(status, "application/x-amz-json-1.0", &body, &extra)
        }
        Service::AutoScaling => {
            let body = format!(
                "<ErrorResponse xmlns=\"http://autoscaling.amazonaws.com/doc/2011-01-01/\"><Error><Type>Sender</Type>\
                 <Code>{code}</Code><Message>injected fault</Message></Error><RequestId>0</RequestId></ErrorResponse>"
            );
            http(status, "text/xml", &body, "")
        }
        Service::Ec2 => {
            let body = format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code>\
                 <Message>injected fault</Message></Error></Errors><RequestID>0</RequestID></Response>"
            );
            http(status, "text/xml;charset=UTF-8", &body, "")
        }
    }
}

fn http(status: u16, content_type: &str, body: &str, extra: &str) -> String {
    let reason = match status {
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    )
}

async fn handle(mut conn: TcpStream, s: &Shared) -> std::io::Result<()> {
    let req = Request::parse(&read_request(&mut conn).await?);
    let op = req.operation();
    s.arrivals.lock().expect("lock").entry(op.clone()).or_default().push(s.started.elapsed());
    let n = {
        let mut seen = s.seen.lock().expect("lock");
        let c = seen.entry(op.clone()).or_default();
        *c += 1;
        *c - 1
    };
    let (fault, hang, slow) = {
        let config = s.config.lock().expect("lock");
        let fault = if s.enabled.load(Ordering::SeqCst) { choose(&config, &op, n) } else { None };
        (fault, config.hang, config.slow)
    };
    if let Some(f) = fault {
        *s.injected.lock().expect("lock").entry((op.clone(), f)).or_default() += 1;
    }
    match fault {
        Some(Fault::Reset) => {
            conn.set_zero_linger()?;
            drop(conn);
            return Ok(());
        }
        Some(Fault::Timeout) => {
            tokio::time::sleep(hang).await;
            return Ok(());
        }
        Some(Fault::Slow) => tokio::time::sleep(slow).await,
        Some(f) => {
            conn.write_all(error_response(req.service(), f).as_bytes()).await?;
            return conn.shutdown().await;
        }
        None => {}
    }
    let tick = s.tick.load(Ordering::SeqCst);
    let response = forward(&s.upstream, &req).await?;
    if op == "StartInstances" || op == "StopInstances" {
        let body = String::from_utf8_lossy(&response);
        let at = s.started.elapsed();
        for (instance, from, to) in state_changes(&body) {
            let noop = match op.as_str() {
                "StartInstances" => from == "pending" || from == "running",
                _ => from == "stopping" || from == "stopped",
            };
            let log = if noop { &s.noops } else { &s.transitions };
            log.lock().expect("lock").push(Transition { tick, at, operation: op.clone(), instance, from, to });
        }
    }
    let hold = {
        let hold = s.hold.lock().expect("lock");
        if hold.0.contains(&op) { hold.1 } else { Duration::ZERO }
    };
    if !hold.is_zero() {
        tokio::time::sleep(hold).await;
    }
    if s.drop_answers.lock().expect("lock").contains(&op) {
        return conn.shutdown().await;
    }
    conn.write_all(&response).await?;
    conn.shutdown().await
}

/// Sends the request to moto on a fresh connection and returns its whole answer, with
/// `Connection: close`.
async fn forward(upstream: &str, req: &Request) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&req.closing()).await?;
    let mut raw = Vec::new();
    up.read_to_end(&mut raw).await?;
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or(std::io::ErrorKind::InvalidData)?;
    let mut out = close_head(&String::from_utf8_lossy(&raw[..end])).into_bytes();
    out.extend_from_slice(&raw[end + 4..]);
    Ok(out)
}

/// `(instance, previous state, current state)` of each item of an EC2 start/stop answer.
fn state_changes(xml: &str) -> Vec<(String, String, String)> {
    let name_in = |s: &str, tag: &str| -> Option<String> {
        let open = format!("<{tag}>");
        let inner = &s[s.find(&open)? + open.len()..];
        let inner = &inner[..inner.find(&format!("</{tag}>"))?];
        let n = &inner[inner.find("<name>")? + 6..];
        Some(n[..n.find("</name>")?].to_owned())
    };
    xml.split("<instanceId>")
        .skip(1)
        .filter_map(|item| {
            let id = item[..item.find("</instanceId>")?].to_owned();
            let item = item.split("</item>").next().unwrap_or(item);
            Some((id, name_in(item, "previousState")?, name_in(item, "currentState")?))
        })
        .collect()
}

#[test]
fn faults_follow_the_seed_and_the_rate() {
    let config = FaultConfig {
        seed: 7,
        per_mille: 300,
        operations: vec!["DescribeInstances"],
        kinds: vec![(Fault::Throttle, 1), (Fault::Reset, 1)],
        hang: Duration::ZERO,
        slow: Duration::ZERO,
    };
    let picks: Vec<Option<Fault>> = (0..10_000).map(|n| choose(&config, "DescribeInstances", n)).collect();
    let again: Vec<Option<Fault>> = (0..10_000).map(|n| choose(&config, "DescribeInstances", n)).collect();
    assert_eq!(picks, again, "same seed, same faults");
    let faulted = picks.iter().filter(|f| f.is_some()).count();
    assert!((2_800..=3_200).contains(&faulted), "{faulted} of 10000 faulted");
    let resets = picks.iter().filter(|f| **f == Some(Fault::Reset)).count();
    assert!((1_300..=1_700).contains(&resets), "{resets} resets");
    assert!((0..1000).all(|n| choose(&config, "GetMetricData", n).is_none()), "other operations untouched");
}

#[test]
fn start_and_stop_answers_are_read_item_by_item() {
    let xml = "<instancesSet><item><instanceId>i-1</instanceId><previousState><code>80</code><name>stopped</name>\
               </previousState><currentState><code>0</code><name>pending</name></currentState></item><item>\
               <instanceId>i-2</instanceId><currentState><code>16</code><name>running</name></currentState>\
               <previousState><code>16</code><name>running</name></previousState></item></instancesSet>";
    assert_eq!(
        state_changes(xml),
        [
            ("i-1".to_owned(), "stopped".to_owned(), "pending".to_owned()),
            ("i-2".to_owned(), "running".to_owned(), "running".to_owned())
        ]
    );
}
