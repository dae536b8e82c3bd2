//! Issue 16 ("operator trust"): dates that cannot slip, zones that say what they mean, stale and
//! never-firing windows that show, cron errors that name their field, every unknown field at once.

use super::*;

const BASE: &str = "name: web
pool: {tag: {key: pool, value: web}}
min: 2
max: 10
metrics:
  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, statistic: Average, period: 1m, target: 50}
";

fn with(extra: &str) -> String {
    format!("{BASE}{extra}")
}

/// Every diagnostic's rendering.
fn diags(text: &str) -> Vec<String> {
    parse_policy("t.yaml", text).diagnostics.iter().map(ToString::to_string).collect()
}

#[test]
fn a_start_with_an_offset_or_z_is_rejected_showing_the_local_form() {
    // Finding 1: `+08:00` was silently dropped (the floor started at 08:00 Shanghai), while `Z`
    // was rejected: one rule now, both rejected, each showing the same instant written in the
    // rule's zone.
    let offset = with(
        "prewarm:\n  - {name: d11, start: \"2027-11-11T00:00+08:00\", duration: 24h, time_zone: UTC, capacity: 5}\n",
    );
    assert_eq!(
        diags(&offset),
        ["t.yaml:8:24: prewarm[0].start: \"2027-11-11T00:00+08:00\" carries a UTC offset, which would be ignored: \
          start and end are local date-times in time_zone \"UTC\", where this instant is 2027-11-10T16:00 (or write \
          2027-11-11T00:00 and set time_zone to the IANA zone of +08:00)"]
    );
    let z = with(
        "prewarm:\n  - {name: d11, start: 2027-11-10T16:00Z, end: \"2027-11-11T16:00:30-05:00\", time_zone: Asia/Shanghai, capacity: 5}\n",
    );
    assert_eq!(
        diags(&z),
        [
            "t.yaml:8:24: prewarm[0].start: \"2027-11-10T16:00Z\" carries a UTC offset, which would be ignored: \
             start and end are local date-times in time_zone \"Asia/Shanghai\", where this instant is \
             2027-11-11T00:00 (or write 2027-11-10T16:00 and set time_zone to UTC)",
            "t.yaml:8:48: prewarm[0].end: \"2027-11-11T16:00:30-05:00\" carries a UTC offset, which would be ignored: \
             start and end are local date-times in time_zone \"Asia/Shanghai\", where this instant is \
             2027-11-12T05:00:30 (or write 2027-11-11T16:00:30 and set time_zone to the IANA zone of -05:00)",
        ]
    );
    // The local form in the rule's zone is what the floor uses.
    let local = with(
        "prewarm:\n  - {name: d11, start: 2027-11-11T00:00, duration: 24h, time_zone: Asia/Shanghai, capacity: 5}\n",
    );
    let p = parse_policy("t.yaml", &local).policy.unwrap();
    let PrewarmWhen::Once { start, .. } = &p.prewarm[0].when else { panic!("one-off") };
    assert_eq!(start.to_string(), "2027-11-10T16:00:00Z");
}

#[test]
fn legacy_and_abbreviated_zones_name_the_canonical_one() {
    let zone = |z: &str| {
        diags(&with(&format!(
            "prewarm:\n  - {{name: a, cron: \"0 20 * * *\", duration: 1h, time_zone: {z}, capacity: 5}}\n"
        )))
    };
    assert_eq!(
        zone("EST"),
        ["t.yaml:8:60: warning: prewarm[0].time_zone: \"EST\" is a legacy zone (a fixed UTC-5 with no daylight \
          saving time): write America/New_York for New York's local time"]
    );
    assert_eq!(
        zone("PST8PDT"),
        ["t.yaml:8:60: warning: prewarm[0].time_zone: \"PST8PDT\" is a legacy zone: write America/Los_Angeles"]
    );
    assert_eq!(
        zone("US/Eastern"),
        ["t.yaml:8:60: warning: prewarm[0].time_zone: \"US/Eastern\" is a legacy zone: write America/New_York"]
    );
    assert_eq!(
        zone("CST"),
        ["t.yaml:8:60: prewarm[0].time_zone: \"CST\" is not an IANA time zone: it is ambiguous (US Central or \
          China Standard Time): write America/Chicago or Asia/Shanghai"]
    );
    assert_eq!(
        zone("Beijing"),
        ["t.yaml:8:60: prewarm[0].time_zone: \"Beijing\" is not an IANA time zone: write Asia/Shanghai"]
    );
    assert_eq!(zone("Asia/Shanghai"), Vec::<String>::new());
    assert_eq!(zone("UTC"), Vec::<String>::new());
}

fn diags_at(text: &str, now: &str) -> Vec<String> {
    parse_policy_at("t.yaml", text, Some(now.parse().unwrap())).diagnostics.iter().map(ToString::to_string).collect()
}

