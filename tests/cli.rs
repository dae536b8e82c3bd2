//! The CLI as a person runs it: `validate` and `plan` on real files, exit codes included.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vmscaler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmscaler"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run vmscaler")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmscaler-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_shipped_policy_validates() {
    let set = vmscaler::policies::load_dir(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/policies")));
    let diags: Vec<String> = set.diagnostics.iter().map(ToString::to_string).collect();
    assert!(diags.is_empty(), "{diags:#?}");
    assert_eq!(set.policies.len(), set.files.len());
    let names: Vec<&str> = set.policies.iter().map(|(_, p)| p.name.as_str()).collect();
    assert_eq!(names, ["gpu-transcode", "queue-workers", "web-storefront"]);

    let out = vmscaler(&["validate", "policies/", "--deny-warnings"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn broken_policy_exits_78_with_locations() {
    let dir = scratch("broken");
    std::fs::write(
        dir.join("web.yaml"),
        "name: web\npool: {tag: {key: pool, value: web}}\nmin: 2\nmax: 10\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50, weight: -1}\n",
    )
    .unwrap();
    let out = vmscaler(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let want =
        format!("{}:6:77: metrics[0].weight: -1 is negative (weights must be >= 0)", dir.join("web.yaml").display());
    assert!(stderr.contains(&want), "{stderr}");

    let out = vmscaler(&["validate", dir.to_str().unwrap(), "--output", "json"]);
    assert_eq!(out.status.code(), Some(78));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ok"], false);
    assert_eq!(json["diagnostics"][0]["line"], 6);
    assert_eq!(json["diagnostics"][0]["column"], 77);
    assert_eq!(json["diagnostics"][0]["field"], "metrics[0].weight");
}

#[test]
fn warnings_fail_only_with_deny_warnings() {
    let dir = scratch("warn");
    std::fs::write(
        dir.join("w.yaml"),
        "name: w\npool: {auto_scaling_group: g}\nmin: 2\nmax: 4\nmetrics:\n  - {id: q, namespace: AWS/SQS, name: Depth, target_per_instance: 5}\nprewarm:\n  - {name: big, cron: \"0 20 * * *\", duration: 1h, time_zone: UTC, capacity: 9}\n",
    )
    .unwrap();
    let d = dir.to_str().unwrap();
    assert_eq!(vmscaler(&["validate", d]).status.code(), Some(0));
    let out = vmscaler(&["validate", d, "--deny-warnings"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("w.yaml:8:77: warning: prewarm[0].capacity: 9 is above max 4")
    );
}

#[test]
fn duplicate_pools_across_files_name_both() {
    let dir = scratch("dup");
    let body = |name: &str| {
        format!(
            "name: {name}\npool: {{tag: {{key: pool, value: web}}}}\nmin: 1\nmax: 3\nmetrics:\n  - {{id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}}\n"
        )
    };
    std::fs::write(dir.join("a.yaml"), body("a")).unwrap();
    std::fs::write(dir.join("b.yaml"), body("b")).unwrap();
    let out = vmscaler(&["validate", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(78));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("b.yaml:1:1: pool: instances tagged pool=web are already claimed by"), "{stderr}");
    assert!(stderr.contains("a.yaml: two policies cannot scale the same pool"), "{stderr}");
}

#[test]
fn missing_path_is_a_config_error_not_a_panic() {
    let out = vmscaler(&["validate", "/nonexistent/policies"]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/policies:1:1: cannot read"));
}

#[test]
fn plan_explains_a_confirmed_scale_up_and_a_prewarm_floor() {
    let dir = scratch("plan");
    let csv = dir.join("m.csv");
    std::fs::write(
        &csv,
        "timestamp,cpu,requests\n2027-11-26T04:00:00Z,40,1000\n2027-11-26T04:01:00Z,85,1500\n2027-11-26T04:02:00Z,88,1600\n2027-11-26T04:03:00Z,91,1650\n",
    )
    .unwrap();
    let c = csv.to_str().unwrap();
    let out = vmscaler(&["plan", "--policy", "policies/web-storefront.yaml", "--metrics", c, "--current", "6"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("scale up: current 6 -> desired 10"), "{stdout}");
    assert!(stdout.contains("cpu saturated: its ratio 1.655 drives the score"), "{stdout}");
    assert!(stdout.contains("start i-plan00006, i-plan00007, i-plan00008, i-plan00009"), "{stdout}");

    // 04:50Z is 23:50 in New York: inside Black Friday's 20-minute lead.
    let out = vmscaler(&[
        "plan",
        "--policy",
        "policies/web-storefront.yaml",
        "--metrics",
        c,
        "--current",
        "6",
        "--at",
        "2027-11-26T04:50:00Z",
        "--output",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["decision"]["desired"], 40);
    assert_eq!(json["decision"]["floor"]["rule"], "black-friday-2027");
    assert_eq!(json["decision"]["floor"]["event_start"], "2027-11-26T05:00:00Z");
}

/// Issue 10, finding 10: `plan --current 4294967295` used to abort allocating 309 GB; now a
/// clear error, exit 64, at once.
#[test]
fn plan_refuses_a_fleet_beyond_its_bound() {
    let dir = scratch("plan-bound");
    let csv = dir.join("m.csv");
    std::fs::write(&csv, "timestamp,cpu\n2026-11-27T04:00:00Z,40\n").unwrap();
    let c = csv.to_str().unwrap();
    let out =
        vmscaler(&["plan", "--policy", "policies/web-storefront.yaml", "--metrics", c, "--current", "4294967295"]);
    assert_eq!(out.status.code(), Some(64), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--current 4294967295 is above 10000"), "{err}");
    let out = vmscaler(&[
        "plan",
        "--policy",
        "policies/web-storefront.yaml",
        "--metrics",
        c,
        "--current",
        "10",
        "--warm",
        "100000000",
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("plus --warm 100000000"));
}

/// `vmscaler forecast --trace`: offline, the model learns from a metrics CSV (replayed as
/// `plan` replays it) and shows the next 48 hours; a daily peak in the rows is a floor in the
/// same hour tomorrow, and a quiet hour is not.
#[test]
fn forecast_from_a_trace_learns_a_daily_peak_offline() {
    let dir = scratch("forecast-trace");
    let policy = dir.join("web.yaml");
    std::fs::write(
        &policy,
        "name: web\npool: {tag: {key: pool, value: web}}\nmin: 2\nmax: 20\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\npredictive: {mode: active, history: 4d, lead: 10m}\n",
    )
    .unwrap();
    // Four days of 5-minute CPU on 4 instances: 90 % from 13:00 to 14:00 UTC, 20 % otherwise.
    let start = 1_795_000_000 - 1_795_000_000 % 86_400; // a midnight UTC
    let mut csv = String::from("timestamp,cpu\n");
    for i in 0..(4 * 288) {
        let t = start + i * 300;
        let hour = (t % 86_400) / 3600;
        csv.push_str(&format!("{t},{}\n", if hour == 13 { 90.0 } else { 20.0 }));
    }
    let trace = dir.join("cpu.csv");
    std::fs::write(&trace, csv).unwrap();
    let (p, t) = (policy.to_str().unwrap(), trace.to_str().unwrap());
    let svg = dir.join("forecast.svg");
    let out = vmscaler(&[
        "forecast",
        "--policy",
        p,
        "--trace",
        t,
        "--current",
        "4",
        "--output",
        "json",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let f = &v["forecast"];
    assert_eq!(f["state"], "ready", "{f:#}");
    let next = f["next"].as_array().expect("next");
    assert_eq!(next.len(), 48, "the next 48 hours");
    let floor_at = |h: i64| {
        next.iter()
            .find(|x| x["at"].as_str().is_some_and(|a| a.contains(&format!("T{h:02}:00"))))
            .and_then(|x| x["floor"].as_u64())
            .unwrap_or_else(|| panic!("no hour {h}: {next:#?}"))
    };
    // 4 instances at 90 % need 8 at target 50: the peak hour's floor is well above a quiet one.
    assert!(floor_at(13) >= 7, "peak floor {}: {next:#?}", floor_at(13));
    assert!(floor_at(3) <= 2, "quiet floor {}: {next:#?}", floor_at(3));
    assert!(std::fs::read_to_string(&svg).unwrap().starts_with("<svg"));
    // Text: the same, for a person.
    let out = vmscaler(&["forecast", p, "--trace", t, "--current", "4", "--time-zone", "UTC"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("next 48 hours:"), "{text}");
    // A policy without `predictive:` is refused with the reason.
    std::fs::write(&policy, "name: web\npool: {tag: {key: pool, value: web}}\nmin: 2\nmax: 20\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\n").unwrap();
    let out = vmscaler(&["forecast", "--policy", p, "--trace", t]);
    assert_eq!(out.status.code(), Some(78));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no `predictive:` block"));
}
