//! The daemon's side of predictive pre-warm (`predictive:`): reading a pool's past load from
//! CloudWatch when the model has none (at start, for a new `predictive:` policy, after a long
//! stop), and what the board shows of the model (`/v1/forecast`, `/metrics`, `vmscaler status`,
//! `vmscaler forecast`).
//!
//! The read is bounded ([`HISTORY_BUDGET`], at most [`HISTORY_SERIES_PER_TICK`] series a tick,
//! the policy's `history` capped at CloudWatch's 63 days of 5-minute data) and a failure only
//! degrades: the pool is evaluated as usual, the model keeps learning from live data, the
//! failure is in the pool's health, and the read is retried after [`RETRY_AFTER`]. A restarted
//! daemon whose state file kept the model reads only the time it was away.
//!
//! Not here: the model (the engine's `forecast`), CloudWatch calls (`aws::metrics::history`).

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use vmscaler_engine::forecast::{Fit, Unavailable};
use vmscaler_engine::policy::{Predictive, PredictiveMode};
use vmscaler_engine::{Decision, Forecaster, Policy};

use crate::aws::metrics::history::{PastRead, history_period};

/// The longest a tick waits for past load (it is read beside the tick's own metrics).
pub const HISTORY_BUDGET: Duration = Duration::from_secs(30);
/// At most this many series of past load are read in one tick; other pools wait their turn.
pub const HISTORY_SERIES_PER_TICK: usize = 2_000;
/// A failed read is tried again this much later.
pub const RETRY_AFTER: Duration = Duration::from_secs(30 * 60);
/// CloudWatch keeps 5-minute datapoints this long.
pub const CLOUDWATCH_5M_RETENTION: Duration = Duration::from_secs(63 * 86_400);
/// Hours of forecast the board shows.
pub const HOURS_AHEAD: u32 = 48;
/// Observed demand the board shows, for charts.
pub const SHOWN_BEHIND: Duration = Duration::from_secs(48 * 3600);

/// Whether a pool's past load still has to be read.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum HistoryFetch {
    /// Read it at the pool's next evaluation.
    #[default]
    Needed,
    /// The last read failed: try again from this time.
    RetryAt(Timestamp),
    /// Read (or nothing to read).
    Done,
}

impl HistoryFetch {
    pub fn due(&self, now: Timestamp) -> bool {
        match self {
            HistoryFetch::Needed => true,
            HistoryFetch::RetryAt(t) => *t <= now,
            HistoryFetch::Done => false,
        }
    }

    /// A policy changed: a newly added `predictive:` block, or a longer `history`, reads again
    /// (slots already learned are kept).
    pub fn on_policy_change(&mut self, old: &Policy, new: &Policy) {
        let longer = match (&old.predictive, &new.predictive) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => b.history > a.history,
            _ => false,
        };
        if longer {
            *self = HistoryFetch::Needed;
        }
    }
}

/// The time to read for a pool at `now`, `None` when there is nothing worth reading: the past
/// `history` (at most 63 days) up to the last complete period before `now - offset`, or only
/// the time since the model's newest slot when the model already covers that span (a restart).
pub fn window(
    policy: &Policy,
    forecaster: Option<&Forecaster>,
    now: Timestamp,
    offset: Duration,
) -> Option<(Timestamp, Timestamp)> {
    let spec = policy.predictive.as_ref()?;
    let period = history_period(policy);
    let step = i64::try_from(period.as_secs()).unwrap_or(300).max(1);
    let align = |t: Timestamp| Timestamp::from_second(t.as_second().div_euclid(step) * step).unwrap_or(t);
    let end = align(vmscaler_engine::duration::before(now, offset));
    let mut from = align(vmscaler_engine::duration::before(end, spec.history.min(CLOUDWATCH_5M_RETENTION)));
    if let Some(f) = forecaster
        && let (Some(first), Some(last)) = (f.first_observed_at(), f.last_observed())
        && first <= vmscaler_engine::duration::after(from, Duration::from_secs(86_400))
    {
        from = from.max(align(vmscaler_engine::duration::after(last, Duration::from_secs(300))));
    }
    (end.duration_since(from).as_secs() >= 2 * step).then_some((from, end))
}

/// What the last read of past load did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryBoard {
    /// `loaded` or `failed`.
    pub state: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Timestamp>,
    /// 5-minute slots of demand it added to the model.
    #[serde(default)]
    pub slots: usize,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// Folds one pool's past load into its model. Returns what the board shows and, when the read
