//! Wires a benchmark: output tree, optional in-process simulator, connection test,
//! the sweep, one run per point (warmup, dispatch, record, report), Ctrl-C.
//!
//! Dispatch (the scheduler decides *when*, the client *how*):
//! - closed loop: at most `parallel × --in-flight-task-multiplier` requests exist; a
//!   semaphore of `parallel` slots wraps only the HTTP call, as evalscope;
//! - `--rate`: requests are released on an absolute Poisson schedule (and still capped
//!   by `parallel` in closed loop); each record keeps its intended start;
//! - `--open-loop`: released on the schedule with no cap;
//! - `--duration`: dispatch stops at the deadline, in-flight requests finish.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use crate::client::{self, Cancel, Ticket};
use crate::config::{Api, RunConfig, SweepPoint};
use crate::dataset::{self, Prompt};
use crate::record::{Clock, RequestRecord};
use crate::recorder::prometheus::Metrics;
use crate::recorder::{self, sqlite};
use crate::report::{self, log, RunResult};
use crate::scheduler;
use crate::sinks;
use crate::stats;
use crate::telemetry::{RunInfoLabels, RunLabels};

/// How long in-flight requests may finish after Ctrl-C before they are cancelled.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);
/// The same after SIGTERM: shorter, so the summary is written before the SIGKILL
/// that `docker stop` sends 10 s after its SIGTERM.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Exit codes.
pub const EXIT_OK: i32 = 0;
/// A run finished with no successful request.
pub const EXIT_NO_SUCCESS: i32 = 3;
/// Interrupted (Ctrl-C); what completed was stored and summarised.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Terminated (SIGTERM), likewise: 128 + the signal number, as evalscope 1.14.
pub const EXIT_TERMINATED: i32 = 143;

#[derive(Clone, Default)]
pub struct Stop {
    /// Stop releasing new requests.
    pub dispatch: Cancel,
    /// Cancel requests in flight (recorded as `cancelled`).
    pub abort: Cancel,
    /// The signal that stopped the run (SIGINT when none was recorded).
    pub signal: Arc<std::sync::atomic::AtomicI32>,
}

impl Stop {
    /// The exit code of an interrupted run: 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        match self.signal.load(std::sync::atomic::Ordering::SeqCst) {
            0 => EXIT_INTERRUPTED,
            s => 128 + s,
        }
    }
}

/// A run stopped by a signal before its load started (during the connection test or
/// the local server's start-up); maps to exit code 128 + signal.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted before the benchmark started; nothing was sent"
        )
    }
}

impl std::error::Error for Interrupted {}

/// A dataset that cannot be read or parsed: a usage error (exit 2), like an
/// unreadable `--prompt @file` or `--tokenizer-path`, found when the run loads it.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

struct Ctx {
    cfg: RunConfig,
    /// The load client: its connections to the target, protocol and clock.
    client: client::Client,
    url: Arc<str>,
    /// Parsed once, for span attributes.
    parsed_url: reqwest::Url,
    clock: Clock,
    stop: Stop,
    /// Live Prometheus metrics, when `--metrics-addr` is not `off`.
    metrics: Option<Arc<Metrics>>,
    /// The `run` label: `<timestamp>/<name|model>`.
    run_label: String,
    /// OpenTelemetry span export, when configured.
    tracing: Option<Arc<crate::recorder::otel::Tracing>>,
    progress: Option<Arc<crate::recorder::progress::Progress>>,
}

/// What a finished invocation produced.
pub struct Outcome {
    pub exit_code: i32,
    pub dir: PathBuf,
    pub runs: Vec<RunResult>,
}

fn url_path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.find('/')
        .map_or("/v1/chat/completions", |i| &rest[i..])
}

/// The output directory of an invocation: `<outputs-dir>/<YYYYmmdd_HHMMSS>/<name|model_id>`.
pub fn output_root(cfg: &RunConfig) -> PathBuf {
    let mut p = PathBuf::from(&cfg.outputs_dir);
    if !cfg.no_timestamp {
        p.push(chrono::Local::now().format("%Y%m%d_%H%M%S").to_string());
    }
    p.push(&cfg.model_id);
    p
}

/// Builds the runtime and runs the invocation as a task on it. The engine must not
/// run in `block_on` on the calling thread: every request completion would then wake
/// that thread across threads (a futex call and a context switch per request).
pub fn run_blocking(cfg: RunConfig, stop: Stop, ctrl_c: bool) -> Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        if ctrl_c {
            install_signals(stop.clone());
        }
        match tokio::spawn(run(cfg, stop)).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("the benchmark task failed: {e}")),
        }
    })
}

