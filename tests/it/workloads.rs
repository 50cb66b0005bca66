//! Workloads: multi-turn sessions, trace replay, shared prefixes and PD metrics, each
//! checked against the stored rows and the simulator's own prefix-cache counters.

use crate::common::{self, Bench};
use perfscope::sim::{SimConfig, SimHandle};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

/// The simulator's prefix-cache counters: (hit tokens, queried tokens).
fn cache_counters(sim: &SimHandle) -> (u64, u64) {
    let m = &sim.sim.server_metrics;
    let labels = perfscope::sim::metrics::ServerLabels {
        model_name: "m".into(),
        engine: "0".into(),
    };
    (
        m.prefix_cache_hits.get_or_create(&labels).get(),
        m.prefix_cache_queries.get_or_create(&labels).get(),
    )
}

/// `round(x, dp)` as the summary writes it, compared with a margin for the last digit.
fn near(summary: &Value, key: &str, want: f64, dp: i32) {
    let got = summary[key]
        .as_f64()
        .unwrap_or_else(|| panic!("{key} missing: {summary}"));
    let unit = 10f64.powi(-dp);
    assert!(
        (got - want).abs() <= unit * 0.5 + 1e-9,
        "{key}: {got} vs recomputed {want}"
    );
}

/// One stored turn.
struct Row {
    session: String,
    turn: i64,
    last: bool,
    ttft: f64,
    prompt: i64,
    completion: i64,
    cached: i64,
    request: Value,
}