/// failed (no demand could be learned and something went wrong), the message for the pool's
/// health.
pub fn apply(
    policy: &Policy,
    cycle: &mut vmscaler_engine::PoolCycle,
    read: &PastRead,
    window: (Timestamp, Timestamp),
    now: Timestamp,
) -> (HistoryBoard, Option<String>) {
    let learned = cycle.learn_past(policy, &read.load, now);
    let slots = learned.slots;
    let mut problems = read.errors.clone();
    if learned.no_size > 0 && learned.periods > 0 {
        problems.push(format!("{} period(s) left out: the pool's size then is unknown", learned.no_size));
    }
    let failed = learned.periods == 0 && !read.errors.is_empty();
    let board = HistoryBoard {
        state: if failed { "failed" } else { "loaded" }.to_owned(),
        at: Some(now),
        from: Some(window.0),
        to: Some(window.1),
        slots,
        problems: problems.clone(),
    };
    let health = failed.then(|| format!("forecast history not read: {}", problems.join("; ")));
    (board, health)
}

/// One hour of the forecast ahead.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ForecastHour {
    pub at: Timestamp,
    /// Highest median forecast demand in the hour (capacity units).
    pub forecast: f64,
    /// Highest quantile forecast over the hour and the lead after it.
    pub upper: f64,
    /// The forecast floor evaluations in the hour would set (capped at max).
    pub floor: u32,
}

/// One past hour of observed demand.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ObservedHour {
    pub at: Timestamp,
    pub mean: f64,
    pub max: f64,
}

/// The forecast of one pool, as last evaluated.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ForecastBoard {
    /// `forecast_only` or `active`.
    pub mode: String,
    /// `learning`, `ready` (a floor is computed) or `unavailable` (see `reason`).
    pub state: String,
    /// The forecast floor at the last evaluation (capped at max), applied or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub floor: Option<u32>,
    /// The floor raised the decision (active mode only).
    #[serde(default)]
    pub applied: bool,
    /// Why there is no floor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Hours of demand learned, and needed before forecasting.
    pub hours_learned: u32,
    pub hours_needed: u32,
    /// Out-of-sample WAPE of the model over its last days, and the gate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<f64>,
    pub max_error: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub season: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fitted_at: Option<Timestamp>,
    pub quantile: f64,
    /// The next hours' forecast floor.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<ForecastHour>,
    /// Observed demand per hour over the last two days.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recent: Vec<ObservedHour>,
    /// The read of past load from CloudWatch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryBoard>,
}

/// The board's view of a pool's forecast after an evaluation.
pub fn board(
    spec: &Predictive,
    max: u32,
    forecaster: &Forecaster,
    decision: &Decision,
    history: Option<HistoryBoard>,
    now: Timestamp,
) -> ForecastBoard {
    let needed = vmscaler_engine::forecast::MIN_HISTORY_HOURS;
    let learned = u32::try_from(forecaster.observed_slots() / 12).unwrap_or(u32::MAX);
    let (mut hours_learned, mut hours_needed) = (learned, needed);
    let (mut error, mut season) = (None, None);
    match forecaster.fit_result() {
        Some(Fit::Learning { hours, needed }) => (hours_learned, hours_needed) = (*hours, *needed),
        Some(Fit::Ready(m)) => {
            error = m.wape;
            season = Some(m.season.to_string());
        }
        None => {}
    }
    let outlook = forecaster.outlook(spec, now);
    let state = match &outlook {
        Ok(_) => "ready",
        Err(Unavailable::Learning { .. } | Unavailable::NoModel) => "learning",
        Err(_) => "unavailable",
    };
    let (floor, applied) = match decision.forecast_floor() {
        Some((c, a)) => (Some(c), a),
        None => (None, false),
    };
    ForecastBoard {
        mode: match spec.mode {
            PredictiveMode::ForecastOnly => "forecast_only",
            PredictiveMode::Active => "active",
        }
        .to_owned(),
        state: state.to_owned(),
        floor,
        applied,
        reason: outlook.err().map(|e| e.to_string()),
        hours_learned,
        hours_needed,
        error,
        max_error: spec.max_error,
        season,
        fitted_at: forecaster.fitted_at(),
        quantile: spec.quantile,
        next: forecaster
            .hourly(spec, max, now, HOURS_AHEAD)
            .into_iter()
            .map(|h| ForecastHour { at: h.at, forecast: h.forecast, upper: h.upper, floor: h.floor })
            .collect(),
        recent: forecaster
            .observed_hourly(now, SHOWN_BEHIND)
            .into_iter()
            .map(|h| ObservedHour { at: h.at, mean: h.mean, max: h.max })
            .collect(),
        history,
    }
}

