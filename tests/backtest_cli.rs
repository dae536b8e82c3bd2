//! `vmscaler backtest` as a person runs it, on the real traces copied into `tests/data`.
//!
//! The report snapshot (`tests/data/expected/`) pins the figures for one real trace; after an
//! intended engine change, regenerate it with `UPDATE_SNAPSHOTS=1` and review the diff.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

fn vmscaler(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmscaler")).args(args).current_dir(DATA).output().expect("run vmscaler")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vmscaler-backtest-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Instance-hours recomputed from a supply CSV: each row's billed capacity until the next row.
fn instance_hours_from_csv(csv: &str, end: jiff::Timestamp) -> f64 {
    let mut rows = csv.lines();
    assert_eq!(rows.next(), Some("timestamp,demand,serving,billed,desired"));
    let parsed: Vec<(jiff::Timestamp, f64)> = rows
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().expect("timestamp"), f[3].parse().expect("billed"))
        })
        .collect();
    let mut total = 0.0;
    for (i, (t, billed)) in parsed.iter().enumerate() {
        let until = parsed.get(i + 1).map_or(end, |n| n.0);
        total += billed * until.duration_since(*t).as_secs_f64() / 3600.0;
    }
    total
}

#[test]
fn nab_cpu_report_matches_snapshot_and_its_csvs() {
    let out_dir = scratch("nab");
    let out = vmscaler(&[
        "backtest",
        "--policy",
        "policies/cpu-api.yaml",
        "--trace",
        "traces/nab-aws-cloudwatch/ec2_cpu_utilization_ac20cd.csv",
        "--cpu-fleet",
        "10",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 gap(s) (5 missing point(s))"), "{stderr}");

    let md = read(&out_dir.join("report.md"));
    let expected_path = Path::new(DATA).join("expected/ec2_cpu_utilization_ac20cd-report.md");
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&expected_path, &md).unwrap();
    }
    assert_eq!(md, read(&expected_path), "report.md differs from the snapshot (UPDATE_SNAPSHOTS=1 to accept)");

    let json: serde_json::Value = serde_json::from_str(&read(&out_dir.join("report.json"))).unwrap();
    let strategies = json["strategies"].as_array().unwrap();
    let names: Vec<&str> = strategies.iter().map(|s| s["strategy"].as_str().unwrap()).collect();
    assert_eq!(names, ["policy", "hpa", "target-tracking", "static", "oracle"]);
    let end: jiff::Timestamp = json["trace"]["end"].as_str().unwrap().parse().unwrap();
    assert_eq!(json["trace"]["gap_count"], 2);
    for s in strategies {
        let name = s["strategy"].as_str().unwrap();
        let csv = read(&out_dir.join(format!("supply-{name}.csv")));
        let hours = instance_hours_from_csv(&csv, end);
        let reported = s["instance_hours"].as_f64().unwrap();
        assert!((hours - reported).abs() < 1e-6, "{name}: csv {hours} vs report {reported}");
    }
    let oracle = &strategies[4];
    assert_eq!(oracle["under_provisioned_minutes"], 0.0);
    assert_eq!(oracle["cost_vs_oracle"], 1.0);

    let svg = read(&out_dir.join("chart.svg"));
    assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
    for color in ["#d62728", "#1f77b4", "#ff7f0e", "#7f7f7f", "#2ca02c"] {
        assert!(svg.contains(&format!("stroke=\"{color}\"")), "no line for {color}");
    }
    // The results table is also printed.
    assert!(String::from_utf8_lossy(&out.stdout).contains("| target-tracking |"));
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn out_of_order_rows_are_reported() {
    let out_dir = scratch("ooo");
    let out = vmscaler(&[
        "backtest",
        "--policy",
        "policies/cpu-api.yaml",
        "--trace",
        "traces/nab-aws-cloudwatch/ec2_request_latency_system_failure-first700.csv",
        "--cpu-fleet",
        "4",
        "--compare",
        "oracle",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("11 row(s) out of order (first at line 559), sorted"), "{stderr}");
    let md = read(&out_dir.join("report.md"));
    assert!(md.contains("11 row(s) out of order (lines 559, 560,"), "{md}");
    assert!(md.contains("11 repeated timestamp(s), values averaged"), "{md}");
    // 01:56 is followed by 03:00 (the hour the clocks skipped): a gap of 12 points.
    assert!(md.contains("gap after 2014-03-09T01:56:00Z until 2014-03-09T03:00:00Z (12 point(s))"), "{md}");
    assert!(!out_dir.join("supply-hpa.csv").exists(), "only the strategies asked for");
    assert!(out_dir.join("supply-oracle.csv").exists());
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn world_cup_prewarm_windows_are_shaded() {
    let out_dir = scratch("wc98");
    let out = vmscaler(&[
        "backtest",
        "--policy",
        "policies/wc98-web-storefront.yaml",
        "--trace",
        "traces/worldcup98/wc98_requests_per_minute-1998-06-29_30.csv",
        "--capacity-per-instance",
        "6000",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    ok(&out);
    let json: serde_json::Value = serde_json::from_str(&read(&out_dir.join("report.json"))).unwrap();
    // Four round-of-16 matches: 16:30 and 21:00 Paris time on both days, 20 minutes of lead.
    let windows: Vec<&str> =
        json["prewarm_windows"].as_array().unwrap().iter().map(|w| w["start"].as_str().unwrap()).collect();
    assert_eq!(
        windows,
        ["1998-06-29T14:10:00Z", "1998-06-29T18:40:00Z", "1998-06-30T14:10:00Z", "1998-06-30T18:40:00Z"]
    );
    let svg = read(&out_dir.join("chart.svg"));
    assert!(svg.matches("fill=\"#ffe08a\" fill-opacity").count() >= 4, "pre-warm windows not shaded");
    // The policy holds the floor of 30 from each window's start.
    let csv = read(&out_dir.join("supply-policy.csv"));
    let at_kickoff = csv.lines().rfind(|l| l.starts_with("1998-06-29T14:")).unwrap();
    let billed: u32 = at_kickoff.split(',').nth(3).unwrap().parse().unwrap();
    assert!(billed >= 30, "{at_kickoff}");
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn trace_formats_epoch_fixed_step_and_offsets() {
    for (trace, extra) in [
        ("traces/synthetic/epoch-seconds.csv", &["--value-column", "requests"][..]),
        ("traces/synthetic/fixed-step.csv", &["--step", "1m", "--start", "2024-01-01T00:00:00Z"][..]),
        ("traces/synthetic/iso-offset.csv", &["--fill", "hold"][..]),
    ] {
        let out_dir = scratch("formats");
        let mut args = vec![
            "backtest",
            "--policy",
            "policies/cpu-api.yaml",
            "--trace",
            trace,
            "--capacity-per-instance",
            "1000",
            "--out",
            out_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let out = vmscaler(&args);
        ok(&out);
        let json: serde_json::Value = serde_json::from_str(&read(&out_dir.join("report.json"))).unwrap();
        let t = &json["trace"];
        match trace {
            "traces/synthetic/epoch-seconds.csv" => {
                assert_eq!(t["time_format"], "epoch-seconds");
                assert_eq!(t["value_column"], "requests");
                assert_eq!(t["gap_count"], 1);
                assert_eq!(t["missing_points"], 2);
            }
            "traces/synthetic/fixed-step.csv" => {
                assert_eq!(t["time_format"], "fixed-step");
                assert_eq!(t["start"], "2024-01-01T00:00:00Z");
                assert_eq!(t["end"], "2024-01-01T00:08:00Z");
            }
            _ => {
                // 01:59+01:00 and 03:00+02:00 are one minute apart: no gap across the DST change.
                assert_eq!(t["time_format"], "iso-8601");
                assert_eq!(t["start"], "2024-03-31T00:58:00Z");
                assert_eq!(t["gap_count"], 0);
                assert_eq!(t["empty_values"], 1);
            }
        }
        let _ = std::fs::remove_dir_all(&out_dir);
    }
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let out_dir = scratch("bad");
    let dir = out_dir.to_str().unwrap();
    // Neither demand unit.
    let out = vmscaler(&["backtest", "--policy", "policies/cpu-api.yaml", "--trace", "x.csv", "--out", dir]);
    assert_eq!(out.status.code(), Some(2));
    // A bad value names its line.
    std::fs::create_dir_all(&out_dir).unwrap();
    let bad = out_dir.join("bad.csv");
    std::fs::write(&bad, "timestamp,value\n2024-01-01T00:00:00Z,1\n2024-01-01T00:01:00Z,lots\n").unwrap();
    let out = vmscaler(&[
        "backtest",
        "--policy",
        "policies/cpu-api.yaml",
        "--trace",
        bad.to_str().unwrap(),
        "--cpu-fleet",
        "2",
        "--out",
        dir,
    ]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 3: \"lots\" is not a number"));
    // An unknown strategy.
    let out = vmscaler(&[
        "backtest",
        "--policy",
        "policies/cpu-api.yaml",
        "--trace",
        bad.to_str().unwrap(),
        "--cpu-fleet",
        "2",
        "--compare",
        "magic",
        "--out",
        dir,
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown strategy \"magic\""));
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn sweep_writes_the_frontier_and_tune_prints_the_change() {
    let out_dir = scratch("sweep");
    let dir = out_dir.to_str().expect("utf-8 path");
    let base = [
        "backtest",
        "--policy",
        "policies/cpu-api.yaml",
        "--trace",
        "traces/nab-aws-cloudwatch/ec2_cpu_utilization_ac20cd.csv",
        "--cpu-fleet",
        "10",
        "--out",
        dir,
    ];
    let mut args = base.to_vec();
    args.extend(["--sweep", "cpu.target=40,55,70", "--tune", "--max-under-share", "100%"]);
    let out = vmscaler(&args);
    ok(&out);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // A 100 % budget admits every point: the cheapest is the hottest target.
    assert!(stdout.contains("policy change: metrics[cpu].target: 55 -> 70"), "{stdout}");
    let json: serde_json::Value = serde_json::from_str(&read(&out_dir.join("frontier.json"))).expect("json");
    assert_eq!(json["points"].as_array().map(Vec::len), Some(9), "3 values x (policy, hpa, target-tracking)");
    assert_eq!(json["chosen"], 70.0);
    // Each policy point is compared with both references; hotter targets bill less.
    let pts = json["points"].as_array().expect("points");
    let hours = |v: f64| {
        pts.iter().find(|p| p["strategy"] == "policy" && p["value"] == v).and_then(|p| p["instance_hours"].as_f64())
    };
    assert!(hours(40.0) > hours(55.0) && hours(55.0) > hours(70.0));
    assert_eq!(json["comparisons"].as_array().map(Vec::len), Some(6));
    assert!(read(&out_dir.join("frontier.md")).contains("## At equal cost"));
    assert!(read(&out_dir.join("frontier.svg")).contains("chosen: 70"));
    let _ = std::fs::remove_dir_all(&out_dir);
}

#[test]
fn bad_sweeps_exit_78_and_write_nothing() {
    let out_dir = scratch("badsweep");
    let dir = out_dir.to_str().expect("utf-8 path");
    let base = [
        "backtest",
        "--policy",
        "policies/cpu-api.yaml",
        "--trace",
        "traces/nab-aws-cloudwatch/ec2_cpu_utilization_ac20cd.csv",
        "--cpu-fleet",
        "10",
        "--out",
        dir,
    ];
    for (sweep, says) in [
        ("gpu.target=40", "unknown field \"gpu.target\""),
        ("cpu.target=40,abc", "cpu.target: value \"abc\" is not a number"),
        ("cpu.target=40,0", "cpu.target: value \"0\" must be a positive number"),
        ("cpu.target=", "cpu.target: empty list of values"),
    ] {
        let mut args = base.to_vec();
        args.extend(["--sweep", sweep]);
        let out = vmscaler(&args);
        assert_eq!(out.status.code(), Some(78), "{sweep}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{sweep}: {stderr}");
        assert!(!out_dir.exists(), "{sweep}: nothing written");
    }
    let mut args = base.to_vec();
    args.extend(["--sweep", "cpu.target=40", "--tune", "--max-under-share", "lots"]);
    let out = vmscaler(&args);
    assert_eq!(out.status.code(), Some(78));
    assert!(!out_dir.exists());
}
