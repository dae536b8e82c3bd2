//! Predictive pre-warm measured at equal cost: the same policy with and without `predictive:`
//! (and `aws-predictive`) on the seasonal public traces, each swept over its CPU target so that
//! under-provisioned minutes can be compared at the same instance-hours.
//!
//! ```text
//! cargo run --release -p vmscaler-engine --example predictive_frontier -- \
//!     tests/data/policies/cpu-api.yaml ../shared/traces [--only nyc] [--targets 40,50,55,60,70]
//! ```
//!
//! Same settings for every trace: the policy file as given, `predictive:` with its defaults and
//! `mode: active`, boot 90 s, metric lag 60 s. Demand: CPU % traces on a fleet of 10
//! (`--cpu-fleet 10`, as the README's table); request and volume traces at a capacity per
//! instance of a tenth of the trace's mean (a mean demand of 10 instances).
//!
//! For each trace it prints each variant's (instance-hours, under-provisioned minutes) per
//! target, then, at the default target, the baseline's and aws-predictive's under-provisioned
//! minutes interpolated (piecewise linearly over their own sweep) at the predictive policy's
//! instance-hours; and the forecast's WAPE beside aws-predictive's (both from the demand series,
//! each forecast made from the past only).

#![allow(clippy::disallowed_methods)] // timing is part of the output

use std::time::{Duration, Instant};

use jiff::Timestamp;
use vmscaler_engine::backtest::{DemandUnit, Scenario, Strategy, TraceOptions, prepare, read_trace};
use vmscaler_engine::forecast::Forecaster;
use vmscaler_engine::policy::{Goal, Policy, Predictive, PredictiveMode, parse_policy};

struct TraceSpec {
    name: &'static str,
    path: &'static str,
    cpu: bool,
}

const TRACES: &[TraceSpec] = &[
    TraceSpec { name: "nyc-taxi", path: "nab-nyc-taxi/nyc_taxi.csv", cpu: false },
    TraceSpec { name: "worldcup98", path: "worldcup98/wc98_requests_per_minute.csv", cpu: false },
    TraceSpec {
        name: "asg-misconfiguration",
        path: "nab-aws-cloudwatch/cpu_utilization_asg_misconfiguration.csv",
        cpu: true,
    },
    TraceSpec { name: "elb-8c0756", path: "nab-aws-cloudwatch/elb_request_count_8c0756.csv", cpu: false },
    TraceSpec { name: "ec2-fe7f93", path: "nab-aws-cloudwatch/ec2_cpu_utilization_fe7f93.csv", cpu: true },
    TraceSpec { name: "twitter-IBM", path: "nab-twitter-volume/Twitter_volume_IBM.csv", cpu: false },
    TraceSpec { name: "twitter-KO", path: "nab-twitter-volume/Twitter_volume_KO.csv", cpu: false },
    TraceSpec { name: "twitter-UPS", path: "nab-twitter-volume/Twitter_volume_UPS.csv", cpu: false },
    TraceSpec { name: "twitter-CRM", path: "nab-twitter-volume/Twitter_volume_CRM.csv", cpu: false },
];

fn main() {
    if let Err(e) = run() {
        eprintln!("predictive_frontier: {e}");
        std::process::exit(2);
    }
}

fn with_target(p: &Policy, target: f64, predictive: Option<&Predictive>) -> Policy {
    let mut p = p.clone();
    for m in &mut p.metrics {
        // CPU targets only: a request-rate metric (`RequestCountPerTarget`) keeps its own.
        if let (Goal::Utilization { .. }, false) = (m.goal, m.name.contains("RequestCount")) {
            m.goal = Goal::Utilization { target };
        }
    }
    p.predictive = predictive.cloned();
    p
}

