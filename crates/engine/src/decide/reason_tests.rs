//! Issue 16, finding 7: each reason says what its metric asked for, on which count, and a
//! metric without data says which query and why its newest datapoint was not used.

use super::*;
use crate::fleet::{Member, MemberState};
use crate::history::Sample;
use crate::policy::parse_policy;

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn fleet(running: u32) -> Fleet {
    Fleet::Instances {
        members: (0..running)
            .map(|i| Member {
                id: format!("i-{i:02}"),
                state: MemberState::Running,
                launched_at: Some(ts("2026-12-01T00:00:00Z")),
                protected: false,
                cpu: None,
            })
            .collect(),
    }
}

#[test]
fn each_reason_says_what_its_metric_wants_and_why_one_has_no_data() {
    let p = parse_policy(
        "t.yaml",
        "name: t
pool: {tag: {key: pool, value: t}}
min: 1
max: 50
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, period: 1m, target: 60, weight: 0.4}
  - {id: queue, namespace: App, name: Backlog, statistic: Sum, period: 1m, target_per_instance: 50, weight: 0.3}
  - {id: gpu, namespace: App, name: GPUUtilization, period: 5m, target: 80, weight: 0.3}
history: {window: 1h, max_age: 5m}
",
    )
    .policy
    .unwrap();
    let now = ts("2026-12-03T12:00:00Z");
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: ts("2026-12-03T11:59:00Z"), value: 92.0 });
    h.push_sample("queue", Sample { at: ts("2026-12-03T11:59:00Z"), value: 600.0 });
    h.push_sample("gpu", Sample { at: ts("2026-12-03T11:52:00Z"), value: 70.0 });
    let d = decide(&p, &h, &fleet(9), now);
    let r = d.reasons();
    assert_eq!(r[0], "cpu: 92.00 against target 60 -> wants 13.8 (ratio 1.533 of 9 serving, weight 0.4)");
    assert_eq!(r[1], "queue: 600.00 against 50 per instance -> wants 12.0 (weight 0.3)");
    assert_eq!(
        r[2],
        "gpu: no data (App/GPUUtilization Average 5m): newest datapoint 8m old, older than history.max_age 5m"
    );
    // And with nothing at all in the history.
    let d = decide(&p, &PoolHistory::default(), &fleet(9), now);
    assert_eq!(
        d.reasons()[0],
        "cpu: no data (AWS/EC2/CPUUtilization Average 1m): no datapoint received yet (a period's datapoint \
         is read once the period has ended)"
    );
}

#[test]
fn freeze_scale_in_holds_capacity_while_a_floor_is_in_force() {
    let text = |freeze: &str| {
        format!(
            "name: t
pool: {{tag: {{key: pool, value: t}}}}
min: 1
max: 50
metrics:
  - {{id: cpu, namespace: AWS/EC2, name: CPUUtilization, period: 1m, target: 60}}
scaling: {{scale_down: {{stabilization: 0s, cooldown: 0s, max_step: 100%}}}}
prewarm:
  - {{name: promo, start: 2026-12-03T12:00, duration: 2h, time_zone: UTC, lead: 10m, capacity: 10}}
{freeze}"
        )
    };
    let now = ts("2026-12-03T12:30:00Z");
    let mut h = PoolHistory::default();
    h.push_sample("cpu", Sample { at: ts("2026-12-03T12:29:00Z"), value: 6.0 });
    // Without it: down to the floor of 10 during the promotion.
    let p = parse_policy("t.yaml", &text("")).policy.unwrap();
    assert_eq!(decide(&p, &h, &fleet(20), now).desired, 10);
    // With it: no scale-in at all while the floor is in force...
    let p = parse_policy("t.yaml", &text("freeze_scale_in: true\n")).policy.unwrap();
    let d = decide(&p, &h, &fleet(20), now);
    assert_eq!(d.desired, 20, "{:?}", d.reasons());
    assert!(
        d.reasons().iter().any(|r| r == "scale-in frozen while pre-warm rule \"promo\" is in force"),
        "{:?}",
        d.reasons()
    );
    // ...and ordinary scaling once it is over.
    let after = ts("2026-12-03T14:30:00Z");
    h.push_sample("cpu", Sample { at: ts("2026-12-03T14:29:00Z"), value: 6.0 });
    assert!(decide(&p, &h, &fleet(20), after).desired < 20);
}
