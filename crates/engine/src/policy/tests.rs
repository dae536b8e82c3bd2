//! Validation tests: each case is a policy text and the exact diagnostics it must produce.

use super::*;

const BASE: &str = "name: web
pool: {tag: {key: pool, value: web}}
min: 2
max: 10
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, statistic: Average, period: 1m, target: 50}
";

/// Parses `text` as `t.yaml` and compares every diagnostic's rendering.
#[track_caller]
fn check(text: &str, expect: &[&str]) {
    let r = parse_policy("t.yaml", text);
    let got: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
    assert_eq!(got, expect, "\n--- policy ---\n{text}");
    let has_error = r.diagnostics.iter().any(|d| d.severity == Severity::Error);
    assert_eq!(r.policy.is_none(), has_error, "a policy is returned exactly when there are no errors");
}

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

#[test]
fn base_is_valid_with_defaults() {
    check(BASE, &[]);
    let p = parse_policy("t.yaml", BASE).policy.unwrap();
    assert_eq!(p.interval, Duration::from_secs(60));
    assert_eq!(p.scaling.tolerance, 0.1);
    assert_eq!(p.scaling.scale_up.confirmations, 2);
    assert_eq!(p.scaling.scale_down.stabilization, Duration::from_secs(600));
    assert_eq!(p.scaling.scale_down.confirmed_stabilization, None, "off unless asked for");
    let p =
        parse_policy("t.yaml", &with("scaling:\n  scale_down: {stabilization: 15m, confirmed_stabilization: 5m}\n"))
            .policy
            .unwrap();
    assert_eq!(p.scaling.scale_down.confirmed_stabilization, Some(Duration::from_secs(300)));
    assert_eq!(p.missing_data, MissingData::Hold);
    assert_eq!(p.history.window, Duration::from_secs(1800));
    assert_eq!(p.scale_in.order, ScaleInOrder::Newest);
}

