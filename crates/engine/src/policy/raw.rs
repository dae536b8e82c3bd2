//! The YAML shape of a policy file, exactly as people write it.
//!
//! Every struct rejects unknown fields, and every value that validation may complain about is
//! [`Spanned`] so its message can name `line:col`. Scalars whose syntax we check ourselves
//! (durations, steps, enum names, dates) are read as [`Text`] so that a wrong value produces
//! our message, naming the allowed values, instead of a generic type error, and so that every
//! such problem in a file is reported at once.
//!
//! Not here: any meaning. See `validate.rs`.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Visitor};
use serde_saphyr::Spanned;

pub(super) type S<T> = Spanned<T>;

/// Any YAML scalar, kept as the text the person wrote (`60s`, `25%`, `4`, `avg`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Text(pub String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a scalar value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
                Ok(Text(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub name: Option<S<Text>>,
    pub pool: Option<S<RawPool>>,
    pub min: Option<S<f64>>,
    pub max: Option<S<f64>>,
    pub interval: Option<S<Text>>,
    #[serde(default)]
    pub dry_run: Option<S<bool>>,
    #[serde(default)]
    pub metrics: Option<S<Vec<S<RawMetric>>>>,
    #[serde(default)]
    pub scaling: Option<S<RawScaling>>,
    #[serde(default)]
    pub history: Option<S<RawHistory>>,
    #[serde(default)]
    pub missing_data: Option<S<RawMissing>>,
    #[serde(default)]
    pub prewarm: Option<Vec<S<RawPrewarm>>>,
    #[serde(default)]
    pub scale_in: Option<S<RawScaleIn>>,
    #[serde(default)]
    pub scale_out: Option<S<RawScaleOut>>,
    #[serde(default)]
    pub predictive: Option<S<RawPredictive>>,
    pub composite: Option<S<RawComposite>>,
    #[serde(default)]
    pub freeze_scale_in: Option<S<bool>>,
    /// How a fleet found above `max` is brought down: `gradual` (default) or `immediate`.
    #[serde(default)]
    pub adopt: Option<S<Text>>,
}

/// `composite: {scale_up_above: 0.8, scale_down_below: 0.3, periods: 2}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawComposite {
    pub scale_up_above: Option<S<f64>>,
    pub scale_down_below: Option<S<f64>>,
    pub periods: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub tag: Option<S<RawTag>>,
    pub auto_scaling_group: Option<S<Text>>,
    #[serde(default)]
    pub target_groups: Option<S<Vec<S<Text>>>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTag {
    pub key: S<Text>,
    pub value: S<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMetric {
    pub id: Option<S<Text>>,
    pub namespace: Option<S<Text>>,
    pub name: Option<S<Text>>,
    #[serde(default)]
    pub dimensions: Option<BTreeMap<String, S<Text>>>,
    pub statistic: Option<S<Text>>,
    pub period: Option<S<Text>>,
    pub target: Option<S<f64>>,
    pub target_per_instance: Option<S<f64>>,
    pub weight: Option<S<f64>>,
    pub ceiling: Option<S<f64>>,
    pub per_instance: Option<S<Text>>,
    pub cap: Option<S<f64>>,
    /// `cloudwatch` (the default) or `prometheus`.
    pub source: Option<S<Text>>,
    /// PromQL, for `source: prometheus`.
    pub query: Option<S<Text>>,
    /// The label naming a member's instance id in a per-instance Prometheus query's series.
    pub instance_label: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaling {
    pub tolerance: Option<S<f64>>,
    pub scale_up: Option<S<RawScaleUp>>,
    pub scale_down: Option<S<RawScaleDown>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaleUp {
    pub confirmations: Option<S<f64>>,
    pub fast_threshold: Option<S<f64>>,
    pub cooldown: Option<S<Text>>,
    pub max_step: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaleDown {
    pub stabilization: Option<S<Text>>,
    pub cooldown: Option<S<Text>>,
    pub max_step: Option<S<Text>>,
    pub acceleration: Option<S<f64>>,
    pub confirmed_stabilization: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHistory {
    pub window: Option<S<Text>>,
    pub max_age: Option<S<Text>>,
}

/// `missing_data: hold`, `missing_data: scale_up`, or `missing_data: {fixed: 12}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMissing {
    Word(Text),
    Fixed(RawMissingFixed),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMissingFixed {
    pub fixed: f64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPrewarm {
    pub name: Option<S<Text>>,
    pub start: Option<S<Text>>,
    pub end: Option<S<Text>>,
    pub cron: Option<S<Text>>,
    pub duration: Option<S<Text>>,
    pub time_zone: Option<S<Text>>,
    pub lead: Option<S<Text>>,
    pub ramp: Option<S<Text>>,
    pub capacity: Option<S<f64>>,
    pub release_after: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaleIn {
    pub order: Option<S<Text>>,
    pub protect_tag: Option<S<RawTag>>,
    pub drain_timeout: Option<S<Text>>,
    pub pre_stop: Option<S<RawPreStop>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPreStop {
    pub url: Option<S<Text>>,
    pub timeout: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaleOut {
    pub order: Option<S<Text>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPredictive {
    pub mode: Option<S<Text>>,
    pub history: Option<S<Text>>,
    pub periods: Option<S<Vec<S<Text>>>>,
    pub quantile: Option<S<f64>>,
    pub margin: Option<S<Text>>,
    pub lead: Option<S<Text>>,
    pub max_error: Option<S<Text>>,
}
