//! The daemon's HTTP endpoints (loopback by default):
//! - `GET /healthz`: JSON; `status` is `ok`, or `degraded` when a policy file is invalid or a
//!   pool is degraded, with each pool's reasons in `reasons`: its last evaluation could not read
//!   its fleet or metrics or an action failed, a metric had no datapoint within `max_age`, the
//!   pool has no members (a wrong region, endpoint or tag), instances with its tag are left
//!   alone (an Auto Scaling group's, or claimed by another pool too), its state cannot be saved,
//!   its state file was just set aside, or records dated in the future were discarded (the last
//!   two for one history window). Still HTTP 200: the daemon runs;
//! - `GET /metrics`: Prometheus text format;
//! - `GET /v1/decisions[?policy=NAME][&limit=N]`: every pool's last figures and recent decisions
//!   with their reasons, JSON ([`DecisionsView`]); `vmscaler status` reads this.
//! - `GET /v1/forecast[?policy=NAME]`: each `predictive:` pool's forecast (state, floor, error,
//!   the next 48 hours' floor, the last 48 hours' demand), JSON ([`ForecastResponse`]);
//!   `vmscaler forecast` reads this.
//!
//! Read-only: nothing here changes the daemon, so no endpoint needs authentication beyond the
//! listen address.
//!
//! HTTP/1.1 only (hyper's HTTP/1 connection builder, whatever features other crates turn on),
//! and bounded so no client can starve the daemon: at most [`MAX_CONNECTIONS`] at once (more
//! are closed on accept, well below the unit's `LimitNOFILE`), [`HEADER_READ_TIMEOUT`] to send
//! a request's headers, and [`CONNECTION_DEADLINE`] for a whole connection (requests included).
//!
//! The one exception to read-only, `POST /v1/alerts` (Alertmanager's webhook, off unless
//! configured, bearer token required), lives in [`crate::alerts`] and is merged in by the
//! loop. Not here: the figures themselves (see [`crate::daemon::board`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::daemon::board::{PoolBoard, SharedBoard};

#[derive(Clone)]
struct AppState {
    board: Arc<SharedBoard>,
    clock: Arc<dyn Clock>,
}

/// `/healthz` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Health {
    pub status: String,
    pub version: String,
    /// The daemon's clock (runs faster than the wall clock in the demo).
    pub now: Timestamp,
    pub started_at: Option<Timestamp>,
    pub last_tick: Option<Timestamp>,
    pub pools: usize,
    pub degraded_pools: Vec<String>,
    /// Why each degraded pool is degraded.
    #[serde(default)]
    pub reasons: BTreeMap<String, Vec<String>>,
    pub invalid_files: BTreeMap<String, String>,
}

/// `/v1/decisions` body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecisionsView {
    pub version: String,
    pub now: Timestamp,
    pub started_at: Option<Timestamp>,
    pub last_tick: Option<Timestamp>,
    pub dry_run: bool,
    pub invalid_files: BTreeMap<String, String>,
    pub pools: Vec<PoolBoard>,
}

#[derive(Debug, Default, PartialEq)]
struct DecisionsQuery {
    policy: Option<String>,
    limit: Option<usize>,
}

/// Decodes `%XX` and `+` of a query component; `None` when it is not valid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

impl DecisionsQuery {
    fn parse(q: Option<&str>) -> Result<DecisionsQuery, String> {
        let mut out = DecisionsQuery::default();
        for pair in q.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let v = percent_decode(v).ok_or_else(|| format!("bad encoding in {k}"))?;
            match k {
                "policy" => out.policy = Some(v),
                "limit" => out.limit = Some(v.parse().map_err(|_| format!("limit {v:?} is not a count"))?),
                _ => return Err(format!("unknown parameter {k:?} (expected policy, limit)")),
            }
        }
        Ok(out)
    }
}

/// The router, for tests and for [`serve`].
pub fn router(board: Arc<SharedBoard>, clock: Arc<dyn Clock>) -> Router {
    // Pause, resume and the activity log (see `crate::ops`), when the daemon has them.
    let ops = board.ops().map(|o| crate::ops::routes(o, Arc::clone(&board), Arc::clone(&clock)));
    let r = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/decisions", get(decisions))
        .route("/v1/forecast", get(forecast))
        .with_state(AppState { board, clock });
    match ops {
        Some(o) => r.merge(o),
        None => r,
    }
}

/// Most connections served at once; more are closed as soon as they are accepted.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest a client may take to send a request's headers.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest one connection may stay open, however busy.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(30);

