//! What a failed AWS call means: certainly not done, or perhaps done.
//!
//! A mutating call (`StartInstances`, `StopInstances`, `SetDesiredCapacity`) that failed falls
//! into one of two camps, and the daemon treats them differently:
//! - **definite**: AWS answered and refused ([`ApiError::Throttled`], [`ApiError::Denied`],
//!   [`ApiError::NotFound`], [`ApiError::Refused`]: a 4xx), or the request was never sent
//!   ([`ApiError::NotSent`]). Nothing changed: the evaluation records no change and no cooldown,
//!   and the next evaluation decides afresh.
//! - **ambiguous** ([`ApiError::Ambiguous`]): a timeout, a connection reset or dropped after the
//!   request may have been sent, an answer that could not be read, or a 5xx. The call may have
//!   taken effect. The daemon keeps the decision's intent and reconciles it against the fleet
//!   at the next evaluation, cooldown counted, exactly as an intent left by a crash: never
//!   acting twice on a change it cannot see yet.
//!
//! A connection that could not be opened also counts as ambiguous: the SDK does not say
//! whether an earlier attempt of the same call (it retries) reached AWS.
//!
//! Not here: retries (the SDK's, see [`super::ApiLimits`]) or what to do about an error.

use std::error::Error as StdError;

use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_runtime_api::http::Response;
use aws_smithy_types::error::display::DisplayErrorContext;

/// A failed AWS call, classified by what it says about the call's effect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// AWS throttled the call (`RequestLimitExceeded`, `Throttling`, ...): not done.
    #[error("throttled: {detail}")]
    Throttled { code: String, detail: String },
    /// Not permitted (`UnauthorizedOperation`, `AccessDenied`, ...): not done.
    #[error("denied: {detail}")]
    Denied { code: String, detail: String },
    /// A named resource does not exist (`InvalidInstanceID.NotFound`, ...): not done.
    #[error("not found: {detail}")]
    NotFound { code: String, detail: String },
    /// Any other refusal with a 4xx status (`IncorrectInstanceState`,
    /// `InsufficientInstanceCapacity`, a validation error): not done.
    #[error("refused (HTTP {status}): {detail}")]
    Refused { status: u16, code: String, detail: String },
    /// The request was never sent (it could not be built): not done.
    #[error("not sent: {detail}")]
    NotSent { detail: String },
    /// The call may or may not have taken effect: a timeout, a dropped or reset connection, an
    /// unreadable answer, a 5xx.
    #[error("outcome unknown: {detail}")]
    Ambiguous { detail: String },
}

/// Error codes that mean "slow down": the request was not carried out.
const THROTTLING: [&str; 8] = [
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestLimitExceeded",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
];

/// Error codes that mean "not allowed".
const DENIED: [&str; 5] =
    ["UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "AuthFailure", "UnrecognizedClientException"];

impl ApiError {
    /// Classifies an SDK error (any service's).
    pub fn from_sdk<E>(e: &SdkError<E, Response>) -> ApiError
    where
        E: ProvideErrorMetadata + StdError + 'static,
    {
        let detail = DisplayErrorContext(e).to_string();
        match e {
            SdkError::ConstructionFailure(_) => ApiError::NotSent { detail },
            SdkError::ServiceError(ctx) => {
                let status = ctx.raw().status().as_u16();
                let code = ctx.err().code().unwrap_or_default().to_owned();
                classify(status, code, detail)
            }
            // Timeouts, dispatch failures (connect, reset, dropped), unreadable answers, and
            // whatever a newer SDK adds: the call may have gone through.
            _ => ApiError::Ambiguous { detail },
        }
    }

    /// The call certainly did not take effect.
    pub fn is_definite(&self) -> bool {
        !matches!(self, ApiError::Ambiguous { .. })
    }

    /// What the daemon's error policy makes of it (see `crate::daemon`'s `error_policy`).
    pub fn class(&self) -> ErrorClass {
        match self {
            ApiError::Throttled { .. } => ErrorClass::Throttled,
            ApiError::Denied { .. } => ErrorClass::Denied,
            ApiError::NotFound { .. } => ErrorClass::NotFound,
            ApiError::Refused { .. } | ApiError::NotSent { .. } | ApiError::Ambiguous { .. } => ErrorClass::Transient,
        }
    }

    /// AWS's error code, when it answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            ApiError::Throttled { code, .. }
            | ApiError::Denied { code, .. }
            | ApiError::NotFound { code, .. }
            | ApiError::Refused { code, .. } => Some(code),
            ApiError::NotSent { .. } | ApiError::Ambiguous { .. } => None,
        }
    }
}

/// What a problem means for the pool, whatever call or source it came from: the daemon's one
/// error policy (backoff, degraded health, what is reported) is decided by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Slow down: AWS throttled the call.
    Throttled,
    /// Not permitted: the daemon's role lacks a permission.
    Denied,
    /// Something named does not exist (a group, a target group, an instance).
    NotFound,
    /// Anything else (a timeout, a 5xx, a refusal of this one call): try again next time.
    Transient,
}

/// Why a pool's fleet could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// A describe call failed.
    #[error("{operation} failed: {error}")]
    Call { operation: &'static str, error: ApiError },
    /// The pool's Auto Scaling group does not exist (in this account and region).
    #[error("auto scaling group {0} not found")]
    GroupNotFound(String),
}

impl FleetError {
    pub fn class(&self) -> ErrorClass {
        match self {
            FleetError::Call { error, .. } => error.class(),
            FleetError::GroupNotFound(_) => ErrorClass::NotFound,
        }
    }
}

/// An answer with `status` and error `code`.
fn classify(status: u16, code: String, detail: String) -> ApiError {
    if THROTTLING.contains(&code.as_str()) {
        ApiError::Throttled { code, detail }
    } else if !(400..500).contains(&status) {
        // A 5xx (InternalError, ServiceUnavailable) or an odd status: AWS may have acted.
        ApiError::Ambiguous { detail }
    } else if DENIED.contains(&code.as_str()) || status == 403 {
        ApiError::Denied { code, detail }
    } else if code.contains("NotFound") {
        ApiError::NotFound { code, detail }
    } else {
        ApiError::Refused { status, code, detail }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_code_and_status() {
        let c = |status, code: &str| classify(status, code.to_owned(), "d".to_owned());
        assert!(matches!(c(400, "RequestLimitExceeded"), ApiError::Throttled { .. }));
        assert!(
            matches!(c(503, "Throttling"), ApiError::Throttled { .. }),
            "a throttle is definite whatever its status"
        );
        assert!(matches!(c(403, "UnauthorizedOperation"), ApiError::Denied { .. }));
        assert!(matches!(c(400, "InvalidInstanceID.NotFound"), ApiError::NotFound { .. }));
        assert!(matches!(c(400, "IncorrectInstanceState"), ApiError::Refused { status: 400, .. }));
        assert!(matches!(c(500, "InternalError"), ApiError::Ambiguous { .. }));
        assert!(matches!(c(503, "ServiceUnavailable"), ApiError::Ambiguous { .. }));
        assert!(matches!(c(500, "InvalidInstanceID.NotFound"), ApiError::Ambiguous { .. }), "5xx first");
        assert!(c(400, "IncorrectInstanceState").is_definite());
        assert!(!c(502, "").is_definite());
        assert_eq!(c(400, "X").code(), Some("X"));
        assert_eq!(c(400, "X").to_string(), "refused (HTTP 400): d");
    }
}
