//! The `perfscope` binary end to end: the quick start, exit codes, Ctrl-C, SIGTERM.
use crate::common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfscope"))
}

#[test]
fn quick_start_shape_runs_and_prints_tables() {
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = bin()
        .args([
            "perf", "--api", "sim", "--model", "sim-7b", "--parallel", "1", "4", "--number", "4", "16",
            "--sleep-interval", "0", "--outputs-dir", out.path().to_str().unwrap(),
            "--sim-args", r#"{"zero_delay": true}"#,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    for needle in [
        "Performance Overview",
        "Per-Request Metrics",
        "│ Metrics ",
        "Highest RPS",
        "── General ──",
    ] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    assert!(stderr.contains("Connection test passed"), "{stderr}");
    // Not a terminal: progress is logged as lines every --log-every-n-query (100,
    // evalscope 1.14.1's default): none in a run of 16.
    assert!(
        stderr.contains("parallel_4_number_16: 16 requests in")
            && !stderr.contains("parallel_4_number_16: {\"Total Requests\":10"),
        "{stderr}"
    );
}

#[test]
fn exit_code_2_for_bad_flags_naming_the_flag() {
    let o = bin()
        .args([
            "perf",
            "--model",
            "m",
            "--parallel",
            "1",
            "2",
            "--number",
            "5",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--parallel"));
    let o = bin()
        .args(["perf", "--model", "m", "--temperature", "warm"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--temperature"));
}

#[test]
fn sigint_sigterm_and_sighup_drain_write_the_summary_and_exit_128_plus_signal() {
    let _g = common::lock();
    for (signal, code, name) in [
        ("-INT", 130, "SIGINT"),
        ("-TERM", 143, "SIGTERM"),
        ("-HUP", 129, "SIGHUP"),
    ] {
        let sim = common::start_sim(perfscope::sim::SimConfig {
            ttft_ms: Some(10.0),
            itl_ms: Some(10.0),
            min_output_len: 10,
            max_output_len: 10,
            ..Default::default()
        });
        let url = format!("{}/v1/chat/completions", sim.base_url());
        let out = tempfile::tempdir().unwrap();
        #[rustfmt::skip]
        let mut child = bin()
            .args([
                "perf", "--url", &url, "--model", "sim-7b", "--parallel", "4", "--number", "100000",
                "--no-test-connection", "--metrics-addr", "off",
                "--outputs-dir", out.path().to_str().unwrap(), "--no-timestamp",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let t = Instant::now();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "{signal}");
        // In-flight requests (about 0.1 s each) finished well within the grace period.
        assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
        let dir = out.path().join("sim-7b").join("parallel_4_number_100000");
        let conn = rusqlite::Connection::open(dir.join("benchmark_data.db")).unwrap();
        let (rows, ok): (i64, i64) = conn
            .query_row("SELECT COUNT(*), SUM(success) FROM result", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert!(rows > 10 && rows < 100000, "{rows}");
        assert_eq!(
            ok, rows,
            "in-flight requests completed during the grace period"
        );
        // Every request the server saw is a row, and no row is a request it never saw.
        let seen = sim
            .sim
            .requests_total
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(seen, rows as u64, "{signal}");
        let (status, reason): (String, String) = conn
            .query_row("SELECT status, stop_reason FROM run", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((status.as_str(), reason.as_str()), ("interrupted", name));
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("benchmark_summary.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(summary["Total Requests"].as_i64().unwrap(), rows);
        assert!(out
            .path()
            .join("sim-7b")
            .join("performance_summary.txt")
            .exists());
    }
}

#[test]
fn bad_inputs_are_one_line_naming_the_flag_with_exit_2() {
    let missing = "/nonexistent/prompts.txt";
    #[rustfmt::skip]
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--max-tokens", "0"], "--max-tokens"),
        (vec!["--api-key", "sk-a\nb"], "--api-key"),
        (vec!["--sla-params", "not json"], "--sla-params"),
        (vec!["--dataset", "line_by_line", "--dataset-path", missing], "--dataset-path"),
        (vec!["--prompt", "@/nonexistent/p.txt"], "--prompt"),
        (vec!["--tokenizer-path", "/nonexistent/tok"], "--tokenizer-path"),
        (vec!["--max-response-mib", "0"], "--max-response-mib"),
    ];
    let out = tempfile::tempdir().unwrap();
    for (args, flag) in cases {
        #[rustfmt::skip]
        let o = bin()
            .args(["perf", "--model", "m", "--url", "http://127.0.0.1:9/v1/chat/completions",
                   "--no-test-connection", "--number", "1", "--metrics-addr", "off",
                   "--outputs-dir", out.path().to_str().unwrap()])
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        let line = err
            .lines()
            .find(|l| l.starts_with("error:"))
            .unwrap_or_else(|| panic!("{args:?}: no error line in {err}"));
        assert!(line.contains(flag), "{args:?}: {line}");
        assert!(
            !err.contains("panicked") && !err.contains("backtrace"),
            "{err}"
        );
        assert!(!err.contains("sk-a"), "the key is never echoed: {err}");
    }
}

#[test]
fn version_names_the_version_and_the_commit() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .arg("--version")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        text,
        format!("perfscope {} ({commit})", env!("CARGO_PKG_VERSION"))
    );
}

/// `perfscope completions bash` completes `--api` and `--dataset` values from the
/// same tables the configuration selects by (run in a real bash), and `perfscope
/// man` writes a page per command naming every `perf` option.
#[test]
fn completions_and_man_pages_come_from_the_flag_definitions() {
    use clap::CommandFactory;
    let bin = env!("CARGO_BIN_EXE_perfscope");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("perfscope.bash");
    let out = std::process::Command::new(bin)
        .args(["completions", "bash"])
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&script, &out.stdout).unwrap();
    let complete = |flag: &str, prefix: &str| -> Vec<String> {
        let cmd = format!(
            "source '{}'; COMP_WORDS=(perfscope perf {flag} {prefix}); COMP_CWORD=3; \
             _perfscope perfscope '{prefix}' {flag}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display()
        );
        let out = std::process::Command::new("bash")
            .args(["-c", &cmd])
            .output()
            .unwrap();
        let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    // The table's names with the prefix, sorted as the completion is.
    let starting = |names: Vec<&str>, prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = names
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .map(str::to_string)
            .collect();
        v.sort();
        v
    };
    let apis = perfscope::config::Api::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(complete("--api", "op"), starting(apis, "op"));
    let datasets = perfscope::dataset::DatasetKind::ALL
        .iter()
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(
        complete("--dataset", "share_gpt"),
        starting(datasets, "share_gpt")
    );

    for shell in ["zsh", "fish"] {
        let out = std::process::Command::new(bin)
            .args(["completions", shell])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("mooncake_trace") && text.contains("--sla-params"),
            "{shell}"
        );
    }

    let man = dir.path().join("man");
    let st = std::process::Command::new(bin)
        .args(["man", "--dir"])
        .arg(&man)
        .status()
        .unwrap();
    assert!(st.success());
    let page = std::fs::read_to_string(man.join("perfscope-perf.1")).unwrap();
    let cli = perfscope::cli::Cli::command();
    let perf = cli.find_subcommand("perf").unwrap();
    for arg in perf.get_arguments() {
        if let Some(long) = arg.get_long() {
            // roff escapes the dashes: \-\-sla\-params.
            let escaped = format!("\\-\\-{}", long.replace('-', "\\-"));
            assert!(
                page.contains(&escaped),
                "--{long} missing from perfscope-perf.1"
            );
        }
    }
    for sub in ["sim", "compare", "serve", "completions"] {
        assert!(man.join(format!("perfscope-{sub}.1")).exists(), "{sub}");
    }
}
