//! `vmscaler record`: the last days of a pool's real load as a trace `vmscaler backtest` reads.
//!
//! Pulls every metric of the policy from CloudWatch over `--since` (through the daemon's own
//! reader, [`crate::aws::metrics::fetch_metrics`], per-instance series aggregated the same way),
//! and the pool's size over the same period: an Auto Scaling group's `GroupInServiceInstances`
//! (needs group metrics collection enabled on the group), or for a tagged pool the number of
//! members with a `CPUUtilization` datapoint in each period. Writes
//! `timestamp,<metric id>...,pool_size,demand_instances`, where `demand_instances` is the first
//! utilisation metric times the pool size (`cpu / 100 * pool_size`): replay it with
//! `--value-column demand_instances --capacity-per-instance 1`.
//!
//! Read-only: Describe and GetMetricData calls only. Not here: any simulation (see `backtest`).
//! Known gap: a tagged pool's members are the ones that exist now; instances terminated during
//! the period are not counted.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, anyhow};
use jiff::Timestamp;
use vmscaler_engine::duration::parse_duration;
use vmscaler_engine::policy::{Goal, PoolTarget, Statistic};
use vmscaler_engine::{Fleet, MemberState, Policy};

use super::EX_CONFIG;
use crate::aws::fleet::describe_fleets;
use crate::aws::metrics::{PoolMetrics, PoolQuery, SeriesSpec, fetch_metrics, read_series};
use crate::aws::{Aws, AwsSettings};
use crate::clock::{Clock, SystemClock};
use crate::policies::load_file;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy whose metrics and pool to record.
    #[arg(long)]
    pub policy: PathBuf,
    /// How far back to read (CloudWatch keeps 1-minute data for 15 days).
    #[arg(long, default_value = "14d", value_parser = duration_arg)]
    pub since: Duration,
    /// The CSV file to write.
    #[arg(long)]
    pub out: PathBuf,
    /// AWS region (default: the standard AWS settings).
    #[arg(long)]
    pub region: Option<String>,
    /// A custom AWS endpoint (moto, LocalStack).
    #[arg(long)]
    pub endpoint_url: Option<String>,
    /// AWS profile.
    #[arg(long)]
    pub profile: Option<String>,
    /// Prometheus server for the policy's `source: prometheus` metrics (range queries).
    #[arg(long)]
    pub prometheus_url: Option<String>,
    /// File holding a bearer token for `--prometheus-url`.
    #[arg(long, requires = "prometheus_url")]
    pub prometheus_bearer_token_file: Option<PathBuf>,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

