//! Turning a policy file's text into a [`Policy`], reporting every problem at once.
//!
//! Structural problems (YAML syntax, an unknown field, a map where a number belongs) stop the
//! parse, so only the first is reported, with serde-saphyr's location. Everything else (ranges,
//! durations, names, time zones, cron patterns, cross-field rules) is checked here after the
//! parse, and every problem is reported, each as `file:line:col: field.path: message`, naming
//! the offending value and the allowed range. Problems are errors (the policy is rejected) or
//! warnings (it runs, but probably not as intended).
//!
//! Not here: reading files or directories (the caller passes text and a name for messages).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use serde::Serialize;
use serde_saphyr::{Location, Spanned};

use super::raw::{RawMetric, RawMissing, RawPolicy, RawPrewarm, RawTag, S, Text};
use super::*;
use crate::duration::{Human, parse_duration};

mod composite;
mod drain;
mod metrics;
mod predictive;
mod prewarm;
mod scaling;

use composite::*;
use drain::*;
use metrics::*;
use predictive::*;
use prewarm::*;
use scaling::*;

/// Error or warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem in a policy file, printed as `file:line:col: field: message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    pub file: String,
    pub line: u64,
    pub column: u64,
    /// Dotted path of the field (`metrics[0].weight`); empty for file-level problems.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if self.severity == Severity::Warning {
            f.write_str("warning: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// The outcome of checking one file: the policy when there were no errors, and every problem.
#[derive(Debug, Clone)]
pub struct PolicyReport {
    pub policy: Option<Policy>,
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyReport {
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }

    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Warning)
    }
}

/// Limits that keep a policy sane; each message that enforces one states it.
const MAX_CAPACITY: u32 = 10_000;
const MIN_INTERVAL: Duration = Duration::from_secs(10);
const MAX_INTERVAL: Duration = Duration::from_secs(3600);
const MAX_WINDOW: Duration = Duration::from_secs(7 * 86_400);

struct Ctx<'a> {
    file: &'a str,
    diags: Vec<Diagnostic>,
    /// The instant time-dependent warnings are judged at (a window already over, a cron that
    /// does not fire within a year); `None` skips them.
    now: Option<jiff::Timestamp>,
}

