//! Backtest memory: peak resident memory of a backtest as `vmscaler backtest` runs it, on a
//! synthetic trace of any length.
//!
//! ```text
//! cargo run --release -p vmscaler-engine --example backtest_memory -- \
//!     policies/web-storefront.yaml --rows 10000000 [--keep trace.csv]
//! ```
//!
//! Writes a trace of `--rows` one-minute points (a daily and a weekly cycle with noise, from
//! 2000 to 60000 requests a minute, ISO-8601 times) to a temporary file, then does what the
//! command does with it (`src/cmd/backtest.rs`): reads the trace line by line, runs the policy
//! beside hpa, target-tracking, static and oracle with `--capacity-per-instance 6000`, streaming
//! each strategy's supply rows into its `supply-*.csv`, and writes `report.md`, `report.json` and
//! `chart.svg`, all into a temporary directory. Prints the peak resident set size (`VmHWM` of `/proc/self/status`, Linux) and
//! the bytes per trace row above the resident size before the file was read. `--keep FILE`
//! keeps the trace there (to run `vmscaler backtest` on the same file).
//! The engine never reads the process's memory; this example, outside the engine's library,
//! does.

use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use vmscaler_engine::backtest::{self, DemandUnit, Scenario, Strategy, TraceOptions, chart, report};
use vmscaler_engine::policy::parse_policy;

fn main() {
    if let Err(e) = run() {
        eprintln!("backtest_memory: {e}");
        std::process::exit(2);
    }
}

/// `VmRSS` or `VmHWM` of this process, in bytes.
fn status_bytes(field: &str) -> Result<u64, String> {
    let s = std::fs::read_to_string("/proc/self/status").map_err(|e| format!("/proc/self/status: {e}"))?;
    let line = s.lines().find(|l| l.starts_with(field)).ok_or_else(|| format!("no {field} in /proc/self/status"))?;
    let kb: u64 = line
        .trim_start_matches(field)
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .map_err(|_| format!("{line:?}: not a size"))?;
    Ok(kb * 1024)
}

