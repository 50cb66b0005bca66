//! Every API end to end: embedding and rerank against the simulator, DashScope and a
//! declarative custom API (TGI's wire format) against in-test mock servers, and the
//! flickr8k / embedding / rerank datasets from local files.

use crate::common;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::post;
use perfscope::sim::{count_tokens, SimConfig};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<(HeaderMap, Value)>>>;

fn rows(dir: &std::path::Path, sql: &str) -> Vec<Vec<Option<f64>>> {
    let conn = common::db(dir);
    let mut st = conn.prepare(sql).unwrap();
    let n = st.column_count();
    st.query_map([], |r| {
        (0..n)
            .map(|i| r.get::<_, Option<f64>>(i))
            .collect::<Result<Vec<_>, _>>()
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

#[test]
fn embedding_batches_and_input_throughput() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        ttft_ms: Some(5.0),
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("texts.jsonl");
    let texts: Vec<String> = (0..12)
        .map(|i| format!("sentence number {i} about vector search"))
        .collect();
    let mut lines: Vec<String> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| match i % 3 {
            0 => json!({"text": t}).to_string(),
            1 => json!({"sentence": t, "id": i}).to_string(),
            _ => json!(t).to_string(),
        })
        .collect();
    lines.insert(3, String::new());
    std::fs::write(&data, lines.join("\n")).unwrap();
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "embedding", "--url", &format!("{}/v1", sim.base_url()), "--model", "bge-m3",
        "--dataset", "embedding_dataset", "--dataset-path", data.to_str().unwrap(),
        "--extra-args", r#"{"batch_size": 4, "dimensions": 32}"#,
        "--parallel", "2", "--number", "6", "--log-every-n-query", "3",
        "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let run = o.dir.join("parallel_2_number_6");
    let bodies = common::bodies(&run);
    assert_eq!(bodies.len(), 6);
    // Three batches of four, cycled; batch_size is ours and never sent.
    let mut batches: Vec<Value> = bodies.iter().map(|b| b["input"].clone()).collect();
    batches.sort_by_key(|b| b.to_string());
    batches.dedup();
    assert_eq!(batches.len(), 3);
    for b in &bodies {
        assert_eq!(b["model"], "bge-m3");
        assert_eq!(b["dimensions"], 32);
        assert!(
            b.get("batch_size").is_none() && b.get("max_tokens").is_none(),
            "{b}"
        );
        let inputs = b["input"].as_array().unwrap();
        assert_eq!(inputs.len(), 4);
        for t in inputs {
            assert!(texts.contains(&t.as_str().unwrap().to_string()));
        }
    }
    // The simulator's usage is its own token count of the inputs.
    let conn = common::db(&run);
    let mut st = conn
        .prepare("SELECT request, prompt_tokens, completion_tokens, latency FROM result")
        .unwrap();
    let mut sum_p = 0.0;
    let mut sum_l = 0.0;
    for r in st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, f64>(3)?,
            ))
        })
        .unwrap()
    {
        let (req, p, c, l) = r.unwrap();
        let req: Value = serde_json::from_str(&req).unwrap();
        let want: u64 = req["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| count_tokens(t.as_str().unwrap()))
            .sum();
        assert_eq!((p as u64, c), (want, 0));
        assert!(l >= 0.004, "latency {l} below the injected 5 ms");
        sum_p += p as f64;
        sum_l += l;
    }
    let s = common::json(&run.join("benchmark_summary.json"));
    let it = s["Input Throughput (tok/s)"].as_f64().unwrap();
    assert!(
        (it - sum_p / sum_l).abs() <= 1e-3 * it + 1e-3,
        "{it} vs {}",
        sum_p / sum_l
    );
    assert_eq!(s["Avg TTFT (ms)"], 0.0);
    assert_eq!(s["Output Throughput (tok/s)"], 0.0);
    let pct = common::json(&run.join("benchmark_percentile.json"));
    let keys: Vec<&str> = pct[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "Percentiles",
            "Latency (s)",
            "Input tokens",
            "Input (tok/s)",
            "Schedule Lag (ms)"
        ]
    );
    let summary = std::fs::read_to_string(o.dir.join("performance_summary.txt")).unwrap();
    assert!(
        summary.contains("Embedding/Rerank Performance Test Summary"),
        "{summary}"
    );
    assert!(summary.contains("Avg Inp.TPS"), "{summary}");
    let html = std::fs::read_to_string(o.dir.join("perf_report.html")).unwrap();
    assert!(html.contains("Input throughput per request"));
    // The live summary line of an embedding run carries input throughput, no TTFT.
    let log = std::fs::read_to_string(o.dir.join("benchmark.log")).unwrap();
    let live: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("parallel_2_number_6: {"))
        .collect();
    assert_eq!(live.len(), 2, "{log}");
    assert!(live
        .iter()
        .all(|l| l.contains("\"Input Throughput (tok/s)\"") && !l.contains("TTFT")));
}