impl Ctx<'_> {
    fn push(&mut self, severity: Severity, loc: Location, field: &str, message: String) {
        self.diags.push(Diagnostic {
            severity,
            file: self.file.to_owned(),
            line: loc.line().max(1),
            column: loc.column().max(1),
            field: field.to_owned(),
            message,
        });
    }
    /// Errors reported so far: a converter compares counts to tell whether its part failed.
    fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.severity == Severity::Error).count()
    }
    fn err(&mut self, loc: Location, field: &str, message: impl Into<String>) {
        self.push(Severity::Error, loc, field, message.into());
    }
    fn warn(&mut self, loc: Location, field: &str, message: impl Into<String>) {
        self.push(Severity::Warning, loc, field, message.into());
    }

    fn text<'t>(&mut self, v: &'t Option<S<Text>>, parent: Location, field: &str) -> Option<(&'t str, Location)> {
        match v {
            Some(s) if s.value.0.trim().is_empty() => {
                self.err(s.referenced, field, "is empty");
                None
            }
            Some(s) => Some((s.value.0.as_str(), s.referenced)),
            None => {
                self.err(parent, field, "is required");
                None
            }
        }
    }

    fn duration(&mut self, v: &Option<S<Text>>, field: &str, default: Duration) -> (Duration, Location) {
        let Some(s) = v else { return (default, Location::UNKNOWN) };
        match parse_duration(&s.value.0) {
            Ok(d) => (d, s.referenced),
            Err(e) => {
                self.err(s.referenced, field, e.to_string());
                (default, s.referenced)
            }
        }
    }

    /// A whole number in `lo..=hi`.
    fn count(&mut self, v: &S<f64>, field: &str, lo: u32, hi: u32) -> Option<u32> {
        let x = v.value;
        if !x.is_finite() || x.fract() != 0.0 {
            self.err(v.referenced, field, format!("{x} is not a whole number"));
            return None;
        }
        if x < f64::from(lo) || x > f64::from(hi) {
            self.err(v.referenced, field, format!("{x} is out of range (allowed {lo} to {hi})"));
            return None;
        }
        // In range of u32 by the check above.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        Some(x as u32)
    }

    /// A finite number strictly above zero.
    fn positive(&mut self, v: &S<f64>, field: &str) -> Option<f64> {
        let x = v.value;
        if !x.is_finite() || x <= 0.0 {
            self.err(v.referenced, field, format!("{x} must be a number above 0"));
            return None;
        }
        Some(x)
    }

    fn choice<T: Copy>(&mut self, v: &Option<S<Text>>, field: &str, options: &[(&str, T)], default: T) -> T {
        let Some(s) = v else { return default };
        if let Some((_, t)) = options.iter().find(|(n, _)| *n == s.value.0) {
            return *t;
        }
        let names: Vec<String> = options.iter().map(|(n, _)| format!("{n:?}")).collect();
        self.err(s.referenced, field, format!("{:?} is not one of {}", s.value.0, names.join(", ")));
        default
    }

    fn step(&mut self, v: &Option<S<Text>>, field: &str, default: Step) -> Step {
        let Some(s) = v else { return default };
        let t = s.value.0.trim();
        let bad = |c: &mut Self, why: &str| {
            c.err(s.referenced, field, format!("{t:?} {why} (write a count like 4 or a percentage like 25%)"));
            default
        };
        if let Some(p) = t.strip_suffix('%') {
            match p.trim().parse::<f64>() {
                Ok(x) if x.is_finite() && x > 0.0 && x <= 1000.0 => Step::Percent(x),
                Ok(_) => bad(self, "is out of range (a percentage above 0 and at most 1000%)"),
                Err(_) => bad(self, "is not a percentage"),
            }
        } else {
            match t.parse::<u32>() {
                Ok(n) if (1..=10_000).contains(&n) => Step::Instances(n),
                Ok(_) => bad(self, "is out of range (1 to 10000 instances)"),
                Err(_) => bad(self, "is not a step"),
            }
        }
    }

    fn tag(&mut self, t: &RawTag, field: &str) -> Option<Tag> {
        let key = t.key.value.0.trim();
        let value = t.value.value.0.trim();
        let mut ok = true;
        if key.is_empty() || key.len() > 128 {
            self.err(t.key.referenced, &format!("{field}.key"), format!("{key:?} must be 1 to 128 characters"));
            ok = false;
        } else if key.starts_with("aws:") {
            self.err(t.key.referenced, &format!("{field}.key"), format!("{key:?} uses the reserved prefix \"aws:\""));
            ok = false;
        }
        if value.len() > 256 {
            self.err(t.value.referenced, &format!("{field}.value"), "must be at most 256 characters");
            ok = false;
        }
        ok.then(|| Tag { key: key.to_owned(), value: value.to_owned() })
    }
}

