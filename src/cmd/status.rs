//! `vmscaler status [--url URL]`: what a running daemon is doing, for a person.
//!
//! Reads `/healthz` and `/v1/decisions` from the daemon's HTTP address and prints each pool's
//! capacity, score, active pre-warm rule and recent decisions with their reasons. A plain
//! HTTP/1.1 client over a TCP socket is enough for the loopback address the daemon listens on.
//!
//! Not here: anything that changes the daemon (the endpoints are read-only).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::http::{DecisionsView, Health};

/// Exit code when the daemon cannot be reached (sysexits EX_UNAVAILABLE).
pub const EX_UNAVAILABLE: u8 = 69;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The daemon's HTTP address.
    #[arg(long, value_name = "URL", env = "VMSCALER_URL", default_value = "http://127.0.0.1:9464")]
    pub url: String,
    /// Only this policy.
    #[arg(long, value_name = "NAME")]
    pub policy: Option<String>,
    /// Recent decisions shown per pool.
    #[arg(long, default_value_t = 5)]
    pub last: usize,
    /// `json`: print the daemon's JSON instead.
    #[arg(long, value_enum, default_value_t)]
    pub output: super::validate::Output,
    /// The old spelling of `--output json`.
    #[arg(long, hide = true)]
    pub json: bool,
}

/// `host:port` and path prefix of an `http://` URL.
fn split_url(url: &str) -> anyhow::Result<(String, String)> {
    let rest = url.strip_prefix("http://").context("only http:// URLs are supported")?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() {
        bail!("{url:?} has no host");
    }
    let host = if host.contains(':') && !host.ends_with(']') { host.to_owned() } else { format!("{host}:80") };
    Ok((host, path.to_owned()))
}

/// `s` percent-encoded for a URL path segment or query value (RFC 3986 unreserved characters
/// kept), for the commands that ask the daemon about a policy by name.
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// GETs `path` and returns the body of a 200 answer.
pub fn http_get(base: &str, path: &str) -> anyhow::Result<String> {
    http_request(base, "GET", path, None, None)
}

/// Sends `method path` with an optional JSON body and bearer token; the body of a 200 answer.
pub fn http_request(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
    token: Option<&str>,
) -> anyhow::Result<String> {
    let (host, prefix) = split_url(base)?;
    let addr =
        host.to_socket_addrs().with_context(|| format!("cannot resolve {host}"))?.next().context("no address")?;
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(3))
        .with_context(|| format!("cannot connect to the daemon at {base}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let auth = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let payload = body.unwrap_or("");
    let length = if body.is_some() {
        format!("Content-Type: application/json\r\nContent-Length: {}\r\n", payload.len())
    } else {
        String::new()
    };
    write!(
        s,
        "{method} {prefix}{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nAccept: */*\r\n{auth}{length}\r\n{payload}"
    )?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP answer")?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        bail!("{path}: {status}: {}", body.trim());
    }
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding:") && l.contains("chunked")) {
        return dechunk(body);
    }
    Ok(body.to_owned())
}

fn dechunk(mut body: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").context("malformed chunk")?;
        let n = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16).context("bad chunk size")?;
        if n == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..n).context("short chunk")?);
        body = rest.get(n + 2..).context("short chunk")?;
    }
}

fn fmt_opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "-".to_owned(), |v| v.to_string())
}