fn turns(conn: &rusqlite::Connection) -> Vec<Row> {
    let mut st = conn
        .prepare(
            "SELECT session_id, turn, is_last_turn, first_chunk_latency, prompt_tokens,
                    completion_tokens, cached_tokens, request
             FROM result WHERE success=1 ORDER BY session_id, turn",
        )
        .unwrap();
    st.query_map([], |r| {
        Ok(Row {
            session: r.get(0)?,
            turn: r.get(1)?,
            last: r.get::<_, i64>(2)? == 1,
            ttft: r.get(3)?,
            prompt: r.get(4)?,
            completion: r.get(5)?,
            cached: r.get(6)?,
            request: serde_json::from_str(&r.get::<_, String>(7)?).unwrap(),
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn mean(v: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = v.collect();
    v.iter().sum::<f64>() / v.len() as f64
}

/// random_multi_turn against the simulator: every conversation's turns carry the
/// whole history (the simulator's real replies included), at most --parallel
/// conversations run at once, and the multi-turn keys, the cache hit rate and
/// trace_summary.json are recomputed from the rows and the simulator's counters.
#[test]
fn random_multi_turn_sessions_recomputed_from_rows() {
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(20.0),
        itl_ms: Some(2.0),
        ..SimConfig::default()
    })
    .parallel(3)
    .number(9)
    .max_tokens(6)
    .args(&[
        "--dataset",
        "random_multi_turn",
        "--multi-turn",
        "--min-turns",
        "2",
        "--max-turns",
        "4",
        "--min-prompt-length",
        "60",
        "--max-prompt-length",
        "120",
        "--prefix-length",
        "80",
    ])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let s = ran.summary();
    let rows = turns(&ran.db());
    let mut by_session: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for r in &rows {
        by_session.entry(&r.session).or_default().push(r);
    }
    assert_eq!(by_session.len(), 9, "one session per conversation");
    for (id, ts) in &by_session {
        assert!(id.starts_with("bench-"), "{id}");
        assert!((2..=4).contains(&ts.len()), "{id}: {} turns", ts.len());
        for (k, t) in ts.iter().enumerate() {
            assert_eq!(t.turn, k as i64 + 1);
            assert_eq!(t.last, k + 1 == ts.len(), "{id} turn {}", t.turn);
            let msgs = t.request["messages"].as_array().unwrap();
            assert_eq!(msgs.len(), 2 * k + 1, "turn {} carries the history", k + 1);
            if k > 0 {
                // The previous turn's messages, its real reply, then the new turn.
                let prev = ts[k - 1].request["messages"].as_array().unwrap();
                assert_eq!(&msgs[..prev.len()], prev.as_slice());
                let reply = &msgs[prev.len()];
                assert_eq!(reply["role"], "assistant");
                let words = reply["content"]
                    .as_str()
                    .unwrap()
                    .split_whitespace()
                    .count();
                assert_eq!(
                    words as i64,
                    ts[k - 1].completion,
                    "{id}: the reply as sent"
                );
            }
        }
    }
    near(
        &s,
        "Avg Turns/Request",
        mean(rows.iter().map(|r| r.turn as f64)),
        4,
    );
    let ttft = |first: bool| {
        mean(
            rows.iter()
                .filter(|r| (r.turn == 1) == first)
                .map(|r| r.ttft * 1000.0),
        )
    };
    near(&s, "Avg First-Turn TTFT (ms)", ttft(true), 2);
    near(&s, "Avg Subsequent-Turn TTFT (ms)", ttft(false), 2);
    assert!((19.0..40.0).contains(&ttft(false)), "{}", ttft(false));
    // The cache hit rate from each response's cached_tokens is the server's own.
    let cached: i64 = rows.iter().map(|r| r.cached).sum();
    let prompt: i64 = rows.iter().map(|r| r.prompt).sum();
    let (hits, queries) = cache_counters(ran.sim());
    assert_eq!((cached as u64, prompt as u64), (hits, queries));
    assert!(cached > 0, "later turns hit their history");
    near(
        &s,
        "KV Cache Hit Rate (%)",
        100.0 * cached as f64 / prompt as f64,
        4,
    );
    near(
        &s,
        "Server Prefix Cache Hit Rate (%)",
        100.0 * hits as f64 / queries as f64,
        2,
    );
    assert!(s["Measured Concurrency (peak)"].as_f64().unwrap() <= 3.0);
    assert_eq!(s["Total Requests"].as_u64().unwrap() as usize, rows.len());
    let traces = common::json(&ran.only_step().join("trace_summary.json"));
    assert_eq!(traces["n_traces"], 9);
    let conn = ran.db();
    let latency: f64 = conn
        .query_row(
            "SELECT AVG(d) FROM (SELECT MAX(completed_time) - MIN(start_time) AS d
             FROM result WHERE success=1 GROUP BY session_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let row = &traces["rows"][0];
    assert_eq!(row["metric"], "Latency (s)");
    assert!((row["mean"].as_f64().unwrap() - latency).abs() < 1e-9);
    let log = std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap();
    assert!(log.contains("── Multi-turn & Cache ──"), "{log}");
    // evalscope's multi-run summary: a Traces column, the multi-turn scalar rows and
    // the Per-Trace Metrics table.
    let text = std::fs::read_to_string(ran.outcome.dir.join("performance_summary.txt")).unwrap();
    for want in [
        "Traces",
        "Turns/Req",
        "Cache Hit (%)",
        "Subseq. TTFT",
        "Per-Trace Metrics",
        "TTFAT (s)",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// share_gpt_en_multi_turn and custom_multi_turn from small local files, and the
/// single-turn share_gpt_en: the turns sent are the files' user turns.
#[test]
fn multi_turn_datasets_from_local_files() {
    let files = tempfile::tempdir().unwrap();
    let share = write(
        files.path(),
        "common_en_70k.jsonl",
        "{\"conversation\":[{\"human\":\"What is a GPU?\",\"assistant\":\"A chip.\"},{\"human\":\"And a TPU?\",\"assistant\":\"Also.\"},{\"human\":\"Which is faster?\",\"assistant\":\"Depends.\"}]}\n\
         {\"conversation\":[{\"human\":\"Name a prime number.\",\"assistant\":\"7\"},{\"human\":\"Another one?\",\"assistant\":\"11\"}]}\n",
    );
    let ran = Bench::sim()
        .parallel(2)
        .number(2)
        .max_tokens(4)
        .args(&[
            "--dataset",
            "share_gpt_en_multi_turn",
            "--dataset-path",
            &share,
            "--multi-turn",
            "--max-turns",
            "2",
        ])
        .run();
    let rows = turns(&ran.db());
    let users: Vec<Vec<String>> = ["bench-0", "bench-1"]
        .iter()
        .map(|id| {
            let last = rows
                .iter()
                .filter(|r| r.session == *id)
                .max_by_key(|r| r.turn)
                .unwrap();
            last.request["messages"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|m| m["role"] == "user")
                .map(|m| m["content"].as_str().unwrap().to_string())
                .collect()
        })
        .collect();
    // --max-turns 2 truncates the first conversation; dataset replies never sent.
    assert_eq!(users[0], ["What is a GPU?", "And a TPU?"]);
    assert_eq!(users[1], ["Name a prime number.", "Another one?"]);
    assert!(rows
        .iter()
        .all(|r| !r.request.to_string().contains("A chip.")));

    let custom = write(
        files.path(),
        "c.jsonl",
        "[{\"role\":\"system\",\"content\":\"Be brief.\"},{\"role\":\"user\",\"content\":\"q1\"},{\"role\":\"assistant\",\"content\":\"dataset reply\"},{\"role\":\"user\",\"content\":\"q2\"}]\n",
    );
    let ran = Bench::sim()
        .parallel(1)
        .number(1)
        .max_tokens(3)
        .args(&[
            "--dataset",
            "custom_multi_turn",
            "--dataset-path",
            &custom,
            "--multi-turn",
        ])
        .run();
    let rows = turns(&ran.db());
    assert_eq!(rows.len(), 2);
    let msgs = rows[1].request["messages"].as_array().unwrap();
    let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["system", "user", "assistant", "user"]);
    assert_ne!(msgs[2]["content"], "dataset reply");

    let ran = Bench::sim()
        .parallel(1)
        .number(2)
        .max_tokens(3)
        .args(&["--dataset", "share_gpt_en", "--dataset-path", &share])
        .run();
    let bodies = common::bodies(&ran.only_step());
    assert_eq!(bodies.len(), 2);
    // The first conversation as one request, its trailing assistant message dropped.
    // (Two request tasks wait for the one slot; which sends first is up to the
    // scheduler, so the body is found by its content.)
    let first = bodies
        .iter()
        .filter_map(|b| b["messages"].as_array())
        .find(|m| m[0]["content"] == "What is a GPU?")
        .unwrap_or_else(|| panic!("{bodies:?}"));
    assert_eq!(first.len(), 5);
    assert_eq!(first[4]["content"], "Which is faster?");
}

/// One Mooncake row.
struct TraceRow {
    ts: f64,
    input: usize,
    hashes: Vec<u64>,
}

fn read_trace(path: &str) -> Vec<TraceRow> {
    let mut rows: Vec<TraceRow> = std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            TraceRow {
                ts: v["timestamp"].as_f64().unwrap(),
                input: v["input_length"].as_u64().unwrap() as usize,
                hashes: v["hash_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|h| h.as_u64().unwrap())
                    .collect(),
            }
        })
        .collect();
    rows.sort_by(|a, b| a.ts.total_cmp(&b.ts));
    rows
}

/// The stored requests' prompt texts in dispatch order.
fn prompts(conn: &rusqlite::Connection) -> Vec<String> {
    conn.prepare("SELECT request FROM result ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|b| {
            let v: Value = serde_json::from_str(&b.unwrap()).unwrap();
            v["messages"][0]["content"].as_str().unwrap().to_string()
        })
        .collect()
}

/// Every row's tokens split into `block`-token blocks must match its hash ids: the
/// same id, the same tokens; different ids, different tokens; the total within
/// `slack` of the row's input length.
fn check_blocks<T: PartialEq + Clone + std::fmt::Debug + std::hash::Hash + Eq>(
    rows: &[TraceRow],
    tokens: &[Vec<T>],
    block: usize,
    slack: usize,
    min_blocks: usize,
) {
    let mut seen: HashMap<u64, Vec<T>> = HashMap::new();
    let mut owner: HashMap<Vec<T>, u64> = HashMap::new();
    for (row, toks) in rows.iter().zip(tokens) {
        assert!(
            toks.len().abs_diff(row.input) <= slack,
            "{} tokens for input_length {}",
            toks.len(),
            row.input
        );
        for (j, h) in row.hashes.iter().enumerate() {
            let part = &toks[(j * block).min(toks.len())..((j + 1) * block).min(toks.len())];
            if part.len() < block {
                continue;
            }
            let b = part.to_vec();
            match seen.get(h) {
                Some(prev) => assert_eq!(prev, &b, "block {h} differs between rows"),
                None => {
                    assert!(
                        !owner.contains_key(&b),
                        "blocks {h} and {:?} are equal",
                        owner.get(&b)
                    );
                    owner.insert(b.clone(), *h);
                    seen.insert(*h, b);
                }
            }
        }
    }
    assert!(seen.len() >= min_blocks, "{} distinct blocks", seen.len());
}

/// The bundled Mooncake trace replayed against the simulator: requests leave on the
/// trace's own (sped-up) schedule, their prompts share exactly the blocks their
/// hash ids share, and the cache hit rate is the simulator's counters'.
#[test]
fn mooncake_trace_keeps_its_schedule_and_block_structure() {
    let trace = "examples/traces/synthetic_mooncake.jsonl";
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(5.0),
        itl_ms: Some(0.5),
        ..SimConfig::default()
    })
    .number(150)
    .args(&[
        "--dataset",
        "mooncake_trace",
        "--dataset-path",
        trace,
        "--open-loop",
        "--trace-speedup",
        "4",
    ])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let step = ran.step("rate_-1.0_number_150");
    let conn = common::db(&step);
    let rows = read_trace(trace);
    let rows = &rows[..150];
    let times: Vec<(f64, f64)> = common::rows(
        &conn,
        "SELECT intended_start, start_time FROM result ORDER BY seq",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    assert_eq!(times.len(), 150);
    let mut errors: Vec<f64> = Vec::new();
    for i in 1..times.len() {
        let want = (rows[i].ts - rows[i - 1].ts) / 1000.0 / 4.0;
        let intended = times[i].0 - times[i - 1].0;
        assert!(
            (intended - want).abs() < 1e-6,
            "row {i}: {intended} vs {want}"
        );
        errors.push(((times[i].1 - times[i - 1].1) - want).abs());
    }
    errors.sort_by(f64::total_cmp);
    let median = errors[errors.len() / 2];
    assert!(median < 0.001, "median inter-arrival error {median} s");
    // The prompts the simulator received, in its word tokens.
    let words: Vec<Vec<String>> = prompts(&conn)
        .iter()
        .map(|p| p.split_whitespace().map(str::to_string).collect())
        .collect();
    check_blocks(rows, &words, 512, 0, 50);
    let cached: i64 = conn
        .query_row(
            "SELECT SUM(cached_tokens) FROM result WHERE success=1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let prompt: i64 = conn
        .query_row(
            "SELECT SUM(prompt_tokens) FROM result WHERE success=1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!((cached as u64, prompt as u64), cache_counters(ran.sim()));
    assert!(
        cached > prompt / 4,
        "shared blocks hit: {cached} of {prompt}"
    );
    near(
        &common::json(&step.join("benchmark_summary.json")),
        "KV Cache Hit Rate (%)",
        100.0 * cached as f64 / prompt as f64,
        4,
    );
}

/// With --tokenizer-path the blocks are real tokens: the prompts the simulator
/// received re-encode to exactly the shared blocks, within one token of each row's
/// input length.
#[test]
fn mooncake_blocks_hold_in_real_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let tok_file = crate::tokenizer::make_tokenizer(dir.path(), false);
    let tok = tokenizers::Tokenizer::from_file(&tok_file).unwrap();
    let mut lines = String::new();
    let rows_spec: [(u64, &[u64], u64); 6] = [
        (0, &[1, 2, 10], 70),
        (40, &[1, 2, 3, 11], 100),
        (80, &[1, 12], 40),
        (120, &[4, 5, 13], 90),
        (160, &[4, 5, 6, 14], 110),
        (200, &[1, 2, 3, 15], 97),
    ];
    for (ts, hashes, input) in rows_spec {
        lines.push_str(&format!(
            "{{\"timestamp\": {ts}, \"input_length\": {input}, \"output_length\": 4, \"hash_ids\": {hashes:?}}}\n"
        ));
    }
    let trace = write(dir.path(), "t.jsonl", &lines);
    let tok_path = tok_file.to_string_lossy().into_owned();
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        tokenizer_path: Some(tok_path.clone()),
        ..SimConfig::default()
    })
    .number(6)
    .args(&[
        "--dataset",
        "mooncake_trace",
        "--dataset-path",
        &trace,
        "--open-loop",
        "--trace-block-size",
        "32",
        "--tokenizer-path",
        &tok_path,
    ])
    .run();
    let conn = common::db(&ran.only_step());
    let tokens: Vec<Vec<u32>> = prompts(&conn)
        .iter()
        .map(|p| tok.encode(p.as_str(), false).unwrap().get_ids().to_vec())
        .collect();
    check_blocks(&read_trace(&trace), &tokens, 32, 1, 6);
}

/// --enable-pd-metrics: the PD keys and columns recomputed from each row's gaps;
/// without the flag they are absent.
#[test]
fn pd_metrics_recomputed_from_each_rows_gaps() {
    let cfg = SimConfig {
        ttft_ms: Some(10.0),
        itl_ms: Some(3.0),
        ..SimConfig::default()
    };
    let ran = Bench::sim_with(cfg.clone())
        .parallel(2)
        .number(8)
        .max_tokens(6)
        .args(&["--enable-pd-metrics"])
        .run();
    let s = ran.summary();
    let lists: Vec<Vec<f64>> = ran
        .db()
        .prepare("SELECT inter_token_latencies FROM result WHERE success=1")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|t| serde_json::from_str(&t.unwrap()).unwrap())
        .collect();
    let handoff = mean(lists.iter().map(|l| l[0] * 1000.0));
    let steady = mean(
        lists
            .iter()
            .flat_map(|l| l[1..].to_vec())
            .map(|g| g * 1000.0),
    );
    let overhead = mean(lists.iter().map(|l| {
        let mut rest = l[1..].to_vec();
        rest.sort_by(f64::total_cmp);
        let n = rest.len();
        let med = if n % 2 == 1 {
            rest[n / 2]
        } else {
            (rest[n / 2 - 1] + rest[n / 2]) / 2.0
        };
        (l[0] - med).max(0.0) * 1000.0
    }));
    near(&s, "Avg PD Handoff Latency (ms)", handoff, 2);
    near(&s, "Avg Steady ITL (ms)", steady, 2);
    near(&s, "Avg PD Handoff Overhead (ms)", overhead, 2);
    assert!((2.5..6.0).contains(&steady), "{steady}");
    let pct = common::json(&ran.only_step().join("benchmark_percentile.json"));
    let keys: Vec<&str> = pct[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys[..7],
        [
            "Percentiles",
            "Latency (s)",
            "TTFT (ms)",
            "ITL (ms)",
            "Steady ITL (ms)",
            "PD Handoff Latency (ms)",
            "PD Handoff Overhead (ms)"
        ]
    );
    let plain = Bench::sim_with(cfg)
        .parallel(2)
        .number(4)
        .max_tokens(6)
        .run();
    let s = plain.summary();
    assert!(s.get("Avg Steady ITL (ms)").is_none(), "{s}");
    let pct = common::json(&plain.only_step().join("benchmark_percentile.json"));
    assert!(pct[0].get("Steady ITL (ms)").is_none());
}

