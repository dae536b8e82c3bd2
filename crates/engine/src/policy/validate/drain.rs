//! `pool.target_groups` and `scale_in`: drain timeout and the pre-stop hook. Part of [`super`]'s validation: each
//! function checks its block and reports every problem through the shared `Ctx`.

use super::*;

/// `pool.target_groups`, `scale_in.drain_timeout` and `scale_in.pre_stop`.
pub(super) fn convert_drain(
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
