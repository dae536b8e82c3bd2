//! Alertmanager's webhook as an input: `POST /v1/alerts` raises a pool's capacity floor while
//! an alert for it fires.
//!
//! An alert labelled `vmscaler_policy: NAME` holds a floor for that policy's pool: the
//! `capacity` annotation (an instance count), or a `boost` annotation (`50%`: the capacity
//! seen when the alert first arrived, plus that share, at least one more instance). The engine
//! applies the highest floor held (never above the policy's `max`) as a `Bound` in the
//! decision. A `resolved` notification releases it; so does `max_duration` (the config's, or
//! a shorter `max_duration` annotation) after the last `firing` notification, so a lost
//! `resolved` cannot hold a floor for ever (Alertmanager repeats firing alerts every
//! `repeat_interval`: keep `max_duration` above it).
//!
//! Off unless the config has an `alerts:` section. Every request must carry the bearer token
//! read from the configured file (compared in constant time). A body over the size limit
//! (413), anything that is not Alertmanager's webhook JSON version 4 (400), an alert for an
//! unknown policy, an unknown `vmscaler_*` label or a bad annotation (422) is rejected whole,
//! logged, and changes nothing. Held floors are written atomically to
//! `<state_dir>/alerts.json` before the answer, so they survive a restart.
//!
//! Not here: applying the floor (the engine's `decide_with`), when pools are evaluated (the
//! daemon; a change wakes the loop so the pools concerned are evaluated at once).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, anyhow};
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::post;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use tokio::sync::Notify;
use tracing::{info, warn};
use vmscaler_engine::AlertFloor;
use vmscaler_engine::duration::{after, parse_duration};

use crate::clock::Clock;
use crate::daemon::board::SharedBoard;

/// Default [`AlertsConfig::max_duration`].
pub const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);
/// Default [`AlertsConfig::max_body_bytes`]: Alertmanager's notifications are a few KiB per
/// alert; a group of a few hundred alerts fits.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1 << 20;
/// The label naming the policy whose pool an alert concerns.
pub const POLICY_LABEL: &str = "vmscaler_policy";
/// Largest floor an annotation may ask for (the policy's `max` caps it anyway).
const MAX_CAPACITY: u32 = 10_000;
const FILE_VERSION: u32 = 1;

/// The daemon config's `alerts:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertsConfig {
    /// File holding the bearer token Alertmanager must send (`http_config.authorization`).
    pub bearer_token_file: PathBuf,
    /// Longest a floor holds after the last `firing` notification of its alert.
    pub max_duration: Duration,
    /// Larger request bodies are refused (413) without being read further.
    pub max_body_bytes: usize,
}

