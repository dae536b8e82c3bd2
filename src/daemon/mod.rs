//! The long-running daemon: evaluates every policy on its own interval against the real fleet.
//!
//! [`Daemon::tick`] is one turn of the loop at a given `now`: the pools that are due are
//! described together (one `Cloud::fleets` call), their metrics fetched together (one
//! `fetch_metrics` call), and each pool is then evaluated in its own tracing span: samples into
//! its [`PoolHistory`], [`decide`], act (or dry-run), record, prune, persist. The loop in
//! [`runloop`] calls `tick` with the clock's time; tests call it directly with a time of their
//! choosing, so a few evaluations take milliseconds rather than whole intervals.
//!
//! [`Daemon::reload`] re-reads the policy directory: a file that no longer validates is
//! reported and its last good version keeps running; other pools are not disturbed (their
//! history, schedule and state stay as they are).
//!
//! Not here: deciding (the engine), AWS calls (the [`crate::aws`] adapters), signals, sleeping
//! and systemd (see [`runloop`]), HTTP (see [`crate::http`]).

pub mod board;
pub mod cloud;
pub mod drain;
#[cfg(test)]
mod fast_tests;
pub mod forecast;
mod leases;
pub mod runloop;
pub mod watch;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tracing::{Instrument, debug, error, info, info_span, warn};
use vmscaler_engine::policy::{PoolTarget, Severity};
use vmscaler_engine::{
    Achieved, Action, Decision, FUTURE_TOLERANCE, Fleet, MemberState, Policy, PoolCycle, PoolHistory,
};

use crate::alerts::AlertInbox;
use crate::aws::Aws;
use crate::aws::actuate::Outcome;
use crate::aws::error::{ErrorClass, FleetError};
use crate::aws::fleet::Described;
use crate::aws::lease::Fence;
use crate::aws::metrics::{PoolMetrics, PoolQuery, apply_member_cpu};
use crate::clock::later;
use crate::config::Config;
use crate::formats::HandoverV1;
use crate::lease::{LeaseGuard, Leases};
use crate::prometheus::{PromClient, PromPool};
use crate::state::{DecisionEntry, Intent, PoolState, StateError, StateStore};

use cloud::Cloud;

use board::{ApiOp, Board, MetricBoard, PoolBoard, PrewarmBoard, SharedBoard};

pub use runloop::run;

/// One pool being evaluated.
#[derive(Debug)]
struct Pool {
    policy: Policy,
    file: PathBuf,
    state: PoolState,
    next_due: Timestamp,
    /// Evaluations in a row that failed to read the fleet or the metrics.
    failures: u32,
    /// The lease token whose handover was last merged into the history (several hosts).
    inherited_token: Option<u64>,
    /// Load balancer target groups and member addresses, as last read (pools that drain).
    lb: drain::LbCache,
    /// When a drain under way (or a member to register) is next checked, between evaluations.
    drain_due: Option<Timestamp>,
    /// Instances with the pool's tag it does not own, as last described.
    left_alone: Vec<String>,
    /// Problems that make the pool's health `degraded` for a while after they were seen (a
    /// state file set aside, records from the future), by kind: message and until when.
    notices: BTreeMap<&'static str, (String, Timestamp)>,
    /// The last save of the pool's state failed.
    save_failing: Option<String>,
    /// Why the last evaluation was degraded, while it is.
    last_error: Option<String>,
    /// The pool's lease, with several daemons.
    lease: Option<crate::lease::LeaseStatus>,
    /// What the last evaluation showed (the board's view, see `Daemon::publish_pool`).
    view: PoolView,
    /// Whether the forecast's past load still has to be read from CloudWatch, and what the
    /// last read did (`predictive:` pools).
    history_fetch: forecast::HistoryFetch,
    forecast_history: Option<forecast::HistoryBoard>,
}

impl Pool {
    fn dry_run(&self, global: bool) -> bool {
        global || self.policy.dry_run
    }
}

/// What one [`Daemon::tick`] did.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct TickReport {
    /// Policies evaluated, in order.
    pub evaluated: Vec<String>,
    /// Decisions made at this tick (pools whose fleet could not be read make none).
    pub decisions: Vec<DecisionEntry>,
    /// When the next pool is due.
    pub next_due: Option<Timestamp>,
}

/// What one [`Daemon::reload`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub removed: Vec<String>,
    /// Files that failed validation, with their first error; a pool they defined keeps its
    /// last good version.
    pub rejected: Vec<(PathBuf, String)>,
    /// Policies kept at their last good version because their file was rejected.
    pub kept: Vec<String>,
}

/// Policies read from the directory, split into good ones and rejected files.
#[derive(Debug, Default)]
pub struct DirLoad {
    pub good: Vec<(PathBuf, Policy)>,
    pub rejected: BTreeMap<PathBuf, Vec<String>>,
    /// The directory itself could not be read: nothing changes.
    pub unreadable: Option<String>,
}

/// Reads and validates the policy directory through [`crate::policies::load_dir`].
pub fn load_policy_dir(dir: &Path) -> DirLoad {
    load_policy_dir_preferring(dir, &[])
}

/// Like [`load_policy_dir`]; `running` files win collisions with new ones.
pub fn load_policy_dir_preferring(dir: &Path, running: &[PathBuf]) -> DirLoad {
    let set = crate::policies::load_dir_preferring(dir, running);
    let dir_name = dir.display().to_string();
    let errors = || set.diagnostics.iter().filter(|d| d.severity == Severity::Error);
    if let Some(d) = errors().find(|d| d.file == dir_name) {
        return DirLoad { unreadable: Some(d.to_string()), ..DirLoad::default() };
    }
    let good_files: BTreeSet<PathBuf> = set.policies.iter().map(|(p, _)| p.clone()).collect();
    let mut rejected: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    for d in errors() {
        let file = PathBuf::from(&d.file);
        if !good_files.contains(&file) {
            rejected.entry(file).or_default().push(d.to_string());
        }
    }
    DirLoad { good: set.policies, rejected, unreadable: None }
}

/// When the loop last made progress (an evaluation finished or a tick ended), for the systemd
/// watchdog: a tick over many pools may outlast the watchdog interval, a stuck one must not.
#[derive(Debug)]
pub struct Heartbeat(std::sync::Mutex<std::time::Instant>);

impl Default for Heartbeat {
    fn default() -> Heartbeat {
        Heartbeat(std::sync::Mutex::new(crate::clock::monotonic()))
    }
}

impl Heartbeat {
    pub fn beat(&self) {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = crate::clock::monotonic();
    }

    /// Time since the last beat.
    pub fn age(&self) -> Duration {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).elapsed()
    }
}

/// The daemon's state: policies, per-pool history and the live board.
pub struct Daemon {
    cfg: Config,
    /// Fleets, metrics and actions (the AWS adapters, or the in-memory cloud in tests).
    cloud: Arc<dyn Cloud>,
    store: StateStore,
    pools: BTreeMap<String, Pool>,
    board: Arc<SharedBoard>,
    heartbeat: Arc<Heartbeat>,
    /// Several daemons sharing pools: only the pools whose lease is held here are evaluated.
    leases: Option<Leases>,
    /// Pauses and the activity log (see `crate::ops`).
    ops: Arc<crate::ops::Ops>,
    /// Reads `source: prometheus` metrics (the config's `prometheus:` section).
    prometheus: Option<PromClient>,
    /// Floors held by firing Alertmanager alerts (the config's `alerts:` section).
    alerts: Option<Arc<AlertInbox>>,
    /// A read of past load that outlasted its tick's grace, folded in at a later tick.
    past: Option<forecast::PastInFlight>,
}

