//! What an operator does to a running daemon, and what it keeps for them: pauses and the
//! activity log, with their HTTP endpoints.
//!
//! - `GET /v1/history[?policy=P][&since=RFC3339|2h][&limit=N]`: the activity log, oldest first.
//! - `POST /v1/pools/{policy}/pause` with `{"until": RFC3339?, "for": "2h"?, "reason": "..."}`
//!   and `POST /v1/pools/{policy}/resume`: a paused pool is still evaluated and reported, but
//!   not acted on (no start, stop or SetDesiredCapacity, dry-run checks included). Pauses are
//!   kept in `<state_dir>/pauses.json` (written atomically), so they survive restarts; one
//!   with `until` ends by itself.
//!
//! The mutating endpoints need `Authorization: Bearer <token>` when a token is set
//! (`VMSCALER_API_TOKEN` in the daemon's environment), and are refused outright when the daemon
//! listens beyond loopback without one: anyone who can reach the port could stop autoscaling.
//!
//! Not here: what a pause does to an evaluation (the daemon skips acting), the figures (board).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::Router;
use axum::extract::{Path as UrlPath, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use crate::activity::{ActivityLog, Event};
use crate::clock::Clock;
use crate::daemon::board::SharedBoard;

/// The environment variable holding the API token for pause and resume.
pub const TOKEN_ENV: &str = "VMSCALER_API_TOKEN";

/// One pool's pause.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub since: Timestamp,
    /// Resumes by itself at this instant; `None`: until `vmscaler resume`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Timestamp>,
    #[serde(default)]
    pub reason: String,
}

impl Pause {
    pub fn active_at(&self, now: Timestamp) -> bool {
        self.until.is_none_or(|u| now < u)
    }

    /// `paused since ... until ...: reason`.
    pub fn describe(&self) -> String {
        let until = self.until.map(|u| format!(" until {u}")).unwrap_or_default();
        let reason = if self.reason.is_empty() { String::new() } else { format!(": {}", self.reason) };
        format!("paused since {}{until}{reason}", self.since)
    }
}

/// Pauses, the activity log and the API's access rule, shared by the loop and the HTTP server.
#[derive(Debug)]
pub struct Ops {
    pub activity: ActivityLog,
    pauses: Mutex<BTreeMap<String, Pause>>,
    pauses_file: PathBuf,
    /// `Some`: mutating endpoints need this bearer token.
    token: Option<String>,
    /// No token and a listen address beyond loopback: mutating endpoints are refused.
    refuse_mutations: bool,
}

