//! Reading one response: status, SSE or JSON body, and the timestamps of each
//! piece as it arrives.

use super::http1;
use super::sse::SseDecoder;
use crate::protocol::{ChunkInfo, Protocol};
use crate::record::{Clock, FailureKind, Timeline};

/// Mutable per-request state while the response is read.
pub(crate) struct Reading {
    pub(crate) tl: Timeline,
    pub(crate) itl: Vec<f64>,
    pub(crate) last_output: Option<f64>,
    pub(crate) usage_prompt: Option<u64>,
    pub(crate) usage_completion: Option<u64>,
    pub(crate) cached: Option<u64>,
    pub(crate) finish: Option<String>,
    pub(crate) output_chars: u64,
    pub(crate) output_chunks: u32,
    pub(crate) done: bool,
    pub(crate) failure: Option<(FailureKind, String)>,
    pub(crate) messages: Option<Vec<String>>,
    /// Bytes held in `messages` (bounded by `max_response`).
    pub(crate) message_bytes: usize,
    pub(crate) max_response: usize,
    /// evalscope 1.14's `n_decode_chunks`: choices-bearing chunks at or after the
    /// first output chunk, empty deltas (the final `finish_reason` chunk) included.
    pub(crate) decode_chunks: u32,
    /// The server's request id and `traceparent` from the response head.
    pub(crate) server_request_id: Option<String>,
    pub(crate) server_traceparent: Option<String>,
    /// The generated text, when the request asked for it (multi-turn history).
    pub(crate) text: Option<String>,
    /// The request's id in the response body, when the protocol says it is the
    /// server's own (see `ChunkInfo::body_id`).
    pub(crate) body_id: Option<String>,
}

impl Reading {
    fn too_large(&mut self, t: f64, why: String) {
        self.tl.end = t;
        self.failure = Some((FailureKind::ResponseTooLarge, why));
    }

    /// Applies one payload received at `t`.
    fn payload(&mut self, proto: &Protocol, data: &[u8], t: f64) {
        if self.failure.is_some() {
            return;
        }
        if self.tl.first_event.is_none() {
            self.tl.first_event = Some(t);
        }
        if data == b"[DONE]" {
            self.done = true;
            return;
        }
        if let Some(m) = self.messages.as_mut() {
            // --debug keeps the payloads; an endless stream must not keep all of them.
            if self.message_bytes + data.len() <= self.max_response {
                self.message_bytes += data.len();
                m.push(String::from_utf8_lossy(data).into_owned());
            }
        }
        // evalscope's `completed_time`: the last data event, including the usage-only
        // chunk, but not `[DONE]`.
        self.tl.end = t;
        match proto.parse(data) {
            Err(e) => self.failure = Some((FailureKind::MalformedChunk, e)),
            Ok(info) => {
                if info.output_chars > 0 {
                    if let Some(text) = self.text.as_mut() {
                        proto.push_output_text(data, text);
                    }
                }
                self.apply(info, t)
            }
        }
    }

    fn apply(&mut self, info: ChunkInfo, t: f64) {
        if let Some(e) = info.error {
            self.failure = Some((FailureKind::InBandError, e));
            return;
        }
        if info.output_chars > 0 {
            if self.output_chunks >= MAX_OUTPUT_CHUNKS {
                self.too_large(
                    t,
                    format!("more than {MAX_OUTPUT_CHUNKS} output chunks in one response"),
                );
                return;
            }
            if self.tl.first_output.is_none() {
                self.tl.first_output = Some(t);
            }
            if let Some(prev) = self.last_output {
                self.itl.push(t - prev);
            }
            self.last_output = Some(t);
            self.output_chunks += 1;
            self.output_chars += info.output_chars as u64;
        }
        if info.has_choices && self.tl.first_output.is_some() {
            self.decode_chunks += 1;
        }
        if info.finish_reason.is_some() {
            self.finish = info.finish_reason;
        }
        if info.body_id.is_some() && self.body_id.is_none() {
            self.body_id = info.body_id;
        }
        if let Some(u) = info.usage {
            if u.prompt_tokens.is_some() {
                self.usage_prompt = u.prompt_tokens;
            }
            if u.completion_tokens.is_some() {
                self.usage_completion = u.completion_tokens;
            }
            if let Some(c) = u.cached_tokens {
                self.cached = Some(c);
            }
        }
    }
}

/// Most output chunks one request may record: a row holds one ITL value per chunk,
/// so an endless stream of valid chunks must stop somewhere. Four times the largest
/// context any served model offers today.
pub const MAX_OUTPUT_CHUNKS: u32 = 1 << 19;

/// Most bytes of an error response kept (and read) for the error text.
const ERROR_BODY: usize = 4096;

