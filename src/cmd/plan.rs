//! `vmscaler plan`: one decision from given inputs, with its reasons, without touching AWS.
//!
//! The metrics file is a CSV with a `timestamp` column (RFC 3339 or epoch seconds) and one
//! column per metric id of the policy. Every row before `--at` is replayed through a `PoolCycle`
//! at its timestamp with the fleet held at `--current`, so confirmation and the stabilisation
//! window see the same history the daemon would have seen (nothing is acted on, so no cooldown
//! starts). The decision printed is the one at `--at` (default: the file's last timestamp).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use jiff::Timestamp;
use vmscaler_engine::backtest::trace::parse_time;

use super::EX_CONFIG;
use super::validate::Output;
use crate::policies::load_file;
use vmscaler_engine::policy::PoolTarget;
use vmscaler_engine::{Achieved, Decision, Fleet, GroupState, Member, MemberState, Policy, PoolCycle, Sample};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file.
    #[arg(long)]
    pub policy: PathBuf,
    /// CSV: `timestamp,<metric id>,...`.
    #[arg(long)]
    pub metrics: PathBuf,
    /// Current capacity (running instances, or the group's desired capacity).
    #[arg(long)]
    pub current: u32,
    /// Stopped members available to start (tagged pools; default: enough to reach max).
    #[arg(long)]
    pub warm: Option<u32>,
    /// When to decide (RFC 3339, e.g. 2026-11-27T04:45:00Z; default: the last timestamp in the file).
    #[arg(long)]
    pub at: Option<Timestamp>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

/// One row of the metrics file: a time and the metric values present at it.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub at: Timestamp,
    pub values: Vec<(String, f64)>,
}

/// Parses `timestamp,<id>,...` rows (timestamps as the trace reader accepts them: RFC 3339,
/// epoch seconds, a civil date-time in UTC) into time-ordered rows. An empty cell is a gap.
pub fn read_metrics_csv(text: &str) -> anyhow::Result<Vec<Row>> {
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'));
    let Some((_, header)) = lines.next() else { bail!("empty file: expected a header `timestamp,<metric id>,...`") };
    let cols: Vec<&str> = header.split(',').map(str::trim).collect();
    if cols.first().map(|c| c.to_ascii_lowercase()) != Some("timestamp".into()) || cols.len() < 2 {
        bail!("line 1: header must be `timestamp,<metric id>,...`, found {header:?}");
    }
    let mut rows = Vec::new();
    for (i, line) in lines {
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != cols.len() {
            bail!("line {}: {} cells, the header has {}", i + 1, cells.len(), cols.len());
        }
        let at = parse_time(cells[0]).and_then(|(ms, _)| Timestamp::from_millisecond(ms).ok()).with_context(|| {
            format!("line {}: {:?} is not a timestamp (RFC 3339 or epoch seconds)", i + 1, cells[0])
        })?;
        let mut values = Vec::new();
        for (c, v) in cols[1..].iter().zip(&cells[1..]) {
            if v.is_empty() {
                continue; // a gap: this metric has no datapoint at this time
            }
            let x: f64 = v.parse().with_context(|| format!("line {}: {c} value {v:?} is not a number", i + 1))?;
            values.push(((*c).to_owned(), x));
        }
        rows.push(Row { at, values });
    }
    rows.sort_by_key(|r| r.at);
    Ok(rows)
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let Some((policy, rows)) = load_inputs(&args.policy, &args.metrics)? else { return Ok(ExitCode::from(EX_CONFIG)) };
    let Some(last) = rows.last().map(|r| r.at) else { bail!("{}: no rows", args.metrics.display()) };
    let at = args.at.unwrap_or(last);
    let fleet = match fleet_for(&policy, args.current, args.warm) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vmscaler: {e}");
            return Ok(ExitCode::from(super::EX_USAGE));
        }
    };
    let (_, d) = replay(&policy, &rows, &fleet, at);
    let d = &d;
    match args.output {
        Output::Json => {
            let out = serde_json::json!({ "decision": d, "reasons": d.reasons() });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => print!("{}", render(d)),
    }
    Ok(ExitCode::SUCCESS)
}

/// Replays the rows up to `at` through a pool cycle with the fleet held as `fleet` (nothing is
/// acted on, so no cooldown starts), then decides at `at`. The cycle keeps what it learned: the
/// history, and with `predictive:` the forecast model (`vmscaler forecast --trace`).
pub fn replay(policy: &Policy, rows: &[Row], fleet: &Fleet, at: Timestamp) -> (PoolCycle, Decision) {
    let mut cycle = PoolCycle::new();
    for row in rows.iter().filter(|r| r.at <= at) {
        for (id, v) in &row.values {
            cycle.observe(id, Sample { at: row.at, value: *v });
        }
        if row.at < at {
            let d = cycle.evaluate(policy, fleet, row.at);
            // Replayed, not acted on: the fleet stayed as it was, so no cooldown starts.
            cycle.complete(Achieved::Capacity(d.current));
        }
    }
    let d = cycle.evaluate(policy, fleet, at);
    (cycle, d)
}

