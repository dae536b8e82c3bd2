//! The model as people read it: the forecast floor hour by hour ahead (`vmscaler forecast`,
//! `/v1/forecast`, the SVG chart) and the demand it learned from, hour by hour behind.
//!
//! Not here: whether the floor applies now (that is [`Forecaster::outlook`], with the gate).

use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::{Fit, Forecaster, SLOT_SECS, slot_of, slot_start};
use crate::decide::ceil_u32;
use crate::policy::Predictive;

const HOUR_SLOTS: i64 = 3600 / SLOT_SECS;

/// The forecast over one hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HourOutlook {
    /// Start of the hour (UTC, on the hour).
    pub at: Timestamp,
    /// Highest median forecast demand in the hour.
    pub forecast: f64,
    /// Highest quantile forecast over the hour and the lead after it.
    pub upper: f64,
    /// The floor evaluations in this hour would set: `ceil(upper × (1 + margin))`, capped at
    /// `max`.
    pub floor: u32,
}

/// Observed demand over one past hour.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HourObserved {
    pub at: Timestamp,
    pub mean: f64,
    pub max: f64,
}

fn hour_start(t: Timestamp) -> i64 {
    slot_of(t).div_euclid(HOUR_SLOTS) * HOUR_SLOTS
}

impl Forecaster {
    /// The forecast floor for each of the `hours` hours from the start of `now`'s hour, as
    /// the fitted model gives it (whatever the gate says: see [`Forecaster::outlook`] for
    /// whether it applies). Empty while learning; hours with no forecast are left out.
    pub fn hourly(&self, spec: &Predictive, max: u32, now: Timestamp, hours: u32) -> Vec<HourOutlook> {
        let Some(Fit::Ready(m)) = self.fit_result() else { return Vec::new() };
        let lead = i64::try_from(spec.lead.as_secs()).unwrap_or(0).div_euclid(SLOT_SECS);
        let first = hour_start(now);
        (0..i64::from(hours))
            .filter_map(|h| {
                let a = first + h * HOUR_SLOTS;
                let forecast = (a..a + HOUR_SLOTS).filter_map(|s| m.at(s).map(|p| p.0)).reduce(f64::max)?;
                let upper = (a..=a + HOUR_SLOTS + lead).filter_map(|s| m.at(s).map(|p| p.1)).reduce(f64::max)?;
                let floor = ceil_u32(upper * (1.0 + spec.margin)).min(max);
                Some(HourOutlook { at: slot_start(a), forecast, upper, floor })
            })
            .collect()
    }

    /// Observed demand per hour over the `span` before `now` (hours with no data left out).
    pub fn observed_hourly(&self, now: Timestamp, span: Duration) -> Vec<HourObserved> {
        let end = hour_start(now) + HOUR_SLOTS;
        let start = hour_start(crate::duration::before(now, span));
        (start..end)
            .step_by(usize::try_from(HOUR_SLOTS).unwrap_or(12))
            .filter_map(|a| {
                let vals: Vec<f64> =
                    (a..(a + HOUR_SLOTS).min(slot_of(now) + 1)).filter_map(|s| self.value(s).map(f64::from)).collect();
                let max = vals.iter().copied().reduce(f64::max)?;
                #[allow(clippy::cast_precision_loss)]
                let mean = vals.iter().sum::<f64>() / vals.len() as f64;
                Some(HourObserved { at: slot_start(a), mean, max })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_793_577_600; // Monday 2026-11-02 00:00 UTC
    const DAY: i64 = 86_400;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(T0 + secs).unwrap()
    }

    #[test]
    fn hourly_floor_covers_the_lead_and_is_capped() {
        let mut f = Forecaster::new();
        for k in 0..4 * 288 {
            let t: i64 = k * 300;
            let v = if (10 * 3600..11 * 3600).contains(&t.rem_euclid(DAY)) { 16.0 } else { 4.0 };
            f.observe(at(t), v);
        }
        let spec = Predictive { margin: 0.25, ..Predictive::default() };
        let now = at(4 * DAY + 8 * 3600 + 1234);
        assert!(f.hourly(&spec, 100, now, 24).is_empty(), "not fitted yet");
        f.refresh(&spec, now);
        let h = f.hourly(&spec, 100, now, 24);
        assert_eq!(h.len(), 24);
        assert_eq!(h[0].at, at(4 * DAY + 8 * 3600));
        let floors: Vec<u32> = h.iter().take(4).map(|x| x.floor).collect();
        // 09:00 takes the 10:00 peak within its lead (5 minutes after the hour), 11:00 the
        // peak's last slot (each slot's profile pools its two neighbours); 4 × 1.25 = 5.
        assert_eq!(floors, [5, 20, 20, 20]);
        assert_eq!(h[2].forecast, 16.0);
        assert_eq!(f.hourly(&spec, 12, now, 3)[2].floor, 12, "capped at max");
        let seen = f.observed_hourly(at(4 * DAY), Duration::from_secs(3 * 3600));
        assert_eq!(seen.len(), 3);
        assert_eq!((seen[0].at, seen[0].mean, seen[0].max), (at(4 * DAY - 3 * 3600), 4.0, 4.0));
    }
}
