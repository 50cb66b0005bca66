//! `--tokenizer-path`: token-unit random prompts within ±1 token of the target as the
//! server counts them (the simulator counts with the same tokenizer), the length
//! filter in tokens, chat templates, and token counts when the server sends no usage.
//! The tokenizer is a byte-level BPE trained here, so nothing is downloaded.

use crate::common;

use perfscope::sim::{SimConfig, SimHandle};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::normalizers::NormalizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::{AddedToken, TokenizerBuilder, TokenizerImpl};

/// A Qwen-style template that exercises Python string methods and loop variables.
const TEMPLATE: &str = "{%- for message in messages %}{%- if loop.first and message['role'] != 'system' %}{{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{%- endif %}{{- '<|im_start|>' + message['role'] + '\\n' + message['content'].strip() + '<|im_end|>' + '\\n' }}{%- endfor %}{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// Trains a 1,000-token byte-level BPE on English and Chinese text and writes
/// tokenizer.json (and, with `template`, tokenizer_config.json) into `dir`.
pub fn make_tokenizer(dir: &Path, template: bool) -> PathBuf {
    let mut corpus: Vec<String> = include_str!("../../src/dataset/openqa_questions.txt")
        .lines()
        .map(str::to_string)
        .collect();
    corpus.extend(
        [
            "机器学习是人工智能的一个分支，它让计算机从数据中学习。",
            "大语言模型的推理速度取决于显存带宽和批处理大小。",
            "The quick brown fox jumps over the lazy dog, again and again.",
        ]
        .iter()
        .map(|s| s.repeat(3)),
    );
    let mut trainer = BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(1000)
        .min_frequency(0)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .special_tokens(vec![
            AddedToken::from("<|endoftext|>", true),
            AddedToken::from("<|im_start|>", true),
            AddedToken::from("<|im_end|>", true),
        ])
        .build();
    let mut tok: TokenizerImpl<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    > = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
        .with_post_processor(Some(ByteLevel::new(false, true, true).into()))
        .with_decoder(Some(ByteLevel::new(false, true, true).into()))
        .build()
        .unwrap();
    tok.train(&mut trainer, corpus.into_iter()).unwrap();
    let file = dir.join("tokenizer.json");
    tok.save(&file, false).unwrap();
    if template {
        std::fs::write(
            dir.join("tokenizer_config.json"),
            json!({"chat_template": TEMPLATE, "eos_token": "<|im_end|>", "bos_token": null})
                .to_string(),
        )
        .unwrap();
    }
    file
}

fn reference(dir: &Path) -> tokenizers::Tokenizer {
    tokenizers::Tokenizer::from_file(dir.join("tokenizer.json")).unwrap()
}

fn count(t: &tokenizers::Tokenizer, s: &str) -> i64 {
    t.encode(s, false).unwrap().get_ids().len() as i64
}

/// (prompt text or messages, prompt_tokens) of every stored request.
fn stored(run: &Path) -> Vec<(Value, i64)> {
    let conn = common::db(run);
    let mut st = conn
        .prepare("SELECT request, prompt_tokens FROM result ORDER BY start_time")
        .unwrap();
    st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
        .unwrap()
        .map(|r| {
            let (b, n) = r.unwrap();
            (serde_json::from_str(&b).unwrap(), n)
        })
        .collect()
}

/// A tokenizer trained into `dir`, the same tokenizer loaded with the tokenizers
/// crate for independent counts, and a zero-delay simulator counting with it.
fn counting_sim(dir: &Path, template: bool) -> (tokenizers::Tokenizer, SimHandle) {
    make_tokenizer(dir, template);
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        tokenizer_path: Some(dir.to_string_lossy().into_owned()),
        ..SimConfig::default()
    });
    (reference(dir), sim)
}

