//! Every shell block of README.md and docs/ that targets the simulator runs as
//! written: the guides cannot rot. `cargo run --release [--features …] --` and
//! `perfscope` run this build's binary, `target/release/perfscope` is that binary,
//! `cargo build`/`cargo test` are no-ops (this is the test run); each block runs in
//! its own directory (examples/ and scripts/ linked in) and its own process group,
//! killed afterwards so a server it started in the background does not outlive it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A shell block: its file, first line and text.
struct Block {
    file: String,
    line: usize,
    text: String,
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Fenced blocks tagged bash/sh/shell (or untagged) in README.md and docs/**.md.
fn shell_blocks() -> Vec<Block> {
    let mut files = vec![repo().join("README.md")];
    let mut stack = vec![repo().join("docs")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "md") {
                files.push(p);
            }
        }
    }
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let mut open: Option<(usize, bool, Vec<&str>)> = None;
        for (i, line) in text.lines().enumerate() {
            let fence = line.trim_start().strip_prefix("```");
            match (&mut open, fence) {
                (None, Some(lang)) => {
                    let shell = matches!(lang.trim(), "" | "bash" | "sh" | "shell");
                    open = Some((i + 1, shell, Vec::new()));
                }
                (Some((start, shell, body)), Some(_)) => {
                    if *shell {
                        out.push(Block {
                            file: f
                                .strip_prefix(repo())
                                .unwrap()
                                .to_string_lossy()
                                .into_owned(),
                            line: *start,
                            text: body.join("\n"),
                        });
                    }
                    open = None;
                }
                (Some((_, _, body)), None) => body.push(line),
                (None, None) => {}
            }
        }
    }
    out
}

/// A block that runs perfscope against the simulator.
fn targets_the_simulator(b: &Block) -> bool {
    (b.text.contains("--api sim")
        || b.text.contains("perfscope sim")
        || b.text.contains(r#""api": "sim""#))
        && (b.text.contains("perfscope") || b.text.contains("cargo run"))
}

/// `cargo` and `perfscope` as the blocks call them, backed by this build's binary.
fn shims(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = env!("CARGO_BIN_EXE_perfscope");
    std::fs::write(
        bin.join("perfscope"),
        format!("#!/bin/sh\nexec '{exe}' \"$@\"\n"),
    )
    .unwrap();
    std::fs::write(
        bin.join("cargo"),
        format!(
            "#!/bin/sh\n\
             case \"$1\" in\n\
               run) while [ $# -gt 0 ] && [ \"$1\" != -- ]; do shift; done; shift; exec '{exe}' \"$@\" ;;\n\
               build|test) exit 0 ;;\n\
               *) echo \"docs test: unexpected cargo $*\" >&2; exit 97 ;;\n\
             esac\n"
        ),
    )
    .unwrap();
    for f in ["perfscope", "cargo"] {
        std::fs::set_permissions(
            bin.join(f),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
    }
    bin
}

/// Runs one block in its own directory; returns its combined output on failure.
fn run_block(b: &Block, root: &Path, bin: &Path, index: usize) -> Result<(), String> {
    let dir = root.join(format!("block{index}"));
    std::fs::create_dir_all(dir.join("target/release")).unwrap();
    for linked in ["examples", "scripts", "dashboards", "deploy", "tests"] {
        std::os::unix::fs::symlink(repo().join(linked), dir.join(linked)).unwrap();
    }
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_perfscope"),
        dir.join("target/release/perfscope"),
    )
    .unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let log = dir.join("block.log");
    let mut child = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &b.text])
        .current_dir(&dir)
        .env("PATH", path)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.join("block.err")).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(600);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Whatever the block left in the background (a `perfscope sim &`) goes too.
    unsafe {
        libc::killpg(child.id() as i32, libc::SIGKILL);
    }
    let _ = child.wait();
    eprintln!(
        "{}:{}: {:.1} s",
        b.file,
        b.line,
        started.elapsed().as_secs_f64()
    );
    let output = || {
        let err = std::fs::read_to_string(dir.join("block.err")).unwrap_or_default();
        let tail: Vec<&str> = err.lines().rev().take(15).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    match status {
        None => Err(format!(
            "{}:{}: still running after 600 s\n{}",
            b.file,
            b.line,
            output()
        )),
        Some(s) if !s.success() => Err(format!("{}:{}: {s}\n{}", b.file, b.line, output())),
        Some(_) => {
            // A perf block leaves a run with a summary behind.
            let wrote = b.text.contains(" perf ") || b.text.contains(" perf\\");
            if wrote && !has_summary(&dir) {
                return Err(format!(
                    "{}:{}: no benchmark_summary.json written",
                    b.file, b.line
                ));
            }
            Ok(())
        }
    }
}

fn has_summary(dir: &Path) -> bool {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| {
                n == "benchmark_summary.json"
                    || n == "sla_summary.json"
                    || n == "agentx_summary.json"
            }) {
                return true;
            }
        }
    }
    false
}

#[test]
fn every_simulator_shell_block_in_the_docs_runs_as_written() {
    let blocks: Vec<Block> = shell_blocks()
        .into_iter()
        .filter(targets_the_simulator)
        .filter(|b| {
            // The OTLP/gRPC example needs the optional feature in this build.
            let needs_grpc = b.text.contains("--features otlp-grpc");
            if needs_grpc && !cfg!(feature = "otlp-grpc") {
                eprintln!(
                    "SKIPPED {}:{}: needs --features otlp-grpc (cargo test --all-features runs it)",
                    b.file, b.line
                );
                return false;
            }
            true
        })
        .collect();
    // The README quick start and the guides are among them.
    for must in [
        "README.md",
        "docs/install.md",
        "docs/guides/vllm.md",
        "docs/guides/watch-live.md",
        "docs/guides/wandb.md",
        "docs/guides/ci-gate.md",
        "docs/guides/kubernetes.md",
    ] {
        assert!(
            blocks.iter().any(|b| b.file == must),
            "no simulator block found in {must}"
        );
    }
    for program in ["python3", "taskset", "/usr/bin/time", "curl"] {
        if blocks.iter().any(|b| b.text.contains(program)) && !crate::common::external(program) {
            return;
        }
    }
    let root = tempfile::tempdir().unwrap();
    let bin = shims(root.path());
    let bin = bin.as_path();
    // A block that starts Prometheus reads the default /metrics port (9464), which
    // the others may hold: it runs after them, alone. The rest run all at once: most
    // of their time is the simulator's delays.
    let alone = |b: &Block| b.text.contains("prometheus ");
    let mut failures: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .iter()
            .enumerate()
            .filter(|(_, b)| !alone(b))
            .map(|(i, b)| {
                let root = root.path();
                s.spawn(move || run_block(b, root, bin, i))
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| h.join().unwrap().err())
            .collect()
    });
    for (i, b) in blocks.iter().enumerate().filter(|(_, b)| alone(b)) {
        if !crate::common::external("prometheus") {
            continue;
        }
        if let Err(e) = run_block(b, root.path(), bin, i) {
            failures.push(e);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} blocks failed:\n{}",
        failures.len(),
        blocks.len(),
        failures.join("\n\n")
    );
}
