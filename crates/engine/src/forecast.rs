//! Predictive pre-warm: learn a pool's recurring load and put capacity up before it arrives.
//!
//! A [`Forecaster`] keeps the pool's past *demand* (the capacity each evaluation's metrics
//! asked for, unrounded: `score × current`) in 5-minute slots, and every hour fits a
//! **seasonal profile**: for each 5-minute slot of the day (or of the week, once two weeks of
//! history exist), the median and the policy's quantile of the demand in that slot and its two
//! neighbours over the past days (weeks). Quantiles over days make it robust: a one-off burst
//! is one value of fourteen and moves the median not at all; a gap (a slot with no data) is
//! simply not counted.
//!
//! **The gate.** Each fit also measures the model on its own recent past, out of sample: each
//! of the last [`GATE_DAYS`] days is forecast from only the days before it, exactly as the
//! floor will be, and the weighted absolute percentage error (WAPE: `Σ|actual − median| /
//! Σ actual`) over those days is the model's error. Daily and weekly candidates are both
//! measured and the better one is kept. Above the policy's `max_error` the floor is not
//! applied and the decision says why. With less than [`MIN_HISTORY_HOURS`] of data the model
//! is still *learning*; with no demand observed for [`STALE_AFTER`] it is *stale*.
//!
//! **The floor** at `now` is the highest quantile forecast over `[now, now + lead]`, times
//! `1 + margin`, rounded up: capacity is started one lead before the load is expected.
//!
//! Pure: no clock, no I/O. The caller observes each decision's demand, calls
//! [`Forecaster::refresh`] (a no-op except once an hour), and passes the forecaster to
//! [`crate::decide::decide_with`]. Not here: fetching history (the daemon), the policy's
//! `predictive:` block (`policy`).

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::decide::ceil_u32;
use crate::policy::Predictive;

mod backfill;
mod view;

pub use backfill::{Backfilled, PastLoad, past_demand};
pub use view::{HourObserved, HourOutlook};

/// Resolution of the model: one slot is 5 minutes.
pub const SLOT_SECS: i64 = 300;
const SLOTS_PER_DAY: i64 = 288;
const SLOTS_PER_WEEK: i64 = 7 * SLOTS_PER_DAY;
/// How often the model is refitted.
pub const REFIT_EVERY: Duration = Duration::from_secs(3600);
/// Data the model needs before it forecasts (two days to learn from, one to check itself on).
pub const MIN_HISTORY_HOURS: u32 = 72;
/// Days over which the model's out-of-sample error is measured.
pub const GATE_DAYS: i64 = 3;
/// No floor once no demand has been observed for this long (a metric that vanished).
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);
/// Slots kept at most, whatever the policy says (63 days, CloudWatch's 5-minute retention).
const MAX_SLOTS: i64 = 63 * SLOTS_PER_DAY;
/// Demand above this (capacity units) is garbage, not load: `max` is at most 10,000.
const MAX_DEMAND: f64 = 1e6;
/// A slot of the profile needs this many past values to be forecast at all.
const MIN_VALUES: usize = 2;

/// One 5-minute slot: the sum and number of demand observations in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Slot(f32, u16);

impl Slot {
    fn mean(self) -> Option<f32> {
        (self.1 > 0).then(|| self.0 / f32::from(self.1))
    }
}

/// Which seasonal period a model uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Season {
    Daily,
    Weekly,
}

impl Season {
    fn slots(self) -> i64 {
        match self {
            Season::Daily => SLOTS_PER_DAY,
            Season::Weekly => SLOTS_PER_WEEK,
        }
    }
}

impl fmt::Display for Season {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Season::Daily => "daily",
            Season::Weekly => "weekly",
        })
    }
}

/// A fitted seasonal profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub season: Season,
    /// Median demand per slot of the period (index: absolute slot mod period); negative = no
    /// forecast for that slot (too few past values).
    pub point: Vec<f32>,
    /// The policy's quantile per slot of the period.
    pub upper: Vec<f32>,
    /// Out-of-sample WAPE over the last [`GATE_DAYS`] days; `None` if none could be measured.
    pub wape: Option<f64>,
}

impl Model {
    fn at(&self, slot: i64) -> Option<(f64, f64)> {
        let i = usize::try_from(slot.rem_euclid(self.season.slots())).ok()?;
        let (p, u) = (*self.point.get(i)?, *self.upper.get(i)?);
        (p >= 0.0 && u >= 0.0).then_some((f64::from(p), f64::from(u)))
    }
}

/// The outcome of the last fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Fit {
    /// Not enough history yet.
    Learning {
        hours: u32,
        needed: u32,
    },
    Ready(Model),
}

/// The settings a fit depends on: a change (a policy reload) refits at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FitKey {
    history_secs: u64,
    daily: bool,
    weekly: bool,
    quantile: f64,
}

