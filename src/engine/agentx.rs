//! `--scenario agentx` in the engine: the Weka set becomes a replay plan and
//! token-exact prompts (`crate::agentx`), the replay schedule releases requests,
//! and each request goes through the load client and becomes a row like any
//! other, its session id `<conversation>#<play>` and its turn (1-based). Every
//! play of a conversation is one trace: its span is the parent of its requests'.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

use super::ctx::Ctx;
use crate::agentx::plan::{self, Plan};
use crate::agentx::replay::{self, Credit, Outcome, SendFuture, Sender, Stats};
use crate::agentx::synth::{self, Role, Segment};
use crate::agentx::trace;
use crate::client::{self, Ticket};
use crate::config::scenario::Scenario;
use crate::record::{RequestRecord, SessionTag};
use crate::telemetry::log;

/// A loaded Weka set: the plan and every turn's messages.
pub(crate) struct AgentSet {
    pub plan: Arc<Plan>,
    /// `[conversation][turn]` → the messages sent.
    prompts: Vec<Vec<Vec<Segment>>>,
    pub trace_file: std::path::PathBuf,
}

/// Reads the set, applies the scenario's selection (the context filter first,
/// then the smoke trace limit, as AIPerf does) and builds every prompt.
pub(crate) fn load(ctx: &Ctx, s: &Scenario) -> Result<AgentSet> {
    let cfg = &ctx.cfg;
    let path = cfg
        .dataset
        .path
        .as_deref()
        .context("--scenario agentx needs --dataset-path")?;
    let mut traces = trace::read(std::path::Path::new(path))?;
    if let Some(limit) = s.max_context_length {
        traces.retain(|t| peak_context(t) <= limit as u64);
    }
    if let Some(n) = s.trace_limit() {
        traces.truncate(n as usize);
    }
    if traces.is_empty() {
        anyhow::bail!("--dataset-path {path}: no trace is left after the scenario's selection");
    }
    let plan = plan::build(&traces, false);
    for (t, a) in &plan.dropped_subagents {
        log::warn(format!(
            "trace `{t}`: subagent `{a}` comes before any parent request and is dropped (as AIPerf drops it)"
        ));
    }
    let tok = cfg
        .tokenizer
        .as_ref()
        .context("--scenario agentx requires --tokenizer-path")?;
    let ids = tok.stable_word_ids();
    let decode = |t: &[u32]| tok.decode(t);
    let vocab = synth::Vocab {
        ids: &ids,
        decode: &decode,
    };
    let mut prompts = Vec::with_capacity(plan.conversations.len());
    for c in &plan.conversations {
        let turns: Vec<synth::TurnInput> = c
            .turns
            .iter()
            .map(|t| synth::TurnInput {
                hash_ids: &t.hash_ids,
                input: t.input,
                output: t.output,
            })
            .collect();
        prompts.push(synth::conversation(
            &vocab,
            c.block_size,
            &traces[c.trace].id,
            &c.id,
            c.tool_tokens,
            c.system_tokens,
            &turns,
        )?);
    }
    let p = std::path::Path::new(path);
    let trace_file = if p.is_dir() && p.join("traces.jsonl").is_file() {
        p.join("traces.jsonl")
    } else {
        p.to_path_buf()
    };
    Ok(AgentSet {
        plan: Arc::new(plan),
        prompts,
        trace_file,
    })
}

/// The largest `in + max(out, 1)` of a trace's requests (AIPerf's context filter).
fn peak_context(t: &trace::Trace) -> u64 {
    t.entries
        .iter()
        .flat_map(|e| match e {
            trace::Entry::Request(r) => vec![r],
            trace::Entry::Subagent(s) => s.requests.iter().collect(),
        })
        .map(|r| r.input + r.output.max(1))
        .max()
        .unwrap_or(0)
}