#[test]
fn rerank_pairs_from_file_and_errors_name_the_line() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("pairs.jsonl");
    std::fs::write(
        &data,
        [
            json!({"query": "what is rust", "documents": ["rust is a language", "rust on iron"]}),
            json!({"query": "capital of france", "passages": [{"text": "paris is the capital"}, "lyon"]}),
            json!({"query": "tallest mountain", "texts": ["everest", "k2", "denali"]}),
        ]
        .iter()
        .map(Value::to_string)
        .collect::<Vec<_>>()
        .join("\n"),
    )
    .unwrap();
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "rerank", "--url", &sim.base_url(), "--model", "bge-reranker",
        "--dataset", "rerank_dataset", "--dataset-path", data.to_str().unwrap(),
        "--number", "3", "--extra-args", r#"{"top_n": 1}"#, "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let run = o.dir.join("parallel_1_number_3");
    let bodies = common::bodies(&run);
    assert_eq!(
        *bodies
            .iter()
            .find(|b| b["query"] == "capital of france")
            .unwrap(),
        json!({"query": "capital of france", "documents": ["paris is the capital", "lyon"],
               "model": "bge-reranker", "top_n": 1})
    );
    let tokens = rows(&run, "SELECT prompt_tokens FROM result ORDER BY start_time");
    for (b, t) in bodies.iter().zip(&tokens) {
        let q = count_tokens(b["query"].as_str().unwrap());
        let want: u64 = b["documents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| q + count_tokens(d.as_str().unwrap()))
            .sum();
        assert_eq!(t[0], Some(want as f64));
    }
    // Malformed files: the error names the file and line.
    std::fs::write(
        &data,
        "{\"query\": \"a\", \"documents\": [\"b\"]}\n{\"query\": \"c\"}\n",
    )
    .unwrap();
    #[rustfmt::skip]
    let e = common::run_err(&[
        "--api", "rerank", "--url", &sim.base_url(), "--model", "m", "--dataset", "rerank_dataset",
        "--dataset-path", data.to_str().unwrap(), "--outputs-dir", out.to_str().unwrap(),
    ]);
    assert!(e.contains("pairs.jsonl:2"), "{e:#}");
    let bad = dir.path().join("texts.jsonl");
    std::fs::write(&bad, "{\"text\": \"ok\"}\n{oops\n").unwrap();
    #[rustfmt::skip]
    let e = common::run_err(&[
        "--api", "embedding", "--url", &sim.base_url(), "--model", "m", "--dataset", "embedding_dataset",
        "--dataset-path", bad.to_str().unwrap(), "--outputs-dir", out.to_str().unwrap(),
    ]);
    assert!(e.contains("texts.jsonl:2"), "{e:#}");
}

