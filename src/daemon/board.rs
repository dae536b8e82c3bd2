//! The daemon's live board: what `/healthz`, `/metrics`, `/v1/decisions` and `vmscaler status`
//! show. The evaluation loop writes it after each evaluation; HTTP handlers read a copy.
//!
//! Not here: HTTP routing (see [`crate::http`]) or deciding anything; this is bookkeeping only.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use jiff::Timestamp;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet, prometheus_text};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
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
    /// Floors held by firing Alertmanager alerts (the highest one applies, capped at `max`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alert_floors: Vec<crate::alerts::HeldAlert>,
    /// The forecast (`predictive:`): its state, floor, error and the next hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forecast: Option<super::forecast::ForecastBoard>,
    /// Each metric as last read: value, ratio, capacity wanted, when sampled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<MetricBoard>,
    /// Seconds the last evaluation took (fleet, metrics, decision, actions, state).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_evaluation_seconds: Option<f64>,
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

impl DrainHistogram {
    /// Writes the histogram; the encoder wants per-bucket counts, this keeps cumulative ones.
    fn encode(&self, enc: &mut MetricEncoder<'_>) -> fmt::Result {
        let mut below = 0;
        let mut buckets: Vec<(f64, u64)> = Vec::with_capacity(DRAIN_BUCKETS.len() + 1);
        for (le, cumulative) in DRAIN_BUCKETS.iter().zip(self.buckets) {
            buckets.push((*le, cumulative - below));
            below = cumulative;
        }
        buckets.push((f64::INFINITY, self.count - below));
        enc.encode_histogram::<NoLabelSet>(self.sum, self.count, &buckets, None)
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

/// One metric's last reading.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MetricBoard {
    pub metric: String,
    pub value: Option<f64>,
    pub ratio: Option<f64>,
    /// Capacity this metric alone asked for.
    pub wanted_capacity: Option<f64>,
    pub sampled_at: Option<Timestamp>,
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
    /// Evaluation durations by policy.
    pub evaluation_seconds: BTreeMap<String, Histogram>,
    /// Tick durations.
    pub tick_seconds: Histogram,
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

    /// Prometheus text exposition format, version 0.0.4 (through `prometheus-client`).
    pub fn render_prometheus(&self) -> String {
        Arc::new(SharedBoard::new(self.clone())).render_prometheus()
    }

    /// Every figure as metric families, for `prometheus-client`'s encoder. Names follow the
    /// Prometheus naming guide: counters end in `_total` (the encoder adds it), units are base
    /// units spelled out (`_seconds`), a pool's figures carry a `policy` label.
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let c = &self.counters;
        counter_family(
            &mut enc,
            "vmscaler_evaluations",
            "Pool evaluations by result.",
            c.evaluations.iter().map(|((p, r), n)| (vec![("policy", p.as_str()), ("result", *r)], *n)),
        )?;
        counter_family(
            &mut enc,
            "vmscaler_decisions",
            "Decisions by direction (hold: no change).",
            c.decisions.iter().map(|((p, d), n)| (vec![("policy", p.as_str()), ("direction", *d)], *n)),
        )?;
        counter_family(
            &mut enc,
            "vmscaler_actions",
            "Fleet actions by outcome kind (would_*: dry-run).",
            c.actions.iter().map(|((p, k), n)| (vec![("policy", p.as_str()), ("kind", k.as_str())], *n)),
        )?;
        counter_family(
            &mut enc,
            "vmscaler_api_calls",
            "AWS API calls by operation.",
            self.api.iter().map(|o| (vec![("operation", o.operation.as_str())], o.calls)),
        )?;
        counter_family(
            &mut enc,
            "vmscaler_api_errors",
            "Failed AWS API calls by operation.",
            self.api.iter().map(|o| (vec![("operation", o.operation.as_str())], o.errors)),
        )?;
        counter_family(
            &mut enc,
            "vmscaler_api_throttled",
            "Throttled AWS API calls by operation.",
            self.api.iter().map(|o| (vec![("operation", o.operation.as_str())], o.throttled)),
        )?;
        let gauges: [(&str, &str, PoolGauge); 6] = [
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
            gauge_family(
                &mut enc,
                name,
                help,
                self.pools.values().filter_map(|p| get(p).map(|v| (vec![("policy", p.policy.as_str())], v))),
            )?;
        }
        gauge_family(
            &mut enc,
            "vmscaler_prewarm_active",
            "Capacity floor of the pre-warm rule in force, by rule.",
            self.pools.values().filter_map(|p| {
                p.prewarm
                    .as_ref()
                    .map(|w| (vec![("policy", p.policy.as_str()), ("rule", w.rule.as_str())], f64::from(w.capacity)))
            }),
        )?;
        gauge_family(
            &mut enc,
            "vmscaler_alert_floor_capacity",
            "Capacity floor held by a firing Alertmanager alert, by alert (capped at the policy's max when applied).",
            self.pools.values().flat_map(|p| {
                p.alert_floors.iter().map(|a| {
                    (
                        vec![
                            ("policy", p.policy.as_str()),
                            ("alert", a.alert.as_str()),
                            ("fingerprint", a.fingerprint.as_str()),
                        ],
                        f64::from(a.capacity),
                    )
                })
            }),
        )?;
        let forecast_gauges: [(&str, &str, ForecastGauge); 5] = [
            (
                "vmscaler_forecast_floor_capacity",
                "Capacity floor the forecast set at the last evaluation (capped at max), applied or not.",
                |f| f.floor.map(f64::from),
            ),
            ("vmscaler_forecast_applied", "1 when the forecast floor raised the last decision.", |f| {
                Some(f64::from(u8::from(f.applied)))
            }),
            (
                "vmscaler_forecast_demand_capacity",
                "Median forecast demand (capacity units) for the current hour.",
                |f| f.next.first().map(|h| h.forecast),
            ),
            (
                "vmscaler_forecast_error_ratio",
                "The forecast's out-of-sample error (WAPE, 1 = 100 %) over its last days.",
                |f| f.error,
            ),
            ("vmscaler_forecast_learned_hours", "Hours of demand the forecast has learned from.", |f| {
                Some(f64::from(f.hours_learned))
            }),
        ];
        for (name, help, get) in forecast_gauges {
            gauge_family(
                &mut enc,
                name,
                help,
                self.pools.values().filter_map(|p| {
                    p.forecast.as_ref().and_then(get).map(|v| (vec![("policy", p.policy.as_str())], v))
                }),
            )?;
        }
        let metric_gauges: [(&str, &str, MetricGauge); 4] = [
            ("vmscaler_metric_value", "Last value of each policy metric used by the last evaluation.", |_, m| m.value),
            (
                "vmscaler_metric_ratio",
                "Each metric's value relative to its target (utilisation), or the capacity it wants relative to the current one (backlog).",
                |_, m| m.ratio,
            ),
            (
                "vmscaler_metric_wanted_capacity",
                "Capacity each metric alone asked for at the last evaluation.",
                |_, m| m.wanted_capacity,
            ),
            (
                "vmscaler_metric_age_seconds",
                "Age of each metric's datapoint when the pool was last evaluated.",
                |p, m| {
                    let (at, eval) = (m.sampled_at?, p.last_evaluation?);
                    Some(eval.duration_since(at).as_secs_f64())
                },
            ),
        ];
        for (name, help, get) in metric_gauges {
            gauge_family(
                &mut enc,
                name,
                help,
                self.pools.values().flat_map(|p| {
                    p.metrics.iter().filter_map(move |m| {
                        get(p, m).map(|v| (vec![("policy", p.policy.as_str()), ("metric", m.metric.as_str())], v))
                    })
                }),
            )?;
        }
        if !c.evaluation_seconds.is_empty() {
            let mut family = enc.encode_descriptor(
                "vmscaler_evaluation_duration_seconds",
                "Time one pool's evaluation took: its share of the fleet and metric reads, the decision, actions and state write.",
                None,
                MetricType::Histogram,
            )?;
            for (policy, h) in &c.evaluation_seconds {
                let labels = [("policy", policy.as_str())];
                h.encode(&mut family.encode_family(&labels)?)?;
            }
        }
        gauge_family(
            &mut enc,
            "vmscaler_pool_draining",
            "Members being drained from their target groups before a stop.",
            self.pools.values().map(|p| (vec![("policy", p.policy.as_str())], p.draining.len() as f64)),
        )?;
        if c.drain_seconds.count > 0 {
            let mut family = enc.encode_descriptor(
                "vmscaler_drain_duration_seconds",
                "From deregistration to the stop, for drains that ended in a stop.",
                None,
                MetricType::Histogram,
            )?;
            c.drain_seconds.encode(&mut family)?;
        }
        gauge_family(
            &mut enc,
            "vmscaler_pool_paused",
            "1 when an operator paused the pool (evaluated, not acted on).",
            self.pools.values().map(|p| (vec![("policy", p.policy.as_str())], f64::from(u8::from(p.paused.is_some())))),
        )?;
        gauge_family(
            &mut enc,
            "vmscaler_prewarm_next_start_timestamp_seconds",
            "When the next pre-warm floor starts rising (Unix time), by rule.",
            self.pools.values().filter_map(|p| {
                p.next_floor
                    .as_ref()
                    .map(|n| (vec![("policy", p.policy.as_str()), ("rule", n.rule.as_str())], n.at.as_second() as f64))
            }),
        )?;
        if c.tick_seconds.count > 0 {
            let mut family = enc.encode_descriptor(
                "vmscaler_tick_duration_seconds",
                "Time one turn of the loop took, every due pool included.",
                None,
                MetricType::Histogram,
            )?;
            c.tick_seconds.encode(&mut family)?;
        }
        let none: [(&str, &str); 0] = [];
        gauge_family(
            &mut enc,
            "vmscaler_policies_loaded",
            "Policies being evaluated.",
            [(none.to_vec(), self.pools.len() as f64)],
        )?;
        gauge_family(
            &mut enc,
            "vmscaler_policy_files_invalid",
            "Policy files failing validation right now.",
            [(none.to_vec(), self.invalid_files.len() as f64)],
        )?;
        counter_family(&mut enc, "vmscaler_policy_reloads", "Policy directory reloads.", [(none.to_vec(), c.reloads)])?;
        counter_family(
            &mut enc,
            "vmscaler_policy_reload_failures",
            "Policy files rejected on reload.",
            [(none.to_vec(), c.reload_failures)],
        )?;
        counter_family(
            &mut enc,
            "vmscaler_state_errors",
            "State files that could not be read or written.",
            [(none.to_vec(), c.state_errors)],
        )?;
        counter_family(
            &mut enc,
            "vmscaler_intents_reconciled",
            "Decisions interrupted while acting (a crash) and reconciled with the fleet at start-up.",
            [(none.to_vec(), c.reconciled)],
        )?;
        if let Some(l) = &self.lease {
            gauge_family(
                &mut enc,
                "vmscaler_lease_held",
                "1 when this daemon holds the pool's lease, 0 when another does.",
                self.pools.values().filter_map(|p| {
                    p.lease.as_ref().map(|s| (vec![("policy", p.policy.as_str())], f64::from(u8::from(s.mine))))
                }),
            )?;
            let lc = &l.counters;
            counter_family(
                &mut enc,
                "vmscaler_lease_events",
                "Lease events by kind (fenced_off: a mutating call not made).",
                [
                    ("taken", lc.taken),
                    ("renewed", lc.renewed),
                    ("lost", lc.lost),
                    ("released", lc.released),
                    ("fence_passed", lc.fence_passed),
                    ("fenced_off", lc.fenced_off),
                    ("error", lc.errors),
                ]
                .map(|(k, n)| (vec![("kind", k)], n)),
            )?;
        }
        if let Some(t) = self.last_tick {
            gauge_family(
                &mut enc,
                "vmscaler_last_tick_timestamp_seconds",
                "When the loop last ran.",
                [(none.to_vec(), t.as_millisecond() as f64 / 1000.0)],
            )?;
        }
        Ok(())
    }
}

