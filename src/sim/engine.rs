//! The continuous-batching timing model.
//!
//! A request waits in a FIFO queue until a batch slot (`max_num_seqs`) and KV
//! capacity (prompt + output tokens of running sequences) are free. Every engine step
//! decodes one token for each running sequence; a step costs
//! `decode_base_ms + decode_ms_per_seq × batch + prefill_ms_per_token × prompt tokens
//! admitted in this step`. So throughput levels off once the batch is full and TTFT
//! grows with queueing: a sweep against it shows real saturation.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

use super::config::SimConfig;

/// Engine → body events.
pub enum Ev {
    /// The sequence got a batch slot (vLLM's "scheduled": its queue time ends).
    Scheduled,
    Token,
    /// The engine dropped the sequence (shutdown).
    Abort,
}

pub struct Seq {
    pub tx: mpsc::UnboundedSender<Ev>,
    pub prompt: u64,
    /// Prompt tokens found in the prefix cache: no prefill cost.
    pub cached: u64,
    pub target: u64,
    pub generated: u64,
}

/// Live engine state, read by the server's own reporting (running/waiting counts).
#[derive(Default)]
pub struct EngineState {
    pub running: AtomicU64,
    pub waiting: AtomicU64,
    pub kv_used: AtomicU64,
    pub steps: AtomicU64,
}

pub fn spawn(cfg: SimConfig, state: Arc<EngineState>) -> mpsc::UnboundedSender<Seq> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(run(cfg, rx, state));
    tx
}

async fn run(cfg: SimConfig, mut rx: mpsc::UnboundedReceiver<Seq>, state: Arc<EngineState>) {
    let mut waiting: VecDeque<Seq> = VecDeque::new();
    let mut running: Vec<Seq> = Vec::new();
    let mut kv_used: u64 = 0;
    let mut next_step = Instant::now();
    loop {
        while let Ok(s) = rx.try_recv() {
            waiting.push_back(s);
        }
        if running.is_empty() && waiting.is_empty() {
            match rx.recv().await {
                Some(s) => waiting.push_back(s),
                None => return,
            }
            next_step = Instant::now();
            continue;
        }
        let mut prefill_tokens = 0u64;
        while running.len() < cfg.max_num_seqs {
            let Some(front) = waiting.front() else { break };
            let need = front.prompt + front.target;
            // A sequence larger than the whole cache still runs when it is alone,
            // rather than blocking the queue forever.
            if kv_used + need > cfg.kv_cache_tokens && !running.is_empty() {
                break;
            }
            if let Some(s) = waiting.pop_front() {
                kv_used += need;
                prefill_tokens += s.prompt.saturating_sub(s.cached);
                let _ = s.tx.send(Ev::Scheduled);
                running.push(s);
            }
        }
        let step_ms = cfg.decode_base_ms
            + cfg.decode_ms_per_seq * running.len() as f64
            + cfg.prefill_ms_per_token * prefill_tokens as f64;
        state.running.store(running.len() as u64, Ordering::Relaxed);
        state.waiting.store(waiting.len() as u64, Ordering::Relaxed);
        state.kv_used.store(kv_used, Ordering::Relaxed);
        // Absolute step schedule: a late wake-up does not delay later steps.
        next_step = next_step.max(Instant::now() - Duration::from_millis(5))
            + Duration::from_secs_f64(step_ms / 1000.0);
        tokio::time::sleep_until(next_step.into()).await;
        state.steps.fetch_add(1, Ordering::Relaxed);
        running.retain_mut(|s| {
            let alive = s.tx.send(Ev::Token).is_ok();
            s.generated += 1;
            if !alive || s.generated >= s.target {
                kv_used -= s.prompt + s.target;
                false
            } else {
                true
            }
        });
        // Reflect finished sequences at once (the loop may now go idle).
        state.running.store(running.len() as u64, Ordering::Relaxed);
        state.kv_used.store(kv_used, Ordering::Relaxed);
    }
}