impl AlertsConfig {
    pub fn new(bearer_token_file: impl Into<PathBuf>) -> AlertsConfig {
        AlertsConfig {
            bearer_token_file: bearer_token_file.into(),
            max_duration: DEFAULT_MAX_DURATION,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// A floor held for a pool while its alert fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAlert {
    /// The alert's `alertname`.
    pub alert: String,
    /// Alertmanager's fingerprint of the alert's labels: what tells two alerts apart.
    pub fingerprint: String,
    /// The floor it holds (the engine caps it at the policy's `max`).
    pub capacity: u32,
    /// What the alert asked for (`capacity 8`, `boost 50% of 4`).
    pub asked: String,
    /// First `firing` notification received.
    pub since: Timestamp,
    /// Released then unless a later `firing` notification extends it.
    pub expires_at: Timestamp,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct AlertFile {
    version: u32,
    /// policy -> fingerprint -> floor
    policies: BTreeMap<String, BTreeMap<String, HeldAlert>>,
}

/// A rejected request: the status to answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    pub message: String,
}

fn reject(status: StatusCode, message: impl Into<String>) -> Rejection {
    Rejection { status, message: message.into() }
}

/// What an accepted notification changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Accepted {
    /// Alerts now holding a floor (new or refreshed).
    pub held: usize,
    /// Alerts whose floor was released.
    pub released: usize,
    /// Resolved alerts that held nothing.
    pub ignored: usize,
}

/// Alertmanager's webhook payload (version 4); fields not needed here are ignored, as
/// Alertmanager adds fields over time.
#[derive(Debug, Deserialize)]
struct Notification {
    version: String,
    alerts: Vec<AmAlert>,
}

#[derive(Debug, Deserialize)]
struct AmAlert {
    status: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    fingerprint: Option<String>,
}

/// What one alert of a notification means, once checked.
enum Change {
    Hold { policy: String, fingerprint: String, alert: String, ask: Ask, max_duration: Duration },
    Release { policy: String, fingerprint: String },
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Ask {
    Capacity(u32),
    Boost(f64),
}

/// The alerts that hold floors, shared by the webhook handler and the evaluation loop.
pub struct AlertInbox {
    path: PathBuf,
    token: Vec<u8>,
    max_duration: Duration,
    max_body_bytes: usize,
    held: Mutex<BTreeMap<String, BTreeMap<String, HeldAlert>>>,
    /// Policies whose floors changed since the loop last looked.
    dirty: Mutex<BTreeSet<String>>,
    /// Wakes the loop when floors change.
    pub changed: Notify,
}

impl std::fmt::Debug for AlertInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertInbox").field("path", &self.path).finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AlertInbox {
    /// Reads the token file (it must hold one non-empty line) and the held floors from
    /// `<state_dir>/alerts.json`; an unreadable state file is moved aside and reported.
    pub fn open(cfg: &AlertsConfig, state_dir: &Path, now: Timestamp) -> anyhow::Result<AlertInbox> {
        let token = fs::read_to_string(&cfg.bearer_token_file)
            .with_context(|| format!("alerts.bearer_token_file: cannot read {}", cfg.bearer_token_file.display()))?;
        let token = token.trim();
        if token.len() < 16 || token.chars().any(|c| c.is_control() || c == ' ') {
            return Err(anyhow!(
                "alerts.bearer_token_file: {} must hold one token of at least 16 characters without spaces",
                cfg.bearer_token_file.display()
            ));
        }
        fs::create_dir_all(state_dir).with_context(|| format!("state directory {}", state_dir.display()))?;
        let path = state_dir.join("alerts.json");
        let held = match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<AlertFile>(&bytes) {
                Ok(f) if f.version == FILE_VERSION => f.policies,
                other => {
                    let why = match other {
                        Ok(f) => format!("unknown version {}", f.version),
                        Err(e) => e.to_string(),
                    };
                    let aside = path.with_extension(format!("json.corrupt-{}", now.as_second()));
                    let _ = fs::rename(&path, &aside);
                    warn!(file = %path.display(), moved_to = %aside.display(), error = %why, "alert floors unreadable: starting without any");
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(anyhow!("cannot read {}: {e}", path.display())),
        };
        let n: usize = held.values().map(BTreeMap::len).sum();
        if n > 0 {
            info!(floors = n, "alert floors restored");
        }
        Ok(AlertInbox {
            path,
            token: token.as_bytes().to_vec(),
            max_duration: cfg.max_duration,
            max_body_bytes: cfg.max_body_bytes,
            dirty: Mutex::new(held.keys().cloned().collect()),
            held: Mutex::new(held),
            changed: Notify::new(),
        })
    }

    /// Whether `authorization` (the header's value) carries the token. Constant time in the
    /// token's content.
    pub fn authorized(&self, authorization: Option<&str>) -> bool {
        let Some(given) = authorization.and_then(|h| h.strip_prefix("Bearer ")) else { return false };
        bool::from(given.trim().as_bytes().ct_eq(&self.token))
    }

    pub fn max_body_bytes(&self) -> usize {
        self.max_body_bytes
    }

    /// The floors held for `policy` at `now` (expired ones excluded), for `decide_with`.
    pub fn floors(&self, policy: &str, now: Timestamp) -> Vec<AlertFloor> {
        lock(&self.held)
            .get(policy)
            .into_iter()
            .flat_map(BTreeMap::values)
            .filter(|h| h.expires_at > now)
            .map(|h| AlertFloor { alert: h.alert.clone(), capacity: h.capacity })
            .collect()
    }

    /// Every floor held for `policy`, for the board.
    pub fn held(&self, policy: &str) -> Vec<HeldAlert> {
        lock(&self.held).get(policy).into_iter().flat_map(BTreeMap::values).cloned().collect()
    }

    /// Policies whose floors changed since the last call.
    pub fn take_dirty(&self) -> BTreeSet<String> {
        std::mem::take(&mut *lock(&self.dirty))
    }

    /// Releases the floors whose `max_duration` has passed; returns them by policy.
    pub fn expire(&self, now: Timestamp) -> Vec<(String, HeldAlert)> {
        let mut held = lock(&self.held);
        let mut gone = Vec::new();
        for (policy, alerts) in held.iter_mut() {
            let expired: Vec<String> =
                alerts.iter().filter(|(_, h)| h.expires_at <= now).map(|(k, _)| k.clone()).collect();
            for k in expired {
                if let Some(h) = alerts.remove(&k) {
                    gone.push((policy.clone(), h));
                }
            }
        }
        held.retain(|_, a| !a.is_empty());
        if !gone.is_empty() {
            for (policy, h) in &gone {
                warn!(policy = %policy, alert = %h.alert, capacity = h.capacity, since = %h.since, "alert floor released: no firing notification within max_duration (a lost \"resolved\"?)");
            }
            if let Err(e) = self.write(&held) {
                warn!(error = %e, "cannot persist alert floors");
            }
            lock(&self.dirty).extend(gone.iter().map(|(p, _)| p.clone()));
        }
        gone
    }

    /// Checks a whole notification and applies it, or rejects it and changes nothing.
    /// `current` gives a known policy's capacity as last seen (`None`: no such policy).
    pub fn receive(
        &self,
        body: &[u8],
        current: &dyn Fn(&str) -> Option<Option<u32>>,
        now: Timestamp,
    ) -> Result<Accepted, Rejection> {
        let n: Notification = serde_json::from_slice(body)
            .map_err(|e| reject(StatusCode::BAD_REQUEST, format!("not an Alertmanager webhook notification: {e}")))?;
        if n.version != "4" {
            return Err(reject(
                StatusCode::BAD_REQUEST,
                format!("webhook payload version {:?} is not supported (expected \"4\")", n.version),
            ));
        }
        let changes = n
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| self.check(i, a, current))
            .collect::<Result<Vec<Change>, Rejection>>()?;
        let mut held = lock(&self.held);
        let mut next = held.clone();
        let mut out = Accepted::default();
        let mut touched = BTreeSet::new();
        for c in changes {
            match c {
                Change::Hold { policy, fingerprint, alert, ask, max_duration } => {
                    let alerts = next.entry(policy.clone()).or_default();
                    let base = current(&policy).flatten().unwrap_or(0);
                    let asked = match ask {
                        Ask::Capacity(n) => format!("capacity {n}"),
                        Ask::Boost(p) => format!("boost {p}%"),
                    };
                    let expires_at = after(now, max_duration);
                    match alerts.get_mut(&fingerprint) {
                        // A repeat: extend; a boost is not compounded on the capacity it raised.
                        Some(h) if h.asked.starts_with(&asked) => {
                            h.expires_at = expires_at;
                            h.alert = alert;
                        }
                        existing => {
                            let (capacity, asked) = match ask {
                                Ask::Capacity(n) => (n, asked),
                                Ask::Boost(p) => (boosted(base, p), format!("{asked} of {base}")),
                            };
                            let since = existing.map_or(now, |h| h.since);
                            info!(policy = %policy, alert = %alert, capacity, asked = %asked, until = %expires_at, "alert floor held");
                            alerts.insert(
                                fingerprint.clone(),
                                HeldAlert { alert, fingerprint, capacity, asked, since, expires_at },
                            );
                        }
                    }
                    touched.insert(policy);
                    out.held += 1;
                }
                Change::Release { policy, fingerprint } => {
                    match next.get_mut(&policy).and_then(|a| a.remove(&fingerprint)) {
                        Some(h) => {
                            info!(policy = %policy, alert = %h.alert, capacity = h.capacity, "alert resolved: floor released");
                            out.released += 1;
                            touched.insert(policy);
                        }
                        None => out.ignored += 1,
                    }
                }
            }
        }
        next.retain(|_, a| !a.is_empty());
        if next != *held {
            self.write(&next).map_err(|e| {
                reject(StatusCode::SERVICE_UNAVAILABLE, format!("cannot persist the alert floors: {e}"))
            })?;
            *held = next;
        }
        drop(held);
        if !touched.is_empty() {
            lock(&self.dirty).extend(touched);
            self.changed.notify_one();
        }
        Ok(out)
    }

