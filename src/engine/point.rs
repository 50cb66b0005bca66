//! One sweep point: warmup, dispatch, record, report.

use anyhow::{Context, Result};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;

use super::ctx::Ctx;
use super::observe::{log_cpu, observers, process_cpu_seconds, report_point};
use super::work::{Bodies, Work};
use crate::client::{self, Ticket};
use crate::config::SweepPoint;
use crate::record::RequestRecord;
use crate::recorder;
use crate::report::RunResult;
use crate::scheduler;
use crate::store;
use crate::telemetry::log;
use tracing::instrument::WithSubscriber;

/// Runs one sweep point into `root/name`: warmup (not recorded), the measured
/// requests through the recorders, then its files and console tables.
pub(crate) async fn run_point(
    ctx: &Arc<Ctx>,
    point: &SweepPoint,
    index: u64,
    root: &Path,
    name: String,
) -> Result<RunResult> {
    let cfg = &ctx.cfg;
    let dir = root.join(&name);
    let global_number = point.number;
    let warmup = cfg.warmup_for(point.number);
    let mut work = load_work(ctx, point.number + warmup, index).await?;
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let warmup = work.warmup(warmup);
    let number = work.measured(point.number, warmup);
    // A shard keeps its part of the global plan; everything below runs that part.
    let (local, warmup, number) = shard_part(cfg, &mut work, point, warmup, number);
    let point = &local;
    let args = cfg.args_for_run(point, &dir, ctx.dataset_offset());
    ctx.offset_advance
        .fetch_add(global_number, std::sync::atomic::Ordering::Relaxed);
    let queue = queue_size(ctx, point);
    let writer = open_store(ctx, point, root, &name, &args, queue)?;
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
    if !matches!(work, Work::Agentic(_)) {
        super::warmup::note(point.parallel, warmup, matches!(work, Work::Sessions(_)));
    }
    if let (true, Work::Requests(bodies)) = (warmup > 0, &mut work) {
        run_warmup(ctx, point, warmup, bodies, &name, queue).await;
    }
    let (tx, rx) = mpsc::channel::<RequestRecord>(queue);
    let bar = recorder::progress_bar(&format!("Processing[{name}]"), number);
    ctx.log.set_bar(Some(bar.clone()));
    let (observers, in_flight) = observers(ctx, point, &name, &dir);
    let fan = tokio::spawn(
        recorder::fanout(
            rx,
            writer.sender(),
            bar.clone(),
            cfg.log_every_n_query,
            name.clone(),
            observers,
        )
        .with_current_subscriber(),
    );
    let mut agentx = match &work {
        Work::Agentic(set) => {
            Some(super::agentx::prepare(ctx, point, &name, set, &tx, &in_flight).await)
        }
        _ => None,
    };
    let (anchor, go, scraper) = start_measuring(ctx, index, &dir).await;
    let (cpu0, t0) = (process_cpu_seconds(), ctx.clock.now());
    let mut agentic = None;
    let (sent, not_sent) = match &mut work {
        _ if !go => (0, 0),
        Work::Requests(bodies) => {
            let d = Dispatch {
                count: number,
                body_offset: warmup,
                measured: true,
                anchor,
            };
            dispatch(ctx, point, d, bodies, tx, in_flight).await
        }
        Work::Sessions(convs) => {
            let sent =
                super::sessions::dispatch(ctx, point, convs.clone(), warmup, tx, in_flight).await;
            (sent, 0)
        }
        Work::Agentic(_) => match agentx.take() {
            Some(ready) => {
                drop(tx);
                let (sent, stats) = super::agentx::play(ready).await;
                agentic = Some(stats);
                (sent, 0)
            }
            None => (0, 0),
        },
    };
    // Its sender holds a clone of `tx`: the recorder ends when both are gone.
    drop(agentx);
    if not_sent > 0 {
        log::warn(format!("{name}: {not_sent} requests were waiting for a slot when the run was stopped and were not sent"));
    }
    let live = fan.await.unwrap_or_default();
    if let Some(s) = scraper {
        s.finish().await;
    }
    log_cpu(&name, sent, cpu0, ctx.clock.now() - t0);
    ctx.log.set_bar(None);
    let (status, reason) = ctx.stop.status();
    let stored = writer.finish(status, reason.as_deref(), not_sent)?;
    if stored.rows != sent || live.total != sent {
        let lost = match stored.lost {
            0 => String::new(),
            n => format!(" ({n} could not be written)"),
        };
        log::error(format!(
            "{sent} requests sent but {} rows stored{lost}",
            stored.rows
        ));
    }
    let mut result = report_point(ctx, point, &dir, &name, &args)?;
    if let (Work::Agentic(set), Some(stats)) = (&work, agentic) {
        result.agentx = super::agentx::write_summary(ctx, set, &result, &dir, stats)?;
    }
    Ok(result)
}

