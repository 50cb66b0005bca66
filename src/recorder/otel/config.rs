//! Where spans go: `--otlp-endpoint` / `--otlp-protocol` and the standard
//! `OTEL_EXPORTER_OTLP_*`, `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`
//! variables, with the OpenTelemetry specification's precedence (flag, then the
//! traces-specific variable, then the generic one).

use anyhow::{bail, Result};
use std::time::Duration;

/// The gRPC method every OTLP/gRPC trace export calls.
pub const GRPC_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

/// A resolved exporter configuration. Header values may be credentials: `Debug`
/// prints their names only.
#[derive(Clone)]
pub struct OtelConfig {
    /// The full URL requests are sent to (`.../v1/traces`, or the gRPC method path).
    pub url: String,
    pub protocol: Protocol,
    pub headers: Vec<(String, String)>,
    pub timeout: Duration,
    pub sample_ratio: f64,
    /// Resource attributes: `service.name` first.
    pub resource: Vec<(String, String)>,
}

impl std::fmt::Debug for OtelConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtelConfig")
            .field("url", &self.display_url())
            .field("protocol", &self.protocol)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("sample_ratio", &self.sample_ratio)
            .field("resource", &self.resource)
            .finish()
    }
}

impl OtelConfig {
    /// Resolves from the flags and the process environment. `Ok(None)`: no endpoint
    /// is configured anywhere, so no exporter runs.
    pub fn resolve(
        endpoint: Option<&str>,
        protocol: Option<&str>,
        sample_ratio: f64,
    ) -> Result<Option<OtelConfig>> {
        Self::resolve_with(endpoint, protocol, sample_ratio, |k| {
            std::env::var(k).ok().filter(|v| !v.trim().is_empty())
        })
    }

    /// [`resolve`](Self::resolve) with an explicit environment (for tests).
    pub fn resolve_with(
        endpoint: Option<&str>,
        protocol: Option<&str>,
        sample_ratio: f64,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<OtelConfig>> {
        // Traces-specific variable first, then the generic one; the name is kept
        // for error messages.
        let pick = |what: &str| {
            let specific = format!("OTEL_EXPORTER_OTLP_TRACES_{what}");
            let generic = format!("OTEL_EXPORTER_OTLP_{what}");
            env(&specific)
                .map(|v| (specific, v))
                .or_else(|| env(&generic).map(|v| (generic, v)))
        };
        let (proto_src, proto_val) = match protocol {
            Some(p) => ("--otlp-protocol".to_string(), p.to_string()),
            None => pick("PROTOCOL").unwrap_or_else(|| ("default".into(), "http/protobuf".into())),
        };
        let protocol = match proto_val.trim() {
            "http/protobuf" => Protocol::HttpProtobuf,
            "grpc" if cfg!(feature = "otlp-grpc") => Protocol::Grpc,
            "grpc" => bail!(
                "{proto_src}: grpc needs perfscope built with the `otlp-grpc` feature \
                 (cargo build --release --features otlp-grpc); or use http/protobuf"
            ),
            "http/json" => {
                bail!("{proto_src}: http/json is not supported; use http/protobuf or grpc")
            }
            other => {
                bail!("{proto_src}: unknown OTLP protocol `{other}`; use http/protobuf or grpc")
            }
        };
        let specific_endpoint = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let generic_endpoint = env("OTEL_EXPORTER_OTLP_ENDPOINT");
        // The flag and the generic variable are base URLs; the traces variable is the
        // full URL for HTTP (as the specification says) and the server for gRPC.
        let (src, base, full) = match (endpoint, specific_endpoint, generic_endpoint) {
            (Some(e), _, _) => ("--otlp-endpoint", e.to_string(), false),
            (None, Some(e), _) => ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e, true),
            (None, None, Some(e)) => ("OTEL_EXPORTER_OTLP_ENDPOINT", e, false),
            (None, None, None) => return Ok(None),
        };
        let base = base.trim();
        let Ok(parsed) = reqwest::Url::parse(base) else {
            bail!("{src}: `{base}` is not a URL; give one like http://127.0.0.1:4318");
        };
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            bail!("{src}: `{base}` must be an http:// or https:// URL, e.g. http://127.0.0.1:4318");
        }
        let url = match protocol {
            Protocol::HttpProtobuf if full => base.to_string(),
            Protocol::HttpProtobuf => {
                let mut u = parsed.clone();
                let path = u.path().trim_end_matches('/').to_string();
                if !path.ends_with("/v1/traces") {
                    u.set_path(&format!("{path}/v1/traces"));
                }
                u.to_string()
            }
            Protocol::Grpc => {
                let mut u = parsed.clone();
                u.set_path(GRPC_PATH);
                u.set_query(None);
                u.to_string()
            }
        };

