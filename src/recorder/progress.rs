//! `--enable-progress-tracker`: `<output dir>/progress.json` as evalscope writes it
//! (`{status, pipeline, total_count, processed_count, percent, updated_at}`), replaced
//! atomically (`progress.json.tmp` then rename) at most once per second, forced at
//! creation and at the end (`completed`, or `error`). The same counts are on
//! `/metrics` as `perfscope_progress_*` gauges when the endpoint is on.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::telemetry::log;
use tracing::instrument::WithSubscriber;

pub struct Progress {
    path: PathBuf,
    total: u64,
    processed: AtomicU64,
    /// The last processed count written, to skip identical writes.
    written: Mutex<Option<u64>>,
    gauges: Option<(
        prometheus_client::metrics::gauge::Gauge,
        prometheus_client::metrics::gauge::Gauge,
    )>,
}

impl Progress {
    /// Writes the initial file and starts the once-per-second writer.
    pub fn start(
        dir: &Path,
        total: u64,
        gauges: Option<(
            prometheus_client::metrics::gauge::Gauge,
            prometheus_client::metrics::gauge::Gauge,
        )>,
    ) -> Arc<Progress> {
        let p = Arc::new(Progress {
            path: dir.join("progress.json"),
            total,
            processed: AtomicU64::new(0),
            written: Mutex::new(None),
            gauges,
        });
        if let Some((_, t)) = &p.gauges {
            t.set(total as i64);
        }
        p.write("running", true);
        let weak = Arc::downgrade(&p);
        tokio::spawn(
            async move {
                let mut tick = tokio::time::interval(Duration::from_secs(1));
                tick.tick().await;
                loop {
                    tick.tick().await;
                    let Some(p) = weak.upgrade() else { break };
                    if p.write("running", false) == Some(false) {
                        break;
                    }
                }
            }
            .with_current_subscriber(),
        );
        p
    }

    /// One more finished (non-warmup) request.
    pub fn add(&self) {
        let n = self.processed.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some((g, _)) = &self.gauges {
            g.set(n as i64);
        }
    }

    /// The final write: `completed` or `error`.
    pub fn finish(&self, ok: bool) {
        self.write(if ok { "completed" } else { "error" }, true);
    }

    /// Writes when forced or when the count changed; None when nothing was written,
    /// Some(false) once the final status is on disk (the writer then stops).
    fn write(&self, status: &str, force: bool) -> Option<bool> {
        let Ok(mut last) = self.written.lock() else {
            return None;
        };
        if *last == Some(u64::MAX) {
            return Some(false);
        }
        let n = self.processed.load(Ordering::Relaxed);
        if !force && *last == Some(n) {
            return None;
        }
        let percent = if self.total > 0 {
            (10_000.0 * n as f64 / self.total as f64).round() / 100.0
        } else {
            0.0
        };
        let body = serde_json::json!({
            "status": status,
            "pipeline": "perf",
            "total_count": self.total,
            "processed_count": n,
            "percent": percent,
            "updated_at": chrono::Local::now().format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        });
        let tmp = self.path.with_extension("json.tmp");
        let done = std::fs::write(&tmp, format!("{body:#}"))
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if let Err(e) = done {
            log::warn(format!("cannot write {}: {e}", self.path.display()));
        }
        *last = Some(if status == "running" { n } else { u64::MAX });
        Some(status == "running")
    }
}
