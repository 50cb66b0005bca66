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
pub mod push;
pub mod swanlab;
pub mod wandb;

use anyhow::{bail, Result};
use serde_json::{Map, Value};
use std::sync::mpsc;
use std::time::Duration;

use crate::report::{log, RunResult};
use crate::stats::PERCENTILES;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Visualizer {
    Wandb,
    Swanlab,
    Clearml,
}

impl Visualizer {
    pub fn parse(flag: &str, v: &str) -> Result<Visualizer> {
        Ok(match v.trim().to_ascii_lowercase().as_str() {
            "wandb" => Visualizer::Wandb,
            "swanlab" => Visualizer::Swanlab,
            "clearml" => Visualizer::Clearml,
            other => bail!("{flag}: `{other}` is not a visualizer; use wandb, swanlab or clearml"),
        })
    }
    pub fn title(self) -> &'static str {
        match self {
            Visualizer::Wandb => "W&B",
            Visualizer::Swanlab => "SwanLab",
            Visualizer::Clearml => "ClearML",
        }
    }
    pub fn flag_value(self) -> &'static str {
        match self {
            Visualizer::Wandb => "wandb",
            Visualizer::Swanlab => "swanlab",
            Visualizer::Clearml => "clearml",
        }
    }
}

/// Where and as whom to push. Secrets are never printed: `Debug` masks them.
#[derive(Clone)]
pub struct SinkSettings {
    pub kind: Visualizer,
    /// W&B / SwanLab API key, ClearML access key.
    pub key: String,
    /// ClearML secret key.
    pub secret: Option<String>,
    /// API base URL (no trailing slash).
    pub host: String,
    /// Web UI base URL for run links (None: derived from the API host).
    pub web_host: Option<String>,
    pub project: String,
    /// W&B entity / SwanLab workspace (None: the key's default).
    pub workspace: Option<String>,
    /// Per-request timeout, attempts per call and the first backoff wait.
    pub timeout: Duration,
    pub attempts: u32,
    pub first_wait: Duration,
    /// Heartbeat interval override (None: the tracker SDK's own interval).
    pub heartbeat: Option<Duration>,
}

impl std::fmt::Debug for SinkSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkSettings")
            .field("kind", &self.kind)
            .field("key", &"***")
            .field("host", &self.host)
            .field("project", &self.project)
            .field("workspace", &self.workspace)
            .finish()
    }
}

/// The flag values that select and configure a tracker.
#[derive(Default)]
pub struct SinkFlags<'a> {
    pub visualizer: Option<&'a str>,
    pub wandb_api_key: Option<&'a str>,
    pub swanlab_api_key: Option<&'a str>,
    pub swanlab_host: Option<&'a str>,
}

impl SinkSettings {
    /// Resolves from the flags and the process environment; `Ok(None)`: no tracker.
    pub fn resolve(f: &SinkFlags) -> Result<Option<SinkSettings>> {
        Self::resolve_with(f, |k| {
            std::env::var(k).ok().filter(|v| !v.trim().is_empty())
        })
    }

