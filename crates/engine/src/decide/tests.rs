//! Table tests with fixed timestamps, and properties over random inputs.

use proptest::prelude::*;

use super::*;
use crate::cycle::{Achieved, PoolCycle};
use crate::duration::{after as after_, before as before_};
use crate::fleet::GroupState;
use crate::history::Sample;
use crate::policy::parse_policy;

const T0: i64 = 1_795_000_000; // 2026-11-18, a Wednesday with no pre-warm in the test policies

fn at(min: i64) -> Timestamp {
    Timestamp::from_second(T0 + min * 60).unwrap()
}

/// A policy: one CPU metric (target 50, ceiling 90), min 2, max 20, 1-minute interval,
/// 2 confirmations, stabilisation 5m, cooldowns 3m up / 4m down, plus `extra` YAML.
fn policy(extra: &str) -> Policy {
    let base = "name: t
pool: {tag: {key: pool, value: t}}
min: 2
max: 20
interval: 1m
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50, ceiling: 90}
history: {window: 1h, max_age: 3m}
";
    let default_scaling = "scaling:
  tolerance: 0.1
  scale_up: {confirmations: 2, cooldown: 3m, max_step: 100%}
  scale_down: {stabilization: 5m, cooldown: 4m, max_step: 50%}
";
    let base = if extra.contains("metrics:") {
        base.replace("metrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50, ceiling: 90}\n", "")
    } else {
        base.to_owned()
    };
    let text =
        if extra.contains("scaling:") { format!("{base}{extra}") } else { format!("{base}{default_scaling}{extra}") };
    let r = parse_policy("t.yaml", &text);
    assert!(r.policy.is_some(), "{:?}", r.diagnostics);
    r.policy.unwrap()
}

fn member(i: u32, state: MemberState) -> Member {
    Member {
        id: format!("i-{i:02}"),
        state,
        launched_at: Some(Timestamp::from_second(T0 - 86_400 + i64::from(i) * 60).unwrap()),
        protected: false,
        cpu: None,
    }
}

fn fleet(running: u32, stopped: u32) -> Fleet {
    Fleet::Instances {
        members: (0..running)
            .map(|i| member(i, MemberState::Running))
            .chain((running..running + stopped).map(|i| member(i, MemberState::Stopped)))
            .collect(),
    }
}

/// Drives `decide` once a minute with `cpu(minute, current)` as the metric, carrying out the
/// actions on an in-memory fleet at once. Returns every decision.
fn run(p: &Policy, mut f: Fleet, minutes: i64, cpu: impl Fn(i64, u32) -> Option<f64>) -> Vec<Decision> {
    let mut c = PoolCycle::new();
    let mut out = Vec::new();
    for m in 0..minutes {
        let now = at(m);
        if let Some(v) = cpu(m, f.current()) {
            c.observe("cpu", Sample { at: now, value: v });
        }
        let d = c.evaluate(p, &f, now);
        apply(&mut f, &d);
        c.complete(Achieved::AsDecided);
        out.push(d);
    }
    out
}

fn apply(f: &mut Fleet, d: &Decision) {
    let Fleet::Instances { members } = f else { return };
    for a in &d.actions {
        let (ids, state) = match a {
            Action::Start { instance_ids } => (instance_ids, MemberState::Running),
            Action::Stop { instance_ids } => (instance_ids, MemberState::Stopped),
            Action::CancelDrain { instance_ids } => (instance_ids, MemberState::Running),
            Action::SetDesiredCapacity { .. } => continue,
        };
        for m in members.iter_mut().filter(|m| ids.contains(&m.id)) {
            m.state = state;
        }
    }
}

fn desired(ds: &[Decision]) -> Vec<u32> {
    ds.iter().map(|d| d.desired).collect()
}

fn history_with(samples: &[(i64, f64)]) -> PoolHistory {
    let mut h = PoolHistory::default();
    for (m, v) in samples {
        h.push_sample("cpu", Sample { at: at(*m), value: *v });
    }
    h
}

#[test]
fn within_tolerance_holds() {
    let p = policy("");
    let d = decide(&p, &history_with(&[(0, 54.0)]), &fleet(4, 4), at(0));
    assert_eq!((d.desired, d.proposal), (4, 4));
    assert_eq!(d.bounds, [Bound::WithinTolerance { score: 54.0 / 50.0, tolerance: 0.1 }]);
    assert!(d.actions.is_empty());
}

#[test]
fn scale_up_waits_for_confirmation_then_acts() {
    let p = policy("");
    // 4 running at 75% CPU want ceil(4 * 1.5) = 6.
    let ds = run(&p, fleet(4, 10), 3, |_, cur| Some(if cur == 4 { 75.0 } else { 50.0 }));
    assert_eq!(ds[0].bounds, [Bound::AwaitingConfirmation { seen: 1, needed: 2 }]);
    assert_eq!(ds[0].desired, 4);
    assert_eq!(ds[1].desired, 6);
    assert_eq!(ds[1].actions, [Action::Start { instance_ids: vec!["i-04".into(), "i-05".into()] }]);
    assert_eq!(ds[2].desired, 6, "on target after the scale-up");
}

