//! `chart.svg`, hand-written: demand and each strategy's serving capacity over time, with the
//! policy's pre-warm floors shaded.
//!
//! Two panels when the trace spans more than two days: the whole trace, and the 24 hours
//! around the peak demand. Each panel is cut into one bucket per two pixels; demand is drawn
//! as its per-bucket peak (light area) and mean (dark line), each strategy as its per-bucket
//! mean serving capacity (a step line), so a long trace stays readable.
//!
//! The buckets are summed as each strategy's rows stream by ([`Chart::series`], [`ChartRun`]),
//! so drawing never needs the whole series: the whole-trace panel holds its buckets, and the
//! 24 hours around the peak are found while the policy runs, holding only the rows of the
//! current peak's window and of the last 12 hours (see [`ChartRun`]).
//!
//! Not here: rasterising (any SVG viewer does it).

use std::collections::VecDeque;
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
const HALF_DAY_MS: i64 = 43_200_000;
const DAY_MS: i64 = 86_400_000;

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

/// Buckets in a panel: one per two pixels.
pub(crate) fn bucket_count() -> usize {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let n = ((W - LEFT - RIGHT) / BUCKET_PX) as usize;
    n.max(1)
}

/// One panel's per-bucket (time-weighted mean, max) of demand and of serving capacity.
#[derive(Debug, Clone, PartialEq)]
pub struct PanelBuckets {
    pub demand: Vec<(f64, f64)>,
    pub serving: Vec<(f64, f64)>,
}

/// The buckets of `[t0, t1)`, summed one row's span at a time.
#[derive(Debug, Clone)]
struct Buckets {
    t0: i64,
    t1: i64,
    width: f64,
    demand: Vec<(f64, f64)>,
    serving: Vec<(f64, f64)>,
}

impl Buckets {
    fn new(t0: i64, t1: i64, n: usize) -> Buckets {
        #[allow(clippy::cast_precision_loss)]
        let width = (t1 - t0) as f64 / n as f64;
        Buckets { t0, t1, width, demand: vec![(0.0, f64::NEG_INFINITY); n], serving: vec![(0.0, f64::NEG_INFINITY); n] }
    }

    /// Adds `demand` and `serving` holding over `[from, until)`.
    fn add(&mut self, s: &Span) {
        let (t0, width, n) = (self.t0, self.width, self.demand.len());
        let a = s.at.max(t0);
        let b = s.until.min(self.t1);
        if a >= self.t1 || b <= a {
            return;
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let (ka, kb) = (((a - t0) as f64 / width) as usize, (((b - t0) as f64 / width).ceil() as usize).min(n));
        for k in ka..kb {
            #[allow(clippy::cast_precision_loss)]
            let (ba, bb) = (t0 as f64 + k as f64 * width, t0 as f64 + (k + 1) as f64 * width);
            #[allow(clippy::cast_precision_loss)]
            let overlap = (b as f64).min(bb) - (a as f64).max(ba);
            if overlap > 0.0 {
                for (slot, v) in [(&mut self.demand[k], s.demand), (&mut self.serving[k], s.serving)] {
                    slot.0 += v * overlap / width;
                    slot.1 = slot.1.max(v);
                }
            }
        }
    }

    fn finish(self) -> PanelBuckets {
        let unset = |mut v: Vec<(f64, f64)>| {
            for s in &mut v {
                if s.1 == f64::NEG_INFINITY {
                    s.1 = 0.0;
                }
            }
            v
        };
        PanelBuckets { demand: unset(self.demand), serving: unset(self.serving) }
    }
}

/// A row and how long it held.
#[derive(Debug, Clone, Copy)]
struct Span {
    at: i64,
    until: i64,
    demand: f64,
    serving: f64,
}

impl Span {
    fn overlaps(&self, (a, z): (i64, i64)) -> bool {
        self.until > a && self.at < z
    }
}

/// One strategy's lines in both panels.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub strategy: Strategy,
    pub whole: PanelBuckets,
    pub zoom: Option<PanelBuckets>,
}

/// What `chart.svg` draws: per strategy, the buckets of each panel.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// The whole trace: the first row to the end of the trace.
    pub span: (i64, i64),
    /// The 24 hours around the first strategy's (the policy's) peak demand, when the trace
    /// spans more than two days; known once that strategy's rows are all in.
    pub zoom: Option<(i64, i64)>,
    /// In the order the strategies ran; the first one's demand is drawn.
    pub series: Vec<Series>,
}

impl Chart {
    /// A chart of `[start, end)`, `start` being the first row's time.
    pub fn new(start: i64, end: i64) -> Chart {
        Chart { span: (start, end), zoom: None, series: Vec::new() }
    }

    /// Sums the next strategy's rows, fed to [`ChartRun::push`]; then [`Chart::add`] it.
    pub fn series(&self, strategy: Strategy) -> ChartRun {
        let (t0, t1) = self.span;
        let n = bucket_count();
        let zoom = match (self.series.is_empty(), self.zoom) {
            (true, _) if t1 - t0 > 2 * DAY_MS => Zoom::Peak(PeakZoom {
                span: self.span,
                peak: None,
                window: (t0, t0 + DAY_MS),
                held: None,
                recent: VecDeque::new(),
            }),
            (false, Some((a, z))) => Zoom::Known(Buckets::new(a, z, n)),
            _ => Zoom::None,
        };
        ChartRun { strategy, end: t1, last: None, whole: Buckets::new(t0, t1, n), zoom }
    }

