//! `vmscaler schedule [--policy PATH] [--days 30] [--now T] [--output json]`: every pre-warm
//! floor's windows over the coming days, offline from the policy files: when the floor starts
//! rising (ramp), is full (lead), when the event starts and ends, and from when `release_after`
//! may release it, each in the rule's zone and in UTC, with a countdown. The windows come from
//! the engine's [`vmscaler_engine::calendar`], the same cron matching the daemon uses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Serialize;
use vmscaler_engine::calendar::{Occurrence, upcoming};

use super::EX_CONFIG;
use super::validate::Output;
use crate::clock::{Clock, SystemClock};
use crate::policies::load_paths;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files or directories (default: policies/).
    #[arg(long = "policy", value_name = "PATH")]
    pub policies: Vec<PathBuf>,
    /// How many days ahead.
    #[arg(long, default_value_t = 30)]
    pub days: u32,
    /// Count from this instant (RFC 3339; default: now).
    #[arg(long)]
    pub now: Option<Timestamp>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

#[derive(Serialize)]
struct View {
    now: Timestamp,
    days: u32,
    windows: Vec<Occurrence>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let paths = if args.policies.is_empty() { vec![PathBuf::from("policies")] } else { args.policies };
    let set = load_paths(&paths);
    if set.error_count() > 0 || set.policies.is_empty() {
        for d in &set.diagnostics {
            eprintln!("{d}");
        }
        eprintln!("vmscaler: no valid policy to show (see `vmscaler validate`)");
        return Ok(ExitCode::from(EX_CONFIG));
    }
    let now = args.now.unwrap_or_else(|| SystemClock.now());
    let horizon = Duration::from_secs(u64::from(args.days) * 86_400);
    let mut windows: Vec<Occurrence> =
        set.policies.iter().flat_map(|(_, p)| upcoming(p, now, horizon, 1_000)).collect();
    windows.sort_by(|a, b| (a.ramp_from, &a.policy, &a.rule).cmp(&(b.ramp_from, &b.policy, &b.rule)));
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&View { now, days: args.days, windows })?),
        Output::Text => print!("{}", render(&windows, now, args.days)),
    }
    Ok(ExitCode::SUCCESS)
}

/// `2027-11-11 00:00 Asia/Shanghai (2027-11-10 16:00Z)`.
fn both(t: Timestamp, zone: &str) -> String {
    let local =
        TimeZone::get(zone).map_or_else(|_| t.to_string(), |tz| t.to_zoned(tz).strftime("%Y-%m-%d %H:%M").to_string());
    format!("{local} {zone} ({})", t.strftime("%Y-%m-%d %H:%MZ"))
}

/// `in 3d4h`, `2h10m ago`.
fn countdown(t: Timestamp, now: Timestamp) -> String {
    let secs = t.as_second() - now.as_second();
    let human = |s: i64| {
        let s = s.unsigned_abs();
        let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
        match (d, h) {
            (0, 0) => format!("{m}m"),
            (0, _) => format!("{h}h{m:02}m"),
            _ => format!("{d}d{h}h"),
        }
    };
    if secs >= 0 { format!("in {}", human(secs)) } else { format!("{} ago", human(secs)) }
}

pub fn render(windows: &[Occurrence], now: Timestamp, days: u32) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "pre-warm windows from {} for {days} day(s)", now.strftime("%Y-%m-%d %H:%MZ"));
    if windows.is_empty() {
        o.push_str("none\n");
    }
    for w in windows {
        let z = w.time_zone.as_str();
        let _ = writeln!(
            o,
            "\n{} / {}: floor {}{}",
            w.policy,
            w.rule,
            w.capacity,
            if w.active { " (in force now)" } else { "" }
        );
        if w.ramp_from < w.full_at {
            let _ = writeln!(o, "  ramp from  {}  {}", both(w.ramp_from, z), countdown(w.ramp_from, now));
        }
        let _ = writeln!(o, "  full from  {}  {}", both(w.full_at, z), countdown(w.full_at, now));
        let _ = writeln!(o, "  start      {}  {}", both(w.start, z), countdown(w.start, now));
        let _ = writeln!(o, "  end        {}  {}", both(w.end, z), countdown(w.end, now));
        if let Some(r) = w.release_from {
            let _ = writeln!(o, "  releasable {}  (if nothing asks for the floor)", both(r, z));
        }
    }
    o
}
