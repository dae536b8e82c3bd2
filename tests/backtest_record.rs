//! `vmscaler record` against a moto server, then `vmscaler backtest` on what it wrote.

use std::process::Command;

use jiff::{SignedDuration, Timestamp};
use vmscaler::clock::{Clock, SystemClock};

use crate::support::Moto;

fn this_minute() -> Timestamp {
    let now = SystemClock.now().as_second();
    Timestamp::from_second(now - now.rem_euclid(60)).expect("timestamp")
}

fn minutes_ago(base: Timestamp, m: i64) -> Timestamp {
    base.checked_sub(SignedDuration::from_mins(m)).expect("timestamp")
}

#[tokio::test]
async fn record_writes_metrics_and_pool_size_that_backtest_replays() {
    let moto = Moto::start();
    moto.create_asg("rec-web", 1, 10, 2).await;
    let now = this_minute();
    // Two hours of 1-minute CPU and group size: 40 % on 2 instances, then 90 % on 4 for the
    // last 30 minutes.
    let mut cpu = Vec::new();
    let mut size = Vec::new();
    for m in (5..=120).rev() {
        let (c, n) = if m <= 35 { (90.0, 4.0) } else { (40.0, 2.0) };
        cpu.push((minutes_ago(now, m), c));
        size.push((minutes_ago(now, m), n));
    }
    moto.put_metric("AWS/EC2", "CPUUtilization", &[("AutoScalingGroupName", "rec-web")], &cpu).await;
    moto.put_metric("AWS/AutoScaling", "GroupInServiceInstances", &[("AutoScalingGroupName", "rec-web")], &size).await;

    let dir = std::env::temp_dir().join(format!("vmscaler-record-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("rec-web.yaml");
    std::fs::write(
        &policy,
        "name: rec-web
pool: { auto_scaling_group: rec-web }
min: 1
max: 10
metrics:
  - id: cpu
    namespace: AWS/EC2
    name: CPUUtilization
    dimensions: { AutoScalingGroupName: rec-web }
    statistic: Average
    period: 1m
    target: 50
",
    )
    .unwrap();
    let trace = dir.join("trace.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(["record", "--policy", policy.to_str().unwrap(), "--since", "3h", "--out", trace.to_str().unwrap()])
        .envs(moto.env())
        .output()
        .expect("run vmscaler record");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let csv = std::fs::read_to_string(&trace).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("timestamp,cpu,pool_size,demand_instances"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 116, "one row per minute put: {csv}");
    let first_ts: Timestamp = rows[0][0].parse().unwrap();
    assert_eq!(first_ts, minutes_ago(now, 120));
    assert_eq!(rows[0][1..], ["40", "2", "0.8000"]);
    assert_eq!(rows[115][1..], ["90", "4", "3.6000"]);

    // The recording replays.
    let report_dir = dir.join("report");
    let out = Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args([
            "backtest",
            "--policy",
            policy.to_str().unwrap(),
            "--trace",
            trace.to_str().unwrap(),
            "--value-column",
            "demand_instances",
            "--capacity-per-instance",
            "1",
            "--out",
            report_dir.to_str().unwrap(),
        ])
        .output()
        .expect("run vmscaler backtest");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["trace"]["rows"], 116);
    // Peak demand 3.6 at 50 %: the static fleet is 8.
    let st = json["strategies"].as_array().unwrap().iter().find(|s| s["strategy"] == "static").unwrap();
    assert_eq!(st["peak_billed"], 8);
    let _ = std::fs::remove_dir_all(&dir);
}