    pub fn resolve_with(
        f: &SinkFlags,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<SinkSettings>> {
        // evalscope: without --visualizer, either deprecated key alone enables its
        // tracker.
        let kind = match (f.visualizer, f.wandb_api_key, f.swanlab_api_key) {
            (Some(v), _, _) => Visualizer::parse("--visualizer", v)?,
            (None, Some(_), None) => Visualizer::Wandb,
            (None, None, Some(_)) => Visualizer::Swanlab,
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
        let base = SinkSettings {
            kind,
            key: String::new(),
            secret: None,
            host: String::new(),
            web_host: None,
            project: "perf_benchmark".into(),
            workspace: None,
            timeout: Duration::from_secs(30),
            attempts: 5,
            first_wait: Duration::from_millis(500),
            heartbeat: None,
        };
        let url = |src: &str, v: String| -> Result<String> {
            let v = v.trim().trim_end_matches('/').to_string();
            if !(v.starts_with("http://") || v.starts_with("https://")) {
                bail!("{src}: `{v}` must be an http:// or https:// URL");
            }
            Ok(v)
        };
        let s = match kind {
            Visualizer::Wandb => {
                // The flag wins, as evalscope's `wandb.login(key=...)`.
                let Some(key) = f
                    .wandb_api_key
                    .map(str::to_string)
                    .or_else(|| env("WANDB_API_KEY"))
                else {
                    bail!(
                        "--visualizer wandb: no API key; pass --wandb-api-key or set WANDB_API_KEY"
                    );
                };
                SinkSettings {
                    key,
                    host: url(
                        "WANDB_BASE_URL",
                        env("WANDB_BASE_URL").unwrap_or_else(|| "https://api.wandb.ai".into()),
                    )?,
                    web_host: env("WANDB_APP_URL").map(|u| u.trim_end_matches('/').to_string()),
                    project: env("WANDB_PROJECT").unwrap_or(base.project.clone()),
                    workspace: env("WANDB_ENTITY"),
                    ..base
                }
            }
            Visualizer::Swanlab => {
                let Some(key) = f
                    .swanlab_api_key
                    .map(str::to_string)
                    .or_else(|| env("SWANLAB_API_KEY"))
                else {
                    bail!(
                        "--visualizer swanlab: no API key; pass --swanlab-api-key or set SWANLAB_API_KEY"
                    );
                };
                if key == "local" {
                    bail!(
                        "--swanlab-api-key local: SwanLab's local mode writes files for the \
                         SwanLab Python package, which perfscope does not use; run a self-hosted \
                         SwanLab and pass its --swanlab-host and key"
                    );
                }
                let (src, host) =
                    match (f.swanlab_host, env("SWANLAB_HOST"), env("SWANLAB_API_HOST")) {
                        (Some(h), _, _) => ("--swanlab-host", h.to_string()),
                        (None, Some(h), _) => ("SWANLAB_HOST", h),
                        (None, None, Some(h)) => ("SWANLAB_API_HOST", h),
                        (None, None, None) => ("SWANLAB_API_HOST", "https://api.swanlab.cn".into()),
                    };
                let host = url(src, host)?;
                // A self-hosted server serves the UI on the same host.
                let web = env("SWANLAB_WEB_HOST")
                    .map(|u| u.trim_end_matches('/').to_string())
                    .or_else(|| (host != "https://api.swanlab.cn").then(|| host.clone()));
                SinkSettings {
                    key,
                    host,
                    web_host: web.or(Some("https://swanlab.cn".into())),
                    project: env("SWANLAB_PROJ_NAME")
                        .or_else(|| env("SWANLAB_PROJECT"))
                        .unwrap_or(base.project.clone()),
                    workspace: env("SWANLAB_WORKSPACE"),
                    ..base
                }
            }
            Visualizer::Clearml => {
                let access = env("CLEARML_API_ACCESS_KEY").or_else(|| env("TRAINS_API_ACCESS_KEY"));
                let secret = env("CLEARML_API_SECRET_KEY").or_else(|| env("TRAINS_API_SECRET_KEY"));
                let (Some(key), Some(secret)) = (access, secret) else {
                    bail!(
                        "--visualizer clearml: set CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY \
                         (ClearML web UI → Settings → Workspace → Create new credentials)"
                    );
                };
                SinkSettings {
                    key,
                    secret: Some(secret),
                    host: url(
                        "CLEARML_API_HOST",
                        env("CLEARML_API_HOST")
                            .or_else(|| env("TRAINS_API_HOST"))
                            .unwrap_or_else(|| "https://api.clear.ml".into()),
                    )?,
                    web_host: env("CLEARML_WEB_HOST").map(|u| u.trim_end_matches('/').to_string()),
                    project: env("CLEARML_PROJECT_NAME").unwrap_or(base.project.clone()),
                    ..base
                }
            }
        };
        Ok(Some(s))
    }
}

/// What a run is: its display name and the resolved configuration (secrets masked).
pub struct RunMeta {
    pub name: String,
    pub config: Map<String, Value>,
    pub started_unix: f64,
}

/// One sweep step.
pub struct Point {
    pub step: u64,
    pub stage: String,
    pub values: Vec<(String, f64)>,
    pub unix: f64,
}

/// A table: column names and rows.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Value>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    /// No request succeeded in some step, or the benchmark stopped with an error.
    Failed,
    /// Ctrl-C.
    Interrupted,
}

pub struct Final {
    /// Run-level results: the best steps and the totals.
    pub summary: Vec<(String, f64)>,
    /// The last step's values (W&B's summary shows the last logged values).
    pub last: Vec<(String, f64)>,
    /// Every step's percentiles, one row per step and percentile.
    pub percentiles: Table,
    pub outcome: Outcome,
    pub unix: f64,
    pub runtime_s: f64,
}

/// One tracker's protocol.
pub trait Tracker: Send {
    /// Authenticates and creates the run; returns its web URL.
    fn start(&mut self, run: &RunMeta) -> Result<String>;
    fn point(&mut self, p: &Point) -> Result<()>;
    fn finish(&mut self, f: &Final) -> Result<()>;
    /// How often a run with no new data must show it is alive (long soaks), and how.
    fn heartbeat_every(&self) -> Duration;
    fn heartbeat(&mut self) -> Result<()>;
}

pub fn tracker(s: &SinkSettings) -> Box<dyn Tracker> {
    match s.kind {
        Visualizer::Wandb => Box::new(wandb::Wandb::new(s.clone())),
        Visualizer::Swanlab => Box::new(swanlab::Swanlab::new(s.clone())),
        Visualizer::Clearml => Box::new(clearml::Clearml::new(s.clone())),
    }
}

/// Summary keys pushed per step: evalscope's numeric summary keys.
const SUMMARY_KEYS: &[&str] = &[
    "Concurrency",
    "Request Rate (req/s)",
    "Test Duration (s)",
    "Total Requests",
    "Success Requests",
    "Failed Requests",
    "Req Throughput (req/s)",
    "Avg Latency (s)",
    "Avg TTFT (ms)",
    "Avg TPOT (ms)",
    "Avg ITL (ms)",
    "Avg Input Tokens",
    "Avg Output Tokens",
    "Output Throughput (tok/s)",
    "Total Throughput (tok/s)",
    "Measured Request Rate (req/s)",
    "Measured Concurrency (avg)",
    "Goodput (req/s)",
    "Goodput (%)",
];

/// Percentile columns and points pushed per step, as `"<column> p<N>"` (no `/`:
/// the units contain one, and trackers group keys on it).
const PCT_COLUMNS: &[&str] = &["Latency (s)", "TTFT (ms)", "ITL (ms)", "TPOT (ms)"];
const PCT_POINTS: &[&str] = &["50%", "90%", "99%"];

/// Chart grouping of a pushed key: percentile keys by their column (`TTFT (ms) p99`
/// → `TTFT (ms)`, `p99`), the rest under evalscope's title `Performance Metrics`.
pub fn group(key: &str) -> (&str, &str) {
    for c in PCT_COLUMNS {
        if let Some(rest) = key.strip_prefix(c).and_then(|r| r.strip_prefix(' ')) {
            if rest.starts_with('p') {
                return (c, rest);
            }
        }
    }
    match key.strip_prefix("Summary ") {
        Some(rest) => ("Summary", rest),
        None => ("Performance Metrics", key),
    }
}

/// A step's values: the summary keys, success rate and key percentiles, finite only
/// (trackers' JSON has no NaN).
pub fn point_values(r: &RunResult) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = SUMMARY_KEYS
        .iter()
        .filter_map(|k| {
            r.summary
                .get(*k)
                .and_then(Value::as_f64)
                .map(|x| (k.to_string(), x))
        })
        .collect();
    v.push(("Success Rate (%)".into(), r.success_rate()));
    // Embedding / rerank steps: evalscope's input throughput instead of the
    // generation percentiles (absent there, so dropped below as NaN).
    let extra: &[&str] = if r.encoder {
        v.push((
            "Input Throughput (tok/s)".into(),
            r.num("Input Throughput (tok/s)"),
        ));
        &["Input (tok/s)"]
    } else {
        &[]
    };
    for c in PCT_COLUMNS.iter().chain(extra) {
        for p in PCT_POINTS {
            v.push((format!("{c} p{}", p.trim_end_matches('%')), r.pct(c, p)));
        }
    }
    v.retain(|(_, x)| x.is_finite());
    v
}