#[test]
fn booting_instances_are_not_counted_twice() {
    let p = policy("scaling:\n  scale_up: {confirmations: 1}\n");
    // 8 instances, 3 of them still booting: the 80% CPU was measured on the 5 in service,
    // which want 5 * 80 / 50 = 8: the booting ones already cover it.
    let mut f = fleet(8, 4);
    if let Fleet::Instances { members } = &mut f {
        for m in &mut members[5..8] {
            m.state = MemberState::Pending;
        }
    }
    let d = decide(&p, &history_with(&[(0, 80.0)]), &f, at(0));
    assert_eq!((d.current, d.serving, d.desired), (8, 5, 8));
    assert_eq!(d.bounds, [Bound::WithinTolerance { score: 1.0, tolerance: 0.1 }]);

    // A lagged datapoint is scaled by what was in service while its period ran: the
    // evaluations at minute -2 and -1 (its start and end) saw 4 in service, so 100% CPU then
    // wants 8, not 16.
    let mut h = history_with(&[(-2, 100.0)]);
    let rec = |m, serving| EvalRecord {
        at: at(m),
        score: None,
        above_band: false,
        proposal: 4,
        current: 8,
        serving,
        desired: 8,
        scaled: None,
        dry_run: false,
    };
    h.push_record(rec(-3, 3));
    h.push_record(rec(-2, 4));
    h.push_record(rec(-1, 4));
    let d = decide(&p, &h, &fleet(8, 4), at(0));
    assert_eq!((d.proposal, d.desired), (8, 8), "{:?}", d.bounds);

    // Nothing in service yet: nothing was measured, so the metric is missing (never "wants 0").
    let mut f = fleet(0, 4);
    if let Fleet::Instances { members } = &mut f {
        members[0].state = MemberState::Pending;
    }
    let d = decide(&p, &history_with(&[(0, 0.0)]), &f, at(0));
    assert_eq!((d.current, d.serving, d.desired), (1, 0, 2), "raised to min, not scaled to zero");
    assert!(matches!(d.bounds[0], Bound::MissingData { .. }), "{:?}", d.bounds);
}

#[test]
fn a_period_that_saw_the_fleet_change_is_read_on_the_harmonic_mean_of_its_counts() {
    let p = policy("scaling:\n  scale_up: {confirmations: 1}\n");
    let rec = |m, serving, scaled: Option<Direction>, current, desired| EvalRecord {
        at: at(m),
        score: Some(1.0),
        above_band: false,
        proposal: current,
        current,
        serving,
        desired,
        scaled,
        dry_run: false,
    };
    // 4 in service when minute -2 began, 8 when it ended (4 came into service during it): a
    // load of 3 instances is 75% on the 4, then 37.5% on the 8, 56.25% over the minute: a load
    // of 56.25% / mean(1/4, 1/8) = 3 instances busy, which wants 3 * 100 / 50 = 6; reading it
    // all on the 8 of the end wanted 9.
    let mut h = history_with(&[(-2, 56.25)]);
    h.push_record(rec(-2, 4, Some(Direction::Up), 4, 8));
    h.push_record(rec(-1, 8, None, 8, 8));
    let d = decide(&p, &h, &fleet(8, 4), at(0));
    assert_eq!(d.proposal, 6, "{:?}", d.bounds);

    // A scale-down at the start of the period stopped 2 of 8 at once: the period ran on 6
    // throughout, so 75% wants 6 * 75 / 50 = 9 (the count before the action would read 6.86
    // in service and want 11).
    let mut h = history_with(&[(-2, 75.0)]);
    h.push_record(rec(-2, 8, Some(Direction::Down), 8, 6));
    h.push_record(rec(-1, 6, None, 6, 6));
    let d = decide(&p, &h, &fleet(6, 4), at(0));
    assert_eq!(d.proposal, 9, "{:?}", d.bounds);
}

#[test]
fn a_saturated_period_is_read_on_the_largest_fleet_it_saw() {
    // The same minute as above, but the 8 were as busy as the 4: 100% (above the ceiling of
    // 90) all minute long. No fleet in it could carry the load, so the load is at least the 8
    // of the end fully busy: it wants 8 * 100 / 50 = 16 at once. (The harmonic mean, right for
    // a load the fleet carried, read a load of 5.33 here: 4 + 4 fully busy is not 5.33, and it
    // asked for 11, a step too small to matter that left the fleet saturated a period longer.)
    let p = policy("scaling:\n  scale_up: {confirmations: 1}\n");
    let rec = |m, serving, scaled: Option<Direction>, current, desired| EvalRecord {
        at: at(m),
        score: Some(1.0),
        above_band: false,
        proposal: current,
        current,
        serving,
        desired,
        scaled,
        dry_run: false,
    };
    let mut h = history_with(&[(-2, 100.0)]);
    h.push_record(rec(-2, 4, Some(Direction::Up), 4, 8));
    h.push_record(rec(-1, 8, None, 8, 8));
    let d = decide(&p, &h, &fleet(8, 12), at(0));
    assert_eq!((d.proposal, d.desired), (16, 16), "{:?}", d.bounds);
    assert_eq!(d.readings[0].measured_on, Some(8.0));
    assert!(d.readings[0].saturated);

    // Just below the ceiling the period is read as a load the fleet carried, as before:
    // 89% / mean(1/4, 1/8) = 4.75 busy, wanting 9.5 -> 10.
    let mut h = history_with(&[(-2, 89.0)]);
    h.push_record(rec(-2, 4, Some(Direction::Up), 4, 8));
    h.push_record(rec(-1, 8, None, 8, 8));
    let d = decide(&p, &h, &fleet(8, 12), at(0));
    assert_eq!(d.proposal, 10, "{:?}", d.bounds);
}

#[test]
fn fast_threshold_skips_confirmation() {
    let p = policy("scaling:\n  scale_up: {confirmations: 3, fast_threshold: 1.5}\n");
    let d = decide(&p, &history_with(&[(0, 80.0)]), &fleet(4, 10), at(0));
    assert_eq!(d.desired, 7, "ceil(4 * 1.6)");
    assert_eq!(d.bounds, [Bound::FastScaleUp { score: 1.6, threshold: 1.5 }]);
}

