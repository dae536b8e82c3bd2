//! The `predictive:` block: the forecast's history, seasons, quantile, margin, lead and error gate. Part of [`super`]'s validation: each
//! function checks its block and reports every problem through the shared `Ctx`.

use super::*;

/// Longest history the forecast may learn from: CloudWatch keeps 5-minute data for 63 days.
pub(super) const MAX_PREDICTIVE_HISTORY: Duration = Duration::from_secs(63 * 86_400);
/// Shortest: the model needs three days before it forecasts (one to check itself on).
pub(super) const MIN_PREDICTIVE_HISTORY: Duration = Duration::from_secs(3 * 86_400);

pub(super) fn convert_predictive(ctx: &mut Ctx<'_>, raw: &super::raw::RawPredictive) -> Predictive {
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
pub(super) fn fraction(ctx: &mut Ctx<'_>, v: &Option<S<Text>>, field: &str, lo: f64, hi: f64) -> Option<f64> {
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