/// The messages of one request: the cache-bust marker before the first user
/// message's text (AIPerf's `first_turn_prefix`).
fn messages(segs: &[Segment], marker: &str) -> Value {
    let mut marked = false;
    Value::Array(
        segs.iter()
            .map(|s| {
                let text = if s.role == Role::User && !marked {
                    marked = true;
                    format!("{marker}{}", s.text)
                } else {
                    s.text.to_string()
                };
                json!({"role": s.role.as_str(), "content": text})
            })
            .collect(),
    )
}

/// A conversation play's trace context and when its first request was sent.
type PlayTrace = (client::TraceContext, Option<f64>);

struct ClientSender {
    ctx: Arc<Ctx>,
    set: Arc<AgentSet>,
    out: mpsc::Sender<RequestRecord>,
    in_flight: Option<prometheus_client::metrics::gauge::Gauge>,
    seq: AtomicU64,
    /// Each conversation play's trace and first send.
    plays: Mutex<HashMap<(usize, u64), PlayTrace>>,
}

impl ClientSender {
    /// AIPerf's chat body for the scenario, key for key: the accumulated
    /// messages, `max_completion_tokens` = max(out, 1) (1 for a warmup
    /// request), streaming with usage, and `ignore_eos` (the scenario's lock, so
    /// the output is exactly that long). No sampling parameters: AIPerf sends
    /// none and evalscope cannot pass any.
    fn body(&self, c: &Credit) -> String {
        let turn = &self.set.plan.conversations[c.conversation].turns[c.turn];
        let max = if c.warmup { 1 } else { turn.max_tokens };
        json!({
            "model": self.ctx.cfg.gen.model,
            "messages": messages(&self.set.prompts[c.conversation][c.turn], &c.marker),
            "stream": true,
            "max_completion_tokens": max,
            "ignore_eos": true,
            "stream_options": {"include_usage": true},
        })
        .to_string()
    }
}

/// How the schedule sees a finished request.
fn outcome(rec: &RequestRecord) -> Outcome {
    if rec.success {
        Outcome::Ok
    } else if rec
        .error
        .as_deref()
        .is_some_and(crate::agentx::summary::is_context_overflow)
    {
        Outcome::Overflow
    } else {
        Outcome::Failed
    }
}

impl Sender for Arc<ClientSender> {
    fn send(&self, c: Credit) -> SendFuture {
        let me = self.clone();
        Box::pin(async move {
            let ctx = &me.ctx;
            let body = me.body(&c);
            let issued = ctx.clock.now() - c.issued.elapsed().as_secs_f64();
            // One trace per tree play: the root conversation's session span is the
            // parent of its subagents' session spans.
            let tree_root = me.set.plan.roots[c.trace];
            let (root, parent_session) = {
                let mut plays = me.plays.lock().unwrap_or_else(|e| e.into_inner());
                let top = plays
                    .entry((tree_root, c.play))
                    .or_insert_with(|| {
                        let sampled = ctx
                            .tracing
                            .as_ref()
                            .is_none_or(|t| fastrand::f64() < t.sample_ratio);
                        (client::TraceContext::random(sampled), None)
                    })
                    .0;
                if c.conversation == tree_root {
                    (top, None)
                } else {
                    let own = plays
                        .entry((c.conversation, c.play))
                        .or_insert_with(|| {
                            (
                                client::TraceContext {
                                    span_id: fastrand::u64(1..),
                                    ..top
                                },
                                None,
                            )
                        })
                        .0;
                    (own, Some(top.span_id))
                }
            };
            let ticket = Ticket {
                // Warmup requests are not rows: they take no sequence number.
                seq: if c.warmup {
                    u64::MAX
                } else {
                    me.seq.fetch_add(1, Ordering::Relaxed)
                },
                intended_start: issued,
                body: body.into(),
                stream_requested: true,
                trace: Some(client::TraceContext {
                    span_id: fastrand::u64(1..),
                    ..root
                }),
                keep_text: false,
                extra_headers: None,
            };
            if c.warmup {
                // Primes the cache; not a measured request, so not a row
                // (AIPerf keeps warmup records out of the profiling metrics).
                let rec = ctx.client.execute(ticket, &ctx.stop.abort).await;
                if let Some(e) = &rec.error {
                    log::warn(format!(
                        "agentx warmup: `{}` turn {}: {e}",
                        me.set.plan.conversations[c.conversation].id,
                        c.turn + 1
                    ));
                }
                return outcome(&rec);
            }
            if let Some(g) = &me.in_flight {
                g.inc();
            }
            let mut rec = ctx.client.execute(ticket, &ctx.stop.abort).await;
            if let Some(g) = &me.in_flight {
                g.dec();
            }
            if let Some(t) = &ctx.cfg.tokenizer {
                ctx.cfg.protocol.fill_token_counts(t, &mut rec);
            }
            let conv = &me.set.plan.conversations[c.conversation];
            let started = {
                let mut plays = me.plays.lock().unwrap_or_else(|e| e.into_inner());
                let e = plays
                    .entry((c.conversation, c.play))
                    .or_insert((root, None));
                *e.1.get_or_insert(rec.timeline.send)
            };
            let out = outcome(&rec);
            rec.session = Some(SessionTag {
                id: format!("{}#{}", conv.id, c.play),
                turn: c.turn as u32 + 1,
                is_last: out == Outcome::Overflow || c.turn + 1 == conv.turns.len(),
                parent_span: root.span_id,
                parent_session,
                started,
                cached_estimate: None,
                agent_depth: Some(conv.depth),
                prefix_blocks: Some(conv.turns[c.turn].prefix_blocks),
            });
            let _ = me.out.send(rec).await;
            out
        })
    }
}