/// The policy file and the metrics CSV, read and checked as `plan` does; `None` when the
/// policy has errors (already printed).
pub fn load_inputs(policy: &Path, metrics: &Path) -> anyhow::Result<Option<(Policy, Vec<Row>)>> {
    let report = load_file(policy);
    for d in &report.diagnostics {
        eprintln!("{d}");
    }
    let Some(policy) = report.policy else { return Ok(None) };
    let text = std::fs::read_to_string(metrics).with_context(|| format!("cannot read {}", metrics.display()))?;
    let rows = read_metrics_csv(&text).with_context(|| metrics.display().to_string())?;
    for row in rows.iter().take(1) {
        for (id, _) in &row.values {
            if !policy.metrics.iter().any(|m| &m.id == id) {
                eprintln!(
                    "warning: {}: column {id:?} is not a metric of policy {:?} (ignored)",
                    metrics.display(),
                    policy.name
                );
            }
        }
    }
    Ok(Some((policy, rows)))
}

/// The fleet `plan` and `forecast --trace` decide on: `current` running (or a group at
/// `current`) and `warm` stopped, within [`PLAN_FLEET_LIMIT`]; an error says which flag is
/// too large.
pub fn fleet_for(policy: &Policy, current: u32, warm: Option<u32>) -> Result<Fleet, String> {
    check_fleet_size(policy, current, warm)?;
    Ok(plan_fleet(&policy.pool, policy, current, warm))
}

/// Largest fleet `plan` simulates unless the policy's `max` is larger.
pub const PLAN_FLEET_LIMIT: u32 = 10_000;

/// `--current` and `--warm` within the policy's `max` or [`PLAN_FLEET_LIMIT`], whichever is
/// larger (a fleet above `max` is worth planning: it is how a pool is adopted).
fn check_fleet_size(policy: &vmscaler_engine::Policy, current: u32, warm: Option<u32>) -> Result<(), String> {
    let limit = policy.max.max(PLAN_FLEET_LIMIT);
    if current > limit {
        return Err(format!(
            "--current {current} is above {limit} (the policy's max {} or {PLAN_FLEET_LIMIT})",
            policy.max
        ));
    }
    if let Some(w) = warm
        && u64::from(current) + u64::from(w) > u64::from(limit)
    {
        return Err(format!(
            "--current {current} plus --warm {w} is above {limit} (the policy's max {} or {PLAN_FLEET_LIMIT})",
            policy.max
        ));
    }
    Ok(())
}

/// A fleet of `current` running members and `warm` stopped ones (or a group at `current`).
fn plan_fleet(pool: &PoolTarget, policy: &vmscaler_engine::Policy, current: u32, warm: Option<u32>) -> Fleet {
    match pool {
        PoolTarget::AutoScalingGroup(name) => Fleet::Group(GroupState {
            name: name.clone(),
            desired: current,
            min: policy.min,
            max: policy.max,
            in_service: current,
            activity_in_progress: false,
        }),
        PoolTarget::Tagged(_) => {
            let warm = warm.unwrap_or_else(|| policy.max.saturating_sub(current));
            let member = |i: u32, state| Member {
                id: format!("i-plan{i:05}"),
                state,
                launched_at: Timestamp::from_second(1_700_000_000 + i64::from(i) * 60).ok(),
                protected: false,
                cpu: None,
            };
            let members = (0..current)
                .map(|i| member(i, MemberState::Running))
                .chain((current..current + warm).map(|i| member(i, MemberState::Stopped)))
                .collect();
            Fleet::Instances { members }
        }
    }
}

/// The text a person reads.
pub fn render(d: &Decision) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let verb = match d.desired.cmp(&d.current) {
        std::cmp::Ordering::Greater => "scale up",
        std::cmp::Ordering::Less => "scale down",
        std::cmp::Ordering::Equal => "hold",
    };
    let _ = writeln!(s, "policy {} at {}", d.policy, d.at);
    let _ = writeln!(s, "{verb}: current {} -> desired {}", d.current, d.desired);
    let _ = writeln!(s, "why:");
    for r in d.reasons() {
        let _ = writeln!(s, "  - {r}");
    }
    if d.actions.is_empty() {
        let _ = writeln!(s, "actions: none");
    } else {
        let _ = writeln!(s, "actions:");
        for a in &d.actions {
            let line = match a {
                vmscaler_engine::Action::Start { instance_ids } => format!("start {}", instance_ids.join(", ")),
                vmscaler_engine::Action::Stop { instance_ids } => format!("stop {}", instance_ids.join(", ")),
                vmscaler_engine::Action::CancelDrain { instance_ids } => {
                    format!("cancel the drain of {} (register again)", instance_ids.join(", "))
                }
                vmscaler_engine::Action::SetDesiredCapacity { group, desired } => {
                    format!("set desired capacity of {group} to {desired}")
                }
            };
            let _ = writeln!(s, "  - {line}");
        }
    }
    let _ = writeln!(s, "next evaluation: {}", d.next_evaluation);
    s
}