#[test]
fn a_saturated_metric_is_never_averaged_away() {
    // CPU at 95% has weight 0.1; the queue (weight 0.9) says half the capacity would do.
    let p = policy(
        "metrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50, ceiling: 90, weight: 0.1}\n  - {id: queue, namespace: AWS/SQS, name: Depth, target_per_instance: 10, weight: 0.9}\n",
    );
    let mut h = history_with(&[(-1, 95.0), (0, 95.0)]);
    h.push_sample("queue", Sample { at: at(0), value: 20.0 });
    h.push_record(EvalRecord {
        at: at(-1),
        score: Some(1.9),
        above_band: true,
        proposal: 8,
        current: 4,
        serving: 4,
        desired: 4,
        scaled: None,
        dry_run: false,
    });
    let d = decide(&p, &h, &fleet(4, 10), at(0));
    // Blend: (0.1 * 7.6 + 0.9 * 2) / 1.0 = 2.56 instances; CPU alone wants 4 * 1.9 = 7.6.
    assert_eq!(d.bounds[0], Bound::Saturated { metric: "cpu".into(), ratio: 1.9 });
    assert_eq!((d.proposal, d.desired), (8, 8));
}

#[test]
fn scale_down_follows_the_highest_proposal_of_the_window() {
    let p = policy("");
    // 8 running: 20% CPU wants ceil(8 * 0.4) = 4, but minute 1 was at 40% (wants 7).
    let ds = run(&p, fleet(8, 0), 12, |m, cur| match (m, cur) {
        (1, _) => Some(40.0),
        (_, 8) => Some(20.0),
        (_, c) => Some(20.0 * 8.0 / f64::from(c)),
    });
    let got = desired(&ds);
    // Minutes 0-3: the 5m window is not yet observed. Minute 4: the window (inclusive of its
    // start) holds minute 1's proposal of 7. Minutes 5-6: minute 1 is still in the window.
    // Minute 7: 7 at 22.9% CPU wants 4, and the second step of the descent has half the 4m
    // cooldown (2m since minute 4) and twice the step.
    assert_eq!(&got[..9], [8, 8, 8, 8, 7, 7, 7, 4, 4]);
    assert!(
        matches!(ds[2].bounds[..], [Bound::Stabilizing { observed_secs: 120, window_secs: 300 }]),
        "{:?}",
        ds[2].bounds
    );
    assert_eq!(ds[4].bounds, [Bound::Stabilized { highest: 7 }]);
    assert_eq!(ds[6].bounds, [Bound::Stabilized { highest: 7 }], "minute 1 is still in the window");
    assert_eq!(ds[7].bounds, [], "nothing bound the second step");
}

#[test]
fn no_scale_down_inside_the_cooldown() {
    let p = policy(
        "scaling:\n  scale_up: {confirmations: 1}\n  scale_down: {stabilization: 0s, cooldown: 4m, max_step: 100%}\n",
    );
    // Scale up at minute 0 (4 -> 8), then load vanishes.
    let ds = run(&p, fleet(4, 10), 7, |m, _| Some(if m == 0 { 100.0 } else { 5.0 }));
    let got = desired(&ds);
    assert_eq!(got[0], 8);
    assert_eq!(&got[1..4], [8, 8, 8], "inside the 4m cooldown");
    assert!(matches!(ds[1].bounds[..], [Bound::CooldownDown { remaining_secs: 180 }]), "{:?}", ds[1].bounds);
    assert_eq!(got[4], 2, "cooldown over at minute 4: down to min");
}

#[test]
fn a_confirmed_descent_accelerates_and_a_rise_resets_it() {
    // 16 instances at 5% CPU, max_step 2, a scale-down every minute (cooldown 1m, no window).
    let descent = |accel: &str, cpu_at: fn(i64) -> f64| {
        let p = policy(&format!("scaling:\n  scale_down: {{stabilization: 0s, cooldown: 1m, max_step: 2{accel}}}\n"));
        desired(&run(&p, fleet(16, 4), 6, |m, _| Some(cpu_at(m))))
    };
    // Steps of 2, then 4, then 8: down to min 2 in three scale-downs instead of seven.
    assert_eq!(descent("", |_| 5.0), [14, 10, 2, 2, 2, 2]);
    assert_eq!(descent(", acceleration: 1", |_| 5.0), [14, 12, 10, 8, 6, 4]);
    // A minute above the band (minute 2) resets the streak: the next step is 2 again.
    assert_eq!(descent("", |m| if m == 2 { 100.0 } else { 5.0 })[..4], [14, 10, 10, 8]);
}