pub fn point(step: u64, r: &RunResult, unix: f64) -> Point {
    Point {
        step,
        stage: r
            .dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
        values: point_values(r),
        unix,
    }
}

/// The final summary (the best steps and the whole invocation's totals) and the
/// percentile table of every step.
pub fn final_payload(runs: &[RunResult], outcome: Outcome, unix: f64, runtime_s: f64) -> Final {
    let mut summary = Vec::new();
    let ok: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.num("Success Requests") > 0.0)
        .collect();
    if let Some(best) = ok.iter().max_by(|a, b| {
        a.num("Req Throughput (req/s)")
            .total_cmp(&b.num("Req Throughput (req/s)"))
    }) {
        summary.push((
            "Best RPS (req/s)".into(),
            best.num("Req Throughput (req/s)"),
        ));
        summary.push(("Best RPS Concurrency".into(), best.point.parallel as f64));
    }
    if let Some(best) = ok.iter().min_by(|a, b| {
        a.num("Avg Latency (s)")
            .total_cmp(&b.num("Avg Latency (s)"))
    }) {
        summary.push(("Lowest Avg Latency (s)".into(), best.num("Avg Latency (s)")));
        summary.push((
            "Lowest Latency Concurrency".into(),
            best.point.parallel as f64,
        ));
    }
    let total: f64 = runs.iter().map(|r| r.num("Total Requests")).sum();
    let succ: f64 = runs.iter().map(|r| r.num("Success Requests")).sum();
    summary.push(("Total Requests".into(), total));
    summary.push(("Success Requests".into(), succ));
    summary.push(("Steps".into(), runs.len() as f64));
    summary.retain(|(_, x)| x.is_finite());
    Final {
        summary,
        last: runs.last().map(point_values).unwrap_or_default(),
        percentiles: percentile_table(runs),
        outcome,
        unix,
        runtime_s,
    }
}

