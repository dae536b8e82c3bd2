//! An in-memory [`Cloud`]: each pool is the backtest's simulated pool
//! (`vmscaler_engine::backtest::sim::Pool`: slots started or stopped, capacity that bills and
//! serves), its metrics are values a test sets, and every call is logged. Instances boot at
//! once. Like the AWS adapter, it checks the fence right before every mutating call and does
//! not make the call when the fence fails ([`Outcome::Fenced`]).
//!
//! For tests of the daemon's invariants (see `src/daemon/fast_tests.rs`); not a model of AWS's
//! consistency or errors (the emulator tests cover those).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use vmscaler_engine::backtest::sim::Pool;
use vmscaler_engine::policy::PoolTarget;
use vmscaler_engine::{Action, Decision, Fleet, GroupState, Member, MemberState, Policy, Sample};

use super::{Cloud, CloudFuture};
use crate::aws::actuate::Outcome;
use crate::aws::error::{ApiError, FleetError};
use crate::aws::fleet::Described;
use crate::aws::lease::Fence;
use crate::aws::metrics::history::PastRead;
use crate::aws::metrics::{PoolMetrics, PoolQuery};
use crate::aws::stats::OpStats;

/// Runs right before a mutating call is made (after the fence allowed it), with the policy's
/// name: tests look at the world as the call finds it (is the intent on disk?).
pub type BeforeMutation = Arc<dyn Fn(&str) + Send + Sync>;

struct SimPool {
    pool: Pool,
    /// `Some` for an Auto Scaling group: its name and bounds.
    group: Option<(String, u32, u32)>,
    metrics: BTreeMap<String, f64>,
    unreadable: Option<ApiError>,
}

#[derive(Default)]
struct Inner {
    pools: BTreeMap<String, SimPool>,
    log: Vec<String>,
    before_mutation: Option<BeforeMutation>,
    /// How long a mutating call's answer takes once the change is made.
    answer_delay: Option<Duration>,
    /// How long a read of past load takes (it has no past to give: every pool's read is empty).
    history_delay: Option<Duration>,
}

/// The in-memory cloud (see the module documentation). Cheap to share behind an `Arc`.
#[derive(Default)]
pub struct MemoryCloud(Mutex<Inner>);

impl std::fmt::Debug for MemoryCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryCloud").field("log", &self.lock().log).finish()
    }
}

fn id(policy: &str, slot: usize) -> String {
    format!("i-{policy}-{slot:03}")
}

fn slot(policy: &str, id: &str) -> Option<usize> {
    id.strip_prefix("i-")?.strip_prefix(policy)?.strip_prefix('-')?.parse().ok()
}

