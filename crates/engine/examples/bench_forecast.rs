//! Forecast benchmark: 14 days of 1-minute demand for 1,000 pools, observed and fitted.
//!
//! ```text
//! cargo run --release -p vmscaler-engine --example bench_forecast [-- --pools 1000 --days 14]
//! ```
//!
//! Each pool gets its own load (a daily cycle with its own phase and size, a weekly dip, noise
//! and an occasional burst). Prints the time to observe every minute, to fit every pool once
//! (what the daemon does each hour, spread over the hour), the state size in JSON and the
//! process's resident memory (Linux `/proc/self/status`).

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
}