/// DashScope's native text-generation endpoint: SSE with `id:`/`event:` lines and a
/// `:HTTP_STATUS` comment, incremental content, `finish_reason: "null"` until the
/// end, cumulative usage.input_tokens/output_tokens; or one JSON reply.
fn dashscope_mock(seen: Seen) -> axum::Router {
    axum::Router::new().route(
        "/api/v1/services/aigc/text-generation/generation",
        post(move |headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push((headers.clone(), v.clone()));
                if headers.get("authorization").and_then(|h| h.to_str().ok()) != Some("Bearer sk-test") {
                    return Response::builder()
                        .status(StatusCode::UNAUTHORIZED)
                        .header("content-type", "application/json")
                        .body(Body::from(r#"{"code":"InvalidApiKey","message":"Invalid API-key provided.","request_id":"r0"}"#))
                        .unwrap();
                }
                let event = |i: usize, content: &str, finish: &str| {
                    json!({"output": {"choices": [{"message": {"content": content, "role": "assistant"},
                            "finish_reason": finish}]},
                           "usage": {"total_tokens": 11 + i, "input_tokens": 11, "output_tokens": i},
                           "request_id": "r1"})
                };
                if headers.get("x-dashscope-sse").is_none() {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    return Response::builder()
                        .header("content-type", "application/json")
                        .body(Body::from(event(5, "a b c d e", "stop").to_string()))
                        .unwrap();
                }
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(60)).await;
                    for i in 1..=6 {
                        let (c, f) = if i < 6 { ("tok ", "null") } else { ("", "stop") };
                        let e = event(i.min(5), c, f);
                        let frame = format!("id:{i}\nevent:result\n:HTTP_STATUS/200\ndata:{e}\n\n");
                        let _ = tx.send(bytes::Bytes::from(frame));
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                });
                Response::builder()
                    .header("content-type", "text/event-stream;charset=UTF-8")
                    .body(Body::new(common::ChannelBody(rx)))
                    .unwrap()
            }
        }),
    )
}

#[test]
fn dashscope_native_stream_and_non_stream() {
    let _g = common::lock();
    let seen: Seen = Arc::default();
    let mock = common::serve(dashscope_mock(seen.clone()));
    let url = format!(
        "http://{}/api/v1/services/aigc/text-generation/generation",
        mock.addr
    );
    let dir = tempfile::tempdir().unwrap();
    for stream in [true, false] {
        let out = dir.path().join(format!("out{stream}"));
        let mut args = vec![
            "--api",
            "dashscope",
            "--url",
            &url,
            "--api-key",
            "sk-test",
            "--model",
            "qwen-plus",
            "--parallel",
            "2",
            "--number",
            "4",
            "--max-tokens",
            "64",
            "--outputs-dir",
            out.to_str().unwrap(),
        ];
        if !stream {
            args.push("--no-stream");
        }
        let o = common::run(&args).unwrap();
        assert_eq!(o.exit_code, 0);
        let run = o.dir.join("parallel_2_number_4");
        let r = rows(
            &run,
            "SELECT success, is_stream, prompt_tokens, completion_tokens, first_chunk_latency, latency FROM result",
        );
        assert_eq!(r.len(), 4);
        for row in &r {
            assert_eq!(
                row[..4],
                [Some(1.0), Some(stream as u8 as f64), Some(11.0), Some(5.0)],
                "{row:?}"
            );
            let ttft = row[4].unwrap();
            assert!(
                (0.055..0.2).contains(&ttft),
                "TTFT {ttft} vs 60 ms injected"
            );
            if stream {
                // Five content events 20 ms apart after the first, then the finish.
                let lat = row[5].unwrap();
                assert!(lat - ttft >= 0.095, "{lat} {ttft}");
            }
        }
        if stream {
            let itl = rows(
                &run,
                "SELECT j.value FROM result, json_each(result.inter_token_latencies) AS j",
            );
            assert_eq!(
                itl.len(),
                4 * 4,
                "four gaps between five content events per request"
            );
            for g in itl {
                let g = g[0].unwrap();
                assert!((0.015..0.1).contains(&g), "ITL {g} vs 20 ms injected");
            }
        }
    }
    let seen = seen.lock().unwrap();
    // A connection test per run, then the requests.
    let (h, b) = &seen[1];
    assert_eq!(h["x-dashscope-sse"], "enable");
    assert_eq!(
        b.to_string(),
        r#"{"model":"qwen-plus","input":{"messages":[{"role":"user","content":"#.to_string()
            + &b["input"]["messages"][0]["content"].to_string()
            + r#"}]},"parameters":{"result_format":"message","max_tokens":64,"incremental_output":true,"temperature":0.0}}"#
    );
    let (h, b) = seen.last().unwrap();
    assert!(h.get("x-dashscope-sse").is_none());
    assert!(b["parameters"].get("incremental_output").is_none(), "{b}");
    drop(seen);
    // A bad key stops the command at the connection test, naming DashScope's error
    // and never echoing the key.
    #[rustfmt::skip]
    let e = common::run_err(&[
        "--api", "dashscope", "--url", &url, "--api-key", "sk-wrong", "--model", "qwen-plus",
        "--outputs-dir", dir.path().join("bad").to_str().unwrap(),
    ]);
    assert!(
        e.contains("InvalidApiKey") && !e.contains("sk-wrong"),
        "{e}"
    );
}