impl FitKey {
    fn of(p: &Predictive) -> FitKey {
        FitKey { history_secs: p.history.as_secs(), daily: p.daily, weekly: p.weekly, quantile: p.quantile }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fitted {
    at: Timestamp,
    key: FitKey,
    fit: Fit,
}

/// A pool's demand history in 5-minute slots and the model fitted to it. Kept beside the
/// pool's [`crate::PoolHistory`] (the daemon persists it in the state file), never in the
/// policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Forecaster {
    /// Absolute slot index (unix seconds / 300) of `slots[0]`.
    first: i64,
    slots: VecDeque<Slot>,
    /// Slot of the newest observation.
    #[serde(default)]
    last_seen: Option<i64>,
    fitted: Option<Fitted>,
}

/// Why no forecast floor applies.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Unavailable {
    /// No model has been fitted (the caller keeps no forecaster, or has not refreshed it).
    NoModel,
    Learning {
        hours: u32,
        needed: u32,
    },
    /// The model's recent out-of-sample error is above the policy's `max_error`.
    Inaccurate {
        wape: f64,
        limit: f64,
    },
    /// No demand observed since `since` (the metric vanished, or the clock jumped).
    Stale {
        since: Option<Timestamp>,
    },
    /// The profile has too few past values for the slots ahead.
    NoForecast,
    /// No day in the history had a day of data before it to check the model on.
    Unmeasured,
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoModel => f.write_str("no forecast model yet"),
            Unavailable::Learning { hours, needed } => write!(f, "learning: {hours} of {needed} hours"),
            Unavailable::Inaccurate { wape, limit } => write!(
                f,
                "forecast error {:.0}% over the last {GATE_DAYS} days is above max_error {:.0}%",
                wape * 100.0,
                limit * 100.0
            ),
            Unavailable::Stale { since: Some(t) } => write!(f, "no demand observed since {t}"),
            Unavailable::Stale { since: None } => f.write_str("no demand observed"),
            Unavailable::NoForecast => f.write_str("too few past values for the slots ahead"),
            Unavailable::Unmeasured => {
                f.write_str("forecast error not measurable yet (no day with a day of data before it)")
            }
        }
    }
}

/// The forecast floor at one instant.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Outlook {
    /// `ceil(upper × (1 + margin))`, before `max`.
    pub capacity: u32,
    /// Median forecast demand at the slot that sets the floor.
    pub forecast: f64,
    /// The quantile forecast there.
    pub upper: f64,
    pub quantile: f64,
    /// The slot that sets the floor starts here.
    pub peak_at: Timestamp,
    pub season: Season,
    pub wape: Option<f64>,
}

/// One point of a forecast series (for `vmscaler forecast` and charts).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Point {
    pub at: Timestamp,
    pub forecast: f64,
    pub upper: f64,
}

fn slot_of(t: Timestamp) -> i64 {
    t.as_second().div_euclid(SLOT_SECS)
}

fn slot_start(slot: i64) -> Timestamp {
    Timestamp::from_second(slot.saturating_mul(SLOT_SECS)).unwrap_or(Timestamp::MIN)
}

fn secs_to_slots(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX) / SLOT_SECS
}

impl Forecaster {
    pub fn new() -> Forecaster {
        Forecaster::default()
    }

    /// Records one evaluation's demand (capacity units). NaN, infinite, negative and absurd
    /// values are ignored; an observation older than the kept history is dropped; one more than
    /// the kept history ahead (a clock jump) starts the history again.
    pub fn observe(&mut self, at: Timestamp, demand: f64) {
        if !demand.is_finite() || !(0.0..=MAX_DEMAND).contains(&demand) {
            return;
        }
        let s = slot_of(at);
        if self.slots.is_empty() || s >= self.first.saturating_add(MAX_SLOTS * 2) {
            self.slots.clear();
            self.first = s;
        }
        if s < self.first {
            return;
        }
        let Ok(i) = usize::try_from(s - self.first) else { return };
        if i >= self.slots.len() {
            self.slots.resize(i + 1, Slot::default());
        }
        let slot = &mut self.slots[i];
        if slot.1 < u16::MAX {
            // In range: demand ≤ MAX_DEMAND.
            #[allow(clippy::cast_possible_truncation)]
            let d = demand as f32;
            *slot = Slot(slot.0 + d, slot.1 + 1);
        }
        self.last_seen = Some(self.last_seen.map_or(s, |l| l.max(s)));
        while i64::try_from(self.slots.len()).unwrap_or(i64::MAX) > MAX_SLOTS {
            self.slots.pop_front();
            self.first += 1;
        }
    }

