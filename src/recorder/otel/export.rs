//! Sends encoded export requests: OTLP/HTTP (protobuf body) or, with the `otlp-grpc`
//! feature, OTLP/gRPC (HTTP/2, length-prefixed message, `grpc-status` trailer). One
//! export is in flight at a time (the SDKs' default); failures are retried with
//! backoff on the statuses the OTLP specification calls retryable.

use super::config::{OtelConfig, Protocol};
use super::proto;
use bytes::Bytes;
use std::time::Duration;

/// What became of one batch.
pub enum Sent {
    /// Accepted; the server may have rejected some spans (`partial_success`).
    Ok { rejected: i64, message: String },
    /// Given up; the reason has no header values in it.
    Failed(String),
}

/// At most this many attempts per batch; the waits between them double from 200 ms
/// (or follow the server's `Retry-After`, up to 5 s).
const ATTEMPTS: u32 = 4;

pub fn client(cfg: &OtelConfig) -> anyhow::Result<reqwest::Client> {
    crate::client::install_tls_provider();
    let b = crate::proxy::reqwest_builder(&cfg.url)
        .timeout(cfg.timeout)
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .pool_max_idle_per_host(1);
    #[cfg(feature = "otlp-grpc")]
    let b = if cfg.protocol == Protocol::Grpc && cfg.url.starts_with("http://") {
        // Plaintext gRPC is HTTP/2 without TLS negotiation (h2c).
        b.http2_prior_knowledge()
    } else {
        b
    };
    b.build().map_err(|e| {
        anyhow::anyhow!(
            "--otlp-endpoint: cannot build the HTTP client for {}: {e}",
            cfg.display_url()
        )
    })
}

/// Sends one `ExportTraceServiceRequest` (protobuf bytes), retrying as above.
pub async fn send(http: &reqwest::Client, cfg: &OtelConfig, message: Bytes) -> Sent {
    let body = match cfg.protocol {
        Protocol::HttpProtobuf => message,
        Protocol::Grpc => {
            // gRPC message framing: uncompressed flag, big-endian length, message.
            let mut b = Vec::with_capacity(message.len() + 5);
            b.push(0);
            b.extend_from_slice(&(message.len() as u32).to_be_bytes());
            b.extend_from_slice(&message);
            Bytes::from(b)
        }
    };
    let mut backoff =
        crate::retry::Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut last = String::new();
    for attempt in 1..=ATTEMPTS {
        match once(http, cfg, body.clone()).await {
            Attempt::Done(sent) => return sent,
            Attempt::Retry(why, after) => {
                last = why;
                if attempt < ATTEMPTS {
                    tokio::time::sleep(backoff.wait(after)).await;
                }
            }
        }
    }
    Sent::Failed(format!("{last} (after {ATTEMPTS} attempts)"))
}

enum Attempt {
    Done(Sent),
    Retry(String, Option<Duration>),
}

async fn once(http: &reqwest::Client, cfg: &OtelConfig, body: Bytes) -> Attempt {
    let mut req = http.post(&cfg.url).body(body);
    req = match cfg.protocol {
        Protocol::HttpProtobuf => req.header("content-type", "application/x-protobuf"),
        Protocol::Grpc => req
            .header("content-type", "application/grpc")
            .header("te", "trailers"),
    };
    for (k, v) in &cfg.headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let resp = match req.send().await {
        Ok(r) => r,
        // Connection refused, reset or timed out: the collector may be restarting.
        Err(e) => return Attempt::Retry(transport_error(&e), None),
    };
    let status = resp.status();
    let retry_after = crate::retry::retry_after(
        resp.headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok()),
    );
    match cfg.protocol {
        Protocol::HttpProtobuf => {
            let body = resp.bytes().await.unwrap_or_default();
            if status.is_success() {
                let (rejected, message) = proto::partial_success(&body).unwrap_or_default();
                return Attempt::Done(Sent::Ok { rejected, message });
            }
            let why = format!("HTTP {status}");
            // OTLP/HTTP: 429, 502, 503 and 504 are retryable; others are final.
            if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
                Attempt::Retry(why, retry_after)
            } else {
                Attempt::Done(Sent::Failed(why))
            }
        }
        Protocol::Grpc => grpc_outcome(resp).await,
    }
}

#[cfg(feature = "otlp-grpc")]
async fn grpc_outcome(resp: reqwest::Response) -> Attempt {
    use http_body_util::BodyExt;
    let status = resp.status();
    let headers = resp.headers().clone();
    if !status.is_success() {
        let why = format!("HTTP {status}");
        return if matches!(status.as_u16(), 429 | 502 | 503 | 504) {
            Attempt::Retry(why, None)
        } else {
            Attempt::Done(Sent::Failed(why))
        };
    }
    let resp: http::Response<reqwest::Body> = resp.into();
    let collected = match resp.into_body().collect().await {
        Ok(c) => c,
        Err(e) => return Attempt::Retry(format!("reading the gRPC response: {e}"), None),
    };
    let trailers = collected.trailers().cloned().unwrap_or_default();
    let body = collected.to_bytes();
    // A trailers-only response carries grpc-status in the headers.
    let field = |k: &str| {
        trailers
            .get(k)
            .or_else(|| headers.get(k))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let code = field("grpc-status").and_then(|c| c.trim().parse::<u32>().ok());
    match code {
        Some(0) => {
            // Length-prefixed ExportTraceServiceResponse.
            let msg = body.get(5..).unwrap_or_default();
            let (rejected, message) = proto::partial_success(msg).unwrap_or_default();
            Attempt::Done(Sent::Ok { rejected, message })
        }
        Some(c) => {
            let why = format!(
                "gRPC status {c}{}",
                field("grpc-message")
                    .map(|m| format!(": {}", super::config::percent_decode(&m).unwrap_or(m)))
                    .unwrap_or_default()
            );
            // OTLP/gRPC retryable codes: CANCELLED, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED,
            // ABORTED, OUT_OF_RANGE, UNAVAILABLE, DATA_LOSS.
            if matches!(c, 1 | 4 | 8 | 10 | 11 | 14 | 15) {
                Attempt::Retry(why, None)
            } else {
                Attempt::Done(Sent::Failed(why))
            }
        }
        None => Attempt::Retry("gRPC response without grpc-status".into(), None),
    }
}

#[cfg(not(feature = "otlp-grpc"))]
async fn grpc_outcome(_resp: reqwest::Response) -> Attempt {
    // Unreachable: the configuration refuses grpc without the feature.
    Attempt::Done(Sent::Failed("grpc needs the otlp-grpc feature".to_string()))
}

/// A transport error's chain without the URL (which may carry credentials).
fn transport_error(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    let mut s = kind.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
