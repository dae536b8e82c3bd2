use std::process::ExitCode;

use clap::{Parser, Subcommand};
use vmscaler::cmd;

/// Autoscaler for EC2 tagged pools and Auto Scaling groups, with scheduled pre-warm.
#[derive(Debug, Parser)]
#[command(name = "vmscaler", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check policy files; exit 78 on errors.
    Validate(cmd::validate::Args),
    /// One decision from given inputs, with its reasons.
    Plan(cmd::plan::Args),
    /// Run the autoscaling daemon.
    Run(cmd::run::Args),
    /// Show what a running daemon is doing.
    Status(cmd::status::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cmd::validate::run(args),
        Command::Plan(args) => cmd::plan::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Status(args) => cmd::status::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmscaler: {e:#}");
            ExitCode::FAILURE
        }
    }
}
