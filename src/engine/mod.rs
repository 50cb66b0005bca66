//! Wires a benchmark: output tree, optional in-process simulator, connection test,
//! the sweep, one run per point (warmup, dispatch, record, report), Ctrl-C.
//!
//! The scheduler decides *when* (scheduler::LoadShape), the client *how*:
//! - closed loop: at most `parallel × --in-flight-task-multiplier` requests exist; a
//!   semaphore of `parallel` slots wraps only the HTTP call, as evalscope;
//! - `--rate`: requests are released on an absolute Poisson schedule (and still capped
//!   by `parallel` in closed loop); each record keeps its intended start;
//! - `--open-loop`: released on the schedule with no cap;
//! - `--duration`: dispatch stops at the deadline, in-flight requests finish.

mod agentx;
mod ctx;
mod observe;
mod point;
mod scale;
mod sessions;
mod setup;
mod stop;
mod warmup;
mod work;

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::client;
use crate::config::{Api, RunConfig};
use crate::record::Clock;
use crate::report::{self, RunResult};
use crate::telemetry::log::{self, RunLog};
use crate::trackers;
use tracing::instrument::WithSubscriber;

use ctx::Ctx;
pub use ctx::Outcome;
use point::run_point;
pub use scale::{measure as measure_clock_offset, ClockOffset};
pub use setup::raise_fd_limit;
use setup::{connection_test, start_metrics};
pub use stop::{
    install_signals, BadInput, Interrupted, Stop, EXIT_HANGUP, EXIT_INTERRUPTED, EXIT_NO_SUCCESS,
    EXIT_OK, EXIT_STOP_RULE, EXIT_STORE_FAILED, EXIT_TERMINATED, INTERRUPT_GRACE, TERMINATE_GRACE,
};

/// Probes the served model's /metrics once (off the async threads) and says what
/// it found; None when nothing is to be scraped.
async fn find_server_metrics(cfg: &RunConfig, target: &str) -> Option<crate::scrape::ScrapeConfig> {
    let wanted = cfg.server_metrics.clone()?;
    let target = target.to_string();
    let dispatch = tracing::dispatcher::get_default(|d| d.clone());
    let found = tokio::task::spawn_blocking(move || {
        tracing::dispatcher::with_default(&dispatch, || crate::scrape::discover(&wanted, &target))
    })
    .await
    .ok()?;
    (!found.endpoints.is_empty()).then_some(found)
}

/// Builds the runtime and runs the invocation as a task on it. The engine must not
/// run in `block_on` on the calling thread: every request completion would then wake
/// that thread across threads (a futex call and a context switch per request).
pub fn run_blocking(cfg: RunConfig, stop: Stop, ctrl_c: bool) -> Result<Outcome> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let out = rt.block_on(async move {
        if ctrl_c {
            install_signals(stop.clone());
        }
        match tokio::spawn(run(cfg, stop)).await {
            Ok(r) => r,
            Err(e) => Err(anyhow::anyhow!("the benchmark task failed: {e}")),
        }
    });
    // A blocking read abandoned by a signal (a FIFO with no writer) must not hold
    // the exit.
    rt.shutdown_timeout(Duration::from_millis(500));
    out
}

/// Runs the whole invocation. `stop` lets the caller (Ctrl-C handler, tests) interrupt.
pub async fn run(cfg: RunConfig, stop: Stop) -> Result<Outcome> {
    crate::dataset::preflight(&cfg.dataset)?;
    let (root, claim) = setup::claim_output_root(&cfg)?;
    if let Some(f) = &cfg.run_dir_file {
        std::fs::write(f, format!("{}\n", root.display()))
            .with_context(|| format!("--run-dir-file: cannot write `{f}`; check the path"))?;
    }
    let run_log = RunLog::open(&root.join("benchmark.log"), cfg.debug)
        .with_context(|| format!("cannot write {}", root.join("benchmark.log").display()))?;
    // Every line of this invocation, from its tasks and threads too, goes to its
    // own benchmark.log.
    let dispatch = run_log.dispatch();
    let lock_file = root.join(setup::LOCK_FILE);
    let result = async move {
        log::info(format!(
            "Starting benchmark with args: {}",
            serde_json::Value::Object(cfg.args_json.clone())
        ));
        let watch = tokio::spawn(log_interruption(stop.clone()).with_current_subscriber());
        let result = run_inner(cfg, stop, &root, run_log).await;
        // A run that was never interrupted leaves no task waiting behind it.
        watch.abort();
        result
    }
    .with_subscriber(dispatch)
    .await;
    // The claim ends with the run: its databases now say the directory is used.
    let _ = std::fs::remove_file(lock_file);
    drop(claim);
    result
}

