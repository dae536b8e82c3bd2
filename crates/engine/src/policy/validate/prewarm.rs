//! `prewarm:`: one-off and cron windows in IANA zones, ramps, leads and `release_after`. Part of [`super`]'s validation: each
//! function checks its block and reports every problem through the shared `Ctx`.

use super::*;

pub(super) fn convert_prewarm(
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
pub(super) fn release_after(
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

pub(super) fn one_off(
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
pub(super) fn offset_message(text: &str, tz: &TimeZone) -> Option<String> {
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
pub(super) fn short_datetime(dt: DateTime) -> String {
    if dt.second() == 0 && dt.subsec_nanosecond() == 0 {
        dt.strftime("%Y-%m-%dT%H:%M").to_string()
    } else {
        dt.strftime("%Y-%m-%dT%H:%M:%S").to_string()
    }
}