    /// Adds a strategy's series once all its rows are in.
    pub fn add(&mut self, run: ChartRun) {
        let (series, zoom) = run.finish();
        if self.series.is_empty() {
            self.zoom = zoom;
        }
        self.series.push(series);
    }
}

/// The zoom panel of one strategy while its rows come in.
#[derive(Debug)]
enum Zoom {
    /// No zoom panel (a trace of two days or less).
    None,
    /// The window is known (from the first strategy).
    Known(Buckets),
    /// The first strategy: the window follows its peak.
    Peak(PeakZoom),
}

/// Finds the 24 h around the last row of highest demand (as `Iterator::max_by` would: the last
/// of equal maxima), clamped into the trace, without holding every row. A later peak's window
/// starts at most 12 h before the row that makes it, or at `end - 24 h`, so `recent` keeps the
/// spans that end after `min(now - 12 h, end - 24 h)`; the current peak's spans are those of
/// `recent` until it would let them go, then a copy (`held`) taken at that moment, which later
/// spans of the window are appended to. Memory: 24 to 36 hours of rows, whatever the length of
/// the trace.
#[derive(Debug)]
struct PeakZoom {
    span: (i64, i64),
    peak: Option<f64>,
    window: (i64, i64),
    held: Option<Vec<Span>>,
    recent: VecDeque<Span>,
}

impl PeakZoom {
    fn row(&mut self, r: &SupplyRow) {
        if self.peak.is_some_and(|p| p.total_cmp(&r.demand) == std::cmp::Ordering::Greater) {
            return;
        }
        self.peak = Some(r.demand);
        let (t0, t1) = self.span;
        let a = (r.at_ms - HALF_DAY_MS).clamp(t0, t1 - DAY_MS);
        self.window = (a, a + DAY_MS);
        self.held = None;
    }

    fn span(&mut self, s: Span) {
        if let Some(held) = &mut self.held
            && s.overlaps(self.window)
        {
            held.push(s);
        }
        self.recent.push_back(s);
        let keep_after = (s.until - HALF_DAY_MS).min(self.span.1 - DAY_MS);
        if self.held.is_none() && keep_after > self.window.0 {
            self.held = Some(self.recent.iter().filter(|x| x.overlaps(self.window)).copied().collect());
        }
        while self.recent.front().is_some_and(|x| x.until <= keep_after) {
            self.recent.pop_front();
        }
    }

    fn finish(self, n: usize) -> ((i64, i64), PanelBuckets) {
        let (a, z) = self.window;
        let mut b = Buckets::new(a, z, n);
        match &self.held {
            Some(held) => held.iter().for_each(|s| b.add(s)),
            None => self.recent.iter().for_each(|s| b.add(s)),
        }
        (self.window, b.finish())
    }
}

/// One strategy's chart series, summed from its rows as they come (in time order).
#[derive(Debug)]
pub struct ChartRun {
    strategy: Strategy,
    end: i64,
    last: Option<SupplyRow>,
    whole: Buckets,
    zoom: Zoom,
}

impl ChartRun {
    pub fn push(&mut self, r: &SupplyRow) {
        if let Some(p) = self.last {
            self.span(Span { at: p.at_ms, until: r.at_ms, demand: p.demand, serving: f64::from(p.serving) });
        }
        if let Zoom::Peak(z) = &mut self.zoom {
            z.row(r);
        }
        self.last = Some(*r);
    }

    fn span(&mut self, s: Span) {
        self.whole.add(&s);
        match &mut self.zoom {
            Zoom::None => {}
            Zoom::Known(b) => b.add(&s),
            Zoom::Peak(z) => z.span(s),
        }
    }

    fn finish(mut self) -> (Series, Option<(i64, i64)>) {
        if let Some(p) = self.last.take() {
            self.span(Span { at: p.at_ms, until: self.end, demand: p.demand, serving: f64::from(p.serving) });
        }
        let (zoom, window) = match self.zoom {
            Zoom::None => (None, None),
            Zoom::Known(b) => (Some(b.finish()), None),
            Zoom::Peak(z) => {
                let (w, b) = z.finish(bucket_count());
                (Some(b), Some(w))
            }
        };
        (Series { strategy: self.strategy, whole: self.whole.finish(), zoom }, window)
    }
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
fn panel(o: &mut String, b: &Backtest, top: f64, (t0, t1): (i64, i64), zoom: bool, title: &str) {
    let pw = W - LEFT - RIGHT;
    let n = bucket_count();
    let pick = |s: &Series| if zoom { s.zoom.clone() } else { Some(s.whole.clone()) };
    let Some(first) = b.chart.series.first().and_then(pick) else { return };
    let demand = first.demand;
    let series: Vec<(Strategy, Vec<(f64, f64)>)> =
        b.chart.series.iter().filter_map(|s| pick(s).map(|p| (s.strategy, p.serving))).collect();
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
    if b.chart.series.is_empty() {
        return String::new();
    }
    let zoom = b.chart.zoom;
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
    panel(&mut o, b, top, b.chart.span, false, "whole trace");
    if let Some((a, z)) = zoom {
        panel(&mut o, b, top + PANEL_H + GAP, (a, z), true, &format!("24 h around the peak ({} to {})", ts(a), ts(z)));
    }
    o.push_str("</svg>\n");
    o
}