        let headers = otlp_headers(&env)?;
        let timeout = match pick("TIMEOUT") {
            None => Duration::from_secs(10),
            Some((var, v)) => match v.trim().parse::<u64>() {
                Ok(ms) if ms > 0 => Duration::from_millis(ms),
                _ => bail!("{var}: `{v}` must be a positive number of milliseconds"),
            },
        };
        if let Some((var, v)) = pick("COMPRESSION") {
            if v.trim() != "none" {
                bail!(
                    "{var}: `{v}` is not supported; perfscope sends spans uncompressed \
                     (unset it or set `none`)"
                );
            }
        }
        let resource = resource(&env)?;
        Ok(Some(OtelConfig {
            url,
            protocol,
            headers,
            timeout,
            sample_ratio,
            resource,
        }))
    }

    /// The export URL without credentials or query, for logs.
    pub fn display_url(&self) -> String {
        crate::redact::redact_url(&self.url)
    }
}

/// `k1=v1,k2=v2` with percent-encoded values (W3C Baggage octets), as the
/// specification defines for `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES`. Errors name the variable and the entry's position,
/// never its value (headers carry credentials).
fn parse_pairs(s: &str, var: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (i, item) in s.split(',').enumerate() {
        if item.trim().is_empty() {
            continue;
        }
        let Some((k, v)) = item.split_once('=') else {
            bail!(
                "{var}: entry {} has no `=`; write key=value,key2=value2",
                i + 1
            );
        };
        let k = k.trim();
        if k.is_empty() {
            bail!("{var}: entry {} has an empty key", i + 1);
        }
        let Some(v) = percent_decode(v.trim()) else {
            bail!("{var}: entry {} (`{k}`) has a bad percent-encoding", i + 1);
        };
        out.push((k.to_string(), v));
    }
    Ok(out)
}