impl Daemon {
    /// Opens the state directory and loads the policies; pools restore their persisted state
    /// and are due at once. Invalid policy files are reported (see [`ReloadReport`]); a policy
    /// directory that cannot be read at all is an error.
    pub fn new(cfg: Config, aws: Aws, now: Timestamp) -> anyhow::Result<(Daemon, ReloadReport)> {
        Daemon::with_cloud(cfg, Arc::new(aws), now)
    }

    /// [`Daemon::new`] on any [`Cloud`] (the in-memory one in tests).
    pub fn with_cloud(cfg: Config, cloud: Arc<dyn Cloud>, now: Timestamp) -> anyhow::Result<(Daemon, ReloadReport)> {
        let store = StateStore::open(&cfg.state_dir)?;
        let loopback = cfg.listen.is_none_or(|a| a.ip().is_loopback());
        let ops = Arc::new(crate::ops::Ops::open(&cfg.state_dir, loopback, std::env::var(crate::ops::TOKEN_ENV).ok()));
        let board = Board {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            started_at: Some(now),
            dry_run: cfg.dry_run,
            ..Board::default()
        };
        let mut d = Daemon {
            cfg,
            cloud,
            store,
            pools: BTreeMap::new(),
            board: Arc::new(SharedBoard::new(board)),
            heartbeat: Arc::default(),
            leases: None,
            ops,
            prometheus: None,
            alerts: None,
            past: None,
        };
        d.board.set_ops(Arc::clone(&d.ops));
        if let Some(p) = &d.cfg.prometheus {
            d.prometheus = Some(PromClient::new(p)?);
        }
        if let Some(a) = &d.cfg.alerts {
            d.alerts = Some(Arc::new(AlertInbox::open(a, &d.cfg.state_dir, now)?));
        }
        let load = load_policy_dir(&d.cfg.policy_dir);
        if let Some(e) = &load.unreadable {
            anyhow::bail!("cannot load policies from {}: {e}", d.cfg.policy_dir.display());
        }
        let report = d.apply_load(load, now);
        Ok((d, report))
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Progress of the loop, for the watchdog.
    pub fn heartbeat(&self) -> Arc<Heartbeat> {
        Arc::clone(&self.heartbeat)
    }

    /// The Alertmanager webhook's inbox, when `alerts:` is configured.
    pub fn alerts(&self) -> Option<Arc<AlertInbox>> {
        self.alerts.clone()
    }

    /// Makes the pools whose alert floors changed due at `now` (the webhook wakes the loop).
    pub fn expedite_alerted(&mut self, now: Timestamp) -> Vec<String> {
        let Some(inbox) = &self.alerts else { return vec![] };
        let mut out = Vec::new();
        for name in inbox.take_dirty() {
            if let Some(p) = self.pools.get_mut(&name) {
                p.next_due = p.next_due.min(now);
                out.push(name);
            }
        }
        out
    }

    /// The live board shared with the HTTP server.
    pub fn board(&self) -> Arc<SharedBoard> {
        Arc::clone(&self.board)
    }

    pub fn policies(&self) -> Vec<&Policy> {
        self.pools.values().map(|p| &p.policy).collect()
    }

    /// The policy currently running under `name`.
    pub fn policy(&self, name: &str) -> Option<&Policy> {
        self.pools.get(name).map(|p| &p.policy)
    }

    /// A pool's history as the next evaluation will see it.
    pub fn history(&self, name: &str) -> Option<&PoolHistory> {
        self.pools.get(name).map(|p| p.state.cycle.history())
    }

    /// When the soonest pool is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.pools.values().map(|p| p.drain_due.map_or(p.next_due, |d| d.min(p.next_due))).min()
    }

    /// Re-reads the policy directory. See the module documentation for what is kept.
    pub fn reload(&mut self, now: Timestamp) -> ReloadReport {
        // The running files win any collision: a new file never takes a running pool.
        let running: Vec<PathBuf> = self.pools.values().map(|p| p.file.clone()).collect();
        let load = load_policy_dir_preferring(&self.cfg.policy_dir, &running);
        self.board.lock().counters.reloads += 1;
        if let Some(e) = load.unreadable {
            error!(dir = %self.cfg.policy_dir.display(), error = %e, "policy directory unreadable: keeping every policy as it is");
            let mut b = self.board.lock();
            b.counters.reload_failures += 1;
            b.invalid_files.insert(self.cfg.policy_dir.display().to_string(), e.clone());
            return ReloadReport { rejected: vec![(self.cfg.policy_dir.clone(), e)], ..ReloadReport::default() };
        }
        let report = self.apply_load(load, now);
        crate::activity::log_reload(&self.ops.activity, &report, now);
        info!(
            added = ?report.added,
            updated = ?report.updated,
            removed = ?report.removed,
            kept_last_good = ?report.kept,
            rejected = report.rejected.len(),
            "policies reloaded"
        );
        report
    }

    fn apply_load(&mut self, load: DirLoad, now: Timestamp) -> ReloadReport {
        let mut report = ReloadReport::default();
        let mut old = std::mem::take(&mut self.pools);
        let mut next: BTreeMap<String, Pool> = BTreeMap::new();
        for (file, policy) in load.good {
            let name = policy.name.clone();
            if next.contains_key(&name) {
                // The loader rejects duplicate names; never run two pools under one name.
                error!(policy = %name, file = %file.display(), "duplicate policy name: ignored");
                continue;
            }
            let pool = match old.remove(&name) {
                Some(mut p) => {
                    let due_by = later(now, policy.interval);
                    if p.file != file || p.policy != policy {
                        report.updated.push(name.clone());
                    }
                    p.next_due = p.next_due.min(due_by);
                    p.history_fetch.on_policy_change(&p.policy, &policy);
                    p.policy = policy;
                    p.file = file;
                    p
                }
                None => {
                    report.added.push(name.clone());
                    let (state, problems) = self.restore(&name, now);
                    let until = later(now, policy.history.window.max(policy.interval));
                    let notices = problems.into_iter().map(|(k, m)| (k, (m, until))).collect();
                    Pool {
                        policy,
                        file,
                        state,
                        next_due: now,
                        failures: 0,
                        inherited_token: None,
                        lb: drain::LbCache::default(),
                        drain_due: None,
                        left_alone: Vec::new(),
                        notices,
                        save_failing: None,
                        last_error: None,
                        lease: None,
                        view: PoolView::default(),
                        history_fetch: forecast::HistoryFetch::default(),
                        forecast_history: None,
                    }
                }
            };
            next.insert(name, pool);
        }
        let mut invalid = BTreeMap::new();
        for (file, errors) in &load.rejected {
            let first = errors.first().cloned().unwrap_or_else(|| "invalid".to_owned());
            warn!(file = %file.display(), errors = %errors.join("; "), "policy file rejected");
            report.rejected.push((file.clone(), first.clone()));
            invalid.insert(file.display().to_string(), first);
            // Keep the last good version of the pool this file defined.
            let kept: Vec<String> = old.iter().filter(|(_, p)| &p.file == file).map(|(n, _)| n.clone()).collect();
            for name in kept {
                if let Some(p) = old.remove(&name) {
                    if next.contains_key(&name) {
                        warn!(policy = %name, file = %file.display(), "another file now defines this policy: last good version dropped");
                        continue;
                    }
                    // The file was rejected because another policy now claims its pool: running
                    // the last good version too would put two policies on the same instances.
                    if let Some((rival, _)) = next
                        .iter()
                        .find(|(_, q)| vmscaler_engine::policy::pools_overlap(&q.policy.pool, &p.policy.pool))
                    {
                        error!(policy = %name, claimed_by = %rival, file = %file.display(), "another policy now claims this pool: last good version dropped");
                        report.removed.push(name.clone());
                        continue;
                    }
                    warn!(policy = %name, file = %file.display(), "keeping the last good version of the policy");
                    report.kept.push(name.clone());
                    next.insert(name, p);
                }
            }
        }
        for name in old.keys() {
            info!(policy = %name, "policy removed: no longer evaluated");
            report.removed.push(name.clone());
        }
        self.pools = next;
        let mut b = self.board.lock();
        b.counters.reload_failures += report.rejected.len() as u64;
        b.invalid_files = invalid;
        let names: BTreeSet<&String> = self.pools.keys().collect();
        b.pools.retain(|n, _| names.contains(n));
        drop(b);
        for name in self.pools.keys() {
            self.publish_pool(name);
        }
        self.sync_lease_policies();
        report
    }

