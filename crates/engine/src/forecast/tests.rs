//! Forecast tests on synthetic demand with fixed timestamps.

use super::*;

/// 2026-11-02 00:00 UTC, a Monday.
const T0: i64 = 1_793_577_600;
const MIN: i64 = 60;
const DAY: i64 = 86_400;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(T0 + secs).unwrap()
}

fn spec() -> Predictive {
    Predictive::default()
}

/// Demand 4, with a peak of 20 from 10:00 to 11:00 every day.
fn daily_peak(secs: i64) -> f64 {
    let tod = secs.rem_euclid(DAY);
    if (10 * 3600..11 * 3600).contains(&tod) { 20.0 } else { 4.0 }
}

/// Observes `f` once a minute over `[from, to)` seconds after T0.
fn feed(fc: &mut Forecaster, from: i64, to: i64, f: impl Fn(i64) -> f64) {
    let mut t = from;
    while t < to {
        fc.observe(at(t), f(t));
        t += MIN;
    }
}

#[test]
fn learning_until_three_days_then_a_floor_before_the_daily_peak() {
    let mut fc = Forecaster::new();
    feed(&mut fc, 0, DAY, daily_peak);
    assert!(fc.refresh(&spec(), at(DAY)));
    let err = fc.outlook(&spec(), at(DAY)).unwrap_err();
    assert_eq!(err, Unavailable::Learning { hours: 24, needed: 72 });
    assert_eq!(err.to_string(), "learning: 24 of 72 hours");

    let now = 7 * DAY + 9 * 3600 + 57 * MIN; // 09:57 on day 8: the peak is 3 minutes away
    feed(&mut fc, DAY, now, daily_peak);
    assert!(fc.refresh(&spec(), at(now)));
    let o = fc.outlook(&spec(), at(now)).unwrap();
    assert_eq!(o.capacity, 20, "{o:?}");
    // Each slot learns from its neighbours too (a ramp that comes a few minutes early or late on
    // some days): the slot before the peak already carries it.
    assert_eq!(o.peak_at, at(7 * DAY + 9 * 3600 + 55 * MIN));
    assert_eq!(fc.outlook(&spec(), at(7 * DAY + 9 * 3600 + 45 * MIN)).unwrap().capacity, 4);
    assert_eq!(o.season, Season::Daily);
    assert!(o.wape.unwrap() < 0.05, "a clean daily cycle is forecast almost exactly: {o:?}");
    // At 08:00 nothing is coming: the floor is the base load.
    let o = fc.outlook(&spec(), at(7 * DAY + 8 * 3600)).unwrap();
    assert_eq!(o.capacity, 4);
}

#[test]
fn a_one_off_burst_does_not_become_a_floor() {
    let mut fc = Forecaster::new();
    // A burst of 100 at 03:00-03:30 on day 5 only.
    feed(&mut fc, 0, 10 * DAY, |t| {
        if (5 * DAY + 3 * 3600..5 * DAY + 3 * 3600 + 1800).contains(&t) { 100.0 } else { daily_peak(t) }
    });
    fc.refresh(&spec(), at(10 * DAY));
    let o = fc.outlook(&spec(), at(10 * DAY + 3 * 3600)).unwrap();
    assert_eq!(o.capacity, 4, "one day in ten moves no quantile below 0.9: {o:?}");
}

#[test]
fn garbage_is_ignored_and_gaps_are_not_zeros() {
    let mut fc = Forecaster::new();
    feed(&mut fc, 0, 5 * DAY + 9 * 3600, |t| {
        let tod = t.rem_euclid(DAY);
        if (2 * 3600..6 * 3600).contains(&tod) {
            return f64::NAN; // a metric missing four hours a day
        }
        match t % 7 {
            0 => -5.0,
            1 => f64::INFINITY,
            2 => 1e300,
            _ => daily_peak(t),
        }
    });
    fc.refresh(&spec(), at(5 * DAY + 9 * 3600));
    assert_eq!(fc.observed_slots(), 5 * 20 * 12 + 5 * 12);
    let o = fc.outlook(&spec(), at(5 * DAY + 10 * 3600)).unwrap();
    assert_eq!(o.capacity, 20);
    // The slots of the gap have no past values: no floor from nothing.
    let mut early = Forecaster::new();
    feed(&mut early, 0, 5 * DAY, |t| if (2 * 3600..6 * 3600).contains(&t.rem_euclid(DAY)) { f64::NAN } else { 4.0 });
    early.refresh(&spec(), at(5 * DAY + 3 * 3600));
    assert_eq!(early.outlook(&spec(), at(5 * DAY + 3 * 3600)), Err(Unavailable::NoForecast));
}

