//! `vmscaler history [--policy P] [--since 2h] [--output json]`: what changed, per pool.
//!
//! Reads the daemon's `/v1/history` (the activity log, see [`crate::activity`]), or with
//! `--state-dir` the log files themselves (the daemon need not be running).
//!
//! Not here: writing the log (the daemon does).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::status::{EX_UNAVAILABLE, encode, http_get};
use super::validate::Output;
use crate::activity::{ActivityLog, Event};
use crate::clock::{Clock, SystemClock};
use crate::ops::{HistoryView, parse_since};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's HTTP address.
    #[arg(long, value_name = "URL", env = "VMSCALER_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Read the activity log from this state directory instead of asking the daemon.
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// Only this policy.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Only events since this instant (RFC 3339) or this long ago (`2h`, `14d`).
    #[arg(long, default_value = "24h")]
    pub since: String,
    /// At most this many (the newest).
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let view = match &args.state_dir {
        Some(dir) => {
            let now = SystemClock.now();
            let since = parse_since(&args.since, now).map_err(anyhow::Error::msg)?;
            let mut events = ActivityLog::open(dir).read(args.policy.as_deref(), Some(since));
            if let Some(n) = args.limit {
                events.drain(..events.len().saturating_sub(n));
            }
            HistoryView { now, events }
        }
        None => {
            let mut q = format!("/v1/history?since={}", encode(&args.since));
            if let Some(p) = &args.policy {
                q.push_str(&format!("&policy={}", encode(p)));
            }
            if let Some(n) = args.limit {
                q.push_str(&format!("&limit={n}"));
            }
            match http_get(&args.url, &q) {
                Ok(body) => serde_json::from_str(&body).context("unexpected /v1/history answer")?,
                Err(e) => {
                    eprintln!("vmscaler: {e:#}");
                    return Ok(ExitCode::from(EX_UNAVAILABLE));
                }
            }
        }
    };
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&view)?),
        Output::Text => print!("{}", render(&view.events)),
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per event (`2026-12-03 11:59:00Z  web  action  ...`), outcomes indented below.
pub fn render(events: &[Event]) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    if events.is_empty() {
        o.push_str("no changes in this period\n");
    }
    for e in events {
        let _ = writeln!(
            o,
            "{}  {}  {}{}  {}",
            e.at.strftime("%Y-%m-%d %H:%M:%SZ"),
            e.policy.as_deref().unwrap_or("(daemon)"),
            e.kind,
            if e.dry_run { " (dry-run)" } else { "" },
            e.message
        );
        for out in &e.outcomes {
            let _ = writeln!(o, "      {out}");
        }
    }
    o
}
