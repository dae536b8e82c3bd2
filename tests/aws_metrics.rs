//! The metric reader against a real moto server: batching, per-instance aggregation, the
//! still-filling period, and failures.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use vmscaler::aws::metrics::{MAX_SERIES_PER_CALL, PoolQuery, fetch_metrics};
use vmscaler::aws::stats::Operation;
use vmscaler::clock::{Clock, SystemClock};
use vmscaler_engine::Sample;

use crate::support::Moto;
use crate::support::policy::{backlog_metric, per_instance_metric, tagged};

/// The start of the current minute.
fn this_minute() -> Timestamp {
    let now = SystemClock.now().as_second();
    Timestamp::from_second(now - now.rem_euclid(60)).expect("timestamp")
}

fn at(base: Timestamp, secs: i64) -> Timestamp {
    base.checked_add(SignedDuration::from_secs(secs)).expect("timestamp")
}

fn pool_metrics(n: usize) -> String {
    let mut m = per_instance_metric("cpu", "AWS/EC2", "CPUUtilization", "avg", 60.0);
    m += &per_instance_metric("gpu", "CWAgent", "nvidia_smi_utilization_gpu", "max", 70.0);
    m += &backlog_metric("backlog", &format!("q{n}"));
    m
}

#[tokio::test]
async fn all_series_of_all_pools_share_calls_of_500() {
    let moto = Moto::start();
    let m = this_minute();
    let members = 150;
    let policies: Vec<_> = (0..3).map(|p| tagged(&format!("pool{p}"), &pool_metrics(p), "")).collect();
    let ids: Vec<Vec<String>> = (0..3).map(|p| (0..members).map(|k| format!("i-{p:02}{k:015}")).collect()).collect();
    // Distinct backlog per pool, and member data for the last pool (whose series fall in the
    // second call), to prove that answers are mapped back across call boundaries.
    for p in 0..3 {
        let q = format!("q{p}");
        moto.put_metric(
            "AWS/SQS",
            "ApproximateNumberOfMessagesVisible",
            &[("QueueName", &q)],
            &[(at(m, -120 + 5), 10.0 * (p as f64 + 1.0))],
        )
        .await;
    }
    for (k, cpu) in [(0usize, 10.0), (members - 1, 50.0)] {
        let id = ids[2][k].as_str();
        moto.put_metric("AWS/EC2", "CPUUtilization", &[("InstanceId", id)], &[(at(m, -120 + 5), cpu)]).await;
        moto.put_metric(
            "CWAgent",
            "nvidia_smi_utilization_gpu",
            &[("InstanceId", id)],
            &[(at(m, -120 + 5), cpu + 5.0)],
        )
        .await;
    }

    let aws = moto.aws().await;
    let queries: Vec<PoolQuery<'_>> =
        policies.iter().zip(&ids).map(|(policy, ids)| PoolQuery { policy, instance_ids: ids.clone() }).collect();
    let got = fetch_metrics(&aws, &queries, at(m, 30), Duration::ZERO, Duration::from_secs(600)).await;

    let series = 3 * (2 * members + 1);
    assert_eq!(series, 903);
    assert_eq!(aws.stats().calls(Operation::GetMetricData), series.div_ceil(MAX_SERIES_PER_CALL) as u64);
    for p in 0..3 {
        let pm = &got[&format!("pool{p}")];
        assert!(pm.errors.is_empty(), "{:?}", pm.errors);
        let backlog = &pm.samples["backlog"];
        assert_eq!(backlog, &vec![Sample { at: at(m, -120), value: 10.0 * (p as f64 + 1.0) }]);
    }
    let last = &got["pool2"];
    assert_eq!(last.samples["cpu"], vec![Sample { at: at(m, -120), value: 30.0 }], "avg of 10 and 50");
    assert_eq!(last.samples["gpu"], vec![Sample { at: at(m, -120), value: 55.0 }], "max of 15 and 55");
    assert!(!got["pool0"].samples.contains_key("cpu"), "no member data in pool0");
    assert_eq!(last.member_cpu.len(), 2);
    assert_eq!(last.member_cpu[&ids[2][members - 1]], 50.0);
}

#[tokio::test]
async fn exactly_500_series_take_one_call() {
    let moto = Moto::start();
    let policy = tagged(
        "p",
        &(per_instance_metric("cpu", "AWS/EC2", "CPUUtilization", "avg", 60.0) + &backlog_metric("b", "q")),
        "",
    );
    let ids: Vec<String> = (0..499).map(|k| format!("i-{k:017}")).collect();
    let aws = moto.aws().await;
    let now = this_minute();
    let got = fetch_metrics(
        &aws,
        &[PoolQuery { policy: &policy, instance_ids: ids }],
        now,
        Duration::ZERO,
        Duration::from_secs(300),
    )
    .await;
    assert_eq!(aws.stats().calls(Operation::GetMetricData), 1);
    assert!(got["p"].errors.is_empty(), "{:?}", got["p"].errors);
    assert!(got["p"].samples.is_empty(), "no data was put");
}