/// A replay ready to play: its warmup is done (or failed).
pub(crate) struct Ready {
    sender: Arc<ClientSender>,
    prepared: Result<replay::Prepared>,
}

/// Prepares the replay of the set with `parallel` lanes for the scenario's
/// duration: picks each lane's first tree at its t* and sends the warmup, before
/// the measured window (and the server's before-scrape) starts.
pub(crate) async fn prepare(
    ctx: &Arc<Ctx>,
    point: &crate::scheduler::SweepPoint,
    name: &str,
    set: &Arc<AgentSet>,
    out: &mpsc::Sender<RequestRecord>,
    in_flight: &Option<prometheus_client::metrics::gauge::Gauge>,
) -> Ready {
    let (parallel, duration) = (point.parallel, ctx.cfg.duration.unwrap_or(0.0));
    let (lo, hi) = ctx
        .cfg
        .agentx
        .as_ref()
        .map_or((0.0, 1.0), |s| s.start_ratios);
    let sender = Arc::new(ClientSender {
        ctx: ctx.clone(),
        set: set.clone(),
        out: out.clone(),
        in_flight: in_flight.clone(),
        seq: AtomicU64::new(0),
        plays: Mutex::new(HashMap::new()),
    });
    let opts = replay::Options {
        lanes: parallel.max(1) as usize,
        deadline: Some(std::time::Duration::from_secs_f64(duration)),
        idle_cap: std::time::Duration::from_secs(10),
        run_id: ctx.run_label.clone(),
        stopped: {
            let c = ctx.clone();
            Arc::new(move || c.stop.dispatch.is_cancelled())
        },
        precise: true,
        start: crate::agentx::tstar::Start {
            min_ratio: lo,
            max_ratio: hi,
            seed: ctx
                .cfg
                .gen
                .seed
                .unwrap_or(crate::config::scenario::DEFAULT_SEED),
        },
        live: ctx.metrics.as_ref().map(|m| {
            let l = ctx.run_labels(name);
            m.agentx_started(&l);
            replay::Live {
                lanes: m.agentx_lanes.get_or_create(&l).clone(),
                subagents: m.agentx_subagents.get_or_create(&l).clone(),
            }
        }),
    };
    let prepared = replay::prepare(set.plan.clone(), opts, Arc::new(sender.clone()))
        .await
        .map_err(anyhow::Error::new);
    Ready { sender, prepared }
}