impl MemoryCloud {
    pub fn new() -> MemoryCloud {
        MemoryCloud::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A tagged pool for `policy`: `running` members serving, `stopped` ones warm.
    pub fn add_tagged(&self, policy: &str, running: u32, stopped: u32) {
        let pool = Pool::new((running + stopped) as usize, running, 0, true);
        self.lock()
            .pools
            .insert(policy.to_owned(), SimPool { pool, group: None, metrics: BTreeMap::new(), unreadable: None });
    }

    /// An Auto Scaling group `group` for `policy` at `desired`, within `[min, max]`.
    pub fn add_group(&self, policy: &str, group: &str, desired: u32, min: u32, max: u32) {
        let pool = Pool::new(max as usize, desired, 0, false);
        let group = Some((group.to_owned(), min, max));
        self.lock()
            .pools
            .insert(policy.to_owned(), SimPool { pool, group, metrics: BTreeMap::new(), unreadable: None });
    }

    /// The pool-level value `metric` reports from now on; `None`: no datapoints at all.
    pub fn set_metric(&self, policy: &str, metric: &str, value: Option<f64>) {
        if let Some(p) = self.lock().pools.get_mut(policy) {
            match value {
                Some(v) => p.metrics.insert(metric.to_owned(), v),
                None => p.metrics.remove(metric),
            };
        }
    }

    /// Makes describing `policy`'s fleet fail with `error` (`None`: works again).
    pub fn set_unreadable(&self, policy: &str, error: Option<ApiError>) {
        if let Some(p) = self.lock().pools.get_mut(policy) {
            p.unreadable = error;
        }
    }

    /// Calls `hook` right before every mutating call.
    pub fn before_mutation(&self, hook: BeforeMutation) {
        self.lock().before_mutation = Some(hook);
    }

    /// Makes every mutating call take effect at once but answer only `delay` later (tokio's
    /// clock: with a paused clock a test waits no wall time), as a lost or slow answer would.
    pub fn delay_answers(&self, delay: Option<Duration>) {
        self.lock().answer_delay = delay;
    }

    /// Makes every read of past load answer only `delay` later (tokio's clock), as a slow
    /// CloudWatch read of weeks of history would.
    pub fn delay_history(&self, delay: Option<Duration>) {
        self.lock().history_delay = delay;
    }

    /// Instances billed (started) in `policy`'s pool.
    pub fn capacity(&self, policy: &str) -> Option<u32> {
        self.lock().pools.get(policy).map(|p| p.pool.billed)
    }

    /// Every call so far, one line each (`describe web`, `start web i-web-003`, ...).
    pub fn log(&self) -> Vec<String> {
        self.lock().log.clone()
    }

    /// The mutating calls so far.
    pub fn mutations(&self) -> Vec<String> {
        self.log().into_iter().filter(|l| ["start ", "stop ", "set "].iter().any(|p| l.starts_with(p))).collect()
    }

    fn fleet(policy: &str, p: &SimPool) -> Fleet {
        match &p.group {
            Some((name, min, max)) => Fleet::Group(GroupState {
                name: name.clone(),
                desired: p.pool.billed,
                min: *min,
                max: *max,
                in_service: p.pool.serving,
                activity_in_progress: false,
            }),
            None => Fleet::Instances {
                members: (0..p.pool.size())
                    .map(|s| Member {
                        id: id(policy, s),
                        state: match (p.pool.is_started(s), p.pool.is_serving(s)) {
                            (true, true) => MemberState::Running,
                            (true, false) => MemberState::Pending,
                            (false, _) => MemberState::Stopped,
                        },
                        launched_at: None,
                        protected: false,
                        cpu: None,
                    })
                    .collect(),
            },
        }
    }

    /// One mutating call: the fence first, then the hook, then the change.
    async fn mutate(
        &self,
        policy: &str,
        what: String,
        fence: Option<&dyn Fence>,
        change: impl FnOnce(&mut SimPool) -> Outcome,
    ) -> Outcome {
        if let Some(f) = fence
            && let Err(reason) = f.check().await
        {
            self.lock().log.push(format!("fenced {policy}: {what}"));
            return Outcome::Fenced { what, reason };
        }
        let hook = self.lock().before_mutation.clone();
        if let Some(h) = hook {
            h(policy);
        }
        let (outcome, delay) = {
            let mut inner = self.lock();
            inner.log.push(what.clone());
            let outcome = match inner.pools.get_mut(policy) {
                Some(p) => change(p),
                None => Outcome::Failed { what, error: "no such pool".to_owned() },
            };
            (outcome, inner.answer_delay)
        };
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        outcome
    }
}

impl Cloud for MemoryCloud {
    fn fleets<'a>(
        &'a self,
        policies: &'a [&'a Policy],
        _claims: &'a [&'a PoolTarget],
    ) -> CloudFuture<'a, BTreeMap<String, Result<Described, FleetError>>> {
        let mut inner = self.lock();
        let mut out = BTreeMap::new();
        for p in policies {
            inner.log.push(format!("describe {}", p.name));
            let fleet = match inner.pools.get(&p.name) {
                Some(sp) => match &sp.unreadable {
                    Some(e) => Err(FleetError::Call { operation: "DescribeInstances", error: e.clone() }),
                    // Every simulated instance is its pool's own: none is left alone.
                    None => Ok(Described { fleet: MemoryCloud::fleet(&p.name, sp), left_alone: Vec::new() }),
                },
                None => Err(FleetError::GroupNotFound(format!("{} (not in the in-memory cloud)", p.name))),
            };
            out.insert(p.name.clone(), fleet);
        }
        Box::pin(async move { out })
    }

    fn fetch_metrics<'a>(
        &'a self,
        pools: &'a [PoolQuery<'a>],
        now: Timestamp,
        offset: Duration,
        _lookback: Duration,
    ) -> CloudFuture<'a, BTreeMap<String, PoolMetrics>> {
        let mut inner = self.lock();
        let at = now.checked_sub(jiff::SignedDuration::try_from(offset).unwrap_or_default()).unwrap_or(now);
        let mut out = BTreeMap::new();
        for q in pools {
            inner.log.push(format!("metrics {}", q.policy.name));
            let mut m = PoolMetrics::default();
            if let Some(sp) = inner.pools.get(&q.policy.name) {
                for (metric, value) in &sp.metrics {
                    m.samples.insert(metric.clone(), vec![Sample { at, value: *value }]);
                }
            }
            out.insert(q.policy.name.clone(), m);
        }
        Box::pin(async move { out })
    }

    fn fetch_history<'a>(
        &'a self,
        pools: &'a [PoolQuery<'a>],
        _from: Timestamp,
        _end: Timestamp,
    ) -> CloudFuture<'a, BTreeMap<String, PastRead>> {
        let mut inner = self.lock();
        let delay = inner.history_delay;
        let mut out = BTreeMap::new();
        for q in pools {
            inner.log.push(format!("history {}", q.policy.name));
            out.insert(q.policy.name.clone(), PastRead::default());
        }
        Box::pin(async move {
            if let Some(d) = delay {
                tokio::time::sleep(d).await;
            }
            out
        })
    }

    fn act<'a>(
        &'a self,
        policy: &'a Policy,
        _fleet: &'a Fleet,
        decision: &'a Decision,
        dry_run: bool,
        fence: Option<&'a dyn Fence>,
    ) -> CloudFuture<'a, Vec<Outcome>> {
        Box::pin(async move {
            let name = policy.name.as_str();
            let dry_run = dry_run || policy.dry_run;
            let mut out = Vec::new();
            for action in &decision.actions {
                match action {
                    Action::Start { instance_ids } | Action::Stop { instance_ids } => {
                        let start = matches!(action, Action::Start { .. });
                        for i in instance_ids {
                            if dry_run {
                                self.lock().log.push(format!("dry-run {} {i}", if start { "start" } else { "stop" }));
                                out.push(if start {
                                    Outcome::WouldStart { id: i.clone(), permitted: true }
                                } else {
                                    Outcome::WouldStop { id: i.clone(), permitted: true }
                                });
                                continue;
                            }
                            let what = format!("{} {name} {i}", if start { "start" } else { "stop" });
                            let s = slot(name, i);
                            out.push(
                                self.mutate(name, what.clone(), fence, |p| match s {
                                    Some(s) if start && p.pool.start_slot(s, 0) => Outcome::Started { id: i.clone() },
                                    Some(s) if !start && p.pool.stop_slot(s) => Outcome::Stopped { id: i.clone() },
                                    _ => Outcome::Failed { what, error: "not in a state to do that".to_owned() },
                                })
                                .await,
                            );
                        }
                    }
                    Action::SetDesiredCapacity { group, desired } => {
                        if dry_run {
                            out.push(Outcome::WouldSetDesired { group: group.clone(), desired: *desired });
                            continue;
                        }
                        let what = format!("set {name} {group} {desired}");
                        out.push(
                            self.mutate(name, what, fence, |p| {
                                p.pool.scale_to(*desired, 0);
                                Outcome::DesiredSet { group: group.clone(), desired: p.pool.billed }
                            })
                            .await,
                        );
                    }
                    Action::CancelDrain { instance_ids } => {
                        // Only pools behind load balancers drain; this cloud has none.
                        out.extend(instance_ids.iter().map(|i| Outcome::Failed {
                            what: format!("cancel drain {name} {i}"),
                            error: "the in-memory cloud has no load balancers".to_owned(),
                        }));
                    }
                }
            }
            out
        })
    }

    fn api_stats(&self) -> Vec<OpStats> {
        Vec::new()
    }

    fn load_balancers(&self) -> Option<&crate::aws::Aws> {
        None
    }
}
