//! The discrete-event simulator: a fleet, the load it serves, the metrics it publishes, and a
//! controller (the policy's `decide`, or a reference strategy) that changes it.
//!
//! Time jumps from one event to the next; nothing sleeps and nothing reads a clock. Events are
//! trace points (demand changes), instances finishing their boot, metric periods closing,
//! datapoints arriving `metric_lag` after their period closed, and the controller's own
//! evaluations. Between events everything is constant (or, for a queue backlog, linear), so
//! metric averages are exact integrals rather than samples.
//!
//! The fleet model: a started instance bills at once and serves after `boot_delay`; a stopped
//! instance stops billing and serving at once; a drained one (a pool behind a load balancer,
//! see [`Pool::with_drain`]) stops serving at once and bills until its drain ends, unless a
//! cancelled drain brings it back into service first; the initial fleet is already serving. Load
//! spreads evenly, so every serving instance sees CPU % = `100 * demand / serving`, capped at
//! 100; with no serving instance there is no CPU datapoint at all (as in CloudWatch). When
//! `queue` is on, unserved demand accumulates in a backlog (in trace units: `queue_unit` per
//! instance-second of unserved demand) that spare capacity drains, and instances are 100 % busy
//! while it is non-empty. Request-count metrics are the work arriving per period, in trace units
//! (per serving instance for `...PerTarget` metrics).
//!
//! Not here: what any controller decides (see `mod.rs` and `strategies.rs`).

use std::collections::VecDeque;

use super::metrics::{Recorder, RowSink, SupplyRow};

/// What a metric pipeline measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Cpu,
    /// Queue depth, in trace units.
    Backlog,
    /// Work arriving, in trace units per second; per serving instance when `per_target`
    /// (like ALB `RequestCountPerTarget`).
    Arrivals {
        per_target: bool,
    },
}

/// How a period's values become its datapoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    /// Time average over the period.
    Average,
    Maximum,
    Minimum,
    /// Integral over the period, per second (a count from a rate).
    Sum,
}

/// One published metric: datapoints for aligned periods, delivered `lag` after the period ends.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSpec {
    pub signal: Signal,
    pub stat: Stat,
    pub period_ms: i64,
}

#[derive(Debug)]
struct Pipeline {
    spec: PipelineSpec,
    period_start: i64,
    next_boundary: i64,
    integral: f64,
    observed_ms: i64,
    max: f64,
    min: f64,
    /// (delivery time, period start, value), in delivery order.
    pending: VecDeque<(i64, i64, f64)>,
}

impl Pipeline {
    fn new(spec: PipelineSpec, start: i64) -> Pipeline {
        let p = spec.period_ms.max(1);
        let period_start = start.div_euclid(p) * p;
        Pipeline {
            spec,
            period_start,
            next_boundary: period_start + p,
            integral: 0.0,
            observed_ms: 0,
            max: f64::NEG_INFINITY,
            min: f64::INFINITY,
            pending: VecDeque::new(),
        }
    }

    /// Adds a stretch of `len` ms over which the signal averages `avg` and spans `[lo, hi]`;
    /// `None` when there is no datapoint source (no serving instance, for CPU).
    fn add(&mut self, len: i64, v: Option<(f64, f64, f64)>) {
        if let Some((avg, lo, hi)) = v {
            #[allow(clippy::cast_precision_loss)]
            let l = len as f64;
            self.integral += avg * l;
            self.observed_ms += len;
            self.max = self.max.max(hi);
            self.min = self.min.min(lo);
        }
    }

    fn close(&mut self, now: i64, lag: i64) {
        while self.next_boundary <= now {
            if self.observed_ms > 0 {
                #[allow(clippy::cast_precision_loss)]
                let value = match self.spec.stat {
                    Stat::Average => self.integral / self.observed_ms as f64,
                    Stat::Maximum => self.max,
                    Stat::Minimum => self.min,
                    Stat::Sum => self.integral / 1000.0,
                };
                self.pending.push_back((self.next_boundary + lag, self.period_start, value));
            }
            self.period_start = self.next_boundary;
            self.next_boundary += self.spec.period_ms.max(1);
            self.integral = 0.0;
            self.observed_ms = 0;
            self.max = f64::NEG_INFINITY;
            self.min = f64::INFINITY;
        }
    }
}

