//! Reading metrics from Prometheus: the `source: prometheus` metrics of a policy, through the
//! HTTP API (`/api/v1/query` at evaluation time, `/api/v1/query_range` for `vmscaler record`).
//!
//! A query is sent as a form POST (no length limit on PromQL), with an optional bearer token,
//! over HTTP or HTTPS (system roots, or the CA file of the config), each bounded by the
//! configured timeout. Every due pool's queries of one tick run concurrently, at most
//! `max_concurrent_queries` at a time.
//!
//! The answer is a datapoint only when it is unambiguous: a pool-level query must return
//! exactly one series (or a scalar) with a finite value; a per-instance query's series are
//! matched to the running members by the metric's `instance_label` and combined like
//! CloudWatch's per-instance series. No series, several series where one is expected, a NaN or
//! an infinity, a Prometheus error, a timeout: the metric is *missing* for this evaluation,
//! with the reason, and missing data never scales in (the engine's rule).
//!
//! A value read at `t = now - metric_offset` describes the metric's `period` ending at `t`, so
//! it is kept as a [`Sample`] at `t - period`, exactly like the newest complete CloudWatch
//! datapoint.
//!
//! Not here: deciding (the engine), CloudWatch (see [`crate::aws::metrics`]).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, anyhow};
use http_body_util::{BodyExt, Full, Limited};
use hyper::Request;
use hyper::body::Bytes;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jiff::{SignedDuration, Timestamp};
use serde::Deserialize;
use tokio::task::JoinSet;
use vmscaler_engine::Sample;
use vmscaler_engine::policy::{Aggregation, INSTANCE_IDS_PLACEHOLDER, MetricSource, MetricSpec};

use crate::aws::metrics::PoolQuery;

/// Default [`PrometheusConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`PrometheusConfig::max_concurrent_queries`].
pub const DEFAULT_MAX_CONCURRENT_QUERIES: usize = 8;
/// Largest answer read from Prometheus; a bigger one is an error, not an allocation.
const MAX_RESPONSE_BYTES: usize = 16 << 20;

/// The daemon config's `prometheus:` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// Base URL of the server (`http://prometheus:9090`, or with a path prefix).
    pub url: String,
    /// A file holding a bearer token sent with every query.
    pub bearer_token_file: Option<PathBuf>,
    /// PEM file of the CA(s) that sign the server's certificate (default: the system roots).
    pub ca_file: Option<PathBuf>,
    /// Longest one query may take, connecting included.
    pub timeout: Duration,
    /// Queries in flight at once.
    pub max_concurrent_queries: usize,
}

impl PrometheusConfig {
    pub fn new(url: impl Into<String>) -> PrometheusConfig {
        PrometheusConfig {
            url: url.into(),
            bearer_token_file: None,
            ca_file: None,
            timeout: DEFAULT_TIMEOUT,
            max_concurrent_queries: DEFAULT_MAX_CONCURRENT_QUERIES,
        }
    }
}

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A Prometheus HTTP API client. Cheap to clone (the connection pool is shared).
#[derive(Clone)]
pub struct PromClient {
    base: String,
    token: Option<Arc<str>>,
    timeout: Duration,
    max_concurrent: usize,
    client: HttpsClient,
}

impl std::fmt::Debug for PromClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromClient").field("base", &self.base).field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

/// A series' labels.
type Labels = BTreeMap<String, String>;

/// One series of an instant query.
#[derive(Debug, Clone, PartialEq)]
pub struct InstantSeries {
    pub labels: BTreeMap<String, String>,
    pub at: Timestamp,
    pub value: f64,
}

/// One series of a range query, points in time order.
#[derive(Debug, Clone, PartialEq)]
pub struct RangeSeries {
    pub labels: BTreeMap<String, String>,
    pub points: Vec<(Timestamp, f64)>,
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum ApiData {
    Vector(Vec<ApiVector>),
    Matrix(Vec<ApiMatrix>),
    Scalar(ApiPoint),
    String(serde::de::IgnoredAny),
}

#[derive(Debug, Deserialize)]
struct ApiVector {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: ApiPoint,
}

#[derive(Debug, Deserialize)]
struct ApiMatrix {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<ApiPoint>,
}

/// `[ <unix seconds>, "<value>" ]`
#[derive(Debug, Deserialize)]
struct ApiPoint(f64, String);

impl ApiPoint {
    fn parse(&self) -> Result<(Timestamp, f64), String> {
        let at = SignedDuration::try_from_secs_f64(self.0)
            .ok()
            .and_then(|d| Timestamp::UNIX_EPOCH.checked_add(d).ok())
            .ok_or_else(|| format!("timestamp {} is out of range", self.0))?;
        let value = self.1.trim().parse::<f64>().map_err(|_| format!("value {:?} is not a number", self.1))?;
        Ok((at, value))
    }
}

/// `application/x-www-form-urlencoded` of one value.
fn form_escape(out: &mut String, s: &str) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        form_escape(&mut out, k);
        out.push('=');
        form_escape(&mut out, v);
    }
    out
}