/// Says so when a signal stops dispatch (install_signals sets the signal first).
async fn log_interruption(stop: Stop) {
    stop.dispatch.cancelled().await;
    let sig = stop.signal.load(std::sync::atomic::Ordering::SeqCst);
    if sig == 0 {
        return;
    }
    let name = match sig {
        libc::SIGTERM => "Terminated (SIGTERM)",
        libc::SIGHUP => "Hung up (SIGHUP)",
        _ => "Interrupted",
    };
    let grace = stop::grace_after(sig);
    log::warn(format!(
        "{name}: no new requests; waiting up to {} s for in-flight requests (signal again to stop now)",
        grace.as_secs()
    ));
}

/// The `run` label of the live series. A distributed run's shards share one: its id.
fn run_label(cfg: &RunConfig, root: &Path) -> String {
    match &cfg.scale.shard {
        Some(s) => s.run_id.clone(),
        None => root
            .strip_prefix(&cfg.outputs_dir)
            .unwrap_or(root)
            .display()
            .to_string(),
    }
}

async fn run_inner(
    cfg: RunConfig,
    stop: Stop,
    root: &Path,
    run_log: Arc<RunLog>,
) -> Result<Outcome> {
    let clock = Clock::start();
    setup::raise_fd_limit(
        Some(setup::files_needed(&cfg)),
        "the run's connections (one per stream, two with --api sim)",
    );
    let (_local, _sim, target) = start_target(&cfg, &stop, root).await?;
    // One URL from here on: the one the load goes to.
    let cfg = match target {
        Some(t) => cfg.with_target(t),
        None => cfg,
    };
    let max_par = cfg.points.iter().map(|p| p.parallel).max().unwrap_or(1);
    let pool = if max_par > 0 { max_par as usize } else { 1024 };
    let reserve = setup::reserve_space(&cfg, root, pool);
    if !cfg.masked_headers().is_empty() {
        log::debug(format!("headers: {:?}", cfg.masked_headers()));
    }
    let mut load_client = client::Client::new(
        &cfg.client,
        cfg.url.url(),
        pool,
        cfg.protocol.clone(),
        clock,
    )?;
    setup::connection_notes(&cfg, cfg.url.url(), &load_client);
    // The payloads are kept for the rows that store them (--store-responses, all by
    // default as evalscope), and with a tokenizer until the token counts a server
    // left out are filled in; the writer drops what is not to be stored.
    load_client.keep_messages =
        cfg.store_responses != crate::store::StoreResponses::None || cfg.tokenizer.is_some();
    let run_label = run_label(&cfg, root);
    let (metrics, metrics_server) = start_metrics(&cfg, &run_label, cfg.url.shown(), root).await?;
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
    let scrape = find_server_metrics(&cfg, cfg.url.shown()).await;
    let ctx = Arc::new(Ctx {
        cfg,
        log: run_log,
        client: load_client,
        clock,
        stop: stop.clone(),
        metrics,
        run_label,
        tracing,
        progress,
        scrape,
        reserve,
        scrape_reported: Default::default(),
        offset_advance: Default::default(),
        tracker: Default::default(),
    });
    if ctx.cfg.test_connection {
        connection_test(&ctx).await?;
    }
    let offset = scale::clock_offset(&ctx.cfg).await;
    scale::write_shard_file(&ctx.cfg, root, offset.as_ref())?;
    if ctx.cfg.sla.is_some() && (ctx.cfg.tracker.is_some() || ctx.cfg.progress_tracker) {
        // evalscope: SLA mode bypasses the visualizer and the progress tracker.
        log::warn(
            "--sla-auto-tune: --visualizer and --enable-progress-tracker are not used in SLA mode",
        );
    }
    let tracker = match ctx.cfg.tracker.clone().filter(|_| ctx.cfg.sla.is_none()) {
        None => None,
        Some(settings) => Some(start_tracker(settings, &ctx.cfg, clock).await?),
    };
    if let Some(s) = tracker.as_ref().and_then(trackers::TrackerRun::sender) {
        let _ = ctx.tracker.set(s);
    }
    let started_unix = clock.unix(0.0);
    let result = match &ctx.cfg.sla {
        Some(sla) => sla_tune(&ctx, root, sla.clone()).await,
        None => sweep(&ctx, root, tracker.as_ref()).await,
    };
    if let Some(tracker) = tracker {
        finish_tracker(&ctx, root, tracker, &result, started_unix).await;
    }
    if let Some(p) = &ctx.progress {
        p.finish(result.is_ok());
    }
    let runs = result?;
    finish_invocation(&ctx, root, runs, metrics_server).await
}