/// The simulated pool: slots that are started (billing) and, after the boot delay, serving.
#[derive(Debug)]
pub struct Pool {
    started: Vec<Option<i64>>,
    serving_flag: Vec<bool>,
    free: Vec<usize>,
    /// Started slots, oldest start first.
    order: Vec<usize>,
    booting: VecDeque<(i64, usize)>,
    boot_ms: i64,
    fixed: bool,
    pub billed: u32,
    pub serving: u32,
    /// How long a drained instance bills without serving before it stops.
    drain_ms: i64,
    /// When each draining slot's drain ends.
    drain_until: Vec<Option<i64>>,
    /// (end, slot) of drains, in start order (all drains take `drain_ms`).
    draining: VecDeque<(i64, usize)>,
}

impl Pool {
    /// `size` slots (a fixed pool when `fixed`, else grows on demand), the first `initial`
    /// started long ago and serving.
    pub fn new(size: usize, initial: u32, boot_ms: i64, fixed: bool) -> Pool {
        let initial = initial as usize;
        let size = size.max(initial);
        let mut p = Pool {
            started: vec![None; size],
            serving_flag: vec![false; size],
            free: (0..size).rev().collect(),
            order: Vec::with_capacity(size),
            booting: VecDeque::new(),
            boot_ms,
            fixed,
            billed: 0,
            serving: 0,
            drain_ms: 0,
            drain_until: vec![None; size],
            draining: VecDeque::new(),
        };
        for _ in 0..initial {
            if let Some(i) = p.free.pop() {
                p.started[i] = Some(i64::MIN / 4);
                p.serving_flag[i] = true;
                p.order.push(i);
                p.billed += 1;
                p.serving += 1;
            }
        }
        p
    }

    /// The same pool, draining instances for `drain_ms` before they stop ([`Pool::drain_slot`]).
    #[must_use]
    pub fn with_drain(mut self, drain_ms: i64) -> Pool {
        self.drain_ms = drain_ms.max(0);
        self
    }

    pub fn size(&self) -> usize {
        self.started.len()
    }

    /// Whether `slot` is draining (billing, not serving, on its way to stopped).
    pub fn is_draining(&self, slot: usize) -> bool {
        self.drain_until.get(slot).is_some_and(Option::is_some)
    }

    /// Takes a started slot out of service; it stops once the drain time has passed (at once
    /// without one). False if it is not started or already draining.
    pub fn drain_slot(&mut self, slot: usize, now: i64) -> bool {
        if !self.is_started(slot) || self.is_draining(slot) {
            return false;
        }
        if self.drain_ms <= 0 {
            return self.stop_slot(slot);
        }
        if self.serving_flag[slot] {
            self.serving_flag[slot] = false;
            self.serving -= 1;
        }
        if let Some(i) = self.order.iter().rposition(|&s| s == slot) {
            self.order.remove(i);
        }
        self.drain_until[slot] = Some(now + self.drain_ms);
        self.draining.push_back((now + self.drain_ms, slot));
        true
    }

    /// Brings a draining slot back into service (serving at once if it had booted). False if
    /// it was not draining.
    pub fn cancel_drain(&mut self, slot: usize, now: i64) -> bool {
        if !self.is_draining(slot) {
            return false;
        }
        self.drain_until[slot] = None;
        self.order.push(slot);
        let ready = self.started[slot].map_or(now, |t| t.saturating_add(self.boot_ms));
        if ready <= now {
            self.serving_flag[slot] = true;
            self.serving += 1;
        } else {
            self.booting.push_back((ready, slot));
            self.booting.make_contiguous().sort_unstable();
        }
        true
    }

