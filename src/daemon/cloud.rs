//! The daemon's cloud seam: what one evaluation needs from the outside world, behind a trait.
//!
//! [`Cloud`] describes fleets (leaving out instances that are not a pool's alone), fetches
//! metrics and carries out a decision behind the lease fence. Load balancer drains (pools with
//! `target_groups`) go to the AWS adapter itself ([`Cloud::load_balancers`]): a cloud without one
//! reports such a pool as degraded and acts on nothing in it. [`crate::aws::Aws`] is the real one (the adapters in [`crate::aws`]);
//! [`memory::MemoryCloud`] is an in-memory one built on the backtest's fleet simulator, so the
//! daemon's invariants are tested in milliseconds without an emulator (`src/daemon/fast_tests.rs`).
//! The emulator tests in `tests/` keep what only the adapter can show.
//!
//! Not here: deciding (the engine) and what the daemon does with the answers (`super`).

pub mod memory;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use vmscaler_engine::policy::PoolTarget;
use vmscaler_engine::{Decision, Fleet, Policy};

use crate::aws::Aws;
use crate::aws::actuate::{self, Outcome};
use crate::aws::error::FleetError;
use crate::aws::fleet::{Described, describe_owned};
use crate::aws::lease::Fence;
use crate::aws::metrics::{PoolMetrics, PoolQuery, fetch_metrics};
use crate::aws::stats::OpStats;

/// A future the seam returns (boxed, so the daemon can hold any cloud as `dyn Cloud`).
pub type CloudFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What the daemon asks of the cloud. Every mutating call goes through [`Cloud::act`], after
/// the intent is durable, and with the lease's fence when there is one.
pub trait Cloud: Send + Sync {
    /// The fleets of `policies`, by policy name; a pool that could not be read has its error.
    /// An instance that belongs to an Auto Scaling group or that more than one of `claims`
    /// matches is left out and listed as left alone.
    fn fleets<'a>(
        &'a self,
        policies: &'a [&'a Policy],
        claims: &'a [&'a PoolTarget],
    ) -> CloudFuture<'a, BTreeMap<String, Result<Described, FleetError>>>;

    /// Metric datapoints of `pools` up to `now - offset`, `lookback` back, by policy name.
    fn fetch_metrics<'a>(
        &'a self,
        pools: &'a [PoolQuery<'a>],
        now: Timestamp,
        offset: Duration,
        lookback: Duration,
    ) -> CloudFuture<'a, BTreeMap<String, PoolMetrics>>;

    /// Carries out `decision` on `fleet` (dry-run checked when `dry_run`), checking `fence`
    /// right before every mutating call; one outcome per instance or group.
    fn act<'a>(
        &'a self,
        policy: &'a Policy,
        fleet: &'a Fleet,
        decision: &'a Decision,
        dry_run: bool,
        fence: Option<&'a dyn Fence>,
    ) -> CloudFuture<'a, Vec<Outcome>>;

    /// Per-operation call counters, for the board.
    fn api_stats(&self) -> Vec<OpStats>;

    /// The Elastic Load Balancing adapter for pools with `target_groups` (see
    /// `super::drain`); `None` in a cloud without load balancers.
    fn load_balancers(&self) -> Option<&Aws>;
}

impl Cloud for Aws {
    fn fleets<'a>(
        &'a self,
        policies: &'a [&'a Policy],
        claims: &'a [&'a PoolTarget],
    ) -> CloudFuture<'a, BTreeMap<String, Result<Described, FleetError>>> {
        Box::pin(describe_owned(self, policies, claims))
    }

    fn fetch_metrics<'a>(
        &'a self,
        pools: &'a [PoolQuery<'a>],
        now: Timestamp,
        offset: Duration,
        lookback: Duration,
    ) -> CloudFuture<'a, BTreeMap<String, PoolMetrics>> {
        Box::pin(fetch_metrics(self, pools, now, offset, lookback))
    }

    fn act<'a>(
        &'a self,
        policy: &'a Policy,
        fleet: &'a Fleet,
        decision: &'a Decision,
        dry_run: bool,
        fence: Option<&'a dyn Fence>,
    ) -> CloudFuture<'a, Vec<Outcome>> {
        Box::pin(actuate::apply_fenced(self, policy, fleet, decision, dry_run, fence))
    }

    fn api_stats(&self) -> Vec<OpStats> {
        self.stats().snapshot()
    }

    fn load_balancers(&self) -> Option<&Aws> {
        Some(self)
    }
}
