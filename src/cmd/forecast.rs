//! `vmscaler forecast POLICY [--svg FILE] [--output json]`: a pool's forecast model as the
//! running daemon has it: learning progress, error against its gate, the floor at the last
//! evaluation, the next 48 hours' floor hour by hour (UTC and local time), and where its history
//! came from. `--svg` draws the last 48 hours' demand, the next 48 hours' forecast and floor.
//!
//! Reads the daemon's `/v1/forecast` (see [`crate::http`]). Not here: the model (the engine's
//! `forecast`), or computing anything: this only shows what the daemon computed.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::status::{EX_UNAVAILABLE, encode, http_get};
use super::validate::Output;
use crate::daemon::forecast::ForecastBoard;
use crate::http::ForecastResponse;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy (its `name:`), as the daemon runs it; with `--trace`, the policy file.
    #[arg(required_unless_present = "policy_file")]
    pub policy: Option<String>,
    /// The policy file, for `--trace` (the same as giving it as POLICY).
    #[arg(long = "policy", value_name = "FILE", conflicts_with = "policy")]
    pub policy_file: Option<PathBuf>,
    /// Offline: learn from this CSV (`timestamp,<metric id>,...`, as `vmscaler plan --metrics`
    /// reads it) instead of asking the daemon; the forecast is made at its last row.
    #[arg(long, value_name = "CSV")]
    pub trace: Option<PathBuf>,
    /// With `--trace`: the fleet the rows were measured on (running instances, or the group's
    /// desired capacity), held while they are replayed.
    #[arg(long, default_value_t = 1, requires = "trace")]
    pub current: u32,
    /// The daemon's HTTP address.
    #[arg(long, value_name = "URL", env = "VMSCALER_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Also write a chart of the last 48 hours' demand and the next 48 hours' forecast (SVG).
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Time zone for the local-time column (default: the system's).
    #[arg(long, value_name = "IANA")]
    pub time_zone: Option<String>,
    #[arg(long, value_enum, default_value_t)]
    pub output: Output,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tz = match &args.time_zone {
        Some(z) => match TimeZone::get(z) {
            Ok(tz) => tz,
            Err(e) => {
                eprintln!("vmscaler: --time-zone {z:?}: {e}");
                return Ok(ExitCode::from(super::EX_USAGE));
            }
        },
        None => TimeZone::system(),
    };
    let (name, now, f) = match &args.trace {
        Some(trace) => {
            let file = args.policy_file.clone().or_else(|| args.policy.clone().map(PathBuf::from));
            let Some(file) = file else { anyhow::bail!("--trace needs the policy file") };
            match offline(&file, trace, args.current)? {
                Ok(v) => v,
                Err(code) => return Ok(code),
            }
        }
        None => {
            let Some(name) = args.policy.clone() else {
                anyhow::bail!("which policy? (its name, or --trace with a file)")
            };
            let body = match http_get(&args.url, &format!("/v1/forecast?policy={}", encode(&name))) {
                Ok(b) => b,
                Err(e) => {
                    eprintln!("vmscaler: {e:#}");
                    return Ok(ExitCode::from(EX_UNAVAILABLE));
                }
            };
            let mut view: ForecastResponse = serde_json::from_str(&body).context("unexpected /v1/forecast answer")?;
            let Some(f) = view.pools.remove(&name) else {
                eprintln!("vmscaler: the daemon has no forecast for {name:?}");
                return Ok(ExitCode::from(EX_UNAVAILABLE));
            };
            (name, view.now, f)
        }
    };
    if let Some(path) = &args.svg {
        std::fs::write(path, svg(&name, &f, now)).with_context(|| format!("cannot write {}", path.display()))?;
    }
    match args.output {
        Output::Json => {
            let out = serde_json::json!({ "policy": name, "now": now, "forecast": f });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        Output::Text => print!("{}", render(&name, &f, &tz)),
    }
    if let Some(path) = &args.svg {
        eprintln!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `--trace`: the policy's forecast model learned from the rows (replayed as `vmscaler plan`
/// replays them: each row decided on, the fleet held at `current`), as of the last row. An
/// exit code instead when the inputs are refused (the reason already printed).
fn offline(
    policy: &std::path::Path,
    trace: &std::path::Path,
    current: u32,
) -> anyhow::Result<Result<(String, Timestamp, ForecastBoard), ExitCode>> {
    let Some((policy, rows)) = super::plan::load_inputs(policy, trace)? else {
        return Ok(Err(ExitCode::from(super::EX_CONFIG)));
    };
    let Some(spec) = policy.predictive.clone() else {
        eprintln!("vmscaler: policy {:?} has no `predictive:` block: nothing to forecast", policy.name);
        return Ok(Err(ExitCode::from(super::EX_CONFIG)));
    };
    let Some(at) = rows.last().map(|r| r.at) else { anyhow::bail!("{}: no rows", trace.display()) };
    let fleet = match super::plan::fleet_for(&policy, current, None) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vmscaler: {e}");
            return Ok(Err(ExitCode::from(super::EX_USAGE)));
        }
    };
    let (cycle, decision) = super::plan::replay(&policy, &rows, &fleet, at);
    let Some(model) = cycle.forecaster() else { anyhow::bail!("no forecast model after the replay") };
    let f = crate::daemon::forecast::board(&spec, policy.max, model, &decision, None, at);
    Ok(Ok((policy.name.clone(), at, f)))
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// The one line `vmscaler status` shows for a pool's forecast.
pub fn status_line(f: &ForecastBoard) -> String {
    let mut o = format!("forecast ({}): ", f.mode);
    match (&f.floor, &f.reason) {
        (Some(c), _) => {
            let what = match (f.mode.as_str(), f.applied) {
                ("active", true) => "raised the decision",
                ("active", false) => "already met",
                _ => "not applied (forecast_only)",
            };
            let _ = write!(o, "floor {c}, {what}");
        }
        (None, Some(why)) => {
            let _ = write!(o, "no floor: {why}");
        }
        (None, None) => o.push_str("no floor"),
    }
    if let Some(e) = f.error {
        let _ = write!(o, "; error {} (max {})", pct(e), pct(f.max_error));
    }
    if let Some(peak) = f.next.iter().max_by_key(|h| h.floor) {
        let _ = write!(o, "; next 48 h peak floor {} at {}", peak.floor, peak.at.strftime("%H:%MZ"));
    }
    if let Some(h) = f.history.as_ref().filter(|h| h.state != "loaded") {
        let _ = write!(o, "; history {}", h.state);
    }
    o
}

/// The text a person reads.
pub fn render(policy: &str, f: &ForecastBoard, tz: &TimeZone) -> String {
    let mut o = String::new();
    let _ = writeln!(o, "{policy}: {}", status_line(f));
    let _ = writeln!(
        o,
        "  learned {} of the {} hours needed; quantile p{:.0}{}{}",
        f.hours_learned,
        f.hours_needed,
        f.quantile * 100.0,
        f.season.as_ref().map_or_else(String::new, |s| format!("; {s} profile")),
        f.fitted_at.map_or_else(String::new, |t| format!(", refitted {}", t.strftime("%Y-%m-%d %H:%MZ"))),
    );
    match f.error {
        Some(e) => {
            let gate = if e <= f.max_error { "within" } else { "above" };
            let _ = writeln!(
                o,
                "  error (WAPE, last 3 days, out of sample) {}: {gate} max_error {}",
                pct(e),
                pct(f.max_error)
            );
        }
        None => {
            let _ = writeln!(o, "  error: not measured yet (max_error {})", pct(f.max_error));
        }
    }
    if let Some(h) = &f.history {
        let span = match (h.from, h.to) {
            (Some(a), Some(b)) => format!(" ({} to {})", a.strftime("%Y-%m-%d %H:%MZ"), b.strftime("%Y-%m-%d %H:%MZ")),
            _ => String::new(),
        };
        let _ = writeln!(o, "  history from CloudWatch: {}{span}, {} slot(s) of 5 minutes", h.state, h.slots);
        for p in &h.problems {
            let _ = writeln!(o, "    {p}");
        }
    }
    if f.next.is_empty() {
        let _ = writeln!(o, "  no forecast yet");
        return o;
    }
    let _ = writeln!(o, "  next {} hours:", f.next.len());
    let _ = writeln!(o, "    {:<17} {:<22} {:>8} {:>8} {:>6}", "UTC", "local", "median", "upper", "floor");
    for h in &f.next {
        let local = h.at.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M %Z").to_string();
        let _ = writeln!(
            o,
            "    {:<17} {:<22} {:>8.2} {:>8.2} {:>6}",
            h.at.strftime("%Y-%m-%d %H:%M").to_string(),
            local,
            h.forecast,
            h.upper,
            h.floor
        );
    }
    o
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The chart: observed demand (mean and max per hour) over the last 48 hours, the forecast
/// (median and upper quantile) and the floor over the next 48, a line at `now`.
// Chart coordinates: hours since the epoch and capacities, far inside f64's exact range.
#[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
pub fn svg(policy: &str, f: &ForecastBoard, now: Timestamp) -> String {
    const W: f64 = 960.0;
    const H: f64 = 360.0;
    const L: f64 = 56.0;
    const R: f64 = 16.0;
    const T: f64 = 40.0;
    const B: f64 = 44.0;
    let hour = |t: Timestamp| t.as_second() as f64 / 3600.0;
    let xs: Vec<f64> = f.recent.iter().map(|h| hour(h.at)).chain(f.next.iter().map(|h| hour(h.at) + 1.0)).collect();
    let x0 = xs.iter().copied().fold(hour(now) - 48.0, f64::min);
    let x1 = xs.iter().copied().fold(hour(now) + 48.0, f64::max);
    let top = f
        .recent
        .iter()
        .map(|h| h.max)
        .chain(f.next.iter().map(|h| h.upper.max(f64::from(h.floor))))
        .fold(1.0, f64::max)
        * 1.1;
    let px = |x: f64| L + (x - x0) / (x1 - x0).max(1.0) * (W - L - R);
    let py = |y: f64| H - B - y / top * (H - T - B);
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let title = format!(
        "{policy}: forecast ({}, {}){}",
        f.mode,
        f.state,
        f.error.map_or_else(String::new, |e| format!(", error {}", pct(e)))
    );
    let _ = writeln!(o, r#"<text x="{L}" y="22" font-size="15">{}</text>"#, esc(&title));
    // Axes, horizontal grid and labels.
    for k in 0..=4 {
        let y = top / 1.1 * f64::from(k) / 4.0;
        let _ = writeln!(
            o,
            r##"<line x1="{L}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{y:.1}</text>"##,
            W - R,
            py(y),
            py(y),
            L - 6.0,
            py(y) + 4.0
        );
    }
    let mut tick = (x0 / 6.0).ceil() * 6.0;
    while tick <= x1 {
        let t = Timestamp::from_second((tick * 3600.0) as i64).unwrap_or(now);
        let _ = writeln!(
            o,
            r##"<line x1="{x:.1}" x2="{x:.1}" y1="{:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            T,
            H - B,
            H - B + 16.0,
            t.strftime("%d %H:%MZ"),
            x = px(tick)
        );
        tick += 6.0;
    }
    let _ = writeln!(
        o,
        r##"<line x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{:.1}" stroke="#555" stroke-dasharray="3,3"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">now</text>"##,
        H - B,
        T - 4.0,
        x = px(hour(now))
    );
    let poly = |pts: Vec<(f64, f64)>, style: &str| -> String {
        if pts.is_empty() {
            return String::new();
        }
        let p: Vec<String> = pts.iter().map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y))).collect();
        format!("<polyline fill=\"none\" {style} points=\"{}\"/>\n", p.join(" "))
    };
    // Hourly values drawn as steps over their hour.
    let steps = |pts: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        pts.into_iter().flat_map(|(x, y)| [(x, y), (x + 1.0, y)]).collect()
    };
    o.push_str(&poly(
        steps(f.recent.iter().map(|h| (hour(h.at), h.max)).collect()),
        r##"stroke="#9ecae1" stroke-width="1""##,
    ));
    o.push_str(&poly(
        steps(f.recent.iter().map(|h| (hour(h.at), h.mean)).collect()),
        r##"stroke="#1f77b4" stroke-width="2""##,
    ));
    o.push_str(&poly(
        steps(f.next.iter().map(|h| (hour(h.at), h.upper)).collect()),
        r##"stroke="#fdae6b" stroke-width="1.5""##,
    ));
    o.push_str(&poly(
        steps(f.next.iter().map(|h| (hour(h.at), h.forecast)).collect()),
        r##"stroke="#ff7f0e" stroke-width="2" stroke-dasharray="6,3""##,
    ));
    o.push_str(&poly(
        steps(f.next.iter().map(|h| (hour(h.at), f64::from(h.floor))).collect()),
        r##"stroke="#d62728" stroke-width="2""##,
    ));
    let legend = [
        ("#1f77b4", "demand, hourly mean"),
        ("#9ecae1", "demand, hourly max"),
        ("#ff7f0e", "forecast median"),
        ("#fdae6b", "forecast upper quantile"),
        ("#d62728", "forecast floor"),
    ];
    for (i, (color, label)) in legend.iter().enumerate() {
        let x = L + 170.0 * i as f64;
        let _ = writeln!(
            o,
            r#"<line x1="{x:.1}" x2="{:.1}" y1="{:.1}" y2="{:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{label}</text>"#,
            x + 18.0,
            H - 10.0,
            H - 10.0,
            x + 22.0,
            H - 6.0
        );
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::forecast::{ForecastHour, ObservedHour};

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn board() -> ForecastBoard {
        ForecastBoard {
            mode: "active".into(),
            state: "ready".into(),
            floor: Some(12),
            applied: true,
            hours_learned: 96,
            hours_needed: 72,
            error: Some(0.142),
            max_error: 0.8,
            season: Some("daily".into()),
            quantile: 0.75,
            next: vec![
                ForecastHour { at: t("2026-11-20T09:00:00Z"), forecast: 4.0, upper: 4.5, floor: 5 },
                ForecastHour { at: t("2026-11-20T10:00:00Z"), forecast: 11.5, upper: 12.0, floor: 12 },
            ],
            recent: vec![ObservedHour { at: t("2026-11-20T08:00:00Z"), mean: 4.1, max: 5.0 }],
            ..ForecastBoard::default()
        }
    }

    #[test]
    fn status_line_says_floor_error_and_next_peak() {
        assert_eq!(
            status_line(&board()),
            "forecast (active): floor 12, raised the decision; error 14.2% (max 80.0%); next 48 h peak floor 12 at 10:00Z"
        );
        let learning = ForecastBoard {
            mode: "forecast_only".into(),
            reason: Some("learning: 20 of 72 hours".into()),
            ..ForecastBoard::default()
        };
        assert_eq!(status_line(&learning), "forecast (forecast_only): no floor: learning: 20 of 72 hours");
    }

    #[test]
    fn render_lists_the_hours_in_utc_and_local_time() {
        let tz = TimeZone::get("Asia/Shanghai").unwrap();
        let text = render("web", &board(), &tz);
        assert!(text.contains("learned 96 of the 72 hours needed; quantile p75; daily profile"), "{text}");
        assert!(text.contains("within max_error 80.0%"), "{text}");
        assert!(text.contains("    2026-11-20 10:00  2026-11-20 18:00 CST      11.50    12.00     12\n"), "{text}");
    }

    #[test]
    fn svg_draws_every_series_and_escapes_the_name() {
        let s = svg("a<b", &board(), t("2026-11-20T09:30:00Z"));
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!(s.matches("<polyline").count(), 5, "{s}");
        assert!(s.contains("a&lt;b: forecast (active, ready), error 14.2%"));
    }
}