/// Reads one per-pool gauge; `None` leaves the pool out.
type PoolGauge = fn(&PoolBoard) -> Option<f64>;
/// Reads one forecast gauge of a pool; `None` leaves the pool out.
type ForecastGauge = fn(&super::forecast::ForecastBoard) -> Option<f64>;
/// Reads one per-metric gauge; `None` leaves the metric out.
type MetricGauge = fn(&PoolBoard, &MetricBoard) -> Option<f64>;
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// A gauge family: written only when it has samples, so an idle daemon's page stays short
/// and `promtool check metrics` finds no empty family.
fn gauge_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        let mut m = family.encode_family(&labels)?;
        // Whole numbers (capacities, counts) print as such: `4`, not `4.0`.
        if v.fract() == 0.0 && v.abs() < 9.0e15 {
            // In range: whole and below 2^53.
            #[allow(clippy::cast_possible_truncation)]
            let n = v as i64;
            m.encode_gauge(&n)?;
        } else {
            m.encode_gauge(&v)?;
        }
    }
    Ok(())
}

/// A counter family; `name` without `_total` (the encoder adds it).
fn counter_family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> fmt::Result {
    let mut samples = samples.into_iter().peekable();
    if samples.peek().is_none() {
        return Ok(());
    }
    let mut family = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, n) in samples {
        family.encode_family(&labels)?.encode_counter::<NoLabelSet, _, u64>(&n, None)?;
    }
    Ok(())
}