/// Unix seconds with milliseconds, as the API takes them.
fn api_time(t: Timestamp) -> String {
    let ms = t.as_millisecond();
    format!("{}.{:03}", ms.div_euclid(1000), ms.rem_euclid(1000))
}

impl PromClient {
    /// A client for `cfg`: reads the token and CA files now, so a wrong path fails at start-up.
    pub fn new(cfg: &PrometheusConfig) -> anyhow::Result<PromClient> {
        let base = cfg.url.trim().trim_end_matches('/').to_owned();
        let uri: hyper::Uri = base.parse().with_context(|| format!("prometheus.url {base:?} is not a URL"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(anyhow!("prometheus.url {base:?} must be an http:// or https:// URL with a host"));
        }
        let token = match &cfg.bearer_token_file {
            None => None,
            Some(p) => {
                let t = std::fs::read_to_string(p)
                    .with_context(|| format!("prometheus.bearer_token_file: cannot read {}", p.display()))?;
                let t = t.trim().to_owned();
                if t.is_empty() || t.chars().any(|c| c.is_control()) {
                    return Err(anyhow!(
                        "prometheus.bearer_token_file: {} must hold one token on one line",
                        p.display()
                    ));
                }
                Some(Arc::from(t))
            }
        };
        let mut roots = rustls::RootCertStore::empty();
        match &cfg.ca_file {
            Some(p) => {
                use rustls_pki_types::CertificateDer;
                use rustls_pki_types::pem::PemObject;
                let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(p)
                    .with_context(|| format!("prometheus.ca_file: cannot read {}", p.display()))?
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("prometheus.ca_file: {} is not PEM", p.display()))?;
                if certs.is_empty() {
                    return Err(anyhow!("prometheus.ca_file: {} holds no certificate", p.display()));
                }
                for c in certs {
                    roots
                        .add(c)
                        .with_context(|| format!("prometheus.ca_file: {} holds a bad certificate", p.display()))?;
                }
            }
            None => {
                // Only needed for https; a host without system roots can still use http.
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS configuration")?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.timeout));
        http.set_nodelay(true);
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(cfg.max_concurrent_queries.max(1))
            .build(https);
        Ok(PromClient { base, token, timeout: cfg.timeout, max_concurrent: cfg.max_concurrent_queries.max(1), client })
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    async fn call(&self, path: &str, params: &[(&str, &str)]) -> Result<ApiData, String> {
        let body = form(params);
        let mut req =
            Request::post(format!("{}{path}", self.base)).header(CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(t) = &self.token {
            req = req.header(AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::from(body))).map_err(|e| format!("bad request: {e}"))?;
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| format!("{}: {}", self.base, error_chain(&e)))?;
            let status = resp.status();
            let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok::<_, String>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer from {} within {:?}", self.base, self.timeout))??;
        let parsed: Result<ApiResponse, _> = serde_json::from_slice(&bytes);
        match parsed {
            Ok(r) if r.status == "success" => r.data.ok_or_else(|| "answer without data".to_owned()),
            Ok(r) => Err(format!(
                "Prometheus error ({}): {}",
                r.error_type.as_deref().unwrap_or("unknown"),
                r.error.as_deref().unwrap_or("no message")
            )),
            Err(_) => {
                let text = String::from_utf8_lossy(&bytes);
                let text: String = text.trim().chars().take(200).collect();
                Err(format!("HTTP {status} from {}{path}: {text}", self.base))
            }
        }
    }

    /// An instant query at `at`: a vector, or a scalar as one series without labels.
    pub async fn instant(&self, query: &str, at: Timestamp) -> Result<Vec<InstantSeries>, String> {
        let time = api_time(at);
        let timeout = format!("{}ms", self.timeout.as_millis());
        match self.call("/api/v1/query", &[("query", query), ("time", &time), ("timeout", &timeout)]).await? {
            ApiData::Vector(v) => v
                .into_iter()
                .map(|s| s.value.parse().map(|(at, value)| InstantSeries { labels: s.metric, at, value }))
                .collect(),
            ApiData::Scalar(p) => {
                let (at, value) = p.parse()?;
                Ok(vec![InstantSeries { labels: BTreeMap::new(), at, value }])
            }
            ApiData::Matrix(_) => Err("the query returns a range vector: an instant vector is needed".to_owned()),
            ApiData::String(_) => Err("the query returns a string: a number is needed".to_owned()),
        }
    }

    /// A range query over `[start, end]` every `step`.
    pub async fn range(
        &self,
        query: &str,
        start: Timestamp,
        end: Timestamp,
        step: Duration,
    ) -> Result<Vec<RangeSeries>, String> {
        let (start, end) = (api_time(start), api_time(end));
        let step = format!("{}s", step.as_secs().max(1));
        let timeout = format!("{}ms", self.timeout.as_millis());
        let params = [("query", query), ("start", &start), ("end", &end), ("step", &step), ("timeout", &timeout)];
        match self.call("/api/v1/query_range", &params).await? {
            ApiData::Matrix(m) => m
                .into_iter()
                .map(|s| {
                    let points = s.values.iter().map(ApiPoint::parse).collect::<Result<Vec<_>, _>>()?;
                    Ok(RangeSeries { labels: s.metric, points })
                })
                .collect(),
            _ => Err("a range query did not return a matrix".to_owned()),
        }
    }
}

/// An error and its sources on one line (hyper's own message is only the outermost part).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let _ = write!(s, ": {c}");
        cur = c.source();
    }
    s
}

/// Whether a policy reads anything from Prometheus.
pub fn uses_prometheus(policy: &vmscaler_engine::Policy) -> bool {
    policy.metrics.iter().any(|m| matches!(m.source, MetricSource::Prometheus { .. }))
}

/// The query to send for `spec` given the pool's running members; `None` for a CloudWatch
/// metric. `${instance_ids}` becomes a regular-expression alternation of the member ids.
pub fn query_for(spec: &MetricSpec, instance_ids: &[String]) -> Option<String> {
    let MetricSource::Prometheus { query, .. } = &spec.source else { return None };
    if !query.contains(INSTANCE_IDS_PLACEHOLDER) {
        return Some(query.clone());
    }
    let alternation: Vec<String> = instance_ids.iter().map(|id| regex_escape(id)).collect();
    Some(query.replace(INSTANCE_IDS_PLACEHOLDER, &alternation.join("|")))
}

/// Escapes what RE2 would read as syntax (instance ids never have any; names in labels might).
fn regex_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.+*?()|[]{}^$\"".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    // Inside a PromQL double-quoted string a backslash must itself be escaped.
    out.replace('\\', "\\\\")
}