/// A deterministic load: daily and weekly cycles, an xorshift noise of ±10 %.
fn generate(path: &Path, rows: u64) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut w = BufWriter::new(file);
    let start = jiff::Timestamp::from_second(946_684_800).map_err(|e| e.to_string())?; // 2000-01-01
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    writeln!(w, "timestamp,requests").map_err(err)?;
    for i in 0..rows {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        #[allow(clippy::cast_precision_loss)]
        let (minute, noise) = (i as f64, (x % 2001) as f64 / 10_000.0 - 0.1);
        let day = (minute / 1440.0 * std::f64::consts::TAU).sin();
        let week = (minute / 10_080.0 * std::f64::consts::TAU).sin();
        let v = (2000.0 + 29_000.0 * (1.0 + day) * (0.8 + 0.2 * week)) * (1.0 + noise);
        let at = start + jiff::SignedDuration::from_mins(i64::try_from(i).map_err(|e| e.to_string())?);
        writeln!(w, "{},{v:.1}", at.strftime("%Y-%m-%d %H:%M:%S")).map_err(err)?;
    }
    w.flush().map_err(err)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policy_path, rest @ ..] = args.as_slice() else {
        return Err("usage: backtest_memory POLICY [--rows N] [--keep FILE]".into());
    };
    let mut rows = 1_000_000u64;
    let mut keep: Option<PathBuf> = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--rows" => rows = value.parse().map_err(|_| format!("--rows: {value:?} is not a count"))?,
            "--keep" => keep = Some(PathBuf::from(value)),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let text = std::fs::read_to_string(policy_path).map_err(|e| format!("{policy_path}: {e}"))?;
    let policy = parse_policy(policy_path, &text).policy.ok_or_else(|| format!("{policy_path}: invalid policy"))?;
    drop(text);

    let scratch = std::env::temp_dir().join(format!("vmscaler-backtest-memory-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
    let trace_path = keep.clone().unwrap_or_else(|| scratch.join("trace.csv"));
    generate(&trace_path, rows)?;
    let before = status_bytes("VmRSS")?;

    // What `vmscaler backtest` does (src/cmd/backtest.rs).
    let out = scratch.join("out");
    let result = pipeline(&policy, &trace_path, &out);
    let peak = status_bytes("VmHWM")?;
    let _ = std::fs::remove_dir_all(&scratch);
    let (rows_read, supply_rows) = result?;
    #[allow(clippy::cast_precision_loss)]
    let per_row = peak.saturating_sub(before) as f64 / rows as f64;
    println!(
        "rows: {rows_read}; supply rows written: {supply_rows}; peak RSS: {:.1} MB ({:.1} MB before reading); {per_row:.1} bytes per trace row",
        peak as f64 / 1e6,
        before as f64 / 1e6
    );
    if let Some(k) = keep {
        println!("trace kept in {}", k.display());
    }
    Ok(())
}

/// Returns the trace's rows and the supply rows written over all strategies.
fn pipeline(policy: &vmscaler_engine::policy::Policy, trace_path: &Path, out: &Path) -> Result<(usize, u64), String> {
    let file = std::fs::File::open(trace_path).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let mut read_error = None;
    let lines = BufReader::new(file).lines().map_while(|l| l.map_err(|e| read_error = Some(e)).ok());
    let trace = backtest::read_trace_lines(lines, &TraceOptions::default());
    if let Some(e) = read_error {
        return Err(format!("{}: {e}", trace_path.display()));
    }
    let trace = trace.map_err(|e| e.to_string())?;
    eprintln!("after reading the trace: peak {:.1} MB", status_bytes("VmHWM").unwrap_or(0) as f64 / 1e6);
    let scenario = Scenario {
        demand: DemandUnit::CapacityPerInstance(6000.0),
        boot_delay: Duration::from_secs(90),
        metric_lag: Duration::from_secs(60),
        initial: None,
        target: None,
    };
    let compare = [Strategy::Hpa, Strategy::TargetTracking, Strategy::Static, Strategy::Oracle];
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    // Each strategy's rows straight into its CSV, as the command does.
    let mut supply_rows = 0u64;
    let mut open: Option<(Strategy, BufWriter<std::fs::File>)> = None;
    let mut error: Option<String> = None;
    let result = backtest::run_with(policy, &trace, scenario, &compare, &mut |_, _| {}, &mut |s, r| {
        supply_rows += 1;
        let written = (|| -> std::io::Result<()> {
            if open.as_ref().is_none_or(|(o, _)| *o != s) {
                if let Some((_, mut w)) = open.take() {
                    w.flush()?;
                }
                let mut w = BufWriter::new(std::fs::File::create(out.join(format!("supply-{s}.csv")))?);
                w.write_all(report::SUPPLY_CSV_HEADER.as_bytes())?;
                open = Some((s, w));
            }
            match &mut open {
                Some((_, w)) => writeln!(w, "{}", report::SupplyLine(r)),
                None => Ok(()),
            }
        })();
        if let Err(e) = written {
            error.get_or_insert_with(|| e.to_string());
        }
    })
    .map_err(|e| e.to_string())?;
    if let Some((_, mut w)) = open.take() {
        w.flush().map_err(|e| e.to_string())?;
    }
    if let Some(e) = error {
        return Err(e);
    }
    eprintln!("after the run: peak {:.1} MB", status_bytes("VmHWM").unwrap_or(0) as f64 / 1e6);
    let write = |name: &str, text: &str| std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"));
    write("report.md", &report::markdown(&result, "trace.csv"))?;
    write("report.json", &report::json(&result, "trace.csv"))?;
    write("chart.svg", &chart::svg(&result, "trace.csv"))?;
    Ok((trace.points.len(), supply_rows))
}
