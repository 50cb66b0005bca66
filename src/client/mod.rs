//! Request execution: HTTP, SSE decoding and timestamps.
//!
//! Timestamps are taken in the task that reads the socket, right after each read
//! returns and before anything is parsed or queued (DESIGN principle 2). Several SSE
//! events delivered in one read share that read's arrival time, which is when the
//! client could first have seen them.

mod cancel;
mod chunked;
mod conn;
pub mod http1;
mod reading;
mod response;
pub mod sse;
mod tls;

use bytes::Bytes;
use std::time::Duration;

use crate::protocol::Protocol;
pub use crate::record::TraceContext;
use crate::record::{Clock, FailureKind, RequestRecord, Timeline};
use reading::{read_response, Reading};

pub use cancel::Cancel;
pub use reading::MAX_OUTPUT_CHUNKS;
pub use tls::{install_tls_provider, read_pem_certs, TlsTrust};

/// What the load client needs from a run's configuration.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// Every header sent (Authorization from --api-key included).
    pub headers: Vec<(String, String)>,
    pub connect_timeout: Option<Duration>,
    pub read_timeout: Option<Duration>,
    /// `--total-timeout`: one request, from its first byte written to its last read.
    pub total_timeout: Duration,
    /// `--max-response-mib` in bytes.
    pub max_response_bytes: usize,
    /// `--source-addrs` (empty: the system chooses).
    pub source_addrs: Vec<std::net::IpAddr>,
    /// `--ca-cert`, `--insecure`.
    pub tls: TlsTrust,
}

/// The load client of a run: one endpoint (its connection pool), the wire format,
/// the run's clock.
pub struct Client {
    pub endpoint: http1::Endpoint,
    pub protocol: Protocol,
    pub clock: Clock,
    pub total_timeout: Duration,
    /// Keep each payload's text on the record (--debug, or counting tokens locally).
    pub keep_messages: bool,
}

impl Client {
    /// A client for `url` keeping up to `pool` idle connections (the concurrency);
    /// headers fixed (user agent and content type as evalscope, then the user's).
    pub fn new(
        cfg: &ClientConfig,
        url: &reqwest::Url,
        pool: usize,
        protocol: Protocol,
        clock: Clock,
    ) -> anyhow::Result<Client> {
        let endpoint = http1::Endpoint::new(
            url,
            &cfg.headers,
            http1::Settings {
                connect_timeout: cfg.connect_timeout,
                read_timeout: cfg.read_timeout,
                max_idle: pool.max(1),
                max_response: cfg.max_response_bytes,
                source_addrs: cfg.source_addrs.clone(),
                tls: cfg.tls.clone(),
            },
        )?;
        Ok(Client {
            endpoint,
            protocol,
            clock,
            total_timeout: cfg.total_timeout,
            keep_messages: false,
        })
    }

    /// Sends one request and reads the whole response. Never fails: every outcome
    /// is a record. `cancel` aborts the request (recorded as `cancelled`).
    pub async fn execute(&self, ticket: Ticket, cancel: &Cancel) -> RequestRecord {
        self.execute_within(ticket, self.total_timeout, self.keep_messages, cancel)
            .await
    }

    /// Sends one request and returns as soon as its response head arrives: the
    /// status, and for an error status the start of its body. The connection is then
    /// closed, so a streamed answer stops on the server (vLLM aborts a request whose
    /// client went away). None when no head arrived within `timeout` or the request
    /// could not be sent.
    pub async fn head_status(&self, body: &[u8], timeout: Duration) -> Option<(u16, String)> {
        let exchange = async {
            let mut resp = self.endpoint.send("", body, || {}).await.ok()?;
            let status = resp.status;
            let text = if (200..300).contains(&status) {
                String::new()
            } else {
                reading::error_text_of(&mut resp).await
            };
            Some((status, text))
        };
        tokio::time::timeout(timeout, exchange).await.ok().flatten()
    }

    /// [`Client::execute`] with its own total timeout and payload keeping (the
    /// connection test).
    pub async fn execute_within(
        &self,
        ticket: Ticket,
        total_timeout: Duration,
        keep_messages: bool,
        cancel: &Cancel,
    ) -> RequestRecord {
        execute(
            &self.endpoint,
            &self.protocol,
            total_timeout,
            &self.clock,
            ticket,
            keep_messages,
            cancel,
        )
        .await
    }
}

/// Everything needed to send one request.
pub struct Ticket {
    pub seq: u64,
    pub intended_start: f64,
    /// The JSON body; `Bytes` so every request shares one buffer per distinct body.
    pub body: Bytes,
    pub stream_requested: bool,
    /// W3C trace context for this request: sent as `traceparent` so a traced server
    /// puts its spans in this trace, stored in SQLite and used as the exemplar.
    pub trace: Option<TraceContext>,
    /// Keep the generated text (content + reasoning): a multi-turn session sends it
    /// back as the assistant's turn.
    pub keep_text: bool,
    /// Header lines (`name: value\r\n`) this request adds (a trace row's own).
    pub extra_headers: Option<std::sync::Arc<str>>,
}