/// One metric's answer turned into a pool value, or the reason it is missing.
pub fn pool_value(spec: &MetricSpec, instance_ids: &[String], series: &[InstantSeries]) -> Result<f64, String> {
    let MetricSource::Prometheus { instance_label, .. } = &spec.source else {
        return Err("not a Prometheus metric".to_owned());
    };
    match spec.per_instance {
        None => match series {
            [] => Err("no series (the query matched nothing)".to_owned()),
            [s] if s.value.is_finite() => Ok(s.value),
            [s] => Err(format!("the value is {} (not a number)", s.value)),
            many => {
                Err(format!("{} series where one is expected (aggregate them in the query, e.g. sum(...))", many.len()))
            }
        },
        Some(agg) => member_value(agg, instance_label, instance_ids, series.iter().map(|s| (&s.labels, s.value))),
    }
}

/// Per-instance series of the running members, combined; the reason when none is usable.
fn member_value<'a>(
    agg: Aggregation,
    label: &str,
    instance_ids: &[String],
    series: impl Iterator<Item = (&'a BTreeMap<String, String>, f64)>,
) -> Result<f64, String> {
    if instance_ids.is_empty() {
        return Err("no running member to read".to_owned());
    }
    let mut seen = 0usize;
    let mut values = Vec::new();
    for (labels, v) in series {
        seen += 1;
        if labels.get(label).is_some_and(|id| instance_ids.contains(id)) && v.is_finite() {
            values.push(v);
        }
    }
    agg.apply(values)
        .ok_or_else(|| format!("no finite value for a running member among {seen} series (matched by label {label:?})"))
}

/// What the Prometheus metrics of one pool gave at one evaluation.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromPool {
    /// One datapoint per metric that had a usable value, by metric id.
    pub samples: BTreeMap<String, Sample>,
    /// Metrics without one, with the reason (`queue: no series (...)`).
    pub missing: Vec<String>,
}