pub(crate) fn classify(e: &http1::Error) -> FailureKind {
    match e {
        http1::Error::Connect(_) => FailureKind::Connect,
        http1::Error::Timeout(_) => FailureKind::Timeout,
        http1::Error::Io(_) | http1::Error::Protocol(_) => FailureKind::Transport,
    }
}

/// Reads an error response's first bytes for the error text, then stops: an endless
/// error body must cost neither memory nor the rest of the total timeout.
pub(crate) async fn error_text_of(resp: &mut http1::Response<'_>) -> String {
    let mut text = Vec::new();
    while text.len() < ERROR_BODY {
        match resp.chunk().await {
            Ok(Some(c)) => text.extend_from_slice(&c[..c.len().min(ERROR_BODY - text.len())]),
            _ => break,
        }
    }
    let cut = text.len().min(2048);
    String::from_utf8_lossy(&text[..cut]).trim().to_string()
}

#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_response(
    endpoint: &http1::Endpoint,
    extra_headers: &str,
    body: &[u8],
    proto: &Protocol,
    clock: &Clock,
    r: &mut Reading,
    status_out: &mut Option<u16>,
    is_stream: &mut bool,
    resent: &mut bool,
) {
    let Some((mut resp, hops)) =
        send_following(endpoint, extra_headers, body, clock, r, status_out, resent).await
    else {
        return;
    };
    let url = resp.url();
    *resent = resp.resent;
    let t_headers = clock.now();
    r.server_request_id = resp.server_request_id.take();
    r.server_traceparent = resp.server_traceparent.take();
    r.tl.headers = Some(t_headers);
    let status = resp.status;
    *status_out = Some(status);
    // The failure kind is decided from the status and content type before the body
    // is read: an endless error page is an HTTP failure, not a timeout.
    if !(200..300).contains(&status) {
        let location = resp.location.take();
        let mut text = error_text_of(&mut resp).await;
        if text.is_empty() {
            text = "(empty body)".into();
        }
        let location = match location {
            Some(l) if hops >= http1::MAX_REDIRECTS => {
                format!(
                    " (Location: {l}; more than {} redirects)",
                    http1::MAX_REDIRECTS
                )
            }
            Some(l) => format!(" (Location: {l})"),
            None => String::new(),
        };
        r.tl.end = clock.now();
        r.failure = Some((
            FailureKind::from_status(status),
            format!("HTTP {status}{location}: {text}"),
        ));
        return;
    }
    if !matches!(resp.content_encoding.as_str(), "" | "identity") {
        // perfscope asks for no encoding (it sends no Accept-Encoding) and reads the
        // bytes as they arrive: a compressed body has no timing to give.
        r.tl.end = clock.now();
        r.failure = Some((
            FailureKind::Other,
            format!(
                "the response from {url} is compressed (Content-Encoding: {}), which perfscope does not decode: \
                 turn compression off for this route in the server or proxy in front of it",
                resp.content_encoding
            ),
        ));
        return;
    }
    let ctype = resp.content_type.clone();
    if ctype.contains("text/event-stream") {
        *is_stream = true;
        if matches!(proto, Protocol::Decision(_)) {
            // evalscope: "Expected one non-stream JSON decision response."
            r.tl.end = clock.now();
            r.failure = Some((
                FailureKind::InvalidResponse,
                format!("Invalid decision response: {url} answered with an event stream, expected one JSON decision"),
            ));
            return;
        }
        return read_stream(&mut resp, proto, clock, r, url).await;
    }
    *is_stream = false;
    if !ctype.contains("application/") {
        // evalscope reads anything else as text and counts it a success; a page of
        // HTML from a proxy is not an answer.
        let text = error_text_of(&mut resp).await;
        r.tl.end = clock.now();
        r.failure = Some((
            FailureKind::Other,
            format!(
                "unexpected content type `{ctype}` from {url} (expected text/event-stream or application/json): {}",
                text.chars().take(200).collect::<String>()
            ),
        ));
        return;
    }
    read_json(&mut resp, proto, clock, r, url, body).await
}

