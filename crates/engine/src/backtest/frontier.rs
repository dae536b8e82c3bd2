//! The cost/risk frontier: the policy and the reference strategies run over a list of values of
//! one policy field (`--sweep cpu.target=40,45,50`), each point's instance-hours (cost) against
//! its under-provisioned minutes (risk).
//!
//! A policy that bills less than a reference may simply run hotter; compared at one operating
//! point that looks like a win. Compared *at equal cost* it is not: for each policy point, each
//! reference's under-provisioned minutes at the same instance-hours (linear interpolation
//! between the reference's own sweep points, none outside their range) and the ratio.
//!
//! A swept metric target moves the policy's other metric targets with it, in proportion (so a
//! CPU target and a requests-per-instance target keep describing the same instance), and the
//! reference strategies take the swept value as their CPU target.
//!
//! Pure: [`sweep_point`] runs one point; the caller decides how to run points in parallel
//! (the `vmscaler backtest` command uses one thread per core). Renders `frontier.md`,
//! `frontier.json` and `frontier.svg`. Not here: files and threads.

use std::fmt::Write as _;

use serde::Serialize;

use super::{BacktestError, Figures, Scenario, Strategy, Trace, policy_target, prepare};
use crate::policy::{Goal, Policy};

/// The strategies a sweep runs at every point.
pub const SWEPT: [Strategy; 3] = [Strategy::Policy, Strategy::Hpa, Strategy::TargetTracking];

/// A parsed `--sweep FIELD=V1,V2,...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// As given, e.g. `cpu.target`.
    pub field: String,
    /// The metric whose target is swept.
    pub metric: String,
    pub values: Vec<f64>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SweepError {
    #[error("--sweep {0:?}: expected FIELD=V1,V2,... (e.g. cpu.target=40,45,50)")]
    Syntax(String),
    #[error("--sweep: unknown field {field:?} (sweepable: {known})")]
    UnknownField { field: String, known: String },
    #[error("--sweep {field}: empty list of values")]
    Empty { field: String },
    #[error("--sweep {field}: value {value:?} {reason}")]
    InvalidValue { field: String, value: String, reason: String },
    #[error("--max-under-share {0:?}: expected a percentage between 0 and 100, e.g. 1%")]
    Share(String),
}

/// Fields a sweep can vary: each metric's target.
pub fn sweepable(policy: &Policy) -> Vec<String> {
    policy.metrics.iter().map(|m| format!("{}.target", m.id)).collect()
}

fn target_of(goal: Goal) -> f64 {
    match goal {
        Goal::Utilization { target } => target,
        Goal::PerInstance { target_per_instance } => target_per_instance,
    }
}

/// Parses and checks `FIELD=V1,V2,...` against `policy`: every value must make a valid policy.
pub fn parse_sweep(policy: &Policy, arg: &str) -> Result<Sweep, SweepError> {
    let (field, list) = arg.split_once('=').ok_or_else(|| SweepError::Syntax(arg.to_owned()))?;
    let field = field.trim().to_owned();
    let metric = field
        .strip_suffix(".target")
        .filter(|id| policy.metrics.iter().any(|m| m.id == *id))
        .ok_or_else(|| SweepError::UnknownField { field: field.clone(), known: sweepable(policy).join(", ") })?
        .to_owned();
    let mut values = Vec::new();
    for raw in list.split(',').map(str::trim) {
        if raw.is_empty() {
            if list.trim().is_empty() {
                return Err(SweepError::Empty { field });
            }
            return Err(SweepError::InvalidValue { field, value: raw.to_owned(), reason: "is empty".into() });
        }
        let v: f64 = raw.parse().map_err(|_| SweepError::InvalidValue {
            field: field.clone(),
            value: raw.to_owned(),
            reason: "is not a number".into(),
        })?;
        let sweep = Sweep { field: field.clone(), metric: metric.clone(), values: vec![] };
        swept_policy(policy, &sweep, v).map_err(|reason| SweepError::InvalidValue {
            field: field.clone(),
            value: raw.to_owned(),
            reason,
        })?;
        if !values.contains(&v) {
            values.push(v);
        }
    }
    if values.is_empty() {
        return Err(SweepError::Empty { field });
    }
    Ok(Sweep { field, metric, values })
}

