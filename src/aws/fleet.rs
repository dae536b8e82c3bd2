//! Observing pools: tagged EC2 pools and Auto Scaling groups as engine [`Fleet`]s.
//!
//! All pools are described together: one paginated `DescribeInstances` per tag key (the
//! pools' tag values batched into its filter), one paginated `DescribeAutoScalingGroups` per
//! 50 group names, and `DescribeScalingActivities` only for a group whose instances do not
//! already show it steady (every instance `InService` and as many as desired).
//!
//! Ownership: an instance of a tagged pool is a member only if it is the pool's alone. One that
//! belongs to an Auto Scaling group (it carries `aws:autoscaling:groupName`), or that carries
//! the tag of another pool as well, is left out of the fleet (so it is neither counted nor ever
//! started or stopped) and reported as [`LeftAlone`].
//!
//! Not here: changing anything ([`super::actuate`] does) or CPU readings of members (the
//! metric reader supplies them; see [`super::metrics::apply_member_cpu`]).

use std::collections::{BTreeMap, BTreeSet};

use super::error::{ApiError, FleetError};
use aws_sdk_autoscaling::types::{AutoScalingGroup, LifecycleState, ScalingActivityStatusCode};
use aws_sdk_ec2::types::{Filter, Instance};
use vmscaler_engine::policy::{PoolTarget, Tag};
use vmscaler_engine::{Fleet, GroupState, Member, MemberState, Policy};

use super::{Aws, to_timestamp};

/// EC2's limit on values in one filter.
const FILTER_VALUES_PER_CALL: usize = 200;
/// Group names per `DescribeAutoScalingGroups` call (the API pages at 100 groups).
const GROUPS_PER_CALL: usize = 50;
/// Instance states worth listing: terminated instances are never members again.
const LISTED_STATES: [&str; 5] = ["pending", "running", "stopping", "stopped", "shutting-down"];

/// The tag Auto Scaling puts on every instance of a group.
pub const GROUP_TAG: &str = "aws:autoscaling:groupName";

/// An instance carrying a pool's tag that the pool leaves alone, and why.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LeftAlone {
    pub id: String,
    pub reason: String,
}

impl std::fmt::Display for LeftAlone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} left alone: {}", self.id, self.reason)
    }
}

/// A pool as described: its fleet, and the instances with its tag it does not own.
#[derive(Debug, Clone, PartialEq)]
pub struct Described {
    pub fleet: Fleet,
    pub left_alone: Vec<LeftAlone>,
}

/// Describes every pool of `policies`, keyed by policy name. A pool whose description failed
/// has an `Err`; the others are unaffected. Instances that are not a pool's alone are left out
/// (see the module documentation); [`describe_owned`] also says which.
pub async fn describe_fleets(aws: &Aws, policies: &[&Policy]) -> BTreeMap<String, Result<Fleet, FleetError>> {
    let claims: Vec<&PoolTarget> = policies.iter().map(|p| &p.pool).collect();
    describe_owned(aws, policies, &claims).await.into_iter().map(|(n, r)| (n, r.map(|d| d.fleet))).collect()
}

/// Like [`describe_fleets`], with the instances each pool leaves alone. `claims` are the pools
/// of every policy loaded (not only those described now): an instance carrying the tag of any
/// other of them is not a member.
pub async fn describe_owned(
    aws: &Aws,
    policies: &[&Policy],
    claims: &[&PoolTarget],
) -> BTreeMap<String, Result<Described, FleetError>> {
    let mut out = BTreeMap::new();
    let tagged: Vec<(&Policy, &Tag)> = policies
        .iter()
        .filter_map(|p| match &p.pool {
            PoolTarget::Tagged(t) => Some((*p, t)),
            PoolTarget::AutoScalingGroup(_) => None,
        })
        .collect();
    let groups: Vec<(&Policy, &str)> = policies
        .iter()
        .filter_map(|p| match &p.pool {
            PoolTarget::AutoScalingGroup(g) => Some((*p, g.as_str())),
            PoolTarget::Tagged(_) => None,
        })
        .collect();
    let (tagged_result, group_result) =
        tokio::join!(describe_tagged(aws, &tagged, claims), describe_groups(aws, &groups));
    out.extend(tagged_result);
    out.extend(group_result.into_iter().map(|(n, r)| (n, r.map(|fleet| Described { fleet, left_alone: Vec::new() }))));
    out
}

