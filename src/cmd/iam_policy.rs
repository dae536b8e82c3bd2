//! `vmscaler iam-policy [--policies DIR]`: the least-privilege IAM policy for a policy set.
//!
//! One source of truth for what the daemon may do in AWS. [`API_ACTIONS`] lists every AWS
//! operation the daemon's code calls (a test scans `src/` for SDK calls and checks the table
//! against them, both ways), and [`document`] turns a validated policy set into the JSON
//! document an operator attaches to the daemon's role:
//! - reads (`cloudwatch:GetMetricData`, the `Describe*` calls) on `*`, since none of them
//!   supports resource-level permissions, and only for the pool kinds the set uses;
//! - `ec2:StartInstances`/`ec2:StopInstances` only on instances carrying one of the pools'
//!   tags (`aws:ResourceTag/<key>`), one statement per tag key because keys in one condition
//!   block are ANDed, plus an explicit deny of `StopInstances` on a pool's protected members
//!   and of both on any instance of an Auto Scaling group (it carries `aws:autoscaling:groupName`:
//!   the group owns it, whatever other tags it has). Tag values are written with IAM's `${$}`
//!   escape for `$`, so a value such as `${aws:username}` is matched literally, never read as a
//!   policy variable;
//! - `autoscaling:SetDesiredCapacity` only on the named groups' ARNs
//!   (`...:autoScalingGroup:*:autoScalingGroupName/<name>`);
//! - for pools behind load balancers (`pool.target_groups`): the target group reads on `*`
//!   (`DescribeTargetHealth` and the other `Describe*` calls have no resource-level
//!   permissions) and `elasticloadbalancing:RegisterTargets`/`DeregisterTargets` on exactly
//!   the listed target group ARNs;
//! - with `--lease-table NAME` (several daemons sharing pools through leases, see
//!   [`crate::lease`]): `dynamodb:UpdateItem` and `dynamodb:Scan` on that table only, plus
//!   `CreateTable`, `DescribeTable` and `UpdateTimeToLive` on it with `--create-lease-table`
//!   (the config's `lease.create_table: true`). A single daemon needs no DynamoDB at all.
//!
//! The document deliberately grants no tagging action (`ec2:CreateTags`), so the daemon cannot
//! move an instance into one of its pools. Not here: attaching the policy to a role (see
//! `terraform/`), or region/account scoping (ARNs use `*`; the tag and name conditions are
//! what restrict the daemon).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde_json::{Value, json};
use vmscaler_engine::Policy;
use vmscaler_engine::policy::PoolTarget;

use super::EX_CONFIG;
use crate::policies::load_paths;

pub use crate::aws::stats::NeededFor;
use crate::aws::stats::Operation;

/// One AWS operation the daemon calls, as an IAM action (`service:Operation`).
#[derive(Debug, Clone, Copy)]
pub struct ApiAction {
    pub action: &'static str,
    pub needed_for: NeededFor,
    /// Where and why the daemon calls it.
    pub why: &'static str,
}

/// Every AWS operation the daemon's code calls, derived from the one declaration of them
/// ([`Operation`], which the call counters read too). `tests/deploy_iam.rs` derives the same
/// list from the SDK calls in `src/` and fails when the two differ.
pub const API_ACTIONS: [ApiAction; Operation::ALL.len()] = {
    let mut out = [ApiAction { action: "", needed_for: NeededFor::AnyPool, why: "" }; Operation::ALL.len()];
    let mut i = 0;
    while i < Operation::ALL.len() {
        let op = Operation::ALL[i];
        out[i] = ApiAction { action: op.iam_action(), needed_for: op.needed_for(), why: op.why() };
        i += 1;
    }
    out
};

/// Characters that IAM would read as a wildcard or a policy variable inside an ARN.
const ARN_SPECIAL: [char; 3] = ['*', '?', '$'];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IamPolicyError {
    #[error("no policies: the IAM policy would grant nothing")]
    Empty,
    #[error(
        "policy {policy}: auto scaling group name {group:?} contains '*', '?' or '$', which IAM reads as a wildcard or variable in an ARN"
    )]
    GroupNameNotLiteral { policy: String, group: String },
    #[error("partition {0:?} is not a valid ARN partition")]
    Partition(String),
    #[error("lease table {0:?} is not a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, '_', '-', '.')")]
    LeaseTableName(String),
    #[error("policy {policy}: target group {arn:?} is not a literal target group ARN")]
    TargetGroupArn { policy: String, arn: String },
}