/// Serves until `stop` turns true. Connections still open then are left to their deadline.
pub async fn serve(
    listener: TcpListener,
    board: Arc<SharedBoard>,
    clock: Arc<dyn Clock>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    serve_app(listener, router(board, clock), stop).await
}

/// Serves `app` (the [`router`], with the Alertmanager webhook merged in when configured: see
/// [`crate::alerts::router`]) until `stop` turns true, bounded as the module says.
pub async fn serve_app(listener: TcpListener, app: Router, mut stop: watch::Receiver<bool>) -> std::io::Result<()> {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return Ok(()),
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                // Out of descriptors, or an aborted connection: wait a little, keep serving.
                tracing::debug!(error = %e, "HTTP accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!(limit = MAX_CONNECTIONS, "HTTP connection limit reached: connection closed");
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
            drop(slot);
        });
    }
}

async fn healthz(State(s): State<AppState>) -> Json<Health> {
    let b = s.board.lock();
    let degraded: Vec<String> = b.degraded_pools().into_iter().map(str::to_owned).collect();
    let reasons = b.pools.values().filter(|p| p.degraded()).map(|p| (p.policy.clone(), p.reasons())).collect();
    let status = if degraded.is_empty() && b.invalid_files.is_empty() { "ok" } else { "degraded" };
    Json(Health {
        status: status.to_owned(),
        version: b.version.clone(),
        now: s.clock.now(),
        started_at: b.started_at,
        last_tick: b.last_tick,
        pools: b.pools.len(),
        degraded_pools: degraded,
        reasons,
        invalid_files: b.invalid_files.clone(),
    })
}

async fn metrics(State(s): State<AppState>) -> Response {
    let text = s.board.render_prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn decisions(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = match DecisionsQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let b = s.board.lock();
    let limit = q.limit.unwrap_or(20);
    let pools: Vec<PoolBoard> = b
        .pools
        .values()
        .filter(|p| q.policy.as_deref().is_none_or(|n| n == p.policy))
        .map(|p| {
            let mut p = p.clone();
            let skip = p.decisions.len().saturating_sub(limit);
            p.decisions.drain(..skip);
            p
        })
        .collect();
    if let Some(name) = q.policy.as_ref().filter(|_| pools.is_empty()) {
        return (StatusCode::NOT_FOUND, format!("no policy named {name:?}\n")).into_response();
    }
    Json(DecisionsView {
        version: b.version.clone(),
        now: s.clock.now(),
        started_at: b.started_at,
        last_tick: b.last_tick,
        dry_run: b.dry_run,
        invalid_files: b.invalid_files.clone(),
        pools,
    })
    .into_response()
}

/// `/v1/forecast` body: the pools with a `predictive:` block, by policy name.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForecastResponse {
    pub now: Timestamp,
    pub pools: crate::daemon::forecast::ForecastView,
}

async fn forecast(State(s): State<AppState>, RawQuery(raw): RawQuery) -> Response {
    let q = match DecisionsQuery::parse(raw.as_deref()) {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let b = s.board.lock();
    let pools: crate::daemon::forecast::ForecastView = b
        .pools
        .values()
        .filter(|p| q.policy.as_deref().is_none_or(|n| n == p.policy))
        .filter_map(|p| p.forecast.clone().map(|f| (p.policy.clone(), f)))
        .collect();
    if let Some(name) = q.policy.as_ref().filter(|_| pools.is_empty()) {
        let why = if b.pools.contains_key(name) {
            "has no forecast (no `predictive:` block, or not evaluated yet)"
        } else {
            "is not loaded"
        };
        return (StatusCode::NOT_FOUND, format!("policy {name:?} {why}\n")).into_response();
    }
    Json(ForecastResponse { now: s.clock.now(), pools }).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        assert_eq!(DecisionsQuery::parse(None), Ok(DecisionsQuery::default()));
        let q = DecisionsQuery::parse(Some("policy=web%20pool+x&limit=3")).expect("ok");
        assert_eq!(q, DecisionsQuery { policy: Some("web pool x".into()), limit: Some(3) });
        assert!(DecisionsQuery::parse(Some("limit=x")).is_err());
        assert!(DecisionsQuery::parse(Some("colour=red")).is_err());
        assert!(DecisionsQuery::parse(Some("policy=%4")).is_ok_and(|q| q.policy.as_deref() == Some("%4")));
    }
}
