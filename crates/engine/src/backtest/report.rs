//! The backtest report as text: `report.md`, `report.json` and `supply-<strategy>.csv` (whole,
//! or line by line as the rows stream by).
//!
//! Output is deterministic (no timings, no absolute paths), so a report can be compared with a
//! stored snapshot. Not here: writing files (the caller does).

use std::fmt::Write as _;

use serde::Serialize;

use super::policy_run::ts;
use super::{Backtest, DemandUnit, Figures, Limits, Run, Scenario, SupplyRow, TraceSummary};
use crate::duration::Human;

/// `report.json`.
#[derive(Debug, Serialize)]
pub struct ReportJson<'a> {
    pub policy: &'a str,
    pub trace_name: &'a str,
    pub limits: &'a Limits,
    pub scenario: &'a Scenario,
    pub trace: &'a TraceSummary,
    pub policy_decisions: u64,
    pub strategies: Vec<&'a Figures>,
    /// Where a pre-warm floor held.
    pub prewarm_windows: Vec<Window>,
    /// Where a pre-warm window ran with its floor released (`release_after`).
    pub prewarm_released: Vec<Window>,
    /// Where the forecast floor was above what the metrics asked for.
    pub forecast_windows: Vec<Window>,
}

#[derive(Debug, Serialize)]
pub struct Window {
    pub start: jiff::Timestamp,
    pub end: jiff::Timestamp,
}

pub fn json(b: &Backtest, trace_name: &str) -> String {
    let r = ReportJson {
        policy: &b.policy,
        trace_name,
        limits: &b.limits,
        scenario: &b.scenario,
        trace: &b.trace,
        policy_decisions: b.decisions,
        strategies: b.runs.iter().map(|r| &r.figures).collect(),
        prewarm_windows: b.prewarm.iter().map(|&(s, e)| Window { start: ts(s), end: ts(e) }).collect(),
        prewarm_released: b.prewarm_released.iter().map(|&(s, e)| Window { start: ts(s), end: ts(e) }).collect(),
        forecast_windows: b.forecast_floors.iter().map(|&(s, e)| Window { start: ts(s), end: ts(e) }).collect(),
    };
    // Serialising these plain structs cannot fail; fall back to an empty object regardless.
    serde_json::to_string_pretty(&r).unwrap_or_else(|_| "{}".to_owned()) + "\n"
}

/// `supply-<strategy>.csv`: one row per change, each holding until the next.
pub fn supply_csv(run: &Run) -> String {
    let mut out = String::with_capacity(run.rows.len() * 48 + 64);
    out.push_str(SUPPLY_CSV_HEADER);
    for r in &run.rows {
        let _ = writeln!(out, "{}", SupplyLine(r));
    }
    out
}

/// The header line of `supply-<strategy>.csv`, newline included.
pub const SUPPLY_CSV_HEADER: &str = "timestamp,demand,serving,billed,desired\n";

/// One line of `supply-<strategy>.csv` (without its newline), for writing the rows as they
/// stream by ([`super::run_with`]).
#[derive(Debug, Clone, Copy)]
pub struct SupplyLine<'a>(pub &'a SupplyRow);

impl std::fmt::Display for SupplyLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = self.0;
        write!(f, "{},{:.4},{},{},{}", ts(r.at_ms), r.demand, r.serving, r.billed, r.desired)
    }
}

fn secs(d: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let ms = (d * 1000.0).round().max(0.0) as u64;
    Human(std::time::Duration::from_millis(ms)).to_string()
}

