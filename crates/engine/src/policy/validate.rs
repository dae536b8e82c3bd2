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

/// Longest history the forecast may learn from: CloudWatch keeps 5-minute data for 63 days.
const MAX_PREDICTIVE_HISTORY: Duration = Duration::from_secs(63 * 86_400);
/// Shortest: the model needs three days before it forecasts (one to check itself on).
const MIN_PREDICTIVE_HISTORY: Duration = Duration::from_secs(3 * 86_400);

fn convert_predictive(ctx: &mut Ctx<'_>, raw: &super::raw::RawPredictive) -> Predictive {
    let d = Predictive::default();
    let mode = ctx.choice(
        &raw.mode,
        "predictive.mode",
        &[("forecast_only", PredictiveMode::ForecastOnly), ("active", PredictiveMode::Active)],
        d.mode,
    );
    let (history, hloc) = ctx.duration(&raw.history, "predictive.history", d.history);
    if raw.history.is_some() && !(MIN_PREDICTIVE_HISTORY..=MAX_PREDICTIVE_HISTORY).contains(&history) {
        ctx.err(
            hloc,
            "predictive.history",
            format!(
                "{} is out of range (allowed {} to {}: CloudWatch keeps 5-minute data for 63 days)",
                Human(history),
                Human(MIN_PREDICTIVE_HISTORY),
                Human(MAX_PREDICTIVE_HISTORY)
            ),
        );
    }
    let (mut daily, mut weekly) = (d.daily, d.weekly);
    if let Some(list) = &raw.periods {
        (daily, weekly) = (false, false);
        for (i, p) in list.value.iter().enumerate() {
            match p.value.0.trim() {
                "daily" => daily = true,
                "weekly" => weekly = true,
                other => ctx.err(
                    p.referenced,
                    &format!("predictive.periods[{i}]"),
                    format!("{other:?} is not one of \"daily\", \"weekly\""),
                ),
            }
        }
        if list.value.is_empty() {
            ctx.err(list.referenced, "predictive.periods", "is empty (write [daily], [weekly] or [daily, weekly])");
            (daily, weekly) = (d.daily, d.weekly);
        }
    }
    let quantile = match &raw.quantile {
        None => d.quantile,
        Some(q) if q.value.is_finite() && q.value > 0.0 && q.value < 1.0 => q.value,
        Some(q) => {
            ctx.err(
                q.referenced,
                "predictive.quantile",
                format!("{} is out of range (a quantile above 0 and below 1, e.g. 0.75)", q.value),
            );
            d.quantile
        }
    };
    let margin = fraction(ctx, &raw.margin, "predictive.margin", 0.0, 2.0).unwrap_or(d.margin);
    let max_error = fraction(ctx, &raw.max_error, "predictive.max_error", 0.01, 10.0).unwrap_or(d.max_error);
    let (lead, lloc) = ctx.duration(&raw.lead, "predictive.lead", d.lead);
    if lead > Duration::from_secs(6 * 3600) {
        ctx.err(lloc, "predictive.lead", format!("{} is longer than 6h", Human(lead)));
    }
    Predictive { mode, history, daily, weekly, quantile, margin, lead, max_error }
}

/// A fraction written as `10%` or `0.1`, within `lo..=hi` (as fractions).
fn fraction(ctx: &mut Ctx<'_>, v: &Option<S<Text>>, field: &str, lo: f64, hi: f64) -> Option<f64> {
    let s = v.as_ref()?;
    let t = s.value.0.trim();
    let parsed = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|x| x / 100.0),
        None => t.parse::<f64>(),
    };
    match parsed {
        Ok(x) if x.is_finite() && (lo..=hi).contains(&x) => Some(x),
        Ok(_) => {
            ctx.err(s.referenced, field, format!("{t:?} is out of range (allowed {}% to {}%)", lo * 100.0, hi * 100.0));
            None
        }
        Err(_) => {
            ctx.err(s.referenced, field, format!("{t:?} is not a fraction (write e.g. 10% or 0.1)"));
            None
        }
    }
}

