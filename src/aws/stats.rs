//! Per-operation counters of AWS API traffic, for `/metrics` and the benchmark.
//!
//! [`Operation`] declares every AWS operation the daemon calls, once: the counters here and the
//! IAM document (`cmd::iam_policy::API_ACTIONS`) are derived from it. Every client
//! [`crate::aws::Aws`] builds carries one [`CallCounter`] interceptor that recognises the
//! operation from the call's own metadata and counts the call, each retry, each throttled
//! attempt and a final error. Counters are lock-free
//! atomics; [`ApiStats::snapshot`] reads them for a Prometheus exposition.
//!
//! Not here: formatting Prometheus text (the HTTP module does) or deciding what to retry (the
//! SDK's standard retry strategy does, configured in [`crate::aws::Aws`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_ec2::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_ec2::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_ec2::config::{Intercept, RuntimeComponents};
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::retries::RequestAttempts;
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which pools make the daemon call an operation (and so get it in the IAM document).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NeededFor {
    /// Every policy set with at least one policy.
    AnyPool,
    /// Sets with a tagged EC2 pool.
    TaggedPool,
    /// Sets with an Auto Scaling group.
    AutoScalingGroup,
    /// Daemons sharing pools through a lease table (`--lease-table`).
    LeaseTable,
    /// Daemons creating the lease table at start-up (`--create-lease-table`).
    LeaseTableCreation,
    /// Sets with a pool behind load balancer target groups (`pool.target_groups`).
    TargetGroups,
}

/// Declares the operations once: the enum, its order, the SDK's service and operation names
/// (what the counting interceptor reads from each call's metadata), the IAM action, and what
/// needs it and why (the IAM document's table, `cmd::iam_policy::API_ACTIONS`).
macro_rules! operations {
    ($($(#[$doc:meta])* $op:ident: $sdk_service:literal, $iam_prefix:literal, $needed:ident, $why:literal;)+) => {
        /// The AWS operations vmscaler calls.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Operation {
            $($(#[$doc])* $op,)+
        }

        impl Operation {
            pub const ALL: [Operation; [$(Operation::$op),+].len()] = [$(Operation::$op),+];

            /// The API's own name, as Prometheus labels and logs show it.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Operation::$op => stringify!($op),)+
                }
            }

            /// The service name the SDK gives the operation in its metadata.
            pub const fn sdk_service(self) -> &'static str {
                match self {
                    $(Operation::$op => $sdk_service,)+
                }
            }

            /// The IAM action (`service:Operation`).
            pub const fn iam_action(self) -> &'static str {
                match self {
                    $(Operation::$op => concat!($iam_prefix, ":", stringify!($op)),)+
                }
            }

            /// Which pools make the daemon call it.
            pub const fn needed_for(self) -> NeededFor {
                match self {
                    $(Operation::$op => NeededFor::$needed,)+
                }
            }

            /// Where and why the daemon calls it.
            pub const fn why(self) -> &'static str {
                match self {
                    $(Operation::$op => $why,)+
                }
            }
        }
    };
}

operations! {
    GetMetricData: "CloudWatch", "cloudwatch", AnyPool, "aws::metrics reads every pool's series";
    DescribeInstances: "EC2", "ec2", TaggedPool, "aws::fleet lists the members of tagged pools";
    StartInstances: "EC2", "ec2", TaggedPool, "aws::actuate starts stopped members (and dry-runs the call)";
    StopInstances: "EC2", "ec2", TaggedPool, "aws::actuate stops running members (and dry-runs the call)";
    DescribeAutoScalingGroups: "Auto Scaling", "autoscaling", AutoScalingGroup,
        "aws::fleet reads the groups' capacity and instances";
    DescribeScalingActivities: "Auto Scaling", "autoscaling", AutoScalingGroup,
        "aws::fleet checks a group for a scaling activity in progress";
    SetDesiredCapacity: "Auto Scaling", "autoscaling", AutoScalingGroup, "aws::actuate resizes the groups";
    /// DynamoDB, for leases (only with `lease:` configured).
    UpdateItem: "DynamoDB", "dynamodb", LeaseTable,
        "aws::lease takes, renews, fences and hands back leases and heartbeats membership";
    Scan: "DynamoDB", "dynamodb", LeaseTable, "aws::lease reads every lease and member (strongly consistent)";
    CreateTable: "DynamoDB", "dynamodb", LeaseTableCreation, "aws::lease creates the lease table (lease.create_table)";
    DescribeTable: "DynamoDB", "dynamodb", LeaseTableCreation,
        "aws::lease waits for a new lease table to become active";
    UpdateTimeToLive: "DynamoDB", "dynamodb", LeaseTableCreation,
        "aws::lease turns on TTL clean-up of membership items in a new table";
    /// Elastic Load Balancing v2, for pools with `target_groups`.
    DescribeTargetGroups: "Elastic Load Balancing v2", "elasticloadbalancing", TargetGroups,
        "aws::elb reads each listed target group's target type (instance or ip)";
    DescribeTargetGroupAttributes: "Elastic Load Balancing v2", "elasticloadbalancing", TargetGroups,
        "aws::elb reads deregistration_delay.timeout_seconds, the default drain timeout";
    DescribeTargetHealth: "Elastic Load Balancing v2", "elasticloadbalancing", TargetGroups,
        "aws::elb reads members' health (serving once healthy) and drain progress";
    RegisterTargets: "Elastic Load Balancing v2", "elasticloadbalancing", TargetGroups,
        "aws::elb registers started members and members whose drain was cancelled";
    DeregisterTargets: "Elastic Load Balancing v2", "elasticloadbalancing", TargetGroups,
        "aws::elb deregisters members before they are stopped (drain)";
}