#[tokio::test]
async fn per_instance_series_are_aggregated_per_period() {
    let moto = Moto::start();
    let m = this_minute();
    let policy = tagged("agg", &pool_metrics(0), "");
    let ids = ["i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c", "i-0000000000000000d"];
    let cpu = [[10.0, 20.0], [20.0, 30.0], [60.0, 70.0]];
    for (id, vals) in ids.iter().zip(cpu) {
        let points = [(at(m, -180 + 5), vals[0]), (at(m, -120 + 7), vals[1])];
        moto.put_metric("AWS/EC2", "CPUUtilization", &[("InstanceId", id)], &points).await;
        moto.put_metric("CWAgent", "nvidia_smi_utilization_gpu", &[("InstanceId", id)], &points).await;
    }
    // Another pool's instance, and a series with an extra dimension: neither is a member's.
    moto.put_metric("AWS/EC2", "CPUUtilization", &[("InstanceId", "i-00000000000000zzz")], &[(at(m, -120 + 5), 99.0)])
        .await;
    let aws = moto.aws().await;
    let query = PoolQuery { policy: &policy, instance_ids: ids.iter().map(|s| (*s).to_owned()).collect() };
    let got = fetch_metrics(&aws, &[query], at(m, 10), Duration::ZERO, Duration::from_secs(600)).await;
    let pm = &got["agg"];
    assert!(pm.errors.is_empty(), "{:?}", pm.errors);
    assert_eq!(
        pm.samples["cpu"],
        vec![Sample { at: at(m, -180), value: 30.0 }, Sample { at: at(m, -120), value: 40.0 }]
    );
    assert_eq!(
        pm.samples["gpu"],
        vec![Sample { at: at(m, -180), value: 60.0 }, Sample { at: at(m, -120), value: 70.0 }]
    );
    let cpus: Vec<(&str, f64)> = pm.member_cpu.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(cpus, vec![(ids[0], 20.0), (ids[1], 30.0), (ids[2], 70.0)], "newest per member; none for d");
    assert_eq!(aws.stats().calls(Operation::GetMetricData), 1);
}

#[tokio::test]
async fn the_still_filling_period_is_excluded() {
    let moto = Moto::start();
    let m = this_minute();
    let policy = tagged("fill", &backlog_metric("backlog", "jobs"), "");
    // One datapoint in each minute from m-5min to the current minute m: value 100 + minute.
    let points: Vec<(Timestamp, f64)> = (-5..=0).map(|k| (at(m, k * 60 + 5), 100.0 + k as f64)).collect();
    moto.put_metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", &[("QueueName", "jobs")], &points).await;
    let aws = moto.aws().await;
    let read = |offset: u64| {
        let (aws, policy) = (aws.clone(), &policy);
        async move {
            let q = PoolQuery { policy, instance_ids: vec![] };
            let got = fetch_metrics(&aws, &[q], at(m, 30), Duration::from_secs(offset), Duration::from_secs(600)).await;
            got["fill"].samples["backlog"].clone()
        }
    };
    // At m+30s the minute starting at m is still filling: the newest complete one is m-1min.
    let s = read(0).await;
    assert_eq!(s.last(), Some(&Sample { at: at(m, -60), value: 99.0 }));
    assert_eq!(s.len(), 5, "m-5min .. m-1min");
    assert!(s.windows(2).all(|w| w[0].at < w[1].at), "oldest first");
    // A 90 s offset also drops m-1min, whose period closed only 30 s ago.
    let s = read(90).await;
    assert_eq!(s.last(), Some(&Sample { at: at(m, -120), value: 98.0 }));
}

#[tokio::test]
async fn a_failed_call_is_reported_for_every_pool_it_served_and_counted() {
    // A port with nothing listening: every attempt is refused, then retried by the SDK.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let moto_like = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .credentials_provider(aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "test"))
        .load()
        .await;
    let aws = vmscaler::aws::Aws::from_sdk_config(&moto_like);
    let a = tagged("a", &backlog_metric("backlog", "a"), "");
    let b = tagged("b", &backlog_metric("backlog", "b"), "");
    let queries = [PoolQuery { policy: &a, instance_ids: vec![] }, PoolQuery { policy: &b, instance_ids: vec![] }];
    let got = fetch_metrics(&aws, &queries, this_minute(), Duration::ZERO, Duration::from_secs(300)).await;
    for name in ["a", "b"] {
        let pm = &got[name];
        assert!(pm.samples.is_empty());
        assert_eq!(pm.errors.len(), 1, "{:?}", pm.errors);
        assert!(pm.errors[0].starts_with("GetMetricData failed"), "{}", pm.errors[0]);
    }
    let s = aws.stats().get(Operation::GetMetricData);
    assert_eq!((s.calls, s.errors), (1, 1));
    assert_eq!(s.retries, u64::from(vmscaler::aws::MAX_ATTEMPTS - 1));
}

#[tokio::test]
async fn large_metric_uploads_reach_moto_uncompressed() {
    // 600 datapoints: a 500-datapoint PutMetricData body is well above the SDK's 10 KiB
    // compression threshold, and gzip cannot be rewritten to moto's JSON protocol.
    let moto = Moto::start();
    let m = this_minute();
    let points: Vec<(Timestamp, f64)> = (0..600).map(|s| (at(m, -600 + s), 2.0)).collect();
    moto.put_metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", &[("QueueName", "big")], &points).await;
    let policy = tagged("big", &backlog_metric("backlog", "big"), "");
    let aws = moto.aws().await;
    let q = PoolQuery { policy: &policy, instance_ids: vec![] };
    let got = fetch_metrics(&aws, &[q], m, Duration::ZERO, Duration::from_secs(600)).await;
    let s = &got["big"].samples["backlog"];
    assert_eq!(s.len(), 10, "one per minute: {s:?}");
    assert!(s.iter().all(|x| x.value == 2.0));
}