/// A non-streaming JSON body: read whole (up to --max-response-mib), then parsed.
async fn read_json(
    resp: &mut http1::Response<'_>,
    proto: &Protocol,
    clock: &Clock,
    r: &mut Reading,
    url: &str,
    request: &[u8],
) {
    let mut full = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(b)) => {
                if full.len() + b.len() > r.max_response {
                    let t = clock.now();
                    r.too_large(
                        t,
                        format!("the response body from {url} exceeds --max-response-mib"),
                    );
                    return;
                }
                full.extend_from_slice(b);
            }
            Ok(None) => break,
            Err(e) => {
                r.tl.end = clock.now();
                let kind = match classify(&e) {
                    FailureKind::Timeout => FailureKind::Timeout,
                    _ => FailureKind::Transport,
                };
                r.failure = Some((kind, format!("reading the response from {url}: {e}")));
                return;
            }
        }
    }
    let t = clock.now();
    r.tl.end = t;
    r.tl.first_event = Some(t);
    if let Some(m) = r.messages.as_mut() {
        m.push(String::from_utf8_lossy(&full).into_owned());
    }
    let parsed = match proto {
        Protocol::Decision(api) => {
            crate::protocol::decision::parse(*api, &full, request).map_err(|(invalid, e)| {
                let kind = if invalid {
                    FailureKind::InvalidResponse
                } else {
                    FailureKind::MalformedChunk
                };
                (kind, e)
            })
        }
        _ => proto
            .parse(&full)
            .map_err(|e| (FailureKind::MalformedChunk, e)),
    };
    match parsed {
        Err(e) => r.failure = Some(e),
        Ok(info) => {
            if info.output_chars > 0 {
                if let Some(text) = r.text.as_mut() {
                    crate::protocol::chunk::push_output_text(&full, text);
                }
            }
            // evalscope: for non-stream responses first_chunk_latency = latency.
            r.apply(info, t);
            r.tl.first_output = Some(t);
            r.itl.clear();
        }
    }
}

/// Sends the request, following redirects within it as evalscope's aiohttp does
/// (see `Endpoint::follow`): its start stays the first send. The final response
/// and how many redirects led to it; None when the request failed (recorded in
/// `r`).
async fn send_following<'a>(
    endpoint: &'a http1::Endpoint,
    extra_headers: &str,
    body: &[u8],
    clock: &Clock,
    r: &mut Reading,
    status_out: &mut Option<u16>,
    resent: &mut bool,
) -> Option<(http1::Response<'a>, u32)> {
    let mut endpoint = endpoint;
    let mut body = body;
    let mut hops = 0;
    let send = &mut r.tl.send;
    loop {
        let sent = if hops == 0 {
            endpoint
                .send(extra_headers, body, || *send = clock.now())
                .await
        } else {
            endpoint.send(extra_headers, body, || {}).await
        };
        let resp = match sent {
            Ok(resp) => resp,
            Err((e, was_resent)) => {
                *resent = was_resent;
                r.tl.end = clock.now();
                r.failure = Some((classify(&e), format!("POST {}: {e}", endpoint.display())));
                return None;
            }
        };
        let keep = matches!(resp.status, 307 | 308);
        let location = match (resp.status, &resp.location) {
            (301 | 302 | 303 | 307 | 308, Some(l)) if hops < http1::MAX_REDIRECTS => l.clone(),
            _ => return Some((resp, hops)),
        };
        match endpoint.follow(&location, keep) {
            Ok(next) => {
                endpoint = next;
                if !keep {
                    body = b"";
                }
                hops += 1;
            }
            Err(e) => {
                *status_out = Some(resp.status);
                r.tl.end = clock.now();
                r.failure = Some((
                    FailureKind::from_status(resp.status),
                    format!("HTTP {}: {e}", resp.status),
                ));
                return None;
            }
        }
    }
}

/// Reads an event stream, timestamping each read as it returns.
async fn read_stream(
    resp: &mut http1::Response<'_>,
    proto: &Protocol,
    clock: &Clock,
    r: &mut Reading,
    url: &str,
) {
    let mut dec = SseDecoder::with_limit(r.max_response);
    loop {
        match resp.chunk().await {
            Ok(Some(bytes)) => {
                let t = clock.now();
                dec.feed(bytes, |data| r.payload(proto, data, t));
                if dec.overflowed() {
                    r.too_large(
                        t,
                        format!("an SSE line from {url} exceeds --max-response-mib"),
                    );
                }
                if r.failure.is_some() {
                    // The stream is already a failure; stop reading it.
                    return;
                }
            }
            Ok(None) => {
                let t = clock.now();
                dec.finish(|data| r.payload(proto, data, t));
                if r.failure.is_none() && !r.done && r.finish.is_none() {
                    r.tl.end = t;
                    r.failure = Some((
                        FailureKind::IncompleteStream,
                        "stream ended without [DONE] or a finish_reason".into(),
                    ));
                }
                if r.tl.first_event.is_none() && r.failure.is_none() {
                    r.tl.end = t;
                    r.failure = Some((FailureKind::IncompleteStream, "empty event stream".into()));
                }
                return;
            }
            Err(e) => {
                r.tl.end = clock.now();
                let kind = match classify(&e) {
                    FailureKind::Timeout => FailureKind::Timeout,
                    _ => FailureKind::Transport,
                };
                r.failure = Some((kind, format!("reading the stream from {url}: {e}")));
                return;
            }
        }
    }
}
