//! `vmscaler backtest`: replay a load trace through a policy beside reference strategies.
//!
//! The I/O edge of `vmscaler_engine::backtest`: reads the policy and the trace, runs the pure
//! simulation, shows a progress bar when stderr is a terminal, and writes `report.md`,
//! `report.json`, `chart.svg` and one `supply-<strategy>.csv` per strategy into `--out`.
//! Not here: any simulation logic (the engine owns it).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use jiff::Timestamp;
use std::sync::atomic::{AtomicUsize, Ordering};

use vmscaler_engine::backtest::{self, DemandUnit, Fill, Scenario, Strategy, TraceOptions, chart, frontier, report};
use vmscaler_engine::duration::parse_duration;

use super::{EX_CONFIG, EX_USAGE};
use crate::policies::load_file;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FillArg {
    Zero,
    Hold,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("unit").required(true).args(["capacity_per_instance", "cpu_fleet"])))]
pub struct Args {
    /// The policy file to test.
    #[arg(long)]
    pub policy: PathBuf,
    /// CSV trace with a header: a time column (ISO-8601 or epoch seconds) and a value column.
    #[arg(long)]
    pub trace: PathBuf,
    /// The trace column holding the load (default: the first numeric column).
    #[arg(long)]
    pub value_column: Option<String>,
    /// Request-rate trace: how much of the value one instance serves at 100 % CPU.
    #[arg(long)]
    pub capacity_per_instance: Option<f64>,
    /// CPU % trace recorded on a fixed fleet of this many instances.
    #[arg(long)]
    pub cpu_fleet: Option<f64>,
    /// Time from starting an instance to its serving load.
    #[arg(long, default_value = "90s", value_parser = duration_arg)]
    pub boot_delay: Duration,
    /// Delay before a metric datapoint reaches the policy.
    #[arg(long, default_value = "60s", value_parser = duration_arg)]
    pub metric_lag: Duration,
    /// Reference strategies to compare with.
    #[arg(long, value_delimiter = ',', default_value = "hpa,target-tracking,static,oracle", value_parser = strategy_arg)]
    pub compare: Vec<Strategy>,
    /// Instances serving at the start (default: the policy's min).
    #[arg(long)]
    pub initial: Option<u32>,
    /// CPU target % for the reference strategies (default: the policy's first utilisation target).
    #[arg(long)]
    pub target: Option<f64>,
    /// Interval between rows of a trace without a time column (also the nominal step for gaps).
    #[arg(long, value_parser = duration_arg)]
    pub step: Option<Duration>,
    /// First row's time for a trace without a time column (RFC 3339).
    #[arg(long)]
    pub start: Option<Timestamp>,
    /// How to fill gaps and empty values.
    #[arg(long, value_enum, default_value = "zero")]
    pub fill: FillArg,
    /// `json`: print `report.json` on standard output instead of the results table.
    #[arg(long, value_enum, default_value_t)]
    pub output: super::validate::Output,
    /// Sweep one policy field over values, e.g. `cpu.target=40,45,50,55,60,65`: runs the policy,
    /// hpa and target-tracking at each value (in parallel) and writes frontier.md, frontier.json
    /// and frontier.svg instead of the single-point report.
    #[arg(long, value_name = "FIELD=V1,V2,...")]
    pub sweep: Option<String>,
    /// With --sweep: print the cheapest swept setting whose under-provisioned share stays within
    /// --max-under-share, as the policy change to make.
    #[arg(long, requires = "sweep", requires = "max_under_share")]
    pub tune: bool,
    /// Budget for --tune: the largest acceptable share of time under-provisioned, e.g. `1%`.
    #[arg(long, value_name = "P%", requires = "tune")]
    pub max_under_share: Option<String>,
    /// Output directory (created if missing).
    #[arg(long)]
    pub out: PathBuf,
}

fn duration_arg(s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| e.to_string())
}

fn strategy_arg(s: &str) -> Result<Strategy, String> {
    s.parse::<Strategy>().map_err(|e| e.to_string())
}

/// One sweep point's figures (the policy and each reference), or why it could not run.
type PointResult = Result<Vec<backtest::Figures>, backtest::BacktestError>;
/// A one-line progress bar on stderr, drawn only on a terminal.
struct Progress {
    tty: bool,
    last: Option<(String, u32)>,
}

