//! Benchmark of one daemon evaluation cycle at scale, against a real moto server.
//!
//! Creates `--pools` pools (default 1,000: nine in ten tagged EC2 pools with one running
//! member and one stopped, one in ten Auto Scaling groups), each scaled on three pool-level
//! metrics, publishes a datapoint for every series, then runs `--cycles` evaluation cycles
//! the way the daemon does: describe every fleet together, read every metric together,
//! decide each pool with the engine, carry out the decisions. Per cycle it reports the AWS
//! calls by operation (the floor for GetMetricData is ceil(3,000 / 500) = 6), the process's
//! CPU time, wall time, and peak RSS (VmHWM). moto runs in its own process: its CPU is not
//! counted. moto's DescribeInstances scans every instance in Python (tens of seconds with a
//! few thousand instances), so the clients here get 5-minute attempt timeouts: wall time
//! measures moto, the CPU and call counts measure vmscaler.
//!
//! Run: `scripts/setup-venv.sh && cargo bench --bench daemon -- --pools 1000 --cycles 5`
//! (add `--json` for a machine-readable summary line).

#[path = "../tests/support/mod.rs"]
#[allow(unused_imports)]
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, MetricDatum};
use jiff::{SignedDuration, Timestamp};
use vmscaler::aws::actuate::{Outcome, apply};
use vmscaler::aws::fleet::describe_fleets;
use vmscaler::aws::metrics::{PoolQuery, apply_member_cpu, fetch_metrics};
use vmscaler::aws::stats::{ApiStats, Operation};
use vmscaler::clock::{Clock, SystemClock, monotonic};
use vmscaler::daemon::achieved;
use vmscaler_engine::{Policy, PoolCycle};

use support::Moto;
use support::policy::parse;

struct Options {
    pools: usize,
    cycles: usize,
    json: bool,
}

fn options() -> Result<Options, String> {
    let mut o = Options { pools: 1000, cycles: 5, json: false };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--pools" => o.pools = args.next().and_then(|v| v.parse().ok()).ok_or("--pools takes a number")?,
            "--cycles" => o.cycles = args.next().and_then(|v| v.parse().ok()).ok_or("--cycles takes a number")?,
            "--json" => o.json = true,
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other:?} (use --pools N --cycles N --json)")),
        }
    }
    Ok(o)
}

/// CPU time (user + system) of this process so far, from /proc/self/stat (USER_HZ = 100).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest.split_whitespace().skip(11).take(2).filter_map(|f| f.parse().ok()).collect();
    Duration::from_millis(fields.iter().sum::<u64>() * 10)
}

/// Peak resident set size in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn metrics_yaml(name: &str) -> String {
    format!(
        "  - {{ id: backlog, namespace: AWS/SQS, name: ApproximateNumberOfMessagesVisible, dimensions: {{ QueueName: {name} }}, statistic: Maximum, period: 1m, target_per_instance: 100, weight: 1 }}\n\
         \x20 - {{ id: latency, namespace: Bench/App, name: LatencyP99, dimensions: {{ Pool: {name} }}, statistic: Average, period: 1m, target: 250, weight: 1 }}\n\
         \x20 - {{ id: requests, namespace: Bench/App, name: RequestCount, dimensions: {{ Pool: {name} }}, statistic: Sum, period: 1m, target_per_instance: 1000, weight: 1 }}\n"
    )
}

fn policy(i: usize, asg: bool) -> Policy {
    let name = format!("bench-{i:04}");
    let pool = if asg {
        format!("  auto_scaling_group: {name}")
    } else {
        format!("  tag: {{ key: \"vmscaler:pool\", value: {name} }}")
    };
    parse(&format!(
        "name: {name}\npool:\n{pool}\nmin: 1\nmax: 4\ninterval: 1m\nmetrics:\n{}scaling:\n  scale_up:\n    confirmations: 1\n",
        metrics_yaml(&name)
    ))
}

fn datum(name: &str, dims: (&str, &str), at: Timestamp, value: f64) -> MetricDatum {
    MetricDatum::builder()
        .metric_name(name)
        .dimensions(Dimension::builder().name(dims.0).value(dims.1).build())
        .timestamp(aws_smithy_types::DateTime::from_secs(at.as_second()))
        .value(value)
        .build()
}

async fn publish(moto: &Moto, policies: &[Policy], at: Timestamp) {
    let cw = moto.cloudwatch().await;
    let mut sqs = Vec::new();
    let mut app = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        // Deterministic spread: some pools over target, some under.
        let load = (i % 7) as f64 / 3.0;
        sqs.push(datum("ApproximateNumberOfMessagesVisible", ("QueueName", &p.name), at, 100.0 * load));
        app.push(datum("LatencyP99", ("Pool", &p.name), at, 250.0 * load));
        app.push(datum("RequestCount", ("Pool", &p.name), at, 1000.0 * load));
    }
    for (ns, data) in [("AWS/SQS", sqs), ("Bench/App", app)] {
        for chunk in data.chunks(1000) {
            cw.put_metric_data()
                .namespace(ns)
                .set_metric_data(Some(chunk.to_vec()))
                .send()
                .await
                .expect("put metric data");
        }
    }
}