#[test]
fn a_window_with_nothing_above_the_band_confirms_the_descent() {
    // 8 running, stabilisation 5m, scale-down cooldown 4m, max_step 50%. Minutes 0-1 at 40%
    // (want 7), then a load of 0.8 instances (10% on 8: wants the min, 2). `minute1` replaces
    // minute 1's CPU.
    let descent = |confirmed: &str, minute1: f64, minutes: i64| {
        let p = policy(&format!(
            "scaling:\n  scale_up: {{confirmations: 2, cooldown: 3m}}\n  scale_down: {{stabilization: 5m, cooldown: 4m, max_step: 50%{confirmed}}}\n"
        ));
        run(&p, fleet(8, 4), minutes, |m, cur| {
            Some(match m {
                0 => 40.0,
                1 => minute1,
                _ => 80.0 / f64::from(cur),
            })
        })
    };
    // Without it: minute 4 may only go down to the window's highest proposal, 7.
    assert_eq!(desired(&descent("", 40.0, 6)), [8, 8, 8, 8, 7, 7]);
    // With it: every evaluation of the window below the band confirms the descent; only the last
    // 2m count (proposals of 2), and no step limit: straight to 2.
    let ds = descent(", confirmed_stabilization: 2m", 40.0, 6);
    assert_eq!(desired(&ds), [8, 8, 8, 8, 2, 2]);
    assert_eq!(ds[4].bounds, [Bound::ConfirmedDescent { recent_secs: 120, highest: 2 }]);
    assert!(ds[4].reasons().iter().any(|r| r.contains("descent confirmed, down to 2")), "{:?}", ds[4].reasons());
    // An evaluation within the band (50% at minute 1: on target) does not unconfirm it...
    assert_eq!(desired(&descent(", confirmed_stabilization: 2m", 50.0, 6)), [8, 8, 8, 8, 2, 2]);
    // ...one above it does (60%: wants 10), for as long as it is in the window: minute 1 leaves
    // the 5m window at minute 7.
    let ds = descent(", confirmed_stabilization: 2m", 60.0, 8);
    assert_eq!(desired(&ds), [8, 8, 8, 8, 8, 8, 8, 2]);
    assert_eq!(ds[4].bounds, [Bound::Stabilized { highest: 10 }]);
    // A rise the fleet was scaled up to is answered: 100% on 4 at minutes 0-1 asked for 8 and
    // got it at minute 1; when the load is gone, those evaluations no longer hold the descent
    // back (they asked for no more than the 8 there are). Minute 4 waits out the 4m cooldown of
    // the scale-up; minute 5 goes straight to 2, where the whole window used to hold 8 until
    // minute 1 left it at minute 7.
    let p = policy(
        "scaling:\n  scale_up: {confirmations: 2, cooldown: 3m}\n  scale_down: {stabilization: 5m, cooldown: 4m, max_step: 50%, confirmed_stabilization: 2m}\n",
    );
    let ds = run(&p, fleet(4, 8), 7, |m, cur| Some(if m < 2 { 100.0 } else { 80.0 / f64::from(cur) }));
    assert_eq!(desired(&ds), [4, 8, 8, 8, 8, 2, 2]);
    assert!(matches!(ds[4].bounds[..], [Bound::CooldownDown { remaining_secs: 60 }]), "{:?}", ds[4].bounds);
    assert_eq!(ds[5].bounds, [Bound::ConfirmedDescent { recent_secs: 120, highest: 2 }]);
    let without = policy(
        "scaling:\n  scale_up: {confirmations: 2, cooldown: 3m}\n  scale_down: {stabilization: 5m, cooldown: 4m, max_step: 50%}\n",
    );
    let ds = run(&without, fleet(4, 8), 8, |m, cur| Some(if m < 2 { 100.0 } else { 80.0 / f64::from(cur) }));
    assert_eq!(desired(&ds), [4, 8, 8, 8, 8, 8, 8, 4], "the whole window holds 8, then a 50% step");

    // The cooldown still holds: a scale-up at minute 0 (100% on 4, fast) keeps the confirmed
    // descent waiting for the 4m cooldown.
    let p = policy(
        "scaling:\n  scale_up: {confirmations: 1, cooldown: 3m}\n  scale_down: {stabilization: 2m, cooldown: 4m, confirmed_stabilization: 1m}\n",
    );
    let ds = run(&p, fleet(4, 8), 6, |m, _| Some(if m == 0 { 100.0 } else { 5.0 }));
    assert_eq!(desired(&ds), [8, 8, 8, 8, 2, 2]);
    assert!(matches!(ds[3].bounds[..], [Bound::CooldownDown { remaining_secs: 60 }]), "{:?}", ds[3].bounds);
}

#[test]
fn scale_up_cooldown_and_step_limit() {
    let p = policy("scaling:\n  scale_up: {confirmations: 1, cooldown: 3m, max_step: 2}\n");
    let ds = run(&p, fleet(4, 16), 5, |_, _| Some(100.0));
    assert_eq!(desired(&ds), [6, 6, 6, 8, 8]);
    assert!(ds[0].bounds.contains(&Bound::StepUp { limit: 2 }));
    assert!(matches!(ds[1].bounds.last(), Some(Bound::CooldownUp { remaining_secs: 120 })), "{:?}", ds[1].bounds);
}

#[test]
fn missing_data_never_scales_in() {
    for (rule, want) in [("hold", 8), ("scale_up", 16), ("{fixed: 10}", 10)] {
        let p = policy(&format!("missing_data: {rule}\n"));
        let h = history_with(&[(-10, 5.0)]); // stale: older than max_age 3m
        let d = decide(&p, &h, &fleet(8, 12), at(0));
        assert_eq!(d.desired, want, "{rule}");
        assert!(matches!(d.bounds[0], Bound::MissingData { .. }), "{:?}", d.bounds);
    }
}

#[test]
fn partly_missing_data_blocks_scale_in_only() {
    let p = policy(
        "metrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\n  - {id: gpu, namespace: CWAgent, name: gpu, target: 50}\n",
    );
    let mut h = history_with(&[(0, 10.0)]);
    h.push_record(EvalRecord {
        at: at(-6),
        score: Some(0.2),
        above_band: false,
        proposal: 2,
        current: 8,
        serving: 8,
        desired: 8,
        scaled: None,
        dry_run: false,
    });
    let d = decide(&p, &h, &fleet(8, 0), at(0));
    assert_eq!(d.desired, 8);
    assert_eq!(d.bounds, [Bound::NoScaleInWithMissingData { metrics: vec!["gpu".into()] }]);
}

#[test]
fn protected_and_in_transit_members_are_never_acted_on_twice() {
    let p = policy(
        "scaling:\n  scale_down: {stabilization: 0s, cooldown: 0s, max_step: 100%}\nscale_in: {order: oldest}\n",
    );
    let mut f = fleet(6, 0);
    let Fleet::Instances { members } = &mut f else { unreachable!() };
    members[0].protected = true; // oldest, but protected
    members[1].state = MemberState::Pending; // counts as capacity, cannot be stopped
    members[2].state = MemberState::Stopping; // already leaving: not capacity
    let d = decide(&p, &history_with(&[(0, 5.0)]), &f, at(0));
    assert_eq!(d.current, 5);
    assert_eq!(d.actions, [Action::Stop { instance_ids: vec!["i-03".into(), "i-04".into(), "i-05".into()] }]);
    assert_eq!(d.desired, 2);

    // Everything left is protected or pending: nothing more to stop, and the decision says so.
    let d = decide(&p, &history_with(&[(0, 5.0)]), &fleet_with_all_protected(), at(0));
    assert!(d.actions.is_empty());
    assert_eq!(d.desired, d.current);
    assert!(d.bounds.contains(&Bound::Protected { kept: 2 }), "{:?}", d.bounds);
}