/// The `composite` block, and each metric's `cap` (which only means something with it).
fn convert_composite(ctx: &mut Ctx<'_>, raw: &RawPolicy) -> Option<Composite> {
    let Some(c) = &raw.composite else {
        for (i, m) in raw.metrics.iter().flat_map(|l| l.value.iter()).enumerate() {
            if let Some(cap) = &m.value.cap {
                ctx.warn(cap.referenced, &format!("metrics[{i}].cap"), "has no effect without a `composite` block");
            }
        }
        return None;
    };
    let errors_before = ctx.error_count();
    let up = match &c.value.scale_up_above {
        Some(v) => ctx.positive(v, "composite.scale_up_above"),
        None => {
            ctx.err(c.referenced, "composite.scale_up_above", "is required (the score above which to scale up)");
            None
        }
    };
    let down = c.value.scale_down_below.as_ref().and_then(|d| {
        let v = d.value;
        if !v.is_finite() || v < 0.0 {
            ctx.err(d.referenced, "composite.scale_down_below", format!("{v} must be a number of at least 0"));
            None
        } else if up.is_some_and(|u| v >= u) {
            ctx.err(
                d.referenced,
                "composite.scale_down_below",
                format!("{v} must be below scale_up_above {} (or the pool would flap)", up.unwrap_or(0.0)),
            );
            None
        } else {
            Some(v)
        }
    });
    let periods = match &c.value.periods {
        Some(p) => ctx.count(p, "composite.periods", 1, 60).unwrap_or(2),
        None => 2,
    };
    for (i, m) in raw.metrics.iter().flat_map(|l| l.value.iter()).enumerate() {
        if let Some(cap) = &m.value.cap {
            ctx.positive(cap, &format!("metrics[{i}].cap"));
        }
    }
    if ctx.error_count() > errors_before {
        return None;
    }
    Some(Composite { scale_up_above: up?, scale_down_below: down, periods })
}

fn convert_metrics(ctx: &mut Ctx<'_>, raw: &RawPolicy, root: Location) -> Vec<MetricSpec> {
    let Some(list) = &raw.metrics else {
        ctx.err(root, "metrics", "is required (at least one metric)");
        return vec![];
    };
    if list.value.is_empty() {
        ctx.err(list.referenced, "metrics", "is empty (at least one metric)");
    }
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, Location> = BTreeMap::new();
    let mut weight_sum = 0.0;
    for (i, m) in list.value.iter().enumerate() {
        let f = |s: &str| format!("metrics[{i}].{s}");
        if let Some(spec) = convert_metric(ctx, &m.value, m.referenced, &f) {
            if let Some(first) = seen.get(&spec.id) {
                let msg = format!("{:?} is used twice (first at line {})", spec.id, first.line());
                ctx.err(m.value.id.as_ref().map_or(m.referenced, |s| s.referenced), &f("id"), msg);
            } else {
                seen.insert(spec.id.clone(), m.referenced);
            }
            weight_sum += spec.weight;
            out.push(spec);
        }
    }
    if !list.value.is_empty() && out.len() == list.value.len() && weight_sum <= 0.0 {
        ctx.err(list.referenced, "metrics", "weights sum to 0 (at least one metric needs a weight above 0)");
    }
    out
}