/// Runs the whole invocation. `stop` lets the caller (Ctrl-C handler, tests) interrupt.
pub async fn run(cfg: RunConfig, stop: Stop) -> Result<Outcome> {
    let root = output_root(&cfg);
    for p in &cfg.points {
        let d = root.join(p.dir_name(cfg.open_loop));
        if d.join("benchmark_data.db").exists() {
            bail!(
                "{} already holds a run; choose another --outputs-dir or --name, or drop --no-timestamp",
                d.display()
            );
        }
    }
    std::fs::create_dir_all(&root)
        .with_context(|| format!("--outputs-dir: cannot create {}", root.display()))?;
    log::set_debug(cfg.debug);
    log::to_file(&root.join("benchmark.log"))
        .with_context(|| format!("cannot write {}", root.join("benchmark.log").display()))?;
    log::info(format!(
        "Starting benchmark with args: {}",
        serde_json::Value::Object(cfg.args_json.clone())
    ));
    let result = run_inner(cfg, stop, &root).await;
    log::close_file();
    result
}

async fn run_inner(cfg: RunConfig, stop: Stop, root: &Path) -> Result<Outcome> {
    let clock = Clock::start();
    let mut _sim = None;
    // Stopped when this function returns, on every path (Drop).
    let _local = match &cfg.local_server {
        Some(ls) => match crate::local_server::LocalServer::start(ls, root, &stop.dispatch).await {
            Ok(l) => Some(l),
            // A signal while the server starts: exit as an interrupt (130/143).
            Err(_) if stop.dispatch.is_cancelled() => {
                return Err(Interrupted(stop.exit_code()).into())
            }
            Err(e) => return Err(e),
        },
        None => None,
    };
    let url: Arc<str> = match (&cfg.api, &cfg.sim) {
        (Api::Sim, Some(sc)) => {
            let h = crate::sim::spawn("127.0.0.1:0".parse()?, sc.clone(), 1)?;
            let u = format!("{}{}", h.base_url(), url_path(&cfg.url));
            log::info(format!(
                "Simulator listening on {} (settings: {})",
                h.base_url(),
                serde_json::to_string(sc).unwrap_or_default()
            ));
            _sim = Some(h);
            u.into()
        }
        _ => cfg.url.clone().into(),
    };
    let max_par = cfg.points.iter().map(|p| p.parallel).max().unwrap_or(1);
    let pool = if max_par > 0 { max_par as usize } else { 1024 };
    if !cfg.masked_headers().is_empty() {
        log::debug(format!("headers: {:?}", cfg.masked_headers()));
    }
    let parsed_url = reqwest::Url::parse(&url).with_context(|| {
        format!(
            "--url: `{}` is not a valid URL",
            crate::config::redact_url(&url)
        )
    })?;
    let mut load_client =
        client::Client::new(&cfg.client, &parsed_url, pool, cfg.protocol.clone(), clock)?;
    // With a tokenizer the payloads are kept until the token counts a server left
    // out are filled in (then dropped unless --debug).
    load_client.keep_messages = cfg.debug || cfg.tokenizer.is_some();
    // From here on the URL is only shown (logs, labels, errors): credentials masked.
    let url: Arc<str> = crate::config::redact_url(&url).into();
    let run_label = root
        .strip_prefix(&cfg.outputs_dir)
        .unwrap_or(root)
        .display()
        .to_string();
    let (metrics, metrics_server) = start_metrics(&cfg, &run_label, &url).await?;
    let tracing = match &cfg.otel {
        None => None,
        Some(oc) => {
            let t = crate::recorder::otel::Tracing::start(oc)?;
            log::info(format!(
                "OpenTelemetry: one span per request over OTLP {} to {}, sample ratio {}",
                oc.protocol.as_str(),
                oc.display_url(),
                oc.sample_ratio
            ));
            Some(t)
        }
    };
    // evalscope: total_count is the sum of --number (warmup excluded); no tracker
    // when it is 0.
    let total: u64 = cfg.points.iter().map(|p| p.number).sum();
    let progress = (cfg.progress_tracker && total > 0 && cfg.sla.is_none()).then(|| {
        crate::recorder::progress::Progress::start(
            root,
            total,
            metrics
                .as_ref()
                .map(|m| (m.progress_processed.clone(), m.progress_total.clone())),
        )
    });
    let ctx = Arc::new(Ctx {
        cfg,
        client: load_client,
        url,
        parsed_url,
        clock,
        stop: stop.clone(),
        metrics,
        run_label,
        tracing,
        progress,
    });
    if ctx.cfg.test_connection {
        connection_test(&ctx).await?;
    }
    if ctx.cfg.sla.is_some() && (ctx.cfg.sink.is_some() || ctx.cfg.progress_tracker) {
        // evalscope: SLA mode bypasses the visualizer and the progress tracker.
        log::warn(
            "--sla-auto-tune: --visualizer and --enable-progress-tracker are not used in SLA mode",
        );
    }
    let sink = match ctx.cfg.sink.clone().filter(|_| ctx.cfg.sla.is_none()) {
        None => None,
        Some(settings) => Some(start_sink(settings, &ctx.cfg, clock).await?),
    };
    let started_unix = clock.unix(0.0);
    let result = match &ctx.cfg.sla {
        Some(sla) => sla_tune(&ctx, root, sla.clone()).await,
        None => sweep(&ctx, root, sink.as_ref()).await,
    };
    if let Some(sink) = sink {
        let (runs, outcome) = match &result {
            Ok(runs) if ctx.stop.dispatch.is_cancelled() => {
                (&runs[..], sinks::Outcome::Interrupted)
            }
            Ok(runs) if runs.iter().all(|r| r.num("Success Requests") > 0.0) => {
                (&runs[..], sinks::Outcome::Finished)
            }
            Ok(runs) => (&runs[..], sinks::Outcome::Failed),
            Err(_) => (&[][..], sinks::Outcome::Failed),
        };
        let now = sinks::now_unix();
        let fin = sinks::final_payload(runs, outcome, now, now - started_unix);
        let (kind, url) = (sink.kind, sink.url.clone());
        // Bounded: a tracker that went down costs at most a minute at the end.
        let pushed = tokio::task::spawn_blocking(move || sink.finish(fin, Duration::from_secs(60)))
            .await
            .unwrap_or(false);
        if pushed {
            log::info(format!("{} run: {url}", kind.title()));
        } else {
            log::warn(format!(
                "{}: the run at {url} is incomplete; push the stored results with \
                 `perfscope push {} --visualizer {}`",
                kind.title(),
                root.display(),
                kind.flag_value()
            ));
        }
    }
    if let Some(p) = &ctx.progress {
        p.finish(result.is_ok());
    }
    let runs = result?;
    finish_invocation(&ctx, root, runs, metrics_server).await
}

