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
