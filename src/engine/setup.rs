//! What a run needs before its load: its output directory and disk reserve, the
//! `/metrics` server, the connection test and what changes the connection.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::ctx::Ctx;
use super::stop::Interrupted;
use crate::client::Ticket;
use crate::config::RunConfig;
use crate::recorder;
use crate::recorder::prometheus::Metrics;
use crate::telemetry::log;
use crate::telemetry::RunInfoLabels;
use tracing::instrument::WithSubscriber;

/// Starts the `/metrics` server. A busy default address is a warning (the benchmark
/// still runs); an address given with --metrics-addr must work.
pub(crate) async fn start_metrics(
    cfg: &RunConfig,
    run_label: &str,
    url: &str,
    root: &Path,
) -> Result<(
    Option<Arc<Metrics>>,
    Option<tokio::sync::oneshot::Sender<()>>,
)> {
    let Some(addr) = cfg.metrics_addr else {
        return Ok((None, None));
    };
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) if cfg.metrics_addr_explicit => {
            bail!("--metrics-addr: cannot listen on {addr}: {e}; choose another address or `off`")
        }
        Err(e) => {
            log::warn(format!(
                "Prometheus metrics disabled: cannot listen on {addr} ({e}); pass --metrics-addr HOST:PORT or off"
            ));
            return Ok((None, None));
        }
    };
    if let Some(w) = public_bind_warning(addr) {
        log::warn(w);
    }
    let metrics = Arc::new(Metrics::new(
        RunInfoLabels {
            run: run_label.to_string(),
            model: cfg.model.clone(),
            api: cfg.api.as_str().into(),
            url: url.to_string(),
            dataset: cfg.dataset.name.clone(),
            version: env!("CARGO_PKG_VERSION").into(),
        },
        cfg.scale.shard.as_ref().map_or(0, |s| s.shard.index),
        cfg.progress_tracker,
        cfg.objectives,
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let local = listener.local_addr().unwrap_or(addr);
    // The live page (`/`) beside `/metrics`, with the output tree's history for the
    // rows its slow points link to.
    let rel = root.strip_prefix(&cfg.outputs_dir).unwrap_or(root);
    let live = crate::web::live_router(
        crate::web::live::Feed {
            metrics: metrics.clone(),
            planned: cfg.points.iter().map(|p| p.number).sum(),
            run_id: format!("0/{}", rel.display()),
            started: std::time::Instant::now(),
            drift_threshold: cfg.snapshots.map(|(_, t)| t),
            planned_secs: cfg.duration.map(|d| d * cfg.points.len() as f64),
        },
        PathBuf::from(&cfg.outputs_dir),
        local.ip().is_loopback(),
    );
    tokio::spawn(
        recorder::prometheus::serve(listener, metrics.clone(), live, async {
            let _ = rx.await;
        })
        .with_current_subscriber(),
    );
    log::info(format!(
        "Prometheus metrics on http://{local}/metrics; live page on http://{local}/"
    ));
    Ok((Some(metrics), Some(tx)))
}

/// The warning for a `/metrics` address other hosts can reach (DESIGN: never bind a
/// public interface unless the user asks; when they do, say what it exposes).
pub(crate) fn public_bind_warning(addr: std::net::SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "--metrics-addr {addr}: /metrics and the live page are reachable from other hosts \
             (run labels, model and endpoint are visible; the run history and request rows \
             are served on loopback only); bind 127.0.0.1 unless a remote Prometheus must scrape it"
        )
    })
}

/// A connection-test body as the run sends its bodies: token ids with
/// `--tokenize-prompt`.
fn as_sent(
    ctx: &Ctx,
    body: serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    Ok(match (&ctx.cfg.tokenizer, ctx.cfg.tokenize_prompt) {
        (Some(t), true) => crate::config::tokenize_body(body, t)?,
        _ => body,
    })
}