/// The pools whose past load is read at this tick: due for it, within the per-tick series
/// bound (at least one pool, however large).
pub fn choose<'a>(candidates: impl IntoIterator<Item = (&'a str, usize)>) -> Vec<&'a str> {
    let mut total = 0;
    let mut out = Vec::new();
    for (name, series) in candidates {
        if !out.is_empty() && total + series > HISTORY_SERIES_PER_TICK {
            break;
        }
        total += series;
        out.push(name);
    }
    out
}

/// One pool's read of past load, planned at a tick.
#[derive(Debug, Clone)]
pub struct PastPlan {
    pub policy: Policy,
    pub window: (Timestamp, Timestamp),
    /// Every member that may have run in the window (stopped ones included).
    pub instance_ids: Vec<String>,
}

impl PastPlan {
    /// Series the read will take (for [`choose`]).
    pub fn series(&self) -> usize {
        self.policy
            .metrics
            .iter()
            .map(|m| if m.per_instance.is_some() { self.instance_ids.len() } else { 1 })
            .sum::<usize>()
            + self.instance_ids.len().max(1)
    }
}

/// How long a tick waits for a history read after its own reads are done; a longer read goes
/// on in the background ([`PastInFlight`]) and is folded in at a later tick.
pub const HISTORY_GRACE: Duration = Duration::from_secs(5);

/// Answers of a history read, one per plan, in order.
pub type PastAnswers = Vec<Result<PastRead, String>>;

/// A history read running as its own task (bounded by [`HISTORY_BUDGET`]).
#[derive(Debug)]
pub struct PastInFlight {
    plans: Vec<PastPlan>,
    task: tokio::task::JoinHandle<PastAnswers>,
}

impl PastInFlight {
    /// Starts reading `plans`' past load: CloudWatch through `cloud`, and `source: prometheus`
    /// metrics through `prometheus` when the daemon has one.
    pub fn start(
        cloud: std::sync::Arc<dyn super::cloud::Cloud>,
        prometheus: Option<crate::prometheus::PromClient>,
        plans: Vec<PastPlan>,
    ) -> PastInFlight {
        let mine = plans.clone();
        let task = tokio::spawn(async move { read(&*cloud, prometheus.as_ref(), &mine).await });
        PastInFlight { plans, task }
    }

    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    pub fn pools(&self) -> usize {
        self.plans.len()
    }

    /// The plans and their answers, waiting at most `grace`; the read itself if it is not done.
    pub async fn within(mut self, grace: Duration) -> Result<(Vec<PastPlan>, PastAnswers), PastInFlight> {
        match tokio::time::timeout(grace, &mut self.task).await {
            Ok(joined) => {
                let answers = Self::answers(&self.plans, joined);
                Ok((self.plans, answers))
            }
            Err(_) => Err(self),
        }
    }

    /// The plans and their answers, waiting for the read (bounded by [`HISTORY_BUDGET`]).
    pub async fn collect(self) -> (Vec<PastPlan>, PastAnswers) {
        let joined = self.task.await;
        let answers = Self::answers(&self.plans, joined);
        (self.plans, answers)
    }

    fn answers(plans: &[PastPlan], joined: Result<PastAnswers, tokio::task::JoinError>) -> PastAnswers {
        joined.unwrap_or_else(|e| plans.iter().map(|_| Err(format!("the read stopped: {e}"))).collect())
    }
}

/// Reads the past load of `plans` (pools with the same window together), within
/// [`HISTORY_BUDGET`]; one answer per plan, in order. A policy's `source: prometheus` metrics
/// are read from `prometheus` on the same grid as its CloudWatch history.
pub async fn read(
    cloud: &dyn super::cloud::Cloud,
    prometheus: Option<&crate::prometheus::PromClient>,
    plans: &[PastPlan],
) -> PastAnswers {
    let work = async {
        let mut answers: BTreeMap<String, PastRead> = BTreeMap::new();
        let mut windows: Vec<(Timestamp, Timestamp)> = plans.iter().map(|p| p.window).collect();
        windows.sort();
        windows.dedup();
        for w in windows {
            let queries: Vec<crate::aws::metrics::PoolQuery<'_>> = plans
                .iter()
                .filter(|p| p.window == w)
                .map(|p| crate::aws::metrics::PoolQuery { policy: &p.policy, instance_ids: p.instance_ids.clone() })
                .collect();
            answers.extend(cloud.fetch_history(&queries, w.0, w.1).await);
        }
        if let Some(client) = prometheus {
            for p in plans.iter().filter(|p| crate::prometheus::uses_prometheus(&p.policy)) {
                let read = answers.entry(p.policy.name.clone()).or_default();
                read_prometheus(client, p, read).await;
            }
        }
        answers
    };
    match tokio::time::timeout(HISTORY_BUDGET, work).await {
        Ok(mut answers) => plans
            .iter()
            .map(|p| answers.remove(&p.policy.name).ok_or_else(|| "no answer for the pool".to_owned()))
            .collect(),
        Err(_) => plans
            .iter()
            .map(|_| Err(format!("not read within {}s (retried later)", HISTORY_BUDGET.as_secs())))
            .collect(),
    }
}