/// --prefix-count 3: three distinct shared prefixes, request i gets prefix i mod 3.
#[test]
fn prefix_count_hands_out_prefixes_round_robin() {
    let ran = Bench::sim()
        .parallel(1)
        .number(9)
        .max_tokens(2)
        .args(&[
            "--dataset",
            "random",
            "--prefix-length",
            "40",
            "--prefix-count",
            "3",
            "--min-prompt-length",
            "10",
            "--max-prompt-length",
            "20",
        ])
        .run();
    let texts = prompts(&ran.db());
    let prefixes: Vec<&str> = texts.iter().map(|t| &t[..40]).collect();
    for (i, p) in prefixes.iter().enumerate() {
        assert_eq!(*p, prefixes[i % 3], "request {i}");
    }
    assert!(prefixes[0] != prefixes[1] && prefixes[1] != prefixes[2] && prefixes[0] != prefixes[2]);
}

/// evalscope's workload_trace: bodies replayed with their rows' request ids, the
/// model mapped and the recorded output length enforced.
#[test]
fn workload_trace_replays_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let trace = write(
        dir.path(),
        "w.jsonl",
        "{\"timestamp\": 0.05, \"request_id\": \"r2\", \"completion_tokens\": 5, \"body\": {\"model\": \"old\", \"messages\": [{\"role\": \"user\", \"content\": \"two\"}]}}\n\
         {\"timestamp\": \"1970-01-01T00:00:00Z\", \"request_id\": \"r1\", \"completion_tokens\": 3, \"body\": {\"model\": \"old\", \"messages\": [{\"role\": \"user\", \"content\": \"one\"}]}}\n",
    );
    let ran = Bench::sim()
        .number(10)
        .args(&[
            "--dataset",
            "workload_trace",
            "--dataset-path",
            &trace,
            "--open-loop",
            "--dataset-args",
            r#"{"match_output_length": true, "model_mapping": {"old": "m"}}"#,
        ])
        .run();
    let rows: Vec<(String, String, i64)> = common::rows(
        &ran.db(),
        "SELECT request_id, request, completion_tokens FROM result ORDER BY seq",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    assert_eq!(rows.len(), 2, "the trace's two rows, not --number");
    assert_eq!((rows[0].0.as_str(), rows[1].0.as_str()), ("r1", "r2"));
    let body: Value = serde_json::from_str(&rows[1].1).unwrap();
    assert_eq!(body["model"], "m");
    assert_eq!(body["max_tokens"], 5);
    assert_eq!(body["ignore_eos"], true);
    assert_eq!(rows[1].2, 5);
}