/// A cheap request (max_tokens 1) before the benchmark: a few tries, then an error
/// naming the URL. evalscope sends a full request and retries for up to 6 hours.
pub(crate) async fn connection_test(ctx: &Arc<Ctx>) -> Result<()> {
    let body = ctx
        .cfg
        .protocol
        .connection_test_body(ctx.cfg.chat, &ctx.cfg.gen)?;
    let body = as_sent(ctx, body)?;
    let body = bytes::Bytes::from(serde_json::Value::Object(body).to_string());
    let timeout = ctx.cfg.client.total_timeout.min(Duration::from_secs(60));
    let mut last = String::new();
    for attempt in 1..=3u32 {
        let ticket = Ticket {
            seq: 0,
            intended_start: ctx.clock.now(),
            body: body.clone(),
            stream_requested: ctx.cfg.gen.stream,
            trace: None,
            keep_text: false,
            extra_headers: None,
        };
        // The connection first, within --connect-timeout (10 s when unset): a port
        // that never completes a TLS handshake must not hold the test for minutes.
        let probe = ctx
            .cfg
            .client
            .connect_timeout
            .unwrap_or(Duration::from_secs(10));
        let probed = tokio::select! {
            r = ctx.client.endpoint.probe(probe) => r,
            _ = ctx.stop.dispatch.cancelled() => return Err(Interrupted(ctx.stop.exit_code()).into()),
        };
        match probed {
            Err(e) => {
                let text = e.to_string();
                // Not a server still starting (that refuses): a port that does not
                // speak TLS. No point in trying again.
                if text.contains("plain HTTP") || text.contains("plain-HTTP") {
                    bail!("connection test to {}: {text}", ctx.cfg.url);
                }
                last = text;
            }
            Ok(()) => {
                // The max_tokens check goes first: the 1-token request after it gives
                // the server time to drop the check's aborted stream before the run.
                let refused = limits_check(ctx).await?;
                // A signal during the test stops it at once: nothing of the benchmark ran.
                let r = ctx
                    .client
                    .execute_within(ticket, timeout, false, &ctx.stop.dispatch)
                    .await;
                if ctx.stop.dispatch.is_cancelled() {
                    return Err(Interrupted(ctx.stop.exit_code()).into());
                }
                if r.success {
                    // The endpoint answers: a refusal was the max_tokens.
                    if let Some(why) = refused {
                        bail!(why);
                    }
                    log::info(format!("Connection test passed: {}", ctx.cfg.url));
                    return Ok(());
                }
                last = r.error.unwrap_or_default();
                if let Some(s) = r.http_status {
                    if (400..500).contains(&s) && s != 429 {
                        bail!(
                            "connection test to {} failed: {last}\nCheck --model, --url and --api (or skip the test with --no-test-connection)",
                            ctx.cfg.url
                        );
                    }
                }
            }
        }
        if attempt == 3 {
            break;
        }
        log::warn(format!(
            "Connection test attempt {attempt}/3 to {} failed: {last}; retrying",
            ctx.cfg.url
        ));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(attempt as u64)) => {}
            _ = ctx.stop.dispatch.cancelled() => return Err(Interrupted(ctx.stop.exit_code()).into()),
        }
    }
    bail!(
        "connection test to {} failed after 3 attempts: {last}\nIs the server up? Check --url (or skip the test with --no-test-connection)",
        ctx.cfg.url
    )
}

