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
