//! The daemon's configuration file (`vmscaler run --config /etc/vmscaler/vmscaler.yaml`).
//!
//! Where policies and state live, where HTTP listens, how to reach AWS, how to log. Durations
//! are written the way policies write them (`5s`, `1m`). Unknown keys are rejected so a typo
//! never silently falls back to a default.
//!
//! Not here: policies themselves (see [`crate::policies`]) and command-line overrides, which
//! `vmscaler run` applies on top of the loaded file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use vmscaler_engine::duration::parse_duration;

/// Default HTTP listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9464";
/// Default [`Config::action_budget`]: enough for a batched call and its retries (4 attempts
/// with backoff), short enough that one pool whose calls hang delays the others by little.
pub const DEFAULT_ACTION_BUDGET: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path}:{message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {field}: {message}")]
    Invalid { path: PathBuf, field: &'static str, message: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    policy_dir: PathBuf,
    state_dir: PathBuf,
    #[serde(default)]
    listen: Option<String>,
    #[serde(default)]
    region: Option<String>,
    #[serde(default)]
    endpoint_url: Option<String>,
    #[serde(default)]
    profile: Option<String>,
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    dry_run: bool,
    #[serde(default)]
    metric_offset: Option<String>,
    #[serde(default)]
    reload_poll: Option<String>,
    #[serde(default)]
    decisions_kept: Option<usize>,
    #[serde(default)]
    time_scale: Option<f64>,
    #[serde(default)]
    time_origin: Option<String>,
    #[serde(default)]
    action_budget: Option<String>,
    #[serde(default)]
    lease: Option<RawLease>,
    #[serde(default)]
    prometheus: Option<RawPrometheus>,
    #[serde(default)]
    alerts: Option<RawAlerts>,
}

/// The `prometheus:` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrometheus {
    url: String,
    #[serde(default)]
    bearer_token_file: Option<PathBuf>,
    #[serde(default)]
    ca_file: Option<PathBuf>,
    #[serde(default)]
    timeout: Option<String>,
    #[serde(default)]
    max_concurrent_queries: Option<usize>,
}

/// The `alerts:` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlerts {
    bearer_token_file: PathBuf,
    #[serde(default)]
    max_duration: Option<String>,
    #[serde(default)]
    max_body_bytes: Option<usize>,
}

/// The `lease:` section as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLease {
    table: String,
    #[serde(default)]
    ttl: Option<String>,
    #[serde(default)]
    holder: Option<String>,
    #[serde(default)]
    create_table: bool,
}

/// Default lease time to live.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);

/// Multi-host operation: every policy is evaluated only by the daemon holding its lease in a
/// DynamoDB table (see [`crate::lease`]). Absent: this daemon evaluates every policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseConfig {
    /// The DynamoDB table (partition key `pk`, a string).
    pub table: String,
    /// The longest a pool goes without a daemon after its holder dies, on the daemon's clock
    /// (`time_scale` applies): leases are written valid for five sixths of it and renewed
    /// every third.
    pub ttl: Duration,
    /// Who this daemon is in the table; unique per running daemon (default: hostname:pid).
    pub holder: String,
    /// Create the table (and turn on its TTL attribute) at start-up when it does not exist.
    pub create_table: bool,
}

/// `hostname:pid`, the default lease holder: unique among running daemons.
pub fn default_holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// An AWS region name: lowercase words and digits joined by `-`, such as `eu-west-1`,
/// `us-gov-west-1` or `cn-north-1` (moto and LocalStack accept the same names).
pub fn valid_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    (4..=30).contains(&r.len())
        && parts.len() >= 3
        && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()))
        && parts.last().is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

/// An endpoint URL: `http://` or `https://`, a host, an optional port, nothing odd.
fn check_endpoint(u: &str) -> Result<(), &'static str> {
    let rest =
        u.strip_prefix("http://").or_else(|| u.strip_prefix("https://")).ok_or("is not an http:// or https:// URL")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => (h, Some(p)),
        _ => (authority, None),
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control() || "@?#".contains(c)) {
        return Err("has no valid host");
    }
    if port.is_some_and(|p| p.parse::<u16>().is_err()) {
        return Err("has an invalid port");
    }
    if rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("contains spaces");
    }
    Ok(())
}

