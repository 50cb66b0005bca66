//! What a sweep point sends: request bodies (built lazily from the dataset's
//! prompts, or a trace's rows with their arrival times), or conversations.

use anyhow::Result;
use std::sync::Arc;

use super::ctx::Ctx;
use super::stop::BadInput;
use crate::config::SweepPoint;
use crate::dataset::{self, Prompt};
use crate::scheduler;
use crate::telemetry::log;

/// Builds request bodies lazily, so memory does not grow with --number.
pub(crate) struct Bodies {
    prompts: Vec<Prompt>,
    /// Pre-serialised bodies when every request for a prompt is identical.
    fixed: Option<Vec<bytes::Bytes>>,
    rng: fastrand::Rng,
    /// A replayed trace's arrival offsets (seconds from its first row).
    pub(crate) arrivals: Option<Vec<f64>>,
    /// A replayed trace's per-row headers (`name: value\r\n` lines) and ids.
    pub(crate) extras: Vec<(Option<Arc<str>>, Option<String>)>,
    /// A shard's requests: local request i is global request `order[i]` (None: all).
    order: Option<Vec<u64>>,
    /// A shard's schedule origins: local requests from `.0` on are measured and their
    /// offsets count from the global run's first measured arrival `.2`; warmup ones
    /// from its first arrival `.1`. Every shard then keeps the same global clock.
    origins: Option<(u64, f64, f64)>,
}

impl Bodies {
    /// A body that cannot be built (a custom API template error) stops the run here,
    /// before any request: custom bodies are all rendered once.
    fn new(ctx: &Ctx, prompts: Vec<Prompt>, seed: u64) -> Result<Bodies> {
        let max = dataset::max_request_bytes();
        if let Some((i, n)) = prompts
            .iter()
            .map(dataset::prompt_bytes)
            .enumerate()
            .find(|(_, n)| *n > max)
        {
            return Err(BadInput(format!(
                "--max-request-mib: prompt {} of --dataset {} is {:.1} MiB, over the {} MiB limit; raise --max-request-mib or drop the prompt",
                i + 1,
                ctx.cfg.dataset.name,
                n as f64 / (1 << 20) as f64,
                max >> 20
            ))
            .into());
        }
        let mut rng = fastrand::Rng::with_seed(seed);
        let p = &ctx.cfg.gen;
        // --prompt: evalscope builds the body once and re-sends it (a --max-tokens
        // range is sampled once too).
        let keep = p.max_tokens.0 == p.max_tokens.1 || ctx.cfg.dataset.prompt.is_some();
        let decision = matches!(ctx.cfg.protocol, crate::protocol::Protocol::Decision(_));
        let check = decision || matches!(ctx.cfg.protocol, crate::protocol::Protocol::Custom(_));
        let mut built = Vec::new();
        if keep || check {
            for (i, pr) in prompts.iter().enumerate() {
                let b = match ctx.cfg.build_body(pr, p, &mut rng) {
                    // A decision body evalscope would refuse: the run's input is wrong.
                    Err(e) if decision => {
                        return Err(BadInput(format!(
                            "--dataset {} ({}): item {}: {e:#}",
                            ctx.cfg.dataset.name,
                            ctx.cfg
                                .dataset
                                .path
                                .as_deref()
                                .unwrap_or("no --dataset-path"),
                            i + 1
                        ))
                        .into())
                    }
                    r => r?,
                };
                if keep {
                    built.push(bytes::Bytes::from(serde_json::Value::Object(b).to_string()));
                }
            }
        }
        Ok(Bodies {
            prompts,
            fixed: keep.then_some(built),
            rng,
            arrivals: None,
            extras: Vec::new(),
            order: None,
            origins: None,
        })
    }

    /// The global request behind local request `i`.
    fn global(&self, i: u64) -> u64 {
        match &self.order {
            Some(o) => o.get(i as usize).copied().unwrap_or(i),
            None => i,
        }
    }

