//! `vmscaler record` against a moto server, then `vmscaler backtest` on what it wrote.

use std::process::Command;
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use vmscaler::clock::{Clock, SystemClock};
use vmscaler::cmd::record::{record, to_csv};

use crate::support::Moto;
use crate::support::policy::{per_instance_metric, tagged};

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

#[tokio::test]
async fn tagged_pool_size_counts_the_members_reporting_cpu() {
    let moto = Moto::start();
    let pool = moto.create_tagged_pool(("vmscaler:pool", "rec-tag"), 3, 1, 0, None).await;
    let now = this_minute();
    // Two members report for the last hour at 30 % and 40 %; the third (started later) for the
    // last 20 minutes at 50 %. The stopped member reports nothing.
    for (k, id) in pool.running.iter().enumerate() {
        let points: Vec<(Timestamp, f64)> = (5..=60)
            .rev()
            .filter(|m| k < 2 || *m <= 20)
            .map(|m| (minutes_ago(now, m), 30.0 + 10.0 * k as f64))
            .collect();
        moto.put_metric("AWS/EC2", "CPUUtilization", &[("InstanceId", id)], &points).await;
    }
    let policy = tagged("rec-tag", &per_instance_metric("cpu", "AWS/EC2", "CPUUtilization", "avg", 50.0), "");
    let aws = moto.aws().await;
    let rec = record(&aws, &policy, SystemClock.now(), Duration::from_secs(2 * 3600)).await.expect("record");
    assert!(rec.warnings.is_empty(), "{:?}", rec.warnings);
    assert_eq!(rec.pool_size.get(&minutes_ago(now, 60)), Some(&2.0));
    assert_eq!(rec.pool_size.get(&minutes_ago(now, 21)), Some(&2.0));
    assert_eq!(rec.pool_size.get(&minutes_ago(now, 20)), Some(&3.0));
    let cpu: Vec<(Timestamp, f64)> = rec.metrics.samples["cpu"].iter().map(|s| (s.at, s.value)).collect();
    assert_eq!(cpu.first(), Some(&(minutes_ago(now, 60), 35.0)));
    assert_eq!(cpu.last(), Some(&(minutes_ago(now, 5), 40.0)));
    // Demand in instances: 40 % of 3 members.
    let csv = to_csv(&policy, &rec);
    let last = csv.lines().last().expect("rows");
    assert!(last.ends_with(",40,3,1.2000"), "{last}");
}