/// DynamoDB's rule for table names.
pub fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// The validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Directory of policy files, one pool per file.
    pub policy_dir: PathBuf,
    /// Where per-pool state (history window, recent decisions) is persisted.
    pub state_dir: PathBuf,
    /// HTTP address for `/healthz`, `/metrics`, `/v1/decisions`; `None` disables HTTP.
    pub listen: Option<SocketAddr>,
    pub region: Option<String>,
    /// Custom endpoint (moto, LocalStack); otherwise the standard AWS settings decide.
    pub endpoint_url: Option<String>,
    pub profile: Option<String>,
    pub log_format: LogFormat,
    /// Never change any fleet, whatever the policies say.
    pub dry_run: bool,
    /// The newest, still-filling stretch of metrics that is ignored.
    pub metric_offset: Duration,
    /// How often the policy directory is checked for changes.
    pub reload_poll: Duration,
    /// Recent decisions kept per pool (state file and `/v1/decisions`).
    pub decisions_kept: usize,
    /// Speed of the daemon's clock relative to wall time. 1 in production; the demo replays a
    /// day of real load in minutes by running the clock faster.
    pub time_scale: f64,
    /// The instant at which the scaled clock agrees with wall time (default: start-up), so a
    /// load replayer can compute the same clock.
    pub time_origin: Option<jiff::Timestamp>,
    /// Longest one evaluation may spend carrying out its actions, retries and backoff
    /// included; past it the outcome is treated as unknown (see `daemon::reconcile`) and the
    /// loop moves on to the other pools.
    pub action_budget: Duration,
    /// Leases for running on more than one host; `None` (the default) needs no DynamoDB.
    pub lease: Option<LeaseConfig>,
    /// Where `source: prometheus` metrics are read; `None`: policies with such metrics see
    /// them as missing.
    pub prometheus: Option<crate::prometheus::PrometheusConfig>,
    /// Alertmanager's webhook (`POST /v1/alerts`); `None` (the default): no such endpoint.
    pub alerts: Option<crate::alerts::AlertsConfig>,
}

impl Config {
    /// A configuration with defaults for everything but the two directories.
    pub fn new(policy_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> Config {
        Config {
            policy_dir: policy_dir.into(),
            state_dir: state_dir.into(),
            listen: DEFAULT_LISTEN.parse().ok(),
            region: None,
            endpoint_url: None,
            profile: None,
            log_format: LogFormat::Text,
            dry_run: false,
            metric_offset: Duration::from_secs(60),
            reload_poll: Duration::from_secs(5),
            decisions_kept: 50,
            time_scale: 1.0,
            time_origin: None,
            action_budget: DEFAULT_ACTION_BUDGET,
            lease: None,
            prometheus: None,
            alerts: None,
        }
    }

    /// Reads and validates a configuration file. Relative directories are taken relative to
    /// the file's own directory, so a config next to its policies works from anywhere.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        Config::parse(path, &text)
    }

