//! `source: prometheus` metrics: what validates, what each mistake says.

use super::*;

const HEAD: &str = "name: t
pool: {tag: {key: pool, value: t}}
min: 1
max: 10
metrics:
";

#[track_caller]
fn check(metrics: &str, expect: &[&str]) -> Option<Policy> {
    let text = format!("{HEAD}{metrics}");
    let r = parse_policy("t.yaml", &text);
    let got: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(got, expect, "\n--- policy ---\n{text}");
    r.policy
}

#[test]
fn a_prometheus_metric_blends_with_a_cloudwatch_one() {
    let p = check(
        "  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 60, weight: 0.4}
  - id: queue
    source: prometheus
    query: sum(transcode_queue_depth{pool=\"gpu\"})
    target_per_instance: 8
    period: 30s
    weight: 0.3
  - id: gpu
    source: prometheus
    query: 'avg_over_time(DCGM_FI_DEV_GPU_UTIL{instance_id=~\"${instance_ids}\"}[2m])'
    per_instance: max
    instance_label: instance_id
    target: 70
    weight: 0.3
",
        &[],
    )
    .expect("valid");
    assert_eq!(p.metrics[0].source, MetricSource::CloudWatch);
    assert_eq!(
        p.metrics[1].source,
        MetricSource::Prometheus {
            query: "sum(transcode_queue_depth{pool=\"gpu\"})".into(),
            instance_label: DEFAULT_INSTANCE_LABEL.into()
        }
    );
    assert_eq!(p.metrics[1].period, Duration::from_secs(30), "any whole number of seconds");
    assert!(p.metrics[1].namespace.is_empty() && p.metrics[1].dimensions.is_empty());
    assert_eq!(p.metrics[2].per_instance, Some(Aggregation::Max));
}

#[test]
fn fields_of_the_other_source_are_errors() {
    check(
        "  - {id: q, source: prometheus, query: up, namespace: AWS/SQS, statistic: Sum, dimensions: {A: b}, target: 5}\n",
        &[
            "t.yaml:6:55: metrics[0].namespace: is a CloudWatch field: a `source: prometheus` metric has a `query`",
            "t.yaml:6:75: metrics[0].statistic: is a CloudWatch field: a `source: prometheus` metric has a `query`",
            "t.yaml:6:96: metrics[0].dimensions.A: is a CloudWatch field: match labels in the `query`",
        ],
    );
    check(
        "  - {id: q, namespace: AWS/EC2, name: CPUUtilization, query: up, target: 5}\n",
        &["t.yaml:6:62: metrics[0].query: is only for `source: prometheus` metrics"],
    );
}

#[test]
fn query_source_and_label_mistakes() {
    check("  - {id: q, source: prometheus, target: 5}\n", &["t.yaml:6:5: metrics[0].query: is required"]);
    check(
        "  - {id: q, source: graphite, namespace: N, name: M, target: 5}\n",
        &["t.yaml:6:21: metrics[0].source: \"graphite\" is not one of \"cloudwatch\", \"prometheus\""],
    );
    check(
        "  - {id: q, source: prometheus, query: 'up{i=~\"${instance_ids}\"}', target: 5}\n",
        &["t.yaml:6:40: metrics[0].query: uses ${instance_ids} but the metric is not per_instance"],
    );
    check(
        "  - {id: q, source: prometheus, query: 'up{i=~\"${members}\"}', per_instance: avg, target: 5}\n",
        &["t.yaml:6:40: metrics[0].query: has an unknown ${...} placeholder (the only one is ${instance_ids})"],
    );
    check(
        "  - {id: q, source: prometheus, query: up, per_instance: avg, instance_label: 'bad-label', target: 5}\n",
        &[
            "t.yaml:6:79: metrics[0].instance_label: \"bad-label\" is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)",
        ],
    );
    check(
        "  - {id: q, source: prometheus, query: up, period: 0s, target: 5}\n",
        &["t.yaml:6:52: metrics[0].period: 0s is not a whole number of seconds above 0"],
    );
}
