//! Acting on a pool: carrying out a [`Decision`]'s actions, for real or as a dry run.
//!
//! - Start: the decision's stopped members in its order, in one `StartInstances` call. When
//!   AWS answers `InsufficientInstanceCapacity`, members are started one by one and each one
//!   refused is replaced by the next stopped member not already in the decision (in the
//!   policy's scale-out order); what cannot be replaced is reported as a shortfall.
//! - Stop: exactly the decision's members, in one `StopInstances` call.
//! - Auto Scaling group: `SetDesiredCapacity` (not honouring the group's cooldown: vmscaler
//!   keeps its own) within the group's bounds.
//! - Dry run: EC2 calls are sent with `DryRun=true`, so the outcome says whether the real call
//!   would be permitted (`DryRunOperation`) or not (`UnauthorizedOperation`, or moto's
//!   `AccessDenied`); Auto Scaling has no dry run and is only reported. An endpoint that
//!   ignored `DryRun` and answered success is reported as a failure, never as permitted.
//!
//! As a last guard, no instance that is not a member of the pool, and no protected member, is
//! ever started or stopped, whatever the decision says.
//!
//! With a [`Fence`] (several daemons sharing pools through leases, see [`crate::lease`]), every
//! mutating call (`StartInstances`, each one-by-one retry included, `StopInstances`,
//! `SetDesiredCapacity`; not the `DryRun` calls) is preceded by the fence's check, and not made
//! when it fails: the outcome is [`Outcome::Fenced`].
//!
//! A failed call is [`Outcome::Failed`] only when it certainly did nothing (AWS refused it, or
//! it was never sent); a call whose effect is unknown (a timeout, a dropped connection, a 5xx:
//! see [`super::error`]) is [`Outcome::Unknown`], and the daemon keeps its intent for the next
//! evaluation to reconcile against the fleet, cooldown counted.
//!
//! Not here: deciding (the engine), recording the outcome (the daemon), retries beyond the
//! SDK's (a failed action is reported; the next evaluation decides again).

use std::collections::{BTreeSet, VecDeque};
use std::fmt;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_types::error::display::DisplayErrorContext;
use serde::Serialize;
use vmscaler_engine::decide::sort_for_start;
use vmscaler_engine::policy::ScaleOutOrder;
use vmscaler_engine::{Action, Decision, Fleet, Member, MemberState, Policy};

use super::Aws;
use super::error::ApiError;
use super::lease::Fence;

/// What happened to one piece of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Outcome {
    Started {
        id: String,
    },
    Stopped {
        id: String,
    },
    /// Dry run: `permitted` is EC2's answer to the same call with `DryRun=true`.
    WouldStart {
        id: String,
        permitted: bool,
    },
    WouldStop {
        id: String,
        permitted: bool,
    },
    DesiredSet {
        group: String,
        desired: u32,
    },
    WouldSetDesired {
        group: String,
        desired: u32,
    },
    /// AWS had no capacity for this instance; a replacement was tried if one was left.
    InsufficientCapacity {
        id: String,
    },
    /// Instances the decision wanted started that could not be, for lack of capacity and of
    /// further stopped members.
    Shortfall {
        missing: u32,
    },
    /// Certainly not done: AWS refused the call, or it was never sent.
    Failed {
        what: String,
        error: String,
    },
    /// Perhaps done: the call timed out, its connection dropped, or AWS answered 5xx. The
    /// daemon reconciles it against the fleet at the next evaluation (cooldown counted).
    Unknown {
        what: String,
        error: String,
    },
    /// Not done: the fence says this daemon no longer holds the pool's lease.
    Fenced {
        what: String,
        reason: String,
    },
    /// Deregistered from the pool's target groups: stopped once drained (`crate::daemon::drain`).
    Draining {
        id: String,
        groups: usize,
    },
    /// Dry run of a scale-in behind load balancers.
    WouldDrain {
        id: String,
        groups: usize,
    },
    /// A draining member registered again instead of being stopped.
    DrainCancelled {
        id: String,
    },
    WouldCancelDrain {
        id: String,
    },
    /// A drained member stopped: the end of an earlier scale-in, not a new one.
    StoppedAfterDrain {
        id: String,
        waited_secs: u64,
        /// The drain timeout passed before the target groups showed it drained.
        timed_out: bool,
        /// What the pre-stop hook answered, if there is one.
        hook: Option<String>,
    },
    /// Registered in a target group (after a start, or found running outside it).
    Registered {
        id: String,
        group: String,
    },
}