pub(super) fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `OTEL_EXPORTER_OTLP_HEADERS`, then the traces-specific variable (which overrides
/// the generic one per key).
fn otlp_headers(env: &impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>> {
    let mut headers: Vec<(String, String)> = Vec::new();
    for var in [
        "OTEL_EXPORTER_OTLP_HEADERS",
        "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    ] {
        if let Some(v) = env(var) {
            for (k, val) in parse_pairs(&v, var)? {
                // The traces-specific variable overrides the generic one per key.
                headers.retain(|(h, _)| !h.eq_ignore_ascii_case(&k));
                if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err()
                    || reqwest::header::HeaderValue::from_str(&val).is_err()
                {
                    bail!("{var}: header `{k}` is not a valid HTTP header name or value");
                }
                headers.push((k, val));
            }
        }
    }
    Ok(headers)
}

/// The resource attributes: `service.name` first, the SDK's own last.
fn resource(env: &impl Fn(&str) -> Option<String>) -> Result<Vec<(String, String)>> {
    let mut resource = vec![("service.name".to_string(), "perfscope".to_string())];
    if let Some(v) = env("OTEL_RESOURCE_ATTRIBUTES") {
        for (k, val) in parse_pairs(&v, "OTEL_RESOURCE_ATTRIBUTES")? {
            resource.retain(|(r, _)| *r != k);
            resource.push((k, val));
        }
    }
    if let Some(name) = env("OTEL_SERVICE_NAME") {
        resource.retain(|(r, _)| r != "service.name");
        resource.push(("service.name".into(), name));
    }
    resource.sort_by_key(|(k, _)| k != "service.name");
    for (k, v) in [
        ("telemetry.sdk.name", "perfscope"),
        ("telemetry.sdk.language", "rust"),
        ("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ] {
        resource.push((k.into(), v.into()));
    }
    Ok(resource)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(
        flag: Option<&str>,
        proto: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Option<OtelConfig>> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtelConfig::resolve_with(flag, proto, 1.0, |k| env.get(k).cloned())
    }

    #[test]
    fn nothing_configured_means_no_exporter() {
        assert!(resolve(None, None, &[]).unwrap().is_none());
        assert!(resolve(None, None, &[("OTEL_SERVICE_NAME", "x")])
            .unwrap()
            .is_none());
    }

    #[test]
    fn endpoint_precedence_and_paths() {
        let c = resolve(Some("http://h:4318/"), None, &[]).unwrap().unwrap();
        assert_eq!(c.url, "http://h:4318/v1/traces");
        assert_eq!(c.protocol, Protocol::HttpProtobuf);
        let c = resolve(Some("http://h:4318/v1/traces"), None, &[])
            .unwrap()
            .unwrap();
        assert_eq!(c.url, "http://h:4318/v1/traces");
        // The flag wins over both variables.
        let env = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://generic:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://specific:9/custom",
            ),
        ];
        let c = resolve(Some("http://flag:1"), None, &env).unwrap().unwrap();
        assert_eq!(c.url, "http://flag:1/v1/traces");
        // The traces variable is used as is.
        let c = resolve(None, None, &env).unwrap().unwrap();
        assert_eq!(c.url, "http://specific:9/custom");
        let c = resolve(None, None, &env[..1]).unwrap().unwrap();
        assert_eq!(c.url, "http://generic:4318/v1/traces");
    }

    #[test]
    fn bad_values_name_their_source() {
        let e = resolve(Some("localhost:4318"), None, &[]).unwrap_err();
        assert!(e.to_string().contains("--otlp-endpoint"), "{e}");
        let e = resolve(None, None, &[("OTEL_EXPORTER_OTLP_ENDPOINT", "ftp://x")]).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
        let e = resolve(Some("http://h"), Some("http/json"), &[]).unwrap_err();
        assert!(e.to_string().contains("--otlp-protocol"), "{e}");
        let env = [("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "thrift")];
        let e = resolve(Some("http://h"), None, &env).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"));
        let env = [("OTEL_EXPORTER_OTLP_TIMEOUT", "soon")];
        let e = resolve(Some("http://h"), None, &env).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_TIMEOUT"));
        let env = [("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")];
        let e = resolve(Some("http://h"), None, &env).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_COMPRESSION"));
    }

    #[test]
    fn grpc_needs_the_feature() {
        let r = resolve(Some("http://h:4317"), Some("grpc"), &[]);
        if cfg!(feature = "otlp-grpc") {
            let c = r.unwrap().unwrap();
            assert_eq!(c.protocol, Protocol::Grpc);
            assert_eq!(c.url, format!("http://h:4317{GRPC_PATH}"));
        } else {
            let e = r.unwrap_err().to_string();
            assert!(
                e.contains("--otlp-protocol") && e.contains("otlp-grpc"),
                "{e}"
            );
        }
    }

    #[test]
    fn headers_timeout_and_resource() {
        let env = [
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "authorization=Bearer%20s3cret, x-a=1",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-a=2"),
            ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2500"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "99"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "deployment.environment=lab,service.name=a",
            ),
            ("OTEL_SERVICE_NAME", "bench"),
        ];
        let c = resolve(Some("https://u:p@h/x?q=1"), None, &env)
            .unwrap()
            .unwrap();
        assert_eq!(
            c.headers,
            vec![
                ("authorization".to_string(), "Bearer s3cret".to_string()),
                ("x-a".to_string(), "2".to_string()),
            ]
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(c.resource[0], ("service.name".into(), "bench".into()));
        assert!(c
            .resource
            .contains(&("deployment.environment".into(), "lab".into())));
        // Credentials never reach logs.
        let shown = format!("{c:?} {}", c.display_url());
        assert!(
            !shown.contains("s3cret") && !shown.contains("u:p"),
            "{shown}"
        );
        let e = resolve(
            Some("http://h"),
            None,
            &[("OTEL_EXPORTER_OTLP_HEADERS", "authorization")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_HEADERS"));
    }
}