    /// Loads a pool's persisted state; problems are reported (and returned, by kind, for the
    /// pool's health) and the pool starts afresh. Records dated in the future are discarded.
    fn restore(&self, name: &str, now: Timestamp) -> (PoolState, Vec<(&'static str, String)>) {
        let mut problems = Vec::new();
        let state = match self.store.load(name, now) {
            Ok(Some(mut s)) => {
                if let Some(msg) = discard_future(&mut s.cycle, now) {
                    problems.push(("future", msg));
                }
                info!(
                    policy = %name,
                    samples = s.cycle.history().samples().values().map(std::collections::VecDeque::len).sum::<usize>(),
                    records = s.cycle.history().records().len(),
                    saved_at = %s.saved_at,
                    "state restored"
                );
                s
            }
            Ok(None) => PoolState::new(name, now),
            Err(e) => {
                match &e {
                    StateError::Corrupt { .. } => {
                        error!(policy = %name, error = %e, "state file corrupt: starting afresh")
                    }
                    _ => error!(policy = %name, error = %e, "state unreadable: starting afresh"),
                }
                self.board.lock().counters.state_errors += 1;
                problems.push(("state", format!("state set aside, the pool started afresh: {e}")));
                PoolState::new(name, now)
            }
        };
        (state, problems)
    }

    /// One turn of the loop: evaluates every pool due at `now`.
    pub async fn tick(&mut self, now: Timestamp) -> TickReport {
        // Due when its time has come, or when its last evaluation is after `now`: the wall clock
        // stepped back, and waiting for it to catch up would stall the pool (the engine holds the
        // cooldowns of decisions in the clock's future).
        let stepped_back = |p: &Pool| p.state.cycle.last_evaluated().is_some_and(|at| at > now);
        let due: Vec<String> =
            self.pools.iter().filter(|(_, p)| p.next_due <= now || stepped_back(p)).map(|(n, _)| n.clone()).collect();
        // Pools with a drain to check (or a member to register) that are not due anyway.
        let checks: Vec<String> = self
            .pools
            .iter()
            .filter(|(n, p)| p.drain_due.is_some_and(|d| d <= now) && !due.contains(n))
            .map(|(n, _)| n.clone())
            .collect();
        let wanted: Vec<String> = due.iter().chain(&checks).cloned().collect();
        // With leases, only the pools held here (each under its guard until the tick ends).
        let (held, guards) = self.gate(wanted, now);
        for name in checks.iter().filter(|n| !held.contains(n)) {
            // Held elsewhere now: that daemon's sweep registers the member again (its drain
            // state is this host's); checking here would only spin.
            if let Some(p) = self.pools.get_mut(name) {
                p.drain_due = None;
            }
        }
        let (due, checks): (Vec<String>, Vec<String>) = held.into_iter().partition(|n| !checks.contains(n));
        let mut report = TickReport::default();
        if let Some(inbox) = &self.alerts {
            inbox.expire(now);
        }
        if !due.is_empty() {
            let started = crate::clock::monotonic();
            let span = info_span!("tick", pools = due.len());
            self.tick_pools(&due, &guards, now, &mut report).instrument(span).await;
            self.board.lock().counters.tick_seconds.observe(started.elapsed().as_secs_f64());
        }
        if !checks.is_empty() {
            let span = info_span!("drain_checks", pools = checks.len());
            self.drain_checks(&checks, &guards, now).instrument(span).await;
        }
        drop(guards);
        self.publish_api_stats(now);
        self.heartbeat.beat();
        report.next_due = self.next_due();
        report
    }

    async fn tick_pools(
        &mut self,
        due: &[String],
        guards: &BTreeMap<String, LeaseGuard>,
        now: Timestamp,
        report: &mut TickReport,
    ) {
        // A history read an earlier tick left running, once it is done (see below).
        if let Some(done) = self.past.take_if(|p| p.is_finished()) {
            let (plans, answers) = done.collect().await;
            self.fold_past(plans, answers, now);
        }
        let policies: Vec<&Policy> = due.iter().filter_map(|n| self.pools.get(n)).map(|p| &p.policy).collect();
        // Every loaded pool's claim, not only the due ones: an instance another pool also claims
        // is left alone by both.
        let claims: Vec<&PoolTarget> = self.pools.values().map(|p| &p.policy.pool).collect();
        let cloud = Arc::clone(&self.cloud);
        let mut fleets = cloud.fleets(&policies, &claims).await;
        for (name, fleet) in fleets.iter_mut() {
            // Draining members serve nothing: their metrics stay out of per-instance averages.
            if let (Ok(d), Some(p)) = (fleet, self.pools.get(name)) {
                drain::mark_draining(&p.state, &mut d.fleet);
            }
        }
        let queries: Vec<PoolQuery> = policies
            .iter()
            .filter_map(|p| match fleets.get(&p.name) {
                Some(Ok(d)) => Some(PoolQuery::new(p, Some(&d.fleet))),
                _ => None,
            })
            .collect();
        let lookback = policies.iter().map(|p| lookback(p)).max().unwrap_or(Duration::from_secs(600));
        let cloudwatch = async {
            if queries.is_empty() {
                BTreeMap::new()
            } else {
                cloud.fetch_metrics(&queries, now, self.cfg.metric_offset, lookback).await
            }
        };
        let prometheus = fetch_prometheus(self.prometheus.as_ref(), &queries, now, self.cfg.metric_offset);
        // The forecast's past load, for pools whose model has none yet: read beside the tick's
        // own reads, and waited for at most `HISTORY_GRACE` after them (a long read goes on in
        // the background and is folded in at a later tick, so it never holds the evaluations).
        // One read at a time (an earlier one that has finished was folded in above).
        let (plans, nothing) = if self.past.is_none() { self.plan_past(due, &fleets, now) } else { Default::default() };
        let reading = (!plans.is_empty())
            .then(|| forecast::PastInFlight::start(Arc::clone(&cloud), self.prometheus.clone(), plans));
        let (mut metrics, prometheus) = tokio::join!(cloudwatch, prometheus);
        merge_prometheus(&mut metrics, prometheus);
        drop(queries);
        self.nothing_to_read(nothing);
        if let Some(reading) = reading {
            match reading.within(forecast::HISTORY_GRACE).await {
                Ok((plans, answers)) => self.fold_past(plans, answers, now),
                Err(still) => {
                    tracing::info!(
                        pools = still.pools(),
                        "forecast history still being read: folded in at a later tick"
                    );
                    self.past = Some(still);
                }
            }
        }
        for name in due {
            let fleet = fleets.remove(name).map(|r| r.map(|d| self.note_left_alone(name, d)));
            let pool_metrics = metrics.remove(name);
            let guard = guards.get(name);
            let span = info_span!("evaluate", policy = %name, lease_token = guard.map(LeaseGuard::token));
            let started = crate::clock::monotonic();
            let entry = self.evaluate(name, now, fleet, pool_metrics, guard).instrument(span).await;
            let took = started.elapsed().as_secs_f64();
            self.board.lock().counters.evaluation_seconds.entry(name.clone()).or_default().observe(took);
            if let Some(p) = self.pools.get_mut(name) {
                p.view.last_evaluation_seconds = Some(took);
                // Once per evaluation, whichever way it ended (decided, degraded, recovered).
                self.publish_pool(name);
            }
            self.heartbeat.beat();
            report.evaluated.push(name.clone());
            if let Some(e) = entry {
                report.decisions.push(e);
            }
        }
    }

    /// Keeps what a pool leaves alone for its health; logs it when it changes.
    fn note_left_alone(&mut self, name: &str, described: Described) -> Fleet {
        let left: Vec<String> = described.left_alone.iter().map(ToString::to_string).collect();
        if let Some(pool) = self.pools.get_mut(name)
            && pool.left_alone != left
        {
            if !left.is_empty() {
                warn!(policy = %name, instances = %left.join("; "), "instances with the pool's tag are not its own: left alone");
            }
            pool.left_alone = left;
        }
        described.fleet
    }

    /// One pool's evaluation, as the cycle it is: reconcile what an earlier run left, read,
    /// decide, act (intent first, behind the fence), complete the cycle with what was achieved,
    /// record, and publish the pool's view.
    async fn evaluate(
        &mut self,
        name: &str,
        now: Timestamp,
        fleet: Option<Result<Fleet, FleetError>>,
        metrics: Option<PoolMetrics>,
        guard: Option<&LeaseGuard>,
    ) -> Option<DecisionEntry> {
        let mut fleet = match Problem::of_fleet(fleet) {
            Ok(f) => f,
            Err(problem) => return self.fail(name, now, problem, false),
        };
        let alert_floors = self.alerts.as_ref().map(|a| a.floors(name, now)).unwrap_or_default();
        let (cloud, paused) = (Arc::clone(&self.cloud), self.ops.pause_of(name, now));
        let dry_run = self.pools.get(name)?.dry_run(self.cfg.dry_run);
        let pool = self.pools.get_mut(name)?;
        if replay_intent(pool, &fleet) {
            self.board.lock().counters.reconciled += 1;
        }
        inherit_handover(pool, guard);
        let metric_error = observe(pool, metrics, &mut fleet);
        let ec2_fleet = fleet.clone();
        let lb = match observe_load_balancers(&*cloud, pool, &mut fleet, now).await {
            Ok(lb) => lb,
            Err(e) => {
                // Without the load balancer's view nothing is stopped, started or registered.
                pool.drain_due = pool.drain_due.map(|_| later(now, drain::DRAIN_CHECK));
                let _ = self.store.save(&pool.state);
                return self.fail(name, now, Problem::transient(format!("target groups: {e}")), false);
            }
        };
        prepare_history(pool, dry_run, now);
        let decision = pool.state.cycle.evaluate_with(&pool.policy, &fleet, &alert_floors, now);
        let act = Act { cloud: &*cloud, store: &self.store, budget: self.cfg.action_budget, guard, now };
        let (fleets, lb) = ((&fleet, &ec2_fleet), &lb);
        let outcomes = if decision.actions.is_empty() || paused.is_some() {
            vec![]
        } else if dry_run {
            act.carry_out(pool, fleets, lb, &decision, true).await
        } else {
            act.after_intent(pool, fleets, lb, &decision).await
        };
        pool.state.cycle.complete(achieved_by(pool, dry_run, &decision, &outcomes));
        let finished = act.move_drains_on(pool, lb, &decision, &outcomes, dry_run).await;
        let mut outcomes = outcomes;
        outcomes.extend(finished.outcomes);
        let entry = annotated_entry(&decision, &outcomes, dry_run, paused.as_ref(), metric_error.as_deref());
        let previous = record(pool, &decision, entry.clone(), self.cfg.decisions_kept, now);
        pool.view = view(pool, &decision, &fleet, lb, self.alerts.as_deref(), paused, now);
        let saved = save(&self.store, pool);
        self.count(name, &decision, &outcomes, !saved, &finished.durations);
        crate::activity::log_evaluation(&self.ops.activity, &decision, &entry, previous.as_ref());
        let failed = outcomes.iter().filter(|o| matches!(o, Outcome::Failed { .. } | Outcome::Unknown { .. })).count();
        match metric_error {
            Some(msg) => self.fail(name, now, Problem::transient(msg), true),
            None if failed > 0 => self.fail(name, now, Problem::transient(format!("{failed} action(s) failed")), true),
            None => self.recover(name, now),
        };
        Some(entry)
    }

    /// Counts an evaluation, its direction, outcomes and finished drains, on the board.
    fn count(&self, name: &str, decision: &Decision, outcomes: &[Outcome], save_failed: bool, drained: &[f64]) {
        let mut b = self.board.lock();
        let c = &mut b.counters;
        *c.evaluations.entry((name.to_owned(), "ok")).or_default() += 1;
        let dir = match decision.direction() {
            Some(vmscaler_engine::Direction::Up) => "up",
            Some(vmscaler_engine::Direction::Down) => "down",
            None => "hold",
        };
        *c.decisions.entry((name.to_owned(), dir)).or_default() += 1;
        for o in outcomes {
            *c.actions.entry((name.to_owned(), o.kind().to_owned())).or_default() += 1;
        }
        if save_failed {
            c.state_errors += 1;
        }
        c.drain_seconds.extend(drained.iter().copied());
    }

    /// The board's view of a pool, computed from the pool itself (its state, its last
    /// evaluation's view, its failures and lease), never kept in step by hand: the only writer
    /// of a pool's entry on the board.
    fn publish_pool(&self, name: &str) {
        let Some(pool) = self.pools.get(name) else { return };
        let v = &pool.view;
        let pb = PoolBoard {
            policy: name.to_owned(),
            file: pool.file.display().to_string(),
            dry_run: pool.dry_run(self.cfg.dry_run),
            current: v.current,
            desired: v.desired,
            score: v.score,
            shortfall: v.shortfall,
            prewarm: v.prewarm.clone(),
            last_evaluation: v.last_evaluation,
            next_evaluation: Some(pool.next_due),
            consecutive_failures: pool.failures,
            last_error: pool.last_error.clone(),
            decisions: pool.state.decisions.clone(),
            lease: pool.lease.clone(),
            draining: v.draining.clone(),
            paused: v.paused.clone(),
            next_floor: v.next_floor.clone(),
            warnings: v.warnings.clone(),
            alert_floors: v.alert_floors.clone(),
            forecast: v.forecast.clone(),
            metrics: v.metrics.clone(),
            last_evaluation_seconds: v.last_evaluation_seconds,
        };
        self.board.lock().pools.insert(name.to_owned(), pb);
    }

    /// Counts a degraded evaluation (`decided`: a decision was still made, on partial data),
    /// applying the one error policy ([`error_policy`]): when the pool is tried again, and what
    /// its health and the board say. Logs the 1st, 2nd, 4th, 8th... in a row at warn level
    /// (denied: error level), the others at debug level. Returns no decision, for an
    /// evaluation that stops here. The tick publishes the pool's board entry after it.
    fn fail(&mut self, name: &str, now: Timestamp, problem: Problem, decided: bool) -> Option<DecisionEntry> {
        let pool = self.pools.get_mut(name)?;
        pool.failures = pool.failures.saturating_add(1);
        let n = pool.failures;
        let (retry_in, msg) = error_policy(&problem, pool.policy.interval, n);
        let msg = crate::aws::credentials::shorten(msg);
        if pool.next_due <= now || problem.class == ErrorClass::Throttled {
            pool.next_due = later(now, retry_in).max(pool.next_due);
        }
        if problem.class == ErrorClass::Denied && n.is_power_of_two() {
            error!(policy = %name, consecutive_failures = n, error = %msg, "evaluation degraded: access denied");
        } else if n.is_power_of_two() {
            warn!(policy = %name, consecutive_failures = n, error = %msg, "evaluation degraded");
        } else {
            debug!(policy = %name, consecutive_failures = n, error = %msg, "evaluation degraded");
        }
        if n == 1 {
            self.ops.activity.append(&crate::activity::Event::new(now, Some(name), "degraded", msg.clone()));
        }
        pool.last_error = Some(msg);
        // A decision made on partial data was already counted as ok.
        if !decided {
            *self.board.lock().counters.evaluations.entry((name.to_owned(), "error")).or_default() += 1;
        }
        None
    }

    fn recover(&mut self, name: &str, now: Timestamp) -> Option<DecisionEntry> {
        let pool = self.pools.get_mut(name)?;
        if pool.failures > 0 {
            info!(policy = %name, after = pool.failures, "evaluation recovered");
            let message = format!("recovered after {} degraded evaluation(s)", pool.failures);
            self.ops.activity.append(&crate::activity::Event::new(now, Some(name), "recovered", message));
        }
        pool.failures = 0;
        pool.last_error = None;
        None
    }

    fn publish_api_stats(&self, now: Timestamp) {
        let api: Vec<ApiOp> = self
            .cloud
            .api_stats()
            .into_iter()
            .map(|o| ApiOp {
                operation: o.operation.to_string(),
                calls: o.calls,
                errors: o.errors,
                throttled: o.throttled,
            })
            .collect();
        let mut b = self.board.lock();
        b.api = api;
        b.last_tick = Some(now);
    }
}

/// A problem in one evaluation: what it means ([`ErrorClass`]) and what was seen.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    class: ErrorClass,
    message: String,
}

