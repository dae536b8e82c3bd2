//! Reading metrics: every series of every pool due at a tick, in as few `GetMetricData` calls
//! as the API allows (500 series per call), never one call per metric or per pool.
//!
//! Per-instance metrics (`per_instance: avg|max` in a policy) become one series per running
//! member, with an `InstanceId` dimension added to the policy's dimensions, and are combined
//! client-side with [`Aggregation::apply`]; metric math is never used (moto does not have it,
//! and it would cost a query per pool). The newest, still-filling period is dropped: a
//! datapoint counts only when its whole period ended at least `offset` before `now`.
//!
//! Not here: deciding when a pool is due (the daemon does) or keeping the history window (the
//! engine's [`vmscaler_engine::PoolHistory`] does; callers push the returned samples into it).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::{Dimension, Metric, MetricDataQuery, MetricDataResult, MetricStat, StatusCode};
use aws_smithy_types::error::display::DisplayErrorContext;
use jiff::Timestamp;
use tokio::task::JoinSet;
use vmscaler_engine::policy::{Aggregation, PoolTarget, ScaleInOrder, Statistic};
use vmscaler_engine::{Fleet, Policy, Sample};

use super::{Aws, to_datetime, to_timestamp};

pub mod history;

/// The API's limit on queries per `GetMetricData` call.
pub const MAX_SERIES_PER_CALL: usize = 500;
/// `GetMetricData` calls in flight at once.
const CONCURRENT_CALLS: usize = 4;
/// Guard against an endpoint that keeps handing out `NextToken`s.
const MAX_PAGES: usize = 100;
/// Period of the CPU series read for `scale_in.order: lowest_cpu` when the policy has no
/// per-instance `AWS/EC2 CPUUtilization` metric of its own (basic monitoring's granularity).
const MEMBER_CPU_PERIOD: Duration = Duration::from_secs(300);

/// One pool to read: its policy and its running members (for per-instance metrics).
#[derive(Debug, Clone)]
pub struct PoolQuery<'a> {
    pub policy: &'a Policy,
    pub instance_ids: Vec<String>,
}

impl<'a> PoolQuery<'a> {
    /// A query for `policy` whose per-instance series are read for the running members of
    /// `fleet` (none for an Auto Scaling group: use a group-level dimension there).
    pub fn new(policy: &'a Policy, fleet: Option<&Fleet>) -> PoolQuery<'a> {
        PoolQuery { policy, instance_ids: fleet.map(running_ids).unwrap_or_default() }
    }
}

/// What one pool's metrics looked like.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PoolMetrics {
    /// Complete pool-level datapoints by metric id, oldest first (per-instance series already
    /// aggregated). A metric without datapoints is absent.
    pub samples: BTreeMap<String, Vec<Sample>>,
    /// Newest complete CPU reading of each member, for `scale_in.order: lowest_cpu`.
    pub member_cpu: BTreeMap<String, f64>,
    /// Failed calls, series CloudWatch could not serve, or partial answers, for logs and health.
    pub errors: Vec<String>,
}

/// Ids of the running members of a tagged pool.
pub fn running_ids(fleet: &Fleet) -> Vec<String> {
    match fleet {
        Fleet::Instances { members } => {
            members.iter().filter(|m| m.state == vmscaler_engine::MemberState::Running).map(|m| m.id.clone()).collect()
        }
        Fleet::Group(_) => Vec::new(),
    }
}

/// Copies `member_cpu` readings into the fleet's members (the engine's `lowest_cpu` order
/// reads [`vmscaler_engine::Member::cpu`]).
pub fn apply_member_cpu(fleet: &mut Fleet, member_cpu: &BTreeMap<String, f64>) {
    if let Fleet::Instances { members } = fleet {
        for m in members {
            m.cpu = member_cpu.get(&m.id).copied();
        }
    }
}

/// What a series stands for.
#[derive(Debug, Clone)]
enum Role {
    /// A pool-level metric: metric index in the policy.
    Pool(usize),
    /// One member's series of a per-instance metric.
    Member { metric: usize, instance: String, cpu: bool },
    /// A member's CPU, read only for `lowest_cpu` ordering.
    CpuOnly { instance: String },
}