fn convert_metric(ctx: &mut Ctx<'_>, m: &RawMetric, at: Location, f: &dyn Fn(&str) -> String) -> Option<MetricSpec> {
    let errors_before = ctx.error_count();
    let id = ctx.text(&m.id, at, &f("id")).map(|(s, loc)| {
        if !valid_metric_id(s) {
            ctx.err(
                loc,
                &f("id"),
                format!("{s:?} must start with a lowercase letter and use only a-z, 0-9, '_' (at most 32)"),
            );
        }
        s.to_owned()
    });
    let source = convert_source(ctx, m, at, f);
    let prometheus = m.source.as_ref().is_some_and(|s| s.value.0 == "prometheus");
    let (namespace, name) = if prometheus {
        (Some(String::new()), Some(String::new()))
    } else {
        (
            ctx.text(&m.namespace, at, &f("namespace")).map(|(s, _)| s.to_owned()),
            ctx.text(&m.name, at, &f("name")).map(|(s, _)| s.to_owned()),
        )
    };
    let statistic = ctx.choice(
        &m.statistic,
        &f("statistic"),
        &[
            ("Average", Statistic::Average),
            ("Maximum", Statistic::Maximum),
            ("Minimum", Statistic::Minimum),
            ("Sum", Statistic::Sum),
            ("SampleCount", Statistic::SampleCount),
        ],
        Statistic::Average,
    );
    let (period, period_loc) = ctx.duration(&m.period, &f("period"), DEFAULT_PERIOD);
    let secs = period.as_secs();
    let high_res = [1, 5, 10, 30].contains(&secs);
    if prometheus {
        if period.subsec_nanos() != 0 || secs == 0 {
            ctx.err(period_loc, &f("period"), format!("{} is not a whole number of seconds above 0", Human(period)));
        }
    } else if period.subsec_nanos() != 0 || !(high_res || (secs >= 60 && secs % 60 == 0)) {
        ctx.err(
            period_loc,
            &f("period"),
            format!("{} is not a CloudWatch period (1s, 5s, 10s, 30s or a multiple of 60s)", Human(period)),
        );
    }
    if let Some(ns) = m.namespace.as_ref().map(|n| n.value.0.as_str()).filter(|n| n.starts_with("AWS/"))
        && m.period.is_some()
        && high_res
        && period.subsec_nanos() == 0
    {
        ctx.warn(
            period_loc,
            &f("period"),
            format!(
                "{} is finer than {ns} publishes (at best 1m, with detailed monitoring; 5m with basic): there will \
                 be no datapoints",
                Human(period)
            ),
        );
    }
    let goal = match (&m.target, &m.target_per_instance) {
        (Some(t), None) => {
            let v = ctx.positive(t, &f("target"));
            if let Some(x) = v
                && m.namespace.as_ref().is_some_and(|n| n.value.0.starts_with("AWS/"))
                && m.name.as_ref().is_some_and(|n| n.value.0.contains("Utilization"))
                && x > 100.0
            {
                ctx.err(t.referenced, &f("target"), format!("{x} is above 100 (a utilisation target is a percentage)"));
            }
            v.map(|target| Goal::Utilization { target })
        }
        (None, Some(t)) => ctx
            .positive(t, &f("target_per_instance"))
            .map(|target_per_instance| Goal::PerInstance { target_per_instance }),
        (Some(_), Some(t)) => {
            ctx.err(t.referenced, &f("target_per_instance"), "give either `target` or `target_per_instance`, not both");
            None
        }
        (None, None) => {
            ctx.err(at, &f("target"), "is required (`target` for a utilisation, `target_per_instance` for a backlog)");
            None
        }
    };
    let weight = match &m.weight {
        None => 1.0,
        Some(w) if !w.value.is_finite() => {
            ctx.err(w.referenced, &f("weight"), format!("{} is not a number", w.value));
            1.0
        }
        Some(w) if w.value < 0.0 => {
            ctx.err(w.referenced, &f("weight"), format!("{} is negative (weights must be >= 0)", w.value));
            1.0
        }
        Some(w) => w.value,
    };
    let ceiling = m.ceiling.as_ref().and_then(|c| ctx.positive(c, &f("ceiling")));
    if let (Some(c), Some(Goal::Utilization { target }), Some(cs)) = (ceiling, goal, &m.ceiling)
        && c <= target
    {
        ctx.err(cs.referenced, &f("ceiling"), format!("{c} must be above the target {target}"));
    }
    if weight == 0.0
        && ceiling.is_none()
        && let Some(w) = &m.weight
    {
        ctx.warn(w.referenced, &f("weight"), "is 0 and the metric has no ceiling: it never affects capacity");
    }
    let per_instance = match &m.per_instance {
        None => None,
        Some(_) => Some(ctx.choice(
            &m.per_instance,
            &f("per_instance"),
            &[("avg", Aggregation::Avg), ("max", Aggregation::Max)],
            Aggregation::Avg,
        )),
    };
    let mut dimensions = BTreeMap::new();
    for (k, v) in m.dimensions.iter().flatten() {
        if per_instance.is_some() && k == "InstanceId" {
            ctx.err(
                v.referenced,
                &f(&format!("dimensions.{k}")),
                "is added per member for a per_instance metric: remove it",
            );
        }
        dimensions.insert(k.clone(), v.value.0.clone());
    }
    let errors_after = ctx.error_count();
    if errors_after > errors_before {
        return None;
    }
    Some(MetricSpec {
        id: id?,
        namespace: namespace?,
        name: name?,
        dimensions,
        statistic,
        period,
        goal: goal?,
        weight,
        ceiling,
        per_instance,
        cap: m.cap.as_ref().map(|c| c.value).filter(|c| c.is_finite() && *c > 0.0),
        source: source?,
    })
}