/// `--dataset-args` fitting with a tokenizer: long questions cut to the target,
/// short ones padded from `prefix_file` in a leading system message; `drop` leaves
/// out the short ones.
#[test]
fn dataset_args_fit_prompts_to_the_target_length() {
    let dir = tempfile::tempdir().unwrap();
    let tok_file = crate::tokenizer::make_tokenizer(dir.path(), false);
    let tok = tokenizers::Tokenizer::from_file(&tok_file).unwrap();
    let count = |t: &str| tok.encode(t, false).unwrap().get_ids().len();
    let corpus = write(
        dir.path(),
        "corpus.txt",
        "The quick brown fox jumps over the lazy dog, again and again.",
    );
    let tok_path = tok_file.to_string_lossy().into_owned();
    let lines = write(
        dir.path(),
        "lines.txt",
        "What is the capital of France?\nHi\nExplain how a transformer model computes attention over a long sequence of tokens, step by step, with an example.\nWhy?\n",
    );
    let args = format!(r#"{{"target_input_len": 12, "prefix_file": "{corpus}"}}"#);
    let ran = Bench::sim()
        .number(4)
        .max_tokens(2)
        .args(&[
            "--dataset",
            "line_by_line",
            "--dataset-path",
            &lines,
            "--tokenizer-path",
            &tok_path,
            "--dataset-args",
            &args,
        ])
        .run();
    let bodies = common::bodies(&ran.only_step());
    let (mut padded, mut cut) = (0, 0);
    for b in &bodies {
        let msgs = b["messages"].as_array().unwrap();
        let user = msgs.last().unwrap()["content"].as_str().unwrap();
        assert!(count(user) <= 12, "{user}");
        cut += usize::from(user.starts_with("Explain") && count(user) >= 11);
        if msgs.len() == 2 {
            padded += 1;
            assert_eq!(msgs[0]["role"], "system");
            let total = count(msgs[0]["content"].as_str().unwrap()) + count(user);
            assert!(total.abs_diff(12) <= 1, "{total}: {msgs:?}");
        }
    }
    assert!(padded >= 2, "short prompts are padded");
    assert_eq!(cut, 1, "the long prompt is cut to the target");
    let e = common::run_err(&[
        "--api",
        "sim",
        "--number",
        "3",
        "--dataset",
        "line_by_line",
        "--dataset-path",
        &lines,
        "--tokenizer-path",
        &tok_path,
        "--dataset-args",
        r#"{"target_input_len": 5000, "input_len_mode": "drop"}"#,
        "--outputs-dir",
        dir.path().join("out").to_str().unwrap(),
    ]);
    assert!(e.contains("no prompts left"), "{e}");
}

/// --tokenize-prompt: `random` sends exactly its target number of raw token ids to
/// /v1/completions; chat datasets send their messages through the chat template.
#[test]
fn tokenize_prompt_sends_token_ids() {
    let dir = tempfile::tempdir().unwrap();
    let tok_file = crate::tokenizer::make_tokenizer(dir.path(), false);
    let tok_path = tok_file.to_string_lossy().into_owned();
    let sim = SimConfig {
        zero_delay: true,
        tokenizer_path: Some(tok_path.clone()),
        ..SimConfig::default()
    };
    let ran = Bench::sim_with(sim.clone())
        .number(6)
        .max_tokens(2)
        .args(&[
            "--dataset",
            "random",
            "--min-prompt-length",
            "24",
            "--max-prompt-length",
            "24",
            "--tokenize-prompt",
            "--tokenizer-path",
            &tok_path,
        ])
        .run();
    let rows: Vec<(String, i64)> = common::rows(
        &ran.db(),
        "SELECT request, prompt_tokens FROM result",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    assert_eq!(rows.len(), 6);
    for (body, counted) in &rows {
        let v: Value = serde_json::from_str(body).unwrap();
        let ids = v["prompt"].as_array().expect("token ids");
        assert_eq!(v.as_object().unwrap().keys().next().unwrap(), "prompt");
        assert!(v.get("messages").is_none());
        assert!(ids.len().abs_diff(24) <= 1, "{}", ids.len());
        assert_eq!(
            *counted as usize,
            ids.len(),
            "the server counts the ids sent"
        );
    }
    let args: Value = common::json(&ran.only_step().join("benchmark_args.json"));
    assert!(
        args["url"].as_str().unwrap().ends_with("/v1/completions"),
        "{args}"
    );

    let tok = tokenizers::Tokenizer::from_file(&tok_file).unwrap();
    let ran = Bench::sim_with(sim)
        .number(2)
        .max_tokens(2)
        .args(&["--tokenize-prompt", "--tokenizer-path", &tok_path])
        .run();
    let bodies = common::bodies(&ran.only_step());
    let ids: Vec<u32> = bodies[0]["prompt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect();
    let text = tok.decode(&ids, false).unwrap();
    assert!(
        text.starts_with("<|im_start|>user\n") && text.ends_with("<|im_start|>assistant\n"),
        "{text}"
    );
}

/// trie trace replay (evalscope 1.14.1's `trie_*`): each trace is num_turns + 1
/// turns; each new user message re-encodes to exactly its recorded length, each
/// turn is capped at its recorded answer length, and the tool-call time passes
/// between an answer and the next turn.
#[test]
fn trie_traces_replay_lengths_caps_and_tool_latency() {
    let dir = tempfile::tempdir().unwrap();
    let tok_file = crate::tokenizer::make_tokenizer(dir.path(), false);
    let tok = tokenizers::Tokenizer::from_file(&tok_file).unwrap();
    let tok_path = tok_file.to_string_lossy().into_owned();
    // (input, [(answer, tool output, latency)], final answer)
    type TrieTrace<'a> = (u64, &'a [(u64, u64, f64)], u64);
    let traces: [TrieTrace; 3] = [
        (40, &[(5, 12, 0.30), (6, 20, 0.0)], 7),
        (25, &[], 4),
        (60, &[(3, 9, 0.15)], 8),
    ];
    let mut lines = String::new();
    for (input, turns, last) in traces {
        let a: Vec<u64> = turns.iter().map(|t| t.0).collect();
        let o: Vec<u64> = turns.iter().map(|t| t.1).collect();
        let l: Vec<f64> = turns.iter().map(|t| t.2).collect();
        lines.push_str(&format!(
            "{{\"input_prompt_length\": {input}, \"num_turns\": {}, \"assistant_response_length\": {a:?}, \
             \"tool_call_output_length\": {o:?}, \"tool_call_latency\": {l:?}, \
             \"final_assistant_response_length\": {last}}}\n",
            turns.len()
        ));
    }
    let file = write(dir.path(), "code_qa_8k.jsonl", &lines);
    let ran = Bench::sim_with(SimConfig {
        ttft_ms: Some(5.0),
        itl_ms: Some(1.0),
        tokenizer_path: Some(tok_path.clone()),
        ..SimConfig::default()
    })
    .parallel(3)
    .number(3)
    .args(&[
        "--dataset",
        "trie_code_qa",
        "--dataset-path",
        &file,
        "--multi-turn",
        "--tokenizer-path",
        &tok_path,
        "--extra-args",
        r#"{"ignore_eos": true}"#,
    ])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let conn = ran.db();
    // (session, turn, start, end, completion, request)
    type TurnRow = (String, i64, f64, f64, i64, Value);
    let rows: Vec<TurnRow> = common::rows(
        &conn,
        "SELECT session_id, turn, start_time, completed_time, completion_tokens, request
         FROM result WHERE success=1 ORDER BY session_id, turn",
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                serde_json::from_str(&r.get::<_, String>(5)?).unwrap(),
            ))
        },
    );
    assert_eq!(rows.len(), 3 + 1 + 2, "num_turns + 1 turns per trace");
    let mut by_session: BTreeMap<&str, Vec<&TurnRow>> = BTreeMap::new();
    for r in &rows {
        by_session.entry(&r.0).or_default().push(r);
    }
    // Conversations are claimed in file order: bench-0, bench-1, bench-2.
    for (k, (input, turns, last)) in traces.iter().enumerate() {
        let ts = &by_session[format!("bench-{k}").as_str()];
        assert_eq!(ts.len(), turns.len() + 1);
        for (i, t) in ts.iter().enumerate() {
            let want_len = if i == 0 { *input } else { turns[i - 1].1 };
            let want_cap = if i < turns.len() { turns[i].0 } else { *last };
            let msgs = t.5["messages"].as_array().unwrap();
            let text = msgs.last().unwrap()["content"].as_str().unwrap();
            let n = tok.encode(text, false).unwrap().get_ids().len() as u64;
            assert_eq!(n, want_len, "trace {k} turn {i}: the recorded length");
            assert_eq!(t.5["max_tokens"], want_cap, "trace {k} turn {i}");
            assert_eq!(t.4 as u64, want_cap, "ignore_eos: the cap is the answer");
            if i > 0 {
                let gap = t.2 - ts[i - 1].3;
                let latency = turns[i - 1].2;
                assert!(
                    gap >= latency && gap < latency + 0.1,
                    "trace {k} turn {i}: {gap} s after the answer, recorded {latency} s"
                );
            }
        }
    }
    let step = ran.only_step();
    assert_eq!(
        common::json(&step.join("trace_summary.json"))["n_traces"],
        3
    );
    assert!(step.join("workload_throughput.json").exists());
}