/// Hugging Face TGI's `/generate_stream`, described by an --api-config file.
#[test]
fn custom_api_from_a_config_file() {
    let _g = common::lock();
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let mock = common::serve(axum::Router::new().route(
        "/generate_stream",
        post(move |headers: HeaderMap, body: String| {
            let seen = s2.clone();
            async move {
                let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                seen.lock().unwrap().push((headers, v));
                let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(40)).await;
                    for i in 1..=4 {
                        let details = if i == 4 {
                            json!({"finish_reason": "length", "generated_tokens": 4})
                        } else {
                            Value::Null
                        };
                        let e = json!({"index": i, "token": {"id": i, "text": "w ", "special": false},
                                       "generated_text": if i == 4 { json!("w w w w ") } else { Value::Null },
                                       "details": details});
                        let _ = tx.send(bytes::Bytes::from(format!("data:{e}\n\n")));
                        tokio::time::sleep(Duration::from_millis(15)).await;
                    }
                });
                Response::builder()
                    .header("content-type", "text/event-stream")
                    .body(Body::new(common::ChannelBody(rx)))
                    .unwrap()
            }
        }),
    ));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("tgi.json");
    std::fs::write(
        &cfg,
        json!({
            "body": "{\"inputs\": {{ prompt | tojson }}, \"parameters\": {\"max_new_tokens\": {{ max_tokens }}, \"do_sample\": false}, \"stream\": {{ stream | tojson }}}",
            "headers": {"X-Tenant": "bench"},
            "response": {
                "content": ["/token/text"],
                "finish_reason": "/details/finish_reason",
                "completion_tokens": "/details/generated_tokens",
                "error": "/error"
            }
        })
        .to_string(),
    )
    .unwrap();
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "custom", "--api-config", cfg.to_str().unwrap(),
        "--url", &format!("http://{}/generate_stream", mock.addr), "--model", "tgi",
        "--prompt", "tell me a story", "--max-tokens", "16", "--number", "3",
        "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let run = o.dir.join("parallel_1_number_3");
    for row in rows(
        &run,
        "SELECT success, completion_tokens, first_chunk_latency, output_chunks FROM result",
    ) {
        assert_eq!(row[0..2], [Some(1.0), Some(4.0)]);
        let ttft = row[2].unwrap();
        assert!(
            (0.035..0.15).contains(&ttft),
            "TTFT {ttft} vs 40 ms injected"
        );
        assert_eq!(row[3], Some(4.0));
    }
    let seen = seen.lock().unwrap();
    for (h, b) in seen.iter() {
        assert_eq!(h["x-tenant"], "bench");
        assert_eq!(
            b.to_string(),
            if b["parameters"]["max_new_tokens"] == 1 {
                r#"{"inputs":"hello","parameters":{"max_new_tokens":1,"do_sample":false},"stream":true}"#
            } else {
                r#"{"inputs":"tell me a story","parameters":{"max_new_tokens":16,"do_sample":false},"stream":true}"#
            }
        );
    }
    assert_eq!(seen.len(), 4, "connection test + 3 requests");
}

