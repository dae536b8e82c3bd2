//! CloudWatch over the AWS JSON 1.0 protocol instead of the SDK's Smithy RPC v2 CBOR.
//!
//! The Rust SDK speaks only RPC v2 CBOR to CloudWatch. AWS also serves CloudWatch over AWS
//! JSON 1.0 (what boto3 and the AWS CLI use), and moto server understands only that. So the
//! CloudWatch client carries two pieces that translate, with the same shapes on both sides:
//! - [`JsonRequests`], an interceptor that rewrites each request *before it is signed*:
//!   `POST /service/{Service}/operation/{Op}` with a CBOR body becomes `POST /` with
//!   `X-Amz-Target: {Service}.{Op}` and a JSON body (CBOR timestamps become epoch seconds);
//! - [`JsonResponses`], an HTTP client wrapper that reads each JSON response and hands the SDK
//!   the equivalent CBOR (epoch-second timestamps tagged, metric values as doubles).
//!
//! Only the CBOR subset the SDK writes and the shapes vmscaler reads are supported: no byte
//! strings (no CloudWatch operation vmscaler calls has a blob), and no request compression
//! (the client disables it; a gzipped body is refused). Not here: any other service.

use std::fmt;

use aws_sdk_cloudwatch::config::interceptors::BeforeTransmitInterceptorContextMut;
use aws_sdk_cloudwatch::config::{Intercept, RuntimeComponents, SharedHttpClient};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponentsBuilder;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::byte_stream::ByteStream;
use aws_smithy_types::config_bag::ConfigBag;
use serde_json::{Map, Number, Value};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

const JSON: &str = "application/x-amz-json-1.0";
const CBOR: &str = "application/cbor";

/// Response members that are timestamps (epoch seconds in JSON, CBOR tag 1 for the SDK).
const TIMESTAMP_KEYS: [&str; 9] = [
    "Timestamps",
    "Timestamp",
    "StartTime",
    "EndTime",
    "LastUpdated",
    "StateUpdatedTimestamp",
    "StateTransitionedTimestamp",
    "AlarmConfigurationUpdatedTimestamp",
    "StateReasonDataTimestamp",
];
/// Response members that are doubles even when JSON writes them as integers.
const DOUBLE_KEYS: [&str; 8] = ["Values", "Value", "Sum", "Average", "Minimum", "Maximum", "SampleCount", "Threshold"];

/// Rewrites RPC v2 CBOR requests as AWS JSON 1.0 requests, before signing.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonRequests;

impl Intercept for JsonRequests {
    fn name(&self) -> &'static str {
        "vmscaler.JsonRequests"
    }

    fn modify_before_signing(
        &self,
        context: &mut BeforeTransmitInterceptorContextMut<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        to_json_request(context.request_mut())
    }
}

fn to_json_request(request: &mut HttpRequest) -> Result<(), BoxError> {
    if request.headers().get("smithy-protocol") != Some("rpc-v2-cbor") {
        return Ok(());
    }
    let uri = request.uri().to_owned();
    let Some(at) = uri.find("/service/") else { return Ok(()) };
    let (base, rest) = uri.split_at(at);
    let mut parts = rest.trim_start_matches("/service/").splitn(3, '/');
    let (Some(service), Some("operation"), Some(op)) = (parts.next(), parts.next(), parts.next()) else {
        return Ok(());
    };
    let target = format!("{service}.{}", op.split('?').next().unwrap_or(op));
    if request.headers().get("content-encoding").is_some() {
        return Err("compressed cloudwatch requests cannot be rewritten: disable request compression".into());
    }
    let cbor = request.body().bytes().ok_or("cloudwatch request body is not in memory")?;
    let json = if cbor.is_empty() { Value::Object(Map::new()) } else { decode(cbor)? };
    let body = serde_json::to_vec(&json)?;
    request.set_uri(format!("{base}/")).map_err(|e| format!("cannot rewrite the request uri: {e}"))?;
    let headers = request.headers_mut();
    headers.remove("smithy-protocol");
    headers.try_insert("content-type", JSON)?;
    // Ask for JSON back: LocalStack honours `accept` and would otherwise answer in CBOR (with
    // millisecond timestamps, which the SDK reads as seconds).
    headers.try_insert("accept", JSON)?;
    headers.try_insert("x-amz-target", target)?;
    headers.try_insert("content-length", body.len().to_string())?;
    *request.body_mut() = SdkBody::from(body);
    Ok(())
}