    /// A replayed trace row's own headers and request id.
    pub(crate) fn extra(&self, i: u64) -> (Option<Arc<str>>, Option<String>) {
        self.extras
            .get(self.global(i) as usize)
            .cloned()
            .unwrap_or_default()
    }
    /// When `count` requests from body `offset` are released: a trace's own offsets
    /// (rebased on its first row), else the sweep point's rate and cap.
    pub(crate) fn shape(
        &self,
        point: &SweepPoint,
        count: u64,
        offset: u64,
        duration: Option<f64>,
        seed: u64,
    ) -> scheduler::LoadShape {
        match &self.arrivals {
            Some(a) => {
                let part: Vec<f64> = (offset..offset + count)
                    .map(|i| a[self.global(i) as usize])
                    .collect();
                let t0 = match self.origins {
                    Some((measured_from, _, measured)) if offset >= measured_from => measured,
                    Some((_, warm, _)) => warm,
                    None => part.first().copied().unwrap_or(0.0),
                };
                scheduler::LoadShape::from_offsets(
                    point,
                    part.iter().map(|t| t - t0).collect(),
                    duration,
                )
            }
            None => scheduler::LoadShape::new(
                point,
                count,
                seed ^ offset ^ (point.number << 20),
                duration,
            ),
        }
    }