/// Authenticates with the tracker and creates its run before any load.
async fn start_sink(
    settings: sinks::SinkSettings,
    cfg: &RunConfig,
    clock: Clock,
) -> Result<sinks::Sink> {
    let name = cfg.name.clone().unwrap_or_else(|| {
        format!(
            "{}_{}",
            cfg.model_id,
            chrono::Local::now().format("%Y%m%d_%H%M%S")
        )
    });
    let meta = sinks::RunMeta {
        name,
        config: cfg.args_json.clone(),
        started_unix: clock.unix(0.0),
    };
    let title = settings.kind.title();
    let sink = tokio::task::spawn_blocking(move || sinks::Sink::start(&settings, &meta))
        .await
        .map_err(|e| anyhow::anyhow!("{title} setup: {e}"))?
        .with_context(|| {
            format!("--visualizer: cannot start the {title} run (no load was sent)")
        })?;
    log::info(format!("{title} run: {}", sink.url));
    Ok(sink)
}

/// Runs every sweep point; each finished point is pushed to the tracker.
async fn sweep(ctx: &Arc<Ctx>, root: &Path, sink: Option<&sinks::Sink>) -> Result<Vec<RunResult>> {
    let mut runs = Vec::new();
    for (i, point) in ctx.cfg.points.clone().iter().enumerate() {
        if ctx.stop.dispatch.is_cancelled() {
            break;
        }
        if i > 0 && ctx.cfg.sleep_interval > 0.0 {
            log::info(format!(
                "Sleeping {} s before the next run (--sleep-interval)",
                ctx.cfg.sleep_interval
            ));
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs_f64(ctx.cfg.sleep_interval)) => {}
                _ = ctx.stop.dispatch.cancelled() => break,
            }
        }
        let r = run_point(
            ctx,
            point,
            i as u64,
            root,
            point.dir_name(ctx.cfg.open_loop),
        )
        .await?;
        if let Some(sink) = sink {
            sink.point(sinks::point(i as u64, &r, sinks::now_unix()));
        }
        runs.push(r);
    }
    Ok(runs)
}

