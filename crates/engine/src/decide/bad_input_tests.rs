//! Bad input through the engine: metric values that are not numbers, negative or huge;
//! timestamps in the future, from 1970 and at the ends of `Timestamp`'s range; a clock that
//! jumps back or a week forward between evaluations; an empty pool; a pool whose members are
//! all protected; an Auto Scaling group whose min is above its max; an unknown time zone.
//!
//! Every test checks what `decide` does, not only that it returns: capacity stays within the
//! policy's bounds, missing or unusable data never scales in, and no action is issued twice.
//! Not here: the daemon's reading of files (see `tests/reliability_input.rs`).

use super::*;
use crate::cycle::{Achieved, PoolCycle};
use crate::fleet::GroupState;
use crate::history::Sample;
use crate::policy::parse_policy;

const T0: i64 = 1_795_000_000; // 2026-11-18, no pre-warm in these policies

fn at(min: i64) -> Timestamp {
    Timestamp::from_second(T0 + min * 60).unwrap()
}

/// min 2, max 20, 1-minute interval, CPU target 50 (ceiling 90), two confirmations,
/// cooldowns 3m up / 4m down, stabilisation 5m, plus `extra` YAML (a `pool:` or `metrics:` in
/// it replaces the default one).
fn policy(extra: &str) -> Policy {
    let pool = if extra.contains("pool:") { "" } else { "pool: {tag: {key: pool, value: bad}}\n" };
    let metrics = if extra.contains("metrics:") {
        ""
    } else {
        "metrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50, ceiling: 90}\n"
    };
    let text = format!(
        "name: bad
{pool}min: 2
max: 20
interval: 1m
{metrics}history: {{window: 1h, max_age: 3m}}
scaling:
  tolerance: 0.1
  scale_up: {{confirmations: 2, cooldown: 3m, max_step: 100%}}
  scale_down: {{stabilization: 5m, cooldown: 4m, max_step: 50%}}
{extra}"
    );
    let r = parse_policy("bad.yaml", &text);
    assert!(r.policy.is_some(), "{:?}", r.diagnostics);
    r.policy.unwrap()
}

fn member(i: u32, state: MemberState, protected: bool) -> Member {
    Member {
        id: format!("i-{i:02}"),
        state,
        launched_at: Some(Timestamp::from_second(T0 - 86_400 + i64::from(i) * 60).unwrap()),
        protected,
        cpu: None,
    }
}

fn fleet(running: u32, stopped: u32) -> Fleet {
    Fleet::Instances {
        members: (0..running)
            .map(|i| member(i, MemberState::Running, false))
            .chain((running..running + stopped).map(|i| member(i, MemberState::Stopped, false)))
            .collect(),
    }
}

/// Carries out a decision's start/stop actions on an in-memory fleet, at once.
fn apply(f: &mut Fleet, d: &Decision) {
    let Fleet::Instances { members } = f else { return };
    for a in &d.actions {
        let (ids, to) = match a {
            Action::Start { instance_ids } => (instance_ids, MemberState::Running),
            Action::Stop { instance_ids } => (instance_ids, MemberState::Stopped),
            Action::CancelDrain { instance_ids } => (instance_ids, MemberState::Running),
            Action::SetDesiredCapacity { .. } => continue,
        };
        for m in members.iter_mut().filter(|m| ids.contains(&m.id)) {
            m.state = to;
        }
    }
}

/// One evaluation as the daemon makes it: observe, evaluate, act, complete.
fn step(p: &Policy, c: &mut PoolCycle, f: &mut Fleet, now: Timestamp, cpu: Option<f64>) -> Decision {
    if let Some(v) = cpu {
        c.observe("cpu", Sample { at: now, value: v });
    }
    let d = c.evaluate(p, f, now);
    apply(f, &d);
    c.complete(Achieved::AsDecided);
    d
}

fn started(d: &Decision) -> Vec<String> {
    d.actions
        .iter()
        .flat_map(|a| match a {
            Action::Start { instance_ids } => instance_ids.clone(),
            _ => vec![],
        })
        .collect()
}

fn stopped(d: &Decision) -> Vec<String> {
    d.actions
        .iter()
        .flat_map(|a| match a {
            Action::Stop { instance_ids } => instance_ids.clone(),
            _ => vec![],
        })
        .collect()
}

