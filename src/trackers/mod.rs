//! Experiment trackers: W&B, SwanLab and ClearML over their REST APIs (blocking ureq,
//! no SDKs), fed from the stored results.
//!
//! evalscope initialises its visualizer once per invocation and logs the cumulative
//! summary after every request into one run (one step per request), with no
//! percentiles, tables or finish call. perfscope keeps the single run per invocation
//! and evalscope's metric names (`Avg TTFT (ms)`, …) but logs one point per sweep step
//! (step = sweep index, with `Concurrency` and `Request Rate (req/s)` as values), the
//! p50/p90/p99 percentiles, a final summary, the percentile table and a finished or
//! failed state. The run is created before any load, so a bad key fails fast; pushing
//! happens on a dedicated thread; if a tracker goes down the benchmark still completes
//! and `perfscope push` sends the stored run later.

pub mod clearml;
pub mod http;
pub mod payload;
pub mod push;
pub mod settings;
pub mod swanlab;
pub mod wandb;

pub use payload::{
    base36_id, final_payload, group, now_unix, percentile_table, point, point_values, rfc3339,
    snapshot_point, url_segment, Final, Outcome, Point, RunMeta, Table, Tracker,
};
pub use settings::{TrackerFlags, TrackerKind, TrackerSettings};

use anyhow::{bail, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use crate::telemetry::log;

impl TrackerSettings {
    /// Resolves from the flags and the process environment; `Ok(None)`: no tracker.
    pub fn resolve(f: &TrackerFlags) -> Result<Option<TrackerSettings>> {
        Self::resolve_with(f, |k| {
            std::env::var(k).ok().filter(|v| !v.trim().is_empty())
        })
    }

    /// Picks the tracker, then lets it read its own flags and variables (`env`).
    pub fn resolve_with(
        f: &TrackerFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<TrackerSettings>> {
        // evalscope: without --visualizer, either deprecated key alone enables its
        // tracker.
        let kind = match (f.visualizer, f.wandb_api_key, f.swanlab_api_key) {
            (Some(v), _, _) => TrackerKind::parse("--visualizer", v)?,
            (None, Some(_), None) => TrackerKind::Wandb,
            (None, None, Some(_)) => TrackerKind::Swanlab,
            (None, Some(_), Some(_)) => bail!(
                "--wandb-api-key and --swanlab-api-key both given without --visualizer; \
                 add --visualizer wandb or --visualizer swanlab"
            ),
            (None, None, None) => {
                if f.swanlab_host.is_some() {
                    bail!("--swanlab-host: add --visualizer swanlab (and a key) to log to SwanLab");
                }
                return Ok(None);
            }
        };
        let base = TrackerSettings::defaults(kind);
        Ok(Some(match kind {
            TrackerKind::Wandb => wandb::settings(f, &env, base)?,
            TrackerKind::Swanlab => swanlab::settings(f, &env, base)?,
            TrackerKind::Clearml => clearml::settings(f, &env, base)?,
        }))
    }
}

pub fn client(s: &TrackerSettings) -> Box<dyn Tracker> {
    match s.kind {
        TrackerKind::Wandb => Box::new(wandb::Wandb::new(s.clone())),
        TrackerKind::Swanlab => Box::new(swanlab::Swanlab::new(s.clone())),
        TrackerKind::Clearml => Box::new(clearml::Clearml::new(s.clone())),
    }
}

enum Msg {
    Point(Point),
    Finish(Final),
}

/// A started tracker run, pushed to from a dedicated thread.
pub struct TrackerRun {
    tx: Option<mpsc::Sender<Msg>>,
    handle: Option<std::thread::JoinHandle<bool>>,
    pub kind: TrackerKind,
    pub url: String,
    steps: Arc<AtomicU64>,
}

/// Pushes history points to a started run from anywhere (the fan-out's
/// snapshots); points get the run's next step, in the order they are pushed.
#[derive(Clone)]
pub struct PointSender {
    tx: mpsc::Sender<Msg>,
    steps: Arc<AtomicU64>,
}

impl PointSender {
    pub fn point(&self, mut p: Point) {
        p.step = self.steps.fetch_add(1, Ordering::Relaxed);
        let _ = self.tx.send(Msg::Point(p));
    }
}

impl TrackerRun {
    /// Authenticates and creates the run (blocking; before any load, so a bad key or
    /// an unreachable tracker stops the command with a clear message).
    pub fn start(settings: &TrackerSettings, meta: &RunMeta) -> Result<TrackerRun> {
        let mut t = client(settings);
        let url = t.start(meta)?;
        let every = settings.heartbeat.unwrap_or_else(|| t.heartbeat_every());
        let (tx, rx) = mpsc::channel::<Msg>();
        let title = settings.kind.title();
        // The thread logs to the invocation's log, like the task that started it.
        let log = tracing::dispatcher::get_default(|d| d.clone());
        let handle = std::thread::Builder::new()
            .name("perfscope-tracker".into())
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&log);
                loop {
                    let mut last = false;
                    let r = match rx.recv_timeout(every) {
                        Ok(Msg::Point(p)) => t.point(&p),
                        // The end, even while a point sender is still held.
                        Ok(Msg::Finish(f)) => {
                            last = true;
                            t.finish(&f)
                        }
                        // A step of an hours-long soak: keep the run from going stale.
                        Err(mpsc::RecvTimeoutError::Timeout) => t.heartbeat(),
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    };
                    if let Err(e) = r {
                        log::warn(format!(
                            "{title}: {e:#}; results are on disk; push them later with \
                             `perfscope push <run dir> --visualizer ...`"
                        ));
                        return false;
                    }
                    if last {
                        break;
                    }
                }
                true
            })?;
        Ok(TrackerRun {
            tx: Some(tx),
            handle: Some(handle),
            kind: settings.kind,
            url,
            steps: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Pushes a sweep step as the run's next history step.
    pub fn point(&self, p: Point) {
        if let Some(s) = self.sender() {
            s.point(p);
        }
    }

    /// A handle that pushes points while the run goes (None once finished).
    pub fn sender(&self) -> Option<PointSender> {
        Some(PointSender {
            tx: self.tx.clone()?,
            steps: self.steps.clone(),
        })
    }

    /// Sends the final summary and state, then waits for everything queued (bounded).
    /// Returns whether every push succeeded.
    pub fn finish(mut self, f: Final, bound: Duration) -> bool {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(Msg::Finish(f));
        }
        let Some(h) = self.handle.take() else {
            return false;
        };
        let deadline = std::time::Instant::now() + bound;
        while !h.is_finished() {
            if std::time::Instant::now() >= deadline {
                log::warn(format!(
                    "{}: still pushing after {:.0} s; giving up (push later with `perfscope push`)",
                    self.kind.title(),
                    bound.as_secs_f64()
                ));
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        h.join().unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(f: TrackerFlags, env: &[(&str, &str)]) -> Result<Option<TrackerSettings>> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TrackerSettings::resolve_with(&f, |k| env.get(k).cloned())
    }

    #[test]
    fn deprecated_keys_alone_enable_their_tracker() {
        let s = resolve(
            TrackerFlags {
                wandb_api_key: Some("k"),
                ..Default::default()
            },
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.kind, TrackerKind::Wandb);
        assert_eq!(s.host, "https://api.wandb.ai");
        assert_eq!(s.project, "perf_benchmark");
        let s = resolve(
            TrackerFlags {
                swanlab_api_key: Some("k"),
                ..Default::default()
            },
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.kind, TrackerKind::Swanlab);
        assert!(resolve(TrackerFlags::default(), &[("WANDB_API_KEY", "x")])
            .unwrap()
            .is_none());
    }

    #[test]
    fn environment_and_flags() {
        let env = [
            ("WANDB_API_KEY", "envkey"),
            ("WANDB_BASE_URL", "http://127.0.0.1:9/"),
            ("WANDB_PROJECT", "p"),
            ("WANDB_ENTITY", "team"),
        ];
        let s = resolve(
            TrackerFlags {
                visualizer: Some("wandb"),
                ..Default::default()
            },
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.key.as_str(), s.host.as_str()),
            ("envkey", "http://127.0.0.1:9")
        );
        assert_eq!(
            (s.project.as_str(), s.workspace.as_deref()),
            ("p", Some("team"))
        );
        let f = TrackerFlags {
            visualizer: Some("wandb"),
            wandb_api_key: Some("flagkey"),
            ..Default::default()
        };
        assert_eq!(resolve(f, &env).unwrap().unwrap().key, "flagkey");
        let env = [
            ("SWANLAB_API_KEY", "k"),
            ("SWANLAB_HOST", "http://sl:8000"),
            ("SWANLAB_PROJ_NAME", "x"),
        ];
        let f = TrackerFlags {
            visualizer: Some("swanlab"),
            swanlab_host: Some("http://flag:1"),
            ..Default::default()
        };
        let s = resolve(f, &env).unwrap().unwrap();
        assert_eq!(s.host, "http://flag:1");
        assert_eq!(s.web_host.as_deref(), Some("http://flag:1"));
        assert_eq!(s.project, "x");
        let env = [
            ("CLEARML_API_ACCESS_KEY", "a"),
            ("CLEARML_API_SECRET_KEY", "s"),
            ("CLEARML_PROJECT_NAME", "c"),
        ];
        let s = resolve(
            TrackerFlags {
                visualizer: Some("clearml"),
                ..Default::default()
            },
            &env,
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (s.key.as_str(), s.secret.as_deref(), s.project.as_str()),
            ("a", Some("s"), "c")
        );
        assert_eq!(s.host, "https://api.clear.ml");
        assert!(!format!("{s:?}").contains("\"a\""));
    }

    #[test]
    fn missing_keys_and_bad_values_name_what_to_set() {
        let e = resolve(
            TrackerFlags {
                visualizer: Some("wandb"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("WANDB_API_KEY"), "{e}");
        let e = resolve(
            TrackerFlags {
                visualizer: Some("clearml"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("CLEARML_API_SECRET_KEY"), "{e}");
        let e = resolve(
            TrackerFlags {
                visualizer: Some("tensorboard"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("--visualizer"), "{e}");
        let e = resolve(
            TrackerFlags {
                swanlab_api_key: Some("local"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("local"), "{e}");
        let f = TrackerFlags {
            wandb_api_key: Some("k"),
            ..Default::default()
        };
        let e = resolve(f, &[("WANDB_BASE_URL", "api.wandb.ai")]).unwrap_err();
        assert!(e.to_string().contains("WANDB_BASE_URL"), "{e}");
    }

    #[test]
    fn timestamps_and_ids() {
        assert_eq!(rfc3339(1_755_770_135.412_1), "2025-08-21T09:55:35.412Z");
        let id = base36_id(8);
        assert_eq!(id.len(), 8);
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    }
}
