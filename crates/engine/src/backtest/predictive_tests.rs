//! The policy's forecast in a backtest learns only from the simulated clock's past.

use super::*;
use crate::policy::parse_policy;

const DAY_MIN: i64 = 1440;

fn policy() -> Policy {
    let yaml = "name: p
pool: {auto_scaling_group: g}
min: 1
max: 40
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, period: 1m, target: 50}
predictive: {mode: active}
";
    let r = parse_policy("p.yaml", yaml);
    r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics))
}

/// Six days, one point a minute: demand 2 with a steep ramp to 12 at 10:00 for an hour daily;
/// from `mutate_from` (minutes) on, `mutated` instead.
fn trace(mutate_from: i64, mutated: impl Fn(i64) -> f64) -> Trace {
    let mut csv = String::from("timestamp,value\n");
    for m in 0..6 * DAY_MIN {
        let tod = m % DAY_MIN;
        let v = if m >= mutate_from {
            mutated(m)
        } else if (600..660).contains(&tod) {
            12.0
        } else {
            2.0
        };
        csv.push_str(&format!("{},{v}\n", 1_793_577_600 + m * 60));
    }
    read_trace(&csv, &TraceOptions::default()).unwrap()
}

/// Boot 90 s, metric lag 60 s, one unit of demand an instance.
fn scenario() -> Scenario {
    super::tests::scenario(90, 60)
}

#[test]
fn changing_the_future_of_the_trace_changes_nothing_before_it() {
    let p = policy();
    let cut = 5 * DAY_MIN + 9 * 60 + 30; // day 6, 09:30: half an hour before the ramp
    let a = run(&p, &trace(i64::MAX, |_| 0.0), scenario(), &[], &mut |_, _| {}).unwrap();
    let b = run(&p, &trace(cut, |m| if m % 2 == 0 { 40.0 } else { 0.5 }), scenario(), &[], &mut |_, _| {}).unwrap();
    let cut_ms = (1_793_577_600 + cut * 60) * 1000;
    let before = |bt: &Backtest| bt.runs[0].rows.iter().filter(|r| r.at_ms < cut_ms).cloned().collect::<Vec<_>>();
    assert!(!before(&a).is_empty());
    assert_eq!(before(&a), before(&b), "a decision before the cut depended on the trace after it");
    // And the forecast did act before the cut (so the comparison is not vacuous): on days 4
    // and 5 the floor went up before 10:00.
    let floors_before: Vec<_> = a.forecast_floors.iter().filter(|w| w.0 < cut_ms).collect();
    assert!(!floors_before.is_empty(), "no forecast floor before the cut");
    // On day 5 the serving capacity was at the ramp's level when the ramp arrived.
    let ramp = (1_793_577_600 + (4 * DAY_MIN + 600) * 60) * 1000;
    let row = a.runs[0].rows.iter().rev().find(|r| r.at_ms <= ramp).unwrap();
    assert!(row.serving >= 12, "12 units of demand at 10:00; the floor had {row:?}");
}

/// Under-provisioned minutes from `from_ms` on.
fn under_minutes(rows: &[metrics::SupplyRow], from_ms: i64, end_ms: i64) -> f64 {
    let mut first = rows.partition_point(|r| r.at_ms < from_ms);
    first = first.saturating_sub(1);
    figures("x", &rows[first..], end_ms).under_provisioned_minutes
}

#[test]
fn the_floor_cuts_under_provisioning_on_a_recurring_ramp() {
    let with = policy();
    let mut without = policy();
    without.predictive = None;
    let t = trace(i64::MAX, |_| 0.0);
    let a = run(&with, &t, scenario(), &[Strategy::AwsPredictive], &mut |_, _| {}).unwrap();
    let b = run(&without, &t, scenario(), &[], &mut |_, _| {}).unwrap();
    // Days 4 to 6, once the model has its three days.
    let from = (1_793_577_600 + 3 * DAY_MIN * 60) * 1000;
    let ua = under_minutes(&a.runs[0].rows, from, a.end_ms);
    let ub = under_minutes(&b.runs[0].rows, from, b.end_ms);
    assert!(ub >= 10.0 && ua <= ub / 3.0, "with the forecast {ua} under-provisioned minutes, without {ub}");
    assert_eq!(a.runs[1].strategy, Strategy::AwsPredictive);
}
