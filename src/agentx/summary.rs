//! `agentx_summary.json`: evalscope 1.14.1's AgentX summary shape, its `metrics`
//! named and shaped as AIPerf 0.12.0 names them (`{unit, avg, min, max, std,
//! p1 … p99, count, sum}`, numpy's linear percentiles, population std), computed
//! from the run's rows.

use serde_json::{json, Map, Value};

use super::plan::{theoretical_hit, Plan};

/// One stored request, as the summary needs it.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// `<conversation>#<play>`.
    pub session: String,
    /// 1-based.
    pub turn: u32,
    pub success: bool,
    pub latency: Option<f64>,
    pub ttft: Option<f64>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    pub cached_tokens: Option<u64>,
    pub intended: f64,
    pub send: f64,
    pub end: f64,
    pub failure_kind: Option<String>,
    pub error: Option<String>,
}

const PCTS: [(&str, f64); 9] = [
    ("p1", 1.0),
    ("p5", 5.0),
    ("p10", 10.0),
    ("p25", 25.0),
    ("p50", 50.0),
    ("p75", 75.0),
    ("p90", 90.0),
    ("p95", 95.0),
    ("p99", 99.0),
];

/// numpy's default (linear) percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let pos = q / 100.0 * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// An AIPerf metric block of these values (None when there are none).
pub fn block(unit: &str, values: &[f64]) -> Option<Value> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let sum: f64 = v.iter().sum();
    let avg = sum / n;
    let std = (v.iter().map(|x| (x - avg) * (x - avg)).sum::<f64>() / n).sqrt();
    let mut m = Map::new();
    m.insert("unit".into(), unit.into());
    m.insert("avg".into(), avg.into());
    m.insert("min".into(), v[0].into());
    m.insert("max".into(), v[v.len() - 1].into());
    m.insert("std".into(), std.into());
    for (k, q) in PCTS {
        m.insert(k.into(), percentile(&v, q).into());
    }
    m.insert("count".into(), v.len().into());
    m.insert("sum".into(), sum.into());
    Some(Value::Object(m))
}

fn scalar(unit: &str, value: f64) -> Value {
    json!({"unit": unit, "avg": value})
}

/// AIPerf's context-overflow test of an error (`common/scenario/context_overflow.py`).
pub fn is_context_overflow(error: &str) -> bool {
    let e = error.to_lowercase();
    [
        "context length",
        "maximum context",
        "context_length_exceeded",
        "prompt is too long",
    ]
    .iter()
    .any(|k| e.contains(k))
}

/// The metrics of one run.
pub fn metrics(rows: &[Row], plan: &Plan, duration: f64) -> (Map<String, Value>, usize) {
    let ok: Vec<&Row> = rows.iter().filter(|r| r.success).collect();
    let ms = |f: &dyn Fn(&Row) -> Option<f64>, set: &[&Row]| -> Vec<f64> {
        set.iter()
            .filter_map(|r| f(r))
            .map(|s| s * 1000.0)
            .collect()
    };
    let all: Vec<&Row> = rows.iter().collect();
    let tokens = |f: &dyn Fn(&Row) -> Option<u64>| -> Vec<f64> {
        ok.iter().filter_map(|r| f(r)).map(|t| t as f64).collect()
    };
    let itl: Vec<f64> = ok
        .iter()
        .filter_map(|r| match (r.latency, r.ttft, r.completion_tokens) {
            (Some(l), Some(t), Some(o)) if o > 1 => Some((l - t) / (o - 1) as f64 * 1000.0),
            _ => None,
        })
        .collect();
    let overflow = rows
        .iter()
        .filter(|r| !r.success && r.error.as_deref().is_some_and(is_context_overflow))
        .count();
    let mut m = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    put("request_count", Some(scalar("requests", ok.len() as f64)));
    put(
        "error_request_count",
        Some(scalar("requests", (rows.len() - ok.len()) as f64)),
    );
    put("request_latency", block("ms", &ms(&|r| r.latency, &ok)));
    put("time_to_first_token", block("ms", &ms(&|r| r.ttft, &ok)));
    put("inter_token_latency", block("ms", &itl));
    put(
        "input_sequence_length",
        block("tokens", &tokens(&|r| r.prompt_tokens)),
    );
    put(
        "output_sequence_length",
        block("tokens", &tokens(&|r| r.completion_tokens)),
    );
    // Coordinated-omission aware, errors included (AIPerf `derived_latency.py`).
    put(
        "effective_latency",
        block("ms", &ms(&|r| Some(r.end - r.intended), &all)),
    );
    put(
        "credit_to_start_latency",
        block("ms", &ms(&|r| Some(r.send - r.intended), &all)),
    );
    let isl: f64 = tokens(&|r| r.prompt_tokens).iter().sum();
    let osl: f64 = tokens(&|r| r.completion_tokens).iter().sum();
    if duration > 0.0 {
        put(
            "request_throughput",
            Some(scalar("requests/sec", ok.len() as f64 / duration)),
        );
        put(
            "output_token_throughput",
            Some(scalar("tokens/sec", osl / duration)),
        );
    }
    put("total_isl", Some(scalar("tokens", isl)));
    put("total_osl", Some(scalar("tokens", osl)));
    cache_metrics(&ok, plan, &mut m);
    m.insert(
        "context_overflow_count".into(),
        scalar("requests", overflow as f64),
    );
    (m, overflow)
}