impl Problem {
    fn new(class: ErrorClass, message: String) -> Problem {
        Problem { class, message }
    }

    fn transient(message: impl Into<String>) -> Problem {
        Problem { class: ErrorClass::Transient, message: message.into() }
    }

    /// The pool's fleet as described, or why there is none.
    fn of_fleet(fleet: Option<Result<Fleet, FleetError>>) -> Result<Fleet, Problem> {
        match fleet {
            Some(Ok(f)) => Ok(f),
            Some(Err(e)) => Err(Problem::new(e.class(), format!("cannot read the fleet: {e}"))),
            None => Err(Problem::transient("the fleet adapter returned nothing for this pool")),
        }
    }
}

/// Persists the pool's state; whether it was saved (a failure is logged and shows in the pool's
/// health until a save works again).
fn save(store: &StateStore, pool: &mut Pool) -> bool {
    let result = store.save(&pool.state);
    pool.save_failing = result.as_ref().err().map(ToString::to_string);
    if let Err(e) = &result {
        error!(error = %e, "cannot persist state");
    }
    result.is_ok()
}

/// The most a throttled pool's evaluations are spaced out, in intervals.
const MAX_BACKOFF_INTERVALS: u32 = 8;

/// The daemon's one error policy: for a pool's `failures`-th degraded evaluation in a row, when
/// to try again and what to report (its health, the board, the log). Throttling backs off
/// (1, 2, 4, then 8 intervals: asking again at once only deepens it); access denied and
/// not found say what to check; anything else is tried again at the next interval.
fn error_policy(problem: &Problem, interval: Duration, failures: u32) -> (Duration, String) {
    let msg = &problem.message;
    match problem.class {
        ErrorClass::Throttled => {
            let factor = 1u32 << failures.saturating_sub(1).min(MAX_BACKOFF_INTERVALS.trailing_zeros());
            let wait = interval.saturating_mul(factor);
            (
                wait,
                format!(
                    "{msg} (throttled: backing off, next evaluation in {})",
                    vmscaler_engine::duration::Human(wait)
                ),
            )
        }
        ErrorClass::Denied => (
            interval,
            format!("{msg} (access denied: `vmscaler iam-policy` prints the permissions the daemon's role needs)"),
        ),
        ErrorClass::NotFound => {
            (interval, format!("{msg} (not found: check the pool's tag or group name, the region and the endpoint)"))
        }
        ErrorClass::Transient => (interval, msg.clone()),
    }
}