/// Adds a plan's `source: prometheus` metrics to its past read: one range query per metric,
/// evaluated at the end of each period of the CloudWatch grid (`history_period`), each value
/// kept at its period's start as the CloudWatch datapoints are, so that a past evaluation sees
/// both sources at once.
async fn read_prometheus(client: &crate::prometheus::PromClient, plan: &PastPlan, read: &mut PastRead) {
    let grid = history_period(&plan.policy);
    let mut on_grid = plan.policy.clone();
    for m in on_grid.metrics.iter_mut().filter(|m| m.source != vmscaler_engine::policy::MetricSource::CloudWatch) {
        m.period = grid;
    }
    let (from, end) = plan.window;
    let first = vmscaler_engine::duration::after(from, grid);
    let (samples, problems) = crate::prometheus::read_history(client, &on_grid, &plan.instance_ids, first, end).await;
    read.errors.retain(|e| e != crate::aws::metrics::history::PROMETHEUS_NOT_READ);
    read.errors.extend(problems);
    read.load.samples.extend(samples);
    if read.load.period.is_zero() {
        read.load.period = grid;
    }
}

impl super::Daemon {
    /// The reads of past load this tick makes: the due pools whose model still needs one and
    /// whose fleet was read, within the per-tick series bound; and the pools with nothing worth
    /// reading (done without a read).
    pub(super) fn plan_past(
        &self,
        due: &[String],
        fleets: &BTreeMap<String, Result<crate::aws::fleet::Described, crate::aws::error::FleetError>>,
        now: Timestamp,
    ) -> (Vec<PastPlan>, Vec<String>) {
        let offset = self.cfg.metric_offset;
        let mut plans = Vec::new();
        let mut nothing = Vec::new();
        for name in due {
            let Some(pool) = self.pools.get(name) else { continue };
            if pool.policy.predictive.is_none() || !pool.history_fetch.due(now) {
                continue;
            }
            let Some(Ok(described)) = fleets.get(name) else { continue };
            let Some(window) = window(&pool.policy, pool.state.cycle.forecaster(), now, offset) else {
                nothing.push(name.clone());
                continue;
            };
            let instance_ids = match &described.fleet {
                vmscaler_engine::Fleet::Instances { members } => members
                    .iter()
                    .filter(|m| m.state != vmscaler_engine::MemberState::Gone)
                    .map(|m| m.id.clone())
                    .collect(),
                vmscaler_engine::Fleet::Group(_) => Vec::new(),
            };
            plans.push(PastPlan { policy: pool.policy.clone(), window, instance_ids });
        }
        let chosen: Vec<String> =
            choose(plans.iter().map(|p| (p.policy.name.as_str(), p.series()))).into_iter().map(str::to_owned).collect();
        plans.retain(|p| chosen.contains(&p.policy.name));
        (plans, nothing)
    }

    /// Pools with no past worth reading (see [`Self::plan_past`]): done without a read.
    pub(super) fn nothing_to_read(&mut self, nothing: Vec<String>) {
        for name in nothing {
            if let Some(pool) = self.pools.get_mut(&name) {
                pool.history_fetch = HistoryFetch::Done;
            }
        }
    }

