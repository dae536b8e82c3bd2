//! The README's frontier table, engine-only: the policy swept over its CPU target on every public
//! trace that fits, against `hpa` and `target-tracking` swept the same way, compared at equal
//! cost (the policy's under-provisioned minutes over the reference's, interpolated at the same
//! instance-hours). The same traces, scaling and settings as `scripts/backtest-frontier.sh`,
//! without building the CLI; variants of the policy side by side on one set of reference runs.
//!
//! ```text
//! cargo run --release -p vmscaler-engine --example hpa_frontier -- ../shared/traces \
//!     [--targets 35,40,45,50,55,60,65] [--only twitter] \
//!     [--variant NAME:key=value,key=value ...]
//! ```
//!
//! Variant keys change the policy under test (every trace the same): `confirmations`,
//! `fast_threshold` (`none` for off), `up_cooldown`, `up_step` (percent), `down_stabilization`,
//! `down_cooldown`, `down_step` (percent), `confirmed_stabilization` (seconds, `none` for off),
//! `tolerance`, `predictive` (`none` for off, `shipped` for web-storefront's block), `interval` and every metric's `period` (seconds). The baseline is the policy files as shipped.
//!
//! Printed per trace and variant: the mean over the sweep of the equal-cost ratio against each
//! reference (points outside the reference's range left out), the policy's and HPA's reversals
//! at target 55, then the mean over traces and the number of traces worse than HPA's curve.

#![allow(clippy::disallowed_methods)] // timing is part of the output

use std::time::{Duration, Instant};

use vmscaler_engine::backtest::frontier::{self, Frontier, SWEPT};
use vmscaler_engine::backtest::trace::Point;
use vmscaler_engine::backtest::{DemandUnit, Figures, Scenario, Strategy, Trace, TraceOptions, prepare, read_trace};
use vmscaler_engine::policy::{Policy, Step, parse_policy};

struct Spec {
    name: String,
    policy: &'static str,
    path: String,
    /// Request trace to rescale (step in seconds), or the demand unit as given.
    unit: Unit,
}

enum Unit {
    /// Rescaled so the 99th percentile needs 48 instances of 2727.27 requests per minute.
    Scaled(f64),
    Capacity(f64),
    CpuFleet(f64),
}

const WEB: &str = "policies/web-storefront.yaml";
const CPU: &str = "tests/data/policies/cpu-api.yaml";

fn specs(traces: &str) -> Vec<Spec> {
    let mut v = Vec::new();
    for t in ["CRM", "CVS", "IBM", "KO", "PFE", "UPS"] {
        v.push(Spec {
            name: format!("twitter_{t}"),
            policy: WEB,
            path: format!("{traces}/nab-twitter-volume/Twitter_volume_{t}.csv"),
            unit: Unit::Scaled(300.0),
        });
    }
    v.push(Spec {
        name: "nyc_taxi".into(),
        policy: WEB,
        path: format!("{traces}/nab-nyc-taxi/nyc_taxi.csv"),
        unit: Unit::Scaled(1800.0),
    });
    v.push(Spec {
        name: "wc98".into(),
        policy: WEB,
        path: format!("{traces}/worldcup98/wc98_requests_per_minute.csv"),
        unit: Unit::Capacity(2727.27),
    });
    for f in [
        "ec2_cpu_utilization_ac20cd",
        "ec2_cpu_utilization_fe7f93",
        "cpu_utilization_asg_misconfiguration",
        "ec2_cpu_utilization_5f5533",
        "ec2_cpu_utilization_77c1ca",
        "ec2_cpu_utilization_825cc2",
        "rds_cpu_utilization_e47b3b",
    ] {
        v.push(Spec {
            name: f.into(),
            policy: CPU,
            path: format!("{traces}/nab-aws-cloudwatch/{f}.csv"),
            unit: Unit::CpuFleet(10.0),
        });
    }
    v
}

fn main() {
    if let Err(e) = run() {
        eprintln!("hpa_frontier: {e}");
        std::process::exit(2);
    }
}

fn secs(v: &str) -> Result<Duration, String> {
    v.parse::<f64>().map(Duration::from_secs_f64).map_err(|_| format!("{v:?} is not seconds"))
}

fn num(v: &str) -> Result<f64, String> {
    v.parse::<f64>().map_err(|_| format!("{v:?} is not a number"))
}