#[derive(Debug, Clone)]
struct Series {
    pool: usize,
    role: Role,
    period: Duration,
    query: MetricDataQuery,
}

/// What came back for one series, all pages merged.
#[derive(Debug, Default)]
struct Collected {
    points: Vec<(Timestamp, f64)>,
    partial: bool,
    problem: Option<String>,
}

fn is_cpu(namespace: &str, name: &str) -> bool {
    namespace == "AWS/EC2" && name == "CPUUtilization"
}

fn build_query(
    id: String,
    namespace: &str,
    name: &str,
    dims: impl IntoIterator<Item = (String, String)>,
    period: Duration,
    stat: Statistic,
) -> MetricDataQuery {
    let dimensions: Vec<Dimension> =
        dims.into_iter().map(|(k, v)| Dimension::builder().name(k).value(v).build()).collect();
    let metric = Metric::builder().namespace(namespace).metric_name(name).set_dimensions(Some(dimensions)).build();
    let period = i32::try_from(period.as_secs()).unwrap_or(i32::MAX);
    let stat = MetricStat::builder().metric(metric).period(period).stat(stat.as_str()).build();
    MetricDataQuery::builder().id(id).metric_stat(stat).return_data(true).build()
}

/// The series to read for `pools`, in a stable order.
fn plan_series(pools: &[PoolQuery<'_>]) -> Vec<Series> {
    let mut out = Vec::new();
    for (p, q) in pools.iter().enumerate() {
        let policy = q.policy;
        let mut cpu_covered = false;
        for (i, m) in policy.metrics.iter().enumerate() {
            if m.source != vmscaler_engine::policy::MetricSource::CloudWatch {
                continue; // read by crate::prometheus
            }
            let dims = m.dimensions.iter().map(|(k, v)| (k.clone(), v.clone()));
            match m.per_instance {
                None => {
                    let query = build_query(String::new(), &m.namespace, &m.name, dims, m.period, m.statistic);
                    out.push(Series { pool: p, role: Role::Pool(i), period: m.period, query });
                }
                Some(_) => {
                    let cpu = !cpu_covered && is_cpu(&m.namespace, &m.name);
                    cpu_covered |= cpu;
                    for id in &q.instance_ids {
                        let dims = m
                            .dimensions
                            .iter()
                            .filter(|(k, _)| k.as_str() != "InstanceId")
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .chain([("InstanceId".to_owned(), id.clone())]);
                        let query = build_query(String::new(), &m.namespace, &m.name, dims, m.period, m.statistic);
                        let role = Role::Member { metric: i, instance: id.clone(), cpu };
                        out.push(Series { pool: p, role, period: m.period, query });
                    }
                }
            }
        }
        let tagged = matches!(policy.pool, PoolTarget::Tagged(_));
        if tagged && policy.scale_in.order == ScaleInOrder::LowestCpu && !cpu_covered {
            for id in &q.instance_ids {
                let dims = [("InstanceId".to_owned(), id.clone())];
                let query = build_query(
                    String::new(),
                    "AWS/EC2",
                    "CPUUtilization",
                    dims,
                    MEMBER_CPU_PERIOD,
                    Statistic::Average,
                );
                out.push(Series {
                    pool: p,
                    role: Role::CpuOnly { instance: id.clone() },
                    period: MEMBER_CPU_PERIOD,
                    query,
                });
            }
        }
    }
    out
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A start-time alignment that is a multiple of every period in the batch (their least
/// common multiple, or the longest period if that exceeds a day), so that datapoints fall on
/// period boundaries whether the endpoint buckets from the epoch (CloudWatch) or from
/// `StartTime` (moto).
fn alignment(periods: impl IntoIterator<Item = Duration>) -> u64 {
    let mut l = 1u64;
    let mut longest = 1u64;
    for p in periods {
        let s = p.as_secs().max(1);
        longest = longest.max(s);
        l = l.saturating_mul(s / gcd(l, s));
    }
    if l > 86_400 { longest } else { l }
}

fn align_down(t: Timestamp, step: u64) -> Timestamp {
    let step = i64::try_from(step.max(1)).unwrap_or(i64::MAX);
    Timestamp::from_second(t.as_second().div_euclid(step) * step).unwrap_or(t)
}

/// Reads `queries` over `[starts[c], end)`, where `c` is the query's call: calls of
/// [`MAX_SERIES_PER_CALL`] series each, [`CONCURRENT_CALLS`] at a time. Each answer goes to
/// `collected` at its query's index. Returns each failed call's index and error (`usize::MAX`:
/// a task that died, which may have been any call); `what` names the reader in that error.
async fn read_in_calls(
    aws: &Aws,
    queries: &[&MetricDataQuery],
    starts: &[Timestamp],
    end: Timestamp,
    collected: &mut [Option<Collected>],
    what: &str,
) -> Vec<(usize, String)> {
    let mut tasks: JoinSet<(usize, Result<Vec<Collected>, String>)> = JoinSet::new();
    let mut chunks = queries.chunks(MAX_SERIES_PER_CALL).zip(starts).enumerate();
    let mut failures: Vec<(usize, String)> = Vec::new();
    loop {
        while tasks.len() < CONCURRENT_CALLS {
            let Some((c, (chunk, &from))) = chunks.next() else { break };
            let queries: Vec<MetricDataQuery> = chunk
                .iter()
                .enumerate()
                .map(|(i, q)| {
                    let mut q = (*q).clone();
                    q.id = Some(format!("q{i}"));
                    q
                })
                .collect();
            let aws = aws.clone();
            tasks.spawn(async move { (c, get_metric_data(&aws, queries, from, end).await) });
        }
        let Some(joined) = tasks.join_next().await else { break };
        match joined {
            Ok((c, Ok(results))) => {
                for (i, r) in results.into_iter().enumerate() {
                    if let Some(slot) = collected.get_mut(c * MAX_SERIES_PER_CALL + i) {
                        *slot = Some(r);
                    }
                }
            }
            Ok((c, Err(e))) => failures.push((c, e)),
            Err(e) => failures.push((usize::MAX, format!("{what} task failed: {e}"))),
        }
    }
    failures
}

/// Reads the metrics of `pools` at `now`: datapoints whose period ended at least `offset`
/// before `now`, from `lookback` before that. Returns an entry for every pool; failures are
/// reported in [`PoolMetrics::errors`], never by dropping the pool.
pub async fn fetch_metrics(
    aws: &Aws,
    pools: &[PoolQuery<'_>],
    now: Timestamp,
    offset: Duration,
    lookback: Duration,
) -> BTreeMap<String, PoolMetrics> {
    let mut out: BTreeMap<String, PoolMetrics> =
        pools.iter().map(|q| (q.policy.name.clone(), PoolMetrics::default())).collect();
    let end = now.checked_sub(offset).unwrap_or(now);
    let series = plan_series(pools);
    let mut collected: Vec<Option<Collected>> = Vec::with_capacity(series.len());
    collected.resize_with(series.len(), || None);

    let starts: Vec<Timestamp> = series
        .chunks(MAX_SERIES_PER_CALL)
        .map(|chunk| align_down(end.checked_sub(lookback).unwrap_or(end), alignment(chunk.iter().map(|s| s.period))))
        .collect();
    let queries: Vec<&MetricDataQuery> = series.iter().map(|s| &s.query).collect();
    let failures = read_in_calls(aws, &queries, &starts, end, &mut collected, "metric reader").await;

    for (c, e) in &failures {
        let affected: Vec<usize> = if *c == usize::MAX {
            (0..pools.len()).collect()
        } else {
            series.iter().skip(c * MAX_SERIES_PER_CALL).take(MAX_SERIES_PER_CALL).map(|s| s.pool).collect()
        };
        for p in affected {
            let pm = pool_entry(&mut out, pools, p);
            if pm.errors.last() != Some(e) {
                pm.errors.push(e.clone());
            }
        }
    }

    assemble(pools, &series, collected, end, &mut out);
    out
}

fn pool_entry<'m>(
    out: &'m mut BTreeMap<String, PoolMetrics>,
    pools: &[PoolQuery<'_>],
    p: usize,
) -> &'m mut PoolMetrics {
    out.entry(pools[p].policy.name.clone()).or_default()
}

/// Turns per-series answers into pool-level samples, aggregating per-instance series.
fn assemble(
    pools: &[PoolQuery<'_>],
    series: &[Series],
    collected: Vec<Option<Collected>>,
    end: Timestamp,
    out: &mut BTreeMap<String, PoolMetrics>,
) {
    // (pool, metric) -> timestamp -> member values
    let mut per_member: BTreeMap<(usize, usize), BTreeMap<Timestamp, Vec<f64>>> = BTreeMap::new();
    for (s, c) in series.iter().zip(collected) {
        let Some(c) = c else { continue };
        let policy = pools[s.pool].policy;
        let complete = |at: &Timestamp| {
            let period = i64::try_from(s.period.as_secs()).unwrap_or(i64::MAX);
            at.checked_add(jiff::SignedDuration::from_secs(period)).is_ok_and(|close| close <= end)
        };
        let mut points: Vec<(Timestamp, f64)> =
            c.points.into_iter().filter(|(at, v)| v.is_finite() && complete(at)).collect();
        points.sort_by_key(|(at, _)| *at);
        points.dedup_by_key(|(at, _)| *at);
        let label = match &s.role {
            Role::Pool(i) => policy.metrics[*i].id.clone(),
            Role::Member { metric, instance, .. } => format!("{} of {instance}", policy.metrics[*metric].id),
            Role::CpuOnly { instance } => format!("CPU of {instance}"),
        };
        let pm = pool_entry(out, pools, s.pool);
        if let Some(problem) = c.problem {
            pm.errors.push(format!("{label}: {problem}"));
        }
        if c.partial {
            pm.errors.push(format!("{label}: partial data"));
        }
        match &s.role {
            Role::Pool(i) => {
                if !points.is_empty() {
                    let samples = points.iter().map(|&(at, value)| Sample { at, value }).collect();
                    pm.samples.insert(policy.metrics[*i].id.clone(), samples);
                }
            }
            Role::Member { metric, instance, cpu } => {
                if let (true, Some(&(_, v))) = (*cpu, points.last()) {
                    pm.member_cpu.insert(instance.clone(), v);
                }
                let by_time = per_member.entry((s.pool, *metric)).or_default();
                for (at, v) in points {
                    by_time.entry(at).or_default().push(v);
                }
            }
            Role::CpuOnly { instance } => {
                if let Some(&(_, v)) = points.last() {
                    pm.member_cpu.insert(instance.clone(), v);
                }
            }
        }
    }
    for ((p, i), by_time) in per_member {
        let spec = &pools[p].policy.metrics[i];
        let agg = spec.per_instance.unwrap_or(Aggregation::Avg);
        let samples: Vec<Sample> =
            by_time.into_iter().filter_map(|(at, vals)| agg.apply(vals).map(|value| Sample { at, value })).collect();
        if !samples.is_empty() {
            pool_entry(out, pools, p).samples.insert(spec.id.clone(), samples);
        }
    }
}

/// Adds one page of answers to `results` (indexed by query id). A series answered
/// `PartialData` stays partial until a later page completes it; other statuses are problems.
fn merge_page(results: &mut [Collected], index: &BTreeMap<String, usize>, page: &[MetricDataResult]) {
    for r in page {
        let Some(c) = r.id().and_then(|id| index.get(id)).and_then(|&i| results.get_mut(i)) else { continue };
        for (t, v) in r.timestamps().iter().zip(r.values()) {
            if let Some(at) = to_timestamp(t) {
                c.points.push((at, *v));
            }
        }
        match r.status_code() {
            Some(StatusCode::PartialData) => c.partial = true,
            Some(StatusCode::Complete) | None => c.partial = false,
            Some(other) => {
                let msgs: Vec<&str> = r.messages().iter().filter_map(|m| m.value()).collect();
                c.problem = Some(format!("status {}: {}", other.as_str(), msgs.join("; ")));
            }
        }
    }
}

/// One batch of at most 500 queries, all pages; results in query order.
async fn get_metric_data(
    aws: &Aws,
    queries: Vec<MetricDataQuery>,
    from: Timestamp,
    end: Timestamp,
) -> Result<Vec<Collected>, String> {
    let index: BTreeMap<String, usize> =
        queries.iter().enumerate().filter_map(|(i, q)| q.id.clone().map(|id| (id, i))).collect();
    let mut results: Vec<Collected> = Vec::with_capacity(queries.len());
    results.resize_with(queries.len(), Collected::default);
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let resp = aws
            .cloudwatch
            .get_metric_data()
            .set_metric_data_queries(Some(queries.clone()))
            .start_time(to_datetime(from))
            .end_time(to_datetime(end))
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| format!("GetMetricData failed: {}", DisplayErrorContext(&e)))?;
        merge_page(&mut results, &index, resp.metric_data_results());
        match resp.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_owned()),
            _ => return Ok(results),
        }
    }
    // Out of pages: what was read is kept and flagged partial.
    for c in &mut results {
        c.partial = true;
    }
    Ok(results)
}