impl Outcome {
    /// Whether this outcome changed (or, in a dry run, would have changed) the fleet.
    pub fn is_change(&self) -> bool {
        matches!(
            self,
            Outcome::Started { .. }
                | Outcome::Stopped { .. }
                | Outcome::DesiredSet { .. }
                | Outcome::Draining { .. }
                | Outcome::DrainCancelled { .. }
        )
    }

    /// Whether the call may have taken effect without the daemon hearing so.
    pub fn is_unknown(&self) -> bool {
        matches!(self, Outcome::Unknown { .. })
    }

    /// The outcome of a call that failed with `error`: failed when certain, unknown otherwise.
    pub fn from_error(what: String, error: &ApiError) -> Outcome {
        if error.is_definite() {
            Outcome::Failed { what, error: error.to_string() }
        } else {
            Outcome::Unknown { what, error: error.to_string() }
        }
    }

    /// A short kind for metrics labels (`actions by kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Started { .. } => "start",
            Outcome::Stopped { .. } => "stop",
            Outcome::WouldStart { .. } => "would_start",
            Outcome::WouldStop { .. } => "would_stop",
            Outcome::DesiredSet { .. } => "set_desired",
            Outcome::WouldSetDesired { .. } => "would_set_desired",
            Outcome::InsufficientCapacity { .. } => "insufficient_capacity",
            Outcome::Shortfall { .. } => "shortfall",
            Outcome::Failed { .. } => "failed",
            Outcome::Unknown { .. } => "unknown",
            Outcome::Fenced { .. } => "fenced",
            Outcome::Draining { .. } => "drain",
            Outcome::WouldDrain { .. } => "would_drain",
            Outcome::DrainCancelled { .. } => "cancel_drain",
            Outcome::WouldCancelDrain { .. } => "would_cancel_drain",
            Outcome::StoppedAfterDrain { timed_out: false, .. } => "stop_after_drain",
            Outcome::StoppedAfterDrain { timed_out: true, .. } => "stop_after_drain_timeout",
            Outcome::Registered { .. } => "register",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checked = |p: &bool| if *p { "permission checked" } else { "NOT permitted" };
        match self {
            Outcome::Started { id } => write!(f, "started {id}"),
            Outcome::Stopped { id } => write!(f, "stopped {id}"),
            Outcome::WouldStart { id, permitted } => write!(f, "would start {id} ({})", checked(permitted)),
            Outcome::WouldStop { id, permitted } => write!(f, "would stop {id} ({})", checked(permitted)),
            Outcome::DesiredSet { group, desired } => write!(f, "set desired capacity of {group} to {desired}"),
            Outcome::WouldSetDesired { group, desired } => {
                write!(f, "would set desired capacity of {group} to {desired} (dry run, not checked)")
            }
            Outcome::InsufficientCapacity { id } => write!(f, "insufficient instance capacity for {id}"),
            Outcome::Shortfall { missing } => write!(f, "short of {missing} instance(s): no stopped member left"),
            Outcome::Failed { what, error } => write!(f, "{what} failed: {error}"),
            Outcome::Unknown { what, error } => write!(f, "{what}: {error}"),
            Outcome::Fenced { what, reason } => write!(f, "{what} skipped: {reason}"),
            Outcome::Draining { id, groups } => {
                write!(f, "deregistered {id} from {groups} target group(s): stopping it once drained")
            }
            Outcome::WouldDrain { id, groups } => {
                write!(f, "would deregister {id} from {groups} target group(s) and stop after drain")
            }
            Outcome::DrainCancelled { id } => write!(f, "drain of {id} cancelled: registered again, not stopped"),
            Outcome::WouldCancelDrain { id } => write!(f, "would cancel the drain of {id} and register it again"),
            Outcome::StoppedAfterDrain { id, waited_secs, timed_out, hook } => {
                if *timed_out {
                    write!(f, "stopped {id}: not drained after {waited_secs}s (drain timeout), stopped anyway")?;
                } else {
                    write!(f, "stopped {id} after a {waited_secs}s drain")?;
                }
                match hook {
                    Some(h) => write!(f, " (pre-stop hook: {h})"),
                    None => Ok(()),
                }
            }
            Outcome::Registered { id, group } => write!(f, "registered {id} in target group {group}"),
        }
    }
}

