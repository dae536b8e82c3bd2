//! One module per CLI subcommand: its clap arguments and its `run`.

pub mod backtest;
pub mod dist;
pub mod forecast;
pub mod history;
pub mod iam_policy;
pub mod pause;
pub mod plan;
pub mod record;
pub mod run;
pub mod schedule;
pub mod status;
pub mod validate;

/// Exit code for configuration errors (sysexits EX_CONFIG).
pub const EX_CONFIG: u8 = 78;
/// Exit code for bad command-line input or unreadable input files (sysexits EX_USAGE / EX_DATAERR).
pub const EX_USAGE: u8 = 64;