/// What a pool's last evaluation showed, for the board (see `Daemon::publish_pool`).
#[derive(Debug, Clone, Default)]
struct PoolView {
    current: Option<u32>,
    desired: Option<u32>,
    score: Option<f64>,
    shortfall: u32,
    prewarm: Option<PrewarmBoard>,
    last_evaluation: Option<Timestamp>,
    last_evaluation_seconds: Option<f64>,
    draining: Vec<board::DrainBoard>,
    paused: Option<crate::ops::Pause>,
    next_floor: Option<board::NextFloorBoard>,
    warnings: Vec<String>,
    alert_floors: Vec<crate::alerts::HeldAlert>,
    forecast: Option<forecast::ForecastBoard>,
    metrics: Vec<MetricBoard>,
}

/// A previous run decided and may have acted, then stopped before recording the outcome (a
/// crash, or actions that outlasted the budget): its record goes back into the cycle as
/// decided, so its cooldown holds, and its decision is listed with what the fleet shows was
/// done. Whether there was one.
fn replay_intent(pool: &mut Pool, fleet: &Fleet) -> bool {
    let Some(intent) = pool.state.intent.take() else { return false };
    let outcomes = reconcile(&intent, fleet);
    drain::adopt_intent(&pool.policy, &intent.actions, intent.record.at, fleet, &mut pool.state);
    warn!(
        decided_at = %intent.record.at,
        desired = intent.record.desired,
        outcomes = %outcomes.join("; "),
        "an earlier evaluation did not finish acting (a crash, or its budget ran out): reconciled with the fleet"
    );
    pool.state.cycle.replay(intent.record);
    let mut entry = intent.entry;
    entry.outcomes = outcomes;
    pool.state.decisions.push_back(entry);
    true
}

/// At the first evaluation under a new lease, the previous holder's cooldowns apply here too.
fn inherit_handover(pool: &mut Pool, guard: Option<&LeaseGuard>) {
    let Some(g) = guard else { return };
    if pool.inherited_token == Some(g.token()) {
        return;
    }
    pool.inherited_token = Some(g.token());
    if let Some(text) = g.inherited() {
        match HandoverV1::parse(text).map(|records| pool.state.cycle.merge(records)) {
            Ok(0) => {}
            Ok(n) => info!(records = n, token = g.token(), "scaling records inherited from the lease"),
            Err(e) => warn!(error = %e, "the lease's handover is unreadable: ignored"),
        }
    }
}