/// `--sla-auto-tune`: evalscope's search (§7) per constraint group. Each tested value
/// runs `--sla-num-runs` times into `sla_tuning/sla_<var>_<v>_run_<i>/` and is judged
/// on the averaged results; values are cached across groups. Returns the averaged
/// result of every tested value, in order of value, for the multi-run summary.
async fn sla_tune(
    ctx: &Arc<Ctx>,
    root: &Path,
    sla: crate::config::SlaConfig,
) -> Result<Vec<RunResult>> {
    let tuning = root.join("sla_tuning");
    let handle = tokio::runtime::Handle::current();
    let (ctx2, tuning2) = (ctx.clone(), tuning.clone());
    // The search is sequential and written as plain loops over a blocking evaluator;
    // each evaluation drives the async runs on this runtime.
    let (rows, tested) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut cache: std::collections::BTreeMap<i64, RunResult> = Default::default();
        let mut index = 0u64;
        let mut eval = |v: i64| -> Result<RunResult> {
            if let Some(r) = cache.get(&v) {
                return Ok(r.clone());
            }
            let number = ((v as f64) * sla.number_multiplier).round().max(1.0) as u64;
            let point = if sla.variable == "rate" {
                SweepPoint {
                    parallel: sla.fixed_parallel,
                    number,
                    rate: v as f64,
                }
            } else {
                SweepPoint {
                    parallel: v,
                    number,
                    rate: -1.0,
                }
            };
            let mut runs = Vec::new();
            for i in 0..sla.num_runs {
                if ctx2.stop.dispatch.is_cancelled() {
                    bail!("interrupted during the SLA search");
                }
                if index > 0 && ctx2.cfg.sleep_interval > 0.0 {
                    std::thread::sleep(Duration::from_secs_f64(ctx2.cfg.sleep_interval));
                }
                let name = format!("sla_{}_{v}_run_{i}", sla.variable);
                log::info(format!(
                    "SLA auto-tune: {} = {v}, run {} of {} ({number} requests)",
                    sla.variable,
                    i + 1,
                    sla.num_runs
                ));
                runs.push(handle.block_on(run_point(&ctx2, &point, index, &tuning2, name))?);
                index += 1;
            }
            let avg = crate::sla::average(&runs).context("no run")?;
            cache.insert(v, avg.clone());
            Ok(avg)
        };
        let mut rows = Vec::new();
        for group in &sla.groups {
            let criteria = group
                .iter()
                .map(|c| c.describe())
                .collect::<Vec<_>>()
                .join(", ");
            let opt = group
                .iter()
                .find(|c| matches!(c.op, crate::sla::Op::Max | crate::sla::Op::Min));
            let (best, note) = match opt {
                Some(c) => {
                    let (best, val) = crate::sla::optimise(
                        sla.start,
                        sla.lower,
                        sla.upper,
                        c.op == crate::sla::Op::Max,
                        |v| {
                            let r = eval(v)?;
                            Ok(if crate::sla::point_passes(&r, &[]) {
                                c.read(&r)
                            } else {
                                None
                            })
                        },
                    )?;
                    (
                        best,
                        match val {
                            Some(x) => format!("Best {}: {}", c.name, crate::stats::round(x, 4)),
                            None => format!("Failed at the start ({})", sla.start),
                        },
                    )
                }
                None => crate::sla::constraint_search(sla.start, sla.lower, sla.upper, |v| {
                    Ok(crate::sla::point_passes(&eval(v)?, group))
                })?,
            };
            rows.push(vec![
                criteria,
                sla.variable.clone(),
                best.map_or("None".into(), |b| b.to_string()),
                note,
            ]);
        }
        Ok((rows, cache))
    })
    .await
    .map_err(|e| anyhow::anyhow!("the SLA search failed: {e}"))??;
    // sla_summary.json: every tested value's averaged summary and percentiles.
    let mut out = serde_json::Map::new();
    for (v, r) in &tested {
        let mut pct = serde_json::Map::new();
        pct.insert(
            "Percentiles".into(),
            stats::PERCENTILES
                .iter()
                .map(|p| serde_json::Value::from(p.1))
                .collect(),
        );
        for c in &r.columns {
            pct.insert(
                c.name.into(),
                c.values
                    .iter()
                    .map(|x| serde_json::Value::from(*x))
                    .collect(),
            );
        }
        out.insert(
            format!(
                "{}_{v}",
                ctx.cfg
                    .sla
                    .as_ref()
                    .map_or("parallel", |s| s.variable.as_str())
            ),
            serde_json::json!({"metrics": r.summary, "percentiles": pct}),
        );
    }
    let path = root.join("sla_summary.json");
    std::fs::write(&path, report::to_py_json(&serde_json::Value::Object(out)))
        .with_context(|| format!("cannot write {}", path.display()))?;
    let lines: Vec<report::table::Line> =
        rows.into_iter().map(report::table::Line::Cells).collect();
    log::info("SLA Auto-tune Summary:");
    log::block(&report::table::render(
        Some("SLA Auto-tune Summary"),
        &["Criteria", "Variable", "Max Satisfied", "Note"],
        &lines,
    ));
    Ok(tested.into_values().collect())
}