/// Reads every Prometheus metric of `pools` at `now - offset`, at most
/// `max_concurrent_queries` at a time. Every pool with a Prometheus metric gets an entry.
pub async fn fetch_pools(
    client: &PromClient,
    pools: &[PoolQuery<'_>],
    now: Timestamp,
    offset: Duration,
) -> BTreeMap<String, PromPool> {
    let at = now.checked_sub(offset).unwrap_or(now);
    let mut out: BTreeMap<String, PromPool> = BTreeMap::new();
    let mut jobs = Vec::new();
    for (p, q) in pools.iter().enumerate() {
        for (m, spec) in q.policy.metrics.iter().enumerate() {
            if let Some(query) = query_for(spec, &q.instance_ids) {
                out.entry(q.policy.name.clone()).or_default();
                jobs.push((p, m, query));
            }
        }
    }
    let mut answers: Vec<Option<Result<Vec<InstantSeries>, String>>> = Vec::with_capacity(jobs.len());
    answers.resize_with(jobs.len(), || None);
    let mut tasks: JoinSet<(usize, Result<Vec<InstantSeries>, String>)> = JoinSet::new();
    let mut next = jobs.iter().enumerate();
    loop {
        while tasks.len() < client.max_concurrent {
            let Some((j, (_, _, query))) = next.next() else { break };
            let (client, query) = (client.clone(), query.clone());
            tasks.spawn(async move { (j, client.instant(&query, at).await) });
        }
        let Some(joined) = tasks.join_next().await else { break };
        match joined {
            Ok((j, r)) => {
                if let Some(slot) = answers.get_mut(j) {
                    *slot = Some(r);
                }
            }
            Err(e) => tracing::error!(error = %e, "prometheus query task failed"),
        }
    }
    for ((p, m, _), answer) in jobs.iter().zip(answers) {
        let q = &pools[*p];
        let spec = &q.policy.metrics[*m];
        let entry = out.entry(q.policy.name.clone()).or_default();
        let value = match answer {
            Some(Ok(series)) => pool_value(spec, &q.instance_ids, &series),
            Some(Err(e)) => Err(e),
            None => Err("the query task failed".to_owned()),
        };
        match value {
            Ok(value) => {
                let sample_at = vmscaler_engine::duration::before(at, spec.period);
                entry.samples.insert(spec.id.clone(), Sample { at: sample_at, value });
            }
            Err(why) => entry.missing.push(format!("{}: {why}", spec.id)),
        }
    }
    out
}

/// A pool's Prometheus metrics over `[from, end]`, one point per metric period, for
/// `vmscaler record`: per metric id, the pool-level points (per-instance series combined over
/// `instance_ids`, here every member that may have run), each at the start of its period.
pub async fn read_history(
    client: &PromClient,
    policy: &vmscaler_engine::Policy,
    instance_ids: &[String],
    from: Timestamp,
    end: Timestamp,
) -> (BTreeMap<String, Vec<Sample>>, Vec<String>) {
    let mut samples = BTreeMap::new();
    let mut problems = Vec::new();
    for spec in &policy.metrics {
        let Some(query) = query_for(spec, instance_ids) else { continue };
        let MetricSource::Prometheus { instance_label, .. } = &spec.source else { continue };
        // Prometheus caps a range query at 11,000 points per series: split long ranges.
        let step = spec.period.max(Duration::from_secs(1));
        let chunk = step.saturating_mul(10_000);
        let mut by_time: BTreeMap<Timestamp, Vec<(Labels, f64)>> = BTreeMap::new();
        let mut start = from;
        let mut failed = None;
        while start <= end {
            let stop = vmscaler_engine::duration::after(start, chunk).min(end);
            match client.range(&query, start, stop, step).await {
                Ok(series) => {
                    for s in series {
                        for (at, v) in s.points {
                            by_time.entry(at).or_default().push((s.labels.clone(), v));
                        }
                    }
                }
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
            start = vmscaler_engine::duration::after(stop, step);
        }
        if let Some(e) = failed {
            problems.push(format!("{}: {e}", spec.id));
            continue;
        }
        let mut points = Vec::new();
        let mut skipped = 0usize;
        for (at, series) in by_time {
            let value = match spec.per_instance {
                None => match series.as_slice() {
                    [(_, v)] if v.is_finite() => Ok(*v),
                    [_] => Err(()),
                    _ => Err(()),
                },
                Some(agg) => {
                    member_value(agg, instance_label, instance_ids, series.iter().map(|(l, v)| (l, *v))).map_err(|_| ())
                }
            };
            match value {
                Ok(value) => points.push(Sample { at: vmscaler_engine::duration::before(at, spec.period), value }),
                Err(()) => skipped += 1,
            }
        }
        if skipped > 0 {
            problems.push(format!(
                "{}: {skipped} point(s) skipped (no single finite value: aggregate the query to one series)",
                spec.id
            ));
        }
        if points.is_empty() {
            problems.push(format!("{}: no datapoints from Prometheus in the period", spec.id));
        } else {
            samples.insert(spec.id.clone(), points);
        }
    }
    (samples, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmscaler_engine::policy::parse_policy;

    fn policy() -> vmscaler_engine::Policy {
        let text = "name: p\npool: {tag: {key: k, value: v}}\nmin: 1\nmax: 9\nmetrics:\n  - {id: q, source: prometheus, query: 'sum(queue)', target_per_instance: 5}\n  - {id: gpu, source: prometheus, query: 'gpu{instance_id=~\"${instance_ids}\"}', per_instance: max, target: 70}\n";
        let r = parse_policy("p.yaml", text);
        r.policy.unwrap_or_else(|| panic!("{:?}", r.diagnostics))
    }

    fn series(labels: &[(&str, &str)], value: f64) -> InstantSeries {
        InstantSeries {
            labels: labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            at: Timestamp::UNIX_EPOCH,
            value,
        }
    }

    #[test]
    fn placeholder_and_form_encoding() {
        let p = policy();
        let ids = ["i-0a".to_owned(), "i-0b".to_owned()];
        assert_eq!(query_for(&p.metrics[1], &ids).as_deref(), Some("gpu{instance_id=~\"i-0a|i-0b\"}"));
        assert_eq!(query_for(&p.metrics[0], &ids).as_deref(), Some("sum(queue)"));
        assert_eq!(form(&[("query", "up{a=\"b c\"}"), ("time", "1.500")]), "query=up%7Ba%3D%22b%20c%22%7D&time=1.500");
        assert_eq!(api_time(Timestamp::from_millisecond(1_700_000_000_250).expect("t")), "1700000000.250");
        assert_eq!(regex_escape("a.b"), "a\\\\.b");
    }

    #[test]
    fn only_an_unambiguous_answer_is_a_value() {
        let p = policy();
        let ids = ["i-0a".to_owned(), "i-0b".to_owned()];
        let q = &p.metrics[0];
        assert_eq!(pool_value(q, &ids, &[series(&[], 12.0)]), Ok(12.0));
        assert!(pool_value(q, &ids, &[]).is_err_and(|e| e.starts_with("no series")));
        let two = [series(&[("a", "1")], 1.0), series(&[("a", "2")], 2.0)];
        assert!(pool_value(q, &ids, &two).is_err_and(|e| e.starts_with("2 series where one is expected")));
        assert!(pool_value(q, &ids, &[series(&[], f64::NAN)]).is_err_and(|e| e.contains("NaN")));
        let gpu = &p.metrics[1];
        let per = [
            series(&[("instance_id", "i-0a")], 40.0),
            series(&[("instance_id", "i-0b")], 90.0),
            series(&[("instance_id", "i-other")], 100.0),
        ];
        assert_eq!(pool_value(gpu, &ids, &per), Ok(90.0), "max over running members only");
        assert!(pool_value(gpu, &[], &per).is_err_and(|e| e.contains("no running member")));
        let stray = [series(&[("instance_id", "i-other")], 100.0)];
        assert!(pool_value(gpu, &ids, &stray).is_err_and(|e| e.contains("label \"instance_id\"")));
    }

    #[test]
    fn api_answers_parse() {
        let v: ApiResponse = serde_json::from_str(
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"q"},"value":[1700000000.5,"NaN"]}]}}"#,
        )
        .expect("vector");
        let Some(ApiData::Vector(v)) = v.data else { panic!("vector") };
        assert!(v[0].value.parse().is_ok_and(|(_, x)| x.is_nan()));
        let s: ApiResponse =
            serde_json::from_str(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#)
                .expect("scalar");
        let Some(ApiData::Scalar(p)) = s.data else { panic!("scalar") };
        assert!(p.parse().is_ok_and(|(_, x)| x == f64::INFINITY));
        let e: ApiResponse =
            serde_json::from_str(r#"{"status":"error","errorType":"bad_data","error":"parse error"}"#).expect("error");
        assert_eq!((e.status.as_str(), e.error_type.as_deref()), ("error", Some("bad_data")));
    }
}