    fn check(&self, i: usize, a: &AmAlert, current: &dyn Fn(&str) -> Option<Option<u32>>) -> Result<Change, Rejection> {
        let unprocessable = |m: String| reject(StatusCode::UNPROCESSABLE_ENTITY, format!("alerts[{i}]: {m}"));
        let name = a.labels.get("alertname").cloned().unwrap_or_else(|| "unnamed".to_owned());
        let policy = a
            .labels
            .get(POLICY_LABEL)
            .ok_or_else(|| unprocessable(format!("alert {name:?} has no {POLICY_LABEL} label")))?;
        if current(policy).is_none() {
            return Err(unprocessable(format!("alert {name:?}: no policy named {policy:?}")));
        }
        if let Some(k) = a.labels.keys().find(|k| k.starts_with("vmscaler_") && k.as_str() != POLICY_LABEL) {
            return Err(unprocessable(format!("alert {name:?}: unknown label {k:?} (the only one is {POLICY_LABEL})")));
        }
        let fingerprint = match a.fingerprint.as_deref().map(str::trim) {
            Some(f) if !f.is_empty() => f.to_owned(),
            // Older senders: the sorted labels identify the alert.
            _ => a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(","),
        };
        match a.status.as_str() {
            "resolved" => Ok(Change::Release { policy: policy.clone(), fingerprint }),
            "firing" => {
                let ask = match (a.annotations.get("capacity"), a.annotations.get("boost")) {
                    (Some(c), None) => match c.trim().parse::<u32>() {
                        Ok(n) if (1..=MAX_CAPACITY).contains(&n) => Ask::Capacity(n),
                        _ => {
                            return Err(unprocessable(format!(
                                "alert {name:?}: annotation capacity {c:?} is not an instance count (1 to {MAX_CAPACITY})"
                            )));
                        }
                    },
                    (None, Some(b)) => match b.trim().trim_end_matches('%').trim().parse::<f64>() {
                        Ok(p) if p.is_finite() && p > 0.0 && p <= 1000.0 => Ask::Boost(p),
                        _ => {
                            return Err(unprocessable(format!(
                                "alert {name:?}: annotation boost {b:?} is not a percentage above 0 and at most 1000%"
                            )));
                        }
                    },
                    (Some(_), Some(_)) => {
                        return Err(unprocessable(format!(
                            "alert {name:?}: give either a capacity or a boost annotation, not both"
                        )));
                    }
                    (None, None) => {
                        return Err(unprocessable(format!(
                            "alert {name:?}: needs a capacity (instances) or boost (percentage) annotation"
                        )));
                    }
                };
                let max_duration = match a.annotations.get("max_duration") {
                    None => self.max_duration,
                    Some(s) => match parse_duration(s.trim()) {
                        Ok(d) if !d.is_zero() => d.min(self.max_duration),
                        _ => {
                            return Err(unprocessable(format!(
                                "alert {name:?}: annotation max_duration {s:?} is not a duration above 0 (like 30m)"
                            )));
                        }
                    },
                };
                Ok(Change::Hold { policy: policy.clone(), fingerprint, alert: name, ask, max_duration })
            }
            other => Err(unprocessable(format!("alert {name:?}: status {other:?} is not \"firing\" or \"resolved\""))),
        }
    }