#[test]
fn every_field_error_is_reported_at_once() {
    let text = "name: web storefront
pool:
  tag: { key: \"aws:pool\", value: web }
min: 10
max: 5
interval: 5s
metrics:
  - id: CPU
    namespace: AWS/EC2
    name: CPUUtilization
    statistic: Avg
    period: 45s
    target: 155
    weight: -0.2
    per_instance: mean
scaling:
  tolerance: 0.7
  scale_up:
    confirmations: 2.5
    max_step: 0
    fast_threshold: 1.05
  scale_down:
    stabilization: 10x
    max_step: 2000%
missing_data: scale_down
prewarm:
  - name: bf
    start: 11-27T00:00
    end: 2026-11-28T00:00
    time_zone: America/New_Yrok
    capacity: 50
  - name: sms
    cron: \"0 25 * * *\"
    duration: 2h
    time_zone: Asia/Shanghai
    capacity: 3
scale_in:
  order: random
";
    check(
        text,
        &[
            "t.yaml:1:7: name: \"web storefront\" must be 1 to 64 letters, digits, '-', '_' or '.'",
            "t.yaml:3:15: pool.tag.key: \"aws:pool\" uses the reserved prefix \"aws:\"",
            "t.yaml:5:6: max: 5 is below min 10",
            "t.yaml:6:11: interval: 5s is out of range (allowed 10s to 1h)",
            "t.yaml:8:9: metrics[0].id: \"CPU\" must start with a lowercase letter and use only a-z, 0-9, '_' (at most 32)",
            "t.yaml:11:16: metrics[0].statistic: \"Avg\" is not one of \"Average\", \"Maximum\", \"Minimum\", \"Sum\", \"SampleCount\"",
            "t.yaml:12:13: metrics[0].period: 45s is not a CloudWatch period (1s, 5s, 10s, 30s or a multiple of 60s)",
            "t.yaml:13:13: metrics[0].target: 155 is above 100 (a utilisation target is a percentage)",
            "t.yaml:14:13: metrics[0].weight: -0.2 is negative (weights must be >= 0)",
            "t.yaml:15:19: metrics[0].per_instance: \"mean\" is not one of \"avg\", \"max\"",
            "t.yaml:17:14: scaling.tolerance: 0.7 is out of range (allowed 0 to below 0.5)",
            "t.yaml:19:20: scaling.scale_up.confirmations: 2.5 is not a whole number",
            "t.yaml:20:15: scaling.scale_up.max_step: \"0\" is out of range (1 to 10000 instances) (write a count like 4 or a percentage like 25%)",
            "t.yaml:21:21: scaling.scale_up.fast_threshold: 1.05 must be above the tolerance band (above 1.1)",
            "t.yaml:23:20: scaling.scale_down.stabilization: \"10x\" is not a duration (unknown unit; write e.g. 90s, 5m, 1h30m, 2d)",
            "t.yaml:24:15: scaling.scale_down.max_step: \"2000%\" is out of range (a percentage above 0 and at most 1000%) (write a count like 4 or a percentage like 25%)",
            "t.yaml:25:15: missing_data: \"scale_down\" is not one of \"hold\", \"scale_up\", {fixed: N} (missing data never scales in)",
            "t.yaml:28:12: prewarm[0].start: \"11-27T00:00\" is not a local date-time with a year (write e.g. 2026-11-27T00:00)",
            "t.yaml:30:16: prewarm[0].time_zone: \"America/New_Yrok\" is not an IANA time zone (e.g. America/New_York, Asia/Shanghai, UTC)",
            "t.yaml:31:15: warning: prewarm[0].capacity: 50 is above max 5: the floor is capped at 5",
            "t.yaml:33:11: prewarm[1].cron: \"0 25 * * *\": hour is \"25\" (allowed 0-23; the fields are minute hour day-of-month month day-of-week)",
            "t.yaml:36:15: warning: prewarm[1].capacity: 3 is not above min 10: the rule has no effect",
            "t.yaml:38:10: scale_in.order: \"random\" is not one of \"newest\", \"oldest\", \"lowest_cpu\"",
        ],
    );
}

#[test]
fn structural_errors_carry_yaml_locations() {
    check("name: x\n  pool: [\n", &["t.yaml:2:7: mapping values are not allowed in this context"]);
    check(&with("metricz: []\n"), &["t.yaml:7:1: unknown field `metricz` (did you mean `metrics`?)"]);
    check(&with("metricz: []\n"), &["t.yaml:7:1: unknown field `metricz` (did you mean `metrics`?)"]);
    check(&BASE.replace("max: 10", "max: \"ten\""), &["t.yaml:4:6: invalid floating point"]);
    let nested = with("scaling:\n  scale_up:\n    cooldwn: 2m\n");
    let r = parse_policy("t.yaml", &nested);
    let d = &r.diagnostics[0];
    assert_eq!((d.line, d.column), (9, 5), "{d}");
    assert!(d.message.starts_with("unknown field `cooldwn`"), "{d}");
}

#[test]
fn required_fields_point_at_their_parent() {
    check(
        "interval: 1m\n",
        &[
            "t.yaml:1:1: name: is required",
            "t.yaml:1:1: pool: is required (a `tag: {key, value}` or an `auto_scaling_group`)",
            "t.yaml:1:1: min: is required",
            "t.yaml:1:1: max: is required",
            "t.yaml:1:1: metrics: is required (at least one metric)",
        ],
    );
    check(
        &BASE.replace("statistic: Average, period: 1m, target: 50", "statistic: Average, period: 1m"),
        &[
            "t.yaml:6:5: metrics[0].target: is required (`target` for a utilisation, `target_per_instance` for a backlog)",
        ],
    );
    check(
        &BASE.replace("{tag: {key: pool, value: web}}", "{}"),
        &["t.yaml:2:7: pool: needs a `tag: {key, value}` or an `auto_scaling_group`"],
    );
}

#[test]
fn pool_and_metric_conflicts() {
    check(
        &BASE.replace("{tag: {key: pool, value: web}}", "{tag: {key: pool, value: web}, auto_scaling_group: web}"),
        &["t.yaml:2:58: pool: give either `tag` or `auto_scaling_group`, not both"],
    );
    check(
        &BASE.replace("target: 50}", "target: 50, target_per_instance: 10}"),
        &["t.yaml:6:122: metrics[0].target_per_instance: give either `target` or `target_per_instance`, not both"],
    );
    check(
        &BASE.replace("target: 50}", "target: 50, ceiling: 40}"),
        &["t.yaml:6:110: metrics[0].ceiling: 40 must be above the target 50"],
    );
    check(
        &with("  - {id: cpu, namespace: X, name: Y, target_per_instance: 5}\n"),
        &["t.yaml:7:10: metrics[1].id: \"cpu\" is used twice (first at line 6)"],
    );
    check(
        &BASE.replace("target: 50}", "target: 50, weight: 0}"),
        &[
            "t.yaml:6:3: metrics: weights sum to 0 (at least one metric needs a weight above 0)",
            "t.yaml:6:109: warning: metrics[0].weight: is 0 and the metric has no ceiling: it never affects capacity",
        ],
    );
    check(
        &BASE.replace("target: 50}", "target: 50, per_instance: avg, dimensions: {InstanceId: i-1}}"),
        &["t.yaml:6:145: metrics[0].dimensions.InstanceId: is added per member for a per_instance metric: remove it"],
    );
    check(
        &with("metrics: []\n").replace("metrics:\n  - {id", "unused:\n  - {id"),
        &[
            "t.yaml:5:1: unknown field `unused` (expected one of name, pool, min, max, interval, dry_run, metrics, scaling, history, missing_data, prewarm, scale_in, scale_out, predictive, composite, freeze_scale_in, adopt)",
        ],
    );
}

#[test]
fn history_must_hold_the_stabilisation_window() {
    check(
        &with("scaling:\n  scale_down: {stabilization: 30m}\nhistory: {window: 10m, max_age: 30s}\n"),
        &[
            "t.yaml:9:19: history.window: 10m is shorter than scale_down.stabilization 30m (the window must hold it)",
            "t.yaml:9:33: warning: history.max_age: 30s is shorter than metric \"cpu\"'s period 1m: its datapoints will often count as missing",
        ],
    );
}

#[test]
fn missing_data_forms() {
    for (yaml, want) in [
        ("missing_data: hold\n", MissingData::Hold),
        ("missing_data: scale_up\n", MissingData::ScaleUp),
        ("missing_data: {fixed: 6}\n", MissingData::Fixed(6)),
    ] {
        let r = parse_policy("t.yaml", &with(yaml));
        assert_eq!(r.policy.map(|p| p.missing_data), Some(want), "{yaml}");
    }
    check(
        &with("missing_data: {fixed: -1}\n"),
        &["t.yaml:7:15: missing_data.fixed: -1 is out of range (allowed 0 to 10000)"],
    );
}

#[test]
fn prewarm_window_rules() {
    check(
        &with("prewarm:\n  - {name: a, start: 2026-11-27T00:00, cron: \"0 20 * * *\", time_zone: UTC, capacity: 5}\n"),
        &["t.yaml:8:46: prewarm[0].cron: give either `start` (one-off) or `cron` (recurring), not both"],
    );
    check(
        &with("prewarm:\n  - {name: a, start: 2026-11-27T00:00, end: 2026-11-26T00:00, time_zone: UTC, capacity: 5}\n"),
        &["t.yaml:8:45: prewarm[0].end: must be after start"],
    );
    check(
        &with("prewarm:\n  - {name: a, cron: \"0 20 * * *\", time_zone: UTC, capacity: 5}\n"),
        &["t.yaml:8:5: prewarm[0].duration: is required for a cron window"],
    );
    check(
        &with("prewarm:\n  - {name: a, start: 2026-11-27T00:00, time_zone: UTC, capacity: 5}\n"),
        &["t.yaml:8:22: prewarm[0].end: is required (or `duration`)"],
    );
    check(
        &with(
            "prewarm:\n  - {name: a, start: 2026-11-27T00:00, duration: 1h, time_zone: UTC, capacity: 5}\n  - {name: a, start: 2026-11-28T00:00, duration: 1h, time_zone: UTC, capacity: 5}\n",
        ),
        &["t.yaml:9:12: prewarm[1].name: \"a\" is used by another pre-warm rule"],
    );
    check(
        &with(
            "prewarm:\n  - {name: a, cron: \"0 20 * * *\", end: 2026-11-28T00:00, duration: 1h, time_zone: UTC, capacity: 5}\n",
        ),
        &["t.yaml:8:40: prewarm[0].end: is for one-off windows: a cron window takes `duration`"],
    );
}

#[test]
fn prewarm_release_after() {
    // Absent: a hard floor for the whole window (the default is unchanged).
    let hard = with("prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 2h, time_zone: UTC, capacity: 5}\n");
    check(&hard, &[]);
    assert_eq!(parse_policy("t.yaml", &hard).policy.unwrap().prewarm[0].release_after, None);
    let soft = with(
        "prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 2h, time_zone: UTC, capacity: 5, release_after: 30m}\n",
    );
    check(&soft, &[]);
    assert_eq!(parse_policy("t.yaml", &soft).policy.unwrap().prewarm[0].release_after, Some(Duration::from_secs(1800)));
    // At most the event: exactly its duration is allowed (the floor then holds to the end).
    check(
        &with(
            "history: {window: 3h}\nprewarm:\n  - {name: a, start: 2026-11-27T20:00, end: 2026-11-27T22:00, time_zone: UTC, capacity: 5, release_after: 2h}\n",
        ),
        &[],
    );
    check(
        &with(
            "prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 20m, time_zone: UTC, capacity: 5, release_after: 30m}\n",
        ),
        &[
            "t.yaml:8:94: prewarm[0].release_after: 30m is longer than the event (20m): the floor would never be released",
        ],
    );
    check(
        &with(
            "history: {window: 3h}\nprewarm:\n  - {name: a, start: 2026-11-27T20:00, end: 2026-11-27T22:00, time_zone: UTC, capacity: 5, release_after: 2h1m}\n",
        ),
        &[
            "t.yaml:9:107: prewarm[0].release_after: 2h1m is longer than the event (2h): the floor would never be released",
        ],
    );
    check(
        &with(
            "prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 2h, time_zone: UTC, capacity: 5, release_after: 0s}\n",
        ),
        &["t.yaml:8:93: prewarm[0].release_after: must be above 0s"],
    );
    check(
        &with(
            "prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 2h, time_zone: UTC, capacity: 5, release_after: later}\n",
        ),
        &[
            "t.yaml:8:93: prewarm[0].release_after: \"later\" is not a duration (expected a number; write e.g. 90s, 5m, 1h30m, 2d)",
        ],
    );
    // It looks back over the evaluation records, which are kept for history.window (30m here).
    check(
        &with(
            "prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 2h, time_zone: UTC, capacity: 5, release_after: 45m}\n",
        ),
        &[
            "t.yaml:8:93: prewarm[0].release_after: 45m is longer than history.window 30m (the evaluations it looks back on are kept that long)",
        ],
    );
    // One rule's error leaves it out, and the others' are still reported.
    check(
        &with(
            "prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 2h, time_zone: UTC, capacity: 5, release_after: 0s}\n  - {name: b, cron: \"0 8 * * *\", duration: 10m, time_zone: UTC, capacity: 5, release_after: 11m}\n",
        ),
        &[
            "t.yaml:8:93: prewarm[0].release_after: must be above 0s",
            "t.yaml:9:93: prewarm[1].release_after: 11m is longer than the event (10m): the floor would never be released",
        ],
    );
}

#[test]
fn policy_set_rejects_shared_pools_and_names() {
    let a = parse_policy("a.yaml", BASE).policy.unwrap();
    let b = parse_policy("b.yaml", &BASE.replace("name: web", "name: web2")).policy.unwrap();
    let c = parse_policy("c.yaml", &BASE.replace("value: web", "value: other")).policy.unwrap();
    let got: Vec<String> =
        check_policy_set(&[("a.yaml", &a), ("b.yaml", &b), ("c.yaml", &c)]).iter().map(ToString::to_string).collect();
    assert_eq!(
        got,
        [
            "b.yaml:1:1: pool: instances tagged pool=web are already claimed by a.yaml: two policies cannot scale the same pool",
            "c.yaml:1:1: name: \"web\" is also the name of the policy in a.yaml",
        ]
    );
}

/// Finding 2: `team=web` and `vmscaler:pool=api` can both be on one instance; only one key
/// with distinct values keeps tagged pools apart.
#[test]
fn policy_set_rejects_any_possible_tag_overlap() {
    let tagged = |name: &str, key: &str, value: &str| {
        let text = BASE
            .replace("name: web", &format!("name: {name}"))
            .replace("key: pool, value: web", &format!("key: \"{key}\", value: {value}"));
        parse_policy("x.yaml", &text).policy.unwrap_or_else(|| panic!("{text}"))
    };
    let web = tagged("web", "team", "web");
    let api = tagged("api", "vmscaler:pool", "api");
    let other = tagged("other", "vmscaler:pool", "other");
    let got: Vec<String> = check_policy_set(&[("web.yaml", &web), ("api.yaml", &api), ("other.yaml", &other)])
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        got,
        [
            "api.yaml:1:1: pool: tag vmscaler:pool=api overlaps team=web claimed by web.yaml: one instance can carry \
             both tags, so two policies could act on it: tagged pools must share one tag key, with distinct values",
            "other.yaml:1:1: pool: tag vmscaler:pool=other overlaps team=web claimed by web.yaml: one instance can \
             carry both tags, so two policies could act on it: tagged pools must share one tag key, with distinct values",
        ]
    );
    // One key, distinct values: no overlap.
    assert!(check_policy_set(&[("api.yaml", &api), ("other.yaml", &other)]).is_empty());
    // The order decides which one is reported: the running one goes first.
    let got = check_policy_set(&[("api.yaml", &api), ("web.yaml", &web)]);
    assert_eq!(got.iter().map(|d| d.file.as_str()).collect::<Vec<_>>(), ["web.yaml"]);
}