/// Feeds the datapoints that arrived into the cycle and members' CPU into the fleet; why a
/// metric is missing, if one is.
fn observe(pool: &mut Pool, metrics: Option<PoolMetrics>, fleet: &mut Fleet) -> Option<String> {
    let m = metrics?;
    for (id, samples) in m.samples {
        for s in samples {
            pool.state.cycle.observe(&id, s);
        }
    }
    apply_member_cpu(fleet, &m.member_cpu);
    (!m.errors.is_empty()).then(|| format!("metrics: {}", m.errors.join("; ")))
}

/// The pool's target groups and members' health (pools that drain); marks draining and
/// warming members in `fleet`. A cloud without load balancers cannot run such a pool.
async fn observe_load_balancers(
    cloud: &dyn Cloud,
    pool: &mut Pool,
    fleet: &mut Fleet,
    now: Timestamp,
) -> Result<drain::Lb, String> {
    match cloud.load_balancers() {
        Some(aws) => drain::observe(aws, &pool.policy, &mut pool.lb, &mut pool.state, fleet, now).await,
        None if pool.policy.drains() => Err("this cloud has no load balancers".to_owned()),
        None => Ok(drain::Lb::default()),
    }
}

/// Before deciding: records dated beyond now + tolerance (left by a clock that was ahead) are
/// discarded, and the pool's health says so; a live pool forgets the cooldowns of what a dry
/// run decided (it was never done).
fn prepare_history(pool: &mut Pool, dry_run: bool, now: Timestamp) {
    if let Some(msg) = discard_future(&mut pool.state.cycle, now) {
        pool.notices.insert("future", (msg, later(now, pool.policy.history.window)));
    }
    if !dry_run {
        let n = pool.state.cycle.end_dry_run();
        if n > 0 {
            info!(records = n, "live after a dry run: the dry-run decisions start no cooldown");
        }
    }
}

/// What acting needs besides the pool: the cloud, where intents are written, the budget and
/// the lease guard.
struct Act<'a> {
    cloud: &'a dyn Cloud,
    store: &'a StateStore,
    budget: Duration,
    guard: Option<&'a LeaseGuard>,
    now: Timestamp,
}

impl Act<'_> {
    /// Carries out `decision` (through drains for pools behind load balancers), checking the
    /// fence before every mutating call. `fleets`: as decided on, and as EC2 shows it.
    async fn carry_out(
        &self,
        pool: &mut Pool,
        (fleet, ec2_fleet): (&Fleet, &Fleet),
        lb: &drain::Lb,
        decision: &Decision,
        dry_run: bool,
    ) -> Vec<Outcome> {
        let fence = if dry_run { None } else { self.guard.map(|g| g as &dyn Fence) };
        match self.cloud.load_balancers() {
            Some(aws) if pool.policy.drains() => {
                let (policy, draining) = (&pool.policy, &mut pool.state.draining);
                drain::act(aws, policy, lb, ec2_fleet, decision, draining, dry_run, fence, self.now).await
            }
            _ => self.cloud.act(&pool.policy, fleet, decision, dry_run, fence).await,
        }
    }

    /// Write-ahead: the intent is durable (and, with a lease, the handover written with the
    /// fence) before the first mutating call, or nothing is done: a crash mid-action must not
    /// forget the change and its cooldown. An outcome that is not known (a timeout, a dropped
    /// answer, a 5xx, the budget running out) keeps the intent: the next evaluation reconciles
    /// it with the fleet, cooldown counted.
    async fn after_intent(
        &self,
        pool: &mut Pool,
        fleets: (&Fleet, &Fleet),
        lb: &drain::Lb,
        decision: &Decision,
    ) -> Vec<Outcome> {
        pool.state.intent = pool.state.cycle.pending().map(|decided| Intent {
            record: *decided,
            actions: decision.actions.clone(),
            entry: entry_for(decision, &[], false),
        });
        pool.state.saved_at = self.now;
        if let Some(g) = self.guard {
            g.leave_for_next(HandoverV1::text(&pool.state.cycle.handover()));
        }
        if let Err(e) = self.store.save(&pool.state) {
            error!(error = %e, "cannot persist the intent before acting: not acting");
            pool.state.intent = None;
            return vec![Outcome::Failed { what: "persist intent before acting".to_owned(), error: e.to_string() }];
        }
        let budget = self.budget;
        match tokio::time::timeout(budget, self.carry_out(pool, fleets, lb, decision, false)).await {
            Ok(outcomes) if outcomes.iter().any(Outcome::is_unknown) => {
                warn!("an action's outcome is unknown: kept as an intent, reconciled at the next evaluation");
                outcomes
            }
            Ok(outcomes) => {
                pool.state.intent = None;
                outcomes
            }
            Err(_) => {
                warn!(budget = ?budget, "actions outlasted the evaluation budget: outcome unknown, kept as an intent");
                let error = format!("not finished within the evaluation budget of {budget:?}: outcome unknown");
                vec![Outcome::Unknown { what: "actions".to_owned(), error }]
            }
        }
    }

    /// Drains under way move on; members outside their target groups are registered; the pool
    /// is checked again between evaluations while it needs it.
    async fn move_drains_on(
        &self,
        pool: &mut Pool,
        lb: &drain::Lb,
        decision: &Decision,
        outcomes: &[Outcome],
        dry_run: bool,
    ) -> drain::Finished {
        let started = outcomes.iter().any(|o| matches!(o, Outcome::Started { .. }));
        let finished = match self.cloud.load_balancers() {
            Some(aws) => {
                let fence = self.guard.map(|g| g as &dyn Fence);
                let acted_on = drain::acted_on(&decision.actions);
                drain::progress(aws, &pool.policy, lb, &mut pool.state, &acted_on, dry_run, fence, self.now).await
            }
            None => drain::Finished::default(),
        };
        pool.drain_due = drain::needs_check(lb, &pool.state, started).then(|| later(self.now, drain::DRAIN_CHECK));
        finished
    }
}

/// What the evaluation's actions achieved, for [`PoolCycle::complete`]: unknown while an
/// intent is pending, the plan in a dry run, the capacity reached otherwise.
fn achieved_by(pool: &Pool, dry_run: bool, decision: &Decision, outcomes: &[Outcome]) -> Achieved {
    if pool.state.intent.is_some() {
        Achieved::Unknown
    } else if dry_run {
        Achieved::DryRun
    } else if decision.actions.is_empty() {
        Achieved::AsDecided
    } else {
        achieved(decision.current, outcomes)
    }
}

/// The decision as listed, with why a metric was missing and whether a pause held its actions.
fn annotated_entry(
    decision: &Decision,
    outcomes: &[Outcome],
    dry_run: bool,
    paused: Option<&crate::ops::Pause>,
    metric_error: Option<&str>,
) -> DecisionEntry {
    let mut entry = entry_for(decision, outcomes, dry_run);
    if let Some(p) = paused.filter(|_| !decision.actions.is_empty()) {
        entry.outcomes.push(format!("not acted on: {}", p.describe()));
    }
    if let Some(why) = metric_error {
        entry.reasons.push(why.to_owned());
    }
    entry
}