#[test]
fn random_prompts_have_the_requested_token_count() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let (reference, sim) = counting_sim(dir.path(), true);
    let tok_dir = dir.path().to_str().unwrap();
    let mut worst = 0;
    // (path, min, max, prefix): completions, a range with a shared prefix, and chat
    // (the template's tokens are part of what the server counts).
    for (path, lo, hi, prefix) in [
        ("/v1/completions", 64, 64, 0),
        ("/v1/completions", 16, 128, 8),
        ("/v1/chat/completions", 48, 48, 0),
        ("/v1/chat/completions", 200, 300, 0),
    ] {
        let out = dir
            .path()
            .join(format!("out{path:?}{lo}").replace('/', "_"));
        let url = format!("{}{path}", sim.base_url());
        #[rustfmt::skip]
        let o = common::run(&[
            "--url", &url, "--model", "m", "--dataset", "random", "--tokenizer-path", tok_dir,
            "--min-prompt-length", &lo.to_string(), "--max-prompt-length", &hi.to_string(),
            "--prefix-length", &prefix.to_string(), "--number", "40", "--parallel", "4",
            "--no-test-connection", "--outputs-dir", out.to_str().unwrap(),
        ])
        .unwrap();
        assert_eq!(o.exit_code, 0);
        let rows = stored(&o.dir.join("parallel_4_number_40"));
        assert_eq!(rows.len(), 40);
        let mut prefixes = std::collections::HashSet::new();
        let mut lengths = std::collections::HashSet::new();
        for (body, n) in &rows {
            let (lo, hi) = (lo + prefix, hi + prefix);
            assert!(
                (lo - 1..=hi + 1).contains(n),
                "{path}: server counted {n} tokens, requested {lo}..={hi}"
            );
            worst = worst.max((lo - n).max(n - hi).max(0));
            lengths.insert(*n);
            if let Some(p) = body["prompt"].as_str() {
                // Counted independently with the tokenizers crate: the same number.
                assert_eq!(count(&reference, p), *n);
                let ids = reference.encode(p, false).unwrap().get_ids().to_vec();
                prefixes.insert(ids[..prefix as usize].to_vec());
            } else {
                assert_eq!(body["messages"][0]["role"], "user");
            }
        }
        if prefix > 0 {
            assert_eq!(prefixes.len(), 1, "one shared prefix per run");
        }
        if hi > lo {
            assert!(
                lengths.len() > 10,
                "lengths vary across the range: {lengths:?}"
            );
        }
    }
    eprintln!("largest token-count error seen: {worst}");
}

#[test]
fn length_filter_chat_template_and_counts_without_usage() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    make_tokenizer(dir.path(), true);
    let tok_dir = dir.path().to_str().unwrap();
    let reference = reference(dir.path());
    let tok = perfscope::tokenizer::Tokenizer::load(tok_dir).unwrap();
    // The template from tokenizer_config.json, Python string methods included.
    let msgs = json!([{"role": "user", "content": "  hi  "}]);
    assert_eq!(
        tok.render_chat(&msgs, true).unwrap(),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    );
    // Without a tokenizer_config.json the documented default (ChatML) applies.
    let bare = tempfile::tempdir().unwrap();
    make_tokenizer(bare.path(), false);
    let t2 = perfscope::tokenizer::Tokenizer::load(bare.path().to_str().unwrap()).unwrap();
    assert_eq!(
        t2.render_chat(&msgs, true).unwrap(),
        "<|im_start|>user\n  hi  <|im_end|>\n<|im_start|>assistant\n"
    );

    // A server that sends no usage: perfscope counts prompt (through the chat
    // template) and completion (the streamed text) with the tokenizer.
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        no_usage: true,
        ..SimConfig::default()
    });
    let out = dir.path().join("out");
    let url = format!("{}/v1/chat/completions", sim.base_url());
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "m", "--tokenizer-path", tok_dir, "--number", "12",
        "--min-prompt-length", "8", "--max-prompt-length", "14", "--debug",
        "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    let run = o.dir.join("parallel_1_number_12");
    let conn = common::db(&run);
    let mut st = conn
        .prepare("SELECT request, response_messages, prompt_tokens, completion_tokens FROM result")
        .unwrap();
    let rows: Vec<(String, String, i64, i64)> = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 12);
    for (req, resp, p, c) in rows {
        let req: Value = serde_json::from_str(&req).unwrap();
        let q = req["messages"][0]["content"].as_str().unwrap();
        // The length filter is in tokens.
        assert!((8..=14).contains(&count(&reference, q)), "{q}");
        let rendered = tok.render_chat(&req["messages"], true).unwrap();
        assert_eq!(p, count(&reference, &rendered));
        let payloads: Vec<Value> = serde_json::from_str(&resp).unwrap();
        let text: String = payloads
            .iter()
            .filter_map(|v| {
                v.pointer("/choices/0/delta/content")
                    .and_then(Value::as_str)
            })
            .collect();
        assert!(!text.is_empty());
        assert_eq!(c, count(&reference, &text));
    }
    let s = common::json(&run.join("benchmark_summary.json"));
    assert_eq!(s["Token Counts"], "server usage", "every count filled in");
}