/// `source:` and, for Prometheus, `query` and `instance_label`; fields of the other source are
/// errors (a CloudWatch `namespace` under `source: prometheus` would be silently ignored).
fn convert_source(ctx: &mut Ctx<'_>, m: &RawMetric, at: Location, f: &dyn Fn(&str) -> String) -> Option<MetricSource> {
    let prometheus = ctx.choice(&m.source, &f("source"), &[("cloudwatch", false), ("prometheus", true)], false);
    if !prometheus {
        for (field, v) in [("query", &m.query), ("instance_label", &m.instance_label)] {
            if let Some(v) = v {
                ctx.err(v.referenced, &f(field), "is only for `source: prometheus` metrics");
            }
        }
        return Some(MetricSource::CloudWatch);
    }
    for (field, v) in [("namespace", &m.namespace), ("name", &m.name), ("statistic", &m.statistic)] {
        if let Some(v) = v {
            ctx.err(v.referenced, &f(field), "is a CloudWatch field: a `source: prometheus` metric has a `query`");
        }
    }
    if let Some((k, v)) = m.dimensions.iter().flatten().next() {
        ctx.err(v.referenced, &f(&format!("dimensions.{k}")), "is a CloudWatch field: match labels in the `query`");
    }
    let (query, query_loc) = ctx.text(&m.query, at, &f("query"))?;
    let query = query.trim().to_owned();
    let placeholder = query.contains(INSTANCE_IDS_PLACEHOLDER);
    if placeholder && m.per_instance.is_none() {
        ctx.err(query_loc, &f("query"), format!("uses {INSTANCE_IDS_PLACEHOLDER} but the metric is not per_instance"));
    }
    if query.replace(INSTANCE_IDS_PLACEHOLDER, "").contains("${") {
        ctx.err(
            query_loc,
            &f("query"),
            format!("has an unknown ${{...}} placeholder (the only one is {INSTANCE_IDS_PLACEHOLDER})"),
        );
    }
    let instance_label = match &m.instance_label {
        None => DEFAULT_INSTANCE_LABEL.to_owned(),
        Some(l) => {
            let name = l.value.0.trim();
            let valid = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                ctx.err(
                    l.referenced,
                    &f("instance_label"),
                    format!("{name:?} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"),
                );
            } else if m.per_instance.is_none() {
                ctx.warn(l.referenced, &f("instance_label"), "has no effect: the metric is not per_instance");
            }
            name.to_owned()
        }
    };
    Some(MetricSource::Prometheus { query, instance_label })
}

