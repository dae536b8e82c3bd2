//! AWS adapters: CloudWatch in, EC2 and Auto Scaling out.
//!
//! [`Aws`] holds one client per service, configured once with explicit retry and timeout
//! settings, and a shared [`ApiStats`] that every call made through this module feeds (calls,
//! errors, throttled attempts and retries per operation). The submodules turn AWS answers
//! into engine types and engine decisions into AWS calls:
//! - [`metrics`]: every series of every pool in as few `GetMetricData` calls as the API allows;
//! - [`fleet`]: tagged pools and Auto Scaling groups as [`vmscaler_engine::Fleet`]s;
//! - [`actuate`]: a [`vmscaler_engine::Decision`]'s actions, for real or as a dry run;
//! - [`elb`]: the load balancer target groups of pools that drain before they stop.
//!
//! Deliberately not here: deciding anything (the engine does), scheduling evaluations,
//! persisting state or reading the clock (callers pass `now`).

pub mod actuate;
pub mod credentials;
pub mod elb;
pub mod error;
pub mod fleet;
pub mod json_protocol;
pub mod lease;
pub mod metrics;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_ec2::config::Region;

pub use error::ApiError;
use stats::CallCounter;
pub use stats::{ApiStats, OpStats};

/// Where and as whom to call AWS. Unset fields fall back to the standard AWS settings
/// (`AWS_REGION`, `AWS_PROFILE`, `AWS_ENDPOINT_URL`, the shared config files, instance roles).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    /// A custom endpoint for every service (moto server, LocalStack).
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
}

/// Attempts per call, the first one included. Throttling and transient errors are retried
/// with the SDK's exponential backoff and jitter.
pub const MAX_ATTEMPTS: u32 = 4;
/// Longest a single attempt may take.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one call may take, retries and backoff included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest a TCP/TLS connect may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Retry and timeout settings of every call. [`Default`] is the constants above; a slow
/// endpoint (moto with thousands of instances, in the benchmark) may need longer timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiLimits {
    pub max_attempts: u32,
    pub attempt_timeout: Duration,
    pub operation_timeout: Duration,
    pub connect_timeout: Duration,
}

impl Default for ApiLimits {
    fn default() -> ApiLimits {
        ApiLimits {
            max_attempts: MAX_ATTEMPTS,
            attempt_timeout: ATTEMPT_TIMEOUT,
            operation_timeout: OPERATION_TIMEOUT,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }
}

/// Clients for the three services vmscaler uses, sharing one [`ApiStats`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Aws {
    pub(crate) ec2: aws_sdk_ec2::Client,
    pub(crate) autoscaling: aws_sdk_autoscaling::Client,
    pub(crate) cloudwatch: aws_sdk_cloudwatch::Client,
    /// Leases (multi-host operation); unused unless the config has a `lease:` section.
    pub(crate) dynamodb: aws_sdk_dynamodb::Client,
    /// Load balancer target groups (pools with `target_groups`).
    pub(crate) elb: aws_sdk_elasticloadbalancingv2::Client,
    stats: Arc<ApiStats>,
    /// The chain the clients get credentials from (checked once at start: `credentials.rs`).
    pub(crate) credentials: Option<aws_sdk_ec2::config::SharedCredentialsProvider>,
    uncounted: Uncounted,
}

/// The same clients without the call counter, for set-up calls that are not the daemon's.
#[derive(Clone, Debug)]
struct Uncounted {
    ec2: aws_sdk_ec2::Client,
    autoscaling: aws_sdk_autoscaling::Client,
    cloudwatch: aws_sdk_cloudwatch::Client,
    elb: aws_sdk_elasticloadbalancingv2::Client,
}

