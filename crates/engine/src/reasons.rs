//! The words of a decision's reasons that need more than the decision: which CloudWatch query a
//! metric without data is, and why its newest datapoint was not used.
//!
//! Not here: scoring (see `decide.rs`).

use std::time::Duration;

use jiff::Timestamp;

use crate::duration::Human;
use crate::history::PoolHistory;
use crate::policy::MetricSpec;

/// `(AWS/EC2/CPUUtilization Average 1m): newest datapoint 8m old, older than history.max_age 5m`.
pub(crate) fn why_missing(m: &MetricSpec, history: &PoolHistory, now: Timestamp, max_age: Duration) -> String {
    let query = format!("({}/{} {} {})", m.namespace, m.name, m.statistic.as_str(), Human(m.period));
    let series = history.samples.get(&m.id);
    let newest_past = series.and_then(|s| s.iter().rev().find(|s| s.at <= now));
    let why = match newest_past {
        Some(s) => {
            let age = now.duration_since(s.at).unsigned_abs();
            let age = Human(Duration::from_secs(age.as_secs()));
            format!("newest datapoint {age} old, older than history.max_age {}", Human(max_age))
        }
        None if series.is_some_and(|s| !s.is_empty()) => {
            "every datapoint is stamped in the future (a host clock behind CloudWatch's?)".to_owned()
        }
        None => "no datapoint received yet (a period's datapoint is read once the period has ended)".to_owned(),
    };
    format!("{query}: {why}")
}

/// An instance count that may be a mean: `9`, or `8.57` when the fleet changed in the period.
pub(crate) fn count(x: f64) -> String {
    if (x - x.round()).abs() < 0.005 { format!("{x:.0}") } else { format!("{x:.2}") }
}