fn convert_scaling(ctx: &mut Ctx<'_>, raw: &RawPolicy) -> (Scaling, Location) {
    let s = raw.scaling.as_ref().map(|s| &s.value);
    let tolerance = match s.and_then(|s| s.tolerance.as_ref()) {
        None => DEFAULT_TOLERANCE,
        Some(t) if t.value.is_finite() && (0.0..0.5).contains(&t.value) => t.value,
        Some(t) => {
            ctx.err(t.referenced, "scaling.tolerance", format!("{} is out of range (allowed 0 to below 0.5)", t.value));
            DEFAULT_TOLERANCE
        }
    };
    let up = s.and_then(|s| s.scale_up.as_ref()).map(|u| &u.value);
    let confirmations = match up.and_then(|u| u.confirmations.as_ref()) {
        None => DEFAULT_CONFIRMATIONS,
        Some(c) => ctx.count(c, "scaling.scale_up.confirmations", 1, 60).unwrap_or(DEFAULT_CONFIRMATIONS),
    };
    let fast_threshold = up.and_then(|u| u.fast_threshold.as_ref()).and_then(|f| {
        let v = f.value;
        if !v.is_finite() || v <= 1.0 + tolerance {
            ctx.err(
                f.referenced,
                "scaling.scale_up.fast_threshold",
                format!("{v} must be above the tolerance band (above {})", 1.0 + tolerance),
            );
            None
        } else {
            Some(v)
        }
    });
    let (up_cooldown, up_cd_loc) =
        ctx.duration(&up.and_then(|u| u.cooldown.clone()), "scaling.scale_up.cooldown", DEFAULT_UP_COOLDOWN);
    let up_step = ctx.step(&up.and_then(|u| u.max_step.clone()), "scaling.scale_up.max_step", DEFAULT_UP_STEP);

    let down = s.and_then(|s| s.scale_down.as_ref()).map(|d| &d.value);
    let (stabilization, stab_loc) = ctx.duration(
        &down.and_then(|d| d.stabilization.clone()),
        "scaling.scale_down.stabilization",
        DEFAULT_STABILIZATION,
    );
    let (down_cooldown, down_cd_loc) =
        ctx.duration(&down.and_then(|d| d.cooldown.clone()), "scaling.scale_down.cooldown", DEFAULT_DOWN_COOLDOWN);
    let down_step = ctx.step(&down.and_then(|d| d.max_step.clone()), "scaling.scale_down.max_step", DEFAULT_DOWN_STEP);
    let acceleration = match down.and_then(|d| d.acceleration.as_ref()) {
        None => DEFAULT_ACCELERATION,
        Some(a) if a.value.is_finite() && (1.0..=10.0).contains(&a.value) => a.value,
        Some(a) => {
            ctx.err(
                a.referenced,
                "scaling.scale_down.acceleration",
                format!("{} is out of range (allowed 1 to 10)", a.value),
            );
            DEFAULT_ACCELERATION
        }
    };
    let confirmed_stabilization = match down.and_then(|d| d.confirmed_stabilization.clone()) {
        None => None,
        Some(raw) => {
            let field = "scaling.scale_down.confirmed_stabilization";
            let errors_before = ctx.error_count();
            let (d, loc) = ctx.duration(&Some(raw), field, Duration::ZERO);
            if ctx.error_count() > errors_before {
                None // not a duration: already reported
            } else if d.is_zero() {
                ctx.err(loc, field, "must be above 0s");
                None
            } else if d > stabilization {
                ctx.err(
                    loc,
                    field,
                    format!(
                        "{} is longer than scale_down.stabilization {} (it is the recent part of that window)",
                        Human(d),
                        Human(stabilization)
                    ),
                );
                None
            } else {
                Some(d)
            }
        }
    };
    for (d, loc, field) in [
        (up_cooldown, up_cd_loc, "scaling.scale_up.cooldown"),
        (stabilization, stab_loc, "scaling.scale_down.stabilization"),
        (down_cooldown, down_cd_loc, "scaling.scale_down.cooldown"),
    ] {
        if d > Duration::from_secs(86_400) {
            ctx.err(loc, field, format!("{} is longer than 1d", Human(d)));
        }
    }
    (
        Scaling {
            tolerance,
            scale_up: ScaleUp { confirmations, fast_threshold, cooldown: up_cooldown, max_step: up_step },
            scale_down: ScaleDown {
                stabilization,
                cooldown: down_cooldown,
                max_step: down_step,
                acceleration,
                confirmed_stabilization,
            },
        },
        stab_loc,
    )
}

