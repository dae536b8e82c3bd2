//! Reading a pool's past load in bulk, for the forecast (`predictive:`): every CloudWatch
//! metric of the policy over days, at one period of at least 5 minutes (CloudWatch keeps
//! 5-minute data for 63 days, 1-minute data for 15), and the pool's size over the same time,
//! so the daemon's model learns at start instead of waiting 72 hours.
//!
//! Batched like the evaluation reads (500 series per `GetMetricData` call, paginated, a few
//! calls in flight), through the same JSON 1.0 translation. The pool's size at each period:
//! the number of members with a datapoint of a per-instance metric, else an Auto Scaling
//! group's `GroupInServiceInstances` (group metrics collection must be on), else the number
//! of members with a `CPUUtilization` datapoint. A `Sum` or `SampleCount` read over a longer
//! period than the policy's is scaled back to the policy's period (a 5-minute sum of 1-minute
//! sums is five of them).
//!
//! Not here: turning the load into demand (the engine's `forecast::past_demand`) or deciding
//! when to read (the daemon).

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_cloudwatch::types::MetricDataQuery;
use jiff::Timestamp;
use vmscaler_engine::Sample;
use vmscaler_engine::forecast::PastLoad;
use vmscaler_engine::policy::{Aggregation, Goal, MetricSource, PoolTarget, Statistic};

use super::{Collected, MAX_SERIES_PER_CALL, PoolQuery, align_down, build_query, gcd, read_in_calls};
use crate::aws::Aws;

/// The shortest period history is read at (CloudWatch's retention for it: 63 days).
pub const HISTORY_PERIOD: Duration = Duration::from_secs(300);

/// One pool's past load as read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PastRead {
    pub load: PastLoad,
    /// Series and calls that failed or came back partial, and what could not be read at all.
    pub errors: Vec<String>,
    /// Series read for this pool.
    pub series: usize,
}

/// What a series stands for.
#[derive(Debug, Clone)]
enum Role {
    /// A pool-level series of metric `metric`.
    Pool { metric: usize },
    /// One member's series of per-instance metric `metric`.
    Member { metric: usize },
    /// The group's in-service count.
    GroupSize,
    /// One member's CPU sample count (a tagged pool's size).
    MemberPresent,
}

struct Planned {
    pool: usize,
    role: Role,
    query: MetricDataQuery,
}

/// Reported for a policy with `source: prometheus` metrics; the daemon reads them itself (from
/// its Prometheus client, when it has one) and drops this line.
pub const PROMETHEUS_NOT_READ: &str = "Prometheus metrics are not read into the forecast's history";

/// The period `policy`'s history is read at: its longest CloudWatch period, at least
/// [`HISTORY_PERIOD`].
pub fn history_period(policy: &vmscaler_engine::Policy) -> Duration {
    policy
        .metrics
        .iter()
        .filter(|m| m.source == MetricSource::CloudWatch)
        .map(|m| m.period)
        .fold(HISTORY_PERIOD, Duration::max)
}