/// The lease table a set of daemons shares, for the IAM document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseGrant<'a> {
    pub table: &'a str,
    /// The daemons create the table themselves (`lease.create_table: true`).
    pub create_table: bool,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files or directories (default: policies/).
    #[arg(long = "policies", value_name = "PATH")]
    pub policies: Vec<PathBuf>,
    /// ARN partition of the account (aws, aws-cn, aws-us-gov).
    #[arg(long, default_value = "aws")]
    pub partition: String,
    /// Write the document to this file instead of standard output.
    #[arg(long, short, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// DynamoDB lease table of daemons sharing pools (the config's `lease.table`).
    #[arg(long, value_name = "TABLE")]
    pub lease_table: Option<String>,
    /// Also let the daemons create the lease table (the config's `lease.create_table: true`).
    #[arg(long, requires = "lease_table")]
    pub create_lease_table: bool,
}

fn action_needed(needed_for: NeededFor, tagged: bool, groups: bool) -> bool {
    match needed_for {
        NeededFor::AnyPool => tagged || groups,
        NeededFor::TaggedPool => tagged,
        NeededFor::AutoScalingGroup => groups,
        NeededFor::LeaseTable | NeededFor::LeaseTableCreation | NeededFor::TargetGroups => false,
    }
}

/// Actions of [`API_ACTIONS`] for the given pool kinds, in table order.
fn actions(tagged: bool, groups: bool, pred: impl Fn(&str) -> bool) -> Vec<&'static str> {
    API_ACTIONS
        .iter()
        .filter(|a| action_needed(a.needed_for, tagged, groups) && pred(a.action))
        .map(|a| a.action)
        .collect()
}

/// Actions of [`API_ACTIONS`] on target groups, reads or writes, in table order.
fn target_group_actions(reads: bool) -> Vec<&'static str> {
    API_ACTIONS
        .iter()
        .filter(|a| a.needed_for == NeededFor::TargetGroups && is_read(a.action) == reads)
        .map(|a| a.action)
        .collect()
}

/// Actions of [`API_ACTIONS`] on the lease table, in table order.
fn lease_actions(create_table: bool) -> Vec<&'static str> {
    API_ACTIONS
        .iter()
        .filter(|a| match a.needed_for {
            NeededFor::LeaseTable => true,
            NeededFor::LeaseTableCreation => create_table,
            _ => false,
        })
        .map(|a| a.action)
        .collect()
}

fn is_read(action: &str) -> bool {
    action.split(':').nth(1).is_some_and(|op| op.starts_with("Describe") || op.starts_with("Get"))
}

/// Joins a CamelCase-able string into an IAM statement id (alphanumeric only).
fn sid(parts: &[&str]) -> String {
    parts
        .iter()
        .flat_map(|p| p.split(|c: char| !c.is_ascii_alphanumeric()))
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            cs.next().map_or_else(String::new, |c| c.to_ascii_uppercase().to_string() + cs.as_str())
        })
        .collect()
}

/// `value` as IAM reads it literally in a condition: every `$` written as `${$}`, so `${...}`
/// is never taken for a policy variable (`${aws:username}` would match each caller's name).
fn iam_literal(value: &str) -> String {
    value.replace('$', "${$}")
}

/// The IAM policy document for `policies` run by a single daemon.
pub fn document(policies: &[&Policy], partition: &str) -> Result<Value, IamPolicyError> {
    document_with_lease(policies, partition, None)
}

