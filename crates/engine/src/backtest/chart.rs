//! `chart.svg`, hand-written: demand and each strategy's serving capacity over time, with the
//! policy's pre-warm floors shaded.
//!
//! Two panels when the trace spans more than two days: the whole trace, and the 24 hours
//! around the peak demand. Each panel is cut into one bucket per two pixels; demand is drawn
//! as its per-bucket peak (light area) and mean (dark line), each strategy as its per-bucket
//! mean serving capacity (a step line), so a long trace stays readable.
//!
//! Not here: rasterising (any SVG viewer does it).

use std::fmt::Write as _;

use super::policy_run::ts;
use super::{Backtest, Strategy, SupplyRow};

/// Fill of a pre-warm window while its floor holds, and once `release_after` released it.
const HELD_FILL: &str = "#ffe08a";
const RELEASED_FILL: &str = "#fff6d6";
const FORECAST_FILL: &str = "#cfe8cf";
const W: f64 = 1200.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 60.0;
const RIGHT: f64 = 20.0;
const TOP: f64 = 50.0;
const GAP: f64 = 60.0;
const BUCKET_PX: f64 = 2.0;

fn color(s: Strategy) -> (&'static str, &'static str, f64) {
    match s {
        Strategy::Policy => ("#d62728", "", 2.0),
        Strategy::Hpa => ("#1f77b4", "", 1.2),
        Strategy::TargetTracking => ("#ff7f0e", "", 1.2),
        Strategy::Static => ("#7f7f7f", "6 4", 1.2),
        Strategy::Oracle => ("#2ca02c", "2 2", 1.2),
        Strategy::AwsPredictive => ("#9467bd", "", 1.2),
    }
}

/// Per-bucket (time-weighted mean, max) of `value` over `[t0, t1)`.
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

fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1e-9);
    let mag = 10f64.powf(raw.log10().floor());
    let n = raw / mag;
    mag * if n <= 1.0 {
        1.0
    } else if n <= 2.0 {
        2.0
    } else if n <= 5.0 {
        5.0
    } else {
        10.0
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

#[allow(clippy::cast_precision_loss, clippy::too_many_lines)]
fn panel(o: &mut String, b: &Backtest, top: f64, t0: i64, t1: i64, title: &str) {
    let pw = W - LEFT - RIGHT;
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = ((pw / BUCKET_PX) as usize).max(1);
    let Some(first) = b.runs.first() else { return };
    let demand = buckets(&first.rows, b.end_ms, t0, t1, n, |r| r.demand);
    let series: Vec<(Strategy, Vec<(f64, f64)>)> =
        b.runs.iter().map(|r| (r.strategy, buckets(&r.rows, b.end_ms, t0, t1, n, |x| f64::from(x.serving)))).collect();
    let ymax =
        demand.iter().map(|d| d.1).chain(series.iter().flat_map(|s| s.1.iter().map(|v| v.0))).fold(1.0, f64::max)
            * 1.08;
    let x = |t: i64| LEFT + (t - t0) as f64 / (t1 - t0).max(1) as f64 * pw;
    let bx = |k: usize| LEFT + k as f64 * pw / n as f64;
    let y = |v: f64| top + PANEL_H - v / ymax * PANEL_H;
    let _ =
        writeln!(o, r#"<text x="{LEFT}" y="{:.1}" font-size="14" font-weight="bold">{}</text>"#, top - 8.0, esc(title));
    let _ = writeln!(
        o,
        r##"<rect x="{LEFT}" y="{top}" width="{pw}" height="{PANEL_H}" fill="#ffffff" stroke="#999999"/>"##
    );
    // Pre-warm windows: solid where the floor held, pale where `release_after` released it.
    for (windows, fill) in
        [(&b.prewarm, HELD_FILL), (&b.prewarm_released, RELEASED_FILL), (&b.forecast_floors, FORECAST_FILL)]
    {
        for &(a, z) in windows {
            if z <= t0 || a >= t1 {
                continue;
            }
            let (xa, xz) = (x(a.max(t0)), x(z.min(t1)));
            let _ = writeln!(
                o,
                r##"<rect x="{xa:.1}" y="{top}" width="{:.1}" height="{PANEL_H}" fill="{fill}" fill-opacity="0.55"/>"##,
                (xz - xa).max(1.0)
            );
        }
    }
    // Y grid.
    let step = nice_step(ymax, 5.0);
    let mut v = 0.0;
    while v <= ymax {
        let yy = y(v);
        let _ = writeln!(
            o,
            r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" font-size="11" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            yy + 4.0,
            if step >= 1.0 { format!("{v:.0}") } else { format!("{v:.1}") }
        );
        v += step;
    }
    // X ticks: about 8 labels, at whole hours or days.
    let span_h = (t1 - t0) as f64 / 3_600_000.0;
    let tick_h = [1.0, 2.0, 3.0, 6.0, 12.0, 24.0, 48.0, 168.0, 336.0, 720.0]
        .into_iter()
        .find(|h| span_h / h <= 9.0)
        .unwrap_or(1440.0);
    #[allow(clippy::cast_possible_truncation)]
    let tick_ms = (tick_h * 3_600_000.0) as i64;
    let mut t = (t0 + tick_ms - 1).div_euclid(tick_ms) * tick_ms;
    while t < t1 {
        let xx = x(t);
        if xx > LEFT + pw - 30.0 {
            break; // the label would be cut off at the right edge
        }
        let s = ts(t).to_string();
        let label = if tick_h >= 24.0 { s[..10].to_owned() } else { format!("{} {}", &s[5..10], &s[11..16]) };
        let _ = writeln!(
            o,
            r##"<line x1="{xx:.1}" y1="{top}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{:.1}" font-size="11" text-anchor="middle">{label}</text>"##,
            top + PANEL_H,
            top + PANEL_H + 15.0
        );
        t += tick_ms;
    }
    // Demand: peak area and mean line.
    let mut area = format!("M{:.1},{:.1}", bx(0), y(0.0));
    for (k, d) in demand.iter().enumerate() {
        let _ = write!(area, " L{:.1},{:.1} L{:.1},{:.1}", bx(k), y(d.1), bx(k + 1), y(d.1));
    }
    let _ = write!(area, " L{:.1},{:.1} Z", bx(n), y(0.0));
    let _ = writeln!(o, r##"<path d="{area}" fill="#c8c8c8" stroke="none"/>"##);
    let step_path = |vals: &mut dyn Iterator<Item = f64>| {
        let mut p = String::new();
        for (k, v) in vals.enumerate() {
            let cmd = if k == 0 { 'M' } else { 'L' };
            let _ = write!(p, "{cmd}{:.1},{:.1} H{:.1} ", bx(k), y(v), bx(k + 1));
        }
        p
    };
    let _ = writeln!(
        o,
        r##"<path d="{}" fill="none" stroke="#333333" stroke-width="1"/>"##,
        step_path(&mut demand.iter().map(|d| d.0))
    );
    // Strategies, policy last so it is on top.
    let mut order: Vec<&(Strategy, Vec<(f64, f64)>)> = series.iter().collect();
    order.sort_by_key(|s| s.0 == Strategy::Policy);
    for (s, vals) in order {
        let (c, dash, w) = color(*s);
        let dash = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let _ = writeln!(
            o,
            r#"<path d="{}" fill="none" stroke="{c}" stroke-width="{w}"{dash}/>"#,
            step_path(&mut vals.iter().map(|v| v.0))
        );
    }
    let _ = writeln!(
        o,
        r#"<text x="14" y="{:.1}" font-size="11" transform="rotate(-90 14 {:.1})" text-anchor="middle">instances</text>"#,
        top + PANEL_H / 2.0,
        top + PANEL_H / 2.0
    );
}

/// The whole chart.
pub fn svg(b: &Backtest, trace_name: &str) -> String {
    let Some(first) = b.runs.first() else { return String::new() };
    let (t0, t1) = (first.rows.first().map_or(0, |r| r.at_ms), b.end_ms);
    let zoom = if t1 - t0 > 2 * 86_400_000 {
        let peak = first.rows.iter().max_by(|a, c| a.demand.total_cmp(&c.demand)).map_or(t0, |r| r.at_ms);
        let a = (peak - 43_200_000).clamp(t0, t1 - 86_400_000);
        Some((a, a + 86_400_000))
    } else {
        None
    };
    let panels = if zoom.is_some() { 2.0 } else { 1.0 };
    let h = TOP + panels * (PANEL_H + GAP) + 10.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="sans-serif">"#
    );
    let _ = writeln!(o, r##"<rect width="100%" height="100%" fill="#fafafa"/>"##);
    let _ = writeln!(
        o,
        r#"<text x="{LEFT}" y="20" font-size="16" font-weight="bold">{} on {}: demand and serving capacity (instances)</text>"#,
        esc(&b.policy),
        esc(trace_name)
    );
    // Legend.
    let mut lx = LEFT;
    let _ = writeln!(
        o,
        r##"<rect x="{lx}" y="28" width="14" height="10" fill="#c8c8c8"/><text x="{:.1}" y="37" font-size="12">demand (peak, mean line)</text>"##,
        lx + 18.0
    );
    lx += 190.0;
    for r in &b.runs {
        let (c, dash, w) = color(r.strategy);
        let dash = if dash.is_empty() { String::new() } else { format!(r#" stroke-dasharray="{dash}""#) };
        let _ = writeln!(
            o,
            r#"<line x1="{lx}" y1="33" x2="{:.1}" y2="33" stroke="{c}" stroke-width="{}"{dash}/><text x="{:.1}" y="37" font-size="12">{}</text>"#,
            lx + 22.0,
            w + 1.0,
            lx + 26.0,
            r.strategy
        );
        lx += 40.0 + 7.0 * r.strategy.as_str().len() as f64;
    }
    if !b.prewarm.is_empty() {
        let _ = writeln!(
            o,
            r##"<rect x="{lx}" y="28" width="14" height="10" fill="{HELD_FILL}"/><text x="{:.1}" y="37" font-size="12">pre-warm floor</text>"##,
            lx + 18.0
        );
        lx += 130.0;
    }
    if !b.prewarm_released.is_empty() {
        let _ = writeln!(
            o,
            r##"<rect x="{lx}" y="28" width="14" height="10" fill="{RELEASED_FILL}" stroke="{HELD_FILL}"/><text x="{:.1}" y="37" font-size="12">floor released</text>"##,
            lx + 18.0
        );
        lx += 130.0;
    }
    if !b.forecast_floors.is_empty() {
        let _ = writeln!(
            o,
            r##"<rect x="{lx}" y="28" width="14" height="10" fill="{FORECAST_FILL}"/><text x="{:.1}" y="37" font-size="12">forecast floor</text>"##,
            lx + 18.0
        );
    }
    let top = TOP + 20.0;
    panel(&mut o, b, top, t0, t1, "whole trace");
    if let Some((a, z)) = zoom {
        panel(&mut o, b, top + PANEL_H + GAP, a, z, &format!("24 h around the peak ({} to {})", ts(a), ts(z)));
    }
    o.push_str("</svg>\n");
    o
}