fn apply(p: &mut Policy, key: &str, v: &str) -> Result<(), String> {
    let up = &mut p.scaling.scale_up;
    let down = &mut p.scaling.scale_down;
    match key {
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        "confirmations" => up.confirmations = num(v)? as u32,
        "fast_threshold" => up.fast_threshold = if v == "none" { None } else { Some(num(v)?) },
        "up_cooldown" => up.cooldown = secs(v)?,
        "up_step" => up.max_step = Step::Percent(num(v)?),
        "down_stabilization" => down.stabilization = secs(v)?,
        "down_cooldown" => down.cooldown = secs(v)?,
        "down_step" => down.max_step = Step::Percent(num(v)?),
        "confirmed_stabilization" => {
            down.confirmed_stabilization = if v == "none" { None } else { Some(secs(v)?) };
        }
        "tolerance" => p.scaling.tolerance = num(v)?,
        "predictive" if v == "none" => p.predictive = None,
        "predictive" if v == "shipped" => {
            let text = std::fs::read_to_string(WEB).map_err(|e| format!("{WEB}: {e}"))?;
            let web = parse_policy(WEB, &text).policy.ok_or(format!("{WEB}: invalid"))?;
            p.predictive = web.predictive;
        }
        "interval" => p.interval = secs(v)?,
        "period" => {
            for m in &mut p.metrics {
                m.period = secs(v)?;
            }
        }
        _ => return Err(format!("unknown variant key {key:?}")),
    }
    Ok(())
}

/// The trace and its demand unit, scaled as `scripts/backtest-frontier.sh` scales it.
fn load(spec: &Spec) -> Result<(Trace, DemandUnit), String> {
    let text = std::fs::read_to_string(&spec.path).map_err(|e| format!("{}: {e}", spec.path))?;
    let mut trace = read_trace(&text, &TraceOptions::default()).map_err(|e| format!("{}: {e}", spec.path))?;
    let unit = match spec.unit {
        Unit::Capacity(c) => DemandUnit::CapacityPerInstance(c),
        Unit::CpuFleet(n) => DemandUnit::CpuFleet(n),
        Unit::Scaled(step) => {
            // The 99th percentile of the file's values, as the script computes it.
            let mut vals: Vec<f64> = text
                .lines()
                .skip(1)
                .filter_map(|l| l.split(',').nth(1))
                .filter_map(|x| x.trim().parse().ok())
                .collect();
            vals.sort_by(f64::total_cmp);
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss, clippy::cast_precision_loss)]
            let p99 = vals[((0.99 * vals.len() as f64) as usize).min(vals.len() - 1)];
            let cap = 2727.27 * step / 60.0;
            let k = cap * 48.0 / p99;
            trace.points = trace.points.iter().map(|p| Point { at_ms: p.at_ms, value: p.value * k }).collect();
            DemandUnit::CapacityPerInstance(cap)
        }
    };
    Ok((trace, unit))
}

struct Row {
    hpa: Option<f64>,
    tt: Option<f64>,
    rev: u32,
    hpa_rev: u32,
    hours: f64,
    under: f64,
}

