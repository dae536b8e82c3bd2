//! The policy model: what one pool's YAML file means once it has been validated.
//!
//! Raw YAML is read into [`raw`] structs (every field spanned, unknown fields rejected) and
//! converted by [`validate`] into these types, which carry their invariants: `min <= max`,
//! finite positive targets, non-negative weights with a positive sum, parsed cron patterns
//! and time zones. Code that holds a [`Policy`] never re-checks them.
//!
//! Not here: reading files (the caller passes the text and a name for messages).

mod checks;
mod raw;
mod unknown;
mod validate;
mod zones;

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;

pub use validate::valid_target_group_arn;
pub use validate::{
    Diagnostic, PolicyReport, Severity, check_policy_set, parse_policy, parse_policy_at, pools_overlap, yaml_message,
};

// Defaults for what a policy file leaves out (the README's policy reference lists the same).

/// `interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// `metrics[].period`.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(60);
/// `scaling.tolerance`.
pub const DEFAULT_TOLERANCE: f64 = 0.1;
/// `scaling.scale_up.confirmations`.
pub const DEFAULT_CONFIRMATIONS: u32 = 2;
/// `scaling.scale_up.cooldown`.
pub const DEFAULT_UP_COOLDOWN: Duration = Duration::from_secs(120);
/// `scaling.scale_up.max_step`.
pub const DEFAULT_UP_STEP: Step = Step::Percent(100.0);
/// `scaling.scale_down.stabilization`.
pub const DEFAULT_STABILIZATION: Duration = Duration::from_secs(600);
/// `scaling.scale_down.cooldown`.
pub const DEFAULT_DOWN_COOLDOWN: Duration = Duration::from_secs(300);
/// `scaling.scale_down.max_step`.
pub const DEFAULT_DOWN_STEP: Step = Step::Percent(10.0);
/// `scaling.scale_down.acceleration`.
pub const DEFAULT_ACCELERATION: f64 = 2.0;
/// `history.max_age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(300);
/// `history.window` is at least this (and at least the stabilisation window and 4 intervals).
pub const DEFAULT_MIN_HISTORY_WINDOW: Duration = Duration::from_secs(1800);

/// A validated scaling policy for one pool.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub name: String,
    pub pool: PoolTarget,
    /// ARNs of the load balancer target groups the pool's members serve behind (tagged pools
    /// only; an Auto Scaling group registers its own instances). Empty: no load balancer.
    pub target_groups: Vec<String>,
    pub min: u32,
    pub max: u32,
    /// How often the pool is evaluated.
    pub interval: Duration,
    /// Evaluate and record, but never change the fleet (also settable for the whole daemon).
    pub dry_run: bool,
    pub metrics: Vec<MetricSpec>,
    pub scaling: Scaling,
    pub history: History,
    pub missing_data: MissingData,
    pub prewarm: Vec<PrewarmRule>,
    pub scale_in: ScaleIn,
    pub scale_out: ScaleOut,
    /// Learned capacity floors from recurring load (`predictive:`); `None`: off.
    pub predictive: Option<Predictive>,
    /// The composite-threshold rule, instead of the target blend, when set.
    pub composite: Option<Composite>,
    /// No scale-in at all while a pre-warm floor is in force (ramp, lead and event).
    pub freeze_scale_in: bool,
    /// How a fleet found above `max` (a pool adopted with more instances than its policy
    /// allows, or a lowered `max`) is brought down.
    pub adopt: Adopt,
}

/// The composite-threshold rule: the score is `Σ weight × min(value / target, cap)` (each metric
/// normalised by its `target`, capped at its `cap`), and the pool scales one step up when it
/// stays above `scale_up_above` for `periods` consecutive metric periods, one step down when it
/// stays below `scale_down_below` as long (then the stabilisation window and cooldowns apply).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Composite {
    pub scale_up_above: f64,
    pub scale_down_below: Option<f64>,
    /// Consecutive metric periods (distinct datapoint times, not evaluations).
    pub periods: u32,
}

/// How a pool above its `max` is brought down to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Adopt {
    /// Like any descent: the scale-down step limit and cooldown apply (the default).
    Gradual,
    /// At once, whatever the step limit and cooldown say.
    Immediate,
}

