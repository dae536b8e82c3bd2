//! Backtest benchmark: one year of 1-minute points through a policy and each reference strategy.
//!
//! ```text
//! cargo run --release -p vmscaler-engine --example bench_backtest -- \
//!     policies/web-storefront.yaml ../shared/traces/worldcup98/wc98_requests_per_minute.csv \
//!     --capacity-per-instance 6000 [--points 525600] [--only policy,hpa]
//! ```
//!
//! The trace is tiled end to end (each copy shifted by the previous copy's span) until it has
//! `--points` points, so a real 87-day trace becomes a year with the same texture. Prints the
//! wall time of the policy alone and of each strategy, and their figures. The engine never reads
//! a clock; this example, outside the engine's library, does.

#![allow(clippy::disallowed_methods)] // measuring elapsed time is the point of a benchmark

use std::time::{Duration, Instant};

use vmscaler_engine::backtest::trace::Point;
use vmscaler_engine::backtest::{DemandUnit, Scenario, Strategy, TraceOptions, frontier, prepare, read_trace};
use vmscaler_engine::policy::parse_policy;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench_backtest: {e}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policy_path, trace_path, rest @ ..] = args.as_slice() else {
        return Err(
            "usage: bench_backtest POLICY TRACE (--capacity-per-instance X | --cpu-fleet N) [--points N] [--boot-secs S] [--lag-secs S] [--only S,...] [--sweep FIELD=V,...]".into()
        );
    };
    let mut demand = None;
    let mut points = 525_600usize;
    let mut only: Option<String> = None;
    let (mut boot, mut lag) = (90.0, 60.0);
    let mut sweep: Option<String> = None;
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        if flag == "--sweep" {
            sweep = Some(value.clone());
            continue;
        }
        if flag == "--only" {
            only = Some(value.clone());
            continue;
        }
        let num: f64 = value.parse().map_err(|_| format!("{flag}: {value:?} is not a number"))?;
        match flag.as_str() {
            "--capacity-per-instance" => demand = Some(DemandUnit::CapacityPerInstance(num)),
            "--cpu-fleet" => demand = Some(DemandUnit::CpuFleet(num)),
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            "--points" => points = num as usize,
            "--boot-secs" => boot = num,
            "--lag-secs" => lag = num,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let demand = demand.ok_or("give --capacity-per-instance or --cpu-fleet")?;
    let text = std::fs::read_to_string(policy_path).map_err(|e| format!("{policy_path}: {e}"))?;
    let report = parse_policy(policy_path, &text);
    let policy = report.policy.ok_or_else(|| format!("{policy_path}: invalid policy"))?;
    let text = std::fs::read_to_string(trace_path).map_err(|e| format!("{trace_path}: {e}"))?;
    let t0 = Instant::now();
    let mut trace = read_trace(&text, &TraceOptions::default()).map_err(|e| e.to_string())?;
    let read_time = t0.elapsed();

    // Tile to the requested length (0: the trace as it is).
    if points == 0 {
        points = trace.points.len();
    }
    let base = trace.points.clone();
    let first = base.first().map_or(0, |p| p.at_ms);
    let span = trace.end_ms - first;
    let mut copy = 1;
    while trace.points.len() < points {
        let shift = span * copy;
        let need = points - trace.points.len();
        trace.points.extend(base.iter().take(need).map(|p| Point { at_ms: p.at_ms + shift, value: p.value }));
        copy += 1;
    }
    trace.points.truncate(points);
    trace.end_ms = trace.points.last().map_or(0, |p| p.at_ms) + trace.step_ms();
    #[allow(clippy::cast_precision_loss)]
    let days = (trace.end_ms - first) as f64 / 86_400_000.0;
    println!(
        "trace: {} points over {days:.1} days (read {} points in {read_time:.2?})",
        trace.points.len(),
        base.len()
    );

    let scenario = Scenario {
        demand,
        boot_delay: Duration::from_secs_f64(boot),
        metric_lag: Duration::from_secs_f64(lag),
        initial: None,
        target: None,
    };
    if let Some(arg) = sweep {
        // The sweep as `vmscaler backtest --sweep` runs it: one worker per core.
        let sw = frontier::parse_sweep(&policy, &arg).map_err(|e| e.to_string())?;
        let t = Instant::now();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        let mut runs: Vec<(f64, Vec<vmscaler_engine::backtest::Figures>)> = std::thread::scope(|sc| {
            let ws: Vec<_> = (0..threads)
                .map(|_| {
                    sc.spawn(|| {
                        let mut out = Vec::new();
                        loop {
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let Some(&v) = sw.values.get(i) else { break };
                            if let Ok(f) = frontier::sweep_point(&policy, &sw, v, &trace, &scenario) {
                                out.push((v, f));
                            }
                        }
                        out
                    })
                })
                .collect();
            ws.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
        });
        let el = t.elapsed();
        runs.sort_by(|a, b| a.0.total_cmp(&b.0));
        let f = frontier::Frontier::new(&policy.name, trace_path, &sw, &runs, frontier::current_value(&policy, &sw));
        println!("{}", f.markdown());
        println!("sweep of {} points on {threads} threads: {:.3} s", sw.values.len(), el.as_secs_f64());
        return Ok(());
    }
    let prep = prepare(&policy, &trace, scenario).map_err(|e| e.to_string())?;
    println!("| strategy | time | instance-hours | under-provisioned min | actions | reversals |");
    println!("|---|---:|---:|---:|---:|---:|");
    let mut total = Duration::ZERO;
    for s in [Strategy::Policy, Strategy::Hpa, Strategy::TargetTracking, Strategy::Static, Strategy::Oracle] {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|x| x == s.as_str())) {
            continue;
        }
        let t = Instant::now();
        let run = prep.run_reference(s, &mut |_| {});
        let el = t.elapsed();
        total += el;
        let f = &run.figures;
        println!(
            "| {s} | {:.3} s | {:.1} | {:.1} | {} | {} |",
            el.as_secs_f64(),
            f.instance_hours,
            f.under_provisioned_minutes,
            f.actions,
            f.reversals
        );
    }
    println!("total: {:.3} s", total.as_secs_f64());
    Ok(())
}