/// What was recorded.
#[derive(Debug, Default)]
pub struct Recording {
    pub metrics: PoolMetrics,
    /// Pool size by period start.
    pub pool_size: BTreeMap<Timestamp, f64>,
    pub warnings: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report = load_file(&args.policy);
    for d in &report.diagnostics {
        eprintln!("{d}");
    }
    let Some(policy) = report.policy else { return Ok(ExitCode::from(EX_CONFIG)) };
    let settings = AwsSettings {
        region: args.region.clone(),
        endpoint_url: args.endpoint_url.clone(),
        profile: args.profile.clone(),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start the runtime")?;
    let now = SystemClock.now();
    let prom = match &args.prometheus_url {
        Some(url) => {
            let mut cfg = crate::prometheus::PrometheusConfig::new(url.clone());
            cfg.bearer_token_file = args.prometheus_bearer_token_file.clone();
            Some(rt.block_on(async { crate::prometheus::PromClient::new(&cfg) })?)
        }
        None => None,
    };
    let rec = rt.block_on(async {
        let aws = Aws::connect(&settings).await?;
        record_with(&aws, prom.as_ref(), &policy, now, args.since).await
    })?;
    for w in &rec.warnings {
        eprintln!("vmscaler: warning: {w}");
    }
    let csv = to_csv(&policy, &rec);
    let rows = csv.lines().count().saturating_sub(1);
    std::fs::write(&args.out, csv).with_context(|| format!("cannot write {}", args.out.display()))?;
    println!("wrote {} rows to {}", rows, args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// Reads the policy's metrics and its pool's size over `since` before `now`.
pub async fn record(aws: &Aws, policy: &Policy, now: Timestamp, since: Duration) -> anyhow::Result<Recording> {
    record_with(aws, None, policy, now, since).await
}

/// [`record`], reading `source: prometheus` metrics from `prom` (range queries, one point per
/// metric period); without it such metrics are reported as not recorded.
pub async fn record_with(
    aws: &Aws,
    prom: Option<&crate::prometheus::PromClient>,
    policy: &Policy,
    now: Timestamp,
    since: Duration,
) -> anyhow::Result<Recording> {
    let mut fleets = describe_fleets(aws, &[policy]).await;
    let fleet = fleets
        .remove(&policy.name)
        .ok_or_else(|| anyhow!("no fleet answer for pool {:?}", policy.name))?
        .with_context(|| format!("cannot describe pool {:?}", policy.name))?;
    // Every member that may have run in the period (stopped ones included).
    let members: Vec<String> = match &fleet {
        Fleet::Instances { members } => {
            members.iter().filter(|m| m.state != MemberState::Gone).map(|m| m.id.clone()).collect()
        }
        Fleet::Group(_) => Vec::new(),
    };
    let query = PoolQuery { policy, instance_ids: members.clone() };
    let mut metrics = fetch_metrics(aws, &[query], now, Duration::ZERO, since).await;
    let mut metrics = metrics.remove(&policy.name).unwrap_or_default();
    let mut warnings: Vec<String> = metrics.errors.clone();
    if crate::prometheus::uses_prometheus(policy) {
        match prom {
            Some(client) => {
                let from = now.checked_sub(since).unwrap_or(now);
                let (samples, problems) = crate::prometheus::read_history(client, policy, &members, from, now).await;
                metrics.samples.extend(samples);
                warnings.extend(problems.into_iter().map(|p| format!("prometheus: {p}")));
            }
            None => warnings.push("the policy has Prometheus metrics: pass --prometheus-url to record them".to_owned()),
        }
    }
    for m in &policy.metrics {
        if !metrics.samples.contains_key(&m.id) {
            let source = match &m.source {
                vmscaler_engine::policy::MetricSource::CloudWatch => format!("{}/{}", m.namespace, m.name),
                vmscaler_engine::policy::MetricSource::Prometheus { query, .. } => format!("Prometheus {query}"),
            };
            warnings.push(format!("metric {} ({source}) has no datapoints in the period", m.id));
        }
    }
    let period =
        policy.metrics.iter().map(|m| m.period).min().unwrap_or(Duration::from_secs(60)).max(Duration::from_secs(60));
    // Period-aligned start, as the metric reader does: CloudWatch (and moto) cut periods from it.
    let step = i64::try_from(period.as_secs()).unwrap_or(60).max(1);
    let start = now.checked_sub(since).unwrap_or(now).as_second();
    let from = Timestamp::from_second(start.div_euclid(step) * step).unwrap_or(now);
    let spec = |namespace: &str, name: &str, dimension: (&str, &str), statistic| SeriesSpec {
        namespace: namespace.to_owned(),
        name: name.to_owned(),
        dimensions: vec![(dimension.0.to_owned(), dimension.1.to_owned())],
        period,
        statistic,
    };
    let pool_size: BTreeMap<Timestamp, f64> = match &policy.pool {
        PoolTarget::AutoScalingGroup(g) => {
            let size =
                spec("AWS/AutoScaling", "GroupInServiceInstances", ("AutoScalingGroupName", g), Statistic::Average);
            let series = read_series(aws, &[size], from, now).await.map_err(|e| anyhow!(e))?;
            series.into_iter().next().unwrap_or_default().into_iter().collect()
        }
        PoolTarget::Tagged(_) => {
            // A member counts in a period when it reported CPU in it.
            let specs: Vec<SeriesSpec> = members
                .iter()
                .map(|id| spec("AWS/EC2", "CPUUtilization", ("InstanceId", id), Statistic::SampleCount))
                .collect();
            let mut counts: BTreeMap<Timestamp, f64> = BTreeMap::new();
            for series in read_series(aws, &specs, from, now).await.map_err(|e| anyhow!(e))? {
                for (at, _) in series {
                    *counts.entry(at).or_default() += 1.0;
                }
            }
            counts
        }
    };
    if pool_size.is_empty() {
        warnings.push(match &policy.pool {
            PoolTarget::AutoScalingGroup(g) => {
                format!(
                    "no GroupInServiceInstances data for {g:?}: enable group metrics collection to record the pool size"
                )
            }
            PoolTarget::Tagged(_) => "no CPUUtilization data for any member: pool size unknown".to_owned(),
        });
    }
    Ok(Recording { metrics, pool_size, warnings })
}

/// The trace CSV: one row per timestamp any series has, empty cells where one has no datapoint.
pub fn to_csv(policy: &Policy, rec: &Recording) -> String {
    let ids: Vec<&str> = policy.metrics.iter().map(|m| m.id.as_str()).collect();
    let cpu_id = policy.metrics.iter().find(|m| matches!(m.goal, Goal::Utilization { .. })).map(|m| m.id.as_str());
    let mut rows: BTreeMap<Timestamp, (Vec<Option<f64>>, Option<f64>)> = BTreeMap::new();
    for (i, id) in ids.iter().enumerate() {
        for s in rec.metrics.samples.get(*id).into_iter().flatten() {
            rows.entry(s.at).or_insert_with(|| (vec![None; ids.len()], None)).0[i] = Some(s.value);
        }
    }
    for (at, size) in &rec.pool_size {
        rows.entry(*at).or_insert_with(|| (vec![None; ids.len()], None)).1 = Some(*size);
    }
    let mut out = String::from("timestamp");
    for id in &ids {
        out.push(',');
        out.push_str(id);
    }
    out.push_str(",pool_size,demand_instances\n");
    let cell = |v: Option<f64>| v.map_or_else(String::new, |v| format!("{v}"));
    for (at, (values, size)) in rows {
        let _ = write!(out, "{at}");
        for v in &values {
            let _ = write!(out, ",{}", cell(*v));
        }
        let cpu = cpu_id.and_then(|c| ids.iter().position(|i| *i == c)).and_then(|i| values[i]);
        let demand = match (cpu, size) {
            (Some(c), Some(n)) => Some(c / 100.0 * n),
            _ => None,
        };
        let _ = writeln!(out, ",{},{}", cell(size), demand.map_or_else(String::new, |d| format!("{d:.4}")));
    }
    out
}

#[cfg(test)]
mod tests {
    use vmscaler_engine::Sample;
    use vmscaler_engine::backtest::{TraceOptions, read_trace};
    use vmscaler_engine::policy::parse_policy;

    use super::*;

    #[test]
    fn csv_joins_series_and_computes_demand() {
        let policy = parse_policy(
            "p.yaml",
            "name: web\npool: {auto_scaling_group: web}\nmin: 1\nmax: 9\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\n  - {id: backlog, namespace: AWS/SQS, name: ApproximateNumberOfMessagesVisible, dimensions: {QueueName: q}, target_per_instance: 10}\n",
        )
        .policy
        .unwrap();
        let t = |s: i64| Timestamp::from_second(s).unwrap();
        let mut rec = Recording::default();
        rec.metrics
            .samples
            .insert("cpu".into(), vec![Sample { at: t(0), value: 50.0 }, Sample { at: t(60), value: 80.0 }]);
        rec.metrics.samples.insert("backlog".into(), vec![Sample { at: t(60), value: 7.0 }]);
        rec.pool_size = [(t(0), 4.0), (t(60), 5.0), (t(120), 5.0)].into();
        let csv = to_csv(&policy, &rec);
        assert_eq!(
            csv,
            "timestamp,cpu,backlog,pool_size,demand_instances\n\
             1970-01-01T00:00:00Z,50,,4,2.0000\n\
             1970-01-01T00:01:00Z,80,7,5,4.0000\n\
             1970-01-01T00:02:00Z,,,5,\n"
        );
        // The backtest reads it back.
        let trace =
            read_trace(&csv, &TraceOptions { value_column: Some("demand_instances".into()), ..Default::default() })
                .unwrap();
        assert_eq!(trace.points.len(), 3);
        assert_eq!(trace.summary.empty_values, 1);
    }
}
