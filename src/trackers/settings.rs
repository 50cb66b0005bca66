//! Which tracker to push to, and as whom.

use anyhow::{bail, Result};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrackerKind {
    Wandb,
    Swanlab,
    Clearml,
}

impl TrackerKind {
    pub fn parse(flag: &str, v: &str) -> Result<TrackerKind> {
        Ok(match v.trim().to_ascii_lowercase().as_str() {
            "wandb" => TrackerKind::Wandb,
            "swanlab" => TrackerKind::Swanlab,
            "clearml" => TrackerKind::Clearml,
            other => bail!("{flag}: `{other}` is not a visualizer; use wandb, swanlab or clearml"),
        })
    }
    pub fn title(self) -> &'static str {
        match self {
            TrackerKind::Wandb => "W&B",
            TrackerKind::Swanlab => "SwanLab",
            TrackerKind::Clearml => "ClearML",
        }
    }
    pub fn flag_value(self) -> &'static str {
        match self {
            TrackerKind::Wandb => "wandb",
            TrackerKind::Swanlab => "swanlab",
            TrackerKind::Clearml => "clearml",
        }
    }
}

/// Where and as whom to push. Secrets are never printed: `Debug` masks them.
#[derive(Clone)]
pub struct TrackerSettings {
    pub kind: TrackerKind,
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

impl std::fmt::Debug for TrackerSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrackerSettings")
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
pub struct TrackerFlags<'a> {
    pub visualizer: Option<&'a str>,
    pub wandb_api_key: Option<&'a str>,
    pub swanlab_api_key: Option<&'a str>,
    pub swanlab_host: Option<&'a str>,
}

impl TrackerSettings {
    /// A tracker's settings before its own flags and variables are read.
    pub fn defaults(kind: TrackerKind) -> TrackerSettings {
        TrackerSettings {
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
        }
    }
}

/// A tracker's base URL from `src` (a flag or variable): http(s), no trailing slash.
pub fn http_url(src: &str, v: String) -> Result<String> {
    let v = v.trim().trim_end_matches('/').to_string();
    if !(v.starts_with("http://") || v.starts_with("https://")) {
        bail!("{src}: `{v}` must be an http:// or https:// URL");
    }
    Ok(v)
}