/// The multi-run summary, exit code, --metrics-linger and the span flush.
async fn finish_invocation(
    ctx: &Arc<Ctx>,
    root: &Path,
    runs: Vec<RunResult>,
    metrics_server: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Outcome> {
    if !runs.is_empty() {
        let text = report::multi_run_summary(
            &runs,
            &ctx.cfg.model_id,
            &ctx.cfg.dataset.name,
            ctx.cfg.api.as_str(),
            root,
        );
        log::block(&text);
        std::fs::write(root.join("performance_summary.txt"), format!("{text}\n")).with_context(
            || {
                format!(
                    "cannot write {}",
                    root.join("performance_summary.txt").display()
                )
            },
        )?;
        // evalscope: SLA mode writes no HTML report.
        if ctx.cfg.sla.is_none() {
            report::write_html(
                &runs,
                root,
                &ctx.cfg.model_id,
                &ctx.cfg.dataset.name,
                ctx.cfg.api.as_str(),
            )?;
            log::info(format!(
                "HTML report: {}",
                root.join("perf_report.html").display()
            ));
        }
    }
    let exit_code = if ctx.stop.dispatch.is_cancelled() {
        ctx.stop.exit_code()
    } else if runs.iter().any(|r| r.num("Success Requests") == 0.0) {
        EXIT_NO_SUCCESS
    } else {
        EXIT_OK
    };
    log::info(format!("Results written to {}", root.display()));
    if ctx.metrics.is_some() && ctx.cfg.metrics_linger > 0.0 && !ctx.stop.dispatch.is_cancelled() {
        log::info(format!(
            "Serving /metrics for {} more seconds (--metrics-linger)",
            ctx.cfg.metrics_linger
        ));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs_f64(ctx.cfg.metrics_linger)) => {}
            _ = ctx.stop.dispatch.cancelled() => {}
        }
    }
    drop(metrics_server);
    if let Some(t) = &ctx.tracing {
        // Flush queued spans before exiting (Ctrl-C included).
        t.shutdown().await;
    }
    Ok(Outcome {
        exit_code,
        dir: root.to_path_buf(),
        runs,
    })
}

/// Starts the `/metrics` server. A busy default address is a warning (the benchmark
/// still runs); an address given with --metrics-addr must work.
async fn start_metrics(
    cfg: &RunConfig,
    run_label: &str,
    url: &str,
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
        cfg.progress_tracker,
    ));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let local = listener.local_addr().unwrap_or(addr);
    tokio::spawn(recorder::prometheus::serve(
        listener,
        metrics.clone(),
        async {
            let _ = rx.await;
        },
    ));
    log::info(format!("Prometheus metrics on http://{local}/metrics"));
    Ok((Some(metrics), Some(tx)))
}

/// The warning for a `/metrics` address other hosts can reach (DESIGN: never bind a
/// public interface unless the user asks; when they do, say what it exposes).
fn public_bind_warning(addr: std::net::SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "--metrics-addr {addr}: /metrics is reachable from other hosts (run labels, model and \
             endpoint are visible); bind 127.0.0.1 unless a remote Prometheus must scrape it"
        )
    })
}

/// A cheap request (max_tokens 1) before the benchmark: a few tries, then an error
/// naming the URL. evalscope sends a full request and retries for up to 6 hours.
async fn connection_test(ctx: &Arc<Ctx>) -> Result<()> {
    let body = ctx
        .cfg
        .protocol
        .connection_test_body(ctx.cfg.chat, &ctx.cfg.gen)?;
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
        };
        // A signal during the test stops it at once: nothing of the benchmark ran.
        let r = ctx
            .client
            .execute_within(ticket, timeout, false, &ctx.stop.dispatch)
            .await;
        if ctx.stop.dispatch.is_cancelled() {
            return Err(Interrupted(ctx.stop.exit_code()).into());
        }
        if r.success {
            log::info(format!("Connection test passed: {}", ctx.url));
            return Ok(());
        }
        last = r.error.unwrap_or_default();
        if let Some(s) = r.http_status {
            if (400..500).contains(&s) && s != 429 {
                bail!(
                    "connection test to {} failed: {last}\nCheck --model, --url and --api (or skip the test with --no-test-connection)",
                    ctx.url
                );
            }
        }
        if attempt == 3 {
            break;
        }
        log::warn(format!(
            "Connection test attempt {attempt}/3 to {} failed: {last}; retrying",
            ctx.url
        ));
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(attempt as u64)) => {}
            _ = ctx.stop.dispatch.cancelled() => return Err(Interrupted(ctx.stop.exit_code()).into()),
        }
    }
    bail!(
        "connection test to {} failed after 3 attempts: {last}\nIs the server up? Check --url (or skip the test with --no-test-connection)",
        ctx.url
    )
}

/// Builds request bodies lazily, so memory does not grow with --number.
struct Bodies {
    prompts: Vec<Prompt>,
    /// Pre-serialised bodies when every request for a prompt is identical.
    fixed: Option<Vec<bytes::Bytes>>,
    rng: fastrand::Rng,
}