/// `policy` with the swept metric's target set to `value` and every other metric's target
/// scaled by the same factor; `Err(reason)` when the value is not a valid target.
pub fn swept_policy(policy: &Policy, sweep: &Sweep, value: f64) -> Result<Policy, String> {
    let Some(m) = policy.metrics.iter().find(|m| m.id == sweep.metric) else {
        return Err(format!("names no metric of policy {:?}", policy.name));
    };
    if !(value.is_finite() && value > 0.0) {
        return Err("must be a positive number".into());
    }
    if let Goal::Utilization { .. } = m.goal
        && value > 100.0
    {
        return Err("is above 100 (a utilisation target is a percentage)".into());
    }
    if m.ceiling.is_some_and(|c| value >= c) {
        return Err(format!("is not below the metric's ceiling {}", m.ceiling.unwrap_or_default()));
    }
    let factor = value / target_of(m.goal);
    let mut p = policy.clone();
    for x in &mut p.metrics {
        let v = if x.id == sweep.metric { value } else { target_of(x.goal) * factor };
        x.goal = match x.goal {
            Goal::Utilization { .. } => Goal::Utilization { target: v },
            Goal::PerInstance { .. } => Goal::PerInstance { target_per_instance: v },
        };
    }
    Ok(p)
}

/// The policy's current value of the swept field.
pub fn current_value(policy: &Policy, sweep: &Sweep) -> Option<f64> {
    policy.metrics.iter().find(|m| m.id == sweep.metric).map(|m| target_of(m.goal))
}

/// Runs the policy, `hpa` and `target-tracking` at one sweep value; the references take the
/// swept policy's CPU target.
pub fn sweep_point(
    policy: &Policy,
    sweep: &Sweep,
    value: f64,
    trace: &Trace,
    scenario: &Scenario,
) -> Result<Vec<Figures>, BacktestError> {
    let p = swept_policy(policy, sweep, value).map_err(|_| BacktestError::NotPositive("--sweep value"))?;
    let mut sc = scenario.clone();
    sc.target = policy_target(&p).or(sc.target);
    let prep = prepare(&p, trace, sc)?;
    // Only the figures are kept: the rows stream past (memory independent of trace length).
    let figures = |s: Strategy| match s {
        Strategy::Policy => prep.stream_policy(&mut |_| {}, &mut |_| {}).0,
        _ => prep.stream_reference(s, &mut |_| {}, &mut |_| {}),
    };
    Ok(SWEPT.iter().map(|&s| figures(s)).collect())
}

/// One strategy at one sweep value.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub value: f64,
    pub strategy: Strategy,
    pub instance_hours: f64,
    pub under_provisioned_minutes: f64,
    pub under_provisioned_share_pct: f64,
    pub reversals: u32,
}

/// A policy point against one reference at the same instance-hours.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub value: f64,
    pub reference: Strategy,
    pub policy_instance_hours: f64,
    pub policy_under_provisioned_minutes: f64,
    /// The reference's under-provisioned minutes at the policy's instance-hours; `None` outside
    /// the reference's swept range.
    pub reference_under_provisioned_minutes: Option<f64>,
    /// Policy over reference (below 1: the policy is better at equal cost).
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frontier {
    pub policy: String,
    pub trace_name: String,
    pub field: String,
    pub values: Vec<f64>,
    /// The marked point: the tuned value, else the policy's own value if swept.
    pub chosen: Option<f64>,
    pub points: Vec<Point>,
    pub comparisons: Vec<Comparison>,
}

