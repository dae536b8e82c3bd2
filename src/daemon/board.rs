//! The daemon's live board: what `/healthz`, `/metrics`, `/v1/decisions` and `vmscaler status`
//! show. The evaluation loop writes it after each evaluation; HTTP handlers read a copy.
//!
//! Not here: HTTP routing (see [`crate::http`]) or deciding anything; this is bookkeeping only.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::sync::{Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::lease::{LeaseCounters, LeaseStatus};
use crate::state::DecisionEntry;

/// A pre-warm floor in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrewarmBoard {
    pub rule: String,
    pub capacity: u32,
    pub ramping: bool,
}

/// One pool as last seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PoolBoard {
    pub policy: String,
    /// Policy file the running version came from.
    pub file: String,
    pub dry_run: bool,
    pub current: Option<u32>,
    pub desired: Option<u32>,
    pub score: Option<f64>,
    pub shortfall: u32,
    pub prewarm: Option<PrewarmBoard>,
    pub last_evaluation: Option<Timestamp>,
    pub next_evaluation: Option<Timestamp>,
    /// Evaluations in a row that could not read the fleet or the metrics.
    pub consecutive_failures: u32,
    pub last_error: Option<String>,
    /// Recent decisions, oldest first.
    pub decisions: VecDeque<DecisionEntry>,
    /// With leases (several daemons): who holds this pool's lease. A pool leased by another
    /// daemon is evaluated there, not here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseStatus>,
    /// Members being drained from the pool's load balancer target groups before their stop.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub draining: Vec<DrainBoard>,
    /// Paused by an operator: evaluated and reported, not acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<crate::ops::Pause>,
    /// The next pre-warm floor to start rising, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_floor: Option<NextFloorBoard>,
    /// Why the pool is degraded although it evaluated: a metric missing past `max_age`, no
    /// members, instances left alone, saves failing, a state file just set aside, records
    /// dated in the future (see `daemon::pool_warnings`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// One member on its way out of the load balancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DrainBoard {
    pub id: String,
    /// When it was deregistered.
    pub since: Timestamp,
    /// When it is stopped even if its target groups still show it draining.
    pub deadline: Timestamp,
}

/// Upper bounds (seconds) of the drain duration histogram's buckets.
pub const DRAIN_BUCKETS: [f64; 9] = [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0];