#[test]
fn remaining_messages_each_with_their_location() {
    let m = "  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, statistic: Average, period: 1m, target: 50}\n";
    let cases: &[(&str, &str)] = &[
        (&BASE.replace("name: web", "name: \"\""), "t.yaml:1:7: name: is empty"),
        (&BASE.replace("target: 50}", "target: 0}"), "t.yaml:6:97: metrics[0].target: 0 must be a number above 0"),
        (
            &BASE.replace("target: 50}", "target: 50, ceiling: -3}"),
            "t.yaml:6:110: metrics[0].ceiling: -3 must be a number above 0",
        ),
        (
            &BASE.replace("target: 50}", "target: 50, weight: .nan}"),
            "t.yaml:6:109: metrics[0].weight: NaN is not a number",
        ),
        (&BASE.replace("namespace: AWS/EC2, ", ""), "t.yaml:6:5: metrics[0].namespace: is required"),
        (
            &BASE.replace(m, "").replace("metrics:\n", "metrics: []\n"),
            "t.yaml:5:10: metrics: is empty (at least one metric)",
        ),
        (&BASE.replace("key: pool", "key: \"\""), "t.yaml:2:19: pool.tag.key: \"\" must be 1 to 128 characters"),
        (
            &BASE.replace("value: web", &format!("value: {}", "v".repeat(257))),
            "t.yaml:2:32: pool.tag.value: must be at most 256 characters",
        ),
        (
            &with("scaling:\n  scale_up: {max_step: lots}\n"),
            "t.yaml:8:24: scaling.scale_up.max_step: \"lots\" is not a step (write a count like 4 or a percentage like 25%)",
        ),
        (
            &with("scaling:\n  scale_up: {max_step: \"x%\"}\n"),
            "t.yaml:8:24: scaling.scale_up.max_step: \"x%\" is not a percentage (write a count like 4 or a percentage like 25%)",
        ),
        (
            &with("scaling:\n  scale_up: {cooldown: 2d}\n"),
            "t.yaml:8:24: scaling.scale_up.cooldown: 2d is longer than 1d",
        ),
        (
            &with("scaling:\n  scale_down: {cooldown: 36h}\n"),
            "t.yaml:8:26: scaling.scale_down.cooldown: 1d12h is longer than 1d",
        ),
        (&with("history: {window: 8d}\n"), "t.yaml:7:19: history.window: 8d is longer than 7d"),
        (
            &with("scaling:\n  scale_down: {acceleration: 0.5}\n"),
            "t.yaml:8:30: scaling.scale_down.acceleration: 0.5 is out of range (allowed 1 to 10)",
        ),
        (
            &with("scaling:\n  scale_down: {confirmed_stabilization: 20m}\n"),
            "t.yaml:8:41: scaling.scale_down.confirmed_stabilization: 20m is longer than scale_down.stabilization 10m (it is the recent part of that window)",
        ),
        (
            &with("scaling:\n  scale_down: {confirmed_stabilization: 0s}\n"),
            "t.yaml:8:41: scaling.scale_down.confirmed_stabilization: must be above 0s",
        ),
        (
            &with("scaling:\n  scale_down: {confirmed_stabilization: soon}\n"),
            "t.yaml:8:41: scaling.scale_down.confirmed_stabilization: \"soon\" is not a duration (expected a number; write e.g. 90s, 5m, 1h30m, 2d)",
        ),
        (
            &with("prewarm:\n  - {name: a, cron: \"0 20 * * *\", duration: 0s, time_zone: UTC, capacity: 5}\n"),
            "t.yaml:8:45: prewarm[0].duration: must be above 0s",
        ),
        (
            &with("prewarm:\n  - {name: a, start: 2026-11-27T00:00, duration: 0s, time_zone: UTC, capacity: 5}\n"),
            "t.yaml:8:50: prewarm[0].duration: must be above 0s",
        ),
        (
            &with(
                "prewarm:\n  - {name: a, start: 2026-11-27T00:00, end: 2026-11-28T00:00, duration: 1h, time_zone: UTC, capacity: 5}\n",
            ),
            "t.yaml:8:73: prewarm[0].duration: give either `end` or `duration`, not both",
        ),
        (
            &with("prewarm:\n  - {name: a, time_zone: UTC, capacity: 5}\n"),
            "t.yaml:8:5: prewarm[0].start: is required (`start` for a one-off window, or `cron` for a recurring one)",
        ),
        (
            &with("prewarm:\n  - {name: a, start: 2026-11-27T00:00, duration: 1h, time_zone: UTC}\n"),
            "t.yaml:8:5: prewarm[0].capacity: is required",
        ),
        (
            &with("prewarm:\n  - {name: a, start: 2026-11-27T00:00, duration: 1h, time_zone: UTC, capacity: 0}\n"),
            "t.yaml:8:80: prewarm[0].capacity: 0 is out of range (allowed 1 to 10000)",
        ),
    ];
    let mut wrong = Vec::new();
    for (text, want) in cases {
        let r = parse_policy("t.yaml", text);
        let got: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
        if got != [*want] || r.policy.is_some() {
            wrong.push(format!("want {want}\n got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    check(
        &with("history: {max_age: 0s}\n"),
        &[
            "t.yaml:7:20: history.max_age: must be above 0s",
            "t.yaml:7:20: warning: history.max_age: 0s is shorter than metric \"cpu\"'s period 1m: its datapoints will often count as missing",
        ],
    );
    // A warning, not an error: the policy still loads.
    check(
        &BASE
            .replace("{tag: {key: pool, value: web}}", "{auto_scaling_group: web}")
            .replace("metrics:", "scale_in: {protect_tag: {key: keep, value: \"yes\"}}\nmetrics:"),
        &[
            "t.yaml:5:25: warning: scale_in.protect_tag: has no effect on an Auto Scaling group (use the group's scale-in protection)",
        ],
    );
}

#[test]
fn predictive_defaults_and_errors() {
    let p = parse_policy("t.yaml", &with("predictive: {}\n")).policy.unwrap();
    let pr = p.predictive.unwrap();
    assert_eq!(pr, Predictive::default());
    assert_eq!(pr.mode, PredictiveMode::ForecastOnly, "forecast_only unless asked");
    assert_eq!(pr.history, Duration::from_secs(14 * 86_400));
    assert!(pr.daily && pr.weekly);
    assert_eq!(pr.lead, Duration::from_secs(300));
    assert!(parse_policy("t.yaml", BASE).policy.unwrap().predictive.is_none(), "off without the block");
    let p = parse_policy(
        "t.yaml",
        &with("predictive:\n  mode: active\n  history: 28d\n  periods: [daily]\n  quantile: 0.9\n  margin: 10%\n  lead: 10m\n  max_error: 0.4\n"),
    )
    .policy
    .unwrap();
    let pr = p.predictive.unwrap();
    assert_eq!(
        (pr.mode, pr.history.as_secs(), pr.daily, pr.weekly, pr.quantile, pr.margin, pr.lead.as_secs(), pr.max_error),
        (PredictiveMode::Active, 28 * 86_400, true, false, 0.9, 0.1, 600, 0.4)
    );
    check(
        &with(
            "predictive:
  mode: always
  history: 90d
  periods: [hourly, weekly]
  quantile: 1.5
  margin: lots
  lead: 7h
  max_error: 0%
",
        ),
        &[
            "t.yaml:8:9: predictive.mode: \"always\" is not one of \"forecast_only\", \"active\"",
            "t.yaml:9:12: predictive.history: 90d is out of range (allowed 3d to 63d: CloudWatch keeps 5-minute data for 63 days)",
            "t.yaml:10:13: predictive.periods[0]: \"hourly\" is not one of \"daily\", \"weekly\"",
            "t.yaml:11:13: predictive.quantile: 1.5 is out of range (a quantile above 0 and below 1, e.g. 0.75)",
            "t.yaml:12:11: predictive.margin: \"lots\" is not a fraction (write e.g. 10% or 0.1)",
            "t.yaml:13:9: predictive.lead: 7h is longer than 6h",
            "t.yaml:14:14: predictive.max_error: \"0%\" is out of range (allowed 1% to 1000%)",
        ],
    );
    check(&with("predictive: {moed: active}\n"), &["t.yaml:7:14: unknown field `moed` (did you mean `mode`?)"]);
}

const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef";

#[test]
fn target_groups_drain_timeout_and_pre_stop() {
    let text = BASE.replace(
        "{tag: {key: pool, value: web}}",
        &format!("{{tag: {{key: pool, value: web}}, target_groups: [{TG}]}}"),
    );
    check(&text, &[]);
    let p = parse_policy("t.yaml", &text).policy.unwrap();
    assert_eq!(p.target_groups, [TG]);
    assert_eq!((p.scale_in.drain_timeout, p.scale_in.pre_stop.as_ref()), (None, None));
    assert!(p.drains());
    let full = format!(
        "{text}scale_in:\n  drain_timeout: 2m\n  pre_stop: {{url: \"http://{{private_ip}}:8080/drain\", timeout: 10s}}\n"
    );
    check(&full, &[]);
    let p = parse_policy("t.yaml", &full).policy.unwrap();
    assert_eq!(p.scale_in.drain_timeout, Some(Duration::from_secs(120)));
    let hook = p.scale_in.pre_stop.unwrap();
    assert_eq!(
        (hook.url_for("10.0.0.7"), hook.timeout),
        ("http://10.0.0.7:8080/drain".to_owned(), Duration::from_secs(10))
    );
    let hook = parse_policy("t.yaml", &format!("{text}scale_in: {{pre_stop: {{url: \"http://{{private_ip}}/x\"}}}}\n"))
        .policy
        .unwrap()
        .scale_in
        .pre_stop
        .unwrap();
    assert_eq!(hook.timeout, PRE_STOP_TIMEOUT_DEFAULT);

    // Shapes: the partition, the service, the account, the name and the id are all checked.
    for ok in [
        TG,
        "arn:aws-cn:elasticloadbalancing:cn-north-1:123456789012:targetgroup/a/1",
        "arn:aws-us-gov:elasticloadbalancing:us-gov-west-1:123456789012:targetgroup/my-tg-1/50dc6c495c0c9188",
    ] {
        assert!(valid_target_group_arn(ok), "{ok}");
    }
    for bad in [
        "web",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/web/0123456789abcdef",
        "arn:aws:elasticloadbalancing:us-east-1:12345678901:targetgroup/web/0123456789abcdef",
        "arn:aws:ec2:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/-web/0123456789abcdef",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/xyz",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web",
        "arn:azure:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef",
        "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef/extra",
    ] {
        assert!(!valid_target_group_arn(bad), "{bad}");
    }

    let list = |items: &str| {
        BASE.replace(
            "{tag: {key: pool, value: web}}",
            &format!("{{tag: {{key: pool, value: web}}, target_groups: [{items}]}}"),
        )
    };
    check(
        &list(&format!("{TG}, web-tg, {TG}")),
        &[
            "t.yaml:2:140: pool.target_groups[1]: \"web-tg\" is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)",
            "t.yaml:2:148: pool.target_groups[2]: \"arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/0123456789abcdef\" is listed twice",
        ],
    );
    check(&list(""), &["t.yaml:2:53: pool.target_groups: is empty (list target group ARNs, or leave it out)"]);
    check(
        &BASE.replace("{tag: {key: pool, value: web}}", &format!("{{auto_scaling_group: web, target_groups: [{TG}]}}")),
        &[
            "t.yaml:2:48: pool.target_groups: an Auto Scaling group registers and drains its own instances: attach the target groups to the group instead",
        ],
    );
    check(
        &format!(
            "{text}scale_in:\n  drain_timeout: 2h\n  pre_stop: {{url: \"https://{{private_ip}}/drain\", timeout: 0s}}\n"
        ),
        &[
            "t.yaml:8:18: scale_in.drain_timeout: 2h is longer than 1h (AWS's longest deregistration delay)",
            "t.yaml:9:19: scale_in.pre_stop.url: \"https://{private_ip}/drain\" must start with http:// (the hook goes to the member's private address; https is not supported)",
            "t.yaml:9:58: scale_in.pre_stop.timeout: 0s is out of range (allowed above 0s, up to 15m)",
        ],
    );
    check(
        &with("scale_in: {drain_timeout: 1m, pre_stop: {url: \"http://10.0.0.1/drain\"}}\n"),
        &[
            "t.yaml:7:27: warning: scale_in.drain_timeout: has no effect without pool.target_groups",
            "t.yaml:7:47: warning: scale_in.pre_stop.url: \"http://10.0.0.1/drain\" has no {private_ip}: every member's hook goes to the same address",
        ],
    );
}