/// The connection test sends one token; the run asks for --max-tokens. A server
/// refuses a max_tokens beyond the model's context at once (vLLM: 400 before
/// scheduling), so the request is also sent with the run's largest max_tokens,
/// streamed, and dropped as soon as the response head arrives. A refusal (4xx other
/// than 429) is returned as the error to give when the 1-token request succeeds
/// (so it is the max_tokens, not the model or URL): the run fails at the test, as
/// evalscope's full-size test does, instead of in every request. Only for streamed
/// runs: a `--no-stream` run may be aimed at a server that refuses streaming, and a
/// non-stream check would wait for the whole answer.
async fn limits_check(ctx: &Arc<Ctx>) -> Result<Option<String>> {
    let crate::protocol::Protocol::OpenAi = ctx.cfg.protocol else {
        return Ok(None);
    };
    if !ctx.cfg.gen.stream {
        return Ok(None);
    }
    let Some(body) = crate::protocol::openai::limits_check_body(ctx.cfg.chat, &ctx.cfg.gen) else {
        return Ok(None);
    };
    let body = as_sent(ctx, body)?;
    let body = serde_json::Value::Object(body).to_string();
    let wait = ctx.cfg.client.total_timeout.min(Duration::from_secs(30));
    // A signal during the check stops it at once, as during the 1-token request.
    let head = tokio::select! {
        h = ctx.client.head_status(body.as_bytes(), wait) => h,
        _ = ctx.stop.dispatch.cancelled() => return Err(Interrupted(ctx.stop.exit_code()).into()),
    };
    Ok(match head {
        Some((s, text)) if (400..500).contains(&s) && s != 429 => Some(format!(
            "connection test to {}: the server refuses the run's --max-tokens {}: HTTP {s}: {text}\n\
             Lower --max-tokens to fit the model's context (prompt + max_tokens), or skip \
             the test with --no-test-connection",
            ctx.cfg.url,
            ctx.cfg.gen.max_tokens.1,
        )),
        _ => None,
    })
}

/// Open files a run may need: one connection per stream, twice that with the
/// in-process simulator (its end of each connection), plus the database, logs and
/// listeners.
pub(crate) fn files_needed(cfg: &RunConfig) -> u64 {
    let streams = cfg
        .points
        .iter()
        .map(|p| if p.parallel > 0 { p.parallel as u64 } else { 0 })
        .max()
        .unwrap_or(0);
    let per_stream = if cfg.sim.is_some() { 2 } else { 1 };
    streams * per_stream + 1024
}

/// Raises the open-file limit (RLIMIT_NOFILE) to what the run needs: the soft limit
/// up to the hard one, and past it when allowed (root). Says what to set when it
/// stays short: connections beyond the limit would fail as `connect` errors.
/// `need` None: as many as allowed, quietly (the simulator).
pub fn raise_fd_limit(need: Option<u64>, purpose: &str) {
    let quiet = need.is_none();
    let need = need.unwrap_or(1 << 20);
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid rlimit out-pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } != 0 || r.rlim_cur >= need {
        return;
    }
    let set = |cur: u64, max: u64| {
        let l = libc::rlimit {
            rlim_cur: cur,
            rlim_max: max,
        };
        // SAFETY: a valid rlimit.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &l) == 0 }
    };
    if need > r.rlim_max && set(need, need) {
        if quiet {
            return;
        }
        log::info(format!(
            "Open-file limit raised to {need} (was {} soft, {} hard) for {purpose}",
            r.rlim_cur, r.rlim_max
        ));
        return;
    }
    let cur = need.min(r.rlim_max);
    let raised = set(cur, r.rlim_max);
    if quiet {
        return;
    }
    if need > r.rlim_max || !raised {
        log::warn(format!(
            "{purpose} needs about {need} open files but the limit is {}; connections past it \
             fail. Raise the hard limit: `ulimit -Hn {need}` as root, LimitNOFILE= (systemd), \
             `--ulimit nofile={need}` (docker)",
            if raised { cur } else { r.rlim_cur }
        ));
    } else {
        log::debug(format!("Open-file limit raised to {cur}"));
    }
}

// The file an invocation holds locked in its output directory while it runs.
pub(crate) use crate::store::LOCK_FILE;