fn within_bounds(p: &Policy, d: &Decision) {
    assert!(d.desired >= p.min && d.desired <= p.max, "desired {} outside [{}, {}]: {:?}", d.desired, p.min, p.max, d);
}

// ---- metric values ----

#[test]
fn push_sample_drops_nan_and_infinities_and_keeps_finite_extremes() {
    let mut h = PoolHistory::default();
    for (m, v) in [(0, f64::NAN), (1, f64::INFINITY), (2, f64::NEG_INFINITY), (3, -5.0), (4, 1e308), (5, -1e308)] {
        h.push_sample("cpu", Sample { at: at(m), value: v });
    }
    let vals: Vec<f64> = h.samples["cpu"].iter().map(|s| s.value).collect();
    assert_eq!(vals, [-5.0, 1e308, -1e308]);
    // A NaN revision of an existing datapoint does not erase it.
    h.push_sample("cpu", Sample { at: at(4), value: f64::NAN });
    assert_eq!(h.samples["cpu"][1].value, 1e308);
    // A series of nothing but NaN is no series at all: the metric is missing, not zero.
    let mut only_nan = PoolHistory::default();
    only_nan.push_sample("cpu", Sample { at: at(0), value: f64::NAN });
    assert!(only_nan.samples.is_empty());
    assert!(only_nan.latest("cpu", at(0), Duration::from_secs(600)).is_none());
}

#[test]
fn nan_and_infinite_values_are_missing_data_and_never_scale_in() {
    let p = policy("");
    for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut h = PoolCycle::new();
        let mut f = fleet(6, 4);
        // Twelve minutes of nothing but unusable values: hold at 6, every time.
        for m in 0..12 {
            let d = step(&p, &mut h, &mut f, at(m), Some(v));
            assert_eq!((d.desired, d.actions.len()), (6, 0), "value {v} at minute {m}: {d:?}");
            assert!(matches!(d.bounds[0], Bound::MissingData { .. }), "{v}: {:?}", d.bounds);
            assert_eq!(d.readings[0].value, None);
        }
    }
}

#[test]
fn huge_value_scales_up_to_max_without_overflow() {
    let p = policy("");
    let mut h = PoolCycle::new();
    let mut f = fleet(4, 30);
    let d = step(&p, &mut h, &mut f, at(0), Some(1e308));
    // 1e308 on 4 instances overflows to infinity unless the wanted capacity is bounded; then
    // the scale-up waits for its confirmation and is capped by the step limit and max.
    assert!(d.score.is_some_and(f64::is_finite), "{d:?}");
    assert!(d.proposal >= 20, "{d:?}");
    assert_eq!(d.desired, 4, "first evaluation awaits confirmation: {d:?}");
    let d = step(&p, &mut h, &mut f, at(1), Some(1e308));
    assert_eq!(d.desired, 8, "confirmed, limited by the 100% step: {d:?}");
    assert_eq!(started(&d).len(), 4);
    for m in 2..30 {
        let d = step(&p, &mut h, &mut f, at(m), Some(1e308));
        within_bounds(&p, &d);
    }
    assert_eq!(f.current(), 20, "ends at max");
}

#[test]
fn huge_backlog_per_instance_is_capped_at_max() {
    let p = policy(
        "metrics:
  - {id: cpu, namespace: App, name: Backlog, statistic: Sum, target_per_instance: 10}
",
    );
    let h = {
        let mut h = PoolHistory::default();
        h.push_sample("cpu", Sample { at: at(0), value: 1e308 });
        h
    };
    let d = decide(&p, &h, &fleet(3, 30), at(0));
    within_bounds(&p, &d);
    assert!(d.desired >= 3);
}