    pub(crate) fn get(&mut self, i: u64, ctx: &Ctx) -> bytes::Bytes {
        let k = (self.global(i) % self.prompts.len() as u64) as usize;
        match &self.fixed {
            Some(f) => f[k].clone(),
            None => match ctx
                .cfg
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

/// What a run sends: single requests, or conversations turn by turn.
pub(crate) enum Work {
    Requests(Bodies),
    Sessions(Arc<Vec<dataset::multi_turn::Conversation>>),
    /// `--scenario agentx`: a Weka set replayed as session trees.
    Agentic(Arc<super::agentx::AgentSet>),
}

impl Work {
    /// The first `count` prompts or conversations of run `index` (warmup first).
    pub(crate) fn load(ctx: &Ctx, count: u64, index: u64) -> Result<Work> {
        let cfg = &ctx.cfg;
        let bad = |e: anyhow::Error| BadInput(format!("{e:#}"));
        if let Some(s) = &cfg.agentx {
            return Ok(Work::Agentic(Arc::new(
                super::agentx::load(ctx, s).map_err(bad)?,
            )));
        }
        Ok(match (cfg.turns, cfg.dataset.kind) {
            (Some(turns), dataset::DatasetKind::MultiTurn(kind)) => {
                // swe_smith starts at the offset (rotated), which advances per run.
                let mut ds = cfg.dataset.clone();
                if kind == dataset::config::MultiTurnKind::SweSmith {
                    ds.dataset_offset = ctx.dataset_offset();
                }
                Work::Sessions(Arc::new(
                    dataset::multi_turn::load(kind, &ds, turns, count, index).map_err(bad)?,
                ))
            }
            _ => match cfg.trace {
                Some(t) => {
                    let speed = t.speedup * cfg.dataset.args.speed.unwrap_or(1.0);
                    let trace = match cfg.dataset.kind {
                        dataset::DatasetKind::WorkloadTrace => {
                            dataset::trace::workload(&cfg.dataset, speed, count)
                        }
                        _ => dataset::trace::mooncake(
                            &cfg.dataset,
                            cfg.chat,
                            t.block_size,
                            speed,
                            count,
                        ),
                    }
                    .map_err(bad)?;
                    let mut b = Bodies::new(ctx, trace.prompts, cfg.dataset.seed ^ index)?;
                    b.arrivals = Some(trace.offsets);
                    b.extras = trace
                        .extras
                        .into_iter()
                        .map(|e| (row_headers(&cfg.client.headers, &e.headers), e.request_id))
                        .collect();
                    Work::Requests(b)
                }
                None => {
                    let prompts =
                        dataset::load(&cfg.dataset, cfg.chat, count, index).map_err(bad)?;
                    Work::Requests(Bodies::new(ctx, prompts, cfg.dataset.seed ^ index)?)
                }
            },
        })
    }

    /// Warmup requests: a trace's first rows, at most all of them.
    pub(crate) fn warmup(&self, warmup: u64) -> u64 {
        match self {
            Work::Requests(b) if b.arrivals.is_some() => warmup.min(b.prompts.len() as u64),
            _ => warmup,
        }
    }

    /// Measured requests of a run of `number` after `warmup`: a trace replays at
    /// most its rows.
    pub(crate) fn measured(&self, number: u64, warmup: u64) -> u64 {
        match self {
            Work::Requests(b) if b.arrivals.is_some() => {
                (b.prompts.len() as u64).saturating_sub(warmup).min(number)
            }
            _ => number,
        }
    }
}

/// A shard's part of a run: how many of its requests (or conversations) are warmup
/// and how many measured.
pub(crate) struct ShardPart {
    pub warmup: u64,
    pub measured: u64,
}

impl Work {
    /// Keeps this shard's part of the global run's `warmup + measured` requests:
    /// contiguous slices when unpaced; with a schedule (`--rate`, a trace) the
    /// global schedule's arrivals, thinned by a seeded random subset (see
    /// scheduler::shard). `seed` is the one the unsharded run's Poisson schedule uses.
    pub(crate) fn shard(
        &mut self,
        shard: scheduler::Shard,
        point: &SweepPoint,
        warmup: u64,
        measured: u64,
        seed: u64,
    ) -> ShardPart {
        let warm: Vec<u64> = shard.owned(warmup, None);
        match self {
            Work::Agentic(_) => ShardPart {
                warmup: 0,
                measured,
            },
            Work::Sessions(convs) => {
                let meas = shard.share(measured);
                let keep: Vec<_> = warm
                    .iter()
                    .copied()
                    .chain(meas.clone().map(|k| k + warmup))
                    .filter_map(|k| convs.get(k as usize).cloned())
                    .collect();
                *convs = Arc::new(keep);
                ShardPart {
                    warmup: warm.len() as u64,
                    measured: meas.end - meas.start,
                }
            }
            Work::Requests(b) => {
                if b.arrivals.is_none() && point.rate > 0.0 {
                    // The unsharded run's two schedules (warmup, then measured), as
                    // Bodies::shape would lay them out.
                    let s = |n: u64, offset: u64| {
                        scheduler::poisson_schedule(
                            n as usize,
                            point.rate,
                            seed ^ offset ^ (point.number << 20),
                        )
                    };
                    let mut a = s(warmup, 0);
                    a.extend(s(measured, warmup));
                    b.arrivals = Some(a);
                    b.origins = Some((0, 0.0, 0.0));
                } else if let Some(a) = &b.arrivals {
                    let at = |k: u64| a.get(k as usize).copied().unwrap_or(0.0);
                    b.origins = Some((0, at(0), at(warmup)));
                }
                let paced = b.arrivals.is_some();
                let meas = shard.owned(measured, paced.then_some(seed ^ 0x5348_4152_4400));
                if let Some(o) = &mut b.origins {
                    o.0 = warm.len() as u64;
                }
                let part = ShardPart {
                    warmup: warm.len() as u64,
                    measured: meas.len() as u64,
                };
                b.order = Some(
                    warm.into_iter()
                        .chain(meas.into_iter().map(|k| k + warmup))
                        .collect(),
                );
                part
            }
        }
    }
}

/// A trace row's own headers as request header lines: only names the run does not
/// already send, hop-by-hop headers left out (evalscope's workload_trace), and never a
/// line break inside a header.
fn row_headers(run: &[(String, String)], headers: &[(String, String)]) -> Option<Arc<str>> {
    const HOP: [&str; 9] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "te",
        "trailer",
        "upgrade",
        "host",
        "content-length",
    ];
    let mut s = String::new();
    for (k, v) in headers {
        let lk = k.to_ascii_lowercase();
        let taken = run.iter().any(|(h, _)| h.eq_ignore_ascii_case(k));
        let unsafe_text = |t: &str| t.contains(['\r', '\n', ':']) || t.is_empty();
        if taken || HOP.contains(&lk.as_str()) || unsafe_text(k) || v.contains(['\r', '\n']) {
            continue;
        }
        s.push_str(&format!("{k}: {v}\r\n"));
    }
    (!s.is_empty()).then(|| Arc::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_headers_fill_only_what_the_run_does_not_send() {
        let run = vec![("Authorization".to_string(), "x".to_string())];
        let row: Vec<(String, String)> = [
            ("authorization", "row"),
            ("X-Tenant", "a"),
            ("Connection", "close"),
            ("X-Bad", "a\r\nInjected: 1"),
            ("X-Trace", "t1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            row_headers(&run, &row).as_deref(),
            Some("X-Tenant: a\r\nX-Trace: t1\r\n")
        );
        assert_eq!(row_headers(&run, &[]), None);
    }
}