/// What the policy scales.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PoolTarget {
    /// EC2 instances carrying this tag; running ones are capacity, stopped ones the warm pool.
    Tagged(Tag),
    /// An Auto Scaling group, scaled through its desired capacity.
    AutoScalingGroup(String),
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Tag {
    pub key: String,
    pub value: String,
}

/// One CloudWatch metric and how it counts toward the score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSpec {
    /// Short name used in reasons, history and the CloudWatch query id.
    pub id: String,
    pub namespace: String,
    pub name: String,
    pub dimensions: BTreeMap<String, String>,
    pub statistic: Statistic,
    pub period: Duration,
    pub goal: Goal,
    pub weight: f64,
    /// At or above this raw value the metric is saturated and may drive a scale-up alone.
    pub ceiling: Option<f64>,
    /// `Some` when the metric is published per instance (`InstanceId` dimension, added per
    /// member by the reader) and must be aggregated across the pool.
    pub per_instance: Option<Aggregation>,
    /// With the composite rule: the normalised value (`value / target`) is capped at this.
    pub cap: Option<f64>,
    /// Where the metric is read from. For [`MetricSource::Prometheus`], `namespace`, `name`
    /// and `dimensions` are empty and `statistic` is unused.
    pub source: MetricSource,
}

/// Where a metric's datapoints come from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MetricSource {
    /// CloudWatch `GetMetricData` (namespace, name, dimensions, statistic).
    #[default]
    CloudWatch,
    /// A PromQL instant query, read at the evaluation time minus the daemon's `metric_offset`.
    /// The value describes the `period` that ends at that instant.
    Prometheus {
        query: String,
        /// For a `per_instance` metric: the label that carries a member's instance id; series
        /// of instances that are not running members of the pool are ignored.
        instance_label: String,
    },
}

/// The placeholder a per-instance Prometheus query may use for the running members' ids, as a
/// regular-expression alternation (`i-0a|i-0b`): `up{instance_id=~"${instance_ids}"}`.
pub const INSTANCE_IDS_PLACEHOLDER: &str = "${instance_ids}";
/// Default [`MetricSource::Prometheus::instance_label`].
pub const DEFAULT_INSTANCE_LABEL: &str = "instance_id";

/// What a metric is measured against.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// A utilisation (CPU %, GPU %): ratio = value / target.
    Utilization { target: f64 },
    /// A backlog (queue depth): desired capacity = value / target_per_instance.
    PerInstance { target_per_instance: f64 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Statistic {
    Average,
    Maximum,
    Minimum,
    Sum,
    SampleCount,
}

impl Statistic {
    /// The name CloudWatch uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Statistic::Average => "Average",
            Statistic::Maximum => "Maximum",
            Statistic::Minimum => "Minimum",
            Statistic::Sum => "Sum",
            Statistic::SampleCount => "SampleCount",
        }
    }
}

/// How per-instance series combine into one pool value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    Avg,
    Max,
}

impl Aggregation {
    /// Combines per-instance values; `None` when there are none. Non-finite values are skipped.
    pub fn apply(self, values: impl IntoIterator<Item = f64>) -> Option<f64> {
        let mut n = 0u32;
        let mut acc = 0.0f64;
        for v in values.into_iter().filter(|v| v.is_finite()) {
            acc = match self {
                Aggregation::Avg => acc + v,
                Aggregation::Max if n == 0 => v,
                Aggregation::Max => acc.max(v),
            };
            n += 1;
        }
        match (n, self) {
            (0, _) => None,
            (_, Aggregation::Avg) => Some(acc / f64::from(n)),
            (_, Aggregation::Max) => Some(acc),
        }
    }
}

