//! `metrics:`: each metric's source (CloudWatch or Prometheus), statistic, period, target and weight. Part of [`super`]'s validation: each
//! function checks its block and reports every problem through the shared `Ctx`.

use super::*;

pub(super) fn convert_metrics(ctx: &mut Ctx<'_>, raw: &RawPolicy, root: Location) -> Vec<MetricSpec> {
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

pub(super) fn convert_metric(
    ctx: &mut Ctx<'_>,
    m: &RawMetric,
    at: Location,
    f: &dyn Fn(&str) -> String,
) -> Option<MetricSpec> {
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
pub(super) fn convert_source(
    ctx: &mut Ctx<'_>,
    m: &RawMetric,
    at: Location,
    f: &dyn Fn(&str) -> String,
) -> Option<MetricSource> {
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
