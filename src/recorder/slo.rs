//! A run's objectives on `/metrics`: one gauge per declared objective (the alert
//! rules compare each run against its own), the good-request counter the goodput
//! budget burns against, and the trace id of the latest request that missed each
//! objective (the alert's link back to a SQLite row and a trace).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use crate::record::RequestRecord;
use crate::slo::Objectives;
use crate::telemetry::{self as t, RunLabels};

type FGauge = Family<RunLabels, Gauge<f64, AtomicU64>>;

/// The latest request that missed an objective: the run's labels, the objective
/// (`ttft`, `tpot`, `e2el`, `error`, `goodput`) and its trace id.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BreachLabels {
    pub run: String,
    pub model: String,
    pub api: String,
    pub stage: String,
    pub objective: String,
    pub trace_id: String,
}

pub struct SloMetrics {
    objectives: Objectives,
    ttft: FGauge,
    tpot: FGauge,
    e2el: FGauge,
    error_ratio: FGauge,
    goodput_ratio: FGauge,
    good: Family<RunLabels, Counter>,
    breach: Family<BreachLabels, Gauge<f64, AtomicU64>>,
    /// The breach series exported now, one per (stage, objective): replaced by the
    /// next breach, so each objective keeps one series per stage.
    current: Mutex<Vec<BreachLabels>>,
}

impl SloMetrics {
    pub fn new(objectives: Objectives, r: &mut Registry) -> SloMetrics {
        let m = SloMetrics {
            objectives,
            ttft: FGauge::default(),
            tpot: FGauge::default(),
            e2el: FGauge::default(),
            error_ratio: FGauge::default(),
            goodput_ratio: FGauge::default(),
            good: Family::default(),
            breach: Family::default(),
            current: Mutex::new(Vec::new()),
        };
        let s = Unit::Seconds;
        r.register_with_unit(
            t::OBJECTIVE_TTFT,
            "The run's TTFT objective: the p99 it may reach (--goodput ttft:, --sla-params p99_ttft)",
            s.clone(),
            m.ttft.clone(),
        );
        r.register_with_unit(
            t::OBJECTIVE_TPOT,
            "The run's TPOT objective: the p99 it may reach (--goodput tpot:, --sla-params p99_tpot)",
            s.clone(),
            m.tpot.clone(),
        );
        r.register_with_unit(
            t::OBJECTIVE_LATENCY,
            "The run's latency objective: the p99 it may reach (--goodput e2el:, --sla-params p99_latency)",
            s.clone(),
            m.e2el.clone(),
        );
        r.register(
            t::OBJECTIVE_ERROR_RATIO,
            "The run's error budget: the share of requests allowed to fail (--slo error_rate:)",
            m.error_ratio.clone(),
        );
        r.register(
            t::OBJECTIVE_GOODPUT_RATIO,
            "The share of requests that must meet every --goodput bound (--slo goodput:)",
            m.goodput_ratio.clone(),
        );
        r.register(
            t::GOOD_REQUESTS,
            "Finished requests meeting every --goodput bound (vLLM's goodput)",
            m.good.clone(),
        );
        r.register_with_unit(
            t::OBJECTIVE_BREACH,
            "Unix time of the latest request that missed an objective, by objective, with its trace id (the SQLite row's trace_id)",
            s,
            m.breach.clone(),
        );
        m
    }

    /// Exports the stage's objectives (only those declared: a run with none keeps
    /// the alert rules' literal defaults) and creates its good counter at 0.
    pub fn start_stage(&self, l: &RunLabels) {
        let o = &self.objectives;
        let set = |f: &FGauge, v: Option<f64>| {
            if let Some(v) = v {
                f.get_or_create(l).set(v);
            }
        };
        let s = |ms: Option<f64>| ms.map(|x| x / 1000.0);
        set(&self.ttft, s(o.p99.ttft_ms));
        set(&self.tpot, s(o.p99.tpot_ms));
        set(&self.e2el, s(o.p99.e2el_ms));
        set(&self.error_ratio, o.error_ratio);
        set(&self.goodput_ratio, o.goodput_ratio);
        if o.good.is_some() {
            let _ = self.good.get_or_create(l);
        }
    }

    /// Counts a good request; remembers the request as the latest breach of each
    /// objective it missed.
    pub fn observe(&self, r: &RequestRecord, l: &RunLabels) {
        let o = &self.objectives;
        let mut missed = [None; 5];
        if let Some(g) = &o.good {
            if g.meets(r) {
                self.good.get_or_create(l).inc();
            } else {
                missed[0] = Some("goodput");
            }
        }
        if !r.success {
            missed[1] = Some("error");
        }
        missed[2..].copy_from_slice(&o.p99.over(r));
        let Some(trace) = r.trace else {
            return;
        };
        if missed.iter().all(Option::is_none) {
            return;
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let trace_id = trace.trace_id_hex();
        let Ok(mut cur) = self.current.lock() else {
            return;
        };
        for objective in missed.into_iter().flatten() {
            let b = BreachLabels {
                run: l.run.clone(),
                model: l.model.clone(),
                api: l.api.clone(),
                stage: l.stage.clone(),
                objective: objective.into(),
                trace_id: trace_id.clone(),
            };
            let same = |c: &BreachLabels| {
                c.run == b.run && c.stage == b.stage && c.objective == b.objective
            };
            if let Some(i) = cur.iter().position(same) {
                let old = cur.swap_remove(i);
                self.breach.remove(&old);
            }
            self.breach.get_or_create(&b).set(now);
            cur.push(b);
        }
    }
}
