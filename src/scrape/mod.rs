//! Server-side truth: the served model's `/metrics` (vLLM, SGLang, llama.cpp, TGI,
//! or a DCGM exporter), scraped just before each run, every interval while it runs,
//! and just after it, into the run's `server_metrics` table on the run's clock.
//! Endpoints are probed once per invocation; a missing, failing or hanging one is
//! reported once and never fails the run.

pub mod parse;

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::record::Clock;
use crate::redact::redact_url;
use crate::store::ServerSamples;
use crate::telemetry::log;

/// Where and how often to scrape.
#[derive(Clone, Debug, PartialEq)]
pub struct ScrapeConfig {
    /// Also `/metrics` at the origin of the target URL (known once the target runs:
    /// `--api sim` and local servers pick their port then).
    pub auto: bool,
    pub endpoints: Vec<String>,
    pub interval: Duration,
}

impl ScrapeConfig {
    /// The endpoints for a target URL.
    pub fn endpoints_for(&self, target: &str) -> Vec<String> {
        let mut out = Vec::new();
        if self.auto {
            if let Ok(u) = reqwest::Url::parse(target) {
                if matches!(u.scheme(), "http" | "https") {
                    out.push(format!("{}/metrics", u.origin().ascii_serialization()));
                }
            }
        }
        for e in &self.endpoints {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        out
    }

    /// Bounds one scrape: within the interval, at least 1 s, at most 5 s, so a hung
    /// endpoint delays nothing but its own samples.
    fn timeout(&self) -> Duration {
        self.interval
            .clamp(Duration::from_secs(1), Duration::from_secs(5))
    }
}

/// The metric families recognised by prefix, for the discovery line.
const FAMILIES: [(&str, &str); 5] = [
    ("vllm:", "vLLM"),
    ("sglang:", "SGLang"),
    ("llamacpp:", "llama.cpp"),
    ("tgi_", "TGI"),
    ("DCGM_FI_", "DCGM"),
];

/// An agent for `url`: the proxy rule of every HTTP path (`crate::proxy`).
fn agent(timeout: Duration, url: &str) -> ureq::Agent {
    crate::client::install_tls_provider();
    ureq::Agent::config_builder()
        .proxy(crate::proxy::ureq_proxy(url))
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .user_agent(concat!("perfscope/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// One scrape of one endpoint: its samples, or why there are none.
fn fetch(agent: &ureq::Agent, url: &str) -> Result<Vec<parse::Sample>, String> {
    let mut resp = agent.get(url).call().map_err(|e| match e {
        ureq::Error::Timeout(_) => "no answer within the scrape timeout".to_string(),
        ureq::Error::ConnectionFailed | ureq::Error::Io(_) => "connection failed".to_string(),
        other => other.to_string(),
    })?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(format!("HTTP {status}"));
    }
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| format!("reading the body: {e}"))?;
    let parsed = parse::parse(&text);
    if parsed.samples.is_empty() {
        return Err(if parsed.bad_lines > 0 {
            "not in the Prometheus text format".to_string()
        } else {
            "no samples".to_string()
        });
    }
    Ok(parsed.samples)
}

/// Probes each endpoint for the target once and says in one line what it found;
/// returns the endpoints to scrape during the runs.
pub fn discover(cfg: &ScrapeConfig, target: &str) -> ScrapeConfig {
    let mut found = Vec::new();
    for url in &cfg.endpoints_for(target) {
        match fetch(&agent(cfg.timeout(), url), url) {
            Ok(samples) => {
                let mut names: Vec<&str> = FAMILIES
                    .iter()
                    .filter(|(prefix, _)| samples.iter().any(|s| s.name.starts_with(prefix)))
                    .map(|(_, name)| *name)
                    .collect();
                if names.is_empty() {
                    names.push("no known family");
                }
                log::info(format!(
                    "Server metrics: {} ({} samples; {}), scraped every {:.1} s",
                    redact_url(url),
                    samples.len(),
                    names.join(", "),
                    cfg.interval.as_secs_f64()
                ));
                found.push(url.clone());
            }
            Err(why) => log::warn(format!(
                "Server metrics: none at {} ({why}); the run goes on without them \
                 (name the endpoint with --server-metrics URL, or --server-metrics off)",
                redact_url(url)
            )),
        }
    }
    ScrapeConfig {
        auto: false,
        endpoints: found,
        interval: cfg.interval,
    }
}

/// Endpoints whose failure has been reported in this invocation.
pub type Reported = Arc<Mutex<HashSet<String>>>;

/// Scrapes every endpoint once and stores the samples; a failure is reported once
/// per endpoint and invocation.
fn scrape_all(
    agents: &[ureq::Agent],
    cfg: &ScrapeConfig,
    clock: &Clock,
    store: &mut ServerSamples,
    reported: &Reported,
    on_scrape: Option<&OnScrape>,
) {
    for (url, agent) in cfg.endpoints.iter().zip(agents) {
        let sent = clock.now();
        let result = fetch(agent, url);
        // The sample's time: the middle of the scrape, on the run's clock.
        let ts = clock.unix((sent + clock.now()) / 2.0);
        let problem = match result {
            Ok(samples) => {
                if let Some(f) = on_scrape {
                    f(&samples);
                }
                // `_created` samples (a counter's creation time, about 90 per vLLM
                // scrape) are timestamps, not measurements: not stored.
                let rows: Vec<(String, String, f64)> = samples
                    .iter()
                    .filter(|s| !s.name.ends_with("_created"))
                    .map(|s| (s.name.clone(), s.labels_json(), s.value))
                    .collect();
                store
                    .insert(ts, url, &rows)
                    .err()
                    .map(|e| format!("storing its samples: {e:#}"))
            }
            Err(why) => Some(why),
        };
        if let Some(why) = problem {
            let first = reported
                .lock()
                .map(|mut r| r.insert(url.clone()))
                .unwrap_or(false);
            if first {
                log::warn(format!(
                    "Server metrics: {} failed ({why}); its samples are missing from then on \
                     where it keeps failing; the run goes on",
                    redact_url(url)
                ));
            }
        }
    }
}

/// A run's scraper: the before-scrape is taken when it starts, then one every
/// interval on its own thread (off the request path), and the after-scrape when
/// it finishes.
/// Told every successful scrape's samples (the live gauges of the server's state).
pub type OnScrape = std::sync::Arc<dyn Fn(&[parse::Sample]) + Send + Sync>;

pub struct Scraper {
    stop: mpsc::Sender<()>,
    done: tokio::sync::oneshot::Receiver<()>,
}

impl Scraper {
    /// Starts scraping into a run's database; returns once the before-scrape is
    /// stored. None when there is nothing to scrape or the database cannot be opened
    /// (said once).
    pub async fn start(
        cfg: &ScrapeConfig,
        clock: Clock,
        db: PathBuf,
        reported: Reported,
        on_scrape: Option<OnScrape>,
    ) -> Option<Scraper> {
        if cfg.endpoints.is_empty() {
            return None;
        }
        let mut store = match ServerSamples::open(&db) {
            Ok(s) => s,
            Err(e) => {
                log::warn(format!(
                    "Server metrics: cannot open {}: {e:#}",
                    db.display()
                ));
                return None;
            }
        };
        let cfg = cfg.clone();
        let (stop, stopped) = mpsc::channel::<()>();
        let (ready_tx, ready) = tokio::sync::oneshot::channel::<()>();
        let (done_tx, done) = tokio::sync::oneshot::channel::<()>();
        let dispatch = tracing::dispatcher::get_default(|d| d.clone());
        let spawned = std::thread::Builder::new()
            .name("perfscope-scrape".into())
            .spawn(move || {
                let _log = tracing::dispatcher::set_default(&dispatch);
                let agents: Vec<ureq::Agent> = cfg
                    .endpoints
                    .iter()
                    .map(|u| agent(cfg.timeout(), u))
                    .collect();
                let mut scrape = || {
                    scrape_all(
                        &agents,
                        &cfg,
                        &clock,
                        &mut store,
                        &reported,
                        on_scrape.as_ref(),
                    )
                };
                scrape();
                let _ = ready_tx.send(());
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(cfg.interval)
                {
                    scrape();
                }
                scrape();
                let _ = done_tx.send(());
            });
        if let Err(e) = spawned {
            log::warn(format!("Server metrics: cannot start the scraper: {e}"));
            return None;
        }
        let _ = ready.await;
        Some(Scraper { stop, done })
    }

    /// Takes the after-scrape and waits until it is stored.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}
