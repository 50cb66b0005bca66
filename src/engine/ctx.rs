//! The state one invocation shares between its parts.

use std::path::PathBuf;
use std::sync::Arc;

use super::stop::Stop;
use crate::client;
use crate::config::RunConfig;
use crate::record::Clock;
use crate::recorder::prometheus::Metrics;
use crate::report::RunResult;

/// What every part of a run shares.
pub(crate) struct Ctx {
    pub(crate) cfg: RunConfig,
    /// This invocation's log (its benchmark.log, the progress bar it prints around).
    pub(crate) log: Arc<crate::telemetry::log::RunLog>,
    /// The load client: its connections to the target, protocol and clock.
    pub(crate) client: client::Client,
    pub(crate) clock: Clock,
    pub(crate) stop: Stop,
    /// Live Prometheus metrics, when `--metrics-addr` is not `off`.
    pub(crate) metrics: Option<Arc<Metrics>>,
    /// The `run` label: `<timestamp>/<name|model>`.
    pub(crate) run_label: String,
    /// OpenTelemetry span export, when configured.
    pub(crate) tracing: Option<Arc<crate::recorder::otel::Tracing>>,
    pub(crate) progress: Option<Arc<crate::recorder::progress::Progress>>,
    /// The served model's /metrics endpoints found at setup (None: none to scrape).
    pub(crate) scrape: Option<crate::scrape::ScrapeConfig>,
    /// Space held on the output disk, freed when the disk fills mid-run.
    pub(crate) reserve: Option<Arc<crate::store::Reserve>>,
    /// Scrape endpoints whose failure has been reported (once per invocation).
    pub(crate) scrape_reported: crate::scrape::Reported,
    /// Σ `number` of the runs done: evalscope advances `dataset_offset` by each
    /// run's number so the next run starts elsewhere in the dataset.
    pub(crate) offset_advance: std::sync::atomic::AtomicU64,
    /// The tracker run's point sender, once started: snapshots push to it live.
    pub(crate) tracker: std::sync::OnceLock<crate::trackers::PointSender>,
}

impl Ctx {
    /// The labels of a run's (stage's) live series.
    pub(crate) fn run_labels(&self, name: &str) -> crate::telemetry::RunLabels {
        crate::telemetry::RunLabels {
            run: self.run_label.clone(),
            model: self.cfg.model.clone(),
            api: self.cfg.api.as_str().into(),
            stage: name.to_string(),
        }
    }

    /// `--dataset-offset` as this run sees it (evalscope 1.14.1's auto-advance).
    pub(crate) fn dataset_offset(&self) -> u64 {
        self.cfg.dataset.dataset_offset
            + self
                .offset_advance
                .load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// What a finished invocation produced.
pub struct Outcome {
    pub exit_code: i32,
    pub dir: PathBuf,
    pub runs: Vec<RunResult>,
}