/// The output directory of an invocation: `<outputs-dir>/<YYYYmmdd_HHMMSS>/<name|model_id>`,
/// claimed before anything is written into it, and held (an advisory lock on its
/// `.perfscope-lock`) until the invocation ends. Two runs started in the same
/// second get distinct directories (`<YYYYmmdd_HHMMSS>_2/…`); with
/// `--no-timestamp`, a directory another run is writing is refused before any line
/// of this run is logged, as is one that already holds a run's database.
pub(crate) fn claim_output_root(cfg: &RunConfig) -> Result<(PathBuf, std::fs::File)> {
    let base = PathBuf::from(&cfg.outputs_dir);
    let stamp = chrono::Local::now().format("%Y%m%d_%H%M%S").to_string();
    for attempt in 1..=100u32 {
        let mut root = base.clone();
        if !cfg.no_timestamp {
            root.push(if attempt == 1 {
                stamp.clone()
            } else {
                format!("{stamp}_{attempt}")
            });
        }
        root.push(&cfg.model_id);
        std::fs::create_dir_all(&root)
            .with_context(|| format!("--outputs-dir: cannot create {}", root.display()))?;
        let lock_path = root.join(LOCK_FILE);
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("--outputs-dir: cannot write {}", lock_path.display()))?;
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this function owns; released when it closes.
        let locked = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        let used = cfg
            .points
            .iter()
            .map(|p| root.join(p.dir_name(cfg.open_loop)))
            .find(|d| d.join("benchmark_data.db").exists());
        if locked && used.is_none() {
            return Ok((root, lock));
        }
        if cfg.no_timestamp {
            match used {
                Some(d) => bail!(
                    "{} already holds a run; choose another --outputs-dir or --name, or drop --no-timestamp",
                    d.display()
                ),
                None => bail!(
                    "{}: another perfscope run is writing there now; choose another --outputs-dir or --name, or drop --no-timestamp",
                    root.display()
                ),
            }
        }
    }
    bail!(
        "--outputs-dir: no free directory for {} under {}",
        cfg.model_id,
        base.join(&stamp).display()
    )
}

/// Holds room on the output disk for the rows of the requests in flight and the
/// summary files: 16 MiB and 16 KiB per request that can be held between the
/// request tasks and the store, at most 256 MiB. A disk too full for it is a
/// warning, not an error: the run goes on without the margin.
pub(crate) fn reserve_space(
    cfg: &RunConfig,
    root: &Path,
    pool: usize,
) -> Option<Arc<crate::store::Reserve>> {
    let held = pool * (cfg.in_flight_task_multiplier + cfg.queue_size_multiplier);
    let bytes = ((16u64 << 20) + (held as u64) * (16 << 10)).min(256 << 20);
    match crate::store::Reserve::create(root, bytes) {
        Ok(r) => Some(Arc::new(r)),
        Err(e) => {
            log::warn(format!(
                "cannot reserve {} MiB in {} ({e}); if the disk fills during the run, rows in flight may not be stored",
                bytes >> 20,
                root.display()
            ));
            None
        }
    }
}

/// Says what changes the connection's trust or timing: `--insecure`, a proxy.
pub(crate) fn connection_notes(
    cfg: &RunConfig,
    parsed_url: &reqwest::Url,
    load_client: &crate::client::Client,
) {
    let url = cfg.url.as_str();
    if cfg.client.tls.insecure && parsed_url.scheme() == "https" {
        log::warn(format!(
            "--insecure: the TLS certificate of {} is not verified; anyone on the path can read and answer the requests",
            crate::config::redact_url(url)
        ));
    }
    if let Some(p) = load_client.endpoint.proxy() {
        // evalscope's aiohttp session (trust_env=True) goes through it too; say so,
        // because the proxy's own time is in every figure.
        log::warn(format!(
            "Requests to {} go through the proxy {}, as evalscope's would: its own time is part of every latency and TTFT. To connect directly, add the host to NO_PROXY.",
            load_client.endpoint.display(),
            p.shown()
        ));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metrics_on_a_public_address_is_a_warning() {
        let w = |a: &str| super::public_bind_warning(a.parse().unwrap());
        assert!(w("127.0.0.1:9464").is_none());
        assert!(w("[::1]:9464").is_none());
        assert!(w("0.0.0.0:9464").is_some_and(|m| m.contains("--metrics-addr")));
        assert!(w("[::]:9464").is_some());
    }
}
