//! Multi-turn sessions (evalscope 1.14.1): `parallel` workers claim
//! conversations from one shared counter and send each conversation's turns one after
//! another, every turn carrying the whole history. Concurrency therefore counts
//! conversations, and at most `parallel` requests are in flight.
//!
//! The first `warmup` claims are warmup conversations (sent, not recorded) and hand
//! their slot to measured ones without a barrier, as evalscope 1.12+ does.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::ctx::Ctx;
use crate::client::{self, Ticket};
use crate::config::SweepPoint;
use crate::dataset::multi_turn::Conversation;
use crate::dataset::Prompt;
use crate::record::{RequestRecord, SessionTag};
use crate::telemetry::log;

/// What every worker of one run shares.
struct Shared {
    ctx: Arc<Ctx>,
    convs: Arc<Vec<Conversation>>,
    /// Conversations claimed so far (warmup included).
    claims: AtomicU64,
    /// Claims to make: warmup + measured conversations.
    total: u64,
    warmup: u64,
    /// Measured turns sent (their `seq`).
    seq: AtomicU64,
    out: mpsc::Sender<RequestRecord>,
    in_flight: Option<prometheus_client::metrics::gauge::Gauge>,
    rate: f64,
    /// The --duration deadline, armed at the first measured claim.
    deadline: std::sync::OnceLock<f64>,
    max_turns: Option<u64>,
    warm_ok: AtomicU64,
    warm_sent: AtomicU64,
}

/// Runs `point.number` measured conversations after `warmup` warmup ones; returns
/// the measured turns sent (each produced one record on `out`).
pub(crate) async fn dispatch(
    ctx: &Arc<Ctx>,
    point: &SweepPoint,
    convs: Arc<Vec<Conversation>>,
    warmup: u64,
    out: mpsc::Sender<RequestRecord>,
    in_flight: Option<prometheus_client::metrics::gauge::Gauge>,
) -> u64 {
    let workers = point.parallel.max(1) as u64;
    if workers > 1 && warmup < workers && warmup > 0 {
        log::warn(format!(
            "--warmup-num {warmup} is below --parallel {workers}: some workers start measured \
             conversations on a cold server (evalscope suggests --warmup-num {workers})"
        ));
    }
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        convs,
        claims: AtomicU64::new(0),
        total: warmup + point.number,
        warmup,
        seq: AtomicU64::new(0),
        out,
        in_flight,
        rate: point.rate,
        deadline: std::sync::OnceLock::new(),
        max_turns: ctx.cfg.turns.and_then(|t| t.max),
        warm_ok: AtomicU64::new(0),
        warm_sent: AtomicU64::new(0),
    });
    let mut set = JoinSet::new();
    for w in 0..workers {
        set.spawn(worker(shared.clone(), w));
    }
    while set.join_next().await.is_some() {}
    if warmup > 0 {
        log::info(format!(
            "Warmup done: {}/{} turns of {warmup} conversations succeeded (not recorded)",
            shared.warm_ok.load(Ordering::Relaxed),
            shared.warm_sent.load(Ordering::Relaxed)
        ));
    }
    shared.seq.load(Ordering::Relaxed)
}

/// One worker: claims conversations until none are left, the run is stopped or the
/// deadline passed (claimed conversations still run all their turns).
async fn worker(s: Arc<Shared>, index: u64) {
    let ctx = &s.ctx;
    let mut rng =
        fastrand::Rng::with_seed(ctx.cfg.dataset.seed ^ index.wrapping_mul(0xA24B_AED4_963E_E407));
    loop {
        if ctx.stop.dispatch.is_cancelled() {
            return;
        }
        if let Some(d) = s.deadline.get() {
            if ctx.clock.now() >= *d {
                return;
            }
        }
        let claim = s.claims.fetch_add(1, Ordering::Relaxed);
        if claim >= s.total {
            return;
        }
        let measured = claim >= s.warmup;
        if measured {
            if let Some(d) = ctx.cfg.duration {
                let _ = s.deadline.set(ctx.clock.now() + d);
            }
        }
        let conv = &s.convs[(claim % s.convs.len() as u64) as usize];
        run_conversation(&s, conv, claim, measured, &mut rng).await;
    }
}

/// evalscope's estimate for a turn whose server reported no cached tokens:
/// after a turn that counted its prompt, that turn's prompt + completion (the
/// history the server could have cached); else 0 (the first turn). None when the
/// server reported its own figure or the turn has no prompt count. evalscope
/// stores the estimate as `cached_tokens`; perfscope keeps it in its own column.
fn estimate_cached(r: &RequestRecord, previous: Option<(u64, u64)>) -> Option<u64> {
    match r.prompt_tokens {
        Some(p) if p > 0 && r.success && r.cached_tokens.is_none() => {
            Some(previous.map_or(0, |(p, c)| p + c))
        }
        _ => None,
    }
}

/// Waits `secs` seconds unless the run stops first (false then).
async fn pause(ctx: &Ctx, secs: f64) -> bool {
    if secs <= 0.0 {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(std::time::Duration::from_secs_f64(secs)) => true,
        _ = ctx.stop.dispatch.cancelled() => false,
    }
}

/// The turn's body as sent: with a conversation's `rid`, turn k gets
/// `rid = "<rid>_t<k>"` unless the body has one (evalscope, setdefault).
fn with_rid(mut b: serde_json::Map<String, Value>, rid: Option<&str>, k: usize) -> String {
    if let Some(rid) = rid {
        b.entry("rid")
            .or_insert_with(|| format!("{rid}_t{k}").into());
    }
    Value::Object(b).to_string()
}