/// The theoretical hit over the successful (conversation, turn) records, and the
/// server-reported cache reads beside it.
fn cache_metrics(ok: &[&Row], plan: &Plan, m: &mut Map<String, Value>) {
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            m.insert(k.into(), v);
        }
    };
    let by_id: std::collections::HashMap<&str, usize> = plan
        .conversations
        .iter()
        .enumerate()
        .map(|(i, c)| (c.id.as_str(), i))
        .collect();
    let turns = ok.iter().filter_map(|r| {
        let conv = r
            .session
            .rsplit_once('#')
            .map_or(r.session.as_str(), |(c, _)| c);
        let c = by_id.get(conv)?;
        plan.conversations[*c]
            .turns
            .get((r.turn as usize).checked_sub(1)?)
    });
    if let Some((pct, hit, total)) = theoretical_hit(turns) {
        put(
            "theoretical_prefix_cache_hit",
            Some(json!({"unit": "%", "avg": pct, "count": total, "sum": hit})),
        );
    }
    let cached: Vec<&Row> = ok
        .iter()
        .copied()
        .filter(|r| r.cached_tokens.is_some())
        .collect();
    if !cached.is_empty() {
        let c: u64 = cached.iter().filter_map(|r| r.cached_tokens).sum();
        let p: u64 = cached.iter().filter_map(|r| r.prompt_tokens).sum();
        put(
            "usage_prompt_cache_read_tokens",
            block(
                "tokens",
                &cached
                    .iter()
                    .filter_map(|r| r.cached_tokens)
                    .map(|x| x as f64)
                    .collect::<Vec<_>>(),
            ),
        );
        if p > 0 {
            put(
                "overall_usage_prompt_cache_read_pct",
                Some(scalar("%", 100.0 * c as f64 / p as f64)),
            );
        }
    }
}

/// Failed rows grouped by kind and message (AIPerf's `error_summary`).
pub fn error_summary(rows: &[Row]) -> Vec<Value> {
    let mut groups: Vec<((String, String), u64)> = Vec::new();
    for r in rows.iter().filter(|r| !r.success) {
        let key = (
            r.failure_kind.clone().unwrap_or_default(),
            r.error.clone().unwrap_or_default(),
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, n)) => *n += 1,
            None => groups.push((key, 1)),
        }
    }
    groups
        .into_iter()
        .map(|((kind, message), count)| {
            json!({"error_details": {"type": kind, "message": message, "cause_chain": []},
                   "count": count})
        })
        .collect()
}

/// What trackers chart per step, from an `agentx_summary.json`: the cache ceiling
/// against what the server reported, the lanes and subagents, and the tree plays.
pub fn tracked(summary: &Value) -> Vec<(String, f64)> {
    let m = &summary["metrics"];
    [
        (
            "AgentX Theoretical Prefix Cache Hit (%)",
            m["theoretical_prefix_cache_hit"]["avg"].as_f64(),
        ),
        (
            "AgentX Server Cache Read (%)",
            m["overall_usage_prompt_cache_read_pct"]["avg"].as_f64(),
        ),
        (
            "AgentX Server Prefix Cache Hit (%)",
            m["server_prefix_cache_hit"]["avg"].as_f64(),
        ),
        (
            "AgentX Context Overflows",
            m["context_overflow_count"]["avg"].as_f64(),
        ),
        ("AgentX Lanes", summary["concurrency"].as_f64()),
        (
            "AgentX Subagents Peak",
            summary["replay"]["subagents_peak"].as_f64(),
        ),
        (
            "AgentX Children Spawned",
            summary["branch_stats"]["children_spawned"].as_f64(),
        ),
        (
            "AgentX Plays Completed",
            summary["replay"]["plays_completed"].as_f64(),
        ),
    ]
    .into_iter()
    .filter_map(|(k, x)| x.map(|x| (k.to_string(), x)))
    .collect()
}

/// `tracked` of a run directory's `agentx_summary.json` (empty without one).
pub fn tracked_in(dir: &std::path::Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(dir.join("agentx_summary.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .map(|v| tracked(&v))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_use_numpy_s_linear_percentiles() {
        let b = block("ms", &[4.0, 1.0, 3.0, 2.0]).unwrap();
        assert_eq!(b["avg"], 2.5);
        assert_eq!(b["p50"], 2.5);
        // numpy.percentile([1,2,3,4], 90) = 3.7
        assert!((b["p90"].as_f64().unwrap() - 3.7).abs() < 1e-12);
        assert!((b["std"].as_f64().unwrap() - 1.118_033_988_749_895).abs() < 1e-12);
        assert_eq!(
            (b["count"].as_u64(), b["sum"].as_f64()),
            (Some(4), Some(10.0))
        );
        assert!(block("ms", &[]).is_none());
        assert!(is_context_overflow(
            "This model's Maximum Context length is 2048 tokens"
        ));
        assert!(!is_context_overflow("overloaded"));
    }
}
