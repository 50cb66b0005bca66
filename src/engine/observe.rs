//! What watches a point while it runs and reports it after: the live recorders
//! (Prometheus, spans, progress, stop rules, the time series), the point's files
//! and console tables, and its cost (client CPU, database size).

use anyhow::Result;
use std::path::Path;

use super::ctx::Ctx;
use crate::config::SweepPoint;
use crate::recorder;
use crate::report::{self, RunResult};
use crate::telemetry::log;

/// The live recorders of a point (Prometheus, spans, progress) and the in-flight
/// gauge the request tasks keep.
pub(super) fn observers(
    ctx: &Ctx,
    point: &SweepPoint,
    name: &str,
    dir: &Path,
) -> (
    recorder::Observers,
    Option<prometheus_client::metrics::gauge::Gauge>,
) {
    let cfg = &ctx.cfg;
    let labels = ctx.run_labels(name);
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
        let u = &ctx.cfg.url.url();
        let common = crate::recorder::otel::SpanCommon {
            operation: cfg.protocol.operation(cfg.chat),
            model: cfg.model.clone(),
            server_address: u.host_str().unwrap_or("").to_string(),
            server_port: u.port_or_known_default().map_or(0, i64::from),
            run: ctx.run_label.clone(),
            stage: name.to_string(),
            parallel: point.parallel,
            rate: point.rate,
            max_tokens: cfg.gen.max_tokens.1 as i64,
        };
        (t, common.prepare(), ctx.clock)
    });
    let stop = ctx.stop.clone();
    let guard = recorder::guard::Guard::new(cfg.stop_rules, point.rate).map(|g| {
        let trip: recorder::OnTrip = Box::new(move |why| stop.trip(why));
        (g, trip)
    });
    let observers = recorder::Observers {
        prom,
        spans,
        progress: ctx.progress.clone(),
        encoder: cfg.protocol.is_encoder(),
        guard,
        snapshots: snapshots(ctx, name, dir),
    };
    (observers, in_flight)
}

/// The `--snapshot-interval` windows of a run with a duration: each goes to
/// `timeseries.jsonl`, the tracker, the drift gauges, and the log when it drifted.
fn snapshots(ctx: &Ctx, name: &str, dir: &Path) -> Option<recorder::snapshot::Snapshots> {
    let (every, threshold) = ctx.cfg.snapshots.filter(|_| ctx.cfg.duration.is_some())?;
    let tracker = ctx.tracker.get().cloned();
    let prom = ctx.metrics.clone().map(|m| (m, ctx.run_labels(name)));
    let on_snapshot = Box::new(move |s: &recorder::snapshot::Snapshot| {
        if let Some(tracker) = &tracker {
            tracker.point(crate::trackers::snapshot_point(s));
        }
        if let Some((m, l)) = &prom {
            m.drift(l, s.drift.ttft_p50_ratio, s.drift.tpot_p50_ratio);
        }
        if let Some(note) = s.drift_note() {
            log::warn(format!("{}: {note}", s.stage));
        }
    });
    Some(recorder::snapshot::Snapshots::new(
        name,
        dir,
        every,
        threshold,
        ctx.clock,
        on_snapshot,
    ))
}

/// The point's result from its stored rows: its JSON files and console tables.
pub(super) fn report_point(
    ctx: &Ctx,
    point: &SweepPoint,
    dir: &Path,
    name: &str,
    args: &serde_json::Map<String, serde_json::Value>,
) -> Result<RunResult> {
    let cfg = &ctx.cfg;
    let result = report::load_run(dir, point.clone(), cfg.goodput)?;
    let any_success = result.num(crate::stats::Metric::SuccessRequests) > 0.0;
    log_storage(dir, result.num(crate::stats::Metric::TotalRequests));
    report::write_run_files(&result, args)?;
    if matches!(
        cfg.dataset.kind,
        crate::dataset::DatasetKind::SpeedBenchmark { .. }
    ) {
        log::block(&report::speed_benchmark(dir)?);
    }
    log::info(format!("Benchmarking summary ({name}):"));
    log::block(&report::summary_table(&result));
    for w in result.summary.warnings() {
        log::warn(format!("{name}: {w}"));
    }
    if let Some(why) = &result.cut_short {
        log::warn(format!(
            "{name} was cut short: {why}; its figures cover the requests it stored"
        ));
    }
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

/// The database's size and bytes per row: what a long run will need (see
/// `--store-responses`).
fn log_storage(dir: &Path, rows: f64) {
    let db = dir.join("benchmark_data.db");
    let Ok(m) = std::fs::metadata(&db) else {
        return;
    };
    if rows > 0.0 {
        log::info(format!(
            "{}: {:.1} MB for {rows} rows ({:.0} bytes per row)",
            db.display(),
            m.len() as f64 / 1e6,
            m.len() as f64 / rows
        ));
    }
}

/// Whether the client could have been the bottleneck: its CPU time per request
/// (with --api sim this includes the in-process simulator).
pub(super) fn log_cpu(name: &str, sent: u64, cpu0: Option<f64>, secs: f64) {
    if let (Some(a), Some(b)) = (cpu0, process_cpu_seconds()) {
        log::info(format!(
            "{name}: {sent} requests in {secs:.2} s; process CPU {:.2} s ({:.0} µs per request)",
            b - a,
            (b - a) * 1e6 / sent.max(1) as f64
        ));
    }
}

/// User + system CPU seconds of this process (Linux `/proc/self/stat`; None elsewhere).
pub(super) fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux ABI that matters here.
    Some(ticks / 100.0)
}