/// Carries out `decision` on `fleet`. `dry_run` (or the policy's own `dry_run`) makes no change.
pub async fn apply(aws: &Aws, policy: &Policy, fleet: &Fleet, decision: &Decision, dry_run: bool) -> Vec<Outcome> {
    apply_fenced(aws, policy, fleet, decision, dry_run, None).await
}

/// Like [`apply`], checking `fence` (when given) right before every mutating call.
pub async fn apply_fenced(
    aws: &Aws,
    policy: &Policy,
    fleet: &Fleet,
    decision: &Decision,
    dry_run: bool,
    fence: Option<&dyn Fence>,
) -> Vec<Outcome> {
    let dry_run = dry_run || policy.dry_run;
    let mut out = Vec::new();
    for action in &decision.actions {
        match action {
            Action::Start { instance_ids } => {
                let (ids, rejected) = screen(fleet, instance_ids, Intent::Start);
                out.extend(rejected);
                if ids.is_empty() {
                    continue;
                }
                if dry_run {
                    out.extend(dry_run_ec2(aws, Intent::Start, &ids).await);
                } else {
                    let spares = spare_members(fleet, instance_ids, policy.scale_out.order);
                    out.extend(start_with_fallback(&mut Ec2Starter { aws, fence }, ids, spares).await);
                }
            }
            Action::Stop { instance_ids } => {
                let (ids, rejected) = screen(fleet, instance_ids, Intent::Stop);
                out.extend(rejected);
                if ids.is_empty() {
                    continue;
                }
                if dry_run {
                    out.extend(dry_run_ec2(aws, Intent::Stop, &ids).await);
                } else if let Err(reason) = check(fence).await {
                    out.push(Outcome::Fenced { what: format!("stop {}", ids.join(", ")), reason });
                } else {
                    out.extend(stop(aws, &ids).await);
                }
            }
            // Pools behind load balancers: `crate::daemon::drain` registers these again.
            Action::CancelDrain { .. } => {}
            Action::SetDesiredCapacity { group, desired } => {
                let desired = match fleet {
                    Fleet::Group(g) if g.name == *group => (*desired).clamp(g.min, g.max.max(g.min)),
                    _ => *desired,
                };
                if dry_run {
                    out.push(Outcome::WouldSetDesired { group: group.clone(), desired });
                } else if let Err(reason) = check(fence).await {
                    out.push(Outcome::Fenced { what: format!("set desired capacity of {group} to {desired}"), reason });
                } else {
                    out.push(set_desired(aws, group, desired).await);
                }
            }
        }
    }
    out
}