/// Two metrics whose wanted capacities were +inf and -inf (or inf times a zero weight) used to
/// blend to NaN, and a NaN proposal is 0: a scale-in under extreme load.
#[test]
fn extreme_values_of_two_metrics_never_blend_into_a_scale_in() {
    let both = policy(
        "metrics:
  - {id: a, namespace: App, name: A, target: 50}
  - {id: b, namespace: App, name: B, target: 50}
",
    );
    let zero_weight = policy(
        "metrics:
  - {id: a, namespace: App, name: A, target: 50}
  - {id: b, namespace: App, name: B, target: 50, weight: 0, ceiling: 90}
",
    );
    for (p, a, b) in [(&both, 1e308, -1e308), (&both, -1e308, 1e308), (&zero_weight, 40.0, 1e308)] {
        let mut h = PoolCycle::new();
        let mut f = fleet(8, 20);
        for m in 0..12 {
            h.observe("a", Sample { at: at(m), value: a });
            h.observe("b", Sample { at: at(m), value: b });
            let d = h.evaluate(p, &f, at(m));
            assert!(d.score.is_some_and(|s| !s.is_nan()), "({a}, {b}) minute {m}: {d:?}");
            assert!(d.proposal > d.current, "({a}, {b}) minute {m}: one metric is far above target: {d:?}");
            assert!(stopped(&d).is_empty(), "({a}, {b}) minute {m}: scaled in: {d:?}");
            apply(&mut f, &d);
            h.complete(Achieved::AsDecided);
        }
        assert_eq!(f.current(), 20, "({a}, {b}): up to max");
    }
}

#[test]
fn negative_values_count_as_missing_and_never_scale_in() {
    // A negative CPU % cannot be measured: the metric is broken, so it is missing data.
    let p = policy("");
    let mut h = PoolCycle::new();
    let mut f = fleet(10, 0);
    for m in 0..30 {
        let d = step(&p, &mut h, &mut f, at(m), Some(-5.0));
        within_bounds(&p, &d);
        assert_eq!((d.desired, d.proposal), (10, 10), "minute {m}: {d:?}");
        assert!(d.actions.is_empty(), "minute {m}: {d:?}");
        assert!(matches!(d.bounds[..], [Bound::MissingData { .. }]), "{:?}", d.bounds);
        assert!(d.reasons()[0].contains("-5.00 is negative: counted as missing"), "{:?}", d.reasons());
    }
    // Next to a healthy metric it blocks scale-in only, as any missing metric does.
    let p = policy(
        "metrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\n  - {id: q, namespace: AWS/SQS, name: Depth, target_per_instance: 10}\n",
    );
    let mut h = PoolCycle::new();
    let mut f = fleet(10, 0);
    for m in 0..20 {
        h.observe("q", Sample { at: at(m), value: -3.0 });
        let d = step(&p, &mut h, &mut f, at(m), Some(5.0));
        assert!(d.actions.is_empty(), "minute {m}: {d:?}");
    }
}

#[test]
fn nan_cpu_of_members_does_not_disturb_lowest_cpu_order() {
    let p = policy("scale_in: {order: lowest_cpu}\n");
    let members: Vec<Member> = [(0, f64::NAN), (1, 30.0), (2, -5.0), (3, f64::INFINITY), (4, 1e308)]
        .into_iter()
        .map(|(i, cpu)| Member { cpu: Some(cpu), ..member(i, MemberState::Running, false) })
        .collect();
    let f = Fleet::Instances { members };
    let mut c = PoolCycle::new();
    // Low load over a whole stabilisation window, then a scale-in to min (5 -> 2: 3 stops).
    for m in 0..7 {
        c.observe("cpu", Sample { at: at(m), value: 5.0 });
        let _ = c.evaluate(&p, &f, at(m));
        c.complete(Achieved::AsDecided);
    }
    c.observe("cpu", Sample { at: at(7), value: 5.0 });
    let d = c.evaluate(&p, &f, at(7));
    assert_eq!(stopped(&d), ["i-02", "i-01", "i-04"], "lowest finite CPU first, NaN and inf last: {d:?}");
}

// ---- timestamps ----