    /// Parses configuration text; `path` names it in messages and anchors relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = serde_saphyr::from_str(text).map_err(|e| {
            let message = match e.location() {
                Some(l) => format!("{}:{}: {}", l.line(), l.column(), vmscaler_engine::policy::yaml_message(&e)),
                None => format!(" {}", vmscaler_engine::policy::yaml_message(&e)),
            };
            ConfigError::Parse { path: path.into(), message }
        })?;
        let invalid = |field, message: String| ConfigError::Invalid { path: path.into(), field, message };
        let base = path.parent().unwrap_or(Path::new("."));
        let anchor = |p: PathBuf| if p.is_relative() { base.join(p) } else { p };
        let mut cfg = Config::new(anchor(raw.policy_dir), anchor(raw.state_dir));
        cfg.listen = match raw.listen.as_deref().map(str::trim) {
            None => cfg.listen,
            Some("" | "off" | "none") => None,
            Some(s) => Some(s.parse().map_err(|e| invalid("listen", format!("{s:?}: {e}")))?),
        };
        cfg.region = raw.region.filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_owned());
        if let Some(r) = cfg.region.as_deref().filter(|r| !valid_region(r)) {
            return Err(invalid("region", format!("{r:?} is not an AWS region name (such as eu-west-1)")));
        }
        cfg.endpoint_url = raw.endpoint_url.filter(|s| !s.trim().is_empty()).map(|s| s.trim().to_owned());
        if let Some(u) = cfg.endpoint_url.as_deref() {
            check_endpoint(u).map_err(|m| invalid("endpoint_url", format!("{u:?} {m}")))?;
        }
        cfg.profile = raw.profile.filter(|s| !s.trim().is_empty());
        cfg.log_format = raw.log_format;
        cfg.dry_run = raw.dry_run;
        if let Some(s) = raw.metric_offset {
            let d = parse_duration(&s).map_err(|e| invalid("metric_offset", e.to_string()))?;
            if d > Duration::from_secs(3600) {
                return Err(invalid("metric_offset", format!("{s:?} is out of range (0s to 1h)")));
            }
            cfg.metric_offset = d;
        }
        if let Some(s) = raw.reload_poll {
            let d = parse_duration(&s).map_err(|e| invalid("reload_poll", e.to_string()))?;
            if d < Duration::from_millis(100) || d > Duration::from_secs(3600) {
                return Err(invalid("reload_poll", format!("{s:?} is out of range (100ms to 1h)")));
            }
            cfg.reload_poll = d;
        }
        if let Some(n) = raw.decisions_kept {
            if n == 0 || n > 10_000 {
                return Err(invalid("decisions_kept", format!("{n} is out of range (1 to 10000)")));
            }
            cfg.decisions_kept = n;
        }
        if let Some(x) = raw.time_scale {
            if !x.is_finite() || !(0.001..=100_000.0).contains(&x) {
                return Err(invalid("time_scale", format!("{x} is out of range (0.001 to 100000)")));
            }
            cfg.time_scale = x;
        }
        if let Some(s) = raw.time_origin {
            cfg.time_origin = Some(
                s.trim()
                    .parse()
                    .map_err(|e| invalid("time_origin", format!("{s:?} is not an RFC 3339 instant: {e}")))?,
            );
        }
        if let Some(s) = raw.action_budget {
            let d = parse_duration(&s).map_err(|e| invalid("action_budget", e.to_string()))?;
            if !(Duration::from_secs(1)..=Duration::from_secs(600)).contains(&d) {
                return Err(invalid("action_budget", format!("{s:?} is out of range (1s to 10m)")));
            }
            cfg.action_budget = d;
        }
        if let Some(l) = raw.lease {
            cfg.lease = Some(parse_lease(l).map_err(|(field, message)| invalid(field, message))?);
        }
        if let Some(p) = raw.prometheus {
            cfg.prometheus = Some(parse_prometheus(p, &anchor).map_err(|(field, message)| invalid(field, message))?);
        }
        if let Some(a) = raw.alerts {
            if cfg.listen.is_none() {
                return Err(invalid("alerts", "needs HTTP: set `listen` (the webhook is served there)".to_owned()));
            }
            cfg.alerts = Some(parse_alerts(a, &anchor).map_err(|(field, message)| invalid(field, message))?);
        }
        Ok(cfg)
    }
}