/// Wraps an HTTP client so that AWS JSON 1.0 responses reach the SDK as RPC v2 CBOR.
#[derive(Debug, Clone)]
pub struct JsonResponses {
    inner: SharedHttpClient,
}

impl JsonResponses {
    /// Wraps `inner`, or the SDK's default HTTPS client (hyper 1, rustls with aws-lc, proxy
    /// settings from the environment) when there is none.
    pub fn new(inner: Option<SharedHttpClient>) -> JsonResponses {
        JsonResponses { inner: inner.unwrap_or_else(default_https_client) }
    }
}

/// The same client the SDK builds when none is configured.
fn default_https_client() -> SharedHttpClient {
    use aws_smithy_http_client::proxy::ProxyConfig;
    use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
    use aws_smithy_http_client::{Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, runtime_components| {
        let mut conn = ConnectorBuilder::default().tls_provider(Provider::Rustls(CryptoMode::AwsLc));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = runtime_components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}

impl HttpClient for JsonResponses {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(JsonConnector { inner: self.inner.http_connector(settings, components) })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), BoxError> {
        self.inner.validate_base_client_config(runtime_components, cfg)
    }
}

struct JsonConnector {
    inner: SharedHttpConnector,
}

impl fmt::Debug for JsonConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonConnector").finish_non_exhaustive()
    }
}

impl HttpConnector for JsonConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let translate =
            request.headers().get("content-type") == Some(JSON) && request.headers().get("x-amz-target").is_some();
        let call = self.inner.call(request);
        HttpConnectorFuture::new(async move {
            let mut response = call.await?;
            if !translate {
                return Ok(response);
            }
            let body = ByteStream::new(response.take_body())
                .collect()
                .await
                .map_err(|e| ConnectorError::io(Box::new(e)))?
                .to_vec();
            let converted = match serde_json::from_slice::<Value>(&body) {
                Ok(json) => Some(encode(&json)),
                Err(_) if body.is_empty() => Some(encode(&Value::Object(Map::new()))),
                Err(_) => None, // not JSON (an HTML error page): pass it on for the SDK to report
            };
            match converted {
                Some(cbor) => {
                    let headers = response.headers_mut();
                    headers.insert("content-type", CBOR);
                    headers.insert("smithy-protocol", "rpc-v2-cbor");
                    headers.insert("content-length", cbor.len().to_string());
                    *response.body_mut() = SdkBody::from(cbor);
                }
                None => *response.body_mut() = SdkBody::from(body),
            }
            Ok(response)
        })
    }
}