/// A trie file with a bad line is refused before anything is sent, naming the file,
/// the line and the field.
#[test]
fn trie_bad_lines_name_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let tok_file = crate::tokenizer::make_tokenizer(dir.path(), false);
    let good = r#"{"input_prompt_length": 10, "num_turns": 1, "assistant_response_length": [3], "tool_call_output_length": [4], "tool_call_latency": [0.1], "final_assistant_response_length": 5}"#;
    let out = dir.path().join("out");
    for (bad, want) in [
        (
            r#"{"input_prompt_length": 10, "num_turns": 2, "assistant_response_length": [3], "tool_call_output_length": [4, 4], "tool_call_latency": [0.1, 0.1], "final_assistant_response_length": 5}"#,
            ":2: `assistant_response_length` has 1 entries, `num_turns` is 2",
        ),
        (
            r#"{"input_prompt_length": -3, "num_turns": 0, "assistant_response_length": [], "tool_call_output_length": [], "tool_call_latency": [], "final_assistant_response_length": 5}"#,
            ":2: `input_prompt_length` must be a whole number of tokens >= 0",
        ),
        (
            r#"{"input_prompt_length": 10, "num_turns": 1, "assistant_response_length": [3], "tool_call_output_length": [4], "tool_call_latency": [-0.5], "final_assistant_response_length": 5}"#,
            ":2: `tool_call_latency`[0] = -0.5 must be a number >= 0",
        ),
        ("{not json", ":2: not a JSON object"),
    ] {
        let file = write(dir.path(), "t.jsonl", &format!("{good}\n{bad}\n"));
        let err = common::run_err(&[
            "--url",
            "http://127.0.0.1:9/v1/chat/completions",
            "--model",
            "m",
            "--dataset",
            "trie_agentic_coding",
            "--dataset-path",
            &file,
            "--multi-turn",
            "--tokenizer-path",
            tok_file.to_str().unwrap(),
            "--outputs-dir",
            out.to_str().unwrap(),
        ]);
        assert!(err.contains(&format!("{file}{want}")), "{err}");
        assert!(!out.exists(), "nothing written, nothing sent");
    }
    // Without the file: where to get it.
    let err = common::run_err(&[
        "--model",
        "m",
        "--dataset",
        "trie_office_work",
        "--multi-turn",
        "--tokenizer-path",
        tok_file.to_str().unwrap(),
        "--outputs-dir",
        out.to_str().unwrap(),
    ]);
    assert!(
        err.contains("--dataset-path")
            && err.contains("office_work_8k.jsonl")
            && err.contains("evalscope/trie-workloads"),
        "{err}"
    );
}