/// `report.md`.
pub fn markdown(b: &Backtest, trace_name: &str) -> String {
    let mut o = String::new();
    let t = &b.trace;
    let _ = writeln!(o, "# Backtest of `{}` on `{trace_name}`\n", b.policy);
    let _ = writeln!(o, "## Setup\n");
    let _ = writeln!(
        o,
        "- Trace: {} rows, {} to {}, step {}, value column `{}` ({}).",
        t.rows,
        t.start,
        t.end,
        secs(t.step_secs),
        t.value_column,
        t.time_format
    );
    let mut notes = Vec::new();
    if t.out_of_order > 0 {
        notes.push(format!(
            "{} row(s) out of order (lines {}), sorted back into place",
            t.out_of_order,
            t.out_of_order_lines.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        ));
    }
    if t.duplicates > 0 {
        notes.push(format!("{} repeated timestamp(s), values averaged", t.duplicates));
    }
    if t.gap_count > 0 {
        notes.push(format!(
            "{} gap(s), {} missing point(s) filled with `{}`",
            t.gap_count,
            t.missing_points,
            t.fill.as_str()
        ));
    }
    if t.empty_values > 0 {
        notes.push(format!("{} empty value(s) filled with `{}`", t.empty_values, t.fill.as_str()));
    }
    if notes.is_empty() {
        let _ = writeln!(o, "- Trace quality: no out-of-order rows, no gaps, no empty values.");
    } else {
        let _ = writeln!(o, "- Trace quality: {}.", notes.join("; "));
    }
    for g in &t.gaps {
        let _ = writeln!(o, "  - gap after {} until {} ({} point(s))", g.after, g.resumes, g.missing_points);
    }
    let demand = match b.scenario.demand {
        DemandUnit::CapacityPerInstance(c) => format!("value / {c} per instance"),
        DemandUnit::CpuFleet(n) => format!("value / 100 x {n} instances (CPU % on a fixed fleet)"),
    };
    let _ = writeln!(o, "- Demand in instances: {demand}.");
    let _ = writeln!(
        o,
        "- Fleet: boot delay {}, metric lag {}, {} instance(s) at the start; min {}, max {}, CPU target {}% for the reference strategies.",
        Human(b.scenario.boot_delay),
        Human(b.scenario.metric_lag),
        b.scenario.initial.unwrap_or(b.limits.min),
        b.limits.min,
        b.limits.max,
        b.limits.target
    );
    let prewarm = match (b.prewarm.len(), b.prewarm_released.len()) {
        (0, 0) => "none".to_owned(),
        (held, 0) => format!("{held} (floor held)"),
        (held, released) => format!("{held} stretches with the floor held, {released} with it released"),
    };
    let _ = writeln!(o, "- Policy decisions: {}; pre-warm windows: {prewarm}.\n", b.decisions);

    let _ = writeln!(o, "## Results\n");
    let _ = writeln!(
        o,
        "| strategy | instance-hours | cost vs oracle | under-provisioned min | share of trace | under-prov. accuracy | over-prov. accuracy | actions | reversals | reversals ≤ 30 min |"
    );
    let _ = writeln!(o, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for r in &b.runs {
        let f = &r.figures;
        let cost = f.cost_vs_oracle.map_or_else(|| "-".to_owned(), |c| format!("{c:.2}x"));
        let _ = writeln!(
            o,
            "| {} | {:.1} | {cost} | {:.1} | {:.2}% | {:.2}% | {:.2}% | {} | {} | {} |",
            f.strategy,
            f.instance_hours,
            f.under_provisioned_minutes,
            f.under_provisioned_share_pct,
            f.under_provisioning_accuracy_pct,
            f.over_provisioning_accuracy_pct,
            f.actions,
            f.reversals,
            f.reversals_within_30m
        );
    }
    let _ = writeln!(
        o,
        "\nUnder-/over-provisioning accuracy: time-weighted mean of `(demand - serving)+ / demand` and \
         `(serving - demand)+ / demand` while demand > 0. Actions: changes of billed capacity; a reversal is an \
         action in the opposite direction of the previous one.\n"
    );
    let _ = writeln!(o, "## Files\n");
    let _ = writeln!(o, "- `chart.svg`: demand and each strategy's serving capacity; pre-warm floors shaded.");
    let _ = writeln!(o, "- `report.json`: these figures and the trace summary.");
    for r in &b.runs {
        let _ = writeln!(
            o,
            "- `supply-{}.csv`: `timestamp,demand,serving,billed,desired`, one row per change.",
            r.strategy
        );
    }
    o
}