/// The IAM policy document for `policies`, with access to the lease table when given.
pub fn document_with_lease(
    policies: &[&Policy],
    partition: &str,
    lease: Option<LeaseGrant<'_>>,
) -> Result<Value, IamPolicyError> {
    if let Some(l) = lease.filter(|l| !crate::config::valid_table_name(l.table)) {
        return Err(IamPolicyError::LeaseTableName(l.table.to_owned()));
    }
    if policies.is_empty() {
        return Err(IamPolicyError::Empty);
    }
    if partition.is_empty() || !partition.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
        return Err(IamPolicyError::Partition(partition.to_owned()));
    }
    // Pool tag values by key; protected pools by (pool key, protect key, protect value).
    let mut pool_tags: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut protected: BTreeMap<(&str, &str, &str), BTreeSet<&str>> = BTreeMap::new();
    let mut groups: BTreeSet<&str> = BTreeSet::new();
    let mut target_groups: BTreeSet<&str> = BTreeSet::new();
    for p in policies {
        for arn in &p.target_groups {
            if arn.contains(ARN_SPECIAL) || !vmscaler_engine::policy::valid_target_group_arn(arn) {
                return Err(IamPolicyError::TargetGroupArn { policy: p.name.clone(), arn: arn.clone() });
            }
            target_groups.insert(arn.as_str());
        }
        match &p.pool {
            PoolTarget::Tagged(tag) => {
                pool_tags.entry(tag.key.as_str()).or_default().insert(tag.value.as_str());
                if let Some(protect) = &p.scale_in.protect_tag {
                    // Same key: a protected instance carries another value, so it is no member.
                    if protect.key != tag.key {
                        protected
                            .entry((tag.key.as_str(), protect.key.as_str(), protect.value.as_str()))
                            .or_default()
                            .insert(tag.value.as_str());
                    }
                }
            }
            PoolTarget::AutoScalingGroup(name) => {
                if name.contains(ARN_SPECIAL) {
                    return Err(IamPolicyError::GroupNameNotLiteral { policy: p.name.clone(), group: name.clone() });
                }
                groups.insert(name.as_str());
            }
        }
    }
    let (has_tagged, has_groups) = (!pool_tags.is_empty(), !groups.is_empty());
    let instance_arn = format!("arn:{partition}:ec2:*:*:instance/*");
    let mut statements = Vec::new();

    let mut reads = actions(has_tagged, has_groups, is_read);
    if !target_groups.is_empty() {
        reads.extend(target_group_actions(true));
    }
    statements.push(json!({
        "Sid": "ReadMetricsAndFleets",
        "Effect": "Allow",
        "Action": reads,
        "Resource": "*",
    }));
    for (key, values) in &pool_tags {
        let values: Vec<String> = values.iter().map(|v| iam_literal(v)).collect();
        statements.push(json!({
            "Sid": sid(&["StartStopTaggedPools", key]),
            "Effect": "Allow",
            "Action": actions(true, false, |a| !is_read(a)),
            "Resource": instance_arn,
            "Condition": { "StringEquals": { format!("aws:ResourceTag/{key}"): values } },
        }));
    }
    if has_tagged {
        // An instance of an Auto Scaling group belongs to the group, even if it carries a pool's
        // tag: the daemon skips such instances, and IAM makes sure of it.
        statements.push(json!({
            "Sid": "NeverTouchAutoScalingInstances",
            "Effect": "Deny",
            "Action": actions(true, false, |a| !is_read(a)),
            "Resource": instance_arn,
            "Condition": { "Null": { "aws:ResourceTag/aws:autoscaling:groupName": "false" } },
        }));
    }
    for ((pool_key, protect_key, protect_value), values) in &protected {
        let values: Vec<String> = values.iter().map(|v| iam_literal(v)).collect();
        let protect_value = iam_literal(protect_value);
        statements.push(json!({
            "Sid": sid(&["NeverStopProtected", pool_key, protect_key]),
            "Effect": "Deny",
            "Action": "ec2:StopInstances",
            "Resource": instance_arn,
            "Condition": { "StringEquals": {
                format!("aws:ResourceTag/{pool_key}"): values,
                format!("aws:ResourceTag/{protect_key}"): protect_value,
            } },
        }));
    }
    if has_groups {
        let arns: Vec<String> = groups
            .iter()
            .map(|g| format!("arn:{partition}:autoscaling:*:*:autoScalingGroup:*:autoScalingGroupName/{g}"))
            .collect();
        statements.push(json!({
            "Sid": "ResizeNamedGroups",
            "Effect": "Allow",
            "Action": actions(false, true, |a| !is_read(a)),
            "Resource": arns,
        }));
    }
    if !target_groups.is_empty() {
        statements.push(json!({
            "Sid": "RegisterInListedTargetGroups",
            "Effect": "Allow",
            "Action": target_group_actions(false),
            "Resource": target_groups,
        }));
    }
    if let Some(l) = lease {
        statements.push(json!({
            "Sid": "LeaseTable",
            "Effect": "Allow",
            "Action": lease_actions(l.create_table),
            "Resource": format!("arn:{partition}:dynamodb:*:*:table/{}", l.table),
        }));
    }
    Ok(json!({ "Version": "2012-10-17", "Statement": statements }))
}

/// The document as `vmscaler iam-policy` prints it: pretty JSON with a final newline.
pub fn render(policies: &[&Policy], partition: &str) -> Result<String, IamPolicyError> {
    render_with_lease(policies, partition, None)
}

/// Like [`render`], with access to the lease table when given.
pub fn render_with_lease(
    policies: &[&Policy],
    partition: &str,
    lease: Option<LeaseGrant<'_>>,
) -> Result<String, IamPolicyError> {
    let doc = document_with_lease(policies, partition, lease)?;
    // Serialising a `Value` cannot fail.
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = if args.policies.is_empty() { vec![PathBuf::from("policies")] } else { args.policies };
    let set = load_paths(&paths);
    if set.error_count() > 0 || set.files.is_empty() {
        for d in &set.diagnostics {
            eprintln!("{d}");
        }
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        eprintln!("vmscaler: no IAM policy: the policy set in {} is empty or invalid", shown.join(", "));
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let policies: Vec<&Policy> = set.policies.iter().map(|(_, p)| p).collect();
    let lease = args
        .lease_table
        .as_deref()
        .map(|table| LeaseGrant { table: table.trim(), create_table: args.create_lease_table });
    let text = match render_with_lease(&policies, &args.partition, lease) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vmscaler: {e}");
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    match &args.out {
        Some(path) => std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?,
        None => std::io::stdout().lock().write_all(text.as_bytes()).context("cannot write to standard output")?,
    }
    Ok(ExitCode::SUCCESS)
}
