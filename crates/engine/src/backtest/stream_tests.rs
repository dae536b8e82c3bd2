//! The streamed backtest ([`run_with`]) against the collected one ([`run`]) and against the
//! chart as it was drawn from collected rows before the rows streamed: same rows, figures,
//! CSV, chart and report, bit for bit, on traces whose peak sits at the start, in the middle,
//! near the end, nowhere in particular (a flat trace), and on a trace too short for a zoom panel.

use proptest::prelude::{prop, prop_assert_eq, proptest};
use proptest::strategy::Strategy as _;

use super::chart::{Chart, PanelBuckets, Series, bucket_count};
use super::metrics::{Recorder, RowSink, RowStream};
use super::*;
use crate::policy::parse_policy;

const M: i64 = 60_000;
const DAY: i64 = 1440 * M;

fn policy() -> Policy {
    let yaml = "name: stream-web
pool:
  tag: { key: pool, value: web }
min: 2
max: 40
interval: 1m
metrics:
  - id: cpu
    namespace: AWS/EC2
    name: CPUUtilization
    statistic: Average
    period: 1m
    target: 50
scaling:
  tolerance: 0.1
  scale_up:
    confirmations: 1
    cooldown: 2m
    max_step: 100%
  scale_down:
    stabilization: 10m
    cooldown: 2m
    max_step: 50%
history:
  window: 30m
  max_age: 5m
";
    let r = parse_policy("stream.yaml", yaml);
    let msgs: Vec<String> = r.diagnostics.iter().map(ToString::to_string).collect();
    r.policy.unwrap_or_else(|| panic!("test policy invalid: {msgs:?}"))
}

/// `minutes` one-minute points of `load(minute)`, with a little deterministic noise.
fn trace(minutes: i64, load: impl Fn(i64) -> f64) -> Trace {
    let mut csv = String::from("timestamp,value\n");
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for m in 0..minutes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        #[allow(clippy::cast_precision_loss)]
        let noise = (x % 1001) as f64 / 1000.0 - 0.5;
        csv.push_str(&format!("{},{:.2}\n", 1_700_000_000 + m * 60, (load(m) + noise).max(0.0)));
    }
    read_trace(&csv, &TraceOptions::default()).unwrap()
}

fn daily(m: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let phase = (m % 1440) as f64 / 1440.0 * std::f64::consts::TAU;
    10.0 + 8.0 * phase.sin()
}

/// Boot 90 s, metric lag 60 s, one unit of demand an instance.
fn scenario() -> Scenario {
    super::tests::scenario(90, 60)
}

/// Per-bucket (time-weighted mean, max) of `value` over `[t0, t1)`: `chart.rs` before the
/// rows streamed, verbatim.
fn buckets(
    rows: &[SupplyRow],
    end: i64,
    t0: i64,
    t1: i64,
    n: usize,
    value: impl Fn(&SupplyRow) -> f64,
) -> Vec<(f64, f64)> {
    let mut out = vec![(0.0, f64::NEG_INFINITY); n];
    #[allow(clippy::cast_precision_loss)]
    let width = (t1 - t0) as f64 / n as f64;
    let start = rows.partition_point(|r| r.at_ms <= t0).saturating_sub(1);
    for (i, r) in rows.iter().enumerate().skip(start) {
        let a = r.at_ms.max(t0);
        let b = rows.get(i + 1).map_or(end, |x| x.at_ms).min(t1);
        if a >= t1 {
            break;
        }
        if b <= a {
            continue;
        }
        let v = value(r);
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (ka, kb) = (((a - t0) as f64 / width) as usize, (((b - t0) as f64 / width).ceil() as usize).min(n));
        for (k, slot) in out.iter_mut().enumerate().take(kb).skip(ka) {
            #[allow(clippy::cast_precision_loss)]
            let (ba, bb) = (t0 as f64 + k as f64 * width, t0 as f64 + (k + 1) as f64 * width);
            #[allow(clippy::cast_precision_loss)]
            let overlap = (b as f64).min(bb) - (a as f64).max(ba);
            if overlap > 0.0 {
                slot.0 += v * overlap / width;
                slot.1 = slot.1.max(v);
            }
        }
    }
    for s in &mut out {
        if s.1 == f64::NEG_INFINITY {
            s.1 = 0.0;
        }
    }
    out
}

/// The chart as `chart.rs` drew it from the collected rows before the rows streamed.
fn chart_from_rows(b: &Backtest) -> Chart {
    let n = bucket_count();
    let first = &b.runs[0];
    let (t0, t1) = (first.rows.first().map_or(0, |r| r.at_ms), b.end_ms);
    let zoom = (t1 - t0 > 2 * DAY).then(|| {
        let peak = first.rows.iter().max_by(|a, c| a.demand.total_cmp(&c.demand)).map_or(t0, |r| r.at_ms);
        let a = (peak - DAY / 2).clamp(t0, t1 - DAY);
        (a, a + DAY)
    });
    let panel = |rows: &[SupplyRow], (a, z): (i64, i64)| PanelBuckets {
        demand: buckets(rows, b.end_ms, a, z, n, |r| r.demand),
        serving: buckets(rows, b.end_ms, a, z, n, |r| f64::from(r.serving)),
    };
    Chart {
        span: (t0, t1),
        zoom,
        series: b
            .runs
            .iter()
            .map(|r| Series {
                strategy: r.strategy,
                whole: panel(&r.rows, (t0, t1)),
                zoom: zoom.map(|w| panel(&r.rows, w)),
            })
            .collect(),
    }
}