/// swe_smith from a pre-built JSON file: each conversation's turns are sent as
/// deltas after the model's real replies, a first turn's `rid` reaches every turn as
/// `<rid>_t<k>`, --dataset-offset rotates the list and --max-turns truncates.
#[test]
fn swe_smith_prebuilt_conversations_with_rids() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "agentic_dataset.json",
        r#"{"conversations": [
          [{"messages": [{"role": "user", "content": "zero"}], "rid": "c0"}],
          [{"messages": [{"role": "system", "content": "be terse"}, {"role": "user", "content": "one a"}], "prompt_tokens": 9, "rid": "c1"},
           {"messages": [{"role": "user", "content": "one b"}]},
           {"messages": [{"role": "user", "content": "one c"}]}],
          [{"messages": [{"role": "user", "content": "two a"}]},
           {"messages": [{"role": "user", "content": "two b"}]}]
        ]}"#,
    );
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    })
    .parallel(1)
    .number(2)
    .max_tokens(4)
    .args(&[
        "--dataset",
        "swe_smith",
        "--dataset-path",
        &file,
        "--multi-turn",
        "--max-turns",
        "2",
        "--dataset-offset",
        "1",
    ])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let sent: Vec<Value> = common::rows(
        &ran.db(),
        "SELECT request FROM result ORDER BY session_id, turn",
        |r| Ok(serde_json::from_str(&r.get::<_, String>(0)?).unwrap()),
    );
    // Offset 1: conversations 1 and 2, each cut to 2 turns.
    assert_eq!(sent.len(), 4);
    let last_user = |b: &Value| {
        b["messages"].as_array().unwrap().last().unwrap()["content"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(last_user(&sent[0]), "one a");
    assert_eq!(sent[0]["messages"][0]["role"], "system");
    assert_eq!(sent[0]["rid"], "c1_t1");
    assert_eq!(last_user(&sent[1]), "one b");
    assert_eq!(sent[1]["rid"], "c1_t2");
    assert_eq!(
        sent[1]["messages"][2]["role"], "assistant",
        "the real reply in between"
    );
    assert_eq!(last_user(&sent[2]), "two a");
    assert!(sent[2].get("rid").is_none() && sent[3].get("rid").is_none());
    // A file without the list is refused naming the file.
    let bad = write(dir.path(), "bad.json", r#"{"items": []}"#);
    let err = common::run_err(&[
        "--model",
        "m",
        "--dataset",
        "swe_smith",
        "--dataset-path",
        &bad,
        "--multi-turn",
    ]);
    assert!(
        err.contains(&format!("{bad}: no `conversations` list")),
        "{err}"
    );
}
