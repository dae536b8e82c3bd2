//! The forecast floor inside `decide_with`: it raises, never lowers, is capped at `max`, and in
//! `forecast_only` mode is only reported.

use std::time::Duration;

use super::*;
use crate::decide::{Bound, decide, decide_with};
use crate::fleet::{Fleet, GroupState};
use crate::history::{PoolHistory, Sample};
use crate::policy::{PredictiveMode, parse_policy};

const T0: i64 = 1_793_577_600; // Monday 2026-11-02 00:00 UTC
const DAY: i64 = 86_400;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn policy(max: u32, mode: &str) -> crate::Policy {
    parsed(max, mode, "")
}

/// A policy with a `predictive:` block in `mode` and `scaling` lines (YAML, may be empty).
fn parsed(max: u32, mode: &str, scaling: &str) -> crate::Policy {
    let text = format!(
        "name: t
pool: {{auto_scaling_group: g}}
min: 2
max: {max}
metrics:
  - {{id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}}
{scaling}predictive: {{mode: {mode}}}
"
    );
    let r = parse_policy("t.yaml", &text);
    r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics))
}

fn group(desired: u32) -> Fleet {
    Fleet::Group(GroupState {
        name: "g".into(),
        desired,
        min: 0,
        max: 100,
        in_service: desired,
        activity_in_progress: false,
    })
}

/// Four days of demand 4 with a peak of 16 from 10:00 to 11:00, fitted at `now`.
fn trained(now: i64) -> Forecaster {
    let mut f = Forecaster::new();
    let mut t = 0;
    while t < now {
        let v = if (10 * 3600..11 * 3600).contains(&t.rem_euclid(DAY)) { 16.0 } else { 4.0 };
        f.observe(at(t), v);
        t += 60;
    }
    f.refresh(&Predictive::default(), at(now));
    f
}

/// History where the pool of 4 sits exactly on target (CPU 50 %).
fn calm(now: i64) -> PoolHistory {
    at_cpu(now, 50.0)
}

/// History with one CPU datapoint of `cpu` a minute before `now`.
fn at_cpu(now: i64, cpu: f64) -> PoolHistory {
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: at(now - 60), value: cpu });
    h
}

#[test]
fn active_floor_raises_before_the_peak_and_is_capped_at_max() {
    let now = 4 * DAY + 9 * 3600 + 57 * 60;
    let f = trained(now);
    let p = policy(40, "active");
    let d = decide_with(&p, &calm(now), &group(4), Some(&f), &[], at(now));
    assert_eq!(d.desired, 16, "{:?}", d.reasons());
    assert_eq!(d.forecast_floor(), Some((16, true)));
    assert!(d.reasons().iter().any(|r| r.starts_with("forecast floor 16 (median ")
        && r.contains(", p75 for the slot at ")
        && r.ends_with(": raised")));
    // Capped at max.
    let d = decide_with(&policy(10, "active"), &calm(now), &group(4), Some(&f), &[], at(now));
    assert_eq!(d.desired, 10);
    // At 08:00 the floor (4) is met: nothing changes.
    let early = 4 * DAY + 8 * 3600;
    let d = decide_with(&p, &calm(early), &group(4), Some(&trained(early)), &[], at(early));
    assert_eq!(d.desired, 4);
    assert_eq!(d.forecast_floor(), Some((4, false)));
}

#[test]
fn never_lowers_capacity() {
    let now = 4 * DAY + 8 * 3600;
    let f = trained(now);
    // 12 instances at 50 %: the metrics want 12, the forecast 4.
    let d = decide_with(&policy(40, "active"), &calm(now), &group(12), Some(&f), &[], at(now));
    assert_eq!(d.desired, 12);
    assert_eq!(d.forecast_floor(), Some((4, false)));
}

#[test]
fn forecast_only_reports_and_never_acts() {
    let now = 4 * DAY + 9 * 3600 + 57 * 60;
    let f = trained(now);
    let p = policy(40, "forecast_only");
    assert_eq!(p.predictive.as_ref().unwrap().mode, PredictiveMode::ForecastOnly);
    let d = decide_with(&p, &calm(now), &group(4), Some(&f), &[], at(now));
    assert_eq!(d.desired, 4);
    assert!(d.actions.is_empty());
    assert_eq!(d.forecast_floor(), Some((16, false)));
    assert!(d.reasons().iter().any(|r| r.ends_with("forecast_only, not applied")), "{:?}", d.reasons());
}