#[test]
fn draining_members_are_not_capacity_and_a_rise_takes_them_back_before_starting_any() {
    let p = policy(
        "scaling:\n  scale_up: {confirmations: 1}\n  scale_down: {stabilization: 0s, cooldown: 0s, max_step: 100%}\n",
    );
    // 4 running, 2 draining, 3 stopped: current 4, the draining ones are never chosen twice.
    let mut f = fleet(6, 3);
    let Fleet::Instances { members } = &mut f else { unreachable!() };
    members[4].state = MemberState::Draining;
    members[5].state = MemberState::Draining;
    assert_eq!((f.current(), f.serving(), f.draining()), (4, 4, 2));
    let d = decide(&p, &history_with(&[(0, 5.0)]), &f, at(0));
    assert_eq!(d.desired, 2);
    assert_eq!(d.actions, [Action::Stop { instance_ids: vec!["i-03".into(), "i-02".into()] }]);
    // A rise of 3: both draining members come back (no boot, no start), one stopped is started.
    let d = decide(&p, &history_with(&[(0, 85.0)]), &f, at(0));
    assert_eq!(d.desired, 7);
    assert_eq!(
        d.actions,
        [
            Action::CancelDrain { instance_ids: vec!["i-04".into(), "i-05".into()] },
            Action::Start { instance_ids: vec!["i-06".into()] },
        ]
    );
    assert_eq!(d.shortfall, 0);
    // A rise of 1 takes back one draining member and starts nothing.
    let d = decide(&p, &history_with(&[(0, 62.0)]), &f, at(0));
    assert_eq!(d.desired, 5);
    assert_eq!(d.actions, [Action::CancelDrain { instance_ids: vec!["i-04".into()] }]);
}

#[test]
fn a_member_not_yet_healthy_in_its_target_groups_is_capacity_but_not_serving() {
    let p = policy(
        "scaling:\n  scale_down: {stabilization: 0s, cooldown: 0s, max_step: 100%}\nscale_in: {order: oldest}\n",
    );
    let mut f = fleet(4, 0);
    let Fleet::Instances { members } = &mut f else { unreachable!() };
    members[0].state = MemberState::Warming;
    assert_eq!((f.current(), f.serving()), (4, 3));
    // CPU 100 % on the 3 serving: the load is 3 instances' worth, so 6 at 50 %, not 8.
    let d = decide(&p, &history_with(&[(0, 100.0)]), &f, at(0));
    assert_eq!(d.serving, 3);
    assert_eq!(d.proposal, 6);
    // A warming member may be stopped like a running one.
    let d = decide(&p, &history_with(&[(0, 5.0)]), &f, at(0));
    assert_eq!(d.actions, [Action::Stop { instance_ids: vec!["i-00".into(), "i-01".into()] }]);
}

fn fleet_with_all_protected() -> Fleet {
    let mut f = fleet(4, 0);
    if let Fleet::Instances { members } = &mut f {
        for m in members.iter_mut() {
            m.protected = true;
        }
    }
    f
}

#[test]
fn scale_in_order_and_warm_pool_shortfall() {
    let mut f = fleet(4, 0);
    if let Fleet::Instances { members } = &mut f {
        for (m, cpu) in members.iter_mut().zip([30.0, 5.0, f64::NAN, 12.0]) {
            m.cpu = Some(cpu);
        }
    }
    let pick = |order: &str| {
        let p = policy(&format!(
            "scaling:\n  scale_down: {{stabilization: 0s, cooldown: 0s, max_step: 2}}\nscale_in: {{order: {order}}}\n"
        ));
        decide(&p, &history_with(&[(0, 5.0)]), &f, at(0)).actions
    };
    assert_eq!(pick("newest"), [Action::Stop { instance_ids: vec!["i-03".into(), "i-02".into()] }]);
    assert_eq!(pick("oldest"), [Action::Stop { instance_ids: vec!["i-00".into(), "i-01".into()] }]);
    assert_eq!(pick("lowest_cpu"), [Action::Stop { instance_ids: vec!["i-01".into(), "i-03".into()] }]);

    let p = policy("scaling:\n  scale_up: {confirmations: 1}\n");
    let d = decide(&p, &history_with(&[(0, 100.0)]), &fleet(4, 1), at(0));
    assert_eq!((d.desired, d.shortfall), (8, 3));
    assert_eq!(d.actions, [Action::Start { instance_ids: vec!["i-04".into()] }]);
    assert!(d.bounds.contains(&Bound::WarmPoolShort { shortfall: 3 }));
}

#[test]
fn group_bounds_and_activity_in_progress() {
    let mut p = policy("scaling:\n  scale_up: {confirmations: 1}\n");
    p.pool = crate::policy::PoolTarget::AutoScalingGroup("g".into());
    let g = |activity| {
        Fleet::Group(GroupState {
            name: "g".into(),
            desired: 4,
            min: 1,
            max: 6,
            in_service: 4,
            activity_in_progress: activity,
        })
    };
    let d = decide(&p, &history_with(&[(0, 100.0)]), &g(false), at(0));
    assert_eq!(d.desired, 6);
    assert_eq!(d.bounds.last(), Some(&Bound::GroupMax { max: 6 }));
    assert_eq!(d.actions, [Action::SetDesiredCapacity { group: "g".into(), desired: 6 }]);
    let d = decide(&p, &history_with(&[(0, 100.0)]), &g(true), at(0));
    assert!(d.actions.is_empty());
    assert_eq!(d.desired, 4);
    assert_eq!(d.bounds.last(), Some(&Bound::ActivityInProgress));
}

