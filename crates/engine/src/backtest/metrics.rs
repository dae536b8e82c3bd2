//! Supply series and the report's figures, computed from the same rows that `supply-*.csv`
//! holds, so the numbers in the report can be re-derived from the CSV.
//!
//! A [`SupplyRow`] holds from its timestamp until the next row (the last one until the end of
//! the trace). Figures are time-weighted integrals over those rows:
//! - instance-hours: the integral of `billed`;
//! - under-provisioned minutes: time with `demand > serving`;
//! - under-/over-provisioning accuracy: the time-weighted mean of `(demand - serving)+ / demand`
//!   and `(serving - demand)+ / demand` over the time with `demand > 0`, in % (the SPEC RG
//!   elasticity metrics θU and θO of Herbst et al., "Quantifying Cloud Performance and
//!   Dependability", ACM TOMPECS 3(4), 2018);
//! - actions: changes of `billed`; reversals: an action in the opposite direction of the
//!   previous one, in total and within 30 minutes of it.
//!
//! Not here: how the rows come about (see `sim.rs` and `strategies.rs`).

use serde::Serialize;

use crate::history::Direction;

/// The fleet at one instant, holding until the next row.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SupplyRow {
    pub at_ms: i64,
    /// Demand in instance units.
    pub demand: f64,
    /// Instances able to serve (booted).
    pub serving: u32,
    /// Instances billed (booting and serving).
    pub billed: u32,
    /// Capacity the strategy asked for.
    pub desired: u32,
}

/// One strategy's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figures {
    pub strategy: String,
    pub instance_hours: f64,
    pub under_provisioned_minutes: f64,
    pub under_provisioned_share_pct: f64,
    pub under_provisioning_accuracy_pct: f64,
    pub over_provisioning_accuracy_pct: f64,
    pub actions: u32,
    pub reversals: u32,
    pub reversals_within_30m: u32,
    /// Instance-hours relative to the oracle's (1.0 = as cheap as perfect foresight).
    pub cost_vs_oracle: Option<f64>,
    pub peak_billed: u32,
}

const REVERSAL_WINDOW_MS: i64 = 30 * 60 * 1000;
const EPS: f64 = 1e-9;

/// Collects rows as a simulation runs; rows at the same instant replace each other.
#[derive(Debug, Clone)]
pub struct Recorder {
    rows: Vec<SupplyRow>,
}

impl Recorder {
    pub fn new() -> Recorder {
        Recorder { rows: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> Recorder {
        Recorder { rows: Vec::with_capacity(n) }
    }

    /// Records the state at `at_ms` (not before the last row).
    pub fn set(&mut self, row: SupplyRow) {
        if let Some(last) = self.rows.last_mut() {
            if last.at_ms >= row.at_ms {
                *last = SupplyRow { at_ms: last.at_ms, ..row };
                // A same-instant change may undo the previous row's change: merge them.
                let n = self.rows.len();
                if n >= 2 && same_state(&self.rows[n - 2], &self.rows[n - 1]) {
                    self.rows.pop();
                }
                return;
            }
            if same_state(last, &row) {
                return;
            }
        }
        self.rows.push(row);
    }

    pub fn rows(&self) -> &[SupplyRow] {
        &self.rows
    }

    pub fn into_rows(self) -> Vec<SupplyRow> {
        self.rows
    }
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

/// Where a simulation puts its rows: collected ([`Recorder`]) or streamed ([`RowStream`]).
pub trait RowSink {
    /// Records the state at `row.at_ms` (rows come in time order).
    fn set(&mut self, row: SupplyRow);
}

impl RowSink for Recorder {
    fn set(&mut self, row: SupplyRow) {
        Recorder::set(self, row);
    }
}

/// The rows a [`Recorder`] would collect, handed to `out` one by one as soon as no later row
/// can change them. A row at the same instant replaces the last row and may merge it into the
/// one before, so the stream holds the last two rows and nothing else; [`RowStream::finish`]
/// hands them over at the end. Rows must come in time order (every simulation here does).
pub struct RowStream<'a> {
    rec: Recorder,
    out: &'a mut dyn FnMut(&SupplyRow),
}

impl<'a> RowStream<'a> {
    pub fn new(out: &'a mut dyn FnMut(&SupplyRow)) -> RowStream<'a> {
        RowStream { rec: Recorder::with_capacity(3), out }
    }

    /// Hands over the rows still held.
    pub fn finish(mut self) {
        for r in self.rec.rows.drain(..) {
            (self.out)(&r);
        }
    }
}

impl RowSink for RowStream<'_> {
    fn set(&mut self, row: SupplyRow) {
        self.rec.set(row);
        let n = self.rec.rows.len();
        if n > 2 {
            for r in self.rec.rows.drain(..n - 2) {
                (self.out)(&r);
            }
        }
    }
}

impl std::fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream").field("held", &self.rec.rows).finish_non_exhaustive()
    }
}

fn same_state(a: &SupplyRow, b: &SupplyRow) -> bool {
    a.demand.to_bits() == b.demand.to_bits() && a.serving == b.serving && a.billed == b.billed && a.desired == b.desired
}

/// Computes a strategy's figures from its rows, the last holding until `end_ms`.
pub fn figures(strategy: &str, rows: &[SupplyRow], end_ms: i64) -> Figures {
    let mut sum = FigureSum::default();
    for r in rows {
        sum.push(r);
    }
    sum.finish(strategy, end_ms)
}