fn mean(xs: &[f64]) -> Option<f64> {
    #[allow(clippy::cast_precision_loss)]
    (!xs.is_empty()).then(|| xs.iter().sum::<f64>() / xs.len() as f64)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(traces) = args.first() else {
        return Err("usage: hpa_frontier TRACES_DIR [--targets 35,...] [--only SUBSTR] [--variant NAME:k=v,...]".into());
    };
    let mut targets: Vec<f64> = vec![35.0, 40.0, 45.0, 50.0, 55.0, 60.0, 65.0];
    let mut only: Option<String> = None;
    let mut variants: Vec<(String, Vec<(String, String)>)> = vec![("shipped".into(), vec![])];
    let mut it = args.iter().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--targets" => targets = value.split(',').map(num).collect::<Result<_, _>>()?,
            "--only" => only = Some(value.clone()),
            "--variant" => {
                let (name, kvs) = value.split_once(':').unwrap_or((value.as_str(), ""));
                let kv = kvs
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.split_once('=').map(|(k, v)| (k.to_owned(), v.to_owned())).ok_or(format!("{s:?}: k=v")))
                    .collect::<Result<Vec<_>, _>>()?;
                variants.push((name.to_owned(), kv));
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let t0 = Instant::now();
    let specs: Vec<Spec> =
        specs(traces).into_iter().filter(|s| only.as_ref().is_none_or(|o| s.name.contains(o.as_str()))).collect();
    let sweep_arg = format!("cpu.target={}", targets.iter().map(|t| format!("{t}")).collect::<Vec<_>>().join(","));
    // results[trace][variant]
    let one = |spec: &Spec| -> Result<Vec<Row>, String> {
        let (trace, unit) = load(spec)?;
        let text = std::fs::read_to_string(spec.policy).map_err(|e| format!("{}: {e}", spec.policy))?;
        let base = parse_policy(spec.policy, &text).policy.ok_or(format!("{}: invalid", spec.policy))?;
        let scenario = Scenario {
            demand: unit,
            boot_delay: Duration::from_secs(90),
            metric_lag: Duration::from_secs(60),
            initial: None,
            target: None,
        };
        let sw = frontier::parse_sweep(&base, &sweep_arg).map_err(|e| e.to_string())?;
        // The references once per target (they do not depend on the variant).
        let mut refs: Vec<(f64, Figures, Figures)> = Vec::new();
        for &v in &sw.values {
            let p = frontier::swept_policy(&base, &sw, v)?;
            let mut s = scenario.clone();
            s.target = Some(v);
            let prep = prepare(&p, &trace, s).map_err(|e| e.to_string())?;
            let h = prep.run_reference(Strategy::Hpa, &mut |_| {}).figures;
            let t = prep.run_reference(Strategy::TargetTracking, &mut |_| {}).figures;
            refs.push((v, h, t));
        }
        let mut rows = Vec::new();
        for (_, kvs) in &variants {
            let mut pol = base.clone();
            for (k, v) in kvs {
                apply(&mut pol, k, v)?;
            }
            let mut runs = Vec::new();
            for (v, h, t) in &refs {
                let p = frontier::swept_policy(&pol, &sw, *v)?;
                let mut s = scenario.clone();
                s.target = Some(*v);
                let prep = prepare(&p, &trace, s).map_err(|e| e.to_string())?;
                let f = prep.run_policy(&mut |_| {}).0.figures;
                debug_assert_eq!(SWEPT[0], Strategy::Policy);
                runs.push((*v, vec![f, h.clone(), t.clone()]));
            }
            let fr = Frontier::new(&pol.name, &spec.name, &sw, &runs, Some(55.0));
            let ratio = |r: Strategy| {
                let xs: Vec<f64> = fr
                    .comparisons
                    .iter()
                    .filter(|c| c.reference == r)
                    .filter_map(|c| c.ratio)
                    .filter(|x| x.is_finite())
                    .collect();
                mean(&xs)
            };
            let at55 = |s: Strategy| fr.points.iter().find(|p| p.strategy == s && p.value == 55.0);
            rows.push(Row {
                hpa: ratio(Strategy::Hpa),
                tt: ratio(Strategy::TargetTracking),
                rev: at55(Strategy::Policy).map_or(0, |p| p.reversals),
                hpa_rev: at55(Strategy::Hpa).map_or(0, |p| p.reversals),
                hours: at55(Strategy::Policy).map_or(0.0, |p| p.instance_hours),
                under: at55(Strategy::Policy).map_or(0.0, |p| p.under_provisioned_minutes),
            });
        }
        Ok(rows)
    };
    // Two workers (a shared 2-core machine), traces handed out in turn.
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut results: Vec<(usize, Result<Vec<Row>, String>)> = std::thread::scope(|sc| {
        let ws: Vec<_> = (0..2)
            .map(|_| {
                sc.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(spec) = specs.get(i) else { break };
                        out.push((i, one(spec)));
                    }
                    out
                })
            })
            .collect();
        ws.into_iter().flat_map(|w| w.join().unwrap_or_default()).collect()
    });
    results.sort_by_key(|r| r.0);
    let results: Vec<Result<Vec<Row>, String>> = results.into_iter().map(|r| r.1).collect();
    let f = |x: Option<f64>| x.map_or("n/a".to_owned(), |x| format!("{x:.2}"));
    for (vi, (name, kvs)) in variants.iter().enumerate() {
        let desc: Vec<String> = kvs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("\n## {name} {}", desc.join(","));
        println!("| trace | vs hpa | vs tt | reversals @55 | hpa reversals @55 | inst-h @55 | under-prov. min @55 |");
        println!("|---|---:|---:|---:|---:|---:|---:|");
        let (mut hs, mut ts, mut worse, mut more_rev) = (vec![], vec![], 0, 0);
        for (spec, res) in specs.iter().zip(&results) {
            match res {
                Ok(rows) => {
                    let r = &rows[vi];
                    println!(
                        "| {} | {} | {} | {} | {} | {:.1} | {:.1} |",
                        spec.name,
                        f(r.hpa),
                        f(r.tt),
                        r.rev,
                        r.hpa_rev,
                        r.hours,
                        r.under
                    );
                    hs.extend(r.hpa);
                    ts.extend(r.tt);
                    worse += usize::from(r.hpa.is_some_and(|x| x > 1.0));
                    more_rev += usize::from(r.rev >= r.hpa_rev);
                }
                Err(e) => println!("| {} | error: {e} |", spec.name),
            }
        }
        println!(
            "mean vs hpa {} ({} traces), vs tt {}; worse than hpa on {worse}; reversals not below hpa on {more_rev}",
            f(mean(&hs)),
            hs.len(),
            f(mean(&ts))
        );
    }
    println!("\n{:.1} s", t0.elapsed().as_secs_f64());
    Ok(())
}