/// Decodes one CBOR data item into JSON. Timestamps (tag 1) become epoch-second numbers.
fn decode(bytes: &[u8]) -> Result<Value, BoxError> {
    let mut r = Reader { bytes, pos: 0 };
    let v = r.item()?.ok_or("unexpected break in cbor")?;
    if r.pos != bytes.len() {
        return Err("trailing bytes after cbor item".into());
    }
    Ok(v)
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], BoxError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or("truncated cbor")?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn uint(&mut self, info: u8) -> Result<Option<u64>, BoxError> {
        Ok(Some(match info {
            0..=23 => u64::from(info),
            24 => u64::from(self.take(1)?[0]),
            25 => u64::from(u16::from_be_bytes(self.take(2)?.try_into()?)),
            26 => u64::from(u32::from_be_bytes(self.take(4)?.try_into()?)),
            27 => u64::from_be_bytes(self.take(8)?.try_into()?),
            31 => return Ok(None), // indefinite length
            _ => return Err("invalid cbor length".into()),
        }))
    }

    fn len(&mut self, info: u8) -> Result<Option<usize>, BoxError> {
        match self.uint(info)? {
            Some(n) => Ok(Some(usize::try_from(n)?)),
            None => Ok(None),
        }
    }

    fn text(&mut self, info: u8) -> Result<String, BoxError> {
        match self.len(info)? {
            Some(n) => Ok(std::str::from_utf8(self.take(n)?)?.to_owned()),
            None => {
                let mut s = String::new();
                while let Some(chunk) = self.item()? {
                    s.push_str(chunk.as_str().ok_or("bad chunk in indefinite cbor text")?);
                }
                Ok(s)
            }
        }
    }

    /// One item, or `None` at a break (end of an indefinite container).
    fn item(&mut self) -> Result<Option<Value>, BoxError> {
        let head = self.take(1)?[0];
        let (major, info) = (head >> 5, head & 0x1f);
        let value = match major {
            0 => Value::from(self.uint(info)?.ok_or("indefinite integer")?),
            1 => {
                let n = self.uint(info)?.ok_or("indefinite integer")?;
                let n = i64::try_from(n).map_err(|_| "negative integer out of range")?;
                Value::from(-1 - n)
            }
            2 => return Err("cbor byte strings are not supported".into()),
            3 => Value::String(self.text(info)?),
            4 => {
                let mut items = Vec::new();
                match self.len(info)? {
                    Some(n) => {
                        for _ in 0..n {
                            items.push(self.item()?.ok_or("unexpected break in array")?);
                        }
                    }
                    None => {
                        while let Some(v) = self.item()? {
                            items.push(v);
                        }
                    }
                }
                Value::Array(items)
            }
            5 => {
                let mut map = Map::new();
                let n = self.len(info)?;
                let mut i = 0;
                loop {
                    if n.is_some_and(|n| i == n) {
                        break;
                    }
                    let Some(key) = self.item()? else {
                        if n.is_none() {
                            break;
                        }
                        return Err("unexpected break in map".into());
                    };
                    let key = key.as_str().ok_or("non-text map key")?.to_owned();
                    let v = self.item()?.ok_or("map key without value")?;
                    map.insert(key, v);
                    i += 1;
                }
                Value::Object(map)
            }
            6 => {
                self.uint(info)?; // tag number: 1 (epoch timestamp) reads as its number
                self.item()?.ok_or("tag without item")?
            }
            _ => match info {
                20 => Value::Bool(false),
                21 => Value::Bool(true),
                22 | 23 => Value::Null,
                25 => float(f64::from(half(u16::from_be_bytes(self.take(2)?.try_into()?)))),
                26 => float(f64::from(f32::from_be_bytes(self.take(4)?.try_into()?))),
                27 => float(f64::from_be_bytes(self.take(8)?.try_into()?)),
                31 => return Ok(None),
                _ => return Err("unsupported cbor simple value".into()),
            },
        };
        Ok(Some(value))
    }
}

fn float(f: f64) -> Value {
    Number::from_f64(f).map_or(Value::Null, Value::Number)
}