impl Bodies {
    /// A body that cannot be built (a custom API template error) stops the run here,
    /// before any request: custom bodies are all rendered once.
    fn new(ctx: &Ctx, prompts: Vec<Prompt>, seed: u64) -> Result<Bodies> {
        let mut rng = fastrand::Rng::with_seed(seed);
        let p = &ctx.cfg.gen;
        // --prompt: evalscope builds the body once and re-sends it (a --max-tokens
        // range is sampled once too).
        let keep = p.max_tokens.0 == p.max_tokens.1 || ctx.cfg.dataset.prompt.is_some();
        let check = matches!(ctx.cfg.protocol, crate::protocol::Protocol::Custom(_));
        let mut built = Vec::new();
        if keep || check {
            for pr in &prompts {
                let b = ctx.cfg.protocol.build_body(pr, p, &mut rng)?;
                if keep {
                    built.push(bytes::Bytes::from(serde_json::Value::Object(b).to_string()));
                }
            }
        }
        Ok(Bodies {
            prompts,
            fixed: keep.then_some(built),
            rng,
        })
    }
    fn get(&mut self, i: u64, ctx: &Ctx) -> bytes::Bytes {
        let k = (i % self.prompts.len() as u64) as usize;
        match &self.fixed {
            Some(f) => f[k].clone(),
            None => match ctx
                .cfg
                .protocol
                .build_body(&self.prompts[k], &ctx.cfg.gen, &mut self.rng)
            {
                Ok(b) => serde_json::Value::Object(b).to_string().into(),
                // Rendered once without error in `new`; only a custom template that
                // branches on the sampled max_tokens can fail here.
                Err(e) => {
                    log::warn(format!("{e:#}"));
                    bytes::Bytes::from_static(b"{}")
                }
            },
        }
    }
}