#[test]
fn prewarm_floor_beats_cooldown_and_is_capped_at_max() {
    let p = policy(
        "prewarm:\n  - {name: promo, start: 2026-11-18T12:00, duration: 1h, time_zone: UTC, lead: 10m, capacity: 30}\n",
    );
    // 2026-11-18T11:50Z is T0-relative minute: compute from the instant itself.
    let now: Timestamp = "2026-11-18T11:50:00Z".parse().unwrap();
    let d = decide(&p, &PoolHistory::default(), &fleet(4, 30), now);
    assert_eq!(d.desired, 20);
    assert_eq!(
        d.bounds[1..],
        [
            Bound::FloorAboveMax { rule: "promo".into(), capacity: 30, max: 20 },
            Bound::Floor { rule: "promo".into(), capacity: 20 }
        ]
    );
    let before: Timestamp = "2026-11-18T11:49:00Z".parse().unwrap();
    let d = decide(&p, &PoolHistory::default(), &fleet(4, 30), before);
    assert_eq!(d.desired, 4);
    assert_eq!(d.next_evaluation, now, "wakes up exactly when the floor starts");
}

#[test]
fn flapping_around_the_band_causes_no_reversals() {
    let p = policy("");
    // The score alternates between 1.3 and 0.6 every evaluation for two hours.
    let ds = run(&p, fleet(6, 14), 120, |m, _| Some(if m % 2 == 0 { 65.0 } else { 30.0 }));
    assert_eq!(reversals(&ds), 0);
    assert!(ds.iter().all(|d| d.actions.is_empty()), "{:?}", desired(&ds));
}

/// Direction changes between consecutive scaling actions.
fn reversals(ds: &[Decision]) -> usize {
    let dirs: Vec<Direction> = ds.iter().filter_map(Decision::direction).collect();
    dirs.windows(2).filter(|w| w[0] != w[1]).count()
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    (
        (1u32..5, 0u32..20, 1u32..4, 0u64..6, 0u64..6, 0u64..8),
        (
            prop::option::of(5u32..40),
            prop::bool::ANY,
            prop::sample::select(vec!["100%", "2"]),
            1u32..3,
            prop::option::of(1u64..8),
            prop::option::of(1u64..8),
        ),
    )
        .prop_map(|((min, span, conf, cd_up, cd_down, stab), (floor, scale_up_missing, step, accel, confirmed, release))| {
            let max = min + span;
            // A confirmed stabilisation, when drawn, within the window (it must be).
            let confirmed = match confirmed {
                Some(c) if stab > 0 => format!(", confirmed_stabilization: {}m", c.min(stab)),
                _ => String::new(),
            };
            let mut extra = format!(
                "scaling:\n  scale_up: {{confirmations: {conf}, cooldown: {cd_up}m}}\n  scale_down: {{stabilization: {stab}m, cooldown: {cd_down}m, max_step: {step}, acceleration: {accel}{confirmed}}}\nmissing_data: {}\n",
                if scale_up_missing { "scale_up" } else { "hold" }
            );
            if let Some(c) = floor {
                // A release_after, when drawn, within the 7m event (it must be).
                let release = release.map_or(String::new(), |r| format!(", release_after: {r}m"));
                extra.push_str(&format!(
                    "prewarm:\n  - {{name: f, cron: \"*/20 * * * *\", duration: 7m, time_zone: Europe/Berlin, lead: 2m, capacity: {c}{release}}}\n"
                ));
            }
            let text = format!("name: p\npool: {{tag: {{key: k, value: v}}}}\nmin: {min}\nmax: {max}\nmetrics:\n  - {{id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}}\n{extra}");
            let r = parse_policy("p.yaml", &text);
            r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics))
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn invariants_hold_over_random_runs(
        p in arb_policy(),
        start in 0u32..30,
        load in prop::collection::vec(prop::option::of(0.0f64..150.0), 60),
    ) {
        let mut f = fleet(start, 40);
        let mut c = PoolCycle::new();
        let schedule = crate::schedule::ScheduleCache::default();
        for (m, v) in load.iter().enumerate() {
            let now = at(i64::try_from(m).unwrap());
            if let Some(v) = v {
                c.observe("cpu", Sample { at: now, value: *v });
            }
            let h = c.history().clone();
            let d = c.evaluate(&p, &f, now);
            // Same inputs, same decision (the cycle's schedule cache changes nothing).
            prop_assert_eq!(&d, &crate::decide::decide_in(&p, &h, &f, None, &[], now, &schedule));
            // Within [min, max] and at least the active floor (capped at max) while it holds,
            // unless members simply are not there to start. A floor with release_after holds
            // while ramping, through its lead and the event's first release_after, and then
            // only while this evaluation or one in the last release_after (since the event's
            // start) proposed at least the floor; otherwise the decision says it was released.
            let active = crate::schedule::active_floor_in(&p, now, &schedule);
            let holds = active.as_ref().is_none_or(|fl| {
                let cap = fl.capacity.min(p.max);
                match p.prewarm[0].release_after {
                    Some(after) if !fl.ramping && now >= after_(fl.event_start, after) => {
                        let since = fl.event_start.max(before_(now, after));
                        d.proposal >= cap || h.records.iter().any(|r| r.at >= since && r.proposal >= cap)
                    }
                    _ => true,
                }
            });
            let floor = active.as_ref().filter(|_| holds).map_or(0, |fl| fl.capacity.min(p.max));
            let released = d.bounds.iter().any(|b| matches!(b, Bound::FloorReleased { .. }));
            prop_assert_eq!(released, !holds, "{:?}", d);
            prop_assert_eq!(d.floor.is_some(), active.is_some() && holds, "{:?}", d);
            if !holds {
                prop_assert!(!d.bounds.iter().any(|b| matches!(b, Bound::Floor { .. })), "{:?}", d);
            }
            prop_assert!(d.desired >= p.min, "{:?}", d);
            let cannot_stop = d.bounds.iter().any(|b| matches!(b, Bound::Protected { .. }));
            // A fleet above max descends to it through the step limit and cooldown.
            let above_max = d.bounds.iter().any(|b| matches!(b, Bound::AboveMax { .. }));
            prop_assert!(d.desired <= p.max || cannot_stop || (above_max && d.desired <= d.current), "{:?}", d);
            prop_assert!(d.desired + d.shortfall >= floor, "floor {floor}: {:?}", d);
            let capped = d.bounds.contains(&Bound::Max { max: p.max });
            if d.direction() == Some(Direction::Down) && !capped {
                // Metrics never scale in on missing data, nor inside the scale-down cooldown of
                // a scale-up (a descent's later steps have shorter cooldowns by design), nor
                // below the floor. (Only an operator's lowered `max` may bring it down then.)
                prop_assert!(d.readings.iter().all(|r| r.value.is_some()), "{:?}", d);
                if let Some(last) = h.records.iter().rev().find(|r| r.scaled.is_some()) {
                    let since = now.duration_since(last.at).unsigned_abs();
                    // Without acceleration every scale-down waits the full cooldown.
                    if last.scaled == Some(Direction::Up) || p.scaling.scale_down.acceleration == 1.0 {
                        prop_assert!(since >= p.scaling.scale_down.cooldown, "{:?}", d);
                    }
                }
                prop_assert!(d.desired >= floor);
            }
            if capped && !above_max {
                prop_assert_eq!(d.desired, p.max);
            }
            apply(&mut f, &d);
            c.complete(Achieved::AsDecided);
        }
    }

    #[test]
    fn oscillating_score_never_reverses(
        high in 56.0f64..150.0,
        low in 0.0f64..44.0,
        start in 2u32..15,
    ) {
        // The test policy, and the same with a confirmed stabilisation (an oscillation never
        // confirms a descent: half its evaluations are above the band).
        let confirmed = "scaling:\n  scale_up: {confirmations: 2, cooldown: 3m}\n  scale_down: {stabilization: 5m, cooldown: 4m, max_step: 50%, confirmed_stabilization: 2m}\n";
        for p in [policy(""), policy(confirmed)] {
            let ds = run(&p, fleet(start, 30), 90, |m, _| Some(if m % 2 == 0 { high } else { low }));
            prop_assert_eq!(reversals(&ds), 0, "{:?}", desired(&ds));
        }
    }
}