    /// Mean demand of the slot `s`, if observed.
    fn value(&self, s: i64) -> Option<f32> {
        let i = usize::try_from(s.checked_sub(self.first)?).ok()?;
        self.slots.get(i)?.mean()
    }

    /// Number of 5-minute slots with data (memory and `learning` figures).
    pub fn observed_slots(&self) -> usize {
        self.slots.iter().filter(|s| s.1 > 0).count()
    }

    /// Refits when due: no model yet, an hour since the last fit, the clock went back, or the
    /// settings changed. Returns whether it refitted.
    pub fn refresh(&mut self, spec: &Predictive, now: Timestamp) -> bool {
        let key = FitKey::of(spec);
        let due = match &self.fitted {
            None => true,
            Some(f) => f.key != key || now < f.at || now.duration_since(f.at).unsigned_abs() >= REFIT_EVERY,
        };
        if due {
            let fit = self.fit(spec, now);
            self.fitted = Some(Fitted { at: now, key, fit });
        }
        due
    }

    /// The last fit, if any.
    pub fn fit_result(&self) -> Option<&Fit> {
        self.fitted.as_ref().map(|f| &f.fit)
    }

    /// When the model was last fitted.
    pub fn fitted_at(&self) -> Option<Timestamp> {
        self.fitted.as_ref().map(|f| f.at)
    }

    /// Fits the model on the data before `now` (never after it).
    pub fn fit(&self, spec: &Predictive, now: Timestamp) -> Fit {
        let end = slot_of(now);
        let hist = secs_to_slots(spec.history).clamp(SLOTS_PER_DAY, MAX_SLOTS);
        let start = end - hist;
        let observed = (start..end).filter(|&s| self.value(s).is_some()).count();
        let hours = u32::try_from(observed / 12).unwrap_or(u32::MAX);
        // Weekly needs two weeks of span (the first observation at least 14 days back).
        let span_days = self.first_observed().map_or(0, |f| (end - f.max(start)) / SLOTS_PER_DAY);
        let weekly_ok = spec.weekly && span_days >= 14;
        let needed = if spec.daily { MIN_HISTORY_HOURS } else { 14 * 24 };
        if hours < needed || (!spec.daily && !weekly_ok) {
            return Fit::Learning { hours, needed };
        }
        let mut candidates = Vec::new();
        if spec.daily {
            candidates.push(Season::Daily);
        }
        if weekly_ok {
            candidates.push(Season::Weekly);
        }
        let mut best: Option<Model> = None;
        for season in candidates {
            let wape = self.gate_error(season, spec, start, end);
            let (point, upper) = self.profile(season, spec.quantile, start, end);
            let m = Model { season, point, upper, wape };
            let better = match &best {
                None => true,
                Some(b) => m.wape.unwrap_or(f64::INFINITY) < b.wape.unwrap_or(f64::INFINITY),
            };
            if better {
                best = Some(m);
            }
        }
        match best {
            Some(m) => Fit::Ready(m),
            None => Fit::Learning { hours, needed },
        }
    }

    fn first_observed(&self) -> Option<i64> {
        self.slots.iter().position(|s| s.1 > 0).map(|i| self.first + i64::try_from(i).unwrap_or(0))
    }

    /// Median and `q`-quantile per slot of `season`'s period, from the data in `[from, to)`.
    fn profile(&self, season: Season, q: f64, from: i64, to: i64) -> (Vec<f32>, Vec<f32>) {
        let period = season.slots();
        let n = usize::try_from(period).unwrap_or(0);
        let lo = from.max(self.first);
        let mut point = Vec::with_capacity(n);
        let mut upper = Vec::with_capacity(n);
        // One bucket at a time in a reused buffer (a fit runs every hour, each with several
        // profiles: no allocation per slot of the season). Slot `i` of the season takes every
        // slot `s` in `[lo, to)` with `s + k ≡ i` for `k` in -1..=1: its neighbours count too.
        let mut b: Vec<f32> = Vec::new();
        for i in 0..period {
            b.clear();
            for k in -1..=1 {
                let r = (i - k).rem_euclid(period);
                let mut s = lo + (r - lo).rem_euclid(period);
                while s < to {
                    if let Some(v) = self.value(s) {
                        b.push(v);
                    }
                    s += period;
                }
            }
            if b.len() < MIN_VALUES {
                point.push(-1.0);
                upper.push(-1.0);
                continue;
            }
            b.sort_unstable_by(f32::total_cmp);
            point.push(quantile(&b, 0.5));
            upper.push(quantile(&b, q));
        }
        (point, upper)
    }

