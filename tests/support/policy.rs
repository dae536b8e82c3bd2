//! Policies for adapter tests, parsed from YAML like the daemon reads them.

use vmscaler_engine::Policy;

/// Parses a policy, panicking with its diagnostics when it does not validate.
pub fn parse(yaml: &str) -> Policy {
    let report = vmscaler_engine::policy::parse_policy("test.yaml", yaml);
    match report.policy {
        Some(p) => p,
        None => panic!("test policy does not validate: {:?}\n{yaml}", report.diagnostics),
    }
}

/// A tagged pool `name` (tag `vmscaler:pool=<name>`), protect tag `vmscaler:protect=true`,
/// with the given `metrics:` entries (YAML list items, indented two spaces).
pub fn tagged(name: &str, metrics: &str, extra: &str) -> Policy {
    parse(&format!(
        "name: {name}\npool:\n  tag: {{ key: \"vmscaler:pool\", value: {name} }}\nmin: 1\nmax: 50\ninterval: 1m\n\
         metrics:\n{metrics}\nscale_in:\n  order: lowest_cpu\n  protect_tag: {{ key: \"vmscaler:protect\", value: \"true\" }}\n{extra}"
    ))
}

/// An Auto Scaling group pool `name` scaled on one backlog metric.
pub fn group(name: &str, group: &str) -> Policy {
    parse(&format!(
        "name: {name}\npool:\n  auto_scaling_group: {group}\nmin: 1\nmax: 10\ninterval: 1m\nmetrics:\n{}",
        backlog_metric("backlog", "jobs")
    ))
}

/// A per-instance metric entry.
pub fn per_instance_metric(id: &str, namespace: &str, name: &str, agg: &str, target: f64) -> String {
    format!(
        "  - id: {id}\n    namespace: {namespace}\n    name: {name}\n    statistic: Average\n    period: 1m\n    \
         per_instance: {agg}\n    target: {target}\n    weight: 1\n"
    )
}

/// A pool-level SQS backlog metric entry.
pub fn backlog_metric(id: &str, queue: &str) -> String {
    format!(
        "  - id: {id}\n    namespace: AWS/SQS\n    name: ApproximateNumberOfMessagesVisible\n    dimensions:\n      \
         QueueName: {queue}\n    statistic: Maximum\n    period: 1m\n    target_per_instance: 10\n    weight: 1\n"
    )
}