#[test]
fn without_a_model_or_while_learning_the_decision_says_why() {
    let p = policy(40, "active");
    let d = decide(&p, &calm(0), &group(4), at(0));
    assert!(d.bounds.contains(&Bound::ForecastUnavailable { why: Unavailable::NoModel }));
    let mut f = Forecaster::new();
    for m in 0..600 {
        f.observe(at(m * 60), 5.0);
    }
    f.refresh(&Predictive::default(), at(36_000));
    let d = decide_with(&p, &calm(36_000), &group(4), Some(&f), &[], at(36_000));
    assert_eq!(d.desired, 4);
    assert!(d.reasons().contains(&"no forecast floor: learning: 10 of 72 hours".to_owned()), "{:?}", d.reasons());
    let _ = Duration::ZERO;
}

fn policy_with(max: u32, scaling: &str) -> crate::Policy {
    parsed(max, "active", &format!("scaling: {scaling}\n"))
}

#[test]
fn a_fleet_within_the_band_above_the_floor_is_not_lowered() {
    // Floor 16 before the 10:00 peak, tolerance 0.1: the band above it is [16, 17.6].
    let now = 4 * DAY + 9 * 3600 + 57 * 60;
    let f = trained(now);
    let p = policy_with(40, "{tolerance: 0.1, scale_down: {stabilization: 0s, cooldown: 0s, max_step: 100%}}");
    // 15 on target is below the floor: raised to it.
    let d = decide_with(&p, &at_cpu(now, 50.0), &group(15), Some(&f), &[], at(now));
    assert_eq!((d.desired, d.forecast_floor()), (16, Some((16, true))), "{:?}", d.reasons());
    // 17 at 25 % asks for 9: within the band, the scale-down is held and the decision says so.
    let d = decide_with(&p, &at_cpu(now, 25.0), &group(17), Some(&f), &[], at(now));
    assert_eq!(d.desired, 17, "{:?}", d.reasons());
    assert!(d.bounds.contains(&Bound::NearForecastFloor { capacity: 16, tolerance: 0.1 }));
    assert!(d.reasons().iter().any(|r| r.starts_with("within +0.1 of the forecast floor 16")), "{:?}", d.reasons());
    // 20 at 25 % is above the band: it descends, and stops at the floor.
    let d = decide_with(&p, &at_cpu(now, 25.0), &group(20), Some(&f), &[], at(now));
    assert_eq!((d.desired, d.forecast_floor()), (16, Some((16, true))), "{:?}", d.reasons());
    // Without a tolerance there is no band: 17 descends to the floor.
    let p0 = policy_with(40, "{tolerance: 0, scale_down: {stabilization: 0s, cooldown: 0s, max_step: 100%}}");
    let d = decide_with(&p0, &at_cpu(now, 25.0), &group(17), Some(&f), &[], at(now));
    assert_eq!(d.desired, 16, "{:?}", d.reasons());
}

#[test]
fn the_floor_is_held_for_the_stabilization_window_after_its_slot() {
    // The peak ends at 11:00; with its neighbours the profile's last high slot is 11:00-11:05.
    // At 11:06 the forecast for [now, now + lead] is the evening's 4; held for a 5-minute
    // window the floor is still the peak's 16, until 11:10.
    let now = 4 * DAY + 11 * 3600 + 6 * 60;
    let f = trained(now);
    let spec = Predictive::default();
    assert_eq!(f.outlook(&spec, at(now)).unwrap().capacity, 4);
    assert_eq!(f.outlook_held(&spec, at(now), Duration::from_secs(300)).unwrap().capacity, 16);
    let later = 4 * DAY + 11 * 3600 + 11 * 60;
    let f = trained(later);
    assert_eq!(f.outlook_held(&spec, at(later), Duration::from_secs(300)).unwrap().capacity, 4);
    // decide holds it with the policy's stabilisation window (default 5 minutes).
    let d = decide_with(&policy(40, "active"), &calm(now), &group(16), Some(&trained(now)), &[], at(now));
    assert_eq!(d.forecast_floor(), Some((16, false)), "{:?}", d.reasons());
}