#[test]
fn samples_after_now_are_ignored_and_1970_samples_are_too_old() {
    let p = policy("");
    let f = fleet(4, 4);
    // Only a future datapoint (a skewed exporter): nothing usable now.
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: at(10), value: 99.0 });
    let d = decide(&p, &h, &f, at(0));
    assert_eq!(d.readings[0].value, None, "{d:?}");
    assert_eq!((d.desired, d.actions.len()), (4, 0));
    // Only a datapoint from 1970: far older than max_age, missing.
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: Timestamp::UNIX_EPOCH, value: 99.0 });
    let d = decide(&p, &h, &f, at(0));
    assert_eq!(d.readings[0].value, None, "{d:?}");
    assert_eq!((d.desired, d.actions.len()), (4, 0));
    // Pruning drops the 1970 sample; the future one stays until it is in the past.
    h.push_sample("cpu", Sample { at: at(10), value: 99.0 });
    h.prune(at(0), p.history.window);
    assert_eq!(h.samples["cpu"].len(), 1);
    assert_eq!(h.samples["cpu"][0].at, at(10));
}

#[test]
fn now_at_the_ends_of_time_does_not_panic() {
    let p = policy(
        "prewarm:
  - {name: nightly, cron: \"0 20 * * *\", duration: 2h, time_zone: Asia/Shanghai, lead: 15m, capacity: 12}
  - {name: once, start: 2026-11-27T00:00, duration: 24h, time_zone: America/New_York, capacity: 6}
",
    );
    for now in [
        Timestamp::MAX,
        Timestamp::MAX - jiff::SignedDuration::from_secs(30),
        Timestamp::MIN,
        Timestamp::MIN + jiff::SignedDuration::from_secs(30),
        Timestamp::UNIX_EPOCH,
    ] {
        let mut c = PoolCycle::new();
        c.observe("cpu", Sample { at: now, value: 95.0 });
        c.observe("cpu", Sample { at: Timestamp::MIN, value: 10.0 });
        c.observe("cpu", Sample { at: Timestamp::MAX, value: 10.0 });
        for f in [fleet(4, 4), fleet(0, 0)] {
            let d = c.evaluate(&p, &f, now);
            within_bounds(&p, &d);
            assert!(d.next_evaluation >= now, "next evaluation {} before now {now}", d.next_evaluation);
            let _ = d.reasons();
            c.complete(Achieved::AsDecided);
            let again = decide(&p, c.history(), &f, d.next_evaluation);
            within_bounds(&p, &again);
        }
    }
}

// ---- clock jumps ----

#[test]
fn clock_going_back_after_a_scale_up_does_not_scale_up_again() {
    let p = policy("");
    let mut h = PoolCycle::new();
    let mut f = fleet(4, 20);
    let _ = step(&p, &mut h, &mut f, at(0), Some(80.0));
    let d = step(&p, &mut h, &mut f, at(1), Some(80.0));
    assert_eq!(started(&d).len(), 3, "4 * 80/50 = 6.4 -> 7: {d:?}");
    assert_eq!(f.current(), 7);
    // The clock steps back ten minutes (NTP correction) while the load is still high on the
    // new capacity. The scale-up at minute 1 is in the clock's future: its cooldown holds.
    let mut ups = 0;
    let mut cooldowns = 0;
    for m in [-9, -8, -7, -6] {
        let d = step(&p, &mut h, &mut f, at(m), Some(100.0));
        assert!(d.actions.is_empty(), "minute {m}: acted again after the clock went back: {d:?}");
        assert!(d.proposal > 7, "minute {m}: the load still asks for more: {d:?}");
        if let Some(Bound::CooldownUp { remaining_secs }) =
            d.bounds.iter().find(|b| matches!(b, Bound::CooldownUp { .. }))
        {
            // The cooldown runs out 3 minutes after the scale-up as the clock now reads it.
            let until = at(1).as_second() + 180 - at(m).as_second();
            assert_eq!(*remaining_secs, u64::try_from(until).unwrap());
            cooldowns += 1;
        }
        ups += usize::from(!started(&d).is_empty());
    }
    assert_eq!(cooldowns, 3, "confirmed again from minute -8 on, then held by the cooldown");
    assert_eq!(ups, 0);
    assert_eq!(f.current(), 7);
}

#[test]
fn clock_going_back_does_not_scale_in_on_records_from_its_future() {
    let p = policy("");
    let mut h = PoolCycle::new();
    let mut f = fleet(10, 0);
    // Ten minutes of low load: the window is observed and the pool scales in once (10 -> 5).
    let mut stops = Vec::new();
    for m in 0..10 {
        stops.extend(stopped(&step(&p, &mut h, &mut f, at(m), Some(10.0))));
    }
    assert!(!stops.is_empty());
    let after_first = f.current();
    // Back by an hour: every record is in the future. No scale-in from them: the last scale-down
    // is in the future too, so its cooldown holds until the clock catches up.
    for m in -60..-50 {
        let d = step(&p, &mut h, &mut f, at(m), Some(10.0));
        assert!(stopped(&d).is_empty(), "minute {m}: scaled in on future records: {d:?}");
        within_bounds(&p, &d);
    }
    assert_eq!(f.current(), after_first);
}

#[test]
fn clock_jumping_a_week_forward_starts_over_safely() {
    let p = policy("");
    let mut h = PoolCycle::new();
    let mut f = fleet(6, 10);
    for m in 0..10 {
        let _ = step(&p, &mut h, &mut f, at(m), Some(50.0));
    }
    assert_eq!(f.current(), 6);
    let week = 7 * 24 * 60;
    // A week later, no fresh datapoint yet: the old ones are too old, hold.
    let d = step(&p, &mut h, &mut f, at(week), None);
    assert!(matches!(d.bounds[0], Bound::MissingData { .. }), "{d:?}");
    assert_eq!((d.desired, d.actions.len()), (6, 0));
    // Low load right after the jump: the stabilisation window starts afresh (no scale-in from
    // records a week old); high load needs its confirmations afresh too.
    let d = step(&p, &mut h, &mut f, at(week + 1), Some(5.0));
    assert!(d.actions.is_empty(), "{d:?}");
    assert!(d.bounds.iter().any(|b| matches!(b, Bound::Stabilizing { .. })), "{:?}", d.bounds);
    let d = step(&p, &mut h, &mut f, at(week + 2), Some(95.0));
    assert!(d.actions.is_empty(), "one evaluation above the band is not a confirmation: {d:?}");
    let d = step(&p, &mut h, &mut f, at(week + 3), Some(95.0));
    assert_eq!(started(&d).len(), 6, "confirmed: 6 -> 12 (step 100%): {d:?}");
    // Pruned: nothing older than the window remains.
    let cutoff = crate::duration::before(at(week + 3), p.history.window);
    assert!(h.history().samples["cpu"].iter().all(|s| s.at >= cutoff));
    assert!(h.history().records.iter().all(|r| r.at >= cutoff || r.scaled.is_some()));
}

#[test]
fn repeated_evaluation_at_one_instant_acts_once() {
    // A clock that stands still (or a tick repeated after a crash) must not double an action
    // whose effect the fleet already shows.
    let p = policy("");
    let mut h = PoolCycle::new();
    let mut f = fleet(4, 20);
    let _ = step(&p, &mut h, &mut f, at(0), Some(80.0));
    let mut starts = 0;
    for _ in 0..5 {
        starts += started(&step(&p, &mut h, &mut f, at(1), Some(80.0))).len();
    }
    assert_eq!(starts, 3, "started once, then cooldown");
}

// ---- odd pools ----

#[test]
fn empty_pool_holds_and_reports_the_warm_pool_short() {
    let p = policy("");
    let empty = Fleet::Instances { members: vec![] };
    for cpu in [None, Some(95.0), Some(0.0), Some(f64::NAN)] {
        let mut h = PoolHistory::default();
        if let Some(v) = cpu {
            h.push_sample("cpu", Sample { at: at(0), value: v });
        }
        let d = decide(&p, &h, &empty, at(0));
        assert_eq!((d.current, d.score), (0, None), "{d:?}");
        assert_eq!(d.desired, 2, "min asks for 2: {d:?}");
        assert!(d.actions.is_empty(), "nothing to start: {d:?}");
        assert_eq!(d.shortfall, 2);
        assert!(d.bounds.contains(&Bound::WarmPoolShort { shortfall: 2 }), "{:?}", d.bounds);
    }
}

#[test]
fn every_member_protected_stops_nothing() {
    let p = policy("");
    let members: Vec<Member> = (0..8).map(|i| member(i, MemberState::Running, true)).collect();
    let mut f = Fleet::Instances { members };
    let mut h = PoolCycle::new();
    let mut saw_protected = false;
    for m in 0..20 {
        let d = step(&p, &mut h, &mut f, at(m), Some(5.0));
        assert!(d.actions.is_empty(), "minute {m}: {d:?}");
        assert_eq!(d.desired, 8, "desired stays at what can actually run");
        saw_protected |= d.bounds.contains(&Bound::Protected { kept: 4 });
    }
    assert!(saw_protected, "the protection is reported as the guard that held");
    assert_eq!(f.current(), 8);
}

#[test]
fn group_with_min_above_max_holds_and_says_why() {
    let p = policy(
        "pool: {auto_scaling_group: g}
",
    );
    for (cpu, group_desired) in [(None, 3), (Some(95.0), 3), (Some(5.0), 3), (Some(50.0), 2), (Some(50.0), 5)] {
        let g = GroupState {
            name: "g".into(),
            desired: group_desired,
            min: 5,
            max: 2,
            in_service: group_desired,
            activity_in_progress: false,
        };
        let mut h = PoolHistory::default();
        if let Some(v) = cpu {
            h.push_sample("cpu", Sample { at: at(0), value: v });
        }
        let d = decide(&p, &h, &Fleet::Group(g), at(0));
        // AWS rejects any desired capacity for such a group: no action, the reason names it.
        assert_eq!(d.desired, group_desired, "{cpu:?}: {d:?}");
        assert!(d.actions.is_empty(), "{cpu:?}: {d:?}");
        assert!(d.bounds.contains(&Bound::GroupBoundsInvalid { min: 5, max: 2 }), "{:?}", d.bounds);
    }
}

#[test]
fn unknown_time_zone_is_reported_with_its_line() {
    let text = "name: tz
pool: {tag: {key: pool, value: tz}}
min: 1
max: 4
interval: 1m
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}
prewarm:
  - name: launch
    start: 2026-12-01T09:00
    duration: 2h
    time_zone: Mars/Olympus_Mons
    capacity: 3
";
    let r = parse_policy("tz.yaml", text);
    assert!(r.policy.is_none(), "an unknown zone rejects the policy");
    let msgs: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
    assert!(
        msgs.iter().any(|m| m.starts_with("tz.yaml:12:")
            && m.contains("time_zone")
            && m.contains("\"Mars/Olympus_Mons\" is not an IANA time zone")),
        "{msgs:#?}"
    );
}