    /// When the next drain ends.
    fn next_drained(&mut self) -> Option<i64> {
        while let Some(&(end, slot)) = self.draining.front() {
            if self.drain_until[slot] == Some(end) {
                return Some(end);
            }
            self.draining.pop_front();
        }
        None
    }

    /// Stops the slots whose drain ended by `now`; returns them.
    fn complete_drains(&mut self, now: i64, done: &mut Vec<usize>) {
        while let Some(end) = self.next_drained() {
            if end > now {
                break;
            }
            if let Some((_, slot)) = self.draining.pop_front() {
                self.stop_slot(slot);
                done.push(slot);
            }
        }
    }

    pub fn is_started(&self, slot: usize) -> bool {
        self.started.get(slot).is_some_and(Option::is_some)
    }

    pub fn is_serving(&self, slot: usize) -> bool {
        self.serving_flag.get(slot).copied().unwrap_or(false)
    }

    /// Starts one specific stopped slot; false if it is not stopped.
    pub fn start_slot(&mut self, slot: usize, now: i64) -> bool {
        if slot >= self.started.len() || self.started[slot].is_some() {
            return false;
        }
        self.free.retain(|&f| f != slot);
        self.start_unchecked(slot, now);
        true
    }

    fn start_unchecked(&mut self, slot: usize, now: i64) {
        self.started[slot] = Some(now);
        self.order.push(slot);
        self.billed += 1;
        if self.boot_ms <= 0 {
            self.serving_flag[slot] = true;
            self.serving += 1;
        } else {
            self.booting.push_back((now + self.boot_ms, slot));
        }
    }

    /// Stops one started slot; false if it is not started.
    pub fn stop_slot(&mut self, slot: usize) -> bool {
        if !self.is_started(slot) {
            return false;
        }
        self.started[slot] = None;
        self.drain_until[slot] = None;
        if self.serving_flag[slot] {
            self.serving_flag[slot] = false;
            self.serving -= 1;
        }
        self.billed -= 1;
        if let Some(i) = self.order.iter().rposition(|&s| s == slot) {
            self.order.remove(i);
        }
        self.free.push(slot);
        true
    }

    /// Starts or stops instances until `n` are billed; stops the most recently started first.
    pub fn scale_to(&mut self, n: u32, now: i64) {
        while self.billed < n {
            let slot = match self.free.pop() {
                Some(s) => s,
                None if self.fixed => return,
                None => {
                    self.started.push(None);
                    self.serving_flag.push(false);
                    self.drain_until.push(None);
                    self.started.len() - 1
                }
            };
            self.start_unchecked(slot, now);
        }
        while self.billed > n {
            match self.order.last().copied() {
                Some(s) => {
                    self.stop_slot(s);
                }
                None => return,
            }
        }
    }

