//! Issue 16, finding 8: the composite-threshold rule, written exactly as stated: "scale up when
//! Σ(normalised metric × weight), with CPU / 75 %, queue / 50 jobs (capped at 2) and GPU / 80 %,
//! stays above 0.8 for two consecutive periods".

use super::*;
use crate::fleet::{Member, MemberState};
use crate::history::Sample;
use crate::policy::parse_policy;

fn ts(min: i64) -> Timestamp {
    Timestamp::from_second(1_796_300_000 + min * 60).unwrap()
}

fn fleet(running: u32, stopped: u32) -> Fleet {
    Fleet::Instances {
        members: (0..running + stopped)
            .map(|i| Member {
                id: format!("i-{i:02}"),
                state: if i < running { MemberState::Running } else { MemberState::Stopped },
                launched_at: Some(ts(-1000 + i64::from(i))),
                protected: false,
                cpu: None,
            })
            .collect(),
    }
}

pub(crate) const COMPOSITE: &str = "name: composite
pool: {tag: {key: pool, value: c}}
min: 2
max: 40
interval: 1m
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, period: 1m, target: 75, weight: 0.4}
  - {id: queue, namespace: App, name: Backlog, statistic: Sum, period: 1m, target: 50, cap: 2, weight: 0.3}
  - {id: gpu, namespace: App, name: GPUUtilization, period: 1m, target: 80, weight: 0.3}
composite: {scale_up_above: 0.8, scale_down_below: 0.3, periods: 2}
scaling:
  scale_up: {cooldown: 3m, max_step: 2}
  scale_down: {stabilization: 2m, cooldown: 3m, max_step: 1}
";

fn push(h: &mut PoolHistory, min: i64, cpu: f64, queue: f64, gpu: f64) {
    for (id, v) in [("cpu", cpu), ("queue", queue), ("gpu", gpu)] {
        h.push_sample(id, Sample { at: ts(min), value: v });
    }
}

#[test]
fn the_composite_rule_scales_after_two_periods_above_the_threshold() {
    let r = parse_policy("c.yaml", COMPOSITE);
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let p = r.policy.unwrap();
    let f = fleet(4, 6);
    let mut h = PoolHistory::default();
    // 60/75 × 0.4 + 40/50 × 0.3 + 64/80 × 0.3 = 0.8 exactly: not above.
    push(&mut h, 0, 60.0, 40.0, 64.0);
    let d = decide(&p, &h, &f, ts(1));
    assert_eq!(d.score.map(|s| (s * 1000.0).round() / 1000.0), Some(0.8));
    assert_eq!(d.desired, 4, "{:?}", d.reasons());
    h.push_record(d.record(p.scaling.tolerance));
    // 75/75 × 0.4 + min(150/50, 2) × 0.3 + 40/80 × 0.3 = 0.4 + 0.6 + 0.15 = 1.15: the cap holds
    // the queue at 2 (uncapped it would add 0.9). One period above: wait for the second.
    push(&mut h, 1, 75.0, 150.0, 40.0);
    let d = decide(&p, &h, &f, ts(2));
    assert_eq!(d.score.map(|s| (s * 1000.0).round() / 1000.0), Some(1.15));
    assert_eq!(d.desired, 4, "{:?}", d.reasons());
    assert!(
        d.reasons().iter().any(|r| r == "composite score 1.150 above 0.8 for 1 of 2 periods: hold"),
        "{:?}",
        d.reasons()
    );
    h.push_record(d.record(p.scaling.tolerance));
    // A second evaluation within the same period does not count as a second period.
    let d = decide(&p, &h, &f, ts(2) + jiff::SignedDuration::from_secs(30));
    assert_eq!(d.desired, 4, "{:?}", d.reasons());
    // The second consecutive period above 0.8 (0.373 + 0.36 + 0.2625 = 0.996): one step up (max_step 2).
    push(&mut h, 2, 70.0, 60.0, 70.0);
    let d = decide(&p, &h, &f, ts(3));
    assert_eq!(d.desired, 6, "{:?}", d.reasons());
    assert!(
        d.reasons().iter().any(|r| r == "composite score 0.996 above 0.8 for 2 consecutive periods: scale up"),
        "{:?}",
        d.reasons()
    );
}

#[test]
fn the_composite_rule_scales_down_only_after_its_periods_below_and_the_stabilisation() {
    let p = parse_policy("c.yaml", COMPOSITE).policy.unwrap();
    let f = fleet(6, 4);
    let mut h = PoolHistory::default();
    let mut desired = Vec::new();
    for m in 0..4 {
        push(&mut h, m, 10.0, 0.0, 10.0); // 0.053 + 0 + 0.0375: well below 0.3
        let d = decide(&p, &h, &f, ts(m + 1));
        h.push_record(d.record(p.scaling.tolerance));
        desired.push(d.desired);
    }
    // One period below: hold; two: a proposal of one step down, held by the 2-minute
    // stabilisation window until it holds only such proposals; then one step (max_step 1).
    assert_eq!(desired, [6, 6, 6, 5]);
}