/// benchmark_percentile.json of every step in one table: stage, concurrency, rate,
/// percentile, then the columns.
pub fn percentile_table(runs: &[RunResult]) -> Table {
    let mut t = Table {
        columns: vec![
            "Stage".into(),
            "Concurrency".into(),
            "Rate (req/s)".into(),
            "Percentile".into(),
        ],
        rows: Vec::new(),
    };
    let Some(first) = runs.first() else {
        return t;
    };
    t.columns
        .extend(first.columns.iter().map(|c| c.name.to_string()));
    for r in runs {
        let stage = r
            .dir
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        for (i, (_, label)) in PERCENTILES.iter().enumerate() {
            let mut row = vec![
                Value::from(stage.clone()),
                Value::from(r.point.parallel),
                Value::from(r.point.rate),
                Value::from(*label),
            ];
            for c in &r.columns {
                let v = c.values.get(i).copied().unwrap_or(f64::NAN);
                row.push(if v.is_finite() {
                    Value::from(v)
                } else {
                    Value::Null
                });
            }
            t.rows.push(row);
        }
    }
    t
}

enum Msg {
    Point(Point),
    Finish(Final),
}

/// A started tracker run, pushed to from a dedicated thread.
pub struct Sink {
    tx: Option<mpsc::Sender<Msg>>,
    handle: Option<std::thread::JoinHandle<bool>>,
    pub kind: Visualizer,
    pub url: String,
}

impl Sink {
    /// Authenticates and creates the run (blocking; before any load, so a bad key or
    /// an unreachable tracker stops the command with a clear message).
    pub fn start(settings: &SinkSettings, meta: &RunMeta) -> Result<Sink> {
        let mut t = tracker(settings);
        let url = t.start(meta)?;
        let every = settings.heartbeat.unwrap_or_else(|| t.heartbeat_every());
        let (tx, rx) = mpsc::channel::<Msg>();
        let title = settings.kind.title();
        let handle = std::thread::Builder::new()
            .name("perfscope-sink".into())
            .spawn(move || {
                loop {
                    let r = match rx.recv_timeout(every) {
                        Ok(Msg::Point(p)) => t.point(&p),
                        Ok(Msg::Finish(f)) => t.finish(&f),
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
                }
                true
            })?;
        Ok(Sink {
            tx: Some(tx),
            handle: Some(handle),
            kind: settings.kind,
            url,
        })
    }

    pub fn point(&self, p: Point) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Point(p));
        }
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

/// `YYYY-mm-ddTHH:MM:SS.mmmZ` (RFC 3339, UTC), as SwanLab and W&B timestamps.
pub fn rfc3339(unix: f64) -> String {
    let ms = (unix * 1000.0).round() as i64;
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// A random lower-case base-36 id (W&B run ids are 8 such characters).
pub fn base36_id(len: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len)
        .map(|_| A[fastrand::usize(..A.len())] as char)
        .collect()
}

/// Percent-encodes a URL path segment (entity, project and run names).
pub fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn resolve(f: SinkFlags, env: &[(&str, &str)]) -> Result<Option<SinkSettings>> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        SinkSettings::resolve_with(&f, |k| env.get(k).cloned())
    }

    #[test]
    fn deprecated_keys_alone_enable_their_tracker() {
        let s = resolve(
            SinkFlags {
                wandb_api_key: Some("k"),
                ..Default::default()
            },
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.kind, Visualizer::Wandb);
        assert_eq!(s.host, "https://api.wandb.ai");
        assert_eq!(s.project, "perf_benchmark");
        let s = resolve(
            SinkFlags {
                swanlab_api_key: Some("k"),
                ..Default::default()
            },
            &[],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.kind, Visualizer::Swanlab);
        assert!(resolve(SinkFlags::default(), &[("WANDB_API_KEY", "x")])
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
            SinkFlags {
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
        let f = SinkFlags {
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
        let f = SinkFlags {
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
            SinkFlags {
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
            SinkFlags {
                visualizer: Some("wandb"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("WANDB_API_KEY"), "{e}");
        let e = resolve(
            SinkFlags {
                visualizer: Some("clearml"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("CLEARML_API_SECRET_KEY"), "{e}");
        let e = resolve(
            SinkFlags {
                visualizer: Some("tensorboard"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("--visualizer"), "{e}");
        let e = resolve(
            SinkFlags {
                swanlab_api_key: Some("local"),
                ..Default::default()
            },
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().contains("local"), "{e}");
        let f = SinkFlags {
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