    /// Instances serving since `t` or earlier (started at least a boot before it).
    pub fn serving_since(&self, t: i64) -> u32 {
        let n = self
            .order
            .iter()
            .filter(|&&s| {
                self.serving_flag[s] && self.started[s].is_some_and(|st| st.saturating_add(self.boot_ms) <= t)
            })
            .count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Started instances older than `age_ms` at `now` (booting or not).
    pub fn older_than(&self, age_ms: i64, now: i64) -> u32 {
        let n = self.order.iter().filter(|&&s| self.started[s].is_some_and(|st| now - st >= age_ms)).count();
        u32::try_from(n).unwrap_or(u32::MAX)
    }

    /// Whether any started instance is younger than `age_ms`.
    pub fn any_younger_than(&self, age_ms: i64, now: i64) -> bool {
        self.order.last().and_then(|&s| self.started[s]).is_some_and(|t| now - t < age_ms)
    }

    /// When the next boot completes.
    fn next_ready(&mut self) -> Option<i64> {
        while let Some(&(ready, slot)) = self.booting.front() {
            if self.started[slot] == Some(ready - self.boot_ms) && !self.serving_flag[slot] && !self.is_draining(slot) {
                return Some(ready);
            }
            self.booting.pop_front();
        }
        None
    }

    /// Completes boots due by `now`; returns the slots that began serving.
    fn complete_boots(&mut self, now: i64, done: &mut Vec<usize>) {
        while let Some(ready) = self.next_ready() {
            if ready > now {
                break;
            }
            if let Some((_, slot)) = self.booting.pop_front() {
                self.serving_flag[slot] = true;
                self.serving += 1;
                done.push(slot);
            }
        }
    }
}

/// A controller of the simulated pool.
pub trait Controller {
    /// Metrics this controller reads, in the order `on_datapoint` numbers them.
    fn pipelines(&self) -> Vec<PipelineSpec>;
    /// A datapoint of pipeline `which` for the period starting at `period_start` arrived.
    fn on_datapoint(&mut self, which: usize, period_start: i64, value: f64, now: i64, pool: &mut Pool);
    /// Instances in `slots` finished booting.
    fn on_boot(&mut self, _slots: &[usize]) {}
    /// Instances in `slots` finished draining and stopped.
    fn on_drained(&mut self, _slots: &[usize]) {}
    /// When the controller next wants to evaluate.
    fn next_evaluation(&self) -> Option<i64>;
    fn evaluate(&mut self, now: i64, pool: &mut Pool);
    /// Capacity the controller currently asks for.
    fn desired(&self) -> u32;
}

/// The load side of a simulation.
#[derive(Debug, Clone, Copy)]
pub struct Load<'a> {
    /// `(time, demand in instance units)`, ordered.
    pub points: &'a [(i64, f64)],
    pub end_ms: i64,
    pub boot_ms: i64,
    pub lag_ms: i64,
    /// Simulate a backlog of unserved demand.
    pub queue: bool,
    /// Trace units per instance-second: the backlog's and arrivals' unit.
    pub queue_unit: f64,
}

fn cpu(demand: f64, serving: u32) -> Option<f64> {
    (serving > 0).then(|| (100.0 * demand / f64::from(serving)).clamp(0.0, 100.0))
}

/// Runs `ctl` over the load; the pool starts as given. Calls `progress` now and then with the
/// fraction of simulated time done.
pub fn simulate(load: &Load<'_>, ctl: &mut dyn Controller, pool: &mut Pool, progress: &mut dyn FnMut(f64)) -> Recorder {
    let mut rec = Recorder::with_capacity(load.points.len() * 2);
    simulate_into(load, ctl, pool, progress, &mut rec);
    rec
}

/// [`simulate`], each row going to `rec` as it is produced (in time order).
pub fn simulate_into(
    load: &Load<'_>,
    ctl: &mut dyn Controller,
    pool: &mut Pool,
    progress: &mut dyn FnMut(f64),
    rec: &mut dyn RowSink,
) {
    let Some(&(start, first_demand)) = load.points.first() else {
        return;
    };
    let mut pipes: Vec<Pipeline> = ctl.pipelines().into_iter().map(|s| Pipeline::new(s, start)).collect();
    let mut now = start;
    let mut idx = 0;
    let mut demand = first_demand;
    let mut backlog = 0.0f64;
    let mut booted = Vec::new();
    let mut drained = Vec::new();
    let mut iterations: u64 = 0;
    #[allow(clippy::cast_precision_loss)]
    let span = (load.end_ms - start).max(1) as f64;
    loop {
        // Events at `now`, in order: demand, boots, metric periods and deliveries, evaluation.
        while load.points.get(idx + 1).is_some_and(|p| p.0 <= now) {
            idx += 1;
            demand = load.points[idx].1;
        }
        booted.clear();
        pool.complete_boots(now, &mut booted);
        if !booted.is_empty() {
            ctl.on_boot(&booted);
        }
        drained.clear();
        pool.complete_drains(now, &mut drained);
        if !drained.is_empty() {
            ctl.on_drained(&drained);
        }
        for (i, p) in pipes.iter_mut().enumerate() {
            p.close(now, load.lag_ms);
            while p.pending.front().is_some_and(|d| d.0 <= now) {
                if let Some((_, at, v)) = p.pending.pop_front() {
                    ctl.on_datapoint(i, at, v, now, pool);
                }
            }
        }
        if ctl.next_evaluation().is_some_and(|t| t <= now) {
            ctl.evaluate(now, pool);
        }
        rec.set(SupplyRow { at_ms: now, demand, serving: pool.serving, billed: pool.billed, desired: ctl.desired() });
        if now >= load.end_ms {
            break;
        }

        // Next event.
        let mut next = load.end_ms;
        if let Some(p) = load.points.get(idx + 1) {
            next = next.min(p.0);
        }
        if let Some(t) = pool.next_ready() {
            next = next.min(t);
        }
        if let Some(t) = pool.next_drained() {
            next = next.min(t);
        }
        for p in &pipes {
            next = next.min(p.next_boundary);
            if let Some(d) = p.pending.front() {
                next = next.min(d.0);
            }
        }
        if let Some(t) = ctl.next_evaluation() {
            next = next.min(t.max(now + 1));
        }
        let next = next.max(now + 1);

        // Advance signals over [now, next).
        advance(load, &mut pipes, demand, pool.serving, &mut backlog, next - now);
        now = next;
        iterations += 1;
        if iterations.is_multiple_of(65_536) {
            #[allow(clippy::cast_precision_loss)]
            progress(((now - start) as f64 / span).min(1.0));
        }
    }
    progress(1.0);
}