// ---- trace reader (found by `scripts/fuzz.sh run trace`) ----

/// A given step close to `i64::MAX` milliseconds (`vmscaler backtest --step 50000000d`)
/// overflowed the gap check (`step * 3`): a panic in debug builds, every interval a gap in
/// release ones. Now the trace's end is out of range and says so.
#[test]
fn trace_with_a_huge_step_is_out_of_range_not_a_panic() {
    use crate::backtest::trace::{Fill, TraceError, TraceOptions, read_trace};
    // The fuzzer's input: epoch-second times, then a huge step, Fill::Hold.
    let text = "~ts,kp,qe00\n1700000060,42,20,45,1350\n17000,0030060,0\n";
    let huge = Some(Duration::from_millis(u64::MAX / 4));
    for fill in [Fill::Hold, Fill::Zero] {
        let opts = TraceOptions { step: huge, start: Some(at(0)), fill, ..TraceOptions::default() };
        assert_eq!(read_trace(text, &opts).map(|t| t.points.len()), Err(TraceError::OutOfRange), "{fill:?}");
    }
    let fifty_million_days = Some(Duration::from_secs(50_000_000 * 86_400));
    let text = "timestamp,value\n2026-11-18T00:00:00Z,1\n2026-11-18T00:01:00Z,2\n2026-11-18T00:05:00Z,3\n";
    let opts = TraceOptions { step: fifty_million_days, ..TraceOptions::default() };
    assert_eq!(read_trace(text, &opts).map(|t| t.summary.gap_count), Err(TraceError::OutOfRange));
    // A large step that still fits: no gap is longer than one and a half of it.
    let opts = TraceOptions { step: Some(Duration::from_secs(1_000_000 * 86_400)), ..TraceOptions::default() };
    let t = read_trace(text, &opts).unwrap();
    assert_eq!((t.points.len(), t.summary.gap_count), (3, 0));
}