impl Aws {
    /// Loads the standard AWS configuration, overridden by `settings`, and builds the clients.
    pub async fn connect(settings: &AwsSettings) -> anyhow::Result<Aws> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &settings.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &settings.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(url) = &settings.endpoint_url {
            loader = loader.endpoint_url(url);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            anyhow::bail!("no AWS region configured: set AWS_REGION, a profile region or the region setting");
        }
        Ok(Aws::from_sdk_config(&config))
    }

    /// Builds the clients from an already loaded SDK configuration (tests use this to pass
    /// static credentials), applying vmscaler's retry and timeout settings on top.
    pub fn from_sdk_config(config: &aws_config::SdkConfig) -> Aws {
        Aws::from_sdk_config_with(config, ApiLimits::default())
    }

    /// Like [`Aws::from_sdk_config`], with explicit retry and timeout settings.
    pub fn from_sdk_config_with(config: &aws_config::SdkConfig, limits: ApiLimits) -> Aws {
        let retry = RetryConfig::standard()
            .with_max_attempts(limits.max_attempts)
            .with_initial_backoff(Duration::from_millis(200))
            .with_max_backoff(Duration::from_secs(5));
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(limits.connect_timeout)
            .operation_attempt_timeout(limits.attempt_timeout)
            .operation_timeout(limits.operation_timeout)
            .build();
        let stats = Arc::new(ApiStats::default());
        // Every client counts the daemon's operations through one interceptor (see `stats`);
        // the `uncounted` twins serve test and benchmark set-up.
        let ec2 =
            aws_sdk_ec2::config::Builder::from(config).retry_config(retry.clone()).timeout_config(timeouts.clone());
        let autoscaling = aws_sdk_autoscaling::config::Builder::from(config)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone());
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(config)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone());
        let elb = aws_sdk_elasticloadbalancingv2::config::Builder::from(config)
            .retry_config(retry.clone())
            .timeout_config(timeouts.clone());
        // CloudWatch goes over AWS JSON 1.0 (see `json_protocol`): moto has no RPC v2 CBOR.
        let cloudwatch = aws_sdk_cloudwatch::config::Builder::from(config)
            .retry_config(retry)
            .timeout_config(timeouts)
            .interceptor(json_protocol::JsonRequests)
            .http_client(json_protocol::JsonResponses::new(config.http_client()))
            // PutMetricData bodies would be gzipped before the JSON rewrite could read them.
            .disable_request_compression(true);
        let counter = || CallCounter::new(Arc::clone(&stats));
        Aws {
            uncounted: Uncounted {
                ec2: aws_sdk_ec2::Client::from_conf(ec2.clone().build()),
                autoscaling: aws_sdk_autoscaling::Client::from_conf(autoscaling.clone().build()),
                cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch.clone().build()),
                elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb.clone().build()),
            },
            ec2: aws_sdk_ec2::Client::from_conf(ec2.interceptor(counter()).build()),
            autoscaling: aws_sdk_autoscaling::Client::from_conf(autoscaling.interceptor(counter()).build()),
            cloudwatch: aws_sdk_cloudwatch::Client::from_conf(cloudwatch.interceptor(counter()).build()),
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb.interceptor(counter()).build()),
            elb: aws_sdk_elasticloadbalancingv2::Client::from_conf(elb.interceptor(counter()).build()),
            stats,
            credentials: config.credentials_provider(),
        }
    }

    /// Counters of every call made through this value and its clones.
    pub fn stats(&self) -> &ApiStats {
        &self.stats
    }

    /// The EC2 client, for callers with needs beyond this module (test and benchmark setup).
    /// Calls made on it directly are not counted in [`ApiStats`], and are not operations the
    /// daemon's IAM policy grants.
    pub fn ec2(&self) -> &aws_sdk_ec2::Client {
        &self.uncounted.ec2
    }

    /// The Auto Scaling client (uncounted, like [`Aws::ec2`]).
    pub fn autoscaling(&self) -> &aws_sdk_autoscaling::Client {
        &self.uncounted.autoscaling
    }

    /// The Elastic Load Balancing v2 client (uncounted, like [`Aws::ec2`]).
    pub fn elb(&self) -> &aws_sdk_elasticloadbalancingv2::Client {
        &self.uncounted.elb
    }

    /// The CloudWatch client, speaking AWS JSON 1.0 (uncounted, like [`Aws::ec2`]).
    pub fn cloudwatch(&self) -> &aws_sdk_cloudwatch::Client {
        &self.uncounted.cloudwatch
    }
}

/// Converts an SDK timestamp; `None` when it does not fit jiff's range.
pub(crate) fn to_timestamp(t: &aws_smithy_types::DateTime) -> Option<jiff::Timestamp> {
    let nanos = i32::try_from(t.subsec_nanos()).ok()?;
    jiff::Timestamp::new(t.secs(), nanos).ok()
}

pub(crate) fn to_datetime(t: jiff::Timestamp) -> aws_smithy_types::DateTime {
    let nanos = u32::try_from(t.subsec_nanosecond()).unwrap_or(0);
    aws_smithy_types::DateTime::from_secs_and_nanos(t.as_second(), nanos)
}