    /// Writes the held floors atomically: temporary file, fsync, rename, fsync of the directory.
    fn write(&self, held: &BTreeMap<String, BTreeMap<String, HeldAlert>>) -> std::io::Result<()> {
        let file = AlertFile { version: FILE_VERSION, policies: held.clone() };
        let bytes = serde_json::to_vec_pretty(&file).map_err(std::io::Error::other)?;
        let tmp = self.path.with_extension("json.tmp");
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.path)?;
            match self.path.parent() {
                Some(dir) => File::open(dir)?.sync_all(),
                None => Ok(()),
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }
}

/// `base` raised by `percent`, at least one more instance.
fn boosted(base: u32, percent: f64) -> u32 {
    let raised = (f64::from(base) * (1.0 + percent / 100.0)).ceil();
    // Bounded: base <= u32::MAX and percent <= 1000, clamped to the annotation's limit.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let raised = raised.clamp(0.0, f64::from(MAX_CAPACITY)) as u32;
    raised.max(base.saturating_add(1)).min(MAX_CAPACITY)
}

#[derive(Clone)]
struct HookState {
    inbox: Arc<AlertInbox>,
    board: Arc<SharedBoard>,
    clock: Arc<dyn Clock>,
}

/// The `POST /v1/alerts` route.
pub fn router(inbox: Arc<AlertInbox>, board: Arc<SharedBoard>, clock: Arc<dyn Clock>) -> Router {
    Router::new().route("/v1/alerts", post(webhook)).with_state(HookState { inbox, board, clock })
}

fn refuse(r: Rejection) -> Response {
    warn!(status = r.status.as_u16(), reason = %r.message, "alert notification rejected: nothing changed");
    let mut resp = (r.status, format!("{}\n", r.message)).into_response();
    if r.status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, header::HeaderValue::from_static("Bearer"));
    }
    resp
}