impl Operation {
    /// The operation a call is, from the metadata the SDK attaches to it; `None` for calls
    /// vmscaler's daemon does not make (test and benchmark set-up through the same clients).
    pub fn from_sdk(service: &str, name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|op| op.as_str() == name && op.sdk_service() == service)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    errors: AtomicU64,
    throttled: AtomicU64,
    retries: AtomicU64,
}

/// Call counters by operation, shared by all clones of an [`crate::aws::Aws`].
#[derive(Debug, Default)]
pub struct ApiStats {
    ops: [Counters; Operation::ALL.len()],
}

/// One operation's counters at the time of [`ApiStats::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct OpStats {
    pub operation: &'static str,
    /// Calls made (one per SDK `send`, whatever its retries).
    pub calls: u64,
    /// Calls that failed after all retries. A dry run's expected `DryRunOperation` answer is
    /// not an error.
    pub errors: u64,
    /// Attempts answered with a throttling error (retried or not).
    pub throttled: u64,
    /// Attempts after the first.
    pub retries: u64,
}

impl ApiStats {
    /// Counters of every operation, in [`Operation::ALL`] order, zeros included.
    pub fn snapshot(&self) -> Vec<OpStats> {
        Operation::ALL.iter().map(|&op| self.get(op)).collect()
    }

    /// Counters of one operation.
    pub fn get(&self, op: Operation) -> OpStats {
        let c = &self.ops[op.index()];
        OpStats {
            operation: op.as_str(),
            calls: c.calls.load(Ordering::Relaxed),
            errors: c.errors.load(Ordering::Relaxed),
            throttled: c.throttled.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
        }
    }

    /// Calls of one operation so far.
    pub fn calls(&self, op: Operation) -> u64 {
        self.ops[op.index()].calls.load(Ordering::Relaxed)
    }

    fn counters(&self, op: Operation) -> &Counters {
        &self.ops[op.index()]
    }
}

/// The one interceptor on every client [`crate::aws::Aws`] builds: reads which operation a
/// call is from the SDK's metadata and counts it, its retries, throttled attempts and its
/// final error into the shared [`ApiStats`]. A call added to the adapters is counted without
/// anything attached to it; one missing from [`Operation`] is not, and `tests/deploy_iam.rs`
/// fails until it is declared.
#[derive(Debug)]
pub(crate) struct CallCounter {
    stats: Arc<ApiStats>,
}

impl CallCounter {
    pub(crate) fn new(stats: Arc<ApiStats>) -> CallCounter {
        CallCounter { stats }
    }

    fn counters(&self, cfg: &ConfigBag) -> Option<&Counters> {
        let meta = cfg.load::<Metadata>()?;
        Operation::from_sdk(meta.service(), meta.name()).map(|op| self.stats.counters(op))
    }
}

/// Error codes AWS uses for throttling (the SDK's own list, plus EC2's and Auto Scaling's).
const THROTTLING_CODES: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "SlowDown",
];