fn convert_prewarm(
    ctx: &mut Ctx<'_>,
    rules: &[S<RawPrewarm>],
    min: Option<u32>,
    max: Option<u32>,
    history_window: Duration,
) -> Vec<PrewarmRule> {
    let mut out = Vec::new();
    let mut names = BTreeSet::new();
    for (i, r) in rules.iter().enumerate() {
        let f = |s: &str| format!("prewarm[{i}].{s}");
        let at = r.referenced;
        let raw = &r.value;
        let errors_before = ctx.error_count();
        let name = ctx.text(&raw.name, at, &f("name")).map(|(n, loc)| {
            if !names.insert(n.to_owned()) {
                ctx.err(loc, &f("name"), format!("{n:?} is used by another pre-warm rule"));
            }
            n.to_owned()
        });
        let tz = ctx.text(&raw.time_zone, at, &f("time_zone")).and_then(|(z, loc)| match TimeZone::get(z) {
            Ok(tz) => {
                if let Some(w) = super::zones::legacy(z) {
                    ctx.warn(loc, &f("time_zone"), w);
                }
                Some((tz, z.to_owned()))
            }
            Err(_) => {
                let hint = super::zones::hint(z).unwrap_or("e.g. America/New_York, Asia/Shanghai, UTC");
                let message = match super::zones::hint(z) {
                    Some(_) => format!("{z:?} is not an IANA time zone: {hint}"),
                    None => format!("{z:?} is not an IANA time zone ({hint})"),
                };
                ctx.err(loc, &f("time_zone"), message);
                None
            }
        });
        let (lead, _) = ctx.duration(&raw.lead, &f("lead"), Duration::ZERO);
        let (ramp, _) = ctx.duration(&raw.ramp, &f("ramp"), Duration::ZERO);
        let capacity = match &raw.capacity {
            Some(c) => ctx.count(c, &f("capacity"), 1, MAX_CAPACITY),
            None => {
                ctx.err(at, &f("capacity"), "is required");
                None
            }
        };
        if let (Some(c), Some(mx), Some(cs)) = (capacity, max, &raw.capacity)
            && c > mx
        {
            ctx.warn(cs.referenced, &f("capacity"), format!("{c} is above max {mx}: the floor is capped at {mx}"));
        }
        if let (Some(c), Some(mn), Some(cs)) = (capacity, min, &raw.capacity)
            && c <= mn
        {
            ctx.warn(cs.referenced, &f("capacity"), format!("{c} is not above min {mn}: the rule has no effect"));
        }
        let when = match (&raw.start, &raw.cron) {
            (Some(_), Some(c)) => {
                ctx.err(c.referenced, &f("cron"), "give either `start` (one-off) or `cron` (recurring), not both");
                None
            }
            (None, None) => {
                ctx.err(at, &f("start"), "is required (`start` for a one-off window, or `cron` for a recurring one)");
                None
            }
            (Some(start), None) => {
                // Without a valid zone, still check the dates' syntax (against UTC).
                let zone = tz.as_ref().map_or(TimeZone::UTC, |(tz, _)| tz.clone());
                one_off(ctx, raw, start, &zone, &f).filter(|_| tz.is_some())
            }
            (None, Some(c)) => {
                if let Some(e) = &raw.end {
                    ctx.err(e.referenced, &f("end"), "is for one-off windows: a cron window takes `duration`");
                }
                let (duration, dloc) = ctx.duration(&raw.duration, &f("duration"), Duration::ZERO);
                if raw.duration.is_none() {
                    ctx.err(at, &f("duration"), "is required for a cron window");
                } else if duration.is_zero() {
                    ctx.err(dloc, &f("duration"), "must be above 0s");
                }
                match croner::parser::CronParser::new().parse(c.value.0.trim()) {
                    Ok(cron) => {
                        if let (Some(now), Some((tz, zone))) = (ctx.now, &tz)
                            && let Some(w) = super::checks::never_fires(&cron, c.value.0.trim(), tz, zone, now)
                        {
                            ctx.warn(c.referenced, &f("cron"), w);
                        }
                        Some(PrewarmWhen::Cron { cron: Box::new(cron), pattern: c.value.0.trim().to_owned(), duration })
                    }
                    Err(e) => {
                        ctx.err(c.referenced, &f("cron"), super::checks::cron_error(c.value.0.trim(), &e));
                        None
                    }
                }
            }
        };
        if let (Some(now), Some(PrewarmWhen::Once { end, .. }), Some((tz, zone))) = (ctx.now, &when, &tz)
            && *end <= now
        {
            let ended = super::checks::ago(now.duration_since(*end).unsigned_abs());
            let local = short_datetime(end.to_zoned(tz.clone()).datetime());
            let rule = name.as_deref().unwrap_or("");
            ctx.warn(
                at,
                &format!("prewarm[{i}]"),
                format!("{rule:?} ended {local} {zone} ({ended} ago): it will never hold again (update its dates or remove it)"),
            );
        }
        let release_after = release_after(ctx, raw, when.as_ref(), history_window, &f);
        let errors_after = ctx.error_count();
        if errors_after > errors_before {
            continue;
        }
        if let (Some(name), Some((time_zone, time_zone_name)), Some(when), Some(capacity)) = (name, tz, when, capacity)
        {
            out.push(PrewarmRule { name, when, time_zone, time_zone_name, lead, ramp, capacity, release_after });
        }
    }
    out
}

/// A rule's `release_after`: above zero, within the event (after the window has ended there is
/// no floor to release) and within `history.window` (the evaluations it looks back on must still
/// be kept when it looks).
fn release_after(
    ctx: &mut Ctx<'_>,
    raw: &RawPrewarm,
    when: Option<&PrewarmWhen>,
    history_window: Duration,
    f: &dyn Fn(&str) -> String,
) -> Option<Duration> {
    let field = f("release_after");
    let errors_before = ctx.error_count();
    let (d, loc) = ctx.duration(&Some(raw.release_after.clone()?), &field, Duration::ZERO);
    let event = match when {
        Some(PrewarmWhen::Once { start, end }) => Some(end.duration_since(*start).unsigned_abs()),
        Some(PrewarmWhen::Cron { duration, .. }) => Some(*duration),
        None => None,
    };
    if ctx.error_count() > errors_before {
        return None; // not a duration: already reported
    }
    if d.is_zero() {
        ctx.err(loc, &field, "must be above 0s");
    } else if let Some(e) = event.filter(|e| d > *e) {
        ctx.err(
            loc,
            &field,
            format!("{} is longer than the event ({}): the floor would never be released", Human(d), Human(e)),
        );
    } else if d > history_window {
        ctx.err(
            loc,
            &field,
            format!(
                "{} is longer than history.window {} (the evaluations it looks back on are kept that long)",
                Human(d),
                Human(history_window)
            ),
        );
    } else {
        return Some(d);
    }
    None
}