impl Progress {
    fn update(&mut self, name: &str, fraction: f64) {
        if !self.tty {
            return;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let pct = (fraction.clamp(0.0, 1.0) * 100.0) as u32;
        if self.last.as_ref().is_some_and(|(n, p)| n == name && *p == pct) {
            return;
        }
        let filled = (pct / 4) as usize;
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{name:>16} [{}{}] {pct:>3}%", "#".repeat(filled), " ".repeat(25 - filled));
        if pct == 100 {
            let _ = writeln!(err);
        }
        let _ = err.flush();
        self.last = Some((name.to_owned(), pct));
    }
}

/// `supply-<strategy>.csv`, written row by row as a strategy's rows stream by (the strategies
/// come one after the other). The directory and each file are created at their first row, so a
/// backtest refused before it starts writes nothing. The first error stops the writing and is
/// reported by [`SupplyFiles::finish`].
struct SupplyFiles<'a> {
    dir: &'a Path,
    open: Option<(Strategy, PathBuf, BufWriter<File>)>,
    error: Option<anyhow::Error>,
}

impl SupplyFiles<'_> {
    fn row(&mut self, s: Strategy, r: &backtest::SupplyRow) {
        if self.error.is_none()
            && let Err(e) = self.write_row(s, r)
        {
            self.error = Some(e);
        }
    }

    fn write_row(&mut self, s: Strategy, r: &backtest::SupplyRow) -> anyhow::Result<()> {
        if self.open.as_ref().is_none_or(|(open, _, _)| *open != s) {
            self.close()?;
            std::fs::create_dir_all(self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
            let path = self.dir.join(format!("supply-{s}.csv"));
            let file = File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
            let mut w = BufWriter::new(file);
            w.write_all(report::SUPPLY_CSV_HEADER.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            self.open = Some((s, path, w));
        }
        if let Some((_, path, w)) = &mut self.open {
            writeln!(w, "{}", report::SupplyLine(r)).with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<()> {
        if let Some((_, path, mut w)) = self.open.take() {
            w.flush().with_context(|| format!("cannot write {}", path.display()))?;
        }
        Ok(())
    }

    fn finish(mut self) -> anyhow::Result<()> {
        match self.error.take() {
            Some(e) => Err(e),
            None => self.close(),
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> anyhow::Result<()> {
    let path = dir.join(name);
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let report_ = load_file(&args.policy);
    for d in &report_.diagnostics {
        eprintln!("{d}");
    }
    let Some(policy) = report_.policy else { return Ok(ExitCode::from(EX_CONFIG)) };

    // Read line by line: only the parsed points are kept, never the whole text.
    let file = match File::open(&args.trace) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vmscaler: cannot read trace {}: {e}", args.trace.display());
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let mut read_error = None;
    let lines = BufReader::new(file).lines().map_while(|l| l.map_err(|e| read_error = Some(e)).ok());
    let opts = TraceOptions {
        value_column: args.value_column.clone(),
        step: args.step,
        start: args.start,
        fill: match args.fill {
            FillArg::Zero => Fill::Zero,
            FillArg::Hold => Fill::Hold,
        },
    };
    let trace = backtest::read_trace_lines(lines, &opts);
    if let Some(e) = read_error {
        eprintln!("vmscaler: cannot read trace {}: {e}", args.trace.display());
        return Ok(ExitCode::from(EX_USAGE));
    }
    let trace = match trace {
        Ok(t) => t,
        Err(e) => {
            eprintln!("vmscaler: {}: {e}", args.trace.display());
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    let s = &trace.summary;
    if s.out_of_order > 0 {
        eprintln!(
            "vmscaler: {}: {} row(s) out of order (first at line {}), sorted",
            args.trace.display(),
            s.out_of_order,
            s.out_of_order_lines.first().copied().unwrap_or(0)
        );
    }
    if s.gap_count > 0 || s.empty_values > 0 {
        eprintln!(
            "vmscaler: {}: {} gap(s) ({} missing point(s)) and {} empty value(s), filled with {}",
            args.trace.display(),
            s.gap_count,
            s.missing_points,
            s.empty_values,
            s.fill.as_str()
        );
    }

    let demand = match (args.capacity_per_instance, args.cpu_fleet) {
        (Some(c), None) => DemandUnit::CapacityPerInstance(c),
        (None, Some(n)) => DemandUnit::CpuFleet(n),
        _ => bail!("give exactly one of --capacity-per-instance and --cpu-fleet"),
    };
    let scenario = Scenario {
        demand,
        boot_delay: args.boot_delay,
        metric_lag: args.metric_lag,
        initial: args.initial,
        target: args.target,
    };
    if let Some(arg) = &args.sweep {
        return run_sweep(&args, &policy, &trace, &scenario, arg);
    }
    let mut progress = Progress { tty: std::io::stderr().is_terminal(), last: None };
    // Supply rows go to their CSV files as they are produced, never held (a long trace would
    // otherwise hold every strategy's rows until the end).
    let mut supply = SupplyFiles { dir: &args.out, open: None, error: None };
    let result = match backtest::run_with(
        &policy,
        &trace,
        scenario,
        &args.compare,
        &mut |n, f| progress.update(n, f),
        &mut |s, r| supply.row(s, r),
    ) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmscaler: {e}");
            return Ok(ExitCode::from(EX_USAGE));
        }
    };
    drop(trace);
    supply.finish()?;

    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let trace_name =
        args.trace.file_name().map_or_else(|| args.trace.display().to_string(), |n| n.to_string_lossy().into_owned());
    let md = report::markdown(&result, &trace_name);
    write(&args.out, "report.md", &md)?;
    write(&args.out, "report.json", &report::json(&result, &trace_name))?;
    write(&args.out, "chart.svg", &chart::svg(&result, &trace_name))?;
    if args.output == super::validate::Output::Json {
        println!("{}", report::json(&result, &trace_name));
        return Ok(ExitCode::SUCCESS);
    }
    // The results table on stdout.
    if let Some(table) = md.split("## Results\n\n").nth(1).and_then(|t| t.split("\n\n").next()) {
        println!("{table}");
    }
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}

/// `--sweep` (and `--tune`): the frontier over one field's values, points run in parallel.
fn run_sweep(
    args: &Args,
    policy: &vmscaler_engine::policy::Policy,
    trace: &backtest::Trace,
    scenario: &Scenario,
    arg: &str,
) -> anyhow::Result<ExitCode> {
    // Every input is checked before anything is written to --out.
    let sweep = match frontier::parse_sweep(policy, arg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("vmscaler: {}: {e}", args.policy.display());
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    let budget = match args.max_under_share.as_deref().map(frontier::parse_share).transpose() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("vmscaler: {e}");
            return Ok(ExitCode::from(EX_CONFIG));
        }
    };
    // One worker per core; each takes the next value until none is left.
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(sweep.values.len());
    let results: Vec<Vec<(usize, PointResult)>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&v) = sweep.values.get(i) else { break };
                        done.push((i, frontier::sweep_point(policy, &sweep, v, trace, scenario)));
                    }
                    done
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap_or_default()).collect()
    });
    let mut runs: Vec<Option<Vec<backtest::Figures>>> = vec![None; sweep.values.len()];
    for (i, r) in results.into_iter().flatten() {
        match r {
            Ok(f) => runs[i] = Some(f),
            Err(e) => {
                eprintln!("vmscaler: {e}");
                return Ok(ExitCode::from(EX_USAGE));
            }
        }
    }
    let Some(runs) = runs.into_iter().zip(&sweep.values).map(|(r, v)| r.map(|r| (*v, r))).collect::<Option<Vec<_>>>()
    else {
        bail!("a sweep worker stopped without a result");
    };
    let trace_name =
        args.trace.file_name().map_or_else(|| args.trace.display().to_string(), |n| n.to_string_lossy().into_owned());
    let current = frontier::current_value(policy, &sweep);
    let mut f = frontier::Frontier::new(&policy.name, &trace_name, &sweep, &runs, current);
    let tuned = budget.map(|b| (b, f.tune(b).map(|p| p.value)));
    if let Some((_, Some(v))) = tuned {
        f.chosen = Some(v);
    }
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create {}", args.out.display()))?;
    let md = f.markdown();
    write(&args.out, "frontier.md", &md)?;
    write(&args.out, "frontier.json", &f.json())?;
    write(&args.out, "frontier.svg", &f.svg())?;
    if let Some(table) = md.split("## At equal cost\n\n").nth(1) {
        println!("{}", table.lines().skip(2).collect::<Vec<_>>().join("\n"));
    }
    match tuned {
        Some((b, Some(v))) => {
            let p = f.tune(b).map_or(0.0, |p| p.under_provisioned_share_pct);
            let from = current.map_or_else(|| "?".to_owned(), |c| c.to_string());
            println!(
                "tune: the cheapest swept setting within {b} % under-provisioned is {} = {v} ({p:.3} %)",
                sweep.field
            );
            if current == Some(v) {
                println!("policy change: none ({} is already {v})", sweep.field);
            } else {
                println!(
                    "policy change: metrics[{}].target: {from} -> {v} (other metric targets in proportion)",
                    sweep.metric
                );
            }
        }
        Some((b, None)) => {
            println!("tune: no swept setting keeps under-provisioning within {b} %; sweep lower values");
        }
        None => {}
    }
    println!("wrote {}", args.out.display());
    Ok(ExitCode::SUCCESS)
}
