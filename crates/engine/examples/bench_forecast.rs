//! Forecast benchmark: 14 days of 1-minute demand for 1,000 pools, observed and fitted.
//!
//! ```text
//! cargo run --release -p vmscaler-engine --example bench_forecast [-- --pools 1000 --days 14]
//! ```
//!
//! Each pool gets its own load (a daily cycle with its own phase and size, a weekly dip, noise
//! and an occasional burst). Prints the time to observe every minute, to fit every pool once
//! (what the daemon does each hour, spread over the hour), the state size in JSON and the
//! process's resident memory (Linux `/proc/self/status`); then the start-up backfill: `days`
//! of 5-minute CPU history and pool sizes turned into demand through `decide`
//! (`forecast::past_demand`) and folded into a fresh model, for up to 100 pools.

#![allow(clippy::disallowed_methods)] // measuring elapsed time is the point of a benchmark

use std::time::Instant;

use jiff::Timestamp;
use vmscaler_engine::forecast::{Fit, Forecaster};
use vmscaler_engine::policy::Predictive;

fn rss() -> String {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let get = |k: &str| s.lines().find(|l| l.starts_with(k)).map_or("?".to_owned(), |l| l[k.len()..].trim().to_owned());
    format!("VmRSS {}, VmHWM {}", get("VmRSS:"), get("VmHWM:"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut pools = 1000usize;
    let mut days = 14i64;
    for w in args.chunks(2) {
        match (w[0].as_str(), w.get(1).and_then(|v| v.parse::<i64>().ok())) {
            ("--pools", Some(n)) => pools = usize::try_from(n).unwrap_or(1000),
            ("--days", Some(n)) => days = n,
            _ => {
                eprintln!("usage: bench_forecast [--pools N] [--days D]");
                std::process::exit(2);
            }
        }
    }
    let start = 1_793_577_600i64; // a Monday
    let minutes = days * 1440;
    println!("{pools} pools x {days} days of 1-minute demand ({} points each); before: {}", minutes, rss());
    let t = Instant::now();
    let mut fcs: Vec<Forecaster> = Vec::with_capacity(pools);
    let mut x: u64 = 7;
    for p in 0..pools {
        let mut f = Forecaster::new();
        #[allow(clippy::cast_precision_loss)]
        let (size, phase) = (2.0 + (p % 37) as f64, (p % 24) as f64);
        for m in 0..minutes {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            #[allow(clippy::cast_precision_loss)]
            let noise = ((x >> 40) % 1000) as f64 / 1000.0;
            #[allow(clippy::cast_precision_loss)]
            let hour = (m % 1440) as f64 / 60.0;
            let day = m / 1440 % 7;
            let cycle = 1.0 + (std::f64::consts::TAU * (hour - phase) / 24.0).sin().max(-0.8);
            let weekend = if day >= 5 { 0.6 } else { 1.0 };
            let burst = if noise > 0.999 { 5.0 } else { 1.0 };
            let v = size * cycle * weekend * burst * (0.9 + 0.2 * noise);
            f.observe(Timestamp::from_second(start + m * 60).unwrap_or(Timestamp::UNIX_EPOCH), v);
        }
        fcs.push(f);
    }
    let observe = t.elapsed();
    println!(
        "observe: {:.2} s ({:.0} ns per point); after: {}",
        observe.as_secs_f64(),
        observe.as_nanos() as f64 / (pools as f64 * minutes as f64),
        rss()
    );
    let spec = Predictive::default();
    let now = Timestamp::from_second(start + minutes * 60).unwrap_or(Timestamp::UNIX_EPOCH);
    let t = Instant::now();
    let mut ready = 0;
    let mut weekly = 0;
    for f in &mut fcs {
        f.refresh(&spec, now);
        if let Some(Fit::Ready(m)) = f.fit_result() {
            ready += 1;
            if m.season == vmscaler_engine::forecast::Season::Weekly {
                weekly += 1;
            }
        }
    }
    let fit = t.elapsed();
    println!(
        "fit: {:.2} s for {pools} pools ({:.1} ms per pool; {ready} ready, {weekly} weekly); after: {}",
        fit.as_secs_f64(),
        fit.as_secs_f64() * 1000.0 / pools as f64,
        rss()
    );
    let json: usize = fcs.iter().map(|f| serde_json::to_string(f).map_or(0, |s| s.len())).sum();
    println!("state: {:.1} KiB of JSON per pool", json as f64 / pools as f64 / 1024.0);
    backfill(pools.min(100), days, start, now);
}

/// What the daemon does at start for a pool with no model: past metrics to demand, backfilled.
fn backfill(pools: usize, days: i64, start: i64, now: Timestamp) {
    use vmscaler_engine::Sample;
    use vmscaler_engine::forecast::{PastLoad, past_demand};
    let text = "name: b\npool: {auto_scaling_group: g}\nmin: 1\nmax: 100\nmetrics:\n  - {id: cpu, namespace: AWS/EC2, name: CPUUtilization, target: 50}\npredictive: {mode: active}\n";
    let Some(policy) = vmscaler_engine::policy::parse_policy("b.yaml", text).policy else { return };
    let periods = days * 288;
    let loads: Vec<PastLoad> = (0..pools)
        .map(|p| {
            let mut past = PastLoad { period: std::time::Duration::from_secs(300), ..PastLoad::default() };
            let mut cpu = Vec::with_capacity(usize::try_from(periods).unwrap_or(0));
            for k in 0..periods {
                let at = Timestamp::from_second(start + k * 300).unwrap_or(Timestamp::UNIX_EPOCH);
                #[allow(clippy::cast_precision_loss)]
                let hour = (k % 288) as f64 / 12.0;
                #[allow(clippy::cast_precision_loss)]
                let v = 40.0 + 30.0 * (std::f64::consts::TAU * (hour - (p % 24) as f64) / 24.0).sin();
                cpu.push(Sample { at, value: v });
                past.serving.insert(at, 4 + u32::try_from(k % 7).unwrap_or(0));
            }
            past.samples.insert("cpu".into(), cpu);
            past
        })
        .collect();
    let spec = Predictive::default();
    let t = Instant::now();
    let mut slots = 0;
    for load in &loads {
        let (demand, _) = past_demand(&policy, load);
        let mut f = Forecaster::new();
        slots += f.backfill(&demand);
        f.refresh(&spec, now);
    }
    let took = t.elapsed();
    println!(
        "backfill: {pools} pools x {periods} periods through decide, then fitted: {:.2} s ({:.1} ms per pool, {:.1} us per period; {slots} slots)",
        took.as_secs_f64(),
        took.as_secs_f64() * 1000.0 / pools as f64,
        took.as_secs_f64() * 1e6 / (pools as f64 * periods as f64)
    );
}