/// Bit patterns of every float of a chart, so that `-0.0` and `0.0` (or NaNs) cannot pass
/// for each other.
fn bits(c: &Chart) -> Vec<u64> {
    let panel = |p: &PanelBuckets| -> Vec<u64> {
        p.demand.iter().chain(&p.serving).flat_map(|(a, b)| [a.to_bits(), b.to_bits()]).collect()
    };
    c.series.iter().flat_map(|s| panel(&s.whole).into_iter().chain(s.zoom.iter().flat_map(panel))).collect()
}

fn check(name: &str, t: &Trace, expect_zoom: bool) {
    let p = policy();
    let compare =
        [Strategy::Hpa, Strategy::TargetTracking, Strategy::Static, Strategy::Oracle, Strategy::AwsPredictive];
    let collected = run(&p, t, scenario(), &compare, &mut |_, _| {}).unwrap();
    let mut csv: Vec<(Strategy, String)> = Vec::new();
    let streamed = run_with(&p, t, scenario(), &compare, &mut |_, _| {}, &mut |s, r| {
        if csv.last().is_none_or(|(last, _)| *last != s) {
            csv.push((s, report::SUPPLY_CSV_HEADER.to_owned()));
        }
        if let Some((_, text)) = csv.last_mut() {
            text.push_str(&format!("{}\n", report::SupplyLine(r)));
        }
    })
    .unwrap();

    assert!(streamed.runs.iter().all(|r| r.rows.is_empty()), "{name}: streamed rows are not held");
    assert_eq!(collected.runs.len(), 6, "{name}");
    assert_eq!(csv.len(), collected.runs.len(), "{name}: one CSV per strategy");
    for ((s, text), c) in csv.iter().zip(&collected.runs) {
        assert_eq!(*s, c.strategy, "{name}");
        assert!(c.rows.len() > 1, "{name}: {s} has rows");
        assert_eq!(*text, report::supply_csv(c), "{name}: supply-{s}.csv");
        // The figures of the rows as a whole equal those summed on the way.
        let mut whole = figures(s.as_str(), &c.rows, collected.end_ms);
        whole.cost_vs_oracle = c.figures.cost_vs_oracle;
        assert_eq!(whole, c.figures, "{name}: {s}");
    }
    for (a, b) in collected.runs.iter().zip(&streamed.runs) {
        assert_eq!(a.figures, b.figures, "{name}: {}", a.strategy);
    }

    let reference = chart_from_rows(&collected);
    assert_eq!(reference.zoom.is_some(), expect_zoom, "{name}");
    assert_eq!(collected.chart, reference, "{name}: collected chart");
    assert_eq!(streamed.chart, reference, "{name}: streamed chart");
    assert_eq!(bits(&streamed.chart), bits(&reference), "{name}: chart bits");
    let svg = chart::svg(&streamed, "t.csv");
    assert_eq!(svg, chart::svg(&collected, "t.csv"), "{name}: chart.svg");
    assert_eq!(svg.matches("<path").count(), if expect_zoom { 16 } else { 8 }, "{name}: both panels drawn");
    assert_eq!(report::markdown(&streamed, "t.csv"), report::markdown(&collected, "t.csv"), "{name}");
    assert_eq!(report::json(&streamed, "t.csv"), report::json(&collected, "t.csv"), "{name}");
}

#[test]
fn streamed_rows_figures_chart_and_report_equal_the_collected_ones() {
    let days = 6 * 1440;
    // The peak early, in the middle, in the last 12 hours (the window clamped to the end).
    check("early peak", &trace(days, |m| daily(m) + if (100..130).contains(&m) { 25.0 } else { 0.0 }), true);
    check("middle peak", &trace(days, |m| daily(m) + if (4000..4090).contains(&m) { 25.0 } else { 0.0 }), true);
    check("late peak", &trace(days, |m| daily(m) + if m > days - 200 { 25.0 } else { 0.0 }), true);
    // Two equal plateaus far apart: the later one is the peak (the last of equal maxima).
    check(
        "equal peaks",
        &trace(days, |m| if (500..700).contains(&m) || (6000..6300).contains(&m) { 30.0 } else { 5.0 }),
        true,
    );
    // Flat: every row ties with the peak, which so moves with every row.
    check("flat", &trace(days, |_| 12.0), true);
    // Rising: every row is a new peak.
    #[allow(clippy::cast_precision_loss)]
    check("rising", &trace(days, |m| 3.0 + m as f64 / 400.0), true);
    check("two days", &trace(2 * 1440, daily), false);
}

fn rows_strategy() -> impl proptest::strategy::Strategy<Value = Vec<SupplyRow>> {
    // Few states and repeated instants, so that rows merge and same-instant changes undo each other.
    prop::collection::vec((0i64..3, 0u32..3, 0u32..3, 0u32..2), 0..60).prop_map(|steps| {
        let mut at = 0;
        steps
            .into_iter()
            .map(|(dt, serving, billed, demand)| {
                at += dt;
                SupplyRow { at_ms: at, demand: f64::from(demand), serving, billed, desired: billed }
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn a_row_stream_hands_over_exactly_the_rows_a_recorder_collects(rows in rows_strategy()) {
        let mut rec = Recorder::new();
        let mut streamed = Vec::new();
        let mut out = |r: &SupplyRow| streamed.push(*r);
        let mut stream = RowStream::new(&mut out);
        for r in &rows {
            rec.set(*r);
            RowSink::set(&mut stream, *r);
        }
        stream.finish();
        prop_assert_eq!(streamed, rec.into_rows());
    }
}