async fn run_conversation(
    s: &Shared,
    conv: &Conversation,
    claim: u64,
    measured: bool,
    rng: &mut fastrand::Rng,
) {
    let ctx = &s.ctx;
    let cfg = &ctx.cfg;
    let id = format!("{}-{claim}", if measured { "bench" } else { "warmup" });
    // One trace per conversation: its span is the parent of every turn's span.
    let sampled = ctx
        .tracing
        .as_ref()
        .is_none_or(|t| fastrand::f64() < t.sample_ratio);
    let root = client::TraceContext::random(sampled);
    let mut context: Vec<Value> = Vec::new();
    let mut previous: Option<(u64, u64)> = None;
    let mut started: Option<f64> = None;
    let turns = conv.turns.len() as u64;
    let last = s.max_turns.map_or(turns, |m| turns.min(m));
    for (k, turn) in conv.turns.iter().enumerate().take(last as usize) {
        if ctx.stop.dispatch.is_cancelled() {
            return;
        }
        // evalscope: a trie trace's tool-call time passes before the turn.
        if !pause(ctx, turn.tool_call_latency.unwrap_or(0.0)).await {
            return;
        }
        context.extend(turn.messages.iter().cloned());
        // evalscope: with --rate, a relative exponential pause before every turn.
        let gap = if s.rate > 0.0 {
            -(1.0 - rng.f64()).ln() / s.rate
        } else {
            0.0
        };
        if !pause(ctx, gap).await {
            return;
        }
        let mut gen = cfg.gen.clone();
        if let Some(cap) = turn.max_tokens {
            gen.max_tokens = (cap, cap);
        }
        let body = match cfg
            .protocol
            .build_body(&Prompt::Messages(Value::Array(context.clone())), &gen, rng)
            .map(|b| with_rid(b, turn.rid.as_deref(), k + 1))
        {
            Ok(b) => b,
            Err(e) => {
                log::warn(format!("{id}: turn {} not sent: {e:#}", k + 1));
                return;
            }
        };
        let seq = if measured {
            s.seq.fetch_add(1, Ordering::Relaxed)
        } else {
            s.warm_sent.fetch_add(1, Ordering::Relaxed)
        };
        let trace = client::TraceContext {
            span_id: fastrand::u64(1..),
            ..root
        };
        let ticket = Ticket {
            seq,
            intended_start: ctx.clock.now(),
            body: body.into(),
            stream_requested: gen.stream,
            trace: Some(trace),
            keep_text: true,
            extra_headers: None,
        };
        if let Some(g) = s.in_flight.as_ref().filter(|_| measured) {
            g.inc();
        }
        let mut rec = ctx.client.execute(ticket, &ctx.stop.abort).await;
        if let Some(t) = &cfg.tokenizer {
            cfg.protocol.fill_token_counts(t, &mut rec);
        }
        if let Some(g) = s.in_flight.as_ref().filter(|_| measured) {
            g.dec();
        }
        let text = rec.output_text.take().unwrap_or_default();
        let cached_estimate = estimate_cached(&rec, previous);
        if rec.success {
            if let Some(p) = rec.prompt_tokens.filter(|p| *p > 0) {
                previous = Some((p, rec.completion_tokens.unwrap_or(0)));
            }
        }
        let ok = rec.success;
        let is_last = !ok || k as u64 + 1 == last;
        let first_send = *started.get_or_insert(rec.timeline.send);
        rec.session = Some(SessionTag {
            id: id.clone(),
            turn: k as u32 + 1,
            is_last,
            parent_span: root.span_id,
            parent_session: None,
            started: first_send,
            cached_estimate,
            agent_depth: None,
            prefix_blocks: None,
        });
        if measured {
            if s.out.send(rec).await.is_err() {
                return;
            }
        } else if ok {
            s.warm_ok.fetch_add(1, Ordering::Relaxed);
        }
        if !ok {
            // evalscope: a failed turn ends its conversation.
            return;
        }
        context.push(json!({"role": "assistant", "content": text}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(success: bool, prompt: Option<u64>, cached: Option<u64>) -> RequestRecord {
        RequestRecord {
            seq: 0,
            request: bytes::Bytes::new(),
            timeline: Default::default(),
            itl: vec![],
            success,
            is_stream: true,
            http_status: Some(200),
            failure: None,
            error: None,
            prompt_tokens: prompt,
            completion_tokens: Some(5),
            cached_tokens: cached,
            output_chunks: 0,
            decode_chunks: 0,
            finish_reason: None,
            output_chars: 0,
            response_messages: None,
            request_id: None,
            server_traceparent: None,
            trace: None,
            resent: false,
            output_text: None,
            session: None,
        }
    }

    #[test]
    fn cached_tokens_follow_evalscope_7_4() {
        // The server reported a figure (even 0): no estimate.
        assert_eq!(
            estimate_cached(&rec(true, Some(10), Some(0)), Some((4, 2))),
            None
        );
        // Else the previous turn's prompt + completion.
        assert_eq!(
            estimate_cached(&rec(true, Some(10), None), Some((4, 2))),
            Some(6)
        );
        // First turn: 0. No prompt count: nothing.
        assert_eq!(estimate_cached(&rec(true, Some(10), None), None), Some(0));
        assert_eq!(estimate_cached(&rec(true, None, None), Some((4, 2))), None);
        assert_eq!(
            estimate_cached(&rec(false, Some(3), None), Some((4, 2))),
            None
        );
    }
}
