//! `scaling:`: tolerance, the scale-up confirmations, cooldowns and steps, the scale-down
//! stabilisation, acceleration and missing-data rules. Part of [`super`]'s validation: each
//! function checks its block and reports every problem through the shared `Ctx`.

use super::*;

pub(super) fn convert_scaling(ctx: &mut Ctx<'_>, raw: &RawPolicy) -> (Scaling, Location) {
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