/// Upper bounds of the duration histograms, in seconds: an evaluation is milliseconds when
/// AWS answers at once and tens of seconds through retries and the action budget.
pub const DURATION_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// A duration histogram over [`DURATION_BUCKETS`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Observations per bucket (not cumulative); the last is above the highest bound.
    pub buckets: [u64; DURATION_BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() { seconds.max(0.0) } else { 0.0 };
        let i = DURATION_BUCKETS.iter().position(|b| seconds <= *b).unwrap_or(DURATION_BUCKETS.len());
        self.buckets[i] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    fn encode(&self, enc: &mut MetricEncoder<'_>) -> fmt::Result {
        let buckets: Vec<(f64, u64)> =
            DURATION_BUCKETS.iter().copied().chain([f64::INFINITY]).zip(self.buckets.iter().copied()).collect();
        enc.encode_histogram::<NoLabelSet>(self.sum, self.count, &buckets, None)
    }
}

/// Exposes the board to `prometheus-client`: each scrape locks it once and encodes it.
#[derive(Debug)]
struct BoardCollector(Arc<SharedBoard>);

impl Collector for BoardCollector {
    fn encode(&self, encoder: DescriptorEncoder) -> fmt::Result {
        self.0.lock().encode(encoder)
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

    /// `/metrics`: the board in the Prometheus text format 0.0.4, encoded by
    /// `prometheus-client` from one lock of the board (no copy of it).
    pub fn render_prometheus(self: &Arc<Self>) -> String {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(BoardCollector(Arc::clone(self))));
        let mut out = String::with_capacity(8192);
        if let Err(e) = prometheus_text::encode(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode the metrics");
        }
        out
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
