//! Elastic Load Balancing v2: the target groups a tagged pool's members serve behind.
//!
//! - [`describe_target_groups`]: each group's target type (`instance` targets are instance ids,
//!   `ip` targets the members' private IPv4 addresses) and its own
//!   `deregistration_delay.timeout_seconds` (`DescribeTargetGroups`,
//!   `DescribeTargetGroupAttributes`). An ARN that does not exist is an error naming it.
//! - [`target_health`]: the health of the given targets in one group (`DescribeTargetHealth`
//!   with the targets listed, so a target that is not registered is reported as such instead of
//!   being left out).
//! - [`register`], [`deregister`]: `RegisterTargets`, `DeregisterTargets`.
//! - [`private_ips`]: members' private addresses (`DescribeInstances` by id), for `ip` target
//!   groups and the pre-stop hook's URL.
//!
//! Not here: when to register, drain or stop (see `crate::daemon::drain`), or the fence (the
//! caller checks it before each mutating call).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_elasticloadbalancingv2::types::{TargetDescription, TargetHealthStateEnum, TargetTypeEnum};
use aws_smithy_types::error::display::DisplayErrorContext;

use super::Aws;

/// `DescribeTargetGroups` takes at most 20 ARNs per call.
const GROUPS_PER_CALL: usize = 20;
/// AWS's default deregistration delay, used when a group does not report its own.
pub const DEFAULT_DEREGISTRATION_DELAY: Duration = Duration::from_secs(300);

/// One target group as the pool needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetGroup {
    pub arn: String,
    /// `ip` target type: members register by private IPv4 address, not by instance id.
    pub ip_targets: bool,
    /// The group's `deregistration_delay.timeout_seconds`.
    pub deregistration_delay: Duration,
}

impl TargetGroup {
    /// The group's short name (`targetgroup/NAME/ID` -> `NAME`), for messages.
    pub fn name(&self) -> &str {
        self.arn.rsplit('/').nth(1).unwrap_or(&self.arn)
    }
}

/// A target's state in one group, as `DescribeTargetHealth` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Registered and passing health checks: serving.
    Healthy,
    /// Registered, not (yet) serving: `initial`, `unhealthy`, `unavailable`.
    NotServing(String),
    /// Deregistration in progress: connections are being drained.
    Draining,
    /// Not registered (`unused` with `Target.NotRegistered`), or `unused` for another reason
    /// (a stopped instance, an availability zone the balancer does not use).
    Unused { registered: bool },
}

impl Health {
    /// Whether the target is registered (or still deregistering) in the group.
    pub fn registered(&self) -> bool {
        match self {
            Health::Healthy | Health::NotServing(_) | Health::Draining => true,
            Health::Unused { registered } => *registered,
        }
    }
}

fn sdk_error(what: &str, e: &impl std::error::Error) -> String {
    format!("{what} failed: {}", DisplayErrorContext(e))
}

/// Describes `arns` (target type and deregistration delay), in the order given. Any ARN that
/// does not exist or cannot be read makes the whole answer an error naming it.
pub async fn describe_target_groups(aws: &Aws, arns: &[String]) -> Result<Vec<TargetGroup>, String> {
    let mut types: BTreeMap<String, bool> = BTreeMap::new();
    for chunk in arns.chunks(GROUPS_PER_CALL) {
        let resp =
            aws.elb.describe_target_groups().set_target_group_arns(Some(chunk.to_vec())).send().await.map_err(|e| {
                let code = aws_sdk_elasticloadbalancingv2::error::ProvideErrorMetadata::code(&e);
                if code == Some("TargetGroupNotFound") {
                    format!(
                        "target group not found: one of {} does not exist in this account and region",
                        chunk.join(", ")
                    )
                } else {
                    sdk_error("DescribeTargetGroups", &e)
                }
            })?;
        for g in resp.target_groups() {
            if let Some(arn) = g.target_group_arn() {
                types.insert(arn.to_owned(), g.target_type() == Some(&TargetTypeEnum::Ip));
            }
        }
    }
    let mut out = Vec::with_capacity(arns.len());
    for arn in arns {
        let Some(&ip_targets) = types.get(arn) else {
            return Err(format!("target group not found: {arn}"));
        };
        let resp = aws
            .elb
            .describe_target_group_attributes()
            .target_group_arn(arn)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeTargetGroupAttributes", &e))?;
        let delay = resp
            .attributes()
            .iter()
            .find(|a| a.key() == Some("deregistration_delay.timeout_seconds"))
            .and_then(|a| a.value())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map_or(DEFAULT_DEREGISTRATION_DELAY, Duration::from_secs);
        out.push(TargetGroup { arn: arn.clone(), ip_targets, deregistration_delay: delay });
    }
    Ok(out)
}