    /// Out-of-sample WAPE of `season` over the last [`GATE_DAYS`] days before `end`: each day
    /// forecast from the history before it only.
    fn gate_error(&self, season: Season, spec: &Predictive, start: i64, end: i64) -> Option<f64> {
        let hist = end - start;
        let (mut err, mut total) = (0.0f64, 0.0f64);
        for d in 0..GATE_DAYS {
            let day_end = end - d * SLOTS_PER_DAY;
            let day_start = day_end - SLOTS_PER_DAY;
            let train_from = day_start - hist;
            let trained = (train_from.max(self.first)..day_start).filter(|&s| self.value(s).is_some()).count();
            if trained < usize::try_from(SLOTS_PER_DAY).unwrap_or(288) {
                continue; // less than a day to learn from
            }
            let (point, _) = self.profile(season, spec.quantile, train_from, day_start);
            for s in day_start..day_end {
                let (Some(a), Ok(i)) = (self.value(s), usize::try_from(s.rem_euclid(season.slots()))) else {
                    continue;
                };
                let f = point.get(i).copied().unwrap_or(-1.0);
                if f < 0.0 {
                    continue;
                }
                err += f64::from((a - f).abs());
                total += f64::from(a);
            }
        }
        (total > 0.0).then(|| err / total)
    }

    /// The forecast floor at `now`: the highest quantile forecast over `[now, now + lead]`.
    pub fn outlook(&self, spec: &Predictive, now: Timestamp) -> Result<Outlook, Unavailable> {
        self.outlook_held(spec, now, Duration::ZERO)
    }

    /// [`Self::outlook`] over `[now - hold, now + lead]`: a floor held for `hold` after its slot,
    /// as a reactive proposal is held by the scale-down stabilisation window. Without it the
    /// floor follows every 5-minute slot down and up again, and each dip between two higher
    /// slots is a scale-down that the next slot reverses.
    pub fn outlook_held(&self, spec: &Predictive, now: Timestamp, hold: Duration) -> Result<Outlook, Unavailable> {
        let fitted = self.fitted.as_ref().ok_or(Unavailable::NoModel)?;
        let model = match &fitted.fit {
            Fit::Learning { hours, needed } => return Err(Unavailable::Learning { hours: *hours, needed: *needed }),
            Fit::Ready(m) => m,
        };
        let now_slot = slot_of(now);
        let stale = secs_to_slots(STALE_AFTER);
        match self.last_seen {
            Some(l) if l <= now_slot && now_slot - l <= stale => {}
            Some(l) if l > now_slot => {} // the clock went back: the data is still ours
            last => return Err(Unavailable::Stale { since: last.map(slot_start) }),
        }
        match model.wape {
            Some(w) if w <= spec.max_error => {}
            Some(w) => return Err(Unavailable::Inaccurate { wape: w, limit: spec.max_error }),
            None => return Err(Unavailable::Unmeasured),
        }
        let to = slot_of(crate::duration::after(now, spec.lead));
        let from = slot_of(crate::duration::before(now, hold)).min(now_slot);
        let mut best: Option<(i64, f64, f64)> = None;
        for s in from..=to.max(now_slot) {
            if let Some((p, u)) = model.at(s)
                && best.is_none_or(|b| u > b.2)
            {
                best = Some((s, p, u));
            }
        }
        let (s, p, u) = best.ok_or(Unavailable::NoForecast)?;
        Ok(Outlook {
            capacity: ceil_u32(u * (1.0 + spec.margin)),
            forecast: p,
            upper: u,
            quantile: spec.quantile,
            peak_at: slot_start(s),
            season: model.season,
            wape: model.wape,
        })
    }

    /// The fitted forecast for each 5-minute slot in `[from, from + span)`.
    pub fn series(&self, from: Timestamp, span: Duration) -> Vec<Point> {
        let Some(Fitted { fit: Fit::Ready(m), .. }) = &self.fitted else { return Vec::new() };
        let a = slot_of(from);
        (a..a + secs_to_slots(span))
            .filter_map(|s| m.at(s).map(|(p, u)| Point { at: slot_start(s), forecast: p, upper: u }))
            .collect()
    }

    /// Observed mean demand per 5-minute slot in `[from, to)`.
    pub fn observed(&self, from: Timestamp, to: Timestamp) -> Vec<(Timestamp, f64)> {
        (slot_of(from)..slot_of(to)).filter_map(|s| self.value(s).map(|v| (slot_start(s), f64::from(v)))).collect()
    }
}

/// Linear-interpolated quantile of sorted values.
fn quantile(sorted: &[f32], q: f64) -> f32 {
    if sorted.is_empty() {
        return -1.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = pos.floor() as usize;
    let frac = pos - pos.floor();
    let a = f64::from(sorted[i]);
    let b = f64::from(*sorted.get(i + 1).unwrap_or(&sorted[i]));
    #[allow(clippy::cast_possible_truncation)]
    let v = (a + (b - a) * frac) as f32;
    v
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod decide_tests;