/// The fence's verdict; no fence (a single daemon) always allows.
async fn check(fence: Option<&dyn Fence>) -> Result<(), String> {
    match fence {
        Some(f) => f.check().await,
        None => Ok(()),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Intent {
    Start,
    Stop,
}

/// Keeps the ids this pool may act on: members, not protected when stopping. The rest are
/// reported as failures, never acted on.
fn screen(fleet: &Fleet, ids: &[String], intent: Intent) -> (Vec<String>, Vec<Outcome>) {
    let members: &[Member] = match fleet {
        Fleet::Instances { members } => members,
        Fleet::Group(_) => &[],
    };
    let mut ok = Vec::new();
    let mut rejected = Vec::new();
    let mut seen = BTreeSet::new();
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        let verb = if intent == Intent::Start { "start" } else { "stop" };
        let refuse = |why: &str| Outcome::Failed { what: format!("{verb} {id}"), error: why.to_owned() };
        match members.iter().find(|m| m.id == *id) {
            None => rejected.push(refuse("not a member of this pool: refused")),
            Some(m) if intent == Intent::Stop && m.protected => rejected.push(refuse("protected member: refused")),
            Some(_) => ok.push(id.clone()),
        }
    }
    (ok, rejected)
}

/// Stopped members not in the decision, in the policy's scale-out order.
fn spare_members(fleet: &Fleet, wanted: &[String], order: ScaleOutOrder) -> VecDeque<String> {
    let Fleet::Instances { members } = fleet else { return VecDeque::new() };
    let mut spare: Vec<&Member> =
        members.iter().filter(|m| m.state == MemberState::Stopped && !wanted.contains(&m.id)).collect();
    sort_for_start(&mut spare, order);
    spare.into_iter().map(|m| m.id.clone()).collect()
}

/// Why a start call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StartError {
    InsufficientCapacity,
    /// The fence refused the call: it was not made.
    Fenced(String),
    Other(ApiError),
}

/// Starts instances; the seam between the fallback logic and EC2.
pub(crate) trait Starter {
    async fn start(&mut self, ids: &[String]) -> Result<(), StartError>;
}

struct Ec2Starter<'a> {
    aws: &'a Aws,
    fence: Option<&'a dyn Fence>,
}

impl Starter for Ec2Starter<'_> {
    async fn start(&mut self, ids: &[String]) -> Result<(), StartError> {
        check(self.fence).await.map_err(StartError::Fenced)?;
        let result = self.aws.ec2.start_instances().set_instance_ids(Some(ids.to_vec())).send().await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("InsufficientInstanceCapacity") => Err(StartError::InsufficientCapacity),
            Err(e) => Err(StartError::Other(ApiError::from_sdk(&e))),
        }
    }
}

/// All of `ids` in one call; on a capacity error, one by one with replacements from `spares`.
pub(crate) async fn start_with_fallback(
    starter: &mut impl Starter,
    ids: Vec<String>,
    mut spares: VecDeque<String>,
) -> Vec<Outcome> {
    match starter.start(&ids).await {
        Ok(()) => return ids.into_iter().map(|id| Outcome::Started { id }).collect(),
        Err(StartError::Other(error)) => {
            return vec![Outcome::from_error(format!("start {}", ids.join(", ")), &error)];
        }
        Err(StartError::Fenced(reason)) => {
            return vec![Outcome::Fenced { what: format!("start {}", ids.join(", ")), reason }];
        }
        Err(StartError::InsufficientCapacity) => {}
    }
    let mut out = Vec::new();
    let mut missing = 0u32;
    for id in ids {
        let mut candidate = Some(id);
        while let Some(id) = candidate.take() {
            match starter.start(std::slice::from_ref(&id)).await {
                Ok(()) => out.push(Outcome::Started { id }),
                Err(StartError::InsufficientCapacity) => {
                    out.push(Outcome::InsufficientCapacity { id });
                    candidate = spares.pop_front();
                    if candidate.is_none() {
                        missing += 1;
                    }
                }
                Err(StartError::Other(error)) => out.push(Outcome::from_error(format!("start {id}"), &error)),
                Err(StartError::Fenced(reason)) => out.push(Outcome::Fenced { what: format!("start {id}"), reason }),
            }
        }
    }
    if missing > 0 {
        out.push(Outcome::Shortfall { missing });
    }
    out
}

async fn stop(aws: &Aws, ids: &[String]) -> Vec<Outcome> {
    let result = aws.ec2.stop_instances().set_instance_ids(Some(ids.to_vec())).send().await;
    match result {
        Ok(_) => ids.iter().map(|id| Outcome::Stopped { id: id.clone() }).collect(),
        Err(e) => vec![Outcome::from_error(format!("stop {}", ids.join(", ")), &ApiError::from_sdk(&e))],
    }
}