async fn run_point(
    ctx: &Arc<Ctx>,
    point: &SweepPoint,
    index: u64,
    root: &Path,
    name: String,
) -> Result<RunResult> {
    let cfg = &ctx.cfg;
    let dir = root.join(&name);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let warmup = cfg.warmup_for(point.number);
    let prompts = dataset::load(&cfg.dataset, cfg.chat, point.number + warmup, index)
        .map_err(|e| BadInput(format!("{e:#}")))?;
    let mut bodies = Bodies::new(ctx, prompts, cfg.dataset.seed ^ index)?;
    let args = cfg.args_for_run(point);
    let meta = sqlite::RunMeta {
        run_id: format!("{}/{}", root.display(), name),
        name: cfg.name.clone().unwrap_or_else(|| cfg.model_id.clone()),
        model: cfg.model.clone(),
        api: cfg.api.as_str().into(),
        url: crate::config::redact_url(&cfg.url),
        parallel: point.parallel,
        number: point.number,
        rate: point.rate,
        config_json: serde_json::Value::Object(args.clone()).to_string(),
    };
    let cap = if point.parallel > 0 {
        point.parallel as usize
    } else {
        1024
    };
    let writer = sqlite::Writer::start(
        dir.join("benchmark_data.db"),
        &meta,
        ctx.clock,
        cfg.db_commit_interval,
        cap * cfg.queue_size_multiplier,
    )?;
    log::info(format!(
        "Run {name}: parallel={}, number={}, rate={}{}",
        point.parallel,
        point.number,
        point.rate,
        if warmup > 0 {
            format!(", warmup={warmup}")
        } else {
            String::new()
        }
    ));
    if warmup > 0 {
        let (tx, mut rx) = mpsc::channel::<RequestRecord>(cap * cfg.queue_size_multiplier);
        let drain = tokio::spawn(async move {
            let mut n = 0u64;
            let mut ok = 0u64;
            while let Some(r) = rx.recv().await {
                n += 1;
                ok += r.success as u64;
            }
            (n, ok)
        });
        let bar = recorder::progress_bar(&format!("Warmup[{name}]"), warmup);
        log::set_bar(Some(bar.clone()));
        let _ = dispatch(ctx, point, warmup, &mut bodies, 0, tx, false, None).await;
        bar.finish_and_clear();
        let (n, ok) = drain.await.unwrap_or((0, 0));
        log::info(format!("Warmup done: {ok}/{n} succeeded (not recorded)"));
    }
    let (tx, rx) = mpsc::channel::<RequestRecord>(cap * cfg.queue_size_multiplier);
    let bar = recorder::progress_bar(&format!("Processing[{name}]"), point.number);
    log::set_bar(Some(bar.clone()));
    let labels = RunLabels {
        run: ctx.run_label.clone(),
        model: cfg.model.clone(),
        api: cfg.api.as_str().into(),
        stage: name.clone(),
    };
    let prom = ctx.metrics.clone().map(|m| {
        m.start_stage(&labels);
        m.target_concurrency
            .get_or_create(&labels)
            .set(point.parallel);
        m.target_rate.get_or_create(&labels).set(point.rate);
        (m, labels.clone())
    });
    let in_flight = prom
        .as_ref()
        .map(|(m, l)| m.in_flight.get_or_create(l).clone());
    let spans = ctx.tracing.clone().map(|t| {
        let u = &ctx.parsed_url;
        let common = crate::recorder::otel::SpanCommon {
            operation: cfg.protocol.operation(cfg.chat),
            model: cfg.model.clone(),
            server_address: u.host_str().unwrap_or("").to_string(),
            server_port: u.port_or_known_default().map_or(0, i64::from),
            run: ctx.run_label.clone(),
            stage: name.clone(),
            parallel: point.parallel,
            rate: point.rate,
            max_tokens: cfg.gen.max_tokens.1 as i64,
        };
        (t, common.prepare(), ctx.clock)
    });
    let fan = tokio::spawn(recorder::fanout(
        rx,
        writer.sender(),
        bar.clone(),
        cfg.log_every_n_query,
        name.clone(),
        recorder::Observers {
            prom,
            spans,
            progress: ctx.progress.clone(),
            encoder: cfg.protocol.is_encoder(),
        },
    ));
    let (cpu0, t0) = (process_cpu_seconds(), ctx.clock.now());
    let (sent, not_sent) = dispatch(
        ctx,
        point,
        point.number,
        &mut bodies,
        warmup,
        tx,
        true,
        in_flight,
    )
    .await;
    if not_sent > 0 {
        log::warn(format!(
            "{name}: {not_sent} requests were waiting for a slot when the run was stopped and were not sent"
        ));
    }
    let live = fan.await.unwrap_or_default();
    if let (Some(a), Some(b)) = (cpu0, process_cpu_seconds()) {
        // Whether the client could have been the bottleneck: its CPU time per request
        // (with --api sim this includes the in-process simulator).
        log::info(format!(
            "{name}: {sent} requests in {:.2} s; process CPU {:.2} s ({:.0} µs per request)",
            ctx.clock.now() - t0,
            b - a,
            (b - a) * 1e6 / sent.max(1) as f64
        ));
    }
    log::set_bar(None);
    let status = if ctx.stop.dispatch.is_cancelled() {
        "interrupted"
    } else {
        "completed"
    };
    let rows_written = writer.finish(status, not_sent)?;
    if rows_written != sent || live.total != sent {
        log::error(format!(
            "{sent} requests sent but {rows_written} rows stored"
        ));
    }
    let result = report::load_run(&dir, point.clone(), ctx.cfg.goodput)?;
    let any_success = result.num("Success Requests") > 0.0;
    report::write_run_files(&result, &args)?;
    if matches!(
        cfg.dataset.kind,
        crate::dataset::DatasetKind::SpeedBenchmark { .. }
    ) {
        log::block(&report::speed_benchmark(&dir)?);
    }
    log::info(format!("Benchmarking summary ({name}):"));
    log::block(&report::summary_table(&result));
    if any_success {
        log::info("Percentile results:");
        log::block(&report::percentile_table(&result));
    } else {
        log::warn(format!(
            "{name}: no request succeeded; see the error column in {}",
            dir.join("benchmark_data.db").display()
        ));
    }
    Ok(result)
}