#[test]
fn noise_fails_the_gate_and_the_decision_would_say_why() {
    let mut fc = Forecaster::new();
    // A deterministic pseudo-random load with no daily pattern.
    let mut x: u64 = 12345;
    let mut t = 0;
    while t < 7 * DAY {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        #[allow(clippy::cast_precision_loss)]
        let v = ((x >> 33) % 1000) as f64 / 10.0;
        // Bursty: mostly 1, sometimes up to 100.
        fc.observe(at(t), if v > 90.0 { v } else { 1.0 });
        t += 5 * MIN;
    }
    fc.refresh(&spec(), at(7 * DAY));
    match fc.outlook(&spec(), at(7 * DAY)) {
        Err(Unavailable::Inaccurate { wape, limit }) => {
            assert!(wape > limit);
            let msg = Unavailable::Inaccurate { wape, limit }.to_string();
            assert!(msg.contains("above max_error 80%"), "{msg}");
            eprintln!("{msg}");
        }
        other => panic!("expected the gate to close: {other:?}"),
    }
}

#[test]
fn refits_once_an_hour_not_every_evaluation() {
    let mut fc = Forecaster::new();
    feed(&mut fc, 0, 4 * DAY, daily_peak);
    assert!(fc.refresh(&spec(), at(4 * DAY)));
    assert!(!fc.refresh(&spec(), at(4 * DAY + MIN)));
    assert!(!fc.refresh(&spec(), at(4 * DAY + 59 * MIN)));
    assert!(fc.refresh(&spec(), at(4 * DAY + 60 * MIN)));
    // A changed policy refits at once; so does a clock that went back.
    let other = Predictive { quantile: 0.9, ..spec() };
    assert!(fc.refresh(&other, at(4 * DAY + 61 * MIN)));
    assert!(fc.refresh(&other, at(4 * DAY)));
}

#[test]
fn the_fit_never_reads_data_after_now() {
    let mut a = Forecaster::new();
    feed(&mut a, 0, 4 * DAY, daily_peak);
    let mut b = a.clone();
    // b also saw a (bogus) future: a huge load tomorrow at 10:00.
    feed(&mut b, 4 * DAY + 9 * 3600, 4 * DAY + 12 * 3600, |_| 500.0);
    let now = at(4 * DAY);
    assert_eq!(a.fit(&spec(), now), b.fit(&spec(), now));
}

#[test]
fn a_clock_jump_or_a_vanished_metric_gives_no_floor() {
    let mut fc = Forecaster::new();
    feed(&mut fc, 0, 4 * DAY, daily_peak);
    // The metric vanished: seven hours later the model is stale.
    let later = 4 * DAY + 7 * 3600;
    fc.refresh(&spec(), at(later));
    assert!(matches!(fc.outlook(&spec(), at(later)), Err(Unavailable::Stale { since: Some(_) })));
    // A clock a year ahead: history starts again, and the model is learning.
    fc.observe(at(400 * DAY), 5.0);
    fc.refresh(&spec(), at(400 * DAY + MIN));
    assert_eq!(fc.observed_slots(), 1);
    assert!(matches!(fc.outlook(&spec(), at(400 * DAY + MIN)), Err(Unavailable::Learning { hours: 0, .. })));
}

#[test]
fn weekly_once_two_weeks_exist_when_weekends_differ() {
    // Weekdays peak at 10:00 (20); weekends stay at 4.
    let weekly = |t: i64| if t.rem_euclid(7 * DAY) >= 5 * DAY { 4.0 } else { daily_peak(t) };
    let mut fc = Forecaster::new();
    feed(&mut fc, 0, 13 * DAY, weekly);
    fc.refresh(&spec(), at(13 * DAY));
    assert_eq!(fc.outlook(&spec(), at(13 * DAY)).unwrap().season, Season::Daily, "13 days: daily only");
    let sat = 19 * DAY + 10 * 3600; // Saturday 10:00 of week 3
    feed(&mut fc, 13 * DAY, sat, weekly);
    fc.refresh(&spec(), at(sat));
    let o = fc.outlook(&spec(), at(sat)).unwrap();
    assert_eq!(o.season, Season::Weekly);
    assert_eq!(o.capacity, 4, "no weekday peak on a Saturday: {o:?}");
    let mon = 21 * DAY + 10 * 3600;
    feed(&mut fc, sat, mon, weekly);
    fc.refresh(&spec(), at(mon));
    assert_eq!(fc.outlook(&spec(), at(mon)).unwrap().capacity, 20);
}

#[test]
fn state_round_trips_through_json() {
    let mut fc = Forecaster::new();
    feed(&mut fc, 0, 4 * DAY, daily_peak);
    fc.refresh(&spec(), at(4 * DAY));
    let json = serde_json::to_string(&fc).unwrap();
    let back: Forecaster = serde_json::from_str(&json).unwrap();
    assert_eq!(back, fc);
    assert_eq!(back.outlook(&spec(), at(4 * DAY + 10 * 3600)), fc.outlook(&spec(), at(4 * DAY + 10 * 3600)));
}