/// A strategy's figures summed as its rows stream by, in the same order and with the same
/// arithmetic as over a whole slice, so the result is bit-identical to [`figures`] on the
/// collected rows. Holds one row, whatever the length of the trace.
#[derive(Debug, Clone, Default)]
pub struct FigureSum {
    /// The last row, whose span ends at the next row (or at the end of the trace).
    prev: Option<SupplyRow>,
    first_at: Option<i64>,
    billed_ms: f64,
    under_ms: f64,
    under_acc: f64,
    over_acc: f64,
    demand_ms: f64,
    actions: u32,
    reversals: u32,
    reversals_30m: u32,
    last_action: Option<(i64, Direction)>,
    peak_billed: u32,
}

impl FigureSum {
    /// Adds the next row (rows come in time order).
    pub fn push(&mut self, r: &SupplyRow) {
        match self.prev {
            Some(p) => {
                self.span(&p, r.at_ms);
                if r.billed != p.billed {
                    self.actions += 1;
                    let dir = if r.billed > p.billed { Direction::Up } else { Direction::Down };
                    if let Some((t, d)) = self.last_action
                        && d != dir
                    {
                        self.reversals += 1;
                        if r.at_ms - t <= REVERSAL_WINDOW_MS {
                            self.reversals_30m += 1;
                        }
                    }
                    self.last_action = Some((r.at_ms, dir));
                }
            }
            None => self.first_at = Some(r.at_ms),
        }
        self.prev = Some(*r);
    }

    /// Integrates row `r` over `[r.at_ms, until)`.
    fn span(&mut self, r: &SupplyRow, until: i64) {
        #[allow(clippy::cast_precision_loss)]
        let dt = (until - r.at_ms).max(0) as f64;
        let serving = f64::from(r.serving);
        self.billed_ms += f64::from(r.billed) * dt;
        self.peak_billed = self.peak_billed.max(r.billed);
        if r.demand > serving + EPS {
            self.under_ms += dt;
        }
        if r.demand > EPS {
            self.demand_ms += dt;
            self.under_acc += (r.demand - serving).max(0.0) / r.demand * dt;
            self.over_acc += (serving - r.demand).max(0.0) / r.demand * dt;
        }
    }

    /// The figures, the last row holding until `end_ms`.
    pub fn finish(mut self, strategy: &str, end_ms: i64) -> Figures {
        if let Some(p) = self.prev.take() {
            self.span(&p, end_ms);
        }
        #[allow(clippy::cast_precision_loss)]
        let span_ms = self.first_at.map_or(0.0, |t| (end_ms - t).max(0) as f64);
        let pct = |x: f64, of: f64| if of > 0.0 { 100.0 * x / of } else { 0.0 };
        Figures {
            strategy: strategy.to_owned(),
            instance_hours: self.billed_ms / 3_600_000.0,
            under_provisioned_minutes: self.under_ms / 60_000.0,
            under_provisioned_share_pct: pct(self.under_ms, span_ms),
            under_provisioning_accuracy_pct: pct(self.under_acc, self.demand_ms),
            over_provisioning_accuracy_pct: pct(self.over_acc, self.demand_ms),
            actions: self.actions,
            reversals: self.reversals,
            reversals_within_30m: self.reversals_30m,
            cost_vs_oracle: None,
            peak_billed: self.peak_billed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(min: i64, demand: f64, serving: u32, billed: u32) -> SupplyRow {
        SupplyRow { at_ms: min * 60_000, demand, serving, billed, desired: billed }
    }

    #[test]
    fn figures_by_hand() {
        // 0-10 min: demand 2, 2 serving, 2 billed.
        // 10-20: demand 4, 2 serving (under by 50 %), 4 billed (up).
        // 20-30: demand 4, 4 serving, 4 billed.
        // 30-40: demand 2, 4 serving (over by 100 %), 3 billed (down, 20 min after the up).
        let rows = [row(0, 2.0, 2, 2), row(10, 4.0, 2, 4), row(20, 4.0, 4, 4), row(30, 2.0, 4, 3)];
        let f = figures("x", &rows, 40 * 60_000);
        // (2 + 4 + 4 + 3) * 10 min = 130 instance-minutes.
        assert!((f.instance_hours - 130.0 / 60.0).abs() < 1e-12);
        assert_eq!(f.under_provisioned_minutes, 10.0);
        assert_eq!(f.under_provisioned_share_pct, 25.0);
        // Under: 0.5 for a quarter of the time; over: 1.0 for a quarter.
        assert_eq!(f.under_provisioning_accuracy_pct, 12.5);
        assert_eq!(f.over_provisioning_accuracy_pct, 25.0);
        assert_eq!((f.actions, f.reversals, f.reversals_within_30m), (2, 1, 1));
        assert_eq!(f.peak_billed, 4);
    }

    #[test]
    fn recorder_merges_same_instant_and_unchanged_rows() {
        let mut r = Recorder::new();
        r.set(row(0, 1.0, 1, 1));
        r.set(row(1, 1.0, 1, 1));
        r.set(row(2, 1.0, 1, 2));
        r.set(row(2, 1.0, 1, 1)); // undone at the same instant
        r.set(row(3, 2.0, 1, 1));
        let at: Vec<i64> = r.rows().iter().map(|x| x.at_ms / 60_000).collect();
        assert_eq!(at, [0, 3]);
    }
}
