//! vmscaler: the daemon, CLI and AWS adapters around the pure `vmscaler-engine`.
//!
//! All I/O lives in this crate: files, AWS calls, HTTP, signals and the clock.

pub mod activity;
pub mod alerts;
pub mod aws;
pub mod cli;
pub mod clock;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod formats;
pub mod http;
pub mod lease;
pub mod ops;
pub mod policies;
pub mod prometheus;
pub mod state;