/// The header lines a request adds to the endpoint's fixed head, formatted before
/// its clock starts: `traceparent`, and the request's id as `X-Request-Id` (the
/// trace id, unless a replayed trace row names its own), with the row's own
/// headers. vLLM uses that id in its log, spans and body id (`chatcmpl-<id>`), so a
/// stored row joins the server's record of it. Returns the lines and the id sent.
fn request_headers(ticket: &Ticket) -> (String, Option<String>) {
    let mut extra = match &ticket.trace {
        Some(t) => format!("traceparent: {}\r\n", t.traceparent()),
        None => String::new(),
    };
    let own_id = ticket.extra_headers.as_deref().is_some_and(|h| {
        h.lines().any(|l| {
            l.get(..13)
                .is_some_and(|p| p.eq_ignore_ascii_case("x-request-id:"))
        })
    });
    let sent_id = match (&ticket.trace, own_id) {
        (Some(t), false) => {
            let id = t.trace_id_hex();
            extra.push_str("x-request-id: ");
            extra.push_str(&id);
            extra.push_str("\r\n");
            Some(id)
        }
        _ => None,
    };
    if let Some(h) = &ticket.extra_headers {
        extra.push_str(h);
    }
    (extra, sent_id)
}

#[allow(clippy::too_many_arguments)]
async fn execute(
    endpoint: &http1::Endpoint,
    proto: &Protocol,
    total_timeout: std::time::Duration,
    clock: &Clock,
    ticket: Ticket,
    keep_messages: bool,
    cancel: &Cancel,
) -> RequestRecord {
    let mut r = Reading {
        tl: Timeline {
            intended_start: ticket.intended_start,
            ..Default::default()
        },
        itl: Vec::new(),
        last_output: None,
        usage_prompt: None,
        usage_completion: None,
        cached: None,
        finish: None,
        output_chars: 0,
        output_chunks: 0,
        done: false,
        failure: None,
        messages: keep_messages.then(Vec::new),
        message_bytes: 0,
        max_response: endpoint.max_response(),
        decode_chunks: 0,
        server_request_id: None,
        body_id: None,
        server_traceparent: None,
        text: ticket.keep_text.then(String::new),
    };
    let mut status = None;
    let mut is_stream = ticket.stream_requested;
    let mut resent = false;
    // The trace header is formatted before the clock starts; the start time itself
    // is taken by the endpoint right before the request's first byte is written
    // (after a connect, so TCP and TLS setup are not part of TTFT), and again at a
    // resend.
    let (extra, sent_id) = request_headers(&ticket);
    r.tl.send = clock.now();
    r.tl.end = r.tl.send;
    let fut = read_response(
        endpoint,
        &extra,
        &ticket.body,
        proto,
        clock,
        &mut r,
        &mut status,
        &mut is_stream,
        &mut resent,
    );
    tokio::select! {
        biased;
        _ = cancel.cancelled() => {
            r.tl.end = clock.now();
            r.failure = Some((FailureKind::Cancelled, "cancelled: the run was interrupted before the response completed".into()));
        }
        res = tokio::time::timeout(total_timeout, fut) => {
            if res.is_err() {
                r.tl.end = clock.now();
                r.failure = Some((FailureKind::Timeout, format!("total timeout of {:.0} s exceeded (--total-timeout)", total_timeout.as_secs_f64())));
            }
        }
    }
    // Never a negative duration, whatever the server sent.
    r.tl.end = r.tl.end.max(r.tl.send);
    let success = r.failure.is_none();
    let (failure, error) = match r.failure {
        Some((k, e)) => (Some(k), Some(e)),
        None => (None, None),
    };
    RequestRecord {
        seq: ticket.seq,
        request: ticket.body,
        timeline: r.tl,
        itl: r.itl,
        success,
        is_stream,
        http_status: status,
        failure,
        error,
        prompt_tokens: r.usage_prompt,
        completion_tokens: r.usage_completion,
        cached_tokens: r.cached,
        output_chunks: r.output_chunks,
        decode_chunks: r.decode_chunks,
        finish_reason: r.finish,
        output_chars: r.output_chars,
        response_messages: r.messages.map(|m| format!("[{}]", m.join(","))),
        request_id: r.body_id.or(r.server_request_id).or(sent_id),
        server_traceparent: r.server_traceparent,
        trace: ticket.trace,
        resent,
        output_text: r.text,
        session: None,
    }
}