/// Why `inst`, carrying `own`'s tag, is not the pool's alone; `None` when it is.
fn not_ours(inst: &Instance, own: &Tag, claims: &[&PoolTarget]) -> Option<String> {
    let tags = inst.tags();
    if let Some(group) = tags.iter().find(|t| t.key() == Some(GROUP_TAG)) {
        return Some(format!("it belongs to Auto Scaling group {:?}", group.value().unwrap_or_default()));
    }
    let other = claims.iter().find_map(|c| match c {
        PoolTarget::Tagged(t) if t != own => {
            tags.iter().any(|x| x.key() == Some(t.key.as_str()) && x.value() == Some(t.value.as_str())).then_some(t)
        }
        _ => None,
    })?;
    Some(format!("it also carries {}={}, the tag of another pool: no policy may act on it", other.key, other.value))
}

async fn describe_tagged(
    aws: &Aws,
    pools: &[(&Policy, &Tag)],
    claims: &[&PoolTarget],
) -> BTreeMap<String, Result<Described, FleetError>> {
    let mut by_key: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (_, tag) in pools {
        by_key.entry(tag.key.as_str()).or_default().insert(tag.value.as_str());
    }
    // Instances by (tag key, tag value); failures by tag key.
    let mut found: BTreeMap<(String, String), Vec<Instance>> = BTreeMap::new();
    let mut failed: BTreeMap<String, FleetError> = BTreeMap::new();
    for (key, values) in &by_key {
        let values: Vec<&str> = values.iter().copied().collect();
        for chunk in values.chunks(FILTER_VALUES_PER_CALL) {
            match list_instances(aws, key, chunk).await {
                Ok(instances) => {
                    for inst in instances {
                        let value = inst.tags().iter().find(|t| t.key() == Some(*key)).and_then(|t| t.value());
                        if let Some(v) = value {
                            found.entry(((*key).to_owned(), v.to_owned())).or_default().push(inst);
                        }
                    }
                }
                Err(e) => {
                    failed.insert((*key).to_owned(), e);
                }
            }
        }
    }
    pools
        .iter()
        .map(|(policy, tag)| {
            let result = match failed.get(&tag.key) {
                Some(e) => Err(e.clone()),
                None => {
                    let instances = found.get(&(tag.key.clone(), tag.value.clone())).map(Vec::as_slice).unwrap_or(&[]);
                    let mut members: Vec<Member> = Vec::with_capacity(instances.len());
                    let mut left_alone = Vec::new();
                    for inst in instances {
                        match not_ours(inst, tag, claims) {
                            Some(reason) => left_alone
                                .push(LeftAlone { id: inst.instance_id().unwrap_or_default().to_owned(), reason }),
                            None => members.extend(member(inst, policy.scale_in.protect_tag.as_ref())),
                        }
                    }
                    members.sort_by(|a, b| a.id.cmp(&b.id));
                    members.dedup_by(|a, b| a.id == b.id);
                    left_alone.sort();
                    left_alone.dedup();
                    Ok(Described { fleet: Fleet::Instances { members }, left_alone })
                }
            };
            (policy.name.clone(), result)
        })
        .collect()
}

fn member(inst: &Instance, protect: Option<&Tag>) -> Option<Member> {
    let id = inst.instance_id()?.to_owned();
    let state = inst.state().and_then(|s| s.name()).map_or(MemberState::Gone, |n| MemberState::from_ec2(n.as_str()));
    let protected = protect.is_some_and(|p| {
        inst.tags().iter().any(|t| t.key() == Some(p.key.as_str()) && t.value() == Some(p.value.as_str()))
    });
    Some(Member { id, state, launched_at: inst.launch_time().and_then(to_timestamp), protected, cpu: None })
}

/// All non-terminated instances whose tag `key` has one of `values`, every page.
async fn list_instances(aws: &Aws, key: &str, values: &[&str]) -> Result<Vec<Instance>, FleetError> {
    let tag_filter = Filter::builder()
        .name(format!("tag:{key}"))
        .set_values(Some(values.iter().map(|v| (*v).to_owned()).collect()))
        .build();
    let state_filter = Filter::builder()
        .name("instance-state-name")
        .set_values(Some(LISTED_STATES.map(str::to_owned).to_vec()))
        .build();
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let resp = aws
            .ec2
            .describe_instances()
            .filters(tag_filter.clone())
            .filters(state_filter.clone())
            .max_results(1000)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| FleetError::Call { operation: "DescribeInstances", error: ApiError::from_sdk(&e) })?;
        for r in resp.reservations() {
            out.extend(r.instances().iter().cloned());
        }
        match resp.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