const COUNTED: [Operation; 6] = [
    Operation::GetMetricData,
    Operation::DescribeInstances,
    Operation::DescribeAutoScalingGroups,
    Operation::DescribeScalingActivities,
    Operation::StartInstances,
    Operation::StopInstances,
];

fn calls(stats: &ApiStats) -> BTreeMap<&'static str, u64> {
    COUNTED.iter().chain([&Operation::SetDesiredCapacity]).map(|&op| (op.as_str(), stats.calls(op))).collect()
}

#[tokio::main]
async fn main() {
    let o = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::exit(64);
        }
    };
    let moto = Moto::start();
    let setup = monotonic();
    let policies: Vec<Policy> = (0..o.pools).map(|i| policy(i, i % 10 == 9)).collect();
    for p in &policies {
        match &p.pool {
            vmscaler_engine::policy::PoolTarget::Tagged(t) => {
                moto.create_tagged_pool((&t.key, &t.value), 1, 1, 0, None).await;
            }
            vmscaler_engine::policy::PoolTarget::AutoScalingGroup(g) => moto.create_asg(g, 1, 4, 1).await,
        }
    }
    let now = SystemClock.now();
    publish(&moto, &policies, now.checked_sub(SignedDuration::from_secs(90)).unwrap_or(now)).await;
    let series: usize = policies.iter().map(|p| p.metrics.len()).sum();
    eprintln!(
        "bench: {} pools ({} series) on moto {} ready in {:.1}s",
        policies.len(),
        series,
        moto.endpoint,
        setup.elapsed().as_secs_f64()
    );

    let limits = vmscaler::aws::ApiLimits {
        attempt_timeout: Duration::from_secs(300),
        operation_timeout: Duration::from_secs(900),
        ..vmscaler::aws::ApiLimits::default()
    };
    let aws = vmscaler::aws::Aws::from_sdk_config_with(&moto.sdk_config().await, limits);
    let mut cycles: BTreeMap<String, PoolCycle> = BTreeMap::new();
    let refs: Vec<&Policy> = policies.iter().collect();
    println!(
        "cycle  GetMetricData  DescribeInstances  DescribeASGs  DescribeActivities  Start  Stop  SetDesired  actions  cpu_ms  wall_ms  peak_rss_MiB"
    );
    let mut summary = Vec::new();
    for cycle in 1..=o.cycles {
        let before = calls(aws.stats());
        let (cpu0, wall0) = (cpu_time(), monotonic());
        let now = SystemClock.now();

        let mut fleets = describe_fleets(&aws, &refs).await;
        let queries: Vec<PoolQuery<'_>> =
            policies.iter().map(|p| PoolQuery::new(p, fleets.get(&p.name).and_then(|f| f.as_ref().ok()))).collect();
        let metrics = fetch_metrics(&aws, &queries, now, Duration::ZERO, Duration::from_secs(600)).await;
        let mut actions = 0usize;
        let mut failures = 0usize;
        for p in &policies {
            let Some(Ok(fleet)) = fleets.get_mut(&p.name) else {
                failures += 1;
                continue;
            };
            let cycle = cycles.entry(p.name.clone()).or_default();
            if let Some(m) = metrics.get(&p.name) {
                apply_member_cpu(fleet, &m.member_cpu);
                for (id, samples) in &m.samples {
                    for s in samples {
                        cycle.observe(id, *s);
                    }
                }
            }
            let decision = cycle.evaluate(p, fleet, now);
            let outcomes = apply(&aws, p, fleet, &decision, false).await;
            actions += outcomes.iter().filter(|o| o.is_change()).count();
            failures += outcomes.iter().filter(|o| matches!(o, Outcome::Failed { .. })).count();
            cycle.complete(achieved(decision.current, &outcomes));
        }

        let cpu = cpu_time().saturating_sub(cpu0);
        let wall = wall0.elapsed();
        let after = calls(aws.stats());
        let d: BTreeMap<&str, u64> = after.iter().map(|(k, v)| (*k, v - before.get(k).copied().unwrap_or(0))).collect();
        let rss = peak_rss_kib();
        println!(
            "{cycle:>5}  {:>13}  {:>17}  {:>12}  {:>18}  {:>5}  {:>4}  {:>10}  {:>7}  {:>6}  {:>7}  {:>12.1}",
            d["GetMetricData"],
            d["DescribeInstances"],
            d["DescribeAutoScalingGroups"],
            d["DescribeScalingActivities"],
            d["StartInstances"],
            d["StopInstances"],
            d["SetDesiredCapacity"],
            actions,
            cpu.as_millis(),
            wall.as_millis(),
            rss as f64 / 1024.0
        );
        if failures > 0 {
            eprintln!("bench: cycle {cycle}: {failures} failed pools or actions");
        }
        summary.push(serde_json::json!({
            "cycle": cycle, "calls": d, "actions": actions, "failures": failures,
            "cpu_ms": u64::try_from(cpu.as_millis()).unwrap_or(u64::MAX),
            "wall_ms": u64::try_from(wall.as_millis()).unwrap_or(u64::MAX), "peak_rss_kib": rss
        }));
    }
    if o.json {
        println!("{}", serde_json::json!({ "pools": policies.len(), "series": series, "cycles": summary }));
    }
}