fn plan(pools: &[PoolQuery<'_>]) -> Vec<Planned> {
    let mut out = Vec::new();
    for (p, q) in pools.iter().enumerate() {
        let policy = q.policy;
        let period = history_period(policy);
        let mut size_from_members = false;
        for (i, m) in policy.metrics.iter().enumerate() {
            if m.source != MetricSource::CloudWatch {
                continue;
            }
            let dims = || m.dimensions.iter().map(|(k, v)| (k.clone(), v.clone()));
            match m.per_instance {
                None => {
                    let query = build_query(String::new(), &m.namespace, &m.name, dims(), period, m.statistic);
                    out.push(Planned { pool: p, role: Role::Pool { metric: i }, query });
                }
                Some(_) => {
                    size_from_members |= matches!(m.goal, Goal::Utilization { .. });
                    for id in &q.instance_ids {
                        let dims =
                            dims().filter(|(k, _)| k != "InstanceId").chain([("InstanceId".to_owned(), id.clone())]);
                        let query = build_query(String::new(), &m.namespace, &m.name, dims, period, m.statistic);
                        out.push(Planned { pool: p, role: Role::Member { metric: i }, query });
                    }
                }
            }
        }
        let utilisation = policy.metrics.iter().any(|m| matches!(m.goal, Goal::Utilization { .. }));
        if !utilisation || size_from_members {
            continue;
        }
        match &policy.pool {
            PoolTarget::AutoScalingGroup(g) => {
                let dims = [("AutoScalingGroupName".to_owned(), g.clone())];
                let query = build_query(
                    String::new(),
                    "AWS/AutoScaling",
                    "GroupInServiceInstances",
                    dims,
                    period,
                    Statistic::Average,
                );
                out.push(Planned { pool: p, role: Role::GroupSize, query });
            }
            PoolTarget::Tagged(_) => {
                for id in &q.instance_ids {
                    let dims = [("InstanceId".to_owned(), id.clone())];
                    let query =
                        build_query(String::new(), "AWS/EC2", "CPUUtilization", dims, period, Statistic::SampleCount);
                    out.push(Planned { pool: p, role: Role::MemberPresent, query });
                }
            }
        }
    }
    out
}

/// Reads the past load of `pools` over `[from, end)` (both aligned down to each pool's history
/// period by CloudWatch's own bucketing: pass aligned times). `instance_ids` of each query
/// should list every member that may have run in the period (stopped ones included). Returns
/// an entry for every pool; failures are in [`PastRead::errors`].
pub async fn fetch_history(
    aws: &Aws,
    pools: &[PoolQuery<'_>],
    from: Timestamp,
    end: Timestamp,
) -> BTreeMap<String, PastRead> {
    let planned = plan(pools);
    let mut out: BTreeMap<String, PastRead> = pools
        .iter()
        .map(|q| {
            let load = PastLoad { period: history_period(q.policy), ..PastLoad::default() };
            (q.policy.name.clone(), PastRead { load, ..PastRead::default() })
        })
        .collect();
    for s in &planned {
        if let Some(r) = out.get_mut(&pools[s.pool].policy.name) {
            r.series += 1;
        }
    }
    // Every pool's period divides the alignment: CloudWatch buckets from the epoch, moto from
    // StartTime; aligned, both agree.
    let align = pools.iter().map(|q| history_period(q.policy).as_secs()).fold(HISTORY_PERIOD.as_secs(), lcm);
    let align = if align > 86_400 { 86_400 } else { align };
    let from = align_down(from, align);
    let mut collected: Vec<Option<Collected>> = Vec::with_capacity(planned.len());
    collected.resize_with(planned.len(), || None);
    let queries: Vec<&MetricDataQuery> = planned.iter().map(|s| &s.query).collect();
    let starts = vec![from; planned.len().div_ceil(MAX_SERIES_PER_CALL)];
    let failures = read_in_calls(aws, &queries, &starts, end, &mut collected, "history reader").await;
    for (c, e) in failures {
        let affected: Vec<usize> = if c == usize::MAX {
            (0..pools.len()).collect()
        } else {
            planned.iter().skip(c * MAX_SERIES_PER_CALL).take(MAX_SERIES_PER_CALL).map(|s| s.pool).collect()
        };
        for p in affected {
            if let Some(r) = out.get_mut(&pools[p].policy.name)
                && r.errors.last() != Some(&e)
            {
                r.errors.push(e.clone());
            }
        }
    }
    assemble(pools, &planned, collected, end, &mut out);
    out
}

fn lcm(a: u64, b: u64) -> u64 {
    let (a, b) = (a.max(1), b.max(1));
    a.saturating_mul(b / gcd(a, b))
}

fn assemble(
    pools: &[PoolQuery<'_>],
    planned: &[Planned],
    collected: Vec<Option<Collected>>,
    end: Timestamp,
    out: &mut BTreeMap<String, PastRead>,
) {
    // (pool, metric) -> time -> member values; pool -> time -> members present.
    let mut per_member: BTreeMap<(usize, usize), BTreeMap<Timestamp, Vec<f64>>> = BTreeMap::new();
    let mut present: BTreeMap<usize, BTreeMap<Timestamp, u32>> = BTreeMap::new();
    let mut problems: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for (s, c) in planned.iter().zip(collected) {
        let Some(c) = c else { continue };
        let policy = pools[s.pool].policy;
        let period = history_period(policy);
        let complete = |at: &Timestamp| {
            let secs = i64::try_from(period.as_secs()).unwrap_or(i64::MAX);
            at.checked_add(jiff::SignedDuration::from_secs(secs)).is_ok_and(|close| close <= end)
        };
        let mut points: Vec<(Timestamp, f64)> =
            c.points.into_iter().filter(|(at, v)| v.is_finite() && complete(at)).collect();
        points.sort_by_key(|(at, _)| *at);
        points.dedup_by_key(|(at, _)| *at);
        if let Some(p) = c.problem {
            problems.entry(s.pool).or_default().push(p);
        } else if c.partial {
            problems.entry(s.pool).or_default().push("partial data".to_owned());
        }
        // A sum read over the longer history period, back in the policy's period's terms.
        let scale = |metric: usize| {
            let m = &policy.metrics[metric];
            match m.statistic {
                Statistic::Sum | Statistic::SampleCount => m.period.as_secs_f64() / period.as_secs_f64(),
                _ => 1.0,
            }
        };
        let Some(read) = out.get_mut(&policy.name) else { continue };
        match &s.role {
            Role::Pool { metric } => {
                let k = scale(*metric);
                let samples: Vec<Sample> = points.iter().map(|&(at, v)| Sample { at, value: v * k }).collect();
                if !samples.is_empty() {
                    read.load.samples.insert(policy.metrics[*metric].id.clone(), samples);
                }
            }
            Role::Member { metric } => {
                let k = scale(*metric);
                let by_time = per_member.entry((s.pool, *metric)).or_default();
                for (at, v) in points {
                    by_time.entry(at).or_default().push(v * k);
                }
            }
            Role::GroupSize => {
                for (at, v) in points {
                    if v >= 0.0 {
                        // In range: a count of instances, at most u32::MAX.
                        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                        let n = v.round().min(f64::from(u32::MAX)) as u32;
                        read.load.serving.insert(at, n);
                    }
                }
            }
            Role::MemberPresent => {
                let counts = present.entry(s.pool).or_default();
                for (at, v) in points {
                    if v > 0.0 {
                        *counts.entry(at).or_default() += 1;
                    }
                }
            }
        }
    }
    for ((p, i), by_time) in per_member {
        let policy = pools[p].policy;
        let spec = &policy.metrics[i];
        let agg = spec.per_instance.unwrap_or(Aggregation::Avg);
        let Some(read) = out.get_mut(&policy.name) else { continue };
        let mut samples = Vec::with_capacity(by_time.len());
        for (at, vals) in by_time {
            // The members reporting a utilisation carried the load: the pool's size then.
            if matches!(spec.goal, Goal::Utilization { .. }) {
                let n = u32::try_from(vals.len()).unwrap_or(u32::MAX);
                let size = read.load.serving.entry(at).or_default();
                *size = (*size).max(n);
            }
            if let Some(value) = agg.apply(vals) {
                samples.push(Sample { at, value });
            }
        }
        if !samples.is_empty() {
            read.load.samples.insert(spec.id.clone(), samples);
        }
    }
    for (p, counts) in present {
        if let Some(read) = out.get_mut(&pools[p].policy.name) {
            read.load.serving.extend(counts);
        }
    }
    for (p, mut list) in problems {
        list.sort();
        list.dedup();
        if let Some(read) = out.get_mut(&pools[p].policy.name) {
            read.errors.extend(list);
        }
    }
    for q in pools {
        if let Some(read) = out.get_mut(&q.policy.name) {
            if q.policy.metrics.iter().any(|m| m.source != MetricSource::CloudWatch) {
                read.errors.push(PROMETHEUS_NOT_READ.to_owned());
            }
            let utilisation = q.policy.metrics.iter().any(|m| matches!(m.goal, Goal::Utilization { .. }));
            if utilisation && read.load.serving.is_empty() && !read.load.samples.is_empty() {
                read.errors.push(match &q.policy.pool {
                    PoolTarget::AutoScalingGroup(g) => format!(
                        "no GroupInServiceInstances data for {g:?}: enable group metrics collection so the past \
                         utilisation can be turned into demand"
                    ),
                    PoolTarget::Tagged(_) => {
                        "no member reported CPUUtilization: the pool's past size is unknown".to_owned()
                    }
                });
            }
        }
    }
}
