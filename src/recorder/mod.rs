//! Fan-out of finished records (DESIGN principle 5): every record goes to the SQLite
//! writer (canonical; waits, never drops) and updates the live view (progress bar or
//! log lines every `--log-every-n-query`). The request tasks only push into a bounded
//! queue after releasing their concurrency slot, so nothing here delays a request.

pub mod guard;
pub mod otel;
pub mod progress;
pub mod prometheus;
pub mod slo;
pub mod snapshot;

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use tokio::sync::mpsc;

use crate::record::RequestRecord;
use crate::telemetry::log;

/// Running totals for the live log line: O(1) per record (evalscope recomputes
/// its ITL mean over every value so far on each request).
#[derive(Default, Debug, Clone)]
pub struct Live {
    pub total: u64,
    pub success: u64,
    pub latency_sum: f64,
    pub ttft_sum: f64,
    pub ttft_n: u64,
    pub output_tokens: u64,
    pub input_tokens: u64,
    pub first_send: Option<f64>,
    pub last_end: f64,
    /// Embedding / rerank: the line shows input throughput instead of TTFT and
    /// output throughput.
    pub encoder: bool,
}

impl Live {
    pub fn add(&mut self, r: &RequestRecord) {
        self.total += 1;
        let send = r.timeline.send;
        self.first_send = Some(self.first_send.map_or(send, |f| f.min(send)));
        self.last_end = self.last_end.max(r.timeline.end);
        if r.success {
            self.success += 1;
            self.latency_sum += r.latency().unwrap_or(0.0);
            if let Some(t) = r.ttft() {
                self.ttft_sum += t;
                self.ttft_n += 1;
            }
            self.output_tokens += r.completion_tokens.unwrap_or(0);
            self.input_tokens += r.prompt_tokens.unwrap_or(0);
        }
    }
    /// The running figures, under the catalogue's keys and rounding (evalscope logs
    /// its metrics this way while a run goes).
    pub fn line(&self) -> String {
        use crate::stats::Metric::*;
        let wall = (self.last_end - self.first_send.unwrap_or(0.0)).max(1e-9);
        let avg = |s: f64, n: u64| if n > 0 { s / n as f64 } else { 0.0 };
        let mut s = crate::stats::Summary::default();
        s.set(TotalRequests, self.total as f64);
        s.set(SuccessRequests, self.success as f64);
        s.set(FailedRequests, (self.total - self.success) as f64);
        s.set(ReqThroughput, self.success as f64 / wall);
        s.set(AvgLatency, avg(self.latency_sum, self.success));
        if self.encoder {
            // evalscope's Input Throughput: Σ input tokens / Σ latency.
            let v = if self.latency_sum > 0.0 {
                self.input_tokens as f64 / self.latency_sum
            } else {
                0.0
            };
            s.set(InputThroughput, v);
        } else {
            s.set(AvgTtft, avg(self.ttft_sum, self.ttft_n) * 1000.0);
            s.set(OutputThroughput, self.output_tokens as f64 / wall);
        }
        serde_json::Value::Object(s.to_json()).to_string()
    }
}

pub fn progress_bar(label: &str, total: u64) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{prefix}: {percent:>3}%|{wide_bar}| {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}]",
    ) {
        pb.set_style(style);
    }
    pb.set_prefix(label.to_string());
    pb
}

/// What a tripped stop rule does with its reason (the engine stops dispatching).
pub type OnTrip = Box<dyn Fn(String) + Send>;

/// What observes each record besides SQLite (each optional).
pub struct Observers {
    pub prom: Option<(
        std::sync::Arc<prometheus::Metrics>,
        crate::telemetry::RunLabels,
    )>,
    pub spans: Option<(
        std::sync::Arc<otel::Tracing>,
        otel::PreparedCommon,
        crate::record::Clock,
    )>,
    pub progress: Option<std::sync::Arc<progress::Progress>>,
    /// An embedding or rerank run (changes the live summary line).
    pub encoder: bool,
    /// The stop rules, and what to do when one trips (stop dispatching).
    pub guard: Option<(guard::Guard, OnTrip)>,
    /// Periodic summaries (`--snapshot-interval`).
    pub snapshots: Option<snapshot::Snapshots>,
}

/// Consumes records until every sender is gone; returns the live totals.
pub async fn fanout(
    mut rx: mpsc::Receiver<RequestRecord>,
    db: mpsc::Sender<RequestRecord>,
    bar: ProgressBar,
    log_every: u64,
    label: String,
    obs: Observers,
) -> Live {
    let Observers {
        prom,
        spans,
        progress,
        encoder,
        mut guard,
        mut snapshots,
    } = obs;
    let mut live = Live {
        encoder,
        ..Live::default()
    };
    // One timer, re-armed only when the open window changes (not per record).
    let timer = tokio::time::sleep(std::time::Duration::from_secs(86_400));
    tokio::pin!(timer);
    let mut armed: Option<f64> = None;
    loop {
        if let Some((due, wait)) = snapshots.as_ref().and_then(|s| s.due()) {
            if armed != Some(due) {
                timer.as_mut().reset(tokio::time::Instant::now() + wait);
                armed = Some(due);
            }
        }
        let next = tokio::select! {
            r = rx.recv() => r,
            _ = &mut timer, if armed.is_some() => {
                if let Some(s) = snapshots.as_mut() {
                    s.tick();
                }
                armed = None;
                continue;
            }
        };
        let Some(r) = next else {
            break;
        };
        live.add(&r);
        if let Some(s) = snapshots.as_mut() {
            s.observe(&r);
        }
        // Multi-turn progress counts conversations (evalscope: on each last turn).
        let done = r.session.as_ref().is_none_or(|s| s.is_last);
        if done {
            bar.inc(1);
        }
        if let Some((m, labels)) = &prom {
            m.observe(&r, labels);
        }
        if let Some((t, common, clock)) = &spans {
            t.record(&r, clock, common);
        }
        if let Some((g, trip)) = guard.as_mut() {
            if let Some(why) = g.observe(&r) {
                trip(why);
            }
        }
        if let Some(p) = progress.as_ref().filter(|_| done) {
            p.add();
        }
        if live.total.is_multiple_of(log_every) {
            // Printed above the bar when one is drawn, as evalscope logs beside tqdm.
            log::info(format!("{label}: {}", live.line()));
        }
        if !r.success {
            log::debug(format!(
                "request {} failed ({}): {}",
                r.seq,
                r.failure.map_or("other", |k| k.as_str()),
                r.error.as_deref().unwrap_or("")
            ));
        }
        if db.send(r).await.is_err() {
            log::error("the SQLite writer stopped; remaining records are not stored");
            break;
        }
    }
    bar.finish_and_clear();
    if let Some(s) = snapshots {
        s.finish(live.last_end);
    }
    live
}