fn parse_prometheus(
    raw: RawPrometheus,
    anchor: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<crate::prometheus::PrometheusConfig, (&'static str, String)> {
    let url = raw.url.trim().to_owned();
    let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
    if !scheme_ok || url.parse::<axum::http::Uri>().map_or(true, |u| u.host().is_none()) {
        return Err(("prometheus.url", format!("{url:?} is not an http:// or https:// URL")));
    }
    let mut cfg = crate::prometheus::PrometheusConfig::new(url);
    cfg.bearer_token_file = raw.bearer_token_file.map(anchor);
    cfg.ca_file = raw.ca_file.map(anchor);
    if let Some(s) = raw.timeout {
        let d = parse_duration(&s).map_err(|e| ("prometheus.timeout", e.to_string()))?;
        if !(Duration::from_millis(100)..=Duration::from_secs(120)).contains(&d) {
            return Err(("prometheus.timeout", format!("{s:?} is out of range (100ms to 2m)")));
        }
        cfg.timeout = d;
    }
    if let Some(n) = raw.max_concurrent_queries {
        if !(1..=256).contains(&n) {
            return Err(("prometheus.max_concurrent_queries", format!("{n} is out of range (1 to 256)")));
        }
        cfg.max_concurrent_queries = n;
    }
    Ok(cfg)
}

fn parse_alerts(
    raw: RawAlerts,
    anchor: &dyn Fn(PathBuf) -> PathBuf,
) -> Result<crate::alerts::AlertsConfig, (&'static str, String)> {
    let mut cfg = crate::alerts::AlertsConfig::new(anchor(raw.bearer_token_file));
    if let Some(s) = raw.max_duration {
        let d = parse_duration(&s).map_err(|e| ("alerts.max_duration", e.to_string()))?;
        if !(Duration::from_secs(60)..=Duration::from_secs(7 * 86_400)).contains(&d) {
            return Err(("alerts.max_duration", format!("{s:?} is out of range (1m to 7d)")));
        }
        cfg.max_duration = d;
    }
    if let Some(n) = raw.max_body_bytes {
        if !(1024..=16 << 20).contains(&n) {
            return Err(("alerts.max_body_bytes", format!("{n} is out of range (1024 to 16777216)")));
        }
        cfg.max_body_bytes = n;
    }
    Ok(cfg)
}

fn parse_lease(raw: RawLease) -> Result<LeaseConfig, (&'static str, String)> {
    let table = raw.table.trim().to_owned();
    if !valid_table_name(&table) {
        return Err((
            "lease.table",
            format!("{table:?} is not a DynamoDB table name (3 to 255 of a-z, A-Z, 0-9, '_', '-', '.')"),
        ));
    }
    let ttl = match raw.ttl {
        None => DEFAULT_LEASE_TTL,
        Some(s) => {
            let d = parse_duration(&s).map_err(|e| ("lease.ttl", e.to_string()))?;
            if d < Duration::from_secs(3) || d > Duration::from_secs(3600) {
                return Err(("lease.ttl", format!("{s:?} is out of range (3s to 1h)")));
            }
            d
        }
    };
    let holder = match raw.holder.map(|h| h.trim().to_owned()) {
        None => default_holder(),
        Some(h) if h.is_empty() || h.len() > 200 || h.chars().any(char::is_control) => {
            return Err(("lease.holder", format!("{h:?} must be 1 to 200 printable characters")));
        }
        Some(h) => h,
    };
    Ok(LeaseConfig { table, ttl, holder, create_table: raw.create_table })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_relative_paths() {
        let cfg =
            Config::parse(Path::new("/etc/vmscaler/vmscaler.yaml"), "policy_dir: policies\nstate_dir: /var/lib/x\n")
                .expect("valid");
        assert_eq!(cfg.policy_dir, PathBuf::from("/etc/vmscaler/policies"));
        assert_eq!(cfg.state_dir, PathBuf::from("/var/lib/x"));
        assert_eq!(cfg.listen, Some("127.0.0.1:9464".parse().expect("addr")));
        assert_eq!(cfg.metric_offset, Duration::from_secs(60));
        assert!(!cfg.dry_run);
    }

    #[test]
    fn full_file() {
        let text = "policy_dir: /p\nstate_dir: /s\nlisten: 127.0.0.1:0\nregion: eu-west-1\n\
                    endpoint_url: http://127.0.0.1:5000\nlog_format: json\ndry_run: true\nmetric_offset: 2m\n\
                    reload_poll: 1s\ndecisions_kept: 7\ntime_scale: 60\naction_budget: 45s\n";
        let cfg = Config::parse(Path::new("c.yaml"), text).expect("valid");
        assert_eq!(cfg.log_format, LogFormat::Json);
        assert_eq!(cfg.metric_offset, Duration::from_secs(120));
        assert_eq!(cfg.reload_poll, Duration::from_secs(1));
        assert_eq!(cfg.decisions_kept, 7);
        assert_eq!(cfg.time_scale, 60.0);
        assert_eq!(cfg.action_budget, Duration::from_secs(45));
        assert_eq!(cfg.endpoint_url.as_deref(), Some("http://127.0.0.1:5000"));
        assert!(cfg.dry_run);
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        let e = Config::parse(Path::new("c.yaml"), "policy_dir: /p\nstate_dir: /s\nlisen: x\n").expect_err("typo");
        assert!(e.to_string().contains("lisen"), "{e}");
        let e =
            Config::parse(Path::new("c.yaml"), "policy_dir: /p\nstate_dir: /s\nmetric_offset: 5x\n").expect_err("bad");
        assert!(e.to_string().contains("metric_offset"), "{e}");
        let e =
            Config::parse(Path::new("c.yaml"), "policy_dir: /p\nstate_dir: /s\nlisten: nowhere\n").expect_err("bad");
        assert!(e.to_string().contains("listen"), "{e}");
        let e =
            Config::parse(Path::new("c.yaml"), "policy_dir: /p\nstate_dir: /s\naction_budget: 0s\n").expect_err("bad");
        assert_eq!(e.to_string(), "c.yaml: action_budget: \"0s\" is out of range (1s to 10m)");
        let e = Config::parse(Path::new("c.yaml"), "state_dir: /s\n").expect_err("missing");
        assert!(e.to_string().contains("policy_dir"), "{e}");
    }

    /// Finding 11: nonsense region, endpoint and durations are refused at start-up, and a YAML
    /// error names the file, its line and column, and no library hint.
    #[test]
    fn region_endpoint_and_ranges_are_checked() {
        let base = "policy_dir: /p\nstate_dir: /s\n";
        for (extra, want) in [
            ("endpoint_url: not a url\n", "c.yaml: endpoint_url: \"not a url\" is not an http:// or https:// URL"),
            ("endpoint_url: \"http://\"\n", "endpoint_url: \"http://\" has no valid host"),
            ("endpoint_url: \"http://h:99999\"\n", "has an invalid port"),
            (
                "region: 'us east 1!!'\n",
                "c.yaml: region: \"us east 1!!\" is not an AWS region name (such as eu-west-1)",
            ),
            ("region: eu\n", "region"),
            ("metric_offset: 100000d\n", "c.yaml: metric_offset: \"100000d\" is out of range (0s to 1h)"),
            ("reload_poll: 30d\n", "reload_poll: \"30d\" is out of range"),
        ] {
            let e = Config::parse(Path::new("c.yaml"), &format!("{base}{extra}")).expect_err(extra);
            assert!(e.to_string().contains(want), "{extra}: {e}");
        }
        for ok in [
            "region: us-gov-west-1\n",
            "region: eu-west-1\nendpoint_url: http://127.0.0.1:5000\n",
            "endpoint_url: https://ec2.eu-west-1.amazonaws.com/\n",
        ] {
            Config::parse(Path::new("c.yaml"), &format!("{base}{ok}")).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        let e = Config::parse(Path::new("/etc/c.yaml"), &format!("{base}---\nx: 1\n")).expect_err("two documents");
        assert_eq!(
            e.to_string(),
            "/etc/c.yaml:4:1: more than one YAML document (a `---` separator): one document per file"
        );
        let e = Config::parse(Path::new("/etc/c.yaml"), "policy_dir: [\n").expect_err("syntax");
        let text = e.to_string();
        assert!(text.starts_with("/etc/c.yaml:1:") && !text.contains("<input>") && !text.contains('\n'), "{text}");
    }

    #[test]
    fn lease_section() {
        let base = "policy_dir: /p\nstate_dir: /s\n";
        let cfg = Config::parse(Path::new("c.yaml"), base).expect("valid");
        assert_eq!(cfg.lease, None, "off by default");
        let cfg =
            Config::parse(Path::new("c.yaml"), &format!("{base}lease: {{ table: vmscaler-leases }}\n")).expect("valid");
        let lease = cfg.lease.expect("lease");
        assert_eq!(
            (lease.table.as_str(), lease.ttl, lease.create_table),
            ("vmscaler-leases", DEFAULT_LEASE_TTL, false)
        );
        assert_eq!(lease.holder, default_holder());
        assert!(lease.holder.ends_with(&format!(":{}", std::process::id())), "{}", lease.holder);
        let text = format!("{base}lease:\n  table: t.x_y\n  ttl: 10s\n  holder: ops-1\n  create_table: true\n");
        let lease = Config::parse(Path::new("c.yaml"), &text).expect("valid").lease.expect("lease");
        assert_eq!(
            lease,
            LeaseConfig {
                table: "t.x_y".into(),
                ttl: Duration::from_secs(10),
                holder: "ops-1".into(),
                create_table: true
            }
        );
        for (section, field) in [
            ("{ table: x }", "lease.table: \"x\" is not a DynamoDB table name"),
            ("{ table: \"a b c\" }", "lease.table"),
            ("{ table: tbl, ttl: 1s }", "lease.ttl: \"1s\" is out of range"),
            ("{ table: tbl, ttl: soon }", "lease.ttl"),
            ("{ table: tbl, holder: \"\" }", "lease.holder"),
            ("{ table: tbl, tll: 5s }", "tll"),
            ("{ ttl: 5s }", "table"),
        ] {
            let e = Config::parse(Path::new("c.yaml"), &format!("{base}lease: {section}\n")).expect_err(section);
            assert!(e.to_string().contains(field), "{section}: {e}");
        }
    }
}