/// A pre-warm floor of 12 for an event from minute 10 (2026-11-18T11:16:40Z) to minute 130,
/// with a 5-minute lead, and `release` as its `release_after` (`""` for none).
fn match_policy(release: &str) -> Policy {
    policy(&format!(
        "prewarm:\n  - {{name: match, start: 2026-11-18T11:16:40, duration: 2h, time_zone: UTC, lead: 5m, capacity: 12{release}}}\n"
    ))
}

/// CPU % on `cur` instances when the load wants `want` of them at the 50% target (the test
/// policy's), capped at 100%.
fn cpu_for(want: f64, cur: u32) -> f64 {
    (50.0 * want / f64::from(cur.max(1))).min(100.0)
}

#[test]
fn a_floor_nobody_asks_for_is_released_after_release_after() {
    // The crowd never comes: the load wants 3 instances all along.
    let low = |_, cur| Some(cpu_for(3.0, cur));
    let ds = run(&match_policy(", release_after: 30m"), fleet(3, 20), 50, low);
    let got = desired(&ds);
    // Up to the floor at its lead (minute 5), held through minute 39 (the event's first 30m)...
    assert_eq!(&got[..6], [3, 3, 3, 3, 3, 12]);
    assert!(got[5..40].iter().all(|d| *d == 12), "{got:?}");
    assert_eq!(ds[39].floor.as_ref().map(|f| f.rule.as_str()), Some("match"));
    // ...and released at minute 40: nothing since the start (minute 10) asked for 12, so
    // ordinary scaling takes the pool down: a first step of 50% (12 -> 6), then the descent
    // accelerates (half the 4m cooldown, twice the step) to the 3 the load wants.
    let since = at(10);
    assert_eq!(
        ds[40].bounds,
        [Bound::StepDown { limit: 6 }, Bound::FloorReleased { rule: "match".into(), capacity: 12, since }]
    );
    assert_eq!(ds[40].floor, None);
    assert!(
        ds[40].reasons().contains(&format!(
            "pre-warm rule \"match\" released: nothing has asked for its floor of 12 since {since}"
        )),
        "{:?}",
        ds[40].reasons()
    );
    assert_eq!(&got[40..50], [6, 6, 3, 3, 3, 3, 3, 3, 3, 3]);
    // It stays released: since minute 40 the look-back is the last 30 minutes.
    assert!(ds[49].bounds.contains(&Bound::FloorReleased { rule: "match".into(), capacity: 12, since: at(19) }));

    // Without release_after the floor is a hard one, for the whole window.
    let ds = run(&match_policy(""), fleet(3, 20), 50, low);
    assert!(desired(&ds)[5..].iter().all(|d| *d == 12), "{:?}", desired(&ds));
}