/// Anti-flapping settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scaling {
    /// No change while the score is within `1 ± tolerance`.
    pub tolerance: f64,
    pub scale_up: ScaleUp,
    pub scale_down: ScaleDown,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleUp {
    /// Consecutive evaluations (this one included) the score must stay above the band.
    pub confirmations: u32,
    /// A score at or above this skips confirmation: a flash crowd does not wait.
    pub fast_threshold: Option<f64>,
    /// No further scale-up within this time of the last one.
    pub cooldown: Duration,
    pub max_step: Step,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleDown {
    /// Scale down only to the highest proposal seen over this window.
    pub stabilization: Duration,
    /// No scale-down within this time of the last scaling action of either direction.
    pub cooldown: Duration,
    pub max_step: Step,
    /// Each further scale-down in a row (no evaluation above the band in between) may take a
    /// step this many times larger than the previous one: a confirmed descent speeds up,
    /// a single dip still only gets `max_step`. 1 keeps every step at `max_step`.
    pub acceleration: f64,
    /// When set: once a whole `stabilization` window has passed in which no evaluation asked
    /// for more than the current capacity (each one scored, none above its band with a
    /// proposal above the current capacity: a rise already scaled up to is answered), the
    /// descent is confirmed, and the scale-down goes straight to the highest proposal of only
    /// this last stretch, with no step limit (the cooldown still applies). At most
    /// `stabilization`. `None`: every scale-down is stabilised over the whole window and
    /// limited by `max_step` and `acceleration`.
    pub confirmed_stabilization: Option<Duration>,
}

/// A step limit: an instance count or a percentage of current capacity (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Instances(u32),
    Percent(f64),
}