/// What an HTTP response says about throttling and dry runs, without knowing the protocol:
/// the query protocol (EC2, Auto Scaling) puts the code in XML, CloudWatch's RPCv2 CBOR in a
/// CBOR text string and an `x-amzn-query-error` header; all carry it as plain bytes.
fn response_has_code(status: u16, query_error: Option<&str>, body: Option<&[u8]>, codes: &[&str]) -> bool {
    if status < 400 {
        return false;
    }
    if let Some(h) = query_error {
        let code = h.split(';').next().unwrap_or(h);
        if codes.contains(&code) {
            return true;
        }
    }
    body.is_some_and(|b| codes.iter().any(|c| contains_code(b, c.as_bytes())))
}

/// `code` occurs in `body`. No word boundaries: in CBOR the byte before or after a text is
/// its length header or the next item's, which may well be an ASCII letter. The codes that
/// are prefixes of others (`Throttling`, `RequestThrottled`) are throttling codes too.
fn contains_code(body: &[u8], code: &[u8]) -> bool {
    body.windows(code.len()).any(|w| w == code)
}

fn classify(ctx: &FinalizerInterceptorContextRef<'_>, codes: &[&str]) -> bool {
    match ctx.response() {
        Some(resp) => response_has_code(
            resp.status().as_u16(),
            resp.headers().get("x-amzn-query-error"),
            resp.body().bytes(),
            codes,
        ),
        None => false,
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "vmscaler.CallCounter"
    }

    // Not `read_before_execution`: the operation's metadata is not in the bag yet then.
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(c) = self.counters(cfg) {
            c.calls.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let attempt = cfg.load::<RequestAttempts>().map_or(1, RequestAttempts::attempts);
        if let Some(c) = self.counters(cfg)
            && attempt > 1
        {
            c.retries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(c) = self.counters(cfg)
            && classify(context, &THROTTLING_CODES)
        {
            c.throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let failed = matches!(context.output_or_error(), Some(Err(_)) | None);
        if let Some(c) = self.counters(cfg)
            && failed
            && !classify(context, &["DryRunOperation"])
        {
            c.errors.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_codes_are_found_in_any_protocol() {
        let xml = b"<Response><Errors><Error><Code>RequestLimitExceeded</Code></Error></Errors></Response>";
        assert!(response_has_code(503, None, Some(xml), &THROTTLING_CODES));
        assert!(response_has_code(400, Some("Throttling;Sender"), None, &THROTTLING_CODES));
        let cbor = b"\xa2f__typex\x2ecom.amazonaws.cloudwatch#ThrottlingExceptiongmessage";
        assert!(response_has_code(400, None, Some(cbor), &THROTTLING_CODES));
        let cbor = b"\xa1dcodejThrottlingx";
        assert!(response_has_code(400, None, Some(cbor), &THROTTLING_CODES));
        assert!(!response_has_code(200, Some("Throttling;Sender"), Some(xml), &THROTTLING_CODES), "success");
        let other = b"<Code>InvalidInstanceID.NotFound</Code><Message>no such instance</Message>";
        assert!(!response_has_code(400, None, Some(other), &THROTTLING_CODES));
    }

    #[test]
    fn operations_are_found_from_the_sdk_metadata() {
        assert_eq!(Operation::from_sdk("EC2", "StartInstances"), Some(Operation::StartInstances));
        assert_eq!(Operation::from_sdk("Auto Scaling", "SetDesiredCapacity"), Some(Operation::SetDesiredCapacity));
        assert_eq!(Operation::from_sdk("EC2", "RunInstances"), None, "not a call the daemon makes");
        assert_eq!(Operation::from_sdk("DynamoDB", "StartInstances"), None);
        assert_eq!(
            Operation::from_sdk("Elastic Load Balancing v2", "DeregisterTargets"),
            Some(Operation::DeregisterTargets)
        );
        assert_eq!(Operation::ALL.len(), 17);
        assert_eq!(Operation::SetDesiredCapacity.iam_action(), "autoscaling:SetDesiredCapacity");
    }

    #[test]
    fn snapshot_lists_every_operation() {
        let s = ApiStats::default();
        s.counters(Operation::StopInstances).calls.fetch_add(2, Ordering::Relaxed);
        let snap = s.snapshot();
        assert_eq!(snap.len(), Operation::ALL.len());
        assert_eq!(s.get(Operation::StopInstances).calls, 2);
        assert_eq!(snap.iter().map(|o| o.calls).sum::<u64>(), 2);
    }
}
