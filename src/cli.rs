//! The command-line definition (clap derive): the top-level [`Cli`] and its [`Command`]s.
//!
//! It lives in the library, not in `main.rs`, so that `vmscaler dist` can generate shell
//! completions and man pages from the very definition the binary parses. Each subcommand's
//! arguments and behaviour live in its own `cmd::<name>` module; this file only lists them and
//! dispatches. Not here: any subcommand's logic.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::cmd;

/// `vmscaler --version`: the crate version and the git revision (see `build.rs`).
pub const VERSION: &str = env!("VMSCALER_VERSION");

/// Autoscaler for EC2 tagged pools and Auto Scaling groups, with scheduled pre-warm.
#[derive(Debug, Parser)]
#[command(name = "vmscaler", version = VERSION, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check policy files; exit 78 on errors.
    Validate(cmd::validate::Args),
    /// One decision from given inputs, with its reasons.
    Plan(cmd::plan::Args),
    /// Run the autoscaling daemon.
    Run(cmd::run::Args),
    /// Show what a running daemon is doing.
    Status(cmd::status::Args),
    /// What changed, per pool: actions, floors, degradations, reloads, pauses (the activity log).
    History(cmd::history::Args),
    /// Every pre-warm floor's next windows, in local time and UTC, with a countdown.
    Schedule(cmd::schedule::Args),
    /// Stop a running daemon from acting on a pool (it is still evaluated and reported).
    Pause(cmd::pause::PauseArgs),
    /// Let a paused pool act again.
    Resume(cmd::pause::ResumeArgs),
    /// Replay a load trace through a policy beside reference strategies.
    Backtest(cmd::backtest::Args),
    /// Record a pool's metrics and size from CloudWatch as a trace for `backtest`.
    Record(cmd::record::Args),
    /// A pool's forecast model (`predictive:`) as the daemon has it: learning, error, the next 24 hours.
    Forecast(cmd::forecast::Args),
    /// Print the least-privilege IAM policy (JSON) the daemon needs for a policy set.
    IamPolicy(cmd::iam_policy::Args),
    /// Write shell completions and man pages (used by packaging).
    #[command(hide = true)]
    Dist(cmd::dist::Args),
}

impl Command {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<ExitCode> {
        match self {
            Command::Validate(args) => cmd::validate::run(args),
            Command::Plan(args) => cmd::plan::run(args),
            Command::Run(args) => cmd::run::run(args),
            Command::Status(args) => cmd::status::run(args),
            Command::History(args) => cmd::history::run(args),
            Command::Schedule(args) => cmd::schedule::run(args),
            Command::Pause(args) => cmd::pause::pause(args),
            Command::Resume(args) => cmd::pause::resume(args),
            Command::Backtest(args) => cmd::backtest::run(args),
            Command::Record(args) => cmd::record::run(args),
            Command::Forecast(args) => cmd::forecast::run(args),
            Command::IamPolicy(args) => cmd::iam_policy::run(args),
            Command::Dist(args) => cmd::dist::run(args),
        }
    }
}