fn advance(load: &Load<'_>, pipes: &mut [Pipeline], demand: f64, serving: u32, backlog: &mut f64, len: i64) {
    if pipes.is_empty() && !load.queue {
        return;
    }
    let steady_cpu = cpu(demand, serving);
    let rate = demand * load.queue_unit;
    for p in pipes.iter_mut() {
        if let Signal::Arrivals { per_target } = p.spec.signal {
            let v = if per_target { (serving > 0).then(|| rate / f64::from(serving)) } else { Some(rate) };
            p.add(len, v.map(|v| (v, v, v)));
        }
    }
    if !load.queue {
        for p in pipes.iter_mut() {
            match p.spec.signal {
                Signal::Cpu => p.add(len, steady_cpu.map(|c| (c, c, c))),
                Signal::Backlog => p.add(len, Some((0.0, 0.0, 0.0))),
                Signal::Arrivals { .. } => {}
            }
        }
        return;
    }
    // Backlog rate per ms; busy at 100 % while the backlog is non-empty.
    let rate = (demand - f64::from(serving)) * load.queue_unit / 1000.0;
    #[allow(clippy::cast_precision_loss)]
    let lf = len as f64;
    let b0 = *backlog;
    let (busy_len, b1) = if b0 <= 0.0 && rate <= 0.0 {
        (0, 0.0)
    } else if rate >= 0.0 {
        (len, b0 + rate * lf)
    } else {
        let t_empty = b0 / -rate;
        if t_empty >= lf {
            (len, b0 + rate * lf)
        } else {
            #[allow(clippy::cast_possible_truncation)]
            let t = (t_empty.ceil() as i64).clamp(0, len);
            (t, 0.0)
        }
    };
    let busy_cpu = (serving > 0).then_some(100.0);
    for p in pipes.iter_mut() {
        match p.spec.signal {
            Signal::Cpu => {
                if busy_len > 0 {
                    p.add(busy_len, busy_cpu.map(|c| (c, c, c)));
                }
                if len > busy_len {
                    p.add(len - busy_len, steady_cpu.map(|c| (c, c, c)));
                }
            }
            Signal::Backlog => {
                if busy_len > 0 {
                    let end = if busy_len == len { b1 } else { 0.0 };
                    p.add(busy_len, Some(((b0 + end) / 2.0, b0.min(end), b0.max(end))));
                }
                if len > busy_len {
                    p.add(len - busy_len, Some((0.0, 0.0, 0.0)));
                }
            }
            Signal::Arrivals { .. } => {}
        }
    }
    *backlog = b1.max(0.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Scales to a fixed schedule and records every CPU datapoint it receives.
    struct Scripted {
        plan: Vec<(i64, u32)>,
        next: usize,
        desired: u32,
        seen: Vec<(i64, i64, f64)>,
        spec: Vec<PipelineSpec>,
    }

    impl Controller for Scripted {
        fn pipelines(&self) -> Vec<PipelineSpec> {
            self.spec.clone()
        }
        fn on_datapoint(&mut self, _w: usize, at: i64, v: f64, now: i64, _p: &mut Pool) {
            self.seen.push((at, now, v));
        }
        fn next_evaluation(&self) -> Option<i64> {
            self.plan.get(self.next).map(|p| p.0)
        }
        fn evaluate(&mut self, now: i64, pool: &mut Pool) {
            self.desired = self.plan[self.next].1;
            pool.scale_to(self.desired, now);
            self.next += 1;
        }
        fn desired(&self) -> u32 {
            self.desired
        }
    }

    const M: i64 = 60_000;

    #[test]
    fn boot_delay_billing_and_lagged_cpu() {
        // Demand 2 for 10 minutes; 1 instance at first, a second started at minute 2 that
        // serves from minute 3.5 (boot 90 s).
        let points = [(0, 2.0)];
        let load =
            Load { points: &points, end_ms: 10 * M, boot_ms: 90_000, lag_ms: 60_000, queue: false, queue_unit: 1.0 };
        let spec = PipelineSpec { signal: Signal::Cpu, stat: Stat::Average, period_ms: M };
        let mut ctl = Scripted { plan: vec![(2 * M, 2)], next: 0, desired: 1, seen: vec![], spec: vec![spec] };
        let mut pool = Pool::new(0, 1, 90_000, false);
        let rec = simulate(&load, &mut ctl, &mut pool, &mut |_| {});
        let rows: Vec<(i64, u32, u32)> = rec.rows().iter().map(|r| (r.at_ms, r.serving, r.billed)).collect();
        assert_eq!(rows, [(0, 1, 1), (2 * M, 1, 2), (3 * M + 30_000, 2, 2)]);
        let f = super::super::metrics::figures("s", rec.rows(), load.end_ms);
        assert_eq!(rec.rows()[0].demand, 2.0);
        assert!((f.instance_hours - 18.0 / 60.0).abs() < 1e-12, "{}", f.instance_hours);
        assert_eq!(f.under_provisioned_minutes, 3.5);
        // Demand 2 keeps every serving instance at 100 %. The datapoint of minute 0 closes at
        // 1 min and arrives a lag later.
        assert_eq!(ctl.seen[0], (0, 2 * M, 100.0));
        assert_eq!(ctl.seen.len(), 9, "periods 0..9 delivered by minute 10");
    }

    /// Drains slot 1 at minute 2, or cancels that drain at minute 3 when `cancel`.
    struct Drainer {
        cancel: bool,
        at: Vec<i64>,
        drained: Vec<usize>,
    }

    impl Controller for Drainer {
        fn pipelines(&self) -> Vec<PipelineSpec> {
            vec![]
        }
        fn on_datapoint(&mut self, _w: usize, _at: i64, _v: f64, _now: i64, _p: &mut Pool) {}
        fn on_drained(&mut self, slots: &[usize]) {
            self.drained.extend_from_slice(slots);
        }
        fn next_evaluation(&self) -> Option<i64> {
            self.at.first().copied()
        }
        fn evaluate(&mut self, now: i64, pool: &mut Pool) {
            self.at.remove(0);
            if now == 2 * M {
                assert!(pool.drain_slot(1, now));
                assert!(!pool.drain_slot(1, now), "never drained twice");
            } else if self.cancel {
                assert!(pool.cancel_drain(1, now));
            }
        }
        fn desired(&self) -> u32 {
            2
        }
    }

    #[test]
    fn a_draining_instance_bills_without_serving_until_its_drain_ends_or_is_cancelled() {
        let points = [(0, 1.0)];
        let load = Load { points: &points, end_ms: 10 * M, boot_ms: 0, lag_ms: 0, queue: false, queue_unit: 1.0 };
        let rows = |cancel: bool| {
            let mut ctl = Drainer { cancel, at: vec![2 * M, 3 * M], drained: vec![] };
            let mut pool = Pool::new(2, 2, 0, true).with_drain(5 * M);
            let rec = simulate(&load, &mut ctl, &mut pool, &mut |_| {});
            let rows: Vec<(i64, u32, u32)> = rec.rows().iter().map(|r| (r.at_ms, r.serving, r.billed)).collect();
            (rows, ctl.drained)
        };
        // Out of service at minute 2, billed until minute 7, then stopped.
        assert_eq!(rows(false), (vec![(0, 2, 2), (2 * M, 1, 2), (7 * M, 1, 1)], vec![1]));
        // Cancelled at minute 3: serving again at once, never stopped.
        assert_eq!(rows(true), (vec![(0, 2, 2), (2 * M, 1, 2), (3 * M, 2, 2)], vec![]));
        // Without a drain time, a drain is a stop.
        let mut pool = Pool::new(2, 2, 0, true);
        assert!(pool.drain_slot(0, 0));
        assert_eq!((pool.serving, pool.billed, pool.is_draining(0)), (1, 1, false));
    }

    #[test]
    fn cpu_average_is_time_weighted() {
        // Demand 1 then 3 at 30 s, on 4 serving: 25 % then 75 % -> 50 % average.
        let points = [(0, 1.0), (30_000, 3.0)];
        let load = Load { points: &points, end_ms: 2 * M, boot_ms: 0, lag_ms: 0, queue: false, queue_unit: 1.0 };
        let spec = PipelineSpec { signal: Signal::Cpu, stat: Stat::Average, period_ms: M };
        let mut ctl = Scripted { plan: vec![], next: 0, desired: 4, seen: vec![], spec: vec![spec] };
        let mut pool = Pool::new(0, 4, 0, false);
        simulate(&load, &mut ctl, &mut pool, &mut |_| {});
        assert_eq!(ctl.seen[0], (0, M, 50.0));
        assert_eq!(ctl.seen[1], (M, 2 * M, 75.0));
    }

    #[test]
    fn backlog_grows_and_drains() {
        // 1 instance; demand 2 for a minute (backlog grows by 1 unit/s to 60), then 0 (drains at
        // 1 unit/s, empty after another minute).
        let points = [(0, 2.0), (M, 0.0)];
        let load = Load { points: &points, end_ms: 3 * M, boot_ms: 0, lag_ms: 0, queue: true, queue_unit: 1.0 };
        let specs = vec![
            PipelineSpec { signal: Signal::Backlog, stat: Stat::Maximum, period_ms: M },
            PipelineSpec { signal: Signal::Cpu, stat: Stat::Average, period_ms: M },
        ];
        let mut ctl = Scripted { plan: vec![], next: 0, desired: 1, seen: vec![], spec: specs };
        let mut pool = Pool::new(0, 1, 0, false);
        simulate(&load, &mut ctl, &mut pool, &mut |_| {});
        let vals: Vec<f64> = ctl.seen.iter().map(|s| s.2).collect();
        // Per minute: backlog max, cpu.
        assert_eq!(vals, [60.0, 100.0, 60.0, 100.0, 0.0, 0.0]);
    }

    #[test]
    fn pool_stops_newest_first_and_fixed_pools_do_not_grow() {
        let mut p = Pool::new(3, 1, 100, true);
        p.scale_to(5, 0);
        assert_eq!((p.billed, p.serving), (3, 1));
        p.scale_to(2, 10);
        assert!(p.is_started(0) && p.is_started(1) && !p.is_started(2));
        assert!(p.any_younger_than(100, 50));
        assert!(p.stop_slot(0) && !p.stop_slot(0));
        assert_eq!((p.billed, p.serving), (1, 0));
    }
}