/// The server under test: a local server perfscope starts (stopped on Drop), the
/// in-process simulator, or the URL as given. Returns them and, for the simulator,
/// the endpoint it listens on.
async fn start_target(
    cfg: &RunConfig,
    stop: &Stop,
    root: &Path,
) -> Result<(
    Option<crate::local_server::LocalServer>,
    Option<crate::sim::SimHandle>,
    Option<crate::config::Endpoint>,
)> {
    let mut sim = None;
    // Stopped when the invocation drops it, on every path (Drop).
    let local = match &cfg.local_server {
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
    let target = match (&cfg.api, &cfg.sim) {
        (Api::Sim, Some(sc)) => {
            let h = crate::sim::spawn("127.0.0.1:0".parse()?, sc.clone(), 1)?;
            // The in-process simulator is never behind a proxy.
            crate::proxy::register_direct(h.base_url().trim_start_matches("http://").to_string());
            let u = format!("{}{}", h.base_url(), cfg.url.path_and_query());
            log::info(format!(
                "Simulator listening on {} (settings: {})",
                h.base_url(),
                serde_json::to_string(sc).unwrap_or_default()
            ));
            sim = Some(h);
            Some(crate::config::Endpoint::parse(&u)?)
        }
        _ => None,
    };
    Ok((local, sim, target))
}

/// Sends the final summary and state to the tracker (bounded: a tracker that went
/// down costs at most a minute at the end).
async fn finish_tracker(
    ctx: &Ctx,
    root: &Path,
    tracker: trackers::TrackerRun,
    result: &Result<Vec<RunResult>>,
    started_unix: f64,
) {
    let (runs, outcome) = match result {
        Ok(runs) if ctx.stop.dispatch.is_cancelled() => (&runs[..], trackers::Outcome::Interrupted),
        Ok(runs)
            if runs
                .iter()
                .all(|r| r.num(crate::stats::Metric::SuccessRequests) > 0.0) =>
        {
            (&runs[..], trackers::Outcome::Finished)
        }
        Ok(runs) => (&runs[..], trackers::Outcome::Failed),
        Err(_) => (&[][..], trackers::Outcome::Failed),
    };
    let now = trackers::now_unix();
    let fin = trackers::final_payload(runs, outcome, now, now - started_unix);
    let (kind, url) = (tracker.kind, tracker.url.clone());
    // Bounded: a tracker that went down costs at most a minute at the end, and
    // 3 s after a signal (the process must end within `docker stop`'s grace; the
    // warning below says how to push the stored results later).
    let bound = if ctx.stop.dispatch.is_cancelled() {
        Duration::from_secs(3)
    } else {
        Duration::from_secs(60)
    };
    let d = tracing::dispatcher::get_default(|d| d.clone());
    let pushed = tokio::task::spawn_blocking(move || {
        tracing::dispatcher::with_default(&d, || tracker.finish(fin, bound))
    })
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

/// Authenticates with the tracker and creates its run before any load.
async fn start_tracker(
    settings: trackers::TrackerSettings,
    cfg: &RunConfig,
    clock: Clock,
) -> Result<trackers::TrackerRun> {
    let name = cfg.name.clone().unwrap_or_else(|| {
        format!(
            "{}_{}",
            cfg.model_id,
            chrono::Local::now().format("%Y%m%d_%H%M%S")
        )
    });
    let meta = trackers::RunMeta {
        name,
        config: cfg.args_json.clone(),
        started_unix: clock.unix(0.0),
    };
    let title = settings.kind.title();
    let d = tracing::dispatcher::get_default(|d| d.clone());
    let tracker = tokio::task::spawn_blocking(move || {
        tracing::dispatcher::with_default(&d, || trackers::TrackerRun::start(&settings, &meta))
    })
    .await
    .map_err(|e| anyhow::anyhow!("{title} setup: {e}"))?
    .with_context(|| format!("--visualizer: cannot start the {title} run (no load was sent)"))?;
    log::info(format!("{title} run: {}", tracker.url));
    Ok(tracker)
}

/// Runs every sweep point; each finished point is pushed to the tracker.
async fn sweep(
    ctx: &Arc<Ctx>,
    root: &Path,
    tracker: Option<&trackers::TrackerRun>,
) -> Result<Vec<RunResult>> {
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
        let r = match run_point(
            ctx,
            point,
            i as u64,
            root,
            match &ctx.cfg.agentx {
                // evalscope's layout: <model>/agentx_<variant>/parallel_<P>.
                Some(s) => format!("agentx_{}/parallel_{}", s.variant, point.parallel),
                None => point.dir_name(ctx.cfg.open_loop),
            },
        )
        .await
        {
            Ok(r) => r,
            // Stopped while this point was prepared: the points before it are
            // summarised as for any interrupted sweep.
            Err(e) if e.is::<Interrupted>() && !runs.is_empty() => break,
            Err(e) => return Err(e),
        };
        if let Some(tracker) = tracker {
            tracker.point(trackers::point(i as u64, &r, trackers::now_unix()));
        }
        runs.push(r);
    }
    Ok(runs)
}

/// The multi-run summary, exit code, --metrics-linger and the span flush.
async fn finish_invocation(
    ctx: &Arc<Ctx>,
    root: &Path,
    runs: Vec<RunResult>,
    metrics_server: Option<tokio::sync::oneshot::Sender<()>>,
) -> Result<Outcome> {
    if !runs.is_empty() {
        let header = report::Header {
            model_id: ctx.cfg.model_id.clone(),
            alias: ctx.cfg.alias.clone(),
            dataset: ctx.cfg.dataset.name.clone(),
            api: ctx.cfg.api.as_str().to_string(),
            endpoint: report::endpoint(ctx.cfg.url.shown()),
        };
        let text = report::multi_run_summary(&runs, &header, root);
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
            report::write_html(&runs, root, &header)?;
            log::info(format!(
                "HTML report: {}",
                root.join("perf_report.html").display()
            ));
        }
    }
    let exit_code = if ctx.stop.dispatch.is_cancelled() {
        ctx.stop.exit_code()
    } else if runs
        .iter()
        .any(|r| r.num(crate::stats::Metric::SuccessRequests) == 0.0)
    {
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
    if let Some(r) = &ctx.reserve {
        r.release();
    }
    if let Some(t) = &ctx.tracing {
        // Flush queued spans before exiting (Ctrl-C included).
        t.shutdown(ctx.stop.dispatch.is_cancelled()).await;
    }
    Ok(Outcome {
        exit_code,
        dir: root.to_path_buf(),
        runs,
    })
}

/// `--sla-auto-tune`: the search runs on a blocking thread and drives each run on
/// this runtime; runs go to `sla_tuning/sla_<var>_<v>_run_<i>/`. Returns the
/// averaged result of every tested value, in order of value, for the multi-run
/// summary.
async fn sla_tune(
    ctx: &Arc<Ctx>,
    root: &Path,
    sla: crate::sla::SlaConfig,
) -> Result<Vec<RunResult>> {
    let tuning = root.join("sla_tuning");
    let handle = tokio::runtime::Handle::current();
    let ctx2 = ctx.clone();
    let variable = sla.variable.clone();
    let d = tracing::dispatcher::get_default(|d| d.clone());
    let (rows, tested) = tokio::task::spawn_blocking(move || {
        let _log = tracing::dispatcher::set_default(&d);
        let cancelled = || ctx2.stop.dispatch.is_cancelled();
        crate::sla::tune(
            &sla,
            ctx2.cfg.sleep_interval,
            &cancelled,
            |point, index, name| handle.block_on(run_point(&ctx2, point, index, &tuning, name)),
        )
    })
    .await
    .map_err(|e| anyhow::anyhow!("the SLA search failed: {e}"))??;
    crate::sla::write_summary(root, &variable, &tested)?;
    log::info("SLA Auto-tune Summary:");
    log::block(&crate::sla::summary_table(rows));
    Ok(tested.into_values().collect())
}