/// IEEE 754 half precision to single.
fn half(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = i32::from((h >> 10) & 0x1f);
    let frac = f32::from(h & 0x3ff);
    match exp {
        0 => sign * frac * 2f32.powi(-24),
        31 if frac == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        _ => sign * (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

/// Encodes JSON as CBOR, tagging timestamps and writing known doubles as doubles.
fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write(&mut out, v, Hint::None);
    out
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Hint {
    None,
    Timestamp,
    Double,
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    // Each arm's value fits the width it is written with.
    match n {
        0..=23 => out.push(m | u8::try_from(n).unwrap_or(0)),
        24..=0xff => out.extend([m | 24, u8::try_from(n).unwrap_or(0)]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend(u16::try_from(n).unwrap_or(0).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend(u32::try_from(n).unwrap_or(0).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend(n.to_be_bytes());
        }
    }
}

fn write(out: &mut Vec<u8>, v: &Value, hint: Hint) {
    match v {
        Value::Null => out.push(0xf6),
        Value::Bool(b) => out.push(if *b { 0xf5 } else { 0xf4 }),
        Value::Number(n) => {
            if hint == Hint::Timestamp {
                head(out, 6, 1);
            }
            match (n.as_u64(), n.as_i64()) {
                (Some(u), _) if hint != Hint::Double => head(out, 0, u),
                (None, Some(i)) if hint != Hint::Double => head(out, 1, i.unsigned_abs() - 1),
                _ => {
                    out.push(0xfb);
                    out.extend(n.as_f64().unwrap_or(f64::NAN).to_be_bytes());
                }
            }
        }
        Value::String(s) => {
            if hint == Hint::Timestamp {
                // Some servers write ISO 8601: the SDK wants epoch seconds.
                if let Ok(t) = s.parse::<jiff::Timestamp>() {
                    head(out, 6, 1);
                    out.push(0xfb);
                    out.extend((t.as_millisecond() as f64 / 1000.0).to_be_bytes());
                    return;
                }
            }
            head(out, 3, s.len() as u64);
            out.extend(s.as_bytes());
        }
        Value::Array(items) => {
            head(out, 4, items.len() as u64);
            for item in items {
                write(out, item, hint);
            }
        }
        Value::Object(map) => {
            head(out, 5, map.len() as u64);
            for (k, item) in map {
                head(out, 3, k.len() as u64);
                out.extend(k.as_bytes());
                let hint = if TIMESTAMP_KEYS.contains(&k.as_str()) {
                    Hint::Timestamp
                } else if DOUBLE_KEYS.contains(&k.as_str()) {
                    Hint::Double
                } else {
                    Hint::None
                };
                write(out, item, hint);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_become_json_and_ask_for_json_back() {
        let mut req = HttpRequest::new(SdkBody::from(encode(&serde_json::json!({"NextToken": "t"}))));
        req.set_uri("http://127.0.0.1:4566/service/GraniteServiceVersion20100801/operation/GetMetricData").unwrap();
        req.headers_mut().insert("smithy-protocol", "rpc-v2-cbor");
        req.headers_mut().insert("accept", CBOR);
        req.headers_mut().insert("content-type", CBOR);
        to_json_request(&mut req).unwrap();
        assert_eq!(req.uri(), "http://127.0.0.1:4566/");
        assert_eq!(req.headers().get("accept"), Some(JSON), "LocalStack answers in whatever `accept` asks for");
        assert_eq!(req.headers().get("content-type"), Some(JSON));
        assert_eq!(req.headers().get("x-amz-target"), Some("GraniteServiceVersion20100801.GetMetricData"));
        assert_eq!(req.headers().get("smithy-protocol"), None);
        let body: Value = serde_json::from_slice(req.body().bytes().unwrap()).unwrap();
        assert_eq!(body, serde_json::json!({"NextToken": "t"}));
    }

    #[test]
    fn cbor_round_trips_through_json() {
        let json = serde_json::json!({
            "MetricDataQueries": [{"Id": "q0", "MetricStat": {"Period": 60, "Stat": "Average"}, "ReturnData": true}],
            "Negative": -5,
            "Big": 70000,
            "Nothing": null,
            "Text": "é and more than twenty-three bytes of text"
        });
        assert_eq!(decode(&encode(&json)).unwrap(), json);
    }

    #[test]
    fn timestamps_and_doubles_follow_the_shapes() {
        let json = serde_json::json!({"Timestamps": [1700000000], "Values": [3], "Label": "x"});
        let cbor = encode(&json);
        // Timestamps: tag 1 (0xc1) then the integer; Values: a double even though JSON had 3.
        let ts = [0xc1, 0x1a, 0x65, 0x53, 0xf1, 0x00];
        assert!(cbor.windows(ts.len()).any(|w| w == ts), "{cbor:x?}");
        let three = [0xfb, 0x40, 0x08, 0, 0, 0, 0, 0, 0];
        assert!(cbor.windows(three.len()).any(|w| w == three), "{cbor:x?}");
        let back = decode(&cbor).unwrap();
        assert_eq!(back["Timestamps"][0], 1_700_000_000);
        assert_eq!(back["Values"][0], 3.0);
    }

    #[test]
    fn indefinite_containers_and_small_floats_decode() {
        // {_ "a": [_ 1, 1.5 (f16)], "t": 1(2.5 as f32) }
        let cbor =
            [0xbf, 0x61, b'a', 0x9f, 0x01, 0xf9, 0x3e, 0x00, 0xff, 0x61, b't', 0xc1, 0xfa, 0x40, 0x20, 0, 0, 0xff];
        assert_eq!(decode(&cbor).unwrap(), serde_json::json!({"a": [1, 1.5], "t": 2.5}));
        assert!(decode(&[0xbf, 0x61]).is_err(), "truncated input is an error, not a panic");
        assert!(decode(&[0x41, 0x00]).is_err(), "byte strings are refused");
    }
}
