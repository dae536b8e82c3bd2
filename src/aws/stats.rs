//! Per-operation counters of AWS API traffic, for `/metrics` and the benchmark.
//!
//! Every call made through [`crate::aws`] carries a [`CallCounter`] interceptor that counts
//! the call, each retry, each throttled attempt and a final error. Counters are lock-free
//! atomics; [`ApiStats::snapshot`] reads them for a Prometheus exposition.
//!
//! Not here: formatting Prometheus text (the HTTP module does) or deciding what to retry (the
//! SDK's standard retry strategy does, configured in [`crate::aws::Aws`]).

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use aws_sdk_ec2::config::interceptors::FinalizerInterceptorContextRef;
use aws_sdk_ec2::config::interceptors::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_ec2::config::{Intercept, RuntimeComponents};
use aws_smithy_types::config_bag::ConfigBag;
use serde::Serialize;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The AWS operations vmscaler calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    GetMetricData,
    DescribeInstances,
    StartInstances,
    StopInstances,
    DescribeAutoScalingGroups,
    DescribeScalingActivities,
    SetDesiredCapacity,
    /// DynamoDB, for leases (only with `lease:` configured).
    UpdateItem,
    Scan,
    CreateTable,
    DescribeTable,
    UpdateTimeToLive,
    /// Elastic Load Balancing v2, for pools with `target_groups`.
    DescribeTargetGroups,
    DescribeTargetGroupAttributes,
    DescribeTargetHealth,
    RegisterTargets,
    DeregisterTargets,
}

impl Operation {
    pub const ALL: [Operation; 17] = [
        Operation::GetMetricData,
        Operation::DescribeInstances,
        Operation::StartInstances,
        Operation::StopInstances,
        Operation::DescribeAutoScalingGroups,
        Operation::DescribeScalingActivities,
        Operation::SetDesiredCapacity,
        Operation::UpdateItem,
        Operation::Scan,
        Operation::CreateTable,
        Operation::DescribeTable,
        Operation::UpdateTimeToLive,
        Operation::DescribeTargetGroups,
        Operation::DescribeTargetGroupAttributes,
        Operation::DescribeTargetHealth,
        Operation::RegisterTargets,
        Operation::DeregisterTargets,
    ];

    /// The API's own name, as Prometheus labels and logs show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::GetMetricData => "GetMetricData",
            Operation::DescribeInstances => "DescribeInstances",
            Operation::StartInstances => "StartInstances",
            Operation::StopInstances => "StopInstances",
            Operation::DescribeAutoScalingGroups => "DescribeAutoScalingGroups",
            Operation::DescribeScalingActivities => "DescribeScalingActivities",
            Operation::SetDesiredCapacity => "SetDesiredCapacity",
            Operation::UpdateItem => "UpdateItem",
            Operation::Scan => "Scan",
            Operation::CreateTable => "CreateTable",
            Operation::DescribeTable => "DescribeTable",
            Operation::UpdateTimeToLive => "UpdateTimeToLive",
            Operation::DescribeTargetGroups => "DescribeTargetGroups",
            Operation::DescribeTargetGroupAttributes => "DescribeTargetGroupAttributes",
            Operation::DescribeTargetHealth => "DescribeTargetHealth",
            Operation::RegisterTargets => "RegisterTargets",
            Operation::DeregisterTargets => "DeregisterTargets",
        }
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

/// Interceptor attached to one call: counts it, its retries, throttled attempts and its
/// final error into the shared [`ApiStats`].
#[derive(Debug)]
pub(crate) struct CallCounter {
    stats: Arc<ApiStats>,
    op: Operation,
    attempts: AtomicU32,
}

impl CallCounter {
    pub(crate) fn new(stats: Arc<ApiStats>, op: Operation) -> CallCounter {
        CallCounter { stats, op, attempts: AtomicU32::new(0) }
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

    fn read_before_execution(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.stats.counters(self.op).calls.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if self.attempts.fetch_add(1, Ordering::Relaxed) > 0 {
            self.stats.counters(self.op).retries.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if classify(context, &THROTTLING_CODES) {
            self.stats.counters(self.op).throttled.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn read_after_execution(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let failed = matches!(context.output_or_error(), Some(Err(_)) | None);
        if failed && !classify(context, &["DryRunOperation"]) {
            self.stats.counters(self.op).errors.fetch_add(1, Ordering::Relaxed);
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
    fn snapshot_lists_every_operation() {
        let s = ApiStats::default();
        s.counters(Operation::StopInstances).calls.fetch_add(2, Ordering::Relaxed);
        let snap = s.snapshot();
        assert_eq!(snap.len(), Operation::ALL.len());
        assert_eq!(s.get(Operation::StopInstances).calls, 2);
        assert_eq!(snap.iter().map(|o| o.calls).sum::<u64>(), 2);
    }
}