async fn describe_groups(aws: &Aws, pools: &[(&Policy, &str)]) -> BTreeMap<String, Result<Fleet, FleetError>> {
    let names: Vec<&str> = pools.iter().map(|(_, g)| *g).collect::<BTreeSet<_>>().into_iter().collect();
    let mut found: BTreeMap<String, GroupState> = BTreeMap::new();
    let mut failed: BTreeMap<String, FleetError> = BTreeMap::new();
    for chunk in names.chunks(GROUPS_PER_CALL) {
        match list_groups(aws, chunk).await {
            Ok(groups) => {
                for g in groups {
                    if let Some(name) = g.auto_scaling_group_name() {
                        let steady = is_steady(&g);
                        found.insert(name.to_owned(), group_state(name, &g, false));
                        if !steady {
                            match activity_in_progress(aws, name).await {
                                Ok(busy) => {
                                    if let Some(s) = found.get_mut(name) {
                                        s.activity_in_progress = busy;
                                    }
                                }
                                Err(e) => {
                                    failed.insert(name.to_owned(), e);
                                }
                            }
                        }
                    }
                }
            }
            Err(e) => {
                for name in chunk {
                    failed.insert((*name).to_owned(), e.clone());
                }
            }
        }
    }
    pools
        .iter()
        .map(|(policy, name)| {
            let result = match (failed.get(*name), found.get(*name)) {
                (Some(e), _) => Err(e.clone()),
                (None, Some(g)) => Ok(Fleet::Group(g.clone())),
                (None, None) => Err(FleetError::GroupNotFound((*name).to_owned())),
            };
            (policy.name.clone(), result)
        })
        .collect()
}

fn to_u32(n: Option<i32>) -> u32 {
    n.and_then(|n| u32::try_from(n).ok()).unwrap_or(0)
}

fn in_service(g: &AutoScalingGroup) -> u32 {
    let n = g.instances().iter().filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService)).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Every instance in service and as many as desired: no activity can be in progress.
fn is_steady(g: &AutoScalingGroup) -> bool {
    let all_in_service = g.instances().iter().all(|i| i.lifecycle_state() == Some(&LifecycleState::InService));
    all_in_service && in_service(g) == to_u32(g.desired_capacity())
}

fn group_state(name: &str, g: &AutoScalingGroup, activity_in_progress: bool) -> GroupState {
    GroupState {
        name: name.to_owned(),
        desired: to_u32(g.desired_capacity()),
        min: to_u32(g.min_size()),
        max: to_u32(g.max_size()),
        in_service: in_service(g),
        activity_in_progress,
    }
}

async fn list_groups(aws: &Aws, names: &[&str]) -> Result<Vec<AutoScalingGroup>, FleetError> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let resp = aws
            .autoscaling
            .describe_auto_scaling_groups()
            .set_auto_scaling_group_names(Some(names.iter().map(|n| (*n).to_owned()).collect()))
            .max_records(100)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| FleetError::Call { operation: "DescribeAutoScalingGroups", error: ApiError::from_sdk(&e) })?;
        out.extend(resp.auto_scaling_groups().iter().cloned());
        match resp.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(out),
        }
    }
}

/// Whether any of the group's recent scaling activities is unfinished.
async fn activity_in_progress(aws: &Aws, group: &str) -> Result<bool, FleetError> {
    let resp = aws
        .autoscaling
        .describe_scaling_activities()
        .auto_scaling_group_name(group)
        .max_records(20)
        .send()
        .await
        .map_err(|e| FleetError::Call { operation: "DescribeScalingActivities", error: ApiError::from_sdk(&e) })?;
    Ok(resp.activities().iter().any(|a| {
        !matches!(
            a.status_code(),
            Some(
                ScalingActivityStatusCode::Successful
                    | ScalingActivityStatusCode::Failed
                    | ScalingActivityStatusCode::Cancelled
            ) | None
        )
    }))
}

#[cfg(test)]
mod tests {
    use aws_sdk_autoscaling::types::Instance as GroupInstance;

    use super::*;

    fn group(desired: i32, states: &[LifecycleState]) -> AutoScalingGroup {
        let instances = states
            .iter()
            .enumerate()
            .map(|(i, s)| GroupInstance::builder().instance_id(format!("i-{i}")).lifecycle_state(s.clone()).build())
            .collect();
        AutoScalingGroup::builder()
            .auto_scaling_group_name("g")
            .min_size(0)
            .max_size(9)
            .desired_capacity(desired)
            .set_instances(Some(instances))
            .build()
    }

    #[test]
    fn only_an_unsettled_group_needs_its_activities_read() {
        use LifecycleState::{InService, Pending, Terminating};
        assert!(is_steady(&group(2, &[InService, InService])));
        assert!(is_steady(&group(0, &[])));
        assert!(!is_steady(&group(3, &[InService, InService])), "one short of desired");
        assert!(!is_steady(&group(2, &[InService, Pending])), "still launching");
        assert!(!is_steady(&group(1, &[InService, Terminating])), "still terminating");
        let g = group_state("g", &group(2, &[InService, Pending]), true);
        assert_eq!((g.desired, g.in_service, g.min, g.max, g.activity_in_progress), (2, 1, 0, 9, true));
    }
}