/// Reads or generates what the point sends on a blocking thread, so that a signal
/// stops the run while it is prepared: a FIFO with no writer, a slow disk, a large
/// dataset. The abandoned thread ends with the process.
async fn load_work(ctx: &Arc<Ctx>, count: u64, index: u64) -> Result<Work> {
    let c = ctx.clone();
    let d = tracing::dispatcher::get_default(|d| d.clone());
    let load = tokio::task::spawn_blocking(move || {
        tracing::dispatcher::with_default(&d, || Work::load(&c, count, index))
    });
    tokio::select! {
        r = load => r.map_err(|e| anyhow::anyhow!("preparing the requests failed: {e}"))?,
        _ = ctx.stop.dispatch.cancelled() => {
            Err(super::stop::Interrupted(ctx.stop.exit_code()).into())
        }
    }
}

/// The moment the measured load starts. The first point waits for --start-at and
/// anchors its schedule on the barrier, so that every shard keeps the same absolute
/// times. The wait ends just before the barrier and before the scraper starts: the
/// wait is not part of the run, and the first scrape does not delay the first
/// request. Returns the anchor, false when a signal stopped the wait, and the
/// scraper.
async fn start_measuring(
    ctx: &Arc<Ctx>,
    index: u64,
    dir: &Path,
) -> (Option<f64>, bool, Option<crate::scrape::Scraper>) {
    let (anchor, go) = if index == 0 {
        super::scale::barrier(ctx).await
    } else {
        (None, true)
    };
    // The server's state just before the first request, then every interval.
    let scraper = match &ctx.scrape {
        Some(s) if go => {
            crate::scrape::Scraper::start(
                s,
                ctx.clock,
                dir.join("benchmark_data.db"),
                ctx.scrape_reported.clone(),
                ctx.metrics.as_ref().map(|m| {
                    let m = m.clone();
                    let labels = ctx.run_labels(&stage_name(dir));
                    std::sync::Arc::new(move |s: &[crate::scrape::parse::Sample]| {
                        m.server_state(&labels, s)
                    }) as crate::scrape::OnScrape
                }),
            )
            .await
        }
        _ => None,
    };
    let go = match anchor {
        Some(a) if go => super::scale::until(ctx, a).await,
        _ => go,
    };
    (anchor, go, scraper)
}

