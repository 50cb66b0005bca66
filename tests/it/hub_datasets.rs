//! Hub datasets read from local snapshots (evalscope downloads them; perfscope
//! never does): `mmmu_multi_image` from MMMU's own Parquet layout.

use perfscope::sim::SimConfig;
use serde_json::Value;

use crate::common;

const MMMU: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/mmmu");

/// One content part as `t:<text>` or `i:<mime>` (the image's data-URL type).
fn parts(body: &Value) -> Vec<String> {
    body["messages"][0]["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| match p["type"].as_str().unwrap() {
            "text" => format!("t:{}", p["text"].as_str().unwrap()),
            _ => {
                let url = p["image_url"]["url"].as_str().unwrap();
                format!("i:{}", url.split(';').next().unwrap())
            }
        })
        .collect()
}

/// The fixture is MMMU's snapshot layout (`<Subject>/validation-*.parquet`, the
/// `datasets` Image struct in `image_1`…`image_7`, a `dev` split that must not be
/// read) for three subjects. evalscope 1.14.1's round robin gives Accounting 1,
/// Art 1, Math 1, (Accounting 2 has one image: skipped), Math 2, Accounting 3.
#[test]
fn mmmu_multi_image_round_robin_over_subjects_from_a_local_snapshot() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "vl", "--dataset", "mmmu_multi_image", "--dataset-path", MMMU,
        "--number", "5", "--outputs-dir", out.to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let ok: Vec<i64> = common::rows(
        &common::db(&o.dir.join("parallel_1_number_5")),
        "SELECT success FROM result",
        |r| r.get(0),
    );
    assert_eq!(ok, [1, 1, 1, 1, 1]);
    let mut got: Vec<Vec<String>> = common::bodies(&o.dir.join("parallel_1_number_5"))
        .iter()
        .map(parts)
        .collect();
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    // The five requests of the round robin (their order is the dataset's; rows are
    // compared as a set because two zero-delay requests can share a start time).
    let mut want = vec![
        s(&[
            "t:Compare ",
            "i:data:image/png",
            "t: with ",
            "i:data:image/jpeg",
            "t:. Which is larger?\nOptions: ['A', 'B']",
        ]),
        // No placeholder: the text, then the images in index order.
        s(&[
            "t:Which painting is older?\nOptions: ['first', 'second']",
            "i:data:image/png",
            "i:data:image/png",
            "i:data:image/png",
        ]),
        s(&["i:data:image/png", "i:data:image/png"]),
        s(&[
            "t:Solve ",
            "i:data:image/png",
            "t: using ",
            "i:data:image/png",
            "t:.\nOptions: ['1', '2']",
        ]),
        s(&["t:Three charts ", "i:data:image/png", "i:data:image/png"]),
    ];
    got.sort();
    want.sort();
    assert_eq!(got, want);
    // The images are the stored bytes, in placeholder order: Math 2 asks for
    // image 2 before image 1.
    use base64::Engine as _;
    let bodies = common::bodies(&o.dir.join("parallel_1_number_5"));
    let b = bodies
        .iter()
        .find(|b| b["messages"][0]["content"][0]["text"] == "Solve ")
        .unwrap();
    let img = |i: usize| {
        let u = b["messages"][0]["content"][i]["image_url"]["url"]
            .as_str()
            .unwrap()
            .split_once(',')
            .unwrap()
            .1
            .to_string();
        base64::engine::general_purpose::STANDARD.decode(u).unwrap()
    };
    assert!(img(1).starts_with(b"\x89PNG") && img(1) != img(3));

    // Without the path, or with --tokenize-prompt: refused before anything is sent.
    let e = common::run_err(&[
        "--url",
        &url,
        "--model",
        "vl",
        "--dataset",
        "mmmu_multi_image",
    ]);
    assert!(
        e.contains("--dataset-path") && e.contains("MMMU/MMMU"),
        "{e}"
    );
    let e = common::run_err(&[
        "--url",
        &url,
        "--model",
        "vl",
        "--dataset",
        "mmmu_multi_image",
        "--dataset-path",
        dir.path().to_str().unwrap(),
    ]);
    assert!(e.contains("validation-*.parquet"), "{e}");
}