fn one_off(
    ctx: &mut Ctx<'_>,
    raw: &RawPrewarm,
    start: &S<Text>,
    tz: &TimeZone,
    f: &dyn Fn(&str) -> String,
) -> Option<PrewarmWhen> {
    let parse = |ctx: &mut Ctx<'_>, s: &S<Text>, field: &str| -> Option<jiff::Timestamp> {
        let text = s.value.0.trim();
        if let Some(message) = offset_message(text, tz) {
            ctx.err(s.referenced, field, message);
            return None;
        }
        match DateTime::from_str(text) {
            Ok(dt) => match dt.to_zoned(tz.clone()) {
                Ok(z) => Some(z.timestamp()),
                Err(e) => {
                    ctx.err(s.referenced, field, format!("{text:?} cannot be placed in the time zone: {e}"));
                    None
                }
            },
            Err(_) => {
                ctx.err(
                    s.referenced,
                    field,
                    format!("{text:?} is not a local date-time with a year (write e.g. 2026-11-27T00:00)"),
                );
                None
            }
        }
    };
    let start_ts = parse(ctx, start, &f("start"));
    let end_ts = match (&raw.end, &raw.duration) {
        (Some(e), None) => parse(ctx, e, &f("end")),
        (None, Some(_)) => {
            let (d, loc) = ctx.duration(&raw.duration, &f("duration"), Duration::ZERO);
            if d.is_zero() {
                ctx.err(loc, &f("duration"), "must be above 0s");
                None
            } else {
                start_ts.and_then(|s| s.checked_add(d).ok())
            }
        }
        (Some(_), Some(d)) => {
            ctx.err(d.referenced, &f("duration"), "give either `end` or `duration`, not both");
            None
        }
        (None, None) => {
            ctx.err(start.referenced, &f("end"), "is required (or `duration`)");
            None
        }
    };
    let (s, e) = (start_ts?, end_ts?);
    if e <= s {
        let loc = raw.end.as_ref().map_or(start.referenced, |e| e.referenced);
        ctx.err(loc, &f("end"), "must be after start");
        return None;
    }
    Some(PrewarmWhen::Once { start: s, end: e })
}

/// `start`/`end` are local date-times in the rule's `time_zone`. One written with a UTC offset or
/// `Z` is rejected (jiff's civil parser would drop the offset: `00:00+08:00` in `UTC` used to
/// start at 00:00 UTC, eight hours late), with the same instant written in the rule's zone.
fn offset_message(text: &str, tz: &TimeZone) -> Option<String> {
    let ts = jiff::Timestamp::from_str(text).ok()?;
    let t_at = text.find(['T', 't', ' '])?;
    let (local, offset) = if let Some(l) = text.strip_suffix(['Z', 'z']) {
        (l, None)
    } else {
        let i = t_at + text[t_at..].rfind(['+', '-'])?;
        (&text[..i], Some(&text[i..]))
    };
    let there = short_datetime(ts.to_zoned(tz.clone()).datetime());
    let zone = tz.iana_name().unwrap_or("the rule's zone");
    let fix = match offset {
        None => "set time_zone to UTC".to_owned(),
        Some(o) => format!("set time_zone to the IANA zone of {o}"),
    };
    Some(format!(
        "{text:?} carries a UTC offset, which would be ignored: start and end are local date-times in \
         time_zone {zone:?}, where this instant is {there} (or write {local} and {fix})"
    ))
}

