//! The `composite:` block (the composite-threshold rule) and each metric's `cap`. Part of [`super`]'s validation: each
//! function checks its block and reports every problem through the shared `Ctx`.

use super::*;

/// The `composite` block, and each metric's `cap` (which only means something with it).
pub(super) fn convert_composite(ctx: &mut Ctx<'_>, raw: &RawPolicy) -> Option<Composite> {
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