/// The evalscope 1.14.1 registry names no other test runs: each against the
/// simulator with a small local file where evalscope would download one, every
/// request a success.
#[test]
fn the_remaining_registry_names_run_on_the_simulator() {
    let _g = common::lock();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.to_string_lossy().into_owned()
    };
    let alpaca = write(
        "LongAlpaca-12k.json",
        r#"[{"instruction": "Summarise the long paper below in one line."}, {"instruction": "What is the main claim?"}]"#,
    );
    let share = write(
        "common_zh_70k.jsonl",
        "{\"conversation\": [{\"human\": \"你好\", \"assistant\": \"你好！\"}, {\"human\": \"今天天气怎么样？\", \"assistant\": \"晴。\"}]}\n",
    );
    let texts = write(
        "texts.txt",
        "the quick brown fox\njumps over the lazy dog\n",
    );
    let base = sim.base_url();
    let chat = format!("{base}/v1/chat/completions");
    let v1 = format!("{base}/v1");
    let completions = format!("{base}/v1/completions");
    #[rustfmt::skip]
    let cases: Vec<Vec<&str>> = vec![
        vec!["--url", &chat, "--dataset", "longalpaca", "--dataset-path", &alpaca, "--number", "2"],
        vec!["--url", &chat, "--dataset", "share_gpt_zh", "--dataset-path", &share, "--number", "2"],
        vec!["--url", &chat, "--dataset", "share_gpt_zh_multi_turn", "--dataset-path", &share,
             "--multi-turn", "--number", "2"],
        vec!["--url", &completions, "--dataset", "speed_benchmark_long",
             "--number", "4"],
        vec!["--api", "openai_embedding", "--url", &v1, "--dataset", "embed", "--dataset-path", &texts,
             "--number", "2"],
        vec!["--api", "embedding", "--url", &v1, "--dataset", "embedding_batch", "--dataset-path",
             &texts, "--number", "2", "--extra-args", r#"{"batch_size": 2}"#],
        vec!["--api", "embedding", "--url", &v1, "--dataset", "random_embedding_batch",
             "--min-prompt-length", "8", "--max-prompt-length", "16", "--number", "2",
             "--extra-args", r#"{"batch_size": 2}"#],
        vec!["--api", "openai_rerank", "--url", &v1, "--dataset", "random_rerank",
             "--min-prompt-length", "8", "--max-prompt-length", "16", "--number", "2"],
        vec!["--api", "openai_response", "--url", &chat, "--dataset", "line_by_line",
             "--dataset-path", &texts, "--number", "2"],
        vec!["--api", "responses", "--url", &v1, "--dataset", "line_by_line", "--dataset-path", &texts,
             "--number", "2", "--no-stream"],
    ];
    for case in cases {
        let out = dir.path().join("out");
        let mut argv = case.clone();
        argv.extend([
            "--model",
            "m",
            "--max-tokens",
            "4",
            "--outputs-dir",
            out.to_str().unwrap(),
        ]);
        let o = common::run(&argv).unwrap_or_else(|e| panic!("{case:?}: {e:#}"));
        assert_eq!(o.exit_code, 0, "{case:?}");
        let step = common::files_under(&o.dir)
            .into_iter()
            .find(|p| p.ends_with("benchmark_summary.json"))
            .unwrap_or_else(|| panic!("{case:?}: no summary"));
        let s = common::json(&step);
        assert!(s["Total Requests"].as_u64().unwrap() >= 2, "{case:?}: {s}");
        assert_eq!(s["Failed Requests"], 0, "{case:?}: {s}");
    }
}