/// `2027-11-11T00:00`, with seconds only when there are some.
fn short_datetime(dt: DateTime) -> String {
    if dt.second() == 0 && dt.subsec_nanosecond() == 0 {
        dt.strftime("%Y-%m-%dT%H:%M").to_string()
    } else {
        dt.strftime("%Y-%m-%dT%H:%M:%S").to_string()
    }
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

/// `pool.target_groups`, `scale_in.drain_timeout` and `scale_in.pre_stop`.
fn convert_drain(
    ctx: &mut Ctx<'_>,
    raw: &RawPolicy,
    pool: Option<&PoolTarget>,
) -> (Vec<String>, Option<Duration>, Option<PreStop>) {
    let mut groups = Vec::new();
    let listed = raw.pool.as_ref().and_then(|p| p.value.target_groups.as_ref());
    if let Some(list) = listed {
        if matches!(pool, Some(PoolTarget::AutoScalingGroup(_))) {
            ctx.err(
                list.referenced,
                "pool.target_groups",
                "an Auto Scaling group registers and drains its own instances: attach the target groups to the group instead",
            );
        }
        if list.value.is_empty() {
            ctx.err(list.referenced, "pool.target_groups", "is empty (list target group ARNs, or leave it out)");
        }
        for (i, arn) in list.value.iter().enumerate() {
            let field = format!("pool.target_groups[{i}]");
            let a = arn.value.0.trim();
            if !valid_target_group_arn(a) {
                ctx.err(
                    arn.referenced,
                    &field,
                    format!(
                        "{a:?} is not a target group ARN (arn:aws:elasticloadbalancing:REGION:ACCOUNT:targetgroup/NAME/ID)"
                    ),
                );
            } else if groups.iter().any(|g: &String| g == a) {
                ctx.err(arn.referenced, &field, format!("{a:?} is listed twice"));
            } else {
                groups.push(a.to_owned());
            }
        }
    }
    let scale_in = raw.scale_in.as_ref().map(|s| &s.value);
    let drain_raw = scale_in.and_then(|s| s.drain_timeout.clone());
    let drain_timeout = drain_raw.as_ref().map(|t| {
        let (d, loc) = ctx.duration(&drain_raw, "scale_in.drain_timeout", DRAIN_TIMEOUT_CAP);
        if d > DRAIN_TIMEOUT_MAX {
            ctx.err(
                loc,
                "scale_in.drain_timeout",
                format!(
                    "{} is longer than {} (AWS's longest deregistration delay)",
                    Human(d),
                    Human(DRAIN_TIMEOUT_MAX)
                ),
            );
        }
        if listed.is_none() {
            ctx.warn(t.referenced, "scale_in.drain_timeout", "has no effect without pool.target_groups");
        }
        d
    });
    let pre_stop = scale_in.and_then(|s| s.pre_stop.as_ref()).and_then(|h| {
        if matches!(pool, Some(PoolTarget::AutoScalingGroup(_))) {
            ctx.err(
                h.referenced,
                "scale_in.pre_stop",
                "an Auto Scaling group chooses which instances to terminate: use a lifecycle hook on the group",
            );
        }
        let (timeout, loc) = ctx.duration(&h.value.timeout, "scale_in.pre_stop.timeout", PRE_STOP_TIMEOUT_DEFAULT);
        if timeout.is_zero() || timeout > DRAIN_TIMEOUT_CAP {
            ctx.err(
                loc,
                "scale_in.pre_stop.timeout",
                format!("{} is out of range (allowed above 0s, up to {})", Human(timeout), Human(DRAIN_TIMEOUT_CAP)),
            );
        }
        let (url, loc) = ctx.text(&h.value.url, h.referenced, "scale_in.pre_stop.url")?;
        let url = url.trim();
        let Some(rest) = url.strip_prefix("http://") else {
            ctx.err(
                loc,
                "scale_in.pre_stop.url",
                format!("{url:?} must start with http:// (the hook goes to the member's private address; https is not supported)"),
            );
            return None;
        };
        let host = rest.split(['/', '?']).next().unwrap_or("");
        if host.is_empty() || url.chars().any(char::is_whitespace) {
            ctx.err(loc, "scale_in.pre_stop.url", format!("{url:?} has no host (e.g. http://{{private_ip}}:8080/drain)"));
            return None;
        }
        if !url.contains("{private_ip}") {
            ctx.warn(
                loc,
                "scale_in.pre_stop.url",
                format!("{url:?} has no {{private_ip}}: every member's hook goes to the same address"),
            );
        }
        Some(PreStop { url: url.to_owned(), timeout })
    });
    (groups, drain_timeout, pre_stop)
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