/// Sends the call with `DryRun=true` and maps EC2's verdict onto every id.
async fn dry_run_ec2(aws: &Aws, intent: Intent, ids: &[String]) -> Vec<Outcome> {
    let (code, error) = match intent {
        Intent::Start => {
            let r = aws.ec2.start_instances().set_instance_ids(Some(ids.to_vec())).dry_run(true).send().await;
            r.err().map(|e| (e.code().map(str::to_owned), describe(&e))).unzip()
        }
        Intent::Stop => {
            let r = aws.ec2.stop_instances().set_instance_ids(Some(ids.to_vec())).dry_run(true).send().await;
            r.err().map(|e| (e.code().map(str::to_owned), describe(&e))).unzip()
        }
    };
    let permitted = match code.flatten().as_deref() {
        Some("DryRunOperation") => true,
        // moto (with IAM enforcement on) answers AccessDenied where EC2 says UnauthorizedOperation.
        Some("UnauthorizedOperation" | "AccessDenied") => false,
        _ => {
            let verb = if intent == Intent::Start { "dry-run start" } else { "dry-run stop" };
            let error = error.unwrap_or_else(|| "the endpoint ignored DryRun and carried the call out".to_owned());
            return vec![Outcome::Failed { what: format!("{verb} {}", ids.join(", ")), error }];
        }
    };
    ids.iter()
        .map(|id| match intent {
            Intent::Start => Outcome::WouldStart { id: id.clone(), permitted },
            Intent::Stop => Outcome::WouldStop { id: id.clone(), permitted },
        })
        .collect()
}

async fn set_desired(aws: &Aws, group: &str, desired: u32) -> Outcome {
    let result = aws
        .autoscaling
        .set_desired_capacity()
        .auto_scaling_group_name(group)
        .desired_capacity(i32::try_from(desired).unwrap_or(i32::MAX))
        .honor_cooldown(false)
        .send()
        .await;
    match result {
        Ok(_) => Outcome::DesiredSet { group: group.to_owned(), desired },
        Err(e) => Outcome::from_error(format!("set desired capacity of {group}"), &ApiError::from_sdk(&e)),
    }
}

