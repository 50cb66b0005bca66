//! `--api local` / `local_vllm`: the server is started as a child process on
//! `--port`, waited for, used, and stopped at exit and on Ctrl-C. The "servers" are
//! perfscope's own simulator, started through the user command or a stand-in `vllm`
//! script that records how it was called.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_perfscope");

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn closed(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
}

#[test]
fn local_runs_the_command_and_stops_it() {
    let _g = common::lock();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let cmd = format!("{BIN} sim --port {{port}} --zero-delay");
    #[rustfmt::skip]
    let o = common::run(&[
        "--api", "local", "--model", "m", "--port", &port.to_string(), "--local-server-cmd", &cmd,
        "--number", "8", "--parallel", "2", "--outputs-dir", dir.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    assert!(closed(port), "the server is stopped when the run ends");
    let conn = common::db(&o.dir.join("parallel_2_number_8"));
    let (ok, url): (i64, String) = conn
        .query_row(
            "SELECT (SELECT SUM(success) FROM result), url FROM run",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(ok, 8);
    assert_eq!(url, format!("http://127.0.0.1:{port}/v1/chat/completions"));
    let log = std::fs::read_to_string(o.dir.join("local_server.log")).unwrap();
    assert!(log.contains("perfscope sim"), "{log}");

    // A server that dies before answering: the error shows its output.
    let e = common::run_err(&[
        "--api",
        "local",
        "--model",
        "m",
        "--port",
        &free_port().to_string(),
        "--local-server-cmd",
        "sh -c 'echo model file missing >&2; exit 3'",
        "--outputs-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        e.contains("exited") && e.contains("model file missing"),
        "{e}"
    );
    // No command installed: the error names it and the flag to use instead.
    let e = common::run_err(&[
        "--api",
        "local",
        "--model",
        "m",
        "--port",
        &free_port().to_string(),
        "--local-server-cmd",
        "/nonexistent/llama-server --port {port}",
        "--outputs-dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(
        e.contains("/nonexistent/llama-server") && e.contains("--local-server-cmd"),
        "{e}"
    );
}

/// A stand-in `vllm` on PATH: records its arguments and VLLM_* environment, then
/// serves with the simulator on the port it was given.
fn fake_vllm(dir: &Path) {
    let script = format!(
        "#!/bin/sh\necho \"$@\" > {args}\nenv | grep '^VLLM_' | sort > {env}\n\
         while [ $# -gt 0 ]; do if [ \"$1\" = --port ]; then PORT=$2; fi; shift; done\n\
         exec {BIN} sim --port $PORT --ttft-ms 20 --itl-ms 5\n",
        args = dir.join("args.txt").display(),
        env = dir.join("env.txt").display(),
    );
    let p = dir.join("vllm");
    std::fs::write(&p, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

#[test]
fn local_vllm_command_line_and_attention_backend() {
    let dir = tempfile::tempdir().unwrap();
    fake_vllm(dir.path());
    let port = free_port();
    let out = dir.path().join("out");
    let status = Command::new(BIN)
        .args([
            "perf",
            "--api",
            "local_vllm",
            "--model",
            "Qwen/Qwen2.5-0.5B-Instruct",
        ])
        .args([
            "--port",
            &port.to_string(),
            "--attn-implementation",
            "flash_attention_2",
        ])
        .args(["--number", "4", "--outputs-dir", out.to_str().unwrap()])
        .env("PATH", path_with(dir.path()))
        .env_remove("CUDA_VISIBLE_DEVICES")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    assert!(closed(port));
    let args = std::fs::read_to_string(dir.path().join("args.txt")).unwrap();
    assert!(
        args.starts_with(
            "serve Qwen/Qwen2.5-0.5B-Instruct --served-model-name Qwen/Qwen2.5-0.5B-Instruct --tensor-parallel-size "
        ) && args.trim_end().ends_with(&format!(
            "--max-model-len 32768 --gpu-memory-utilization 0.9 --host 127.0.0.1 --port {port} --trust-remote-code --disable-log-requests"
        )),
        "{args}"
    );
    let env = std::fs::read_to_string(dir.path().join("env.txt")).unwrap();
    assert_eq!(
        env,
        "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1\nVLLM_ATTENTION_BACKEND=FLASH_ATTN\nVLLM_WORKER_MULTIPROC_METHOD=spawn\n"
    );
}

#[test]
fn ctrl_c_stops_the_local_server() {
    stopped_by(libc::SIGINT, 130);
}

/// `docker stop`, Kubernetes and systemd send SIGTERM: the child server must not be
/// left behind either.
#[test]
fn sigterm_stops_the_local_server() {
    stopped_by(libc::SIGTERM, 143);
}

fn stopped_by(signal: i32, code: i32) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let cmd = format!("{BIN} sim --port {{port}} --ttft-ms 50 --itl-ms 20");
    let mut child = Command::new(BIN)
        .args([
            "perf",
            "--api",
            "local",
            "--model",
            "m",
            "--port",
            &port.to_string(),
        ])
        .args([
            "--local-server-cmd",
            &cmd,
            "--number",
            "100000",
            "--parallel",
            "2",
        ])
        .args(["--outputs-dir", dir.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let t0 = Instant::now();
    let mut pid = None;
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the local server comes up");
        if let Some(rest) = line.split("(pid ").nth(1) {
            pid = rest.split(')').next().and_then(|p| p.parse::<i32>().ok());
        }
        if line.contains("Processing") || line.contains("Connection test passed") {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(30));
    }
    let pid = pid.expect("the log names the server's pid");
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: signals our own child process.
    unsafe { libc::kill(child.id() as i32, signal) };
    let t1 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t1.elapsed() < Duration::from_secs(40),
            "perf exits after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(code));
    assert!(closed(port), "the server's port is closed");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "the server process {pid} is gone"
    );
}