fn targets(ids: &[String]) -> Vec<TargetDescription> {
    ids.iter().map(|id| TargetDescription::builder().id(id).build()).collect()
}

/// Health of `target_ids` in `group`, by target id. Ids the answer leaves out are not in the map.
pub async fn target_health(
    aws: &Aws,
    group: &TargetGroup,
    target_ids: &[String],
) -> Result<BTreeMap<String, Health>, String> {
    if target_ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let resp = aws
        .elb
        .describe_target_health()
        .target_group_arn(&group.arn)
        .set_targets(Some(targets(target_ids)))
        .send()
        .await
        .map_err(|e| sdk_error(&format!("DescribeTargetHealth of {}", group.name()), &e))?;
    let mut out = BTreeMap::new();
    for d in resp.target_health_descriptions() {
        let Some(id) = d.target().and_then(|t| t.id()) else { continue };
        let th = d.target_health();
        let reason = th.and_then(|h| h.reason()).map(|r| r.as_str().to_owned());
        let health = match th.and_then(|h| h.state()) {
            Some(TargetHealthStateEnum::Healthy) => Health::Healthy,
            Some(TargetHealthStateEnum::Draining | TargetHealthStateEnum::UnhealthyDraining) => Health::Draining,
            Some(TargetHealthStateEnum::Unused) => {
                Health::Unused { registered: reason.as_deref() != Some("Target.NotRegistered") }
            }
            Some(other) => Health::NotServing(other.as_str().to_owned()),
            None => Health::NotServing("unknown".to_owned()),
        };
        out.insert(id.to_owned(), health);
    }
    Ok(out)
}

/// Registers `target_ids` in `group` (idempotent in AWS).
pub async fn register(aws: &Aws, group: &TargetGroup, target_ids: &[String]) -> Result<(), String> {
    aws.elb
        .register_targets()
        .target_group_arn(&group.arn)
        .set_targets(Some(targets(target_ids)))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_error(&format!("RegisterTargets in {}", group.name()), &e))
}

/// Deregisters `target_ids` from `group`; the group then drains their connections for up to
/// its deregistration delay.
pub async fn deregister(aws: &Aws, group: &TargetGroup, target_ids: &[String]) -> Result<(), String> {
    aws.elb
        .deregister_targets()
        .target_group_arn(&group.arn)
        .set_targets(Some(targets(target_ids)))
        .send()
        .await
        .map(|_| ())
        .map_err(|e| sdk_error(&format!("DeregisterTargets from {}", group.name()), &e))
}

/// Private IPv4 addresses of `ids` (instances without one are left out).
pub async fn private_ips(aws: &Aws, ids: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for chunk in ids.chunks(200) {
        let mut token: Option<String> = None;
        loop {
            let resp = aws
                .ec2
                .describe_instances()
                .set_instance_ids(Some(chunk.to_vec()))
                .set_next_token(token.take())
                .send()
                .await
                .map_err(|e| sdk_error("DescribeInstances (private addresses)", &e))?;
            for r in resp.reservations() {
                for i in r.instances() {
                    if let (Some(id), Some(ip)) = (i.instance_id(), i.private_ip_address()) {
                        out.insert(id.to_owned(), ip.to_owned());
                    }
                }
            }
            match resp.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_owned()),
                _ => break,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_or_not() {
        assert!(Health::Healthy.registered());
        assert!(Health::Draining.registered());
        assert!(Health::NotServing("initial".into()).registered());
        assert!(!Health::Unused { registered: false }.registered());
        assert!(Health::Unused { registered: true }.registered(), "a stopped instance stays registered");
        let g = TargetGroup {
            arn: "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef".into(),
            ip_targets: false,
            deregistration_delay: DEFAULT_DEREGISTRATION_DELAY,
        };
        assert_eq!(g.name(), "web");
    }
}