/// One raw CloudWatch series, for reads that are not a policy's metrics (`vmscaler record`).
#[derive(Debug, Clone)]
pub struct SeriesSpec {
    pub namespace: String,
    pub name: String,
    pub dimensions: Vec<(String, String)>,
    pub period: Duration,
    pub statistic: Statistic,
}

/// Reads `series` over `[from, end)`: batched 500 to a GetMetricData call, paginated, counted
/// in [`ApiStats`](super::stats::ApiStats). Each series' points come back in time order.
pub async fn read_series(
    aws: &Aws,
    series: &[SeriesSpec],
    from: Timestamp,
    end: Timestamp,
) -> Result<Vec<Vec<(Timestamp, f64)>>, String> {
    let mut out = Vec::with_capacity(series.len());
    for chunk in series.chunks(MAX_SERIES_PER_CALL) {
        let queries = chunk
            .iter()
            .enumerate()
            .map(|(i, s)| {
                build_query(format!("s{i}"), &s.namespace, &s.name, s.dimensions.clone(), s.period, s.statistic)
            })
            .collect();
        for c in get_metric_data(aws, queries, from, end).await? {
            if let Some(problem) = c.problem {
                return Err(problem);
            }
            let mut points = c.points;
            points.sort_by_key(|p| p.0);
            points.dedup_by_key(|p| p.0);
            out.push(points);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use aws_sdk_cloudwatch::types::MessageData;

    use super::*;

    fn result(id: &str, secs: &[i64], values: &[f64], status: StatusCode) -> MetricDataResult {
        MetricDataResult::builder()
            .id(id)
            .set_timestamps(Some(secs.iter().map(|s| aws_smithy_types::DateTime::from_secs(*s)).collect()))
            .set_values(Some(values.to_vec()))
            .status_code(status)
            .build()
    }

    #[test]
    fn pages_merge_and_partial_data_is_completed_by_later_pages() {
        let index: BTreeMap<String, usize> = [("q0".to_owned(), 0), ("q1".to_owned(), 1), ("q2".to_owned(), 2)].into();
        let mut results: Vec<Collected> = (0..3).map(|_| Collected::default()).collect();
        let failed = MetricDataResult::builder()
            .id("q2")
            .status_code(StatusCode::InternalError)
            .messages(MessageData::builder().code("InternalError").value("try later").build())
            .build();
        merge_page(
            &mut results,
            &index,
            &[
                result("q0", &[120, 60], &[2.0, 1.0], StatusCode::PartialData),
                result("q1", &[60], &[5.0], StatusCode::PartialData),
                failed,
                result("unknown", &[60], &[9.0], StatusCode::Complete),
            ],
        );
        merge_page(&mut results, &index, &[result("q0", &[0], &[0.5], StatusCode::Complete)]);
        let secs = |c: &Collected| c.points.iter().map(|(t, _)| t.as_second()).collect::<Vec<_>>();
        assert_eq!(secs(&results[0]), [120, 60, 0]);
        assert!(!results[0].partial, "completed by the second page");
        assert!(results[1].partial, "never completed");
        assert_eq!(results[2].problem.as_deref(), Some("status InternalError: try later"));
    }

    #[test]
    fn alignment_is_a_common_multiple() {
        let s = Duration::from_secs;
        assert_eq!(alignment([s(60), s(300), s(60)]), 300);
        assert_eq!(alignment([s(60), s(90)]), 180);
        assert_eq!(alignment([s(86_400), s(7 * 60)]), 86_400, "lcm above a day: longest period");
        let t = Timestamp::from_second(1_000_010).unwrap();
        assert_eq!(align_down(t, 300).as_second(), 999_900);
    }
}