/// Piecewise-linear interpolation of `y` at `x` over points sorted by x; `None` outside.
fn interpolate(points: &[(f64, f64)], x: f64) -> Option<f64> {
    let mut pts = points.to_vec();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in pts.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x >= x0 && x <= x1 {
            if x1 == x0 {
                return Some(y0.min(y1));
            }
            return Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0));
        }
    }
    None
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// WAPE of our forecast (median, refitted hourly, 5-minute slots) and of AWS's (mean of the
/// same hour over up to 14 past days, refreshed every 6 h) against the 5-minute mean demand,
/// over the slots where both forecast.
fn forecast_errors(demand: &[(i64, f64)], end_ms: i64) -> (f64, f64, usize) {
    const SLOT: i64 = 300_000;
    const HOUR: i64 = 3_600_000;
    let Some(&(start, _)) = demand.first() else { return (f64::NAN, f64::NAN, 0) };
    // 5-minute means (time-weighted step function).
    let n_slots = usize::try_from((end_ms - start) / SLOT).unwrap_or(0);
    let mut slots = vec![0.0f64; n_slots];
    let mut j = 0;
    for (k, slot) in slots.iter_mut().enumerate() {
        let a = start + i64::try_from(k).unwrap_or(0) * SLOT;
        let b = a + SLOT;
        while j + 1 < demand.len() && demand[j + 1].0 <= a {
            j += 1;
        }
        let mut t = a;
        let mut i = j;
        let mut acc = 0.0;
        while t < b {
            let next = demand.get(i + 1).map_or(b, |p| p.0.min(b));
            #[allow(clippy::cast_precision_loss)]
            let w = (next - t) as f64;
            acc += demand[i].1 * w;
            t = next;
            i += 1;
            if i >= demand.len() {
                #[allow(clippy::cast_precision_loss)]
                let rest = (b - t) as f64;
                acc += demand[demand.len() - 1].1 * rest;
                break;
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let mean = acc / SLOT as f64;
        *slot = mean;
    }
    let spec = Predictive::default();
    let mut ours = Forecaster::new();
    let (mut e_ours, mut e_aws, mut total) = (0.0, 0.0, 0.0);
    let mut counted = 0;
    let mut hourly: Vec<(f64, u32)> = Vec::new();
    let mut aws_fc: Vec<Option<f64>> = Vec::new();
    let mut last_aws_refresh: Option<i64> = None;
    for (k, &actual) in slots.iter().enumerate() {
        let t = start + i64::try_from(k).unwrap_or(0) * SLOT;
        let at = ts(t);
        ours.refresh(&spec, at);
        let h = usize::try_from((t - start) / HOUR).unwrap_or(0);
        if last_aws_refresh.is_none_or(|r| t - r >= 6 * HOUR) && t - start >= 24 * HOUR {
            last_aws_refresh = Some(t);
            aws_fc = vec![None; h + 49];
            for (hh, fc) in aws_fc.iter_mut().enumerate().skip(h) {
                let mut vals = Vec::new();
                let mut past = hh;
                while past >= 24 && hh - (past - 24) <= 14 * 24 {
                    past -= 24;
                    if past < h
                        && let Some((s, c)) = hourly.get(past)
                        && *c > 0
                    {
                        vals.push(s / f64::from(*c));
                    }
                }
                if !vals.is_empty() {
                    #[allow(clippy::cast_precision_loss)]
                    let m = vals.iter().sum::<f64>() / vals.len() as f64;
                    *fc = Some(m);
                }
            }
        }
        let mine = ours.series(at, Duration::from_secs(300)).first().map(|p| p.forecast);
        let aws = aws_fc.get(h).copied().flatten();
        if let (Some(m), Some(a)) = (mine, aws)
            && t - start >= 3 * 86_400_000
        {
            e_ours += (actual - m).abs();
            e_aws += (actual - a).abs();
            total += actual;
            counted += 1;
        }
        ours.observe(at, actual);
        if hourly.len() <= h {
            hourly.resize(h + 1, (0.0, 0));
        }
        hourly[h].0 += actual;
        hourly[h].1 += 1;
    }
    (e_ours / total, e_aws / total, counted)
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [policy_path, dir, rest @ ..] = args.as_slice() else {
        return Err("usage: predictive_frontier POLICY TRACES_DIR [--only NAME,...] [--targets T,...] [--quantile Q] [--margin M] [--max-error E]".into());
    };
    let mut only: Option<String> = None;
    let mut targets = vec![40.0, 47.5, 55.0, 62.5, 70.0];
    let mut settings = Predictive { mode: PredictiveMode::Active, ..Predictive::default() };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || value.parse::<f64>().map_err(|e| format!("{flag}: {e}"));
        match flag.as_str() {
            "--only" => only = Some(value.clone()),
            "--quantile" => settings.quantile = num()?,
            "--margin" => settings.margin = num()?,
            "--max-error" => settings.max_error = num()?,
            "--targets" => {
                targets = value
                    .split(',')
                    .map(|t| t.trim().parse::<f64>().map_err(|e| e.to_string()))
                    .collect::<Result<_, _>>()?;
            }
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    let text = std::fs::read_to_string(policy_path).map_err(|e| format!("{policy_path}: {e}"))?;
    let base = parse_policy(policy_path, &text).policy.ok_or_else(|| format!("{policy_path}: invalid policy"))?;
    let default_target = vmscaler_engine::backtest::policy_target(&base).ok_or("the policy has no CPU target")?;
    if !targets.contains(&default_target) {
        targets.push(default_target);
    }
    let mut summary = Vec::new();
    for spec in TRACES {
        if only.as_deref().is_some_and(|o| !o.split(',').any(|x| spec.name.contains(x))) {
            continue;
        }
        let path = format!("{dir}/{}", spec.path);
        let text = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let trace = read_trace(&text, &TraceOptions::default()).map_err(|e| format!("{path}: {e}"))?;
        let demand = if spec.cpu {
            DemandUnit::CpuFleet(10.0)
        } else {
            #[allow(clippy::cast_precision_loss)]
            let mean = trace.points.iter().map(|p| p.value).sum::<f64>() / trace.points.len() as f64;
            DemandUnit::CapacityPerInstance(mean / 10.0)
        };
        let t0 = Instant::now();
        let mut curves: [Vec<(f64, f64, f64)>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for &target in &targets {
            let scenario = |t: f64| Scenario {
                demand,
                boot_delay: Duration::from_secs(90),
                metric_lag: Duration::from_secs(60),
                initial: None,
                target: Some(t),
            };
            for (i, pred) in [None, Some(&settings)].into_iter().enumerate() {
                let p = with_target(&base, target, pred);
                let prep = prepare(&p, &trace, scenario(target)).map_err(|e| e.to_string())?;
                let (r, _, _) = prep.run_policy(&mut |_| {});
                curves[i].push((target, r.figures.instance_hours, r.figures.under_provisioned_minutes));
            }
            let p = with_target(&base, target, None);
            let prep = prepare(&p, &trace, scenario(target)).map_err(|e| e.to_string())?;
            let r = prep.run_reference(Strategy::AwsPredictive, &mut |_| {});
            curves[2].push((target, r.figures.instance_hours, r.figures.under_provisioned_minutes));
        }
        println!("## {} ({:.1} s)", spec.name, t0.elapsed().as_secs_f64());
        println!(
            "| target | policy h | policy under-min | predictive h | predictive under-min | aws-predictive h | aws under-min |"
        );
        println!("|---:|---:|---:|---:|---:|---:|---:|");
        for ((b, p), a) in curves[0].iter().zip(&curves[1]).zip(&curves[2]) {
            println!("| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |", b.0, b.1, b.2, p.1, p.2, a.1, a.2);
        }
        let xy = |c: &Vec<(f64, f64, f64)>| c.iter().map(|p| (p.1, p.2)).collect::<Vec<_>>();
        let at_default = curves[1].iter().find(|p| p.0 == default_target).copied().ok_or("no default run")?;
        let base_eq = interpolate(&xy(&curves[0]), at_default.1);
        let aws_eq = interpolate(&xy(&curves[2]), at_default.1);
        // And the other way: predictive's under-provisioning at aws-predictive's default cost.
        let aws_default = curves[2].iter().find(|p| p.0 == default_target).copied().ok_or("no default run")?;
        let pred_at_aws = interpolate(&xy(&curves[1]), aws_default.1);
        #[allow(clippy::cast_precision_loss)]
        let (wape_ours, wape_aws, n) = forecast_errors(
            &prepare(
                &base,
                &trace,
                Scenario {
                    demand,
                    boot_delay: Duration::from_secs(90),
                    metric_lag: Duration::from_secs(60),
                    initial: None,
                    target: None,
                },
            )
            .map_err(|e| e.to_string())?
            .demand
            .iter()
            .map(|&(t, d)| (t, d * 100.0 / default_target))
            .collect::<Vec<_>>(),
            trace.end_ms,
        );
        let fmt = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
        println!(
            "at target {default_target}: predictive {:.1} h, {:.1} under-min; without predictive at equal hours {}; aws-predictive at equal hours {}; predictive at aws-predictive's {:.1} h: {} (aws {:.1})",
            at_default.1,
            at_default.2,
            fmt(base_eq),
            fmt(aws_eq),
            aws_default.1,
            fmt(pred_at_aws),
            aws_default.2
        );
        println!(
            "forecast WAPE (5-minute demand, {n} slots): ours {:.1}%, aws-predictive {:.1}%\n",
            wape_ours * 100.0,
            wape_aws * 100.0
        );
        summary.push((spec.name, at_default, base_eq, aws_eq, wape_ours, wape_aws));
    }
    println!(
        "| trace | predictive h | predictive under-min | without, equal h | change | aws-predictive, equal h | forecast WAPE | aws WAPE |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, p, b, a, wo, wa) in summary {
        let change = b.filter(|b| *b > 0.0).map_or("n/a".to_owned(), |b| format!("{:+.0}%", (p.2 / b - 1.0) * 100.0));
        let fmt = |x: Option<f64>| x.map_or("n/a".to_owned(), |v| format!("{v:.1}"));
        println!(
            "| {name} | {:.1} | {:.1} | {} | {change} | {} | {:.1}% | {:.1}% |",
            p.1,
            p.2,
            fmt(b),
            fmt(a),
            wo * 100.0,
            wa * 100.0
        );
    }
    Ok(())
}
