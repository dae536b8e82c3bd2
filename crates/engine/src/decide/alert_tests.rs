//! Alert floors: data handed to `decide_with`, applied like the pre-warm floor.

use super::*;
use crate::history::Sample;
use crate::policy::parse_policy;

fn at(min: i64) -> Timestamp {
    Timestamp::from_second(1_795_000_000 + min * 60).unwrap()
}

fn policy() -> Policy {
    let text = "name: t
pool: {tag: {key: pool, value: t}}
min: 2
max: 8
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}
history: {window: 1h, max_age: 3m}
";
    parse_policy("t.yaml", text).policy.expect("valid")
}

fn fleet(running: u32, stopped: u32) -> Fleet {
    let m = |i: u32, state| Member { id: format!("i-{i:02}"), state, launched_at: None, protected: false, cpu: None };
    Fleet::Instances {
        members: (0..running)
            .map(|i| m(i, MemberState::Running))
            .chain((running..running + stopped).map(|i| m(i, MemberState::Stopped)))
            .collect(),
    }
}

fn floor(alert: &str, capacity: u32) -> AlertFloor {
    AlertFloor { alert: alert.into(), capacity }
}

#[test]
fn a_firing_alert_raises_the_floor_and_the_highest_wins() {
    let p = policy();
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: at(0), value: 50.0 });
    let f = fleet(3, 7);
    // On target: the metrics alone hold at 3.
    assert_eq!(decide(&p, &h, &f, at(0)).desired, 3);
    let d = decide_with(&p, &h, &f, None, &[floor("QueueBacklog", 5), floor("GpuHot", 6)], at(0));
    assert_eq!(d.desired, 6);
    assert!(d.bounds.contains(&Bound::AlertFloor { alert: "GpuHot".into(), capacity: 6 }), "{:?}", d.bounds);
    assert_eq!(d.actions.len(), 1, "starts three stopped members");
    assert!(d.reasons().iter().any(|r| r == "alert \"GpuHot\" holds a floor of 6"), "{:?}", d.reasons());
}

#[test]
fn an_alert_floor_is_capped_at_max_and_never_lowers_capacity() {
    let p = policy();
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: at(0), value: 50.0 });
    let d = decide_with(&p, &h, &fleet(3, 9), None, &[floor("Flood", 50)], at(0));
    assert_eq!(d.desired, 8);
    assert!(d.bounds.contains(&Bound::AlertFloorAboveMax { alert: "Flood".into(), capacity: 50, max: 8 }));
    // A floor below what the metrics want changes nothing.
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: at(0), value: 100.0 });
    h.push_record(EvalRecord {
        at: at(-1),
        score: Some(2.0),
        above_band: true,
        proposal: 6,
        current: 3,
        serving: 3,
        desired: 3,
        scaled: None,
        dry_run: false,
    });
    let d = decide_with(&p, &h, &fleet(3, 7), None, &[floor("Small", 4)], at(0));
    assert_eq!(d.desired, 6);
    assert!(!d.bounds.iter().any(|b| matches!(b, Bound::AlertFloor { .. })), "{:?}", d.bounds);
}

#[test]
fn an_alert_floor_holds_even_with_missing_data() {
    let p = policy();
    let d = decide_with(&p, &PoolHistory::default(), &fleet(2, 6), None, &[floor("QueueBacklog", 4)], at(0));
    assert_eq!(d.desired, 4);
    assert!(d.bounds.iter().any(|b| matches!(b, Bound::MissingData { .. })));
}
