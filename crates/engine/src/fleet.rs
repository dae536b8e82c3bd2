//! What the pool looks like right now, as the adapters observed it.
//!
//! The engine never asks AWS anything: the daemon (or the backtest simulator) builds a
//! [`Fleet`] and hands it to [`crate::decide`].

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Observed state of one pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fleet {
    /// Members of a tagged EC2 pool.
    Instances { members: Vec<Member> },
    /// An Auto Scaling group.
    Group(GroupState),
}

/// One EC2 instance of a tagged pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Member {
    pub id: String,
    pub state: MemberState,
    /// EC2 `LaunchTime` (the last start for a restarted instance).
    pub launched_at: Option<Timestamp>,
    /// Carries the policy's protection tag: never stopped.
    pub protected: bool,
    /// Last CPU reading of this member, for `scale_in.order: lowest_cpu`.
    pub cpu: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    Running,
    /// Starting: counts as capacity, gets no second action.
    Pending,
    /// Stopping: no longer capacity, gets no second action.
    Stopping,
    /// The warm pool.
    Stopped,
    /// Shutting down or terminated: neither capacity nor warm pool.
    Gone,
    /// Running, but not (yet) healthy in every load balancer target group of the pool (booting,
    /// registering, failing its health checks): capacity, not serving; may be stopped.
    Warming,
    /// Running, taken out of its target groups (or awaiting its pre-stop hook) on the way to
    /// being stopped: neither capacity nor serving; gets no action but a cancelled drain.
    Draining,
}

impl MemberState {
    /// Maps an EC2 instance state name.
    pub fn from_ec2(name: &str) -> MemberState {
        match name {
            "running" => MemberState::Running,
            "pending" => MemberState::Pending,
            "stopping" => MemberState::Stopping,
            "stopped" => MemberState::Stopped,
            _ => MemberState::Gone,
        }
    }

    pub fn in_transit(self) -> bool {
        matches!(self, MemberState::Pending | MemberState::Stopping)
    }
}

/// An Auto Scaling group as DescribeAutoScalingGroups shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupState {
    pub name: String,
    pub desired: u32,
    pub min: u32,
    pub max: u32,
    /// Instances in service.
    pub in_service: u32,
    /// A scaling activity is in progress: no new action until it ends.
    pub activity_in_progress: bool,
}

impl Fleet {
    /// Capacity the engine scales from: running plus pending members, or the group's desired.
    pub fn current(&self) -> u32 {
        match self {
            Fleet::Instances { members } => {
                let n = members
                    .iter()
                    .filter(|m| matches!(m.state, MemberState::Running | MemberState::Pending | MemberState::Warming))
                    .count();
                u32::try_from(n).unwrap_or(u32::MAX)
            }
            Fleet::Group(g) => g.desired,
        }
    }

    /// Members able to serve load now (running, and healthy in the pool's target groups if it
    /// has any), used as the per-instance metric denominator.
    pub fn serving(&self) -> u32 {
        match self {
            Fleet::Instances { members } => {
                let n = members.iter().filter(|m| m.state == MemberState::Running).count();
                u32::try_from(n).unwrap_or(u32::MAX)
            }
            Fleet::Group(g) => g.in_service,
        }
    }

    /// Members being drained before their stop.
    pub fn draining(&self) -> u32 {
        match self {
            Fleet::Instances { members } => {
                let n = members.iter().filter(|m| m.state == MemberState::Draining).count();
                u32::try_from(n).unwrap_or(u32::MAX)
            }
            Fleet::Group(_) => 0,
        }
    }
}