/// How long drains took, from deregistration to the stop.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DrainHistogram {
    /// Cumulative counts per bucket of [`DRAIN_BUCKETS`].
    pub buckets: [u64; DRAIN_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl DrainHistogram {
    pub fn observe(&mut self, secs: f64) {
        for (b, le) in self.buckets.iter_mut().zip(DRAIN_BUCKETS) {
            if secs <= le {
                *b += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

impl Extend<f64> for DrainHistogram {
    fn extend<I: IntoIterator<Item = f64>>(&mut self, iter: I) {
        for s in iter {
            self.observe(s);
        }
    }
}

/// The next pre-warm floor of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextFloorBoard {
    pub rule: String,
    /// When the floor starts rising (`start - lead - ramp`).
    pub at: Timestamp,
}

impl PoolBoard {
    pub fn degraded(&self) -> bool {
        self.consecutive_failures > 0 || !self.warnings.is_empty()
    }

    /// Every reason the pool is degraded: its last error, then its warnings.
    pub fn reasons(&self) -> Vec<String> {
        self.last_error
            .iter()
            .filter(|_| self.consecutive_failures > 0)
            .cloned()
            .chain(self.warnings.iter().cloned())
            .collect()
    }
}

/// Calls to one AWS operation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiOp {
    pub operation: String,
    pub calls: u64,
    pub errors: u64,
    pub throttled: u64,
}

/// Counters for `/metrics`, keyed by their label values.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    /// (policy, "ok" | "error")
    pub evaluations: BTreeMap<(String, &'static str), u64>,
    /// (policy, "up" | "down" | "hold")
    pub decisions: BTreeMap<(String, &'static str), u64>,
    /// (policy, outcome kind)
    pub actions: BTreeMap<(String, String), u64>,
    pub reloads: u64,
    pub reload_failures: u64,
    pub state_errors: u64,
    /// Intents of interrupted runs reconciled with the fleet at start-up.
    pub reconciled: u64,
    /// Drains that ended in a stop, by duration.
    pub drain_seconds: DrainHistogram,
}

/// Everything the board shows.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Board {
    pub version: String,
    pub started_at: Option<Timestamp>,
    pub last_tick: Option<Timestamp>,
    /// Global dry-run: no fleet is changed whatever the policies say.
    pub dry_run: bool,
    pub pools: BTreeMap<String, PoolBoard>,
    /// Policy files that currently fail validation (their last good version, if any, keeps
    /// running), with the first error.
    pub invalid_files: BTreeMap<String, String>,
    pub api: Vec<ApiOp>,
    /// With leases: this daemon's holder name and its lease events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseBoard>,
    #[serde(skip)]
    pub counters: Counters,
}

/// This daemon's part in sharing pools through leases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBoard {
    pub holder: String,
    pub table: String,
    pub counters: LeaseCounters,
}

impl Board {
    pub fn degraded_pools(&self) -> Vec<&str> {
        self.pools.values().filter(|p| p.degraded()).map(|p| p.policy.as_str()).collect()
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render_prometheus(&self) -> String {
        let mut out = String::with_capacity(4096);
        let c = &self.counters;
        header(&mut out, "vmscaler_evaluations_total", "counter", "Pool evaluations by result.");
        for ((p, r), n) in &c.evaluations {
            line(&mut out, "vmscaler_evaluations_total", &[("policy", p), ("result", r)], *n as f64);
        }
        header(&mut out, "vmscaler_decisions_total", "counter", "Decisions by direction (hold: no change).");
        for ((p, d), n) in &c.decisions {
            line(&mut out, "vmscaler_decisions_total", &[("policy", p), ("direction", d)], *n as f64);
        }
        header(&mut out, "vmscaler_actions_total", "counter", "Fleet actions by outcome kind (would_*: dry-run).");
        for ((p, k), n) in &c.actions {
            line(&mut out, "vmscaler_actions_total", &[("policy", p), ("kind", k)], *n as f64);
        }
        header(&mut out, "vmscaler_api_calls_total", "counter", "AWS API calls by operation.");
        for op in &self.api {
            line(&mut out, "vmscaler_api_calls_total", &[("operation", &op.operation)], op.calls as f64);
        }
        header(&mut out, "vmscaler_api_errors_total", "counter", "Failed AWS API calls by operation.");
        for op in &self.api {
            line(&mut out, "vmscaler_api_errors_total", &[("operation", &op.operation)], op.errors as f64);
        }
        header(&mut out, "vmscaler_api_throttled_total", "counter", "Throttled AWS API calls by operation.");
        for op in &self.api {
            line(&mut out, "vmscaler_api_throttled_total", &[("operation", &op.operation)], op.throttled as f64);
        }
        let gauges: [(&str, &str, Gauge); 6] = [
            ("vmscaler_pool_score", "Blended score of the last evaluation (1 = on target).", |p| p.score),
            ("vmscaler_pool_current_capacity", "Capacity seen at the last evaluation.", |p| p.current.map(f64::from)),
            ("vmscaler_pool_desired_capacity", "Capacity decided at the last evaluation.", |p| {
                p.desired.map(f64::from)
            }),
            ("vmscaler_pool_shortfall", "Instances wanted but not available in the warm pool.", |p| {
                p.desired.map(|_| f64::from(p.shortfall))
            }),
            ("vmscaler_pool_consecutive_failures", "Evaluations in a row that failed.", |p| {
                Some(f64::from(p.consecutive_failures))
            }),
            ("vmscaler_pool_dry_run", "1 when the pool runs in dry-run.", |p| Some(f64::from(u8::from(p.dry_run)))),
        ];
        for (name, help, get) in gauges {
            header(&mut out, name, "gauge", help);
            for p in self.pools.values() {
                if let Some(v) = get(p) {
                    line(&mut out, name, &[("policy", &p.policy)], v);
                }
            }
        }
        header(
            &mut out,
            "vmscaler_pool_draining",
            "gauge",
            "Members being drained from their target groups before a stop.",
        );
        for p in self.pools.values() {
            line(&mut out, "vmscaler_pool_draining", &[("policy", &p.policy)], p.draining.len() as f64);
        }
        header(
            &mut out,
            "vmscaler_drain_duration_seconds",
            "histogram",
            "From deregistration to the stop, for drains that ended in a stop.",
        );
        let h = &c.drain_seconds;
        for (le, n) in DRAIN_BUCKETS.iter().zip(h.buckets) {
            line(&mut out, "vmscaler_drain_duration_seconds_bucket", &[("le", &le.to_string())], n as f64);
        }
        line(&mut out, "vmscaler_drain_duration_seconds_bucket", &[("le", "+Inf")], h.count as f64);
        line(&mut out, "vmscaler_drain_duration_seconds_sum", &[], h.sum);
        line(&mut out, "vmscaler_drain_duration_seconds_count", &[], h.count as f64);
        header(&mut out, "vmscaler_prewarm_active", "gauge", "Capacity floor of the pre-warm rule in force, by rule.");
        for p in self.pools.values() {
            if let Some(pw) = &p.prewarm {
                line(
                    &mut out,
                    "vmscaler_prewarm_active",
                    &[("policy", &p.policy), ("rule", &pw.rule)],
                    f64::from(pw.capacity),
                );
            }
        }
        header(
            &mut out,
            "vmscaler_pool_paused",
            "gauge",
            "1 when an operator paused the pool (evaluated, not acted on).",
        );
        for p in self.pools.values() {
            line(&mut out, "vmscaler_pool_paused", &[("policy", &p.policy)], f64::from(u8::from(p.paused.is_some())));
        }
        header(
            &mut out,
            "vmscaler_prewarm_next_start_timestamp_seconds",
            "gauge",
            "When the next pre-warm floor starts rising (Unix time), by rule.",
        );
        for p in self.pools.values() {
            if let Some(n) = &p.next_floor {
                let labels = [("policy", p.policy.as_str()), ("rule", n.rule.as_str())];
                line(&mut out, "vmscaler_prewarm_next_start_timestamp_seconds", &labels, n.at.as_second() as f64);
            }
        }
        header(&mut out, "vmscaler_policies_loaded", "gauge", "Policies being evaluated.");
        line(&mut out, "vmscaler_policies_loaded", &[], self.pools.len() as f64);
        header(&mut out, "vmscaler_policy_files_invalid", "gauge", "Policy files failing validation right now.");
        line(&mut out, "vmscaler_policy_files_invalid", &[], self.invalid_files.len() as f64);
        header(&mut out, "vmscaler_policy_reloads_total", "counter", "Policy directory reloads.");
        line(&mut out, "vmscaler_policy_reloads_total", &[], c.reloads as f64);
        header(&mut out, "vmscaler_policy_reload_failures_total", "counter", "Policy files rejected on reload.");
        line(&mut out, "vmscaler_policy_reload_failures_total", &[], c.reload_failures as f64);
        header(&mut out, "vmscaler_state_errors_total", "counter", "State files that could not be read or written.");
        line(&mut out, "vmscaler_state_errors_total", &[], c.state_errors as f64);
        header(
            &mut out,
            "vmscaler_intents_reconciled_total",
            "counter",
            "Decisions interrupted while acting (a crash) and reconciled with the fleet at start-up.",
        );
        line(&mut out, "vmscaler_intents_reconciled_total", &[], c.reconciled as f64);
        if let Some(l) = &self.lease {
            header(
                &mut out,
                "vmscaler_lease_held",
                "gauge",
                "1 when this daemon holds the pool's lease, 0 when another does.",
            );
            for p in self.pools.values() {
                if let Some(s) = &p.lease {
                    line(&mut out, "vmscaler_lease_held", &[("policy", &p.policy)], f64::from(u8::from(s.mine)));
                }
            }
            let c = &l.counters;
            header(
                &mut out,
                "vmscaler_lease_events_total",
                "counter",
                "Lease events by kind (fenced_off: a mutating call not made).",
            );
            for (kind, n) in [
                ("taken", c.taken),
                ("renewed", c.renewed),
                ("lost", c.lost),
                ("released", c.released),
                ("fence_passed", c.fence_passed),
                ("fenced_off", c.fenced_off),
                ("error", c.errors),
            ] {
                line(&mut out, "vmscaler_lease_events_total", &[("kind", kind)], n as f64);
            }
        }
        if let Some(t) = self.last_tick {
            header(&mut out, "vmscaler_last_tick_timestamp_seconds", "gauge", "When the loop last ran.");
            line(&mut out, "vmscaler_last_tick_timestamp_seconds", &[], t.as_millisecond() as f64 / 1000.0);
        }
        out
    }
}

/// Reads one per-pool gauge; `None` leaves the pool out.
type Gauge = fn(&PoolBoard) -> Option<f64>;

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn line(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"");
            for ch in v.chars() {
                match ch {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    if value.is_nan() {
        out.push_str(" NaN\n");
    } else {
        let _ = writeln!(out, " {value}");
    }
}

/// The board behind a lock, shared by the loop and the HTTP handlers.
#[derive(Debug, Default)]
pub struct SharedBoard(Mutex<Board>, std::sync::OnceLock<std::sync::Arc<crate::ops::Ops>>);

impl SharedBoard {
    pub fn new(board: Board) -> SharedBoard {
        SharedBoard(Mutex::new(board), std::sync::OnceLock::new())
    }

    /// Pauses and the activity log, for the HTTP routes that serve them (set once at start).
    pub fn set_ops(&self, ops: std::sync::Arc<crate::ops::Ops>) {
        let _ = self.1.set(ops);
    }

    pub fn ops(&self) -> Option<std::sync::Arc<crate::ops::Ops>> {
        self.1.get().cloned()
    }

    /// Locks the board; a panic elsewhere while holding it does not make it unreadable.
    pub fn lock(&self) -> MutexGuard<'_, Board> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn snapshot(&self) -> Board {
        self.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_text_escapes_and_lists_pools() {
        let mut b = Board::default();
        b.pools.insert(
            "web".into(),
            PoolBoard {
                policy: "web".into(),
                current: Some(3),
                desired: Some(5),
                score: Some(1.5),
                prewarm: Some(PrewarmBoard { rule: "morning \"rush\"".into(), capacity: 4, ramping: false }),
                ..PoolBoard::default()
            },
        );
        b.counters.evaluations.insert(("web".into(), "ok"), 2);
        b.counters.actions.insert(("web".into(), "started".into()), 2);
        b.api.push(ApiOp { operation: "GetMetricData".into(), calls: 4, errors: 1, throttled: 1 });
        let text = b.render_prometheus();
        assert!(text.contains("vmscaler_evaluations_total{policy=\"web\",result=\"ok\"} 2\n"), "{text}");
        assert!(text.contains("vmscaler_pool_desired_capacity{policy=\"web\"} 5\n"));
        assert!(text.contains("vmscaler_pool_score{policy=\"web\"} 1.5\n"));
        assert!(text.contains("vmscaler_prewarm_active{policy=\"web\",rule=\"morning \\\"rush\\\"\"} 4\n"));
        assert!(text.contains("vmscaler_api_errors_total{operation=\"GetMetricData\"} 1\n"));
        assert!(text.contains("vmscaler_actions_total{policy=\"web\",kind=\"started\"} 2\n"));
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let v = l.rsplit(' ').next().expect("value");
            assert!(v.parse::<f64>().is_ok(), "bad sample line {l:?}");
        }
    }
}
