//! `aws-predictive`: AWS EC2 Auto Scaling predictive scaling, as documented, beside target
//! tracking.
//!
//! What the documentation says and what this models (Application Auto Scaling user guide, "How
//! predictive scaling works"; EC2 Auto Scaling API reference, `PredictiveScalingConfiguration`
//! and `GetPredictiveScalingForecast`):
//! - it needs at least 24 hours of the load metric before its first forecast, and learns from
//!   up to the past 14 days;
//! - it forecasts the *hourly* load for the next 48 hours, updated every 6 hours; capacity
//!   forecasts are "the minimum capacity that is needed on an hourly basis, based on the hourly
//!   load forecast" (load / target utilisation);
//! - the capacity is scheduled at the start of each hour, `SchedulingBufferTime` before it
//!   (default 300 s: instances launched at 9:55 for 10:00);
//! - it never scales in on a forecast: the forecast is a minimum, and target tracking (modelled
//!   by [`TargetTracking`]) may ask for more; the group's capacity is the higher of the two.
//!
//! AWS does not publish its forecasting model. Modelled here as the mean load of the same hour
//! of day over the available days (up to 14), the load being the serving fleet's CPU-seconds
//! (`mean CPU % × serving / 100`, instance units at 100 %) from the same lagged 1-minute
//! datapoints target tracking reads: it learns only from what it has observed.

use std::collections::BTreeMap;

use super::sim::{Controller, PipelineSpec, Pool};
use super::strategies::{Limits, TargetTracking};
use crate::decide::ceil_u32;

pub const AWS_MIN_HISTORY_MS: i64 = 24 * HOUR_MS;
pub const AWS_HISTORY_DAYS: i64 = 14;
pub const AWS_REFRESH_MS: i64 = 6 * HOUR_MS;
pub const AWS_HORIZON_MS: i64 = 48 * HOUR_MS;
pub const AWS_BUFFER_MS: i64 = 300_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_HOURS: i64 = 24;

/// Predictive scaling (forecast and scale) with target tracking.
#[derive(Debug)]
pub struct AwsPredictive {
    limits: Limits,
    tt: TargetTracking,
    /// Observed load per hour index (ms / 1 h): sum and count of datapoints.
    load: BTreeMap<i64, (f64, u32)>,
    first_seen: Option<i64>,
    /// Capacity per hour index, from the last forecast.
    forecast: BTreeMap<i64, u32>,
    last_refresh: Option<i64>,
    next: i64,
    /// Every forecast hour's (hour index, forecast load) as first issued, for error figures.
    pub issued: BTreeMap<i64, f64>,
}

impl AwsPredictive {
    pub fn new(limits: Limits, start: i64, initial: u32, warmup_ms: i64) -> AwsPredictive {
        AwsPredictive {
            limits,
            tt: TargetTracking::new(limits, initial, warmup_ms),
            load: BTreeMap::new(),
            first_seen: None,
            forecast: BTreeMap::new(),
            last_refresh: None,
            next: start,
            issued: BTreeMap::new(),
        }
    }

    fn refresh(&mut self, now: i64) {
        self.last_refresh = Some(now);
        let Some(first) = self.first_seen else { return };
        if now - first < AWS_MIN_HISTORY_MS {
            return;
        }
        let this_hour = now.div_euclid(HOUR_MS);
        let from = this_hour - AWS_HISTORY_DAYS * DAY_HOURS;
        self.load.retain(|h, _| *h >= from);
        self.forecast.clear();
        for h in this_hour..=this_hour + AWS_HORIZON_MS / HOUR_MS {
            // The same hour of day on each past day (complete hours only).
            let (mut sum, mut n) = (0.0, 0u32);
            let mut past = h - DAY_HOURS;
            while past >= from {
                if past < this_hour
                    && let Some((s, c)) = self.load.get(&past)
                    && *c > 0
                {
                    sum += s / f64::from(*c);
                    n += 1;
                }
                past -= DAY_HOURS;
            }
            if n == 0 {
                continue;
            }
            let load = sum / f64::from(n);
            self.issued.entry(h).or_insert(load);
            let cap = ceil_u32(load * 100.0 / self.limits.target).clamp(self.limits.min, self.limits.max);
            self.forecast.insert(h, cap);
        }
    }

    /// The forecast minimum in force at `now` (scheduled `AWS_BUFFER_MS` before each hour).
    fn scheduled_min(&self, now: i64) -> u32 {
        let hour = (now + AWS_BUFFER_MS).div_euclid(HOUR_MS);
        self.forecast.get(&hour).copied().unwrap_or(self.limits.min).max(self.limits.min)
    }
}

impl Controller for AwsPredictive {
    fn pipelines(&self) -> Vec<PipelineSpec> {
        self.tt.pipelines()
    }

    fn on_datapoint(&mut self, which: usize, at: i64, value: f64, now: i64, pool: &mut Pool) {
        if value.is_finite() && value >= 0.0 {
            let e = self.load.entry(at.div_euclid(HOUR_MS)).or_default();
            e.0 += value / 100.0 * f64::from(pool.serving);
            e.1 += 1;
            self.first_seen.get_or_insert(at);
        }
        self.tt.set_min(self.scheduled_min(now));
        self.tt.on_datapoint(which, at, value, now, pool);
    }

    fn next_evaluation(&self) -> Option<i64> {
        Some(self.next)
    }

    fn evaluate(&mut self, now: i64, pool: &mut Pool) {
        if self.last_refresh.is_none_or(|r| now - r >= AWS_REFRESH_MS) {
            self.refresh(now);
        }
        let min = self.scheduled_min(now);
        self.tt.set_min(min);
        if pool.billed < min {
            pool.scale_to(min, now);
            self.tt.set_desired(min);
        }
        // Next: the next scheduling instant (5 minutes before an hour starts).
        let next_hour = (now + AWS_BUFFER_MS).div_euclid(HOUR_MS) + 1;
        self.next = (next_hour * HOUR_MS - AWS_BUFFER_MS).max(now + 1);
    }

    fn desired(&self) -> u32 {
        self.tt.desired()
    }
}
