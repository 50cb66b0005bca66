//! Which tracker to push to, and as whom.

use anyhow::{bail, Result};
use std::time::Duration;

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
    /// A tracker's settings before its own flags and variables are read.
    pub fn defaults(kind: Visualizer) -> SinkSettings {
        SinkSettings {
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