#[test]
fn flickr8k_from_a_webdataset_directory_and_jsonl() {
    use base64::Engine as _;
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let shards = dir.path().join("wds");
    std::fs::create_dir(&shards).unwrap();
    // JPEG-looking bytes (SOI marker) are sent as they are, never re-encoded.
    let images: Vec<Vec<u8>> = (0..3u8)
        .map(|i| vec![0xFF, 0xD8, 0xFF, 0xE0, i, i, 0xFF, 0xD9])
        .collect();
    for (i, img) in images.iter().enumerate() {
        std::fs::write(shards.join(format!("{i:04}.jpg")), img).unwrap();
        std::fs::write(
            shards.join(format!("{i:04}.txt")),
            format!("a dog number {i}\n"),
        )
        .unwrap();
    }
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "vl", "--dataset", "flickr8k", "--dataset-path",
        shards.to_str().unwrap(), "--number", "3", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let b64 = base64::engine::general_purpose::STANDARD;
    // Requests may start in any order; each caption names its image.
    let mut seen = Vec::new();
    for b in common::bodies(&o.dir.join("parallel_1_number_3")) {
        let parts = &b["messages"][0]["content"];
        let text = parts[0]["text"].as_str().unwrap();
        let i: usize = text.strip_prefix("a dog number ").unwrap().parse().unwrap();
        assert_eq!(parts[0]["type"], "text");
        let u = parts[1]["image_url"]["url"].as_str().unwrap();
        let data = u.strip_prefix("data:image/jpeg;base64,").unwrap();
        assert_eq!(b64.decode(data).unwrap(), images[i]);
        seen.push(i);
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2]);
    // JSONL: base64 in `jpg`, or a path relative to the file in `image`.
    let jl = dir.path().join("flickr.jsonl");
    std::fs::write(
        &jl,
        format!(
            "{}\n{}\n",
            json!({"jpg": b64.encode(&images[0]), "txt": "first"}),
            json!({"image": "wds/0001.jpg", "caption": "second"})
        ),
    )
    .unwrap();
    let out = dir.path().join("out2");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "vl", "--dataset", "flickr8k", "--dataset-path",
        jl.to_str().unwrap(), "--number", "2", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    let b = common::bodies(&o.dir.join("parallel_1_number_2"));
    let second = b
        .iter()
        .find(|b| b["messages"][0]["content"][0]["text"] == "second")
        .unwrap();
    let u = second["messages"][0]["content"][1]["image_url"]["url"]
        .as_str()
        .unwrap();
    assert_eq!(b64.decode(&u[23..]).unwrap(), images[1]);
    std::fs::write(&jl, "{\"txt\": \"no image\"}\n").unwrap();
    #[rustfmt::skip]
    let e = common::run_err(&[
        "--url", &url, "--model", "vl", "--dataset", "flickr8k", "--dataset-path",
        jl.to_str().unwrap(), "--outputs-dir", out.to_str().unwrap(),
    ]);
    assert!(e.contains("flickr.jsonl:1"), "{e:#}");
    let e = common::run_err(&["--url", &url, "--model", "vl", "--dataset", "flickr8k"]);
    assert!(
        e.contains("--dataset-path") && e.contains("wds_flickr8k"),
        "{e:#}"
    );
}

/// kontext_bench from a local JSONL copy: each request is the item's instruction
/// (evalscope's "Describe the image" when it has none) and its image as a data URL.
#[test]
fn kontext_bench_from_a_local_jsonl_copy() {
    use base64::Engine as _;
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let png = b"\x89PNG\r\n\x1a\n-kontext-".to_vec();
    std::fs::write(dir.path().join("a.png"), &png).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD;
    let jl = dir.path().join("kontext.jsonl");
    std::fs::write(
        &jl,
        format!(
            "{}\n{}\n",
            json!({"instruction": "Make the sky purple", "image": "a.png"}),
            json!({"image": format!("data:image/png;base64,{}", b64.encode(&png))})
        ),
    )
    .unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "vl", "--dataset", "kontext_bench", "--dataset-path",
        jl.to_str().unwrap(), "--number", "2", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let mut texts: Vec<String> = Vec::new();
    for b in common::bodies(&o.dir.join("parallel_1_number_2")) {
        let parts = &b["messages"][0]["content"];
        texts.push(parts[0]["text"].as_str().unwrap().to_string());
        let u = parts[1]["image_url"]["url"].as_str().unwrap();
        let data = u.strip_prefix("data:image/png;base64,").unwrap();
        assert_eq!(b64.decode(data).unwrap(), png);
    }
    texts.sort();
    assert_eq!(texts, ["Describe the image", "Make the sky purple"]);
    let e = common::run_err(&["--url", &url, "--model", "vl", "--dataset", "kontext_bench"]);
    assert!(
        e.contains("--dataset-path") && e.contains("kontext-bench"),
        "{e:#}"
    );
}