impl Ops {
    /// Opens the state directory's pauses and activity log. `listen_loopback`: whether the
    /// HTTP API is reachable only from this host; `token`: the bearer token, if any.
    pub fn open(state_dir: &Path, listen_loopback: bool, token: Option<String>) -> Ops {
        let pauses_file = state_dir.join("pauses.json");
        let pauses = match fs::read(&pauses_file) {
            Ok(b) => serde_json::from_slice(&b).unwrap_or_else(|e| {
                error!(file = %pauses_file.display(), error = %e, "pauses file unreadable: no pool is paused");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        let token = token.filter(|t| !t.trim().is_empty());
        Ops {
            activity: ActivityLog::open(state_dir),
            pauses: Mutex::new(pauses),
            pauses_file,
            refuse_mutations: token.is_none() && !listen_loopback,
            token,
        }
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Pause>> {
        self.pauses.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The pause in force for `policy` at `now`. One whose `until` has passed is ended here
    /// (and logged), so it ends on the daemon's clock even if nobody resumes it.
    pub fn pause_of(&self, policy: &str, now: Timestamp) -> Option<Pause> {
        let mut map = self.lock();
        let p = map.get(policy)?.clone();
        if p.active_at(now) {
            return Some(p);
        }
        map.remove(policy);
        let snapshot = map.clone();
        drop(map);
        let _ = self.persist(&snapshot); // already logged; the pause has ended in memory either way
        info!(policy = %policy, "pause ended (its --until passed): acting again");
        self.activity.append(&Event::new(now, Some(policy), "resumed", format!("pause ended ({})", p.describe())));
        None
    }

    pub fn pauses(&self) -> BTreeMap<String, Pause> {
        self.lock().clone()
    }

    pub fn pause(&self, policy: &str, pause: Pause) -> Result<(), String> {
        let snapshot = {
            let mut map = self.lock();
            map.insert(policy.to_owned(), pause.clone());
            map.clone()
        };
        self.persist(&snapshot)?;
        info!(policy = %policy, until = ?pause.until, reason = %pause.reason, "pool paused: evaluated, not acted on");
        self.activity.append(&Event::new(pause.since, Some(policy), "paused", pause.describe()));
        Ok(())
    }

    /// Ends `policy`'s pause; `Ok(false)` when it was not paused.
    pub fn resume(&self, policy: &str, now: Timestamp) -> Result<bool, String> {
        let (was, snapshot) = {
            let mut map = self.lock();
            let was = map.remove(policy);
            (was, map.clone())
        };
        let Some(was) = was else { return Ok(false) };
        self.persist(&snapshot)?;
        info!(policy = %policy, "pool resumed");
        self.activity.append(&Event::new(now, Some(policy), "resumed", format!("resumed ({})", was.describe())));
        Ok(true)
    }

    /// Writes the pauses atomically (temporary file, fsync, rename, fsync dir).
    fn persist(&self, map: &BTreeMap<String, Pause>) -> Result<(), String> {
        let tmp = self.pauses_file.with_extension("json.tmp");
        let write = || -> std::io::Result<()> {
            if let Some(dir) = self.pauses_file.parent() {
                fs::create_dir_all(dir)?;
            }
            let bytes = serde_json::to_vec_pretty(map).map_err(std::io::Error::other)?;
            let mut f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            drop(f);
            fs::rename(&tmp, &self.pauses_file)?;
            match self.pauses_file.parent() {
                Some(dir) => File::open(dir)?.sync_all(),
                None => Ok(()),
            }
        };
        write().map_err(|e| {
            error!(file = %self.pauses_file.display(), error = %e, "cannot persist pauses");
            format!("cannot persist {}: {e}", self.pauses_file.display())
        })
    }

    fn authorize(&self, headers: &HeaderMap) -> Result<(), (StatusCode, String)> {
        if self.refuse_mutations {
            return Err((
                StatusCode::FORBIDDEN,
                format!(
                    "pause and resume are refused: the API listens beyond loopback without a token (set {TOKEN_ENV} \
                     in the daemon's environment)\n"
                ),
            ));
        }
        let Some(token) = &self.token else { return Ok(()) };
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            Ok(())
        } else {
            Err((StatusCode::UNAUTHORIZED, format!("a bearer token is required (the daemon's {TOKEN_ENV})\n")))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Clone)]
struct OpsState {
    ops: Arc<Ops>,
    board: Arc<SharedBoard>,
    clock: Arc<dyn Clock>,
}

/// `GET /v1/history` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HistoryView {
    pub now: Timestamp,
    pub events: Vec<Event>,
}

/// `POST .../pause` body.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PauseRequest {
    #[serde(default)]
    pub until: Option<Timestamp>,
    /// A duration from the daemon's now (`2h`), instead of `until`.
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub reason: String,
}

/// The routes, merged into the daemon's router.
pub fn routes(ops: Arc<Ops>, board: Arc<SharedBoard>, clock: Arc<dyn Clock>) -> Router {
    Router::new()
        .route("/v1/history", get(history))
        .route("/v1/pools/{policy}/pause", post(pause))
        .route("/v1/pools/{policy}/resume", post(resume))
        .with_state(OpsState { ops, board, clock })
}

/// `since` as an instant or a duration back from `now` (`2h`, `14d`).
pub fn parse_since(s: &str, now: Timestamp) -> Result<Timestamp, String> {
    if let Ok(t) = s.parse::<Timestamp>() {
        return Ok(t);
    }
    let d = vmscaler_engine::duration::parse_duration(s)
        .map_err(|e| format!("since {s:?} is neither an RFC 3339 instant nor a duration: {e}"))?;
    Ok(vmscaler_engine::duration::before(now, d))
}

async fn history(State(s): State<OpsState>, RawQuery(raw): RawQuery) -> Response {
    let now = s.clock.now();
    let (mut policy, mut since, mut limit) = (None, None, None);
    for pair in raw.as_deref().unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v.replace("%3A", ":").replace("%3a", ":").replace("%2B", "+").replace("%2b", "+");
        match k {
            "policy" => policy = Some(v),
            "since" => match parse_since(&v, now) {
                Ok(t) => since = Some(t),
                Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
            },
            "limit" => match v.parse::<usize>() {
                Ok(n) => limit = Some(n),
                Err(_) => return (StatusCode::BAD_REQUEST, format!("limit {v:?} is not a count\n")).into_response(),
            },
            _ => {
                return (StatusCode::BAD_REQUEST, format!("unknown parameter {k:?} (expected policy, since, limit)\n"))
                    .into_response();
            }
        }
    }
    let ops = Arc::clone(&s.ops);
    let read = tokio::task::spawn_blocking(move || ops.activity.read(policy.as_deref(), since)).await;
    let mut events = read.unwrap_or_default();
    if let Some(n) = limit {
        let skip = events.len().saturating_sub(n);
        events.drain(..skip);
    }
    Json(HistoryView { now, events }).into_response()
}

async fn pause(
    State(s): State<OpsState>,
    UrlPath(policy): UrlPath<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(r) = s.ops.authorize(&headers) {
        return r.into_response();
    }
    if !s.board.lock().pools.contains_key(&policy) {
        return (StatusCode::NOT_FOUND, format!("no policy named {policy:?}\n")).into_response();
    }
    let req: PauseRequest = if body.is_empty() {
        PauseRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => return (StatusCode::BAD_REQUEST, format!("bad pause request: {e}\n")).into_response(),
        }
    };
    let now = s.clock.now();
    let until = match (&req.until, &req.for_) {
        (Some(_), Some(_)) => {
            return (StatusCode::BAD_REQUEST, "give either until or for, not both\n").into_response();
        }
        (Some(t), None) => Some(*t),
        (None, Some(d)) => match vmscaler_engine::duration::parse_duration(d) {
            Ok(d) => Some(crate::clock::later(now, d)),
            Err(e) => return (StatusCode::BAD_REQUEST, format!("for {d:?}: {e}\n")).into_response(),
        },
        (None, None) => None,
    };
    if until.is_some_and(|u| u <= now) {
        return (StatusCode::BAD_REQUEST, format!("until {} is not after now ({now})\n", until.unwrap_or(now)))
            .into_response();
    }
    let p = Pause { since: now, until, reason: req.reason.trim().to_owned() };
    match s.ops.pause(&policy, p.clone()) {
        Ok(()) => {
            if let Some(pb) = s.board.lock().pools.get_mut(&policy) {
                pb.paused = Some(p.clone());
            }
            Json(p).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn resume(State(s): State<OpsState>, UrlPath(policy): UrlPath<String>, headers: HeaderMap) -> Response {
    if let Err(r) = s.ops.authorize(&headers) {
        return r.into_response();
    }
    if !s.board.lock().pools.contains_key(&policy) {
        return (StatusCode::NOT_FOUND, format!("no policy named {policy:?}\n")).into_response();
    }
    match s.ops.resume(&policy, s.clock.now()) {
        Ok(was) => {
            if let Some(pb) = s.board.lock().pools.get_mut(&policy) {
                pb.paused = None;
            }
            Json(serde_json::json!({ "policy": policy, "was_paused": was })).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}