#[test]
fn a_floor_the_load_asked_for_is_kept_for_release_after_more() {
    // The load wants 3, except at minute 25, when it wants 15 (a proposal of 15 >= 12; 13 would
    // be within the tolerance band of the 12 there are, and propose 12, which reaches it too).
    let ds = run(&match_policy(", release_after: 30m"), fleet(3, 20), 60, |m, cur| {
        Some(cpu_for(if m == 25 { 15.0 } else { 3.0 }, cur))
    });
    let got = desired(&ds);
    assert_eq!(ds[25].proposal, 15);
    // Held through minute 55: minute 25's evaluation is within the last 30 minutes...
    assert!(got[5..56].iter().all(|d| *d == 12), "{got:?}");
    assert!(!ds[55].bounds.iter().any(|b| matches!(b, Bound::FloorReleased { .. })), "{:?}", ds[55].bounds);
    // ...and released at minute 56, when it no longer is.
    assert!(ds[56].bounds.contains(&Bound::FloorReleased { rule: "match".into(), capacity: 12, since: at(26) }));
    assert_eq!(got[56], 6);

    // A load at the floor keeps it for the whole event: a fleet held at 12 whose load wants 12
    // is on target (its proposal is the current 12).
    let ds = run(&match_policy(", release_after: 30m"), fleet(3, 20), 140, |m, cur| {
        Some(cpu_for(if (10..130).contains(&m) { 12.0 } else { 3.0 }, cur))
    });
    let got = desired(&ds);
    assert!(got[5..130].iter().all(|d| *d == 12), "{got:?}");
    assert!(ds.iter().all(|d| !d.bounds.iter().any(|b| matches!(b, Bound::FloorReleased { .. }))));
}

#[test]
fn a_crowd_that_comes_late_rearms_the_released_floor() {
    // The load wants 3 until minute 60, then 11 at once, then 14.
    let ds = run(&match_policy(", release_after: 30m"), fleet(3, 20), 90, |m, cur| {
        Some(cpu_for(
            match m {
                ..60 => 3.0,
                60..70 => 11.0,
                _ => 14.0,
            },
            cur,
        ))
    });
    let got = desired(&ds);
    assert_eq!(got[40..60].iter().max(), Some(&6), "released at minute 40: {got:?}");
    assert_eq!(got[59], 3);
    // Minute 60: 3 instances at 100% ask for 6, below the floor: ordinary scale-up, which
    // waits for its second confirmation. Minute 61: 6 (confirmed).
    assert_eq!(&got[60..62], [3, 6]);
    // 11 wanted is below the floor of 12: ordinary scaling answers it (minute 64, after the 3m
    // scale-up cooldown), and the floor stays released.
    assert_eq!(&got[62..70], [6, 6, 11, 11, 11, 11, 11, 11]);
    assert!(ds[69].bounds.iter().any(|b| matches!(b, Bound::FloorReleased { .. })), "{:?}", ds[69].bounds);
    // Minute 70: 14 wanted reaches the floor: it holds again at once, past the scale-up's
    // confirmation (minute 70 is the first evaluation above the band). That step to the floor
    // is a scale-up, so its cooldown holds the metrics' 14 until minute 73.
    assert_eq!(ds[70].proposal, 14);
    assert_eq!(
        ds[70].bounds,
        [Bound::AwaitingConfirmation { seen: 1, needed: 2 }, Bound::Floor { rule: "match".into(), capacity: 12 }]
    );
    assert_eq!(&got[70..75], [12, 12, 12, 14, 14]);
    // Re-armed, it holds as long as the load keeps asking for it, for 30 minutes after the last
    // evaluation that did.
    assert!(ds[70..].iter().all(|d| d.floor.is_some()), "{:?}", ds[89].bounds);
}

/// Finding 1: a new policy with `max: 2` finding ten running instances and no metric data does
/// not stop eight of them at once: the descent to max goes through the scale-down step limit
/// (50 %) and cooldown (4m), and the first decision says it is adopting the pool.
#[test]
fn adopting_a_pool_far_above_max_descends_gradually() {
    let p = policy("").with_max(2);
    let ds = run(&p, fleet(10, 0), 12, |_, _| None);
    let first = &ds[0];
    assert_eq!((first.current, first.desired), (10, 5), "{:?}", first.reasons());
    assert!(
        first.reasons().iter().any(|r| r.starts_with("adopting a pool of 10 above max 2")),
        "{:?}",
        first.reasons()
    );
    assert!(first.bounds.contains(&Bound::StepDown { limit: 5 }), "{:?}", first.bounds);
    // Then nothing until the descent's cooldown (4m, halved by the default acceleration of 2
    // after one step) is over; then the next, accelerated, step.
    assert_eq!(desired(&ds), [5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2]);
    assert!(ds[1].bounds.iter().any(|b| matches!(b, Bound::CooldownDown { .. })), "{:?}", ds[1].bounds);
    assert!(!ds[1].reasons().iter().any(|r| r.starts_with("adopting")), "only the first evaluation adopts");

    // Table: where the fleet is, what the first evaluation does.
    for (extra, running, want) in [
        ("", 3, 2),                    // within one step: straight to max
        ("", 20, 10),                  // half of 20
        ("adopt: immediate\n", 10, 2), // the operator asked for it
        ("", 1, 2),                    // below min: raised to min at once (adds capacity)
    ] {
        let p = policy(extra).with_max(2);
        let d = decide(&p, &PoolHistory::default(), &fleet(running, 5), at(0));
        assert_eq!(d.desired, want, "{extra:?} {running}: {:?}", d.reasons());
    }
    // An Auto Scaling group found above max descends the same way.
    let g = Fleet::Group(GroupState {
        name: "g".into(),
        desired: 10,
        min: 0,
        max: 20,
        in_service: 10,
        activity_in_progress: false,
    });
    let d = decide(&policy("").with_max(2), &PoolHistory::default(), &g, at(0));
    assert_eq!(d.desired, 5, "{:?}", d.reasons());
    // A misspelt setting is an error naming the choices.
    let r = parse_policy(
        "t.yaml",
        "name: t\npool: {tag: {key: pool, value: t}}\nmin: 1\nmax: 2\nadopt: slowly\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\n",
    );
    assert!(r.policy.is_none());
    assert!(
        r.diagnostics.iter().any(|d| d.to_string().contains("adopt") && d.to_string().contains("gradual")),
        "{:?}",
        r.diagnostics
    );
}

trait WithMax {
    fn with_max(self, max: u32) -> Policy;
}

impl WithMax for Policy {
    fn with_max(mut self, max: u32) -> Policy {
        self.max = max;
        self
    }
}