/// The human report.
pub fn render(health: &Health, view: &DecisionsView) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(
        o,
        "vmscaler {} — {}{} — {} pool(s), daemon clock {}",
        view.version,
        health.status,
        if view.dry_run { ", dry-run" } else { "" },
        health.pools,
        view.now.strftime("%Y-%m-%d %H:%M:%SZ")
    );
    for (file, err) in &view.invalid_files {
        let _ = writeln!(o, "  invalid policy file {file}: {err}");
    }
    for p in &view.pools {
        let _ = writeln!(o);
        if let Some(l) = p.lease.as_ref().filter(|l| !l.mine) {
            let holder = l.holder.as_deref().unwrap_or("nobody (being taken over)");
            let _ = writeln!(o, "{}: leased by {holder}: evaluated there", p.policy);
            continue;
        }
        let score = p.score.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"));
        let _ = writeln!(
            o,
            "{}{}: current {} desired {} score {}{}",
            p.policy,
            if p.dry_run { " (dry-run)" } else { "" },
            fmt_opt(p.current),
            fmt_opt(p.desired),
            score,
            if p.shortfall > 0 { format!(" shortfall {}", p.shortfall) } else { String::new() }
        );
        if let Some(pw) = &p.prewarm {
            let _ = writeln!(
                o,
                "  pre-warm {:?} holds {}{}",
                pw.rule,
                pw.capacity,
                if pw.ramping { " (ramping)" } else { "" }
            );
        }
        for d in &p.draining {
            let _ = writeln!(
                o,
                "  draining {} from its target groups since {}, stopped by {} at the latest",
                d.id,
                d.since.strftime("%H:%M:%S"),
                d.deadline.strftime("%H:%M:%S")
            );
        }
        if let Some(pause) = &p.paused {
            let _ = writeln!(o, "  PAUSED: evaluated, not acted on ({})", pause.describe());
        }
        if let Some(f) = &p.forecast {
            let _ = writeln!(o, "  {}", super::forecast::status_line(f));
        }
        if let Some(n) = &p.next_floor {
            let _ =
                writeln!(o, "  next pre-warm {:?} starts rising at {}", n.rule, n.at.strftime("%Y-%m-%d %H:%M:%SZ"));
        }
        for a in &p.alert_floors {
            let _ = writeln!(
                o,
                "  alert {:?} holds {} ({}), firing since {}, released by {} at the latest",
                a.alert,
                a.capacity,
                a.asked,
                a.since.strftime("%H:%M:%S"),
                a.expires_at.strftime("%H:%M:%S")
            );
        }
        if let Some(e) = &p.last_error {
            let _ = writeln!(o, "  DEGRADED ({} in a row): {e}", p.consecutive_failures);
        }
        let _ = writeln!(
            o,
            "  last evaluation {}, next {}",
            fmt_opt(p.last_evaluation.map(|t| t.strftime("%H:%M:%S"))),
            fmt_opt(p.next_evaluation.map(|t| t.strftime("%H:%M:%S")))
        );
        for d in p.decisions.iter().rev() {
            let _ = writeln!(
                o,
                "  {} {} -> {}{}",
                d.at.strftime("%H:%M:%S"),
                d.current,
                d.desired,
                if d.dry_run { " (dry-run)" } else { "" }
            );
            for out in &d.outcomes {
                let _ = writeln!(o, "      {out}");
            }
            for r in &d.reasons {
                let _ = writeln!(o, "      · {r}");
            }
        }
    }
    o
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut query = format!("/v1/decisions?limit={}", args.last);
    if let Some(p) = &args.policy {
        query.push_str("&policy=");
        for b in p.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                query.push(char::from(b));
            } else {
                query.push_str(&format!("%{b:02X}"));
            }
        }
    }
    let fetched = http_get(&args.url, "/healthz").and_then(|h| Ok((h, http_get(&args.url, &query)?)));
    let (health, decisions) = match fetched {
        Ok(x) => x,
        Err(e) => {
            eprintln!("vmscaler: {e:#}");
            return Ok(ExitCode::from(EX_UNAVAILABLE));
        }
    };
    if args.json || args.output == super::validate::Output::Json {
        println!("{decisions}");
        return Ok(ExitCode::SUCCESS);
    }
    let health: Health = serde_json::from_str(&health).context("unexpected /healthz answer")?;
    let view: DecisionsView = serde_json::from_str(&decisions).context("unexpected /v1/decisions answer")?;
    print!("{}", render(&health, &view));
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_chunks() {
        assert_eq!(split_url("http://127.0.0.1:9464").expect("ok"), ("127.0.0.1:9464".into(), String::new()));
        assert_eq!(split_url("http://localhost/x/").expect("ok"), ("localhost:80".into(), "/x".into()));
        assert!(split_url("https://x").is_err());
        assert_eq!(dechunk("3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").expect("ok"), "abcde");
    }

    #[test]
    fn a_pool_leased_by_another_daemon_says_so() {
        use crate::daemon::board::PoolBoard;
        use crate::lease::LeaseStatus;
        let health = Health {
            status: "ok".into(),
            version: "0".into(),
            now: jiff::Timestamp::UNIX_EPOCH,
            started_at: None,
            last_tick: None,
            pools: 2,
            degraded_pools: vec![],
            reasons: Default::default(),
            invalid_files: Default::default(),
        };
        let lease = |holder: &str, mine| Some(LeaseStatus { holder: Some(holder.into()), token: Some(4), mine });
        let view = DecisionsView {
            version: "0".into(),
            now: jiff::Timestamp::UNIX_EPOCH,
            started_at: None,
            last_tick: None,
            dry_run: false,
            invalid_files: Default::default(),
            pools: vec![
                PoolBoard { policy: "api".into(), lease: lease("ops-2", false), ..PoolBoard::default() },
                PoolBoard {
                    policy: "web".into(),
                    current: Some(3),
                    lease: lease("ops-1", true),
                    ..PoolBoard::default()
                },
            ],
        };
        let text = render(&health, &view);
        assert!(text.contains("api: leased by ops-2: evaluated there\n"), "{text}");
        assert!(text.contains("web: current 3 desired -"), "{text}");
    }

    #[test]
    fn draining_members_are_listed_with_their_deadline() {
        use crate::daemon::board::{DrainBoard, PoolBoard};
        let t = |secs| jiff::Timestamp::from_second(secs).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let health = Health {
            status: "ok".into(),
            version: "0".into(),
            now: t(0),
            started_at: None,
            last_tick: None,
            pools: 1,
            degraded_pools: vec![],
            reasons: Default::default(),
            invalid_files: Default::default(),
        };
        let view = DecisionsView {
            version: "0".into(),
            now: t(0),
            started_at: None,
            last_tick: None,
            dry_run: false,
            invalid_files: Default::default(),
            pools: vec![PoolBoard {
                policy: "web".into(),
                draining: vec![DrainBoard { id: "i-0abc".into(), since: t(3600), deadline: t(3720) }],
                ..PoolBoard::default()
            }],
        };
        let text = render(&health, &view);
        assert!(
            text.contains(
                "  draining i-0abc from its target groups since 01:00:00, stopped by 01:02:00 at the latest\n"
            ),
            "{text}"
        );
    }
}
