use std::process::ExitCode;

use clap::Parser;
use vmscaler::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.run() {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vmscaler: {e:#}");
            ExitCode::FAILURE
        }
    }
}