    /// Folds a read of past load into each pool's model; a failed read degrades the pool's
    /// health and is retried after [`RETRY_AFTER`].
    pub(super) fn fold_past(&mut self, plans: Vec<PastPlan>, answers: PastAnswers, now: Timestamp) {
        for (plan, answer) in plans.iter().zip(answers) {
            let name = &plan.policy.name;
            let Some(pool) = self.pools.get_mut(name) else { continue };
            if pool.policy.predictive.is_none() {
                continue;
            }
            let (board, problem) = match answer {
                Ok(read) => apply(&pool.policy, &mut pool.state.cycle, &read, plan.window, now),
                Err(e) => {
                    let board = HistoryBoard {
                        state: "failed".to_owned(),
                        at: Some(now),
                        from: Some(plan.window.0),
                        to: Some(plan.window.1),
                        slots: 0,
                        problems: vec![e.clone()],
                    };
                    (board, Some(format!("forecast history not read: {e}")))
                }
            };
            match &problem {
                Some(msg) => {
                    tracing::warn!(policy = %name, error = %msg, retry_in = ?RETRY_AFTER, "forecast history not read: the model learns from live data meanwhile");
                    pool.history_fetch = HistoryFetch::RetryAt(crate::clock::later(now, RETRY_AFTER));
                    pool.notices.insert("forecast_history", (msg.clone(), crate::clock::later(now, RETRY_AFTER)));
                }
                None => {
                    tracing::info!(
                        policy = %name,
                        from = %plan.window.0,
                        to = %plan.window.1,
                        slots = board.slots,
                        problems = %board.problems.join("; "),
                        "forecast history read from CloudWatch"
                    );
                    pool.history_fetch = HistoryFetch::Done;
                    pool.notices.remove("forecast_history");
                }
            }
            pool.forecast_history = Some(board);
        }
    }
}

/// `/v1/forecast`: every pool's forecast, by policy name.
pub type ForecastView = BTreeMap<String, ForecastBoard>;

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extra: &str) -> Policy {
        let text = format!(
            "name: t\npool: {{auto_scaling_group: g}}\nmin: 1\nmax: 9\nmetrics:\n  - {{id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}}\n{extra}"
        );
        let r = vmscaler_engine::policy::parse_policy("t.yaml", &text);
        r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics))
    }

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn window_reads_the_history_or_only_the_time_away() {
        let p = policy("predictive: {history: 7d}\n");
        let now = t("2026-11-20T10:03:20Z");
        let (from, end) = window(&p, None, now, Duration::from_secs(60)).unwrap();
        assert_eq!((from, end), (t("2026-11-13T10:00:00Z"), t("2026-11-20T10:00:00Z")));
        assert_eq!(window(&policy(""), None, now, Duration::ZERO), None, "no predictive: nothing");
        // A model that covers the span and stopped 2 hours ago reads 2 hours.
        let mut f = Forecaster::new();
        for k in 0..7 * 288 {
            f.observe(t("2026-11-13T08:00:00Z").checked_add(jiff::SignedDuration::from_secs(k * 300)).unwrap(), 1.0);
        }
        assert_eq!(f.last_observed(), Some(t("2026-11-20T07:55:00Z")));
        let w = window(&p, Some(&f), now, Duration::from_secs(60));
        assert_eq!(w, Some((t("2026-11-20T08:00:00Z"), t("2026-11-20T10:00:00Z"))));
        // One that stopped 5 minutes ago: nothing worth a call.
        let w = window(&p, Some(&f), t("2026-11-20T08:04:00Z"), Duration::ZERO);
        assert_eq!(w, None);
        // A model with only a day: the whole history again (filled around what it has).
        let mut g = Forecaster::new();
        g.observe(t("2026-11-19T10:00:00Z"), 1.0);
        assert_eq!(window(&p, Some(&g), now, Duration::from_secs(60)).map(|w| w.0), Some(t("2026-11-13T10:00:00Z")));
    }

    #[test]
    fn a_new_predictive_block_or_a_longer_history_reads_again() {
        let (off, on, long) = (policy(""), policy("predictive: {}\n"), policy("predictive: {history: 28d}\n"));
        let mut f = HistoryFetch::Done;
        f.on_policy_change(&on, &on);
        assert_eq!(f, HistoryFetch::Done);
        f.on_policy_change(&off, &on);
        assert_eq!(f, HistoryFetch::Needed);
        let mut f = HistoryFetch::Done;
        f.on_policy_change(&on, &long);
        assert_eq!(f, HistoryFetch::Needed);
        let mut f = HistoryFetch::RetryAt(t("2026-11-20T10:00:00Z"));
        assert!(!f.due(t("2026-11-20T09:59:59Z")) && f.due(t("2026-11-20T10:00:00Z")));
        f.on_policy_change(&long, &on);
        assert!(matches!(f, HistoryFetch::RetryAt(_)), "a shorter history reads nothing new");
    }

    #[test]
    fn the_series_bound_takes_at_least_one_pool() {
        assert_eq!(choose([("a", 5_000), ("b", 1)]), ["a"]);
        assert_eq!(choose([("a", 1_000), ("b", 900), ("c", 200)]), ["a", "b"]);
    }
}