async fn webhook(State(s): State<HookState>, headers: HeaderMap, body: Body) -> Response {
    let auth = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    if !s.inbox.authorized(auth) {
        let why = if auth.is_none() { "no bearer token" } else { "wrong bearer token" };
        return refuse(reject(StatusCode::UNAUTHORIZED, why));
    }
    let limit = s.inbox.max_body_bytes();
    let too_large = || reject(StatusCode::PAYLOAD_TOO_LARGE, format!("body over {limit} bytes"));
    let declared = headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return refuse(too_large());
    }
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(e) => {
            let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
            while let Some(err) = src {
                if err.is::<http_body_util::LengthLimitError>() {
                    return refuse(too_large());
                }
                src = err.source();
            }
            return refuse(reject(StatusCode::BAD_REQUEST, format!("cannot read the body: {e}")));
        }
    };
    let pools: BTreeMap<String, Option<u32>> =
        s.board.lock().pools.iter().map(|(n, p)| (n.clone(), p.current)).collect();
    let now = s.clock.now();
    match s.inbox.receive(&bytes, &|p| pools.get(p).copied(), now) {
        Ok(accepted) => {
            let mut b = s.board.lock();
            for (name, p) in b.pools.iter_mut() {
                p.alert_floors = s.inbox.held(name);
            }
            drop(b);
            Json(accepted).into_response()
        }
        Err(r) => refuse(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inbox(tag: &str) -> (AlertInbox, PathBuf) {
        let dir = std::env::temp_dir().join(format!("vmscaler-alerts-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("dir");
        let token = dir.join("token");
        fs::write(&token, "s3cret-token-0123456789\n").expect("token");
        let cfg = AlertsConfig::new(&token);
        (AlertInbox::open(&cfg, &dir, ts(0)).expect("open"), dir)
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).expect("ts")
    }

    fn body(alerts: &str) -> Vec<u8> {
        format!(r#"{{"version":"4","status":"firing","receiver":"vmscaler","groupLabels":{{}},"commonLabels":{{}},"commonAnnotations":{{}},"externalURL":"http://am","groupKey":"{{}}","truncatedAlerts":0,"alerts":[{alerts}]}}"#).into_bytes()
    }

    fn alert(status: &str, labels: &str, annotations: &str, fp: &str) -> String {
        format!(
            r#"{{"status":"{status}","labels":{{"alertname":"QueueBacklog",{labels}}},"annotations":{{{annotations}}},"startsAt":"2027-01-15T08:00:00Z","endsAt":"0001-01-01T00:00:00Z","generatorURL":"","fingerprint":"{fp}"}}"#
        )
    }

    fn known(p: &str) -> Option<Option<u32>> {
        match p {
            "transcode" => Some(Some(4)),
            "web" => Some(None),
            _ => None,
        }
    }

    #[test]
    fn token_is_checked() {
        let (i, dir) = inbox("token");
        assert!(i.authorized(Some("Bearer s3cret-token-0123456789")));
        assert!(!i.authorized(Some("Bearer s3cret-token-012345678")));
        assert!(!i.authorized(Some("Basic s3cret-token-0123456789")));
        assert!(!i.authorized(None));
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn firing_holds_resolved_releases_and_the_file_keeps_it() {
        let (i, dir) = inbox("cycle");
        let fire = alert("firing", r#""vmscaler_policy":"transcode""#, r#""capacity":"9""#, "aa");
        let boost = alert("firing", r#""vmscaler_policy":"transcode","q":"2""#, r#""boost":"50%""#, "bb");
        let r = i.receive(&body(&format!("{fire},{boost}")), &known, ts(0)).expect("accepted");
        assert_eq!(r, Accepted { held: 2, released: 0, ignored: 0 });
        let mut floors = i.floors("transcode", ts(10));
        floors.sort_by_key(|f| f.capacity);
        assert_eq!(floors.iter().map(|f| f.capacity).collect::<Vec<_>>(), [6, 9], "boost 50% of 4 is 6");
        assert_eq!(i.take_dirty(), BTreeSet::from(["transcode".to_owned()]));
        // A repeat notification extends the floor and does not compound the boost.
        let later = |p: &str| known(p).map(|_| Some(6));
        i.receive(&body(&boost), &later, ts(1800)).expect("repeat");
        assert!(i.held("transcode").iter().any(|h| h.fingerprint == "bb" && h.capacity == 6));
        // Restart: the floors are read back.
        let cfg = AlertsConfig::new(dir.join("token"));
        let again = AlertInbox::open(&cfg, &dir, ts(1900)).expect("reopen");
        assert_eq!(again.held("transcode"), i.held("transcode"));
        // Resolved releases; max_duration releases the other one.
        let resolved = alert("resolved", r#""vmscaler_policy":"transcode""#, "", "aa");
        let r = again.receive(&body(&resolved), &known, ts(2000)).expect("resolved");
        assert_eq!(r.released, 1);
        assert!(again.expire(ts(1800 + 3599)).is_empty());
        assert_eq!(again.expire(ts(1800 + 3600)).len(), 1, "an hour after the last firing notification");
        assert!(again.floors("transcode", ts(5400)).is_empty());
        let _ = fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_notifications_are_rejected_whole() {
        let (i, dir) = inbox("bad");
        let good = alert("firing", r#""vmscaler_policy":"transcode""#, r#""capacity":"9""#, "aa");
        let cases = [
            (b"{not json".to_vec(), StatusCode::BAD_REQUEST, "not an Alertmanager webhook notification"),
            (body(&good).replacen_version(), StatusCode::BAD_REQUEST, "version \"3\""),
            (
                body(&format!("{good},{}", alert("firing", r#""vmscaler_policy":"nope""#, r#""capacity":"3""#, "cc"))),
                StatusCode::UNPROCESSABLE_ENTITY,
                "alerts[1]: alert \"QueueBacklog\": no policy named \"nope\"",
            ),
            (
                body(&alert(
                    "firing",
                    r#""vmscaler_policy":"transcode","vmscaler_pool":"x""#,
                    r#""capacity":"3""#,
                    "cc",
                )),
                StatusCode::UNPROCESSABLE_ENTITY,
                "unknown label \"vmscaler_pool\"",
            ),
            (
                body(&alert("firing", r#""team":"x""#, r#""capacity":"3""#, "cc")),
                StatusCode::UNPROCESSABLE_ENTITY,
                "no vmscaler_policy label",
            ),
            (
                body(&alert("firing", r#""vmscaler_policy":"transcode""#, r#""capacity":"lots""#, "cc")),
                StatusCode::UNPROCESSABLE_ENTITY,
                "annotation capacity \"lots\"",
            ),
            (
                body(&alert("firing", r#""vmscaler_policy":"transcode""#, r#""summary":"busy""#, "cc")),
                StatusCode::UNPROCESSABLE_ENTITY,
                "needs a capacity (instances) or boost (percentage) annotation",
            ),
        ];
        for (b, status, msg) in cases {
            let r = i.receive(&b, &known, ts(0)).expect_err("rejected");
            assert_eq!(r.status, status, "{}", r.message);
            assert!(r.message.contains(msg), "{} does not contain {msg}", r.message);
        }
        assert!(i.held("transcode").is_empty(), "nothing changed, not even the valid first alert");
        assert!(!dir.join("alerts.json").exists());
        let _ = fs::remove_dir_all(dir);
    }

    trait Version3 {
        fn replacen_version(self) -> Vec<u8>;
    }

    impl Version3 for Vec<u8> {
        fn replacen_version(self) -> Vec<u8> {
            String::from_utf8(self).expect("utf8").replacen(r#""version":"4""#, r#""version":"3""#, 1).into_bytes()
        }
    }

    #[test]
    fn boost_is_at_least_one_more() {
        assert_eq!(boosted(4, 50.0), 6);
        assert_eq!(boosted(1, 10.0), 2);
        assert_eq!(boosted(0, 50.0), 1);
        assert_eq!(boosted(9_000, 1000.0), MAX_CAPACITY);
    }
}