#[test]
fn a_one_off_window_already_over_is_a_warning() {
    // Finding 2: a 2025 date validated with no warning.
    let past = with(
        "prewarm:\n  - {name: bf25, start: 2025-11-28T00:00, duration: 24h, time_zone: America/New_York, capacity: 5}\n",
    );
    assert_eq!(
        diags_at(&past, "2026-12-03T12:00:00Z"),
        ["t.yaml:8:5: warning: prewarm[0]: \"bf25\" ended 2025-11-29T00:00 America/New_York (369d ago): it will \
          never hold again (update its dates or remove it)"]
    );
    // Still to come, or under way: nothing to say.
    assert_eq!(diags_at(&past, "2025-11-28T12:00:00Z"), Vec::<String>::new());
    // Without a clock (the pure parse), no judgement about time.
    assert_eq!(diags(&past), Vec::<String>::new());
}

#[test]
fn a_cron_that_never_fires_in_the_next_year_is_a_warning() {
    let never = with("prewarm:\n  - {name: feb30, cron: \"0 0 30 2 *\", duration: 1h, time_zone: UTC, capacity: 5}\n");
    assert_eq!(
        diags_at(&never, "2026-12-03T12:00:00Z"),
        ["t.yaml:8:25: warning: prewarm[0].cron: \"0 0 30 2 *\" does not fire in the year after \
          2026-12-03 (UTC): the floor never holds"]
    );
    let daily = with("prewarm:\n  - {name: d, cron: \"0 20 * * *\", duration: 1h, time_zone: UTC, capacity: 5}\n");
    assert_eq!(diags_at(&daily, "2026-12-03T12:00:00Z"), Vec::<String>::new());
}

#[test]
fn a_cron_error_names_the_field_and_its_value() {
    let bad = |c: &str| {
        diags(&with(&format!("prewarm:\n  - {{name: x, cron: \"{c}\", duration: 1h, time_zone: UTC, capacity: 5}}\n")))
    };
    assert_eq!(
        bad("0 25 * * *"),
        ["t.yaml:8:21: prewarm[0].cron: \"0 25 * * *\": hour is \"25\" (allowed 0-23; the fields are minute hour \
          day-of-month month day-of-week)"]
    );
    assert_eq!(
        bad("0 20 * 13 *"),
        ["t.yaml:8:21: prewarm[0].cron: \"0 20 * 13 *\": month is \"13\" (allowed 1-12 or JAN-DEC; the fields are \
          minute hour day-of-month month day-of-week)"]
    );
    assert_eq!(
        bad("0 20 * *"),
        ["t.yaml:8:21: prewarm[0].cron: \"0 20 * *\" has 4 fields (write 5: minute hour day-of-month month \
          day-of-week, e.g. \"0 20 * * *\" for 20:00 daily)"]
    );
}

#[test]
fn every_unknown_field_is_reported_in_one_run_with_the_closest_name() {
    // Finding 3: four typos took four runs.
    let text = "name: web
pool: {tag: {key: pool, vlaue: web}}
min: 2
max: 10
intreval: 1m
metrics:
  - id: cpu
    namespace: AWS/EC2
    name: CPUUtilization
    traget: 50
    wieght: 1
scaling:
  scale_up:
    cooldwn: 2m
    confirmations: 2
prewarm:
  - name: a
    cron: \"0 20 * * *\"
    duration: 1h
    time_zone: UTC
    capacity: 5
    lead_time: 10m
colour: blue
";
    let got = diags(text);
    // The last one lists the top-level fields (the list grows with the policy format).
    assert!(
        got[6].starts_with("t.yaml:23:1: unknown field `colour` (expected one of name, pool, min, max, interval,"),
        "{got:?}"
    );
    assert_eq!(got.len(), 7, "{got:?}");
    assert_eq!(
        got[..6],
        [
            "t.yaml:2:25: unknown field `vlaue` (did you mean `value`?)",
            "t.yaml:5:1: unknown field `intreval` (did you mean `interval`?)",
            "t.yaml:10:5: unknown field `traget` (did you mean `target`?)",
            "t.yaml:11:5: unknown field `wieght` (did you mean `weight`?)",
            "t.yaml:14:5: unknown field `cooldwn` (did you mean `cooldown`?)",
            "t.yaml:22:5: unknown field `lead_time` (did you mean `lead`?)",
        ]
    );
}

#[test]
fn an_interval_or_period_finer_than_an_aws_metric_is_a_warning() {
    let text = BASE.replace("min: 2", "min: 2\ninterval: 30s").replace("period: 1m", "period: 30s");
    assert_eq!(
        diags(&text),
        [
            "t.yaml:4:11: warning: interval: 30s is finer than any AWS/ metric's datapoints (at best one a minute: \
             1m with EC2 detailed monitoring, 5m with basic): evaluations between datapoints see nothing new",
            "t.yaml:7:85: warning: metrics[0].period: 30s is finer than AWS/EC2 publishes (at best 1m, with \
             detailed monitoring; 5m with basic): there will be no datapoints",
        ]
    );
}

#[test]
fn the_shipped_composite_example_validates() {
    let text = include_str!("../../../../policies/examples/composite-threshold.yaml");
    let r = parse_policy("composite-threshold.yaml", text);
    assert!(r.diagnostics.is_empty(), "{:?}", r.diagnostics);
    let p = r.policy.unwrap();
    let c = p.composite.unwrap();
    assert_eq!((c.scale_up_above, c.periods), (0.8, 2));
    let caps: Vec<Option<f64>> = p.metrics.iter().map(|m| m.cap).collect();
    assert_eq!(caps, [None, Some(2.0), None]);
}