/// Plays a prepared replay; returns the requests sent and what the schedule did
/// (an error when the warmup failed, as AIPerf aborts then).
pub(crate) async fn play(ready: Ready) -> (u64, Result<Stats>) {
    let stats = match ready.prepared {
        Ok(p) => Ok(p.play().await),
        Err(e) => Err(e),
    };
    (ready.sender.seq.load(Ordering::Relaxed), stats)
}

/// The stored rows of a run, for its summary.
fn rows(dir: &std::path::Path) -> Result<Vec<crate::agentx::summary::Row>> {
    let db = dir.join("benchmark_data.db");
    // Read-write, so that closing the last connection removes the WAL files (a
    // read-only last connection leaves `-wal` and `-shm` beside the database).
    let conn =
        rusqlite::Connection::open(&db).with_context(|| format!("cannot open {}", db.display()))?;
    let mut stmt = conn.prepare(
        "SELECT session_id, turn, success, latency, first_chunk_latency, prompt_tokens,
                completion_tokens, cached_tokens, intended_start, start_time, completed_time,
                failure_kind, error FROM result",
    )?;
    let out = stmt
        .query_map([], |r| {
            Ok(crate::agentx::summary::Row {
                session: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
                turn: r.get::<_, Option<u32>>(1)?.unwrap_or(0),
                success: r.get::<_, i64>(2)? == 1,
                latency: r.get(3)?,
                ttft: r.get(4)?,
                prompt_tokens: r.get::<_, Option<i64>>(5)?.map(|v| v.max(0) as u64),
                completion_tokens: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
                cached_tokens: r.get::<_, Option<i64>>(7)?.map(|v| v.max(0) as u64),
                intended: r.get::<_, Option<f64>>(8)?.unwrap_or(0.0),
                send: r.get::<_, Option<f64>>(9)?.unwrap_or(0.0),
                end: r.get::<_, Option<f64>>(10)?.unwrap_or(0.0),
                failure_kind: r.get(11)?,
                error: r.get(12)?,
            })
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(out)
}

/// `agentx_summary.json` of one run, and the run's entry in the variant's
/// `agentx_sweep_summary.json` (evalscope 1.14.1's files).
pub(crate) fn write_summary(
    ctx: &Ctx,
    set: &AgentSet,
    run: &crate::report::RunResult,
    dir: &std::path::Path,
    stats: Result<Stats>,
) -> Result<Vec<(String, f64)>> {
    let parallel = run.point.parallel;
    use crate::agentx::summary;
    // AIPerf: a failed warmup aborts the run (`TrajectoryWarmupFailedError`).
    let stats = &stats.with_context(|| format!("--scenario agentx (parallel_{parallel})"))?;
    let cfg = &ctx.cfg;
    let Some(s) = &cfg.agentx else {
        return Ok(Vec::new());
    };
    let rows = rows(dir)?;
    let duration = cfg.duration.unwrap_or(0.0);
    let (mut metrics, overflow) = summary::metrics(&rows, &set.plan, duration);
    // The server's own prefix-cache counters over the run (scraped), beside the
    // theoretical ceiling and the responses' cached tokens.
    use crate::stats::Metric;
    if let Some(hit) = run.summary.get(Metric::ServerPrefixCacheHitRate) {
        let mut b = Map::new();
        b.insert("unit".into(), json!("%"));
        b.insert("avg".into(), json!(hit));
        if let Some(c) = run.summary.get(Metric::ServerCachedPromptTokens) {
            b.insert("sum".into(), json!(c));
        }
        metrics.insert("server_prefix_cache_hit".into(), Value::Object(b));
    }
    let cancelled = ctx.stop.dispatch.is_cancelled();
    // AIPerf's validity: a local, unverified set is an `unsafe_override` run.
    let mut reasons = vec!["unsafe_override".to_string()];
    if !rows.is_empty() && overflow as f64 / rows.len() as f64 > 0.01 {
        reasons.push("context_overflow_rate_exceeded".into());
    }
    if cancelled {
        reasons.push("run_cancelled".into());
    }
    let bytes = std::fs::read(&set.trace_file).unwrap_or_default();
    let sha: String = ring::digest::digest(&ring::digest::SHA256, &bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let status = if cancelled { "cancelled" } else { "completed" };
    let summary = json!({
        "schema_version": "1.0",
        "status": status,
        "scenario": s,
        "concurrency": parallel,
        "duration": duration,
        "seed": cfg.gen.seed.unwrap_or(crate::config::scenario::DEFAULT_SEED),
        "aiperf_version": null,
        "aiperf_schema_version": null,
        "dataset": {
            "source": "local",
            "dataset_id": cfg.dataset.path.clone().unwrap_or_default(),
            "revision": null,
            "trace_file": set.trace_file.display().to_string(),
            "sha256": sha,
            "verified": false,
        },
        // evalscope: never valid in smoke mode, when not completed, or when the
        // replay itself was not a valid submission.
        "submission_valid": false,
        "aiperf_submission_valid": false,
        "aiperf_submission_invalid_reasons": reasons,
        "mirror_revalidated": false,
        "metrics": metrics,
        "derived_metrics": derived(s, &metrics_value(&metrics)),
        "error_summary": summary::error_summary(&rows),
        // AIPerf's `branch_stats` (not a metric block: it has no unit).
        "branch_stats": {
            "children_spawned": stats.children_spawned,
            "children_completed": stats.children_completed,
            "children_errored": stats.children_errored,
            "children_truncated": stats.children_truncated,
            "children_delayed": stats.children_delayed,
            "parents_suspended": stats.parents_suspended,
            "parents_resumed": stats.parents_resumed,
            "parents_failed_due_to_child_error": 0,
            "joins_suppressed": stats.joins_suppressed,
        },
        // How the lanes ran: tree plays, the warmup and each lane's first t*.
        "replay": {
            "plays_started": stats.plays_started,
            "plays_completed": stats.plays_completed,
            "warmup_requests": stats.warmup_requests,
            "subagents_peak": stats.subagents_peak,
            "trajectory_start_ratios": [s.start_ratios.0, s.start_ratios.1],
            "first_trees": stats.t_star.iter().map(|(t, ms)| json!({
                "trace": set.plan.conversations[set.plan.roots[*t]].id,
                "t_star_ms": ms,
            })).collect::<Vec<_>>(),
            "dropped_subagents": set.plan.dropped_subagents.len(),
        },
        "raw_artifact_dir": dir.display().to_string(),
        "raw_summary_file": dir.join("benchmark_summary.json").display().to_string(),
        "command": [],
    });
    let tracked = summary::tracked(&summary);
    let text = serde_json::to_string_pretty(&summary)?;
    let file = dir.join("agentx_summary.json");
    std::fs::write(&file, &text).with_context(|| format!("cannot write {}", file.display()))?;
    if let Some(variant) = dir.parent() {
        let sweep = variant.join("agentx_sweep_summary.json");
        let mut all: Map<String, Value> = std::fs::read_to_string(&sweep)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        all.insert(format!("parallel_{parallel}"), summary);
        std::fs::write(&sweep, serde_json::to_string_pretty(&all)?)
            .with_context(|| format!("cannot write {}", sweep.display()))?;
    }
    Ok(tracked)
}

fn metrics_value(m: &Map<String, Value>) -> Value {
    Value::Object(m.clone())
}

/// evalscope's per-GPU figures when the scenario names `num_gpus`.
fn derived(s: &Scenario, metrics: &Value) -> Value {
    let Some(gpus) = s.num_gpus.filter(|g| *g > 0) else {
        return json!({});
    };
    let per = |k: &str| {
        metrics[k]["avg"]
            .as_f64()
            .map(|v| json!({"unit": format!("{}/gpu", metrics[k]["unit"].as_str().unwrap_or("")), "avg": v / gpus as f64}))
    };
    let mut m = Map::new();
    if let Some(v) = per("request_throughput") {
        m.insert("request_throughput_per_gpu".into(), v);
    }
    if let Some(v) = per("output_token_throughput") {
        m.insert("output_token_throughput_per_gpu".into(), v);
    }
    Value::Object(m)
}