/// Lists the decision (the newest `keep` are kept), schedules the next evaluation, lets
/// expired notices go and logs it. Returns the entry listed before this one.
fn record(
    pool: &mut Pool,
    decision: &Decision,
    entry: DecisionEntry,
    keep: usize,
    now: Timestamp,
) -> Option<DecisionEntry> {
    let previous = pool.state.decisions.back().cloned();
    let news = previous
        .as_ref()
        .is_none_or(|p| (p.current, p.desired) != (entry.current, entry.desired) || !p.outcomes.is_empty());
    log_decision(decision, &entry, news);
    pool.state.decisions.push_back(entry);
    while pool.state.decisions.len() > keep {
        pool.state.decisions.pop_front();
    }
    pool.state.saved_at = now;
    pool.next_due = decision.next_evaluation.max(now.checked_add(Duration::from_secs(1)).unwrap_or(now));
    pool.notices.retain(|_, (_, until)| *until > now);
    previous
}

/// What the board shows of the pool after this evaluation.
fn view(
    pool: &Pool,
    decision: &Decision,
    fleet: &Fleet,
    lb: &drain::Lb,
    alerts: Option<&AlertInbox>,
    paused: Option<crate::ops::Pause>,
    now: Timestamp,
) -> PoolView {
    PoolView {
        current: Some(decision.current),
        desired: Some(decision.desired),
        score: decision.score,
        shortfall: decision.shortfall,
        prewarm: decision.floor.as_ref().map(|f| PrewarmBoard {
            rule: f.rule.clone(),
            capacity: f.capacity,
            ramping: f.ramping,
        }),
        last_evaluation: Some(now),
        last_evaluation_seconds: pool.view.last_evaluation_seconds,
        draining: drain::board(&pool.state, lb.timeout),
        paused,
        next_floor: vmscaler_engine::calendar::next_floor_start(&pool.policy, now)
            .map(|(rule, at)| board::NextFloorBoard { rule, at }),
        warnings: pool_warnings(pool, decision, fleet),
        alert_floors: alerts.map(|a| a.held(&pool.policy.name)).unwrap_or_default(),
        forecast: pool
            .policy
            .predictive
            .as_ref()
            .zip(pool.state.cycle.forecaster())
            .map(|(spec, f)| forecast::board(spec, pool.policy.max, f, decision, pool.forecast_history.clone(), now)),
        metrics: decision
            .readings
            .iter()
            .map(|r| MetricBoard {
                metric: r.metric.clone(),
                value: r.value,
                ratio: r.ratio,
                wanted_capacity: r.wanted,
                sampled_at: r.sampled_at,
            })
            .collect(),
    }
}

/// Drops records and samples dated beyond `now` + [`FUTURE_TOLERANCE`] from a pool's history;
/// says what it dropped (logged at error level: the clock was, or is, wrong).
fn discard_future(cycle: &mut PoolCycle, now: Timestamp) -> Option<String> {
    let d = cycle.discard_future(now, FUTURE_TOLERANCE);
    if d.is_empty() {
        return None;
    }
    let latest = d.latest.map_or_else(String::new, |t| format!(", the latest dated {t}"));
    let msg = format!(
        "{} record(s) and {} sample(s) dated after now ({now}) were discarded{latest}, {} scaling record(s) re-dated \
         to now (their cooldown counted from now): the clock was ahead, or is behind",
        d.records, d.samples, d.redated
    );
    error!(records = d.records, samples = d.samples, redated = d.redated, latest = ?d.latest, "history dated in the future discarded");
    Some(msg)
}

/// Why a pool that evaluated is not healthy, if it is not: a metric with no datapoint within
/// `max_age`, no members at all (a wrong region, endpoint or tag), instances it leaves alone,
/// saves failing, and the notices still in force (a state file set aside, records from the
/// future).
fn pool_warnings(pool: &Pool, decision: &Decision, fleet: &Fleet) -> Vec<String> {
    let mut out = Vec::new();
    let missing: Vec<&str> =
        decision.readings.iter().filter(|r| r.value.is_none()).map(|r| r.metric.as_str()).collect();
    if !missing.is_empty() {
        out.push(format!(
            "no datapoint within max_age {} for {}",
            vmscaler_engine::duration::Human(pool.policy.history.max_age),
            missing.join(", ")
        ));
    }
    if let Fleet::Instances { members } = fleet
        && members.is_empty()
    {
        out.push("no instance carries the pool's tag (wrong region, endpoint or tag?)".to_owned());
    }
    if !pool.left_alone.is_empty() {
        out.push(format!(
            "{} instance(s) with the pool's tag left alone: {}",
            pool.left_alone.len(),
            pool.left_alone.join("; ")
        ));
    }
    if let Some(e) = &pool.save_failing {
        out.push(format!("state cannot be saved: {e}"));
    }
    out.extend(pool.notices.values().map(|(m, _)| m.clone()));
    out
}