fn describe<E: std::error::Error + 'static, R: fmt::Debug>(e: &SdkError<E, R>) -> String {
    DisplayErrorContext(e).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts anything except the instances listed as lacking capacity; records every call.
    struct Capacity {
        refuse: Vec<&'static str>,
        calls: Vec<Vec<String>>,
    }

    impl Starter for Capacity {
        async fn start(&mut self, ids: &[String]) -> Result<(), StartError> {
            self.calls.push(ids.to_vec());
            if ids.iter().any(|id| self.refuse.contains(&id.as_str())) {
                Err(StartError::InsufficientCapacity)
            } else {
                Ok(())
            }
        }
    }

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[tokio::test]
    async fn capacity_errors_move_on_to_spare_members() {
        let mut ec2 = Capacity { refuse: vec!["i-b", "i-x"], calls: vec![] };
        let out = start_with_fallback(&mut ec2, ids(&["i-a", "i-b"]), ids(&["i-x", "i-y", "i-z"]).into()).await;
        assert_eq!(
            out,
            vec![
                Outcome::Started { id: "i-a".into() },
                Outcome::InsufficientCapacity { id: "i-b".into() },
                Outcome::InsufficientCapacity { id: "i-x".into() },
                Outcome::Started { id: "i-y".into() },
            ]
        );
        assert_eq!(ec2.calls[0], ids(&["i-a", "i-b"]), "one batched call first");
        assert!(!ec2.calls.iter().flatten().any(|id| id == "i-z"), "no more starts than wanted");
    }

    /// A start whose effect is unknown is reported as such (the daemon keeps its intent); a
    /// refusal is a plain failure.
    #[tokio::test]
    async fn an_ambiguous_start_is_unknown_not_failed() {
        struct Fails(ApiError);
        impl Starter for Fails {
            async fn start(&mut self, _: &[String]) -> Result<(), StartError> {
                Err(StartError::Other(self.0.clone()))
            }
        }
        let lost = ApiError::Ambiguous { detail: "connection closed before message completed".into() };
        let out = start_with_fallback(&mut Fails(lost), ids(&["i-a"]), VecDeque::new()).await;
        assert!(out[0].is_unknown(), "{out:?}");
        assert_eq!(out[0].kind(), "unknown");
        assert_eq!(out[0].to_string(), "start i-a: outcome unknown: connection closed before message completed");
        let refused = ApiError::Refused { status: 400, code: "IncorrectInstanceState".into(), detail: "no".into() };
        let out = start_with_fallback(&mut Fails(refused), ids(&["i-a"]), VecDeque::new()).await;
        assert!(matches!(out[0], Outcome::Failed { .. }), "{out:?}");
    }

    #[tokio::test]
    async fn shortfall_when_no_spare_is_left() {
        let mut ec2 = Capacity { refuse: vec!["i-a", "i-x"], calls: vec![] };
        let out = start_with_fallback(&mut ec2, ids(&["i-a", "i-b"]), ids(&["i-x"]).into()).await;
        assert_eq!(
            out,
            vec![
                Outcome::InsufficientCapacity { id: "i-a".into() },
                Outcome::InsufficientCapacity { id: "i-x".into() },
                Outcome::Started { id: "i-b".into() },
                Outcome::Shortfall { missing: 1 },
            ]
        );
    }

    /// Refuses every call after the first `allowed`, like a fence whose lease was lost.
    struct Fenced {
        allowed: usize,
        calls: Vec<Vec<String>>,
    }

    impl Starter for Fenced {
        async fn start(&mut self, ids: &[String]) -> Result<(), StartError> {
            if self.calls.len() >= self.allowed {
                return Err(StartError::Fenced("lease lost".into()));
            }
            self.calls.push(ids.to_vec());
            Err(StartError::InsufficientCapacity)
        }
    }

    #[tokio::test]
    async fn a_fenced_start_is_skipped_not_failed_even_mid_fallback() {
        let mut ec2 = Fenced { allowed: 0, calls: vec![] };
        let out = start_with_fallback(&mut ec2, ids(&["i-a", "i-b"]), ids(&["i-x"]).into()).await;
        assert_eq!(out, vec![Outcome::Fenced { what: "start i-a, i-b".into(), reason: "lease lost".into() }]);
        assert!(ec2.calls.is_empty());
        assert_eq!(out[0].kind(), "fenced");
        assert!(!out[0].is_change());
        assert_eq!(out[0].to_string(), "start i-a, i-b skipped: lease lost");
        // The batched call went through (no capacity); the one-by-one retries are fenced off.
        let mut ec2 = Fenced { allowed: 1, calls: vec![] };
        let out = start_with_fallback(&mut ec2, ids(&["i-a"]), ids(&["i-x"]).into()).await;
        assert_eq!(out, vec![Outcome::Fenced { what: "start i-a".into(), reason: "lease lost".into() }]);
        assert_eq!(ec2.calls.len(), 1);
    }

    #[test]
    fn screen_refuses_strangers_and_protected_stops() {
        let m = |id: &str, protected| Member {
            id: id.into(),
            state: MemberState::Running,
            launched_at: None,
            protected,
            cpu: None,
        };
        let fleet = Fleet::Instances { members: vec![m("i-a", false), m("i-p", true)] };
        let (ok, rejected) = screen(&fleet, &ids(&["i-a", "i-p", "i-zz", "i-a"]), Intent::Stop);
        assert_eq!(ok, ids(&["i-a"]));
        assert_eq!(rejected.len(), 2);
        let (ok, _) = screen(&fleet, &ids(&["i-p"]), Intent::Start);
        assert_eq!(ok, ids(&["i-p"]), "a protected member may be started");
    }
}
