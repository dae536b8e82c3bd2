//! `vmscaler validate [PATH...]`: check policy files offline, report every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::ValueEnum;
use serde::Serialize;

use super::EX_CONFIG;
use crate::clock::{Clock, SystemClock};
use crate::policies::load_paths_at;
use vmscaler_engine::policy::Diagnostic;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum Output {
    #[default]
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files or directories (default: policies/).
    pub paths: Vec<PathBuf>,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
    /// Judge pre-warm windows at this instant (RFC 3339; default: now): a one-off window
    /// already over, or a cron that does not fire within a year, is a warning.
    #[arg(long)]
    pub now: Option<jiff::Timestamp>,
}

#[derive(Serialize)]
struct JsonReport<'a> {
    ok: bool,
    files: Vec<String>,
    policies: Vec<String>,
    errors: usize,
    warnings: usize,
    diagnostics: &'a [Diagnostic],
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = if args.paths.is_empty() { vec![PathBuf::from("policies")] } else { args.paths };
    let now = args.now.unwrap_or_else(|| SystemClock.now());
    let set = load_paths_at(&paths, Some(now), &[]);
    let (errors, warnings) = (set.error_count(), set.warning_count());
    let ok = errors == 0 && !(args.deny_warnings && warnings > 0) && !set.files.is_empty();
    match args.output {
        Output::Text => {
            for d in &set.diagnostics {
                eprintln!("{d}");
            }
            if set.files.is_empty() && errors == 0 {
                eprintln!(
                    "no policy files (*.yaml, *.yml) found in {}",
                    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                );
            }
            let verdict = if ok { "ok" } else { "invalid" };
            println!(
                "{verdict}: {} file(s), {} valid polic{}, {errors} error(s), {warnings} warning(s)",
                set.files.len(),
                set.policies.len(),
                if set.policies.len() == 1 { "y" } else { "ies" }
            );
        }
        Output::Json => {
            let report = JsonReport {
                ok,
                files: set.files.iter().map(|f| f.display().to_string()).collect(),
                policies: set.policies.iter().map(|(_, p)| p.name.clone()).collect(),
                errors,
                warnings,
                diagnostics: &set.diagnostics,
            };
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
    }
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::from(EX_CONFIG) })
}