/// Reads the `source: prometheus` metrics of `queries` (every pool whose fleet was read).
/// Without a `prometheus:` section such metrics are missing, each with that reason.
async fn fetch_prometheus(
    client: Option<&PromClient>,
    queries: &[PoolQuery<'_>],
    now: Timestamp,
    offset: Duration,
) -> BTreeMap<String, PromPool> {
    let wanted: Vec<PoolQuery<'_>> =
        queries.iter().filter(|q| crate::prometheus::uses_prometheus(q.policy)).cloned().collect();
    if wanted.is_empty() {
        return BTreeMap::new();
    }
    match client {
        Some(c) => crate::prometheus::fetch_pools(c, &wanted, now, offset).await,
        None => wanted
            .iter()
            .map(|q| {
                let missing = q
                    .policy
                    .metrics
                    .iter()
                    .filter(|m| crate::prometheus::query_for(m, &[]).is_some())
                    .map(|m| format!("{}: no `prometheus:` section in the daemon config", m.id))
                    .collect();
                (q.policy.name.clone(), PromPool { samples: BTreeMap::new(), missing })
            })
            .collect(),
    }
}

/// Adds each pool's Prometheus datapoints and missing-metric reasons to its CloudWatch answer.
fn merge_prometheus(metrics: &mut BTreeMap<String, PoolMetrics>, prometheus: BTreeMap<String, PromPool>) {
    for (name, p) in prometheus {
        let m = metrics.entry(name).or_default();
        for (id, sample) in p.samples {
            m.samples.entry(id).or_default().push(sample);
        }
        m.errors.extend(p.missing.into_iter().map(|why| format!("prometheus: {why}")));
    }
}

/// How far back to read metrics for a pool: its freshness limit plus two of its periods,
/// so one missed tick does not lose a datapoint.
fn lookback(policy: &Policy) -> Duration {
    let period = policy.metrics.iter().map(|m| m.period).max().unwrap_or(Duration::from_secs(60));
    policy.history.max_age.max(policy.interval) + period * 2
}

/// What the actions of a decision made at capacity `current` really achieved, from their
/// outcomes: the capacity reached (a group's new desired capacity, or `current` plus the starts
/// minus the stops that worked). The pool's cycle records no cooldown when nothing changed.
pub fn achieved(current: u32, outcomes: &[Outcome]) -> Achieved {
    let mut set_desired = None;
    let (mut started, mut stopped) = (0u32, 0u32);
    for o in outcomes {
        match o {
            Outcome::Started { .. } => started += 1,
            Outcome::Stopped { .. } | Outcome::Draining { .. } => stopped += 1,
            Outcome::DrainCancelled { .. } => started += 1,
            Outcome::DesiredSet { desired, .. } => set_desired = Some(*desired),
            _ => {}
        }
    }
    Achieved::Capacity(set_desired.unwrap_or_else(|| current.saturating_add(started).saturating_sub(stopped)))
}

/// What an interrupted [`Intent`] did, as far as the fleet described after the restart shows:
/// one line per instance or group. Its record is kept as decided, cooldown included, even for
/// the parts the fleet does not show yet: a request the stopped run sent may still be on its way
/// (or EC2's eventually consistent `DescribeInstances` may not show it yet), and acting again
/// now could do it twice. Whatever really did not happen is decided again once the cooldown
/// ends, from the fleet as it then is: delayed by one cooldown, never lost, never repeated.
fn reconcile(intent: &Intent, fleet: &Fleet) -> Vec<String> {
    let state_of = |id: &str| match fleet {
        Fleet::Instances { members } => members.iter().find(|m| m.id == id).map(|m| m.state),
        Fleet::Group(_) => None,
    };
    let mut lines = Vec::new();
    for action in &intent.actions {
        match action {
            Action::Start { instance_ids } => {
                for id in instance_ids {
                    lines.push(match state_of(id) {
                        Some(MemberState::Pending | MemberState::Running) => {
                            format!("started {id} (confirmed by the fleet)")
                        }
                        s => format!("start {id} unconfirmed (found {} afterwards)", state_name(s)),
                    });
                }
            }
            Action::Stop { instance_ids } => {
                for id in instance_ids {
                    lines.push(match state_of(id) {
                        Some(MemberState::Stopping | MemberState::Stopped | MemberState::Gone) | None => {
                            format!("stopped {id} (confirmed by the fleet)")
                        }
                        s => format!("stop {id} unconfirmed (found {} afterwards)", state_name(s)),
                    });
                }
            }
            Action::CancelDrain { instance_ids } => {
                for id in instance_ids {
                    lines.push(format!("cancel the drain of {id}: registered again by this evaluation if it is not"));
                }
            }
            Action::SetDesiredCapacity { group, desired } => lines.push(match fleet {
                Fleet::Group(g) if g.name == *group && g.desired == *desired => {
                    format!("set desired capacity of {group} to {desired} (confirmed by the fleet)")
                }
                _ => format!("set desired capacity of {group} to {desired} unconfirmed"),
            }),
        }
    }
    lines
}

fn state_name(s: Option<MemberState>) -> &'static str {
    match s {
        None => "no such member",
        Some(MemberState::Running) => "running",
        Some(MemberState::Pending) => "pending",
        Some(MemberState::Stopping) => "stopping",
        Some(MemberState::Stopped) => "stopped",
        Some(MemberState::Gone) => "gone",
        Some(MemberState::Warming) => "running, not yet healthy in its target groups",
        Some(MemberState::Draining) => "draining",
    }
}

fn entry_for(d: &Decision, outcomes: &[Outcome], dry_run: bool) -> DecisionEntry {
    DecisionEntry {
        policy: d.policy.clone(),
        at: d.at,
        current: d.current,
        desired: d.desired,
        score: d.score,
        proposal: d.proposal,
        reasons: d.reasons(),
        outcomes: outcomes.iter().map(ToString::to_string).collect(),
        dry_run,
        prewarm: d.floor.as_ref().map(|f| f.rule.clone()),
        shortfall: d.shortfall,
        next_evaluation: d.next_evaluation,
    }
}

/// Logs a decision: at info level when it acts, or holds at a capacity other than the previous
/// decision's (`news`); a repeated hold goes to debug level (`/v1/decisions` has every one).
fn log_decision(d: &Decision, e: &DecisionEntry, news: bool) {
    let score = d.score.map(|s| format!("{s:.3}")).unwrap_or_else(|| "none".to_owned());
    let reason = e.reasons.join("; ");
    let outcomes = e.outcomes.join("; ");
    if d.desired != d.current || !e.outcomes.is_empty() {
        info!(current = d.current, desired = d.desired, score = %score, proposal = d.proposal, dry_run = e.dry_run, reason = %reason, outcomes = %outcomes, "decision");
    } else if news {
        info!(current = d.current, desired = d.desired, score = %score, proposal = d.proposal, reason = %reason, "hold");
    } else {
        debug!(current = d.current, desired = d.desired, score = %score, proposal = d.proposal, reason = %reason, "hold");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmscaler_engine::{Direction, EvalRecord};

    fn record(current: u32, desired: u32, scaled: Option<Direction>) -> EvalRecord {
        EvalRecord {
            at: Timestamp::UNIX_EPOCH,
            score: Some(2.0),
            above_band: true,
            proposal: desired,
            current,
            serving: current,
            desired,
            scaled,
            dry_run: false,
        }
    }

    #[test]
    fn outcomes_say_what_capacity_was_reached() {
        let started = |id: &str| Outcome::Started { id: id.into() };
        // Two of three starts worked: 4 reached.
        let a = achieved(2, &[started("a"), started("b"), Outcome::InsufficientCapacity { id: "c".into() }]);
        assert_eq!(a, Achieved::Capacity(4));
        // Nothing worked: the capacity it started from (the cycle records no cooldown).
        assert_eq!(
            achieved(2, &[Outcome::Failed { what: "start".into(), error: "boom".into() }]),
            Achieved::Capacity(2)
        );
        // Stops, drains and a group's desired capacity.
        assert_eq!(achieved(5, &[Outcome::Stopped { id: "x".into() }]), Achieved::Capacity(4));
        assert_eq!(achieved(2, &[Outcome::DesiredSet { group: "g".into(), desired: 6 }]), Achieved::Capacity(6));
    }

    #[test]
    fn an_interrupted_intent_keeps_its_record_and_says_what_the_fleet_shows() {
        use vmscaler_engine::Member;
        let member = |id: &str, state| Member { id: id.into(), state, launched_at: None, protected: false, cpu: None };
        let fleet = Fleet::Instances {
            members: vec![member("i-a", MemberState::Running), member("i-b", MemberState::Stopped)],
        };
        let entry = DecisionEntry {
            policy: "web".into(),
            at: Timestamp::UNIX_EPOCH,
            current: 1,
            desired: 3,
            score: Some(2.0),
            proposal: 3,
            reasons: vec![],
            outcomes: vec![],
            dry_run: false,
            prewarm: None,
            shortfall: 0,
            next_evaluation: Timestamp::UNIX_EPOCH,
        };
        let intent = Intent {
            record: record(1, 3, Some(Direction::Up)),
            actions: vec![Action::Start { instance_ids: vec!["i-a".into(), "i-b".into()] }],
            entry,
        };
        let lines = reconcile(&intent, &fleet);
        assert_eq!(lines, ["started i-a (confirmed by the fleet)", "start i-b unconfirmed (found stopped afterwards)"]);
    }

    #[test]
    fn lookback_covers_freshness_and_two_periods() {
        let text = "name: w\npool: { tag: { key: k, value: v } }\nmin: 1\nmax: 4\ninterval: 1m\nmetrics:\n  - id: cpu\n    namespace: AWS/EC2\n    name: CPUUtilization\n    statistic: Average\n    period: 5m\n    per_instance: avg\n    target: 50\nhistory: { window: 1h, max_age: 10m }\n";
        let report = vmscaler_engine::policy::parse_policy("w.yaml", text);
        let policy = report.policy.unwrap_or_else(|| panic!("{:?}", report.diagnostics));
        assert_eq!(lookback(&policy), Duration::from_secs(600 + 600));
    }
}