/// `y` at `x` on the piecewise-linear curve through `pts` (sorted by `x` here); `None` outside.
pub fn interpolate(pts: &[(f64, f64)], x: f64) -> Option<f64> {
    let mut p: Vec<(f64, f64)> = pts.to_vec();
    p.sort_by(|a, b| a.0.total_cmp(&b.0));
    let first = p.first()?;
    let last = p.last()?;
    if x < first.0 - 1e-9 || x > last.0 + 1e-9 {
        return None;
    }
    for w in p.windows(2) {
        let ((x0, y0), (x1, y1)) = (w[0], w[1]);
        if x >= x0 - 1e-9 && x <= x1 + 1e-9 {
            if (x1 - x0).abs() < 1e-12 {
                return Some(y0.min(y1));
            }
            return Some(y0 + (y1 - y0) * (x - x0) / (x1 - x0));
        }
    }
    Some(first.1)
}

impl Frontier {
    /// Builds the frontier from each value's figures (in [`SWEPT`] order).
    pub fn new(
        policy: &str,
        trace_name: &str,
        sweep: &Sweep,
        runs: &[(f64, Vec<Figures>)],
        chosen: Option<f64>,
    ) -> Self {
        let mut points = Vec::new();
        for (value, figs) in runs {
            for (s, f) in SWEPT.iter().zip(figs) {
                points.push(Point {
                    value: *value,
                    strategy: *s,
                    instance_hours: f.instance_hours,
                    under_provisioned_minutes: f.under_provisioned_minutes,
                    under_provisioned_share_pct: f.under_provisioned_share_pct,
                    reversals: f.reversals,
                });
            }
        }
        let curve = |s: Strategy| -> Vec<(f64, f64)> {
            points.iter().filter(|p| p.strategy == s).map(|p| (p.instance_hours, p.under_provisioned_minutes)).collect()
        };
        let mut comparisons = Vec::new();
        for p in points.iter().filter(|p| p.strategy == Strategy::Policy) {
            for r in [Strategy::Hpa, Strategy::TargetTracking] {
                let at = interpolate(&curve(r), p.instance_hours);
                comparisons.push(Comparison {
                    value: p.value,
                    reference: r,
                    policy_instance_hours: p.instance_hours,
                    policy_under_provisioned_minutes: p.under_provisioned_minutes,
                    reference_under_provisioned_minutes: at,
                    ratio: at.map(|a| {
                        if a > 0.0 {
                            p.under_provisioned_minutes / a
                        } else if p.under_provisioned_minutes > 0.0 {
                            f64::INFINITY
                        } else {
                            1.0
                        }
                    }),
                });
            }
        }
        Frontier {
            policy: policy.to_owned(),
            trace_name: trace_name.to_owned(),
            field: sweep.field.clone(),
            values: sweep.values.clone(),
            chosen,
            points,
            comparisons,
        }
    }

    /// The cheapest policy point whose under-provisioned share is at most `max_share_pct`.
    pub fn tune(&self, max_share_pct: f64) -> Option<&Point> {
        self.points
            .iter()
            .filter(|p| p.strategy == Strategy::Policy && p.under_provisioned_share_pct <= max_share_pct + 1e-12)
            .min_by(|a, b| a.instance_hours.total_cmp(&b.instance_hours))
    }

    fn point(&self, s: Strategy, value: f64) -> Option<&Point> {
        self.points.iter().find(|p| p.strategy == s && p.value.to_bits() == value.to_bits())
    }