impl Step {
    /// How many instances this step allows from `current`; never less than one.
    pub fn limit(self, current: u32) -> u32 {
        match self {
            Step::Instances(n) => n.max(1),
            Step::Percent(p) => {
                let n = (f64::from(current) * p / 100.0).ceil();
                // Validation bounds `p`, so `n` fits; saturate rather than trust that.
                // In range: checked against u32::MAX, and `ceil` of a non-negative number.
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let n = if n >= f64::from(u32::MAX) { u32::MAX } else { (n as u32).max(1) };
                n
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct History {
    /// How long metric samples and evaluation records are kept.
    pub window: Duration,
    /// A datapoint older than this counts as missing.
    pub max_age: Duration,
}

/// What to do when metrics are missing. Never a scale-down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum MissingData {
    /// Keep current capacity.
    #[default]
    Hold,
    /// Fail safe: scale up by one `scale_up.max_step` (cooldown still applies).
    ScaleUp,
    /// Hold at least this capacity.
    Fixed(u32),
}

/// A scheduled capacity floor.
#[derive(Debug, Clone, PartialEq)]
pub struct PrewarmRule {
    pub name: String,
    pub when: PrewarmWhen,
    pub time_zone: TimeZone,
    /// IANA name of `time_zone`, for messages.
    pub time_zone_name: String,
    /// Capacity is raised this long before the event starts (covers boot time).
    pub lead: Duration,
    /// Optional linear ramp before `start - lead`, from `min` to `capacity`.
    pub ramp: Duration,
    pub capacity: u32,
    /// When set, the floor is released once the event has run this long with no evaluation
    /// in the last `release_after` asking for its capacity (the crowd it was written for did
    /// not come, or has gone), and held again as soon as one does. `None`: a hard floor for
    /// the whole window. Positive, at most the window's duration and at most `history.window`
    /// (the evaluations it looks back on must be kept).
    pub release_after: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PrewarmWhen {
    /// A one-off window with full dates, resolved to instants at validation.
    Once { start: Timestamp, end: Timestamp },
    /// A recurring window: each match of `cron` in the rule's zone starts one. (The occurrences
    /// an evaluation finds are remembered outside the model, in
    /// [`crate::schedule::ScheduleCache`].)
    Cron { cron: Box<croner::Cron>, pattern: String, duration: Duration },
}

/// The `predictive:` block: a capacity floor learned from the pool's own recurring load
/// (see [`crate::forecast`]). The fitted model lives beside the history, never in here.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Predictive {
    pub mode: PredictiveMode,
    /// How much past demand the model learns from.
    pub history: Duration,
    /// Seasonal periods to try: daily, and weekly once two weeks of history exist.
    pub daily: bool,
    pub weekly: bool,
    /// The quantile of the same slot over past days (or weeks) to provision for.
    pub quantile: f64,
    /// Extra capacity on top of the quantile, as a fraction (0.1 = 10 %).
    pub margin: f64,
    /// The floor at `now` covers the forecast up to `now + lead` (boot time and more).
    pub lead: Duration,
    /// The floor is not applied while the forecast's recent error (WAPE) is above this.
    pub max_error: f64,
}

/// Whether the forecast floor acts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PredictiveMode {
    /// Compute, record and show the floor; never act on it.
    ForecastOnly,
    /// Apply the floor (it raises capacity, never lowers it).
    Active,
}

pub const DEFAULT_PREDICTIVE_HISTORY: Duration = Duration::from_secs(14 * 86_400);
pub const DEFAULT_PREDICTIVE_QUANTILE: f64 = 0.75;
pub const DEFAULT_PREDICTIVE_LEAD: Duration = Duration::from_secs(300);
pub const DEFAULT_PREDICTIVE_MAX_ERROR: f64 = 0.8;

impl Default for Predictive {
    fn default() -> Self {
        Predictive {
            mode: PredictiveMode::ForecastOnly,
            history: DEFAULT_PREDICTIVE_HISTORY,
            daily: true,
            weekly: true,
            quantile: DEFAULT_PREDICTIVE_QUANTILE,
            margin: 0.0,
            lead: DEFAULT_PREDICTIVE_LEAD,
            max_error: DEFAULT_PREDICTIVE_MAX_ERROR,
        }
    }
}

/// Scale-in preferences.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleIn {
    pub order: ScaleInOrder,
    /// Members carrying this tag are never stopped.
    pub protect_tag: Option<Tag>,
    /// Longest wait for a member leaving its target groups to drain before it is stopped
    /// anyway; `None`: the target groups' own `deregistration_delay.timeout_seconds`, capped
    /// at [`DRAIN_TIMEOUT_CAP`].
    pub drain_timeout: Option<Duration>,
    /// An HTTP POST to each member after it drained and before it is stopped.
    pub pre_stop: Option<PreStop>,
}

/// The longest drain wait taken from a target group's deregistration delay (AWS allows up to
/// an hour; a scale-in that waits that long is rarely what anyone wants).
pub const DRAIN_TIMEOUT_CAP: Duration = Duration::from_secs(15 * 60);
/// The longest explicit `scale_in.drain_timeout` (AWS's own limit for the deregistration delay).
pub const DRAIN_TIMEOUT_MAX: Duration = Duration::from_secs(3600);
/// `scale_in.pre_stop.timeout` when not given.
pub const PRE_STOP_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

/// `scale_in.pre_stop`: the hook an application gets before its instance is stopped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreStop {
    /// `http://` URL; `{private_ip}` is replaced by the member's private IPv4 address.
    pub url: String,
    /// Longest wait for the answer (connect included); a failure or a timeout is reported and
    /// the member is stopped anyway.
    pub timeout: Duration,
}

impl PreStop {
    /// The hook's URL for a member with `private_ip`.
    pub fn url_for(&self, private_ip: &str) -> String {
        self.url.replace("{private_ip}", private_ip)
    }
}

impl Policy {
    /// Whether a scale-in drains its members (target groups to leave, or a hook to call)
    /// before stopping them.
    pub fn drains(&self) -> bool {
        !self.target_groups.is_empty() || self.scale_in.pre_stop.is_some()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleInOrder {
    /// Most recently launched first.
    Newest,
    /// Longest running first.
    Oldest,
    /// Least busy first (by each member's last CPU reading; unknown counts as busiest).
    LowestCpu,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScaleOut {
    pub order: ScaleOutOrder,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScaleOutOrder {
    /// Stopped members with the oldest launch time first.
    Oldest,
    /// Stopped members with the newest launch time first.
    Newest,
    /// By instance id, for predictable demos.
    Id,
}

impl Policy {
    /// The largest capacity any pre-warm rule asks for.
    pub fn max_prewarm_capacity(&self) -> Option<u32> {
        self.prewarm.iter().map(|r| r.capacity).max()
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod trust_tests;

#[cfg(test)]
mod prometheus_tests;