/// A step's name (its directory's).
fn stage_name(dir: &Path) -> String {
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// This shard's point, warmup and measured requests (all of them when not sharded).
fn shard_part(
    cfg: &crate::config::RunConfig,
    work: &mut Work,
    point: &SweepPoint,
    warmup: u64,
    number: u64,
) -> (SweepPoint, u64, u64) {
    match &cfg.scale.shard {
        Some(s) => {
            let part = work.shard(s.shard, point, warmup, number, cfg.dataset.seed);
            (s.point(point), part.warmup, part.measured)
        }
        None => (point.clone(), warmup, number),
    }
}

/// Records queued between the request tasks and the recorders.
fn queue_size(ctx: &Ctx, point: &SweepPoint) -> usize {
    let cap = if point.parallel > 0 {
        point.parallel as usize
    } else {
        1024
    };
    cap * ctx.cfg.queue_size_multiplier
}

/// The point's database, with its `run` row.
fn open_store(
    ctx: &Ctx,
    point: &SweepPoint,
    root: &Path,
    name: &str,
    args: &serde_json::Map<String, serde_json::Value>,
    queue: usize,
) -> Result<store::Writer> {
    let cfg = &ctx.cfg;
    let meta = store::RunMeta {
        run_id: format!("{}/{}", root.display(), name),
        name: cfg.name.clone().unwrap_or_else(|| cfg.model_id.clone()),
        model: cfg.model.clone(),
        api: cfg.api.as_str().into(),
        url: cfg.url.shown().to_string(),
        parallel: point.parallel,
        number: point.number,
        rate: point.rate,
        config_json: serde_json::Value::Object(args.clone()).to_string(),
        shard: cfg.scale.shard.as_ref().map(|s| s.shard.index),
    };
    let stop = ctx.stop.clone();
    store::Writer::start(
        root.join(name).join("benchmark_data.db"),
        &meta,
        ctx.clock,
        store::WriterOptions {
            commit_every: cfg.db_commit_interval,
            queue,
            reserve: ctx.reserve.clone(),
            on_failure: Box::new(move |cause| stop.fail(cause)),
            responses: cfg.store_responses,
        },
    )
}

/// Warmup requests: sent like the measured ones, counted, not recorded.
async fn run_warmup(
    ctx: &Arc<Ctx>,
    point: &SweepPoint,
    warmup: u64,
    bodies: &mut Bodies,
    name: &str,
    queue: usize,
) {
    let (tx, mut rx) = mpsc::channel::<RequestRecord>(queue);
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
    ctx.log.set_bar(Some(bar.clone()));
    let d = Dispatch {
        count: warmup,
        body_offset: 0,
        measured: false,
        anchor: None,
    };
    let _ = dispatch(ctx, point, d, bodies, tx, None).await;
    bar.finish_and_clear();
    let (n, ok) = drain.await.unwrap_or((0, 0));
    log::info(format!("Warmup done: {ok}/{n} succeeded (not recorded)"));
}

/// Which requests one dispatch releases: `count` bodies from `body_offset`,
/// measured or warmup, with the schedule anchored at `anchor` (clock seconds; now
/// when None).
struct Dispatch {
    count: u64,
    body_offset: u64,
    measured: bool,
    anchor: Option<f64>,
}

/// What every request task of one dispatch shares.
struct Shared {
    ctx: Arc<Ctx>,
    slots: Arc<Semaphore>,
    out: mpsc::Sender<RequestRecord>,
    /// The in-flight gauge to maintain (measured requests with metrics on).
    in_flight: Option<prometheus_client::metrics::gauge::Gauge>,
    /// Released requests that were never sent (the run was stopped first).
    not_sent: Arc<std::sync::atomic::AtomicU64>,
}

/// Releases `count` requests per the load shape; returns how many were sent and how
/// many were released but never sent (the run was stopped while they waited for a
/// slot). Every sent request produces exactly one record on `out`; one never sent
/// produces none.
async fn dispatch(
    ctx: &Arc<Ctx>,
    point: &SweepPoint,
    d: Dispatch,
    bodies: &mut Bodies,
    out: mpsc::Sender<RequestRecord>,
    in_flight: Option<prometheus_client::metrics::gauge::Gauge>,
) -> (u64, u64) {
    let cfg = &ctx.cfg;
    let Dispatch {
        count,
        body_offset,
        measured,
        anchor,
    } = d;
    let shape = bodies.shape(
        point,
        count,
        body_offset,
        cfg.duration.filter(|_| measured),
        cfg.dataset.seed,
    );
    // A semaphore of `parallel` slots wraps only the HTTP call, as evalscope; at most
    // `parallel × --in-flight-task-multiplier` request tasks exist.
    let (slots, tasks) = match shape.concurrency {
        Some(c) => (c, c * cfg.in_flight_task_multiplier),
        None => (Semaphore::MAX_PERMITS, Semaphore::MAX_PERMITS),
    };
    let tasks = Arc::new(Semaphore::new(tasks));
    let shared = Arc::new(Shared {
        ctx: ctx.clone(),
        slots: Arc::new(Semaphore::new(slots)),
        out,
        in_flight,
        not_sent: Arc::default(),
    });
    let duration_reached = |sent: u64| {
        log::info(format!(
            "--duration reached after {sent} requests; waiting for in-flight requests"
        ))
    };
    let anchor = anchor.unwrap_or_else(|| ctx.clock.now());
    let mut set = JoinSet::new();
    let mut sent = 0u64;
    loop {
        if ctx.stop.dispatch.is_cancelled() {
            break;
        }
        let now = ctx.clock.now();
        let (seq, intended) = match shape.next(sent, anchor, now) {
            scheduler::Release::Done => break,
            scheduler::Release::DurationReached => {
                duration_reached(sent);
                break;
            }
            scheduler::Release::StopAt(d) => {
                if d > now {
                    tokio::select! {
                        _ = tokio::time::sleep_until(ctx.clock.instant(d).into()) => {}
                        _ = ctx.stop.dispatch.cancelled() => break,
                    }
                }
                duration_reached(sent);
                break;
            }
            scheduler::Release::Request { seq, intended } => (seq, intended),
        };
        if let Some(t) = intended.filter(|t| *t > now) {
            tokio::select! {
                _ = tokio::time::sleep_until(ctx.clock.instant(t).into()) => {}
                _ = ctx.stop.dispatch.cancelled() => break,
            }
        }
        // Cancellation first: a permit freed by a request that was stopped must not
        // release another one.
        let permit = tokio::select! {
            biased;
            _ = ctx.stop.dispatch.cancelled() => break,
            p = tasks.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let body = bodies.get(body_offset + seq, ctx);
        let (extra_headers, row_id) = bodies.extra(body_offset + seq);
        // Spans are exported for a --otlp-sample-ratio share of requests; the
        // traceparent's sampled flag says so to the server.
        let sampled = ctx
            .tracing
            .as_ref()
            .is_none_or(|t| fastrand::f64() < t.sample_ratio);
        let ticket = Ticket {
            seq,
            intended_start: intended.unwrap_or_default(),
            body,
            stream_requested: cfg.gen.stream,
            trace: Some(client::TraceContext::random(sampled)),
            keep_text: false,
            extra_headers,
        };
        set.spawn(request(
            shared.clone(),
            ticket,
            row_id,
            intended.is_some(),
            permit,
        ));
        sent += 1;
        while set.try_join_next().is_some() {}
    }
    let not_sent = shared.not_sent.clone();
    drop(shared);
    while set.join_next().await.is_some() {}
    let skipped = not_sent.load(std::sync::atomic::Ordering::Relaxed);
    (sent - skipped, skipped)
}

/// One request's task: wait for a slot, send, record. A request still waiting for a
/// slot when the run is stopped is not sent. Unpaced requests intend to start when
/// they get their slot.
async fn request(
    s: Arc<Shared>,
    mut ticket: Ticket,
    row_id: Option<String>,
    paced: bool,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let ctx = &s.ctx;
    let slot = tokio::select! {
        biased;
        _ = ctx.stop.dispatch.cancelled() => None,
        slot = s.slots.clone().acquire_owned() => slot.ok(),
    };
    if slot.is_none() {
        s.not_sent
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        drop(permit);
        return;
    }
    if let Some(g) = &s.in_flight {
        g.inc();
    }
    if !paced {
        ticket.intended_start = ctx.clock.now();
    }
    let c = &ctx.cfg;
    let mut rec = ctx.client.execute(ticket, &ctx.stop.abort).await;
    if let Some(t) = &c.tokenizer {
        c.protocol.fill_token_counts(t, &mut rec);
    }
    if row_id.is_some() {
        // evalscope stores a workload_trace row's own request_id.
        rec.request_id = row_id;
    }
    drop(slot);
    if let Some(g) = &s.in_flight {
        g.dec();
    }
    let _ = s.out.send(rec).await;
    drop(permit);
}