    /// `frontier.md`.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "# Frontier: {} on {}\n", self.policy, self.trace_name);
        let _ = writeln!(
            out,
            "Swept `{}` over {}; the reference strategies take the same CPU target. Cost is instance-hours, \
             risk is under-provisioned minutes (demand above the instances in service).\n",
            self.field,
            self.values.iter().map(|v| format!("{v}")).collect::<Vec<_>>().join(", ")
        );
        out.push_str("## Points\n\n");
        out.push_str("| value | strategy | instance-h | under-prov. min | under-prov. share | reversals |\n");
        out.push_str("|---:|---|---:|---:|---:|---:|\n");
        for p in &self.points {
            let mark = if Some(p.value) == self.chosen && p.strategy == Strategy::Policy { " (chosen)" } else { "" };
            let _ = writeln!(
                out,
                "| {}{mark} | {} | {:.1} | {:.1} | {:.3} % | {} |",
                p.value,
                p.strategy,
                p.instance_hours,
                p.under_provisioned_minutes,
                p.under_provisioned_share_pct,
                p.reversals
            );
        }
        out.push_str("\n## At equal cost\n\n");
        out.push_str(
            "Each reference's under-provisioned minutes at the policy point's instance-hours (linear interpolation \
             between the reference's sweep points; n/a outside its range), and policy / reference.\n\n",
        );
        out.push_str("| value | policy instance-h | policy under-prov. min | hpa at same cost | ratio | target-tracking at same cost | ratio |\n");
        out.push_str("|---:|---:|---:|---:|---:|---:|---:|\n");
        let fmt = |x: Option<f64>, prec: usize| x.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.prec$}"));
        for v in &self.values {
            let find =
                |r: Strategy| self.comparisons.iter().find(|c| c.value.to_bits() == v.to_bits() && c.reference == r);
            let (Some(h), Some(t)) = (find(Strategy::Hpa), find(Strategy::TargetTracking)) else { continue };
            let _ = writeln!(
                out,
                "| {v} | {:.1} | {:.1} | {} | {} | {} | {} |",
                h.policy_instance_hours,
                h.policy_under_provisioned_minutes,
                fmt(h.reference_under_provisioned_minutes, 1),
                fmt(h.ratio, 2),
                fmt(t.reference_under_provisioned_minutes, 1),
                fmt(t.ratio, 2)
            );
        }
        out
    }

    /// `frontier.json`.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".to_owned()) + "\n"
    }

    /// `frontier.svg`: instance-hours on x, under-provisioned minutes on y, one curve per
    /// strategy (points joined in order of cost), each point labelled with its value, the
    /// chosen point circled.
    pub fn svg(&self) -> String {
        const W: f64 = 800.0;
        const H: f64 = 520.0;
        const L: f64 = 80.0;
        const R: f64 = 160.0;
        const T: f64 = 50.0;
        const B: f64 = 60.0;
        let xs = self.points.iter().map(|p| p.instance_hours);
        let ys = self.points.iter().map(|p| p.under_provisioned_minutes);
        let (x0, x1) = (xs.clone().fold(f64::INFINITY, f64::min), xs.fold(f64::NEG_INFINITY, f64::max));
        let y1 = ys.fold(0.0f64, f64::max);
        let (x0, x1) = if x0.is_finite() && x1 > x0 { (x0, x1) } else { (0.0, 1.0) };
        let pad = (x1 - x0) * 0.05;
        let (x0, x1, y1) = (x0 - pad, x1 + pad, if y1 > 0.0 { y1 * 1.05 } else { 1.0 });
        let px = |x: f64| L + (x - x0) / (x1 - x0) * (W - L - R);
        let py = |y: f64| H - B - y / y1 * (H - T - B);
        let mut s = String::new();
        let _ = writeln!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
        );
        let _ = writeln!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
        let _ = writeln!(
            s,
            r#"<text x="{L}" y="24" font-size="15">{} on {}: cost vs risk, {} swept</text>"#,
            esc(&self.policy),
            esc(&self.trace_name),
            esc(&self.field)
        );
        let _ = writeln!(
            s,
            r#"<line x1="{L}" y1="{}" x2="{}" y2="{}" stroke="black"/><line x1="{L}" y1="{T}" x2="{L}" y2="{}" stroke="black"/>"#,
            H - B,
            W - R,
            H - B,
            H - B
        );
        for i in 0..=4 {
            let fx = x0 + (x1 - x0) * f64::from(i) / 4.0;
            let fy = y1 * f64::from(i) / 4.0;
            let _ = writeln!(s, r#"<text x="{:.1}" y="{}" text-anchor="middle">{fx:.0}</text>"#, px(fx), H - B + 18.0);
            let _ = writeln!(s, r#"<text x="{}" y="{:.1}" text-anchor="end">{fy:.0}</text>"#, L - 6.0, py(fy) + 4.0);
        }
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{}" text-anchor="middle">instance-hours</text>"#,
            (L + W - R) / 2.0,
            H - 18.0
        );
        let _ = writeln!(
            s,
            r#"<text x="18" y="{:.1}" transform="rotate(-90 18 {:.1})" text-anchor="middle">under-provisioned minutes</text>"#,
            (T + H - B) / 2.0,
            (T + H - B) / 2.0
        );
        for (k, st) in SWEPT.iter().enumerate() {
            let colour = match st {
                Strategy::Policy => "#d62728",
                Strategy::Hpa => "#1f77b4",
                _ => "#ff7f0e",
            };
            let mut pts: Vec<&Point> = self.points.iter().filter(|p| p.strategy == *st).collect();
            pts.sort_by(|a, b| a.instance_hours.total_cmp(&b.instance_hours));
            let path: Vec<String> = pts
                .iter()
                .map(|p| format!("{:.1},{:.1}", px(p.instance_hours), py(p.under_provisioned_minutes)))
                .collect();
            let _ = writeln!(
                s,
                r#"<polyline points="{}" fill="none" stroke="{colour}" stroke-width="2"/>"#,
                path.join(" ")
            );
            for p in &pts {
                let (cx, cy) = (px(p.instance_hours), py(p.under_provisioned_minutes));
                let _ = writeln!(s, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="3" fill="{colour}"/>"#);
                let _ = writeln!(
                    s,
                    r#"<text x="{:.1}" y="{:.1}" font-size="10" fill="{colour}">{}</text>"#,
                    cx + 5.0,
                    cy - 5.0,
                    p.value
                );
            }
            #[allow(clippy::cast_precision_loss)]
            let ly = T + 20.0 * k as f64;
            let _ = writeln!(
                s,
                r#"<line x1="{}" y1="{ly}" x2="{}" y2="{ly}" stroke="{colour}" stroke-width="2"/><text x="{}" y="{:.1}">{st}</text>"#,
                W - R + 10.0,
                W - R + 30.0,
                W - R + 36.0,
                ly + 4.0
            );
        }
        if let Some(p) = self.chosen.and_then(|v| self.point(Strategy::Policy, v)) {
            let (cx, cy) = (px(p.instance_hours), py(p.under_provisioned_minutes));
            let _ =
                writeln!(s, r#"<circle cx="{cx:.1}" cy="{cy:.1}" r="9" fill="none" stroke="black" stroke-width="2"/>"#);
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" font-weight="bold">chosen: {}</text>"#,
                cx + 10.0,
                cy + 18.0,
                p.value
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Parses `1%`, `1.5 %` or `1` as a percentage in `[0, 100]`.
pub fn parse_share(s: &str) -> Result<f64, SweepError> {
    let t = s.trim().trim_end_matches('%').trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=100.0).contains(&v) => Ok(v),
        _ => Err(SweepError::Share(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::parse_policy;

    const WEB: &str = include_str!("../../../../policies/web-storefront.yaml");

    fn web() -> Policy {
        parse_policy("web.yaml", WEB).policy.expect("web policy parses")
    }

    #[test]
    fn a_swept_cpu_target_moves_the_request_target_with_it() {
        let p = web();
        let s = parse_sweep(&p, "cpu.target=40, 55").expect("valid");
        assert_eq!(s.values, [40.0, 55.0]);
        let q = swept_policy(&p, &s, 44.0).expect("valid");
        let t: Vec<f64> = q.metrics.iter().map(|m| target_of(m.goal)).collect();
        assert!((t[0] - 44.0).abs() < 1e-9 && (t[1] - 1200.0).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn bad_sweeps_name_field_and_value() {
        let p = web();
        let e = |a: &str| parse_sweep(&p, a).expect_err(a).to_string();
        assert!(e("gpu.target=40").contains("unknown field \"gpu.target\""), "{}", e("gpu.target=40"));
        assert!(e("cpu.target=").contains("cpu.target: empty list"));
        assert!(e("cpu.target=40,abc").contains("value \"abc\" is not a number"));
        assert!(e("cpu.target=40,-5").contains("value \"-5\" must be a positive number"));
        assert!(e("cpu.target=95").contains("ceiling 90"));
        assert!(e("cpu.target=40,,50").contains("value \"\" is empty"));
        assert!(e("cpu.target").contains("expected FIELD=V1"));
        assert!(parse_share("101%").is_err() && parse_share("x").is_err());
        assert_eq!(parse_share("1.5%"), Ok(1.5));
    }

    #[test]
    fn interpolation_between_sweep_points_only() {
        let c = [(30.0, 100.0), (10.0, 300.0), (20.0, 200.0)];
        assert_eq!(interpolate(&c, 15.0), Some(250.0));
        assert_eq!(interpolate(&c, 30.0), Some(100.0));
        assert_eq!(interpolate(&c, 31.0), None);
        assert_eq!(interpolate(&c, 9.0), None);
    }

    fn figs(h: f64, u: f64, share: f64) -> Figures {
        Figures {
            strategy: String::new(),
            instance_hours: h,
            under_provisioned_minutes: u,
            under_provisioned_share_pct: share,
            under_provisioning_accuracy_pct: 0.0,
            over_provisioning_accuracy_pct: 0.0,
            actions: 0,
            reversals: 0,
            reversals_within_30m: 0,
            cost_vs_oracle: None,
            peak_billed: 0,
        }
    }

    #[test]
    fn comparisons_and_tuning() {
        let p = web();
        let s = parse_sweep(&p, "cpu.target=40,60").expect("valid");
        // Policy (100 h, 50 min), (80 h, 120 min); hpa (110, 60), (70, 200); tt (120, 100), (90, 300).
        let runs = vec![
            (40.0, vec![figs(100.0, 50.0, 0.5), figs(110.0, 60.0, 0.6), figs(120.0, 100.0, 1.0)]),
            (60.0, vec![figs(80.0, 120.0, 1.2), figs(70.0, 200.0, 2.0), figs(90.0, 300.0, 3.0)]),
        ];
        let f = Frontier::new("web", "t.csv", &s, &runs, Some(40.0));
        // hpa at 100 h: 60 + (200 - 60) * (110 - 100) / 40 = 95 -> ratio 50 / 95.
        let c = &f.comparisons[0];
        assert_eq!(c.reference, Strategy::Hpa);
        assert!((c.reference_under_provisioned_minutes.unwrap_or(0.0) - 95.0).abs() < 1e-9);
        assert!((c.ratio.unwrap_or(0.0) - 50.0 / 95.0).abs() < 1e-9);
        // tt at 100 h: 300 + (100 - 300) * (10 / 30) = 233.3; at 80 h: outside -> n/a.
        assert!((f.comparisons[1].reference_under_provisioned_minutes.unwrap_or(0.0) - 233.333_333).abs() < 1e-3);
        assert_eq!(f.comparisons[3].reference_under_provisioned_minutes, None);
        assert_eq!(f.tune(1.0).map(|p| p.value), Some(40.0));
        assert_eq!(f.tune(1.5).map(|p| p.value), Some(60.0));
        assert_eq!(f.tune(0.1), None);
        let md = f.markdown();
        assert!(md.contains("| 40 (chosen) | policy | 100.0 | 50.0 |"), "{md}");
        assert!(md.contains("| 40 | 100.0 | 50.0 | 95.0 | 0.53 | 233.3 | 0.21 |"), "{md}");
        assert!(f.svg().contains("chosen: 40"));
        assert!(f.json().contains("\"reference_under_provisioned_minutes\": null"));
    }
}