/// Whether `arn` has the shape of an ELBv2 target group ARN:
/// `arn:PARTITION:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID`.
pub fn valid_target_group_arn(arn: &str) -> bool {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else { return false };
    let plain = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    let Some(rest) = resource.strip_prefix("targetgroup/") else { return false };
    let Some((name, id)) = rest.split_once('/') else { return false };
    *prefix == "arn"
        && (*partition == "aws" || partition.strip_prefix("aws-").is_some_and(plain))
        && *service == "elasticloadbalancing"
        && plain(region)
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && (1..=32).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !id.is_empty()
        && id.len() <= 32
        && id.bytes().all(|b| b.is_ascii_hexdigit())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// CloudWatch query ids must start with a lowercase letter; we also keep them short and plain.
fn valid_metric_id(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && s.len() <= 32
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
}

/// Parses and validates one policy file. `file` names it in messages; no I/O happens here.
pub fn parse_policy(file: &str, text: &str) -> PolicyReport {
    parse_policy_at(file, text, None)
}

/// [`parse_policy`], also judging the windows against `now` (the caller's clock or `--now`):
/// warnings for a one-off window already over and a cron that does not fire within a year.
pub fn parse_policy_at(file: &str, text: &str, now: Option<jiff::Timestamp>) -> PolicyReport {
    let mut ctx = Ctx { file, diags: Vec::new(), now };
    let raw: Spanned<RawPolicy> = match super::unknown::parse_all(text, |t| serde_saphyr::from_str(t)) {
        Ok(r) => r,
        Err(Ok(unknown)) => {
            for u in unknown {
                ctx.err(u.location, "", u.message);
            }
            return PolicyReport { policy: None, diagnostics: ctx.diags };
        }
        Err(Err(e)) => {
            let loc = e.location().unwrap_or(Location::UNKNOWN);
            ctx.err(loc, "", yaml_message(&e));
            return PolicyReport { policy: None, diagnostics: ctx.diags };
        }
    };
    let policy = convert(&mut ctx, &raw.value, raw.referenced);
    let has_errors = ctx.diags.iter().any(|d| d.severity == Severity::Error);
    ctx.diags.sort_by_key(|d| (d.line, d.column, d.severity));
    PolicyReport { policy: if has_errors { None } else { policy }, diagnostics: ctx.diags }
}

/// serde-saphyr's message without its rendered snippet and location suffix (we print those),
/// nor its hints to the library's caller (`use from_str_multiple ...`). The config file's
/// messages use it too.
pub fn yaml_message(e: &serde_saphyr::Error) -> String {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML").trim();
    // Drop a trailing " at line X, column Y" if present.
    let msg = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    let mut msg = msg.trim_start_matches("error: ").trim();
    // And a leading "line X column Y: " (we print the location ourselves).
    if let Some(rest) = msg.strip_prefix("line ")
        && let Some(i) = rest.find(": ")
        && rest[..i].split(" column ").all(|n| n.trim().parse::<u64>().is_ok())
    {
        msg = rest[i + 2..].trim();
    }
    if msg.starts_with("multiple YAML documents detected") {
        return "more than one YAML document (a `---` separator): one document per file".to_owned();
    }
    // A hint meant for the programmer calling the library, not for the person writing YAML.
    if let Some(i) = msg.find("; use ").filter(|i| msg[*i..].contains("from_str")) {
        msg = msg[..i].trim();
    }
    if msg.is_empty() { "invalid YAML".to_owned() } else { msg.to_owned() }
}

fn convert(ctx: &mut Ctx<'_>, raw: &RawPolicy, root: Location) -> Option<Policy> {
    let name = ctx.text(&raw.name, root, "name").and_then(|(n, loc)| {
        if valid_name(n) {
            Some(n.to_owned())
        } else {
            ctx.err(loc, "name", format!("{n:?} must be 1 to 64 letters, digits, '-', '_' or '.'"));
            None
        }
    });

    let pool = match &raw.pool {
        None => {
            ctx.err(root, "pool", "is required (a `tag: {key, value}` or an `auto_scaling_group`)");
            None
        }
        Some(p) => match (&p.value.tag, &p.value.auto_scaling_group) {
            (Some(t), None) => ctx.tag(&t.value, "pool.tag").map(PoolTarget::Tagged),
            (None, Some(_)) => ctx
                .text(&p.value.auto_scaling_group, p.referenced, "pool.auto_scaling_group")
                .map(|(g, _)| PoolTarget::AutoScalingGroup(g.to_owned())),
            (Some(_), Some(g)) => {
                ctx.err(g.referenced, "pool", "give either `tag` or `auto_scaling_group`, not both");
                None
            }
            (None, None) => {
                ctx.err(p.referenced, "pool", "needs a `tag: {key, value}` or an `auto_scaling_group`");
                None
            }
        },
    };

    let hi = MAX_CAPACITY;
    let min = match &raw.min {
        Some(v) => ctx.count(v, "min", 0, hi),
        None => {
            ctx.err(root, "min", "is required");
            None
        }
    };
    let max = match &raw.max {
        Some(v) => ctx.count(v, "max", 1, hi),
        None => {
            ctx.err(root, "max", "is required");
            None
        }
    };
    if let (Some(lo), Some(up), Some(v)) = (min, max, &raw.max)
        && lo > up
    {
        ctx.err(v.referenced, "max", format!("{up} is below min {lo}"));
    }

    let (interval, interval_loc) = ctx.duration(&raw.interval, "interval", DEFAULT_INTERVAL);
    if raw.interval.is_some() && !(MIN_INTERVAL..=MAX_INTERVAL).contains(&interval) {
        ctx.err(
            interval_loc,
            "interval",
            format!("{} is out of range (allowed {} to {})", Human(interval), Human(MIN_INTERVAL), Human(MAX_INTERVAL)),
        );
    }

    let metrics = convert_metrics(ctx, raw, root);
    if raw.interval.is_some()
        && interval < Duration::from_secs(60)
        && !metrics.is_empty()
        && metrics.iter().all(|m| m.namespace.starts_with("AWS/"))
    {
        ctx.warn(
            interval_loc,
            "interval",
            format!(
                "{} is finer than any AWS/ metric's datapoints (at best one a minute: 1m with EC2 detailed \
                 monitoring, 5m with basic): evaluations between datapoints see nothing new",
                Human(interval)
            ),
        );
    }
    let (scaling, stabilization_loc) = convert_scaling(ctx, raw);

    let hist = raw.history.as_ref().map(|h| &h.value);
    let default_window = scaling.scale_down.stabilization.max(DEFAULT_MIN_HISTORY_WINDOW).max(interval * 4);
    let (window, window_loc) = ctx.duration(&hist.and_then(|h| h.window.clone()), "history.window", default_window);
    let (max_age, max_age_loc) =
        ctx.duration(&hist.and_then(|h| h.max_age.clone()), "history.max_age", DEFAULT_MAX_AGE);
    if window > MAX_WINDOW {
        ctx.err(window_loc, "history.window", format!("{} is longer than {}", Human(window), Human(MAX_WINDOW)));
    }
    if window < scaling.scale_down.stabilization {
        ctx.err(
            if window_loc == Location::UNKNOWN { stabilization_loc } else { window_loc },
            "history.window",
            format!(
                "{} is shorter than scale_down.stabilization {} (the window must hold it)",
                Human(window),
                Human(scaling.scale_down.stabilization)
            ),
        );
    }
    if max_age.is_zero() {
        ctx.err(max_age_loc, "history.max_age", "must be above 0s");
    }
    for m in &metrics {
        if max_age < m.period {
            ctx.warn(
                max_age_loc,
                "history.max_age",
                format!(
                    "{} is shorter than metric {:?}'s period {}: its datapoints will often count as missing",
                    Human(max_age),
                    m.id,
                    Human(m.period)
                ),
            );
        }
    }

    let missing_data = match &raw.missing_data {
        None => MissingData::Hold,
        Some(s) => match &s.value {
            RawMissing::Word(Text(w)) if w == "hold" => MissingData::Hold,
            RawMissing::Word(Text(w)) if w == "scale_up" => MissingData::ScaleUp,
            RawMissing::Fixed(f) => {
                match ctx.count(&Spanned::new(f.fixed, s.referenced, s.defined), "missing_data.fixed", 0, hi) {
                    Some(n) => MissingData::Fixed(n),
                    None => MissingData::Hold,
                }
            }
            RawMissing::Word(Text(w)) => {
                ctx.err(
                    s.referenced,
                    "missing_data",
                    format!("{w:?} is not one of \"hold\", \"scale_up\", {{fixed: N}} (missing data never scales in)"),
                );
                MissingData::Hold
            }
        },
    };

    let prewarm = convert_prewarm(ctx, raw.prewarm.as_deref().unwrap_or(&[]), min, max, window);

    let composite = convert_composite(ctx, raw);
    let scale_in_raw = raw.scale_in.as_ref().map(|s| &s.value);
    let order = ctx.choice(
        &scale_in_raw.and_then(|s| s.order.clone()),
        "scale_in.order",
        &[("newest", ScaleInOrder::Newest), ("oldest", ScaleInOrder::Oldest), ("lowest_cpu", ScaleInOrder::LowestCpu)],
        ScaleInOrder::Newest,
    );
    let protect_tag =
        scale_in_raw.and_then(|s| s.protect_tag.as_ref()).and_then(|t| ctx.tag(&t.value, "scale_in.protect_tag"));
    if let (Some(PoolTarget::AutoScalingGroup(_)), Some(t)) = (&pool, scale_in_raw.and_then(|s| s.protect_tag.as_ref()))
    {
        ctx.warn(
            t.referenced,
            "scale_in.protect_tag",
            "has no effect on an Auto Scaling group (use the group's scale-in protection)",
        );
    }
    let (target_groups, drain_timeout, pre_stop) = convert_drain(ctx, raw, pool.as_ref());
    let out_order = ctx.choice(
        &raw.scale_out.as_ref().and_then(|s| s.value.order.clone()),
        "scale_out.order",
        &[("oldest", ScaleOutOrder::Oldest), ("newest", ScaleOutOrder::Newest), ("id", ScaleOutOrder::Id)],
        ScaleOutOrder::Oldest,
    );
    let adopt = ctx.choice(
        &raw.adopt,
        "adopt",
        &[("gradual", Adopt::Gradual), ("immediate", Adopt::Immediate)],
        Adopt::Gradual,
    );

    Some(Policy {
        name: name?,
        pool: pool?,
        target_groups,
        min: min?,
        max: max?,
        interval,
        dry_run: raw.dry_run.as_ref().is_some_and(|d| d.value),
        metrics,
        scaling,
        history: History { window, max_age },
        missing_data,
        prewarm,
        scale_in: ScaleIn { order, protect_tag, drain_timeout, pre_stop },
        scale_out: ScaleOut { order: out_order },
        predictive: raw.predictive.as_ref().map(|p| convert_predictive(ctx, &p.value)),
        composite,
        freeze_scale_in: raw.freeze_scale_in.as_ref().is_some_and(|f| f.value),
        adopt,
    })
}

/// Checks that needs several policies together: unique names, and no two policies whose pools
/// could share an instance (see [`pools_overlap`]). Each entry is `(file, policy)`; of two
/// overlapping policies the later one is reported, naming the earlier one's file.
pub fn check_policy_set(policies: &[(&str, &Policy)]) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut names: BTreeMap<&str, &str> = BTreeMap::new();
    // Pools claimed so far, in order: a later policy that overlaps an earlier one is the one
    // reported (callers put the policies already running first).
    let mut claimed: Vec<(&PoolTarget, &str)> = Vec::new();
    for (file, p) in policies {
        let diag = |field: &str, message: String| Diagnostic {
            severity: Severity::Error,
            file: (*file).to_owned(),
            line: 1,
            column: 1,
            field: field.to_owned(),
            message,
        };
        if let Some(other) = names.insert(&p.name, file) {
            out.push(diag("name", format!("{:?} is also the name of the policy in {other}", p.name)));
        }
        if let Some((rival, other)) = claimed.iter().find(|(q, _)| pools_overlap(&p.pool, q)) {
            let message = match (&p.pool, rival) {
                (PoolTarget::Tagged(t), PoolTarget::Tagged(r)) if t == r => format!(
                    "instances tagged {}={} are already claimed by {other}: two policies cannot scale the same \
                     pool",
                    t.key, t.value
                ),
                (PoolTarget::Tagged(t), PoolTarget::Tagged(r)) => format!(
                    "tag {}={} overlaps {}={} claimed by {other}: one instance can carry both tags, so two \
                     policies could act on it: tagged pools must share one tag key, with distinct values",
                    t.key, t.value, r.key, r.value
                ),
                (PoolTarget::AutoScalingGroup(g), _) | (_, PoolTarget::AutoScalingGroup(g)) => format!(
                    "Auto Scaling group {g:?} is already claimed by {other}: two policies cannot scale the same \
                     pool"
                ),
            };
            out.push(diag("pool", message));
        } else {
            claimed.push((&p.pool, file));
        }
    }
    out
}

/// Whether one instance (or group) could belong to both pools. Two tag selectors can both
/// match one instance unless they name the same key with different values: an instance cannot
/// carry two values of one key, but nothing stops it carrying two keys.
pub fn pools_overlap(a: &PoolTarget, b: &PoolTarget) -> bool {
    match (a, b) {
        (PoolTarget::Tagged(x), PoolTarget::Tagged(y)) => x.key != y.key || x.value == y.value,
        (PoolTarget::AutoScalingGroup(x), PoolTarget::AutoScalingGroup(y)) => x == y,
        _ => false,
    }
}