/// Releases `count` requests per the load shape; returns how many were sent and how
/// many were released but never sent (the run was stopped while they waited for a
/// slot). Every sent request produces exactly one record on `out`; one never sent
/// produces none.
#[allow(clippy::too_many_arguments)]
async fn dispatch(
    ctx: &Arc<Ctx>,
    point: &SweepPoint,
    count: u64,
    bodies: &mut Bodies,
    body_offset: u64,
    out: mpsc::Sender<RequestRecord>,
    measured: bool,
    // The in-flight gauge to maintain (measured requests with metrics on).
    in_flight: Option<prometheus_client::metrics::gauge::Gauge>,
) -> (u64, u64) {
    let not_sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let cfg = &ctx.cfg;
    let closed = point.parallel > 0;
    let slots = Arc::new(Semaphore::new(if closed {
        point.parallel as usize
    } else {
        Semaphore::MAX_PERMITS
    }));
    let tasks = Arc::new(Semaphore::new(if closed {
        point.parallel as usize * cfg.in_flight_task_multiplier
    } else {
        Semaphore::MAX_PERMITS
    }));
    let schedule = (point.rate > 0.0).then(|| {
        scheduler::poisson_schedule(
            count as usize,
            point.rate,
            cfg.dataset.seed ^ body_offset ^ (point.number << 20),
        )
    });
    let anchor = ctx.clock.now();
    let deadline = if measured {
        cfg.duration.map(|d| anchor + d)
    } else {
        None
    };
    let mut set = JoinSet::new();
    let mut sent = 0u64;
    for i in 0..count {
        if ctx.stop.dispatch.is_cancelled() {
            break;
        }
        let now = ctx.clock.now();
        if deadline.is_some_and(|d| now >= d) {
            log::info(format!(
                "--duration reached after {sent} requests; waiting for in-flight requests"
            ));
            break;
        }
        let intended = schedule.as_ref().map(|s| anchor + s[i as usize]);
        if let Some(t) = intended {
            let wake = deadline.map_or(t, |d| t.min(d));
            if wake > now {
                tokio::select! {
                    _ = tokio::time::sleep_until(ctx.clock.instant(wake).into()) => {}
                    _ = ctx.stop.dispatch.cancelled() => break,
                }
            }
            if deadline.is_some_and(|d| t >= d) {
                log::info(format!(
                    "--duration reached after {sent} requests; waiting for in-flight requests"
                ));
                break;
            }
        }
        // Cancellation first: a permit freed by a request that was stopped must not
        // release another one.
        let permit = tokio::select! {
            biased;
            _ = ctx.stop.dispatch.cancelled() => break,
            p = tasks.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let body = bodies.get(body_offset + i, ctx);
        let (ctx2, slots, out, gauge, skipped) = (
            ctx.clone(),
            slots.clone(),
            out.clone(),
            in_flight.clone(),
            not_sent.clone(),
        );
        let seq = i;
        // Spans are exported for a --otlp-sample-ratio share of requests; the
        // traceparent's sampled flag says so to the server.
        let sampled = ctx
            .tracing
            .as_ref()
            .is_none_or(|t| fastrand::f64() < t.sample_ratio);
        set.spawn(async move {
            // A request still waiting for a slot when the run is stopped is not sent.
            let slot = tokio::select! {
                biased;
                _ = ctx2.stop.dispatch.cancelled() => None,
                s = slots.acquire_owned() => s.ok(),
            };
            if slot.is_none() {
                skipped.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                drop(permit);
                return;
            }
            if let Some(g) = &gauge {
                g.inc();
            }
            let c = &ctx2.cfg;
            let ticket = Ticket {
                seq,
                intended_start: intended.unwrap_or_else(|| ctx2.clock.now()),
                body,
                stream_requested: c.gen.stream,
                trace: Some(client::TraceContext::random(sampled)),
            };
            let mut rec = ctx2.client.execute(ticket, &ctx2.stop.abort).await;
            if let Some(t) = &c.tokenizer {
                c.protocol.fill_token_counts(t, &mut rec);
                if !c.debug {
                    rec.response_messages = None;
                }
            }
            drop(slot);
            if let Some(g) = &gauge {
                g.dec();
            }
            let _ = out.send(rec).await;
            drop(permit);
        });
        sent += 1;
        while set.try_join_next().is_some() {}
    }
    drop(out);
    while set.join_next().await.is_some() {}
    let skipped = not_sent.load(std::sync::atomic::Ordering::Relaxed);
    (sent - skipped, skipped)
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`; None elsewhere).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux ABI that matters here.
    Some(ticks / 100.0)
}

/// Installs the Ctrl-C and SIGTERM behaviour: stop dispatching, give in-flight
/// requests `INTERRUPT_GRACE` (`TERMINATE_GRACE` after SIGTERM), then cancel them; a
/// second signal cancels at once. Requests not yet sent are not sent. Handling SIGTERM
/// is what makes `docker stop`, Kubernetes, systemd and `timeout` drain the run
/// instead of losing it.
pub fn install_signals(stop: Stop) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let Some(sig) = next_signal(&mut term).await else {
            return;
        };
        stop.signal.store(sig, std::sync::atomic::Ordering::SeqCst);
        let (name, grace) = if sig == libc::SIGTERM {
            ("Terminated (SIGTERM)", TERMINATE_GRACE)
        } else {
            ("Interrupted", INTERRUPT_GRACE)
        };
        log::warn(format!(
            "{name}: no new requests; waiting up to {} s for in-flight requests (signal again to stop now)",
            grace.as_secs()
        ));
        stop.dispatch.cancel();
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = next_signal(&mut term) => {}
        }
        stop.abort.cancel();
    });
}

/// The next SIGINT or SIGTERM, as its number.
async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) -> Option<i32> {
    let sigterm = async {
        match term {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.ok().map(|_| libc::SIGINT),
        s = sigterm => s.map(|_| libc::SIGTERM),
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
