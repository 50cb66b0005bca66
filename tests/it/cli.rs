//! Every flag of evalscope's parameter reference is accepted; bad values name the flag.
use crate::common;

use clap::Parser;
use perfscope::cli::Cli;

/// (flag, type column) for every table row of the reference.
fn reference_flags() -> Vec<(String, String)> {
    let text = include_str!("../fixtures/perf-parameters.md");
    let mut out = Vec::new();
    for line in text.lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let ty = cells[2].to_string();
        for part in cells[1].split(['/', ',']) {
            let f = part.trim().trim_matches('`').trim();
            if f.starts_with("--") {
                out.push((f.to_string(), ty.clone()));
            }
        }
    }
    out
}

fn sample(flag: &str, ty: &str) -> Vec<String> {
    let v: &[&str] = match (flag, ty) {
        ("--api", _) => &["openai"],
        ("--dataset", _) => &["openqa"],
        ("--sla-variable", _) => &["rate"],
        ("--sla-params", _) => &[r#"[{"name":"ttft","operator":"<=","value":0.5}]"#],
        ("--extra-args", _) => &[r#"{"ignore_eos": true}"#],
        ("--max-tokens", _) => &["16"],
        (_, "flag") => &[],
        (_, t) if t.starts_with("int") => &["3"],
        (_, t) if t.starts_with("float") => &["0.5"],
        (_, t) if t.starts_with("key=value") => &["k1=v1", "k2=v2"],
        (_, t) if t.starts_with("str (multiple)") => &["a", "b"],
        _ => &["x"],
    };
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn every_reference_flag_parses() {
    let flags = reference_flags();
    assert!(flags.len() >= 60, "found only {} flags", flags.len());
    for (flag, ty) in &flags {
        let mut argv = vec!["perfscope".to_string(), "perf".into(), flag.clone()];
        argv.extend(sample(flag, ty));
        if flag == "--parallel" || flag == "--number" {
            // Keep the pairing valid.
            argv.extend([
                "--parallel".into(),
                "3".into(),
                "--number".into(),
                "3".into(),
            ]);
        }
        if let Err(e) = Cli::try_parse_from(&argv) {
            panic!("{flag} ({ty}) rejected: {e}");
        }
    }
    for f in ["--warmup-num", "--open-loop", "--duration", "-n"] {
        let mut argv = vec!["perfscope", "perf", f];
        if f != "--open-loop" {
            argv.push("2");
        }
        assert!(Cli::try_parse_from(&argv).is_ok(), "{f}");
    }
}

#[test]
fn defaults_match_the_reference() {
    let cfg = common::resolve(&["--model", "m"]).unwrap();
    assert_eq!(
        cfg.url.as_str(),
        "http://127.0.0.1:8877/v1/chat/completions"
    );
    assert!(cfg.chat && cfg.test_connection && cfg.gen.stream);
    assert_eq!(cfg.points.len(), 1);
    assert_eq!(
        (
            cfg.points[0].parallel,
            cfg.points[0].number,
            cfg.points[0].rate
        ),
        (1, 1000, -1.0)
    );
    assert_eq!(cfg.gen.max_tokens, (2048, 2048));
    assert_eq!(cfg.gen.temperature, 0.0);
    assert_eq!(cfg.client.total_timeout.as_secs(), 21600);
    assert_eq!(cfg.sleep_interval, 5.0);
    assert_eq!(
        (
            cfg.db_commit_interval,
            cfg.queue_size_multiplier,
            cfg.in_flight_task_multiplier
        ),
        (1000, 5, 2)
    );
    assert_eq!(cfg.log_every_n_query, 100);
    assert_eq!(cfg.outputs_dir, "outputs");
    assert_eq!(cfg.dataset.name, "openqa");
    assert_eq!(cfg.dataset.max_prompt_length, 131_072);
    // Sweep pairing, both spellings.
    let cfg = common::resolve(&[
        "--model",
        "m",
        "--parallel",
        "1",
        "5",
        "10",
        "--number",
        "100,500,1000",
    ])
    .unwrap();
    let pairs: Vec<(i64, u64)> = cfg.points.iter().map(|p| (p.parallel, p.number)).collect();
    assert_eq!(pairs, vec![(1, 100), (5, 500), (10, 1000)]);
    // URL completion and chat detection (evalscope).
    let cfg = common::resolve(&["--model", "m", "--url", "http://h:9/v1/completions"]).unwrap();
    assert!(!cfg.chat);
    let cfg = common::resolve(&["--model", "m", "--url", "http://h:9"]).unwrap();
    assert_eq!(cfg.url.as_str(), "http://h:9/v1/chat/completions");
}

fn err(args: &[&str]) -> String {
    match common::resolve(args) {
        Ok(_) => panic!("{args:?} accepted"),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn bad_values_name_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--model", "m", "--parallel", "abc"], "--parallel"),
        (&["--model", "m", "--number", "-3"], "--number"),
        (&["--model", "m", "--rate", "fast"], "--rate"),
        (
            &["--model", "m", "--max-tokens", "1", "2", "3"],
            "--max-tokens",
        ),
        (&["--model", "m", "--temperature", "hot"], "--temperature"),
        (&["--model", "m", "--extra-args", "{nope"], "--extra-args"),
        (&["--model", "m", "--headers", "novalue"], "--headers"),
        (
            &["--model", "m", "--parallel", "1", "2", "--number", "10"],
            "--parallel",
        ),
        (&["--model", "m", "--parallel", "0"], "--parallel"),
        (&["--model", "m", "--api", "grpc"], "--api"),
        (&["--model", "m", "--dataset", "nope"], "--dataset"),
        (&["--model", "m", "--url", "localhost:8000"], "--url"),
        (
            &["--model", "m", "--open-loop", "--number", "10", "20"],
            "--open-loop",
        ),
        (&["--model", "m", "--duration", "0"], "--duration"),
        (
            &["--model", "m", "--dataset", "line_by_line"],
            "--dataset-path",
        ),
        (
            &[
                "--model",
                "m",
                "--min-prompt-length",
                "10",
                "--max-prompt-length",
                "5",
            ],
            "--min-prompt-length",
        ),
        (
            &["--api", "sim", "--sim-args", r#"{"ttft": 1}"#],
            "--sim-args",
        ),
        (&["--parallel", "1"], "--model"),
    ];
    for (args, flag) in cases {
        let e = err(args);
        assert!(e.contains(flag), "{args:?}: {e}");
    }
}

#[test]
fn api_and_tokenizer_misconfiguration_fails_fast_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (
            &["--tokenizer-path", "/nonexistent/tok"],
            "--tokenizer-path",
        ),
        (&["--attn-implementation", "eager"], "--attn-implementation"),
        (&["--api", "custom"], "--api-config"),
        (&["--api-config", "x.json"], "--api-config"),
        (
            &["--api", "custom", "--api-config", "/nonexistent.json"],
            "--api-config",
        ),
        (&["--local-server-cmd", "x"], "--local-server-cmd"),
        (
            &["--api", "local", "--attn-implementation", "bogus"],
            "--attn-implementation",
        ),
        (
            &[
                "--api",
                "local",
                "--local-server-cmd",
                "srv {port}",
                "--attn-implementation",
                "sdpa",
            ],
            "--attn-implementation",
        ),
        (
            &["--api", "embedding", "--extra-args", "{\"batch_size\": 0}"],
            "batch_size",
        ),
        (
            &["--api", "rerank", "--extra-args", "{\"num_documents\": -1}"],
            "num_documents",
        ),
        (
            &[
                "--api",
                "rerank",
                "--extra-args",
                "{\"document_length_ratio\": \"x\"}",
            ],
            "document_length_ratio",
        ),
    ];
    for (args, flag) in cases {
        let mut a = vec!["--model", "m", "--api-key", "k"];
        a.extend_from_slice(args);
        let e = err(&a);
        assert!(e.contains(flag), "{args:?}: {e}");
        assert!(
            !e.contains(" k ") && !e.contains("k\n"),
            "no secret echoed: {e}"
        );
    }
}

/// evalscope 1.14.1's validation of the workload flags, each error naming its flag.
#[test]
fn workload_flags_are_validated_as_evalscope_does() {
    let m = ["--model", "m"];
    let cases: &[(&[&str], &str)] = &[
        (&["--scenario", "agentx"], "--tokenizer-path"),
        (&["--prefix-count", "0"], "--prefix-count"),
        (
            &["--prefix-count", "2", "--prefix-length", "8"],
            "--dataset random",
        ),
        (
            &["--prefix-count", "2", "--dataset", "random"],
            "--prefix-length > 0",
        ),
        (&["--dataset", "random_multi_turn"], "--multi-turn"),
        (&["--multi-turn"], "multi-turn dataset"),
        (
            &[
                "--multi-turn",
                "--dataset",
                "random_multi_turn",
                "--open-loop",
                "--rate",
                "2",
            ],
            "--open-loop",
        ),
        (
            &[
                "--multi-turn",
                "--dataset",
                "random_multi_turn",
                "--min-turns",
                "3",
                "--max-turns",
                "2",
            ],
            "--max-turns",
        ),
        (
            &["--dataset-args", r#"{"speed": 2}"#],
            "unknown key `speed`",
        ),
        (
            &["--dataset", "random", "--dataset-args", r#"{"x": 1}"#],
            "takes no keys",
        ),
        (
            &["--dataset-args", r#"{"target_input_len": 64}"#],
            "--tokenizer-path",
        ),
        (
            &["--dataset-args", r#"{"input_len_mode": "trim"}"#],
            "input_len_mode",
        ),
        (&["--multi-turn-args", "[1]"], "--multi-turn-args"),
        (
            &["--dataset", "mooncake_trace", "--dataset-path", "t.jsonl"],
            "--open-loop",
        ),
        (
            &["--dataset", "mooncake_trace", "--open-loop", "--rate", "-1"],
            "--dataset-path",
        ),
        (&["--trace-speedup", "0"], "--trace-speedup"),
        (&["--num-workers", "-1"], "--num-workers"),
        (&["--data-source", "s3"], "--data-source"),
        (&["--tokenize-prompt"], "--tokenizer-path"),
    ];
    for (args, want) in cases {
        let argv: Vec<&str> = m.iter().chain(args.iter()).copied().collect();
        let e = err(&argv);
        assert!(e.contains(want), "{args:?}: {e}");
    }
    // Multi-turn keys folded from --multi-turn-args are checked against the dataset.
    let e = err(&[
        "--model",
        "m",
        "--multi-turn-args",
        r#"{"first_turn_length": 10}"#,
    ]);
    assert!(e.contains("first_turn_length"), "{e}");
    let ok = common::resolve(&[
        "--model",
        "m",
        "--multi-turn",
        "--dataset",
        "random_multi_turn",
        "--max-turns",
        "3",
        "--multi-turn-args",
        r#"{"first_turn_length": 10}"#,
        "--alias",
        "nightly",
    ])
    .unwrap();
    assert_eq!(ok.turns.map(|t| t.max), Some(Some(3)));
    assert_eq!(ok.alias.as_deref(), Some("nightly"));
}

/// A dataset setting the dataset will refuse fails before anything is written or
/// sent: no output directory, no connection test (the URL here has no server).
#[test]
fn a_refused_dataset_setting_fails_before_the_connection_test_and_the_directory() {
    let out = tempfile::tempdir().unwrap();
    let root = out.path().join("outputs");
    let err = common::run_err(&[
        "--url",
        "http://127.0.0.1:9/v1/chat/completions",
        "--model",
        "m",
        "--dataset",
        "random_multi_turn",
        "--multi-turn",
        "--max-turns",
        "2",
        "--min-prompt-length",
        "10",
        "--max-prompt-length",
        "5000000",
        "--outputs-dir",
        root.to_str().unwrap(),
    ]);
    assert!(
        err.contains("--max-prompt-length 5000000 is more than this dataset generates"),
        "{err}"
    );
    assert!(!root.exists(), "no output directory");
    // And evalscope 1.14.1's default cap (131072) is accepted without the flag.
    let cfg = common::resolve(&[
        "--model",
        "m",
        "--dataset",
        "random_multi_turn",
        "--multi-turn",
        "--max-turns",
        "2",
    ])
    .unwrap();
    assert!(perfscope::dataset::preflight(&cfg.dataset).is_ok());
}

/// A --max-tokens beyond the model's context fails at the connection test with the
/// server's own refusal (vLLM answers 400 before scheduling), as evalscope's
/// full-size test does, instead of failing every request of the run; one that fits
/// passes and runs.
#[test]
fn a_max_tokens_beyond_the_context_fails_at_the_connection_test() {
    let _g = common::lock();
    let sim = common::start_sim(perfscope::sim::SimConfig {
        zero_delay: true,
        max_model_len: Some(512),
        ..Default::default()
    });
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let args = |max: &'static str| {
        vec![
            "--url".to_string(),
            url.clone(),
            "--model".into(),
            "m".into(),
            "--max-tokens".into(),
            max.into(),
            "--number".into(),
            "4".into(),
            "--outputs-dir".into(),
            out.path().to_str().unwrap().into(),
            "--metrics-addr".into(),
            "off".into(),
        ]
    };
    let refused: Vec<String> = args("1024");
    let refused: Vec<&str> = refused.iter().map(String::as_str).collect();
    let err = common::run_err(&refused);
    assert!(
        err.contains("the server refuses the run's --max-tokens 1024")
            && err.contains("maximum context length is 512 tokens")
            && err.contains("Lower --max-tokens"),
        "{err}"
    );
    let fits: Vec<String> = args("64");
    let fits: Vec<&str> = fits.iter().map(String::as_str).collect();
    let o = common::run(&fits).unwrap();
    assert_eq!(o.exit_code, 0);
    let ok: i64 = common::db(&o.dir.join("parallel_1_number_4"))
        .query_row("SELECT SUM(success) FROM result", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, 4);
}

/// evalscope 1.14.1's warmup note: with parallel > 1 and fewer warmup requests
/// than slots the log says the first burst meets an idle server and what to pass.
#[test]
fn a_run_without_enough_warmup_says_so() {
    let log = |warmup: &str| {
        let ran = common::Bench::sim_with(perfscope::sim::SimConfig {
            zero_delay: true,
            ..Default::default()
        })
        .parallel(4)
        .number(8)
        .args(&["--warmup-num", warmup])
        .run();
        assert_eq!(ran.outcome.exit_code, 0);
        std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap()
    };
    let none = log("0");
    assert!(
        none.contains("Warmup is disabled, so the first 4 measured requests are released at once")
            && none.contains("Pass --warmup-num 4"),
        "{none}"
    );
    let part = log("2");
    assert!(
        part.contains("Warmup covers only 2 of the 4 concurrency slots"),
        "{part}"
    );
    let enough = log("4");
    assert!(
        !enough.contains("Warmup is disabled") && !enough.contains("Warmup covers"),
        "enough warmup: no note"
    );
}

/// Every `--dataset` and `--api` name perfscope accepts is in `perf --help` and in
/// docs/datasets-and-apis.md, and every listed dataset name parses: the lists cannot
/// drift from the code again.
#[test]
fn every_dataset_and_api_name_is_in_the_help_and_the_docs() {
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args(["perf", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    let docs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/datasets-and-apis.md"),
    )
    .unwrap();
    let datasets: Vec<String> = perfscope::dataset::DatasetKind::ALL
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    assert!(datasets.len() >= 23, "{datasets:?}");
    let apis: Vec<String> = perfscope::config::Api::ALL
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    for (alias, to) in perfscope::dataset::DatasetKind::ALIASES {
        assert_eq!(
            perfscope::dataset::DatasetKind::from_name(alias),
            perfscope::dataset::DatasetKind::from_name(to),
            "{alias}"
        );
        assert!(datasets.contains(&to.to_string()), "{alias} -> {to}");
    }
    for name in datasets.iter().chain(&apis) {
        let word = |text: &str| {
            text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .any(|w| w == name)
        };
        assert!(word(&help), "`{name}` missing from perf --help");
        assert!(
            docs.contains(&format!("`{name}`")),
            "`{name}` missing from docs/datasets-and-apis.md"
        );
    }
    for api in &apis {
        let cfg = common::resolve(&["--model", "m", "--api", api]);
        assert!(
            cfg.is_ok() || !format!("{:#}", cfg.as_ref().err().unwrap()).contains("unknown API"),
            "{api} is listed but not accepted"
        );
    }
}

/// `perfscope perf --help` explains itself: every option has a description and sits
/// under a heading, and there are at least 5 headings.
#[test]
fn every_perf_option_is_described_under_a_heading() {
    use clap::CommandFactory;
    let cmd = Cli::command();
    let perf = cmd
        .get_subcommands()
        .find(|c| c.get_name() == "perf")
        .unwrap();
    let mut undescribed = Vec::new();
    let mut unheaded = Vec::new();
    let mut headings = std::collections::BTreeSet::new();
    for a in perf.get_arguments() {
        let Some(long) = a.get_long() else { continue };
        if long == "help" {
            continue;
        }
        if a.get_help().is_none_or(|h| h.to_string().trim().is_empty()) {
            undescribed.push(long.to_string());
        }
        match a.get_help_heading() {
            Some(h) => {
                headings.insert(h.to_string());
            }
            None => unheaded.push(long.to_string()),
        }
    }
    assert!(undescribed.is_empty(), "no description: {undescribed:?}");
    assert!(unheaded.is_empty(), "no heading: {unheaded:?}");
    assert!(headings.len() >= 5, "{headings:?}");
}

/// `perf --args-file`: evalscope's argument names as JSON resolve to exactly the
/// configuration the same flags give (switches, `false` as `--no-…`, lists, header
/// objects, JSON objects, null left out); an unknown key is refused by name.
#[test]
fn args_file_resolves_like_the_same_flags() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("args.json");
    std::fs::write(
        &file,
        r#"{"model": "m", "api": "sim", "parallel": [1, 2], "number": [4, 8],
            "stream": false, "headers": {"X-Team": "perf"}, "extra_args": {"ignore_eos": true},
            "max_tokens": 16, "temperature": 0.5, "func": null, "api_key": null,
            "debug": false, "prompt": "-starts with a dash",
            "goodput": ["ttft:500", "tpot:50"], "sla_params": [{"p99_ttft": "<=500"}]}"#,
    )
    .unwrap();
    let a = perfscope::cli::perf_args_from_file(file.to_str().unwrap()).unwrap();
    let from_json = perfscope::config::RunConfig::resolve(&a).unwrap();
    let from_flags = common::resolve(&[
        "--model",
        "m",
        "--api",
        "sim",
        "--parallel",
        "1",
        "2",
        "--number",
        "4",
        "8",
        "--no-stream",
        "--headers",
        "X-Team=perf",
        "--extra-args",
        r#"{"ignore_eos":true}"#,
        "--max-tokens",
        "16",
        "--temperature",
        "0.5",
        "--prompt=-starts with a dash",
        "--goodput",
        "ttft:500",
        "tpot:50",
        "--sla-params",
        r#"[{"p99_ttft":"<=500"}]"#,
    ])
    .unwrap();
    assert_eq!(
        serde_json::Value::Object(from_json.args_json.clone()),
        serde_json::Value::Object(from_flags.args_json.clone())
    );
    assert_eq!(a.parallel, vec![1, 2]);
    assert!(a.no_stream);
    assert_eq!(a.prompt.as_deref(), Some("-starts with a dash"));

    std::fs::write(&file, r#"{"model": "m", "parallell": 2}"#).unwrap();
    let e = perfscope::cli::perf_args_from_file(file.to_str().unwrap()).unwrap_err();
    assert!(
        format!("{e:#}").contains("`parallell` is not a perf argument"),
        "{e:#}"
    );
    std::fs::write(&file, r#"{"model": "m", "parallel": "x"}"#).unwrap();
    let e = perfscope::cli::perf_args_from_file(file.to_str().unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("--parallel"), "{e:#}");
    std::fs::write(&file, r#"{"model": "m", "stream": "yes"}"#).unwrap();
    let e = perfscope::cli::perf_args_from_file(file.to_str().unwrap()).unwrap_err();
    assert!(format!("{e:#}").contains("`stream` is a switch"), "{e:#}");
    // Given with other flags, it is refused rather than merged.
    assert!(
        Cli::try_parse_from(["perfscope", "perf", "--args-file", "x.json", "--model", "m"])
            .is_err()
    );
}