#[test]
fn random_embedding_and_rerank_texts_have_the_requested_token_count() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let (reference, sim) = counting_sim(dir.path(), false);
    let tok_dir = dir.path().to_str().unwrap();
    let texts = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a.iter().map(|t| t.as_str().unwrap().to_string()).collect(),
            other => panic!("{other}"),
        }
    };

    // random_embedding, three texts per request, 8..=96 tokens each.
    let out = dir.path().join("emb");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "embedding", "--url", &format!("{}/v1/embeddings", sim.base_url()),
        "--model", "bge", "--dataset", "random_embedding", "--tokenizer-path", tok_dir,
        "--min-prompt-length", "8", "--max-prompt-length", "96",
        "--extra-args", r#"{"batch_size": 3}"#, "--number", "20", "--parallel", "4",
        "--no-test-connection", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let rows = stored(&o.dir.join("parallel_4_number_20"));
    assert_eq!(rows.len(), 20);
    let mut lengths = std::collections::HashSet::new();
    for (body, n) in &rows {
        assert!(body.get("batch_size").is_none(), "{body}");
        let inputs = texts(&body["input"]);
        assert_eq!(inputs.len(), 3);
        let counts: Vec<i64> = inputs.iter().map(|t| count(&reference, t)).collect();
        for c in &counts {
            assert!((7..=97).contains(c), "{c} tokens, requested 8..=96");
            lengths.insert(*c);
        }
        // The simulator counted the same tokens.
        assert_eq!(counts.iter().sum::<i64>(), *n);
    }
    assert!(lengths.len() > 20, "lengths vary: {lengths:?}");

    // random_rerank: 4 documents of twice the query length.
    let out = dir.path().join("rr");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "rerank", "--url", &format!("{}/v1/rerank", sim.base_url()),
        "--model", "bge-reranker", "--dataset", "random_rerank", "--tokenizer-path", tok_dir,
        "--min-prompt-length", "10", "--max-prompt-length", "40",
        "--extra-args", r#"{"num_documents": 4, "document_length_ratio": 2}"#,
        "--number", "12", "--parallel", "2", "--no-test-connection",
        "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let rows = stored(&o.dir.join("parallel_2_number_12"));
    assert_eq!(rows.len(), 12);
    for (body, n) in &rows {
        assert!(
            body.get("num_documents").is_none() && body.get("document_length_ratio").is_none(),
            "{body}"
        );
        let q = count(&reference, body["query"].as_str().unwrap());
        assert!(
            (9..=41).contains(&q),
            "query of {q} tokens, requested 10..=40"
        );
        let docs = texts(&body["documents"]);
        assert_eq!(docs.len(), 4);
        let mut sim_count = 0;
        for d in &docs {
            let c = count(&reference, d);
            // Twice the drawn query length, each side within one token.
            assert!((c - 2 * q).abs() <= 3, "document of {c} tokens, query {q}");
            sim_count += q + c;
        }
        assert_eq!(
            sim_count, *n,
            "the simulator scores the query with each document"
        );
    }
}

/// `examples/tokenizer/` (what the docs' token-exact examples pass to
/// `--tokenizer-path`) is this test tokenizer; PERFSCOPE_UPDATE_GOLDEN=1 rewrites it.
#[test]
fn the_examples_tokenizer_is_the_test_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    make_tokenizer(dir.path(), true);
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tokenizer");
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        let made = std::fs::read_to_string(dir.path().join(f)).unwrap();
        if std::env::var_os("PERFSCOPE_UPDATE_GOLDEN").is_some() {
            std::fs::create_dir_all(&examples).unwrap();
            std::fs::write(examples.join(f), &made).unwrap();
            continue;
        }
        let kept = std::fs::read_to_string(examples.join(f))
            .unwrap_or_else(|e| panic!("examples/tokenizer/{f}: {e} (PERFSCOPE_UPDATE_GOLDEN=1)"));
        assert!(
            kept == made,
            "examples/tokenizer/{f} differs from the test tokenizer"
        );
    }
}
