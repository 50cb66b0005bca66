//! Faults outside the server: a closed console, a database another process holds
//! locked, a full disk. Each run is the perfscope binary against an in-process
//! simulator whose own counter says how many requests it served; every one of them
//! must be a row.
use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_perfscope"))
}

/// A simulator whose requests take 10 ms to the first token, then 9 tokens 10 ms
/// apart (about 0.1 s each).
fn sim() -> perfscope::sim::SimHandle {
    common::start_sim(perfscope::sim::SimConfig {
        ttft_ms: Some(10.0),
        itl_ms: Some(10.0),
        min_output_len: 10,
        max_output_len: 10,
        ..Default::default()
    })
}

/// `perfscope perf` against `sim` into `out`, with `extra` flags.
fn perf(sim: &perfscope::sim::SimHandle, out: &Path, extra: &[&str]) -> Command {
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let mut c = bin();
    #[rustfmt::skip]
    c.args([
        "perf", "--url", &url, "--model", "sim-7b", "--no-test-connection",
        "--metrics-addr", "off", "--server-metrics", "off",
        "--outputs-dir", out.to_str().unwrap(), "--no-timestamp",
    ])
    .args(extra);
    c
}

/// The run row's status and stop reason, and the rows: (count, successes,
/// cancelled).
fn stored(db: &Path) -> (String, Option<String>, i64, i64, i64) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let (status, reason) = conn
        .query_row("SELECT status, stop_reason FROM run", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let (n, ok, cancelled) = conn
        .query_row(
            "SELECT COUNT(*), COALESCE(SUM(success),0), COALESCE(SUM(failure_kind='cancelled'),0) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    (status, reason, n, ok, cancelled)
}

fn served(sim: &perfscope::sim::SimHandle) -> i64 {
    sim.sim.requests_total.load(Ordering::Relaxed) as i64
}

fn wait_for(path: &Path, limit: Duration) {
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < limit, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait(child: &mut Child, limit: Duration) -> i32 {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s.code().unwrap_or(-1);
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            panic!("the run did not end within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends SIGTERM; the process must exit 143 within 5 s.
fn sigterm_exits_within_5_s(child: &mut Child) {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let t = Instant::now();
    let code = wait(child, Duration::from_secs(30));
    assert_eq!(code, 143);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn a_closed_stderr_and_stdout_neither_stop_the_run_nor_lose_rows() {
    let _g = common::lock();
    let sim = sim();
    let out = tempfile::tempdir().unwrap();
    // `perfscope perf … 2>&1 | head -c 200`: both pipes close after 200 bytes, while
    // a log line is written every request.
    let mut child = perf(
        &sim,
        out.path(),
        &[
            "--parallel",
            "8",
            "--number",
            "400",
            "--log-every-n-query",
            "1",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut head = [0u8; 200];
    child
        .stderr
        .as_mut()
        .unwrap()
        .read_exact(&mut head)
        .unwrap();
    drop(child.stderr.take());
    drop(child.stdout.take());
    let code = wait(&mut child, Duration::from_secs(60));
    assert_eq!(code, 0);
    let root = out.path().join("sim-7b");
    let (status, reason, n, ok, _) = stored(&root.join("parallel_8_number_400/benchmark_data.db"));
    assert_eq!((status.as_str(), reason), ("completed", None));
    assert_eq!((n, ok), (400, 400));
    assert_eq!(served(&sim), 400);
    assert!(root.join("performance_summary.txt").exists());
    let log = std::fs::read_to_string(root.join("benchmark.log")).unwrap();
    assert!(log.contains("stderr is closed"), "{log}");
    // The log file kept every line after the console closed: 400 progress lines.
    assert_eq!(log.matches("parallel_8_number_400: {").count(), 400);
}

#[test]
fn a_database_locked_for_8_s_is_waited_out_and_every_row_stored() {
    let _g = common::lock();
    let sim = sim();
    let out = tempfile::tempdir().unwrap();
    let mut child = perf(&sim, out.path(), &["--parallel", "16", "--number", "1000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = out.path().join("sim-7b/parallel_16_number_1000");
    let db = dir.join("benchmark_data.db");
    wait_for(&db, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(500));
    // Another process's exclusive lock (sqlite3's `BEGIN EXCLUSIVE`), held 8 s:
    // longer than the run itself takes (about 7 s).
    let other = rusqlite::Connection::open(&db).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let locked = Instant::now();
    std::thread::sleep(Duration::from_secs(8));
    other.execute_batch("COMMIT").unwrap();
    drop(other);
    let code = wait(&mut child, Duration::from_secs(60));
    assert_eq!(code, 0);
    assert!(locked.elapsed() >= Duration::from_secs(8));
    let (status, _, n, ok, _) = stored(&db);
    assert_eq!(status, "completed");
    assert_eq!((n, ok), (1000, 1000));
    assert_eq!(served(&sim), 1000);
    let log = std::fs::read_to_string(out.path().join("sim-7b/benchmark.log")).unwrap();
    assert!(log.contains("is locked by another process"), "{log}");
    assert!(log.contains("the lock was released after"), "{log}");
    let summary = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(summary["Total Requests"].as_i64(), Some(1000));
}

/// A tmpfs of `mib` MiB mounted on a fresh directory, unmounted on drop. None when
/// this process may not mount (not root, or no CAP_SYS_ADMIN), unless
/// PERFSCOPE_REQUIRE_EXTERNAL=1.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(mib: u64) -> Option<Tmpfs> {
        let d = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(d.path())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            if std::env::var("PERFSCOPE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
                panic!("mounting a tmpfs is required (PERFSCOPE_REQUIRE_EXTERNAL=1) but this process may not mount; run as root");
            }
            eprintln!("SKIPPED: cannot mount a tmpfs (needs root); the full-disk test did not run");
            return None;
        }
        Some(Tmpfs(d))
    }
    fn path(&self) -> PathBuf {
        self.0.path().to_path_buf()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// Fills the filesystem holding `dir` until a write fails with "no space".
fn fill(dir: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let chunk = vec![7u8; 64 << 10];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => break,
            Err(e) => panic!("filling the disk: {e}"),
        }
    }
    let _ = f.flush();
}

#[test]
fn a_full_disk_stops_dispatch_stores_every_row_and_exits_74() {
    let _g = common::lock();
    let Some(disk) = Tmpfs::mount(48) else {
        return;
    };
    // Requests of about 0.3 s, as a real server's: the writer learns of the full
    // disk at its next commit (within 100 ms), so dispatch stops within a fraction
    // of a request time.
    let sim = common::start_sim(perfscope::sim::SimConfig {
        ttft_ms: Some(10.0),
        itl_ms: Some(30.0),
        min_output_len: 10,
        max_output_len: 10,
        ..Default::default()
    });
    let out = disk.path().join("out");
    let parallel = 16;
    let mut child = perf(&sim, &out, &["--parallel", "16", "--number", "3000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let dir = out.join("sim-7b/parallel_16_number_3000");
    let db = dir.join("benchmark_data.db");
    wait_for(&db, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1500));
    fill(&disk.path());
    let full_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let code = wait(&mut child, Duration::from_secs(60));
    assert_eq!(code, 74, "the store's own exit code");
    let (status, reason, n, ok, cancelled) = stored(&db);
    assert_eq!(status, "failed");
    let reason = reason.unwrap_or_default();
    assert!(reason.contains("the disk is full"), "{reason}");
    assert!(!reason.contains("not stored"), "{reason}");
    // Every request the server saw is a row: those it finished, and those in
    // flight when the run stopped, as cancelled rows.
    let seen = served(&sim);
    assert!(
        n >= seen && n - seen <= cancelled,
        "{n} rows, {seen} served"
    );
    assert!(n > 100 && n < 3000, "{n}");
    assert_eq!(ok + cancelled, n);
    assert!(cancelled <= parallel, "{cancelled}");
    // Dispatch stopped within 2 × parallel requests of the disk filling.
    let conn = rusqlite::Connection::open(&db).unwrap();
    let after: i64 = conn
        .query_row(
            "SELECT COUNT(*) FROM result WHERE start_unix > ?1",
            [full_at],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        after <= 2 * parallel,
        "{after} requests started after the disk filled"
    );
    // The summary of what was stored, and the report says the run was cut short.
    let summary = common::json(&dir.join("benchmark_summary.json"));
    assert_eq!(summary["Total Requests"].as_i64(), Some(n));
    let text = std::fs::read_to_string(out.join("sim-7b/performance_summary.txt")).unwrap();
    assert!(
        text.contains("was cut short: failed (the disk is full"),
        "{text}"
    );
    assert!(!out
        .join("sim-7b")
        .join(perfscope::store::RESERVE_FILE)
        .exists());
    let o = bin()
        .args(["report", out.join("sim-7b").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("was cut short: failed"), "{stderr}");
}

#[test]
fn a_report_of_a_run_that_never_finished_says_so() {
    // A run killed before it closed its row (SIGKILL, a power cut): status stays
    // `running`.
    let out = tempfile::tempdir().unwrap();
    let sim = sim();
    let mut child = perf(&sim, out.path(), &["--parallel", "4", "--number", "100000"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let db = out
        .path()
        .join("sim-7b/parallel_4_number_100000/benchmark_data.db");
    wait_for(&db, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(1000));
    child.kill().unwrap();
    child.wait().unwrap();
    let o = bin()
        .args(["report", out.path().join("sim-7b").to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("it never finished"), "{stderr}");
}

#[test]
fn sigterm_during_the_sla_search_exits_143_with_the_partial_sla_summary() {
    let _g = common::lock();
    let out = tempfile::tempdir().unwrap();
    // Each value runs twice with --sleep-interval 5 between runs: the signal comes
    // in the first pause.
    #[rustfmt::skip]
    let mut child = bin()
        .args([
            "perf", "--api", "sim", "--model", "sim-7b", "--metrics-addr", "off",
            "--sla-auto-tune", "--sla-params", r#"[{"p99_ttft": "<=50"}]"#,
            "--sla-num-runs", "2", "--sla-upper-bound", "16", "--sleep-interval", "5",
            "--sim-args", r#"{"zero_delay": true}"#,
            "--outputs-dir", out.path().to_str().unwrap(), "--no-timestamp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let root = out.path().join("sim-7b");
    wait_for(
        &root.join("sla_tuning/sla_parallel_1_run_0/benchmark_summary.json"),
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_millis(500));
    sigterm_exits_within_5_s(&mut child);
    let summary = common::json(&root.join("sla_summary.json"));
    assert!(summary.get("parallel_1").is_some(), "{summary}");
    assert!(!root.join("sla_tuning/sla_parallel_1_run_1").exists());
    let log = std::fs::read_to_string(root.join("benchmark.log")).unwrap();
    assert!(
        log.contains("Interrupted: the search did not finish"),
        "{log}"
    );
}

#[test]
fn concurrent_runs_into_one_outputs_dir_never_share_a_directory_or_a_log() {
    let _g = common::lock();
    let sim = sim();
    let out = tempfile::tempdir().unwrap();
    let start = |extra: &[&str]| {
        let url = format!("{}/v1/chat/completions", sim.base_url());
        #[rustfmt::skip]
        let c = bin()
            .args(["perf", "--url", &url, "--model", "sim-7b", "--no-test-connection",
                   "--metrics-addr", "off", "--server-metrics", "off", "--parallel", "2",
                   "--outputs-dir", out.path().to_str().unwrap()])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c
    };
    // Timestamped: both run, each in its own directory (`<stamp>_2` when they
    // start in the same second).
    let (a, b) = (start(&["--number", "20"]), start(&["--number", "20"]));
    for c in [a, b] {
        let o = c.wait_with_output().unwrap();
        assert_eq!(
            o.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let mut logs = Vec::new();
    for stamp in std::fs::read_dir(out.path()).unwrap() {
        let log = stamp.unwrap().path().join("sim-7b/benchmark.log");
        if log.exists() {
            logs.push(std::fs::read_to_string(&log).unwrap());
        }
    }
    assert_eq!(logs.len(), 2);
    for l in &logs {
        assert_eq!(l.matches("Starting benchmark").count(), 1, "{l}");
        assert_eq!(l.matches("Results written to").count(), 1, "{l}");
    }
    // --no-timestamp: the second is refused before it logs anything there.
    let first = start(&["--no-timestamp", "--number", "200"]);
    let dir = out.path().join("sim-7b");
    wait_for(&dir.join("benchmark.log"), Duration::from_secs(30));
    let o = start(&["--no-timestamp", "--number", "20"])
        .wait_with_output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("another perfscope run is writing there now"),
        "{stderr}"
    );
    let o = first.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let log = std::fs::read_to_string(dir.join("benchmark.log")).unwrap();
    assert_eq!(log.matches("Starting benchmark").count(), 1, "{log}");
    assert!(!dir.join(".perfscope-lock").exists());
}

#[test]
fn a_runaway_dataset_line_stops_at_the_request_cap_and_a_large_body_is_stored_as_a_digest() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    // A 1 GiB file of zeros (sparse) with no line break: refused at 64 MiB read.
    let zeros = dir.path().join("zeros.txt");
    std::fs::File::create(&zeros)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let t = Instant::now();
    #[rustfmt::skip]
    let o = bin()
        .args(["perf", "--url", "http://127.0.0.1:9/v1/chat/completions", "--model", "m",
               "--no-test-connection", "--metrics-addr", "off", "--number", "1",
               "--dataset", "line_by_line", "--dataset-path", zeros.to_str().unwrap(),
               "--outputs-dir", out.path().to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("line 1 of") && stderr.contains("longer than --max-request-mib (64 MiB)"),
        "{stderr}"
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());

    // A 2 MiB prompt: under the cap, sent whole, stored as its length and digest.
    let sim = common::start_sim(perfscope::sim::SimConfig {
        zero_delay: true,
        ..Default::default()
    });
    let big = dir.path().join("big.txt");
    let line = "lorem ipsum ".repeat((2 << 20) / 12);
    std::fs::write(&big, format!("{line}\n")).unwrap();
    let ran = perf(
        &sim,
        out.path(),
        &[
            "--dataset",
            "line_by_line",
            "--dataset-path",
            big.to_str().unwrap(),
            "--max-prompt-length",
            "100000000",
            "--number",
            "2",
            "--parallel",
            "1",
        ],
    )
    .output()
    .unwrap();
    assert_eq!(
        ran.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    let conn = rusqlite::Connection::open(
        out.path()
            .join("sim-7b/parallel_1_number_2/benchmark_data.db"),
    )
    .unwrap();
    let stored: String = conn
        .query_row("SELECT request FROM result LIMIT 1", [], |r| r.get(0))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&stored).unwrap();
    let t = &v["perfscope_request_truncated"];
    assert!(t["bytes"].as_u64().unwrap() > 2 << 20, "{t}");
    assert_eq!(t["sha256"].as_str().map(str::len), Some(64));
    // --max-request-mib 1 refuses the same prompt before any request.
    let o = perf(
        &sim,
        out.path(),
        &[
            "--dataset",
            "line_by_line",
            "--dataset-path",
            big.to_str().unwrap(),
            "--max-request-mib",
            "1",
            "--name",
            "capped",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--max-request-mib"), "{stderr}");
}

#[test]
fn sigterm_while_a_fifo_dataset_is_read_exits_143_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("prompts.fifo");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let mut child = bin()
        .args(["perf", "--url", "http://127.0.0.1:9/v1/chat/completions", "--model", "m",
               "--no-test-connection", "--metrics-addr", "off", "--number", "5",
               "--dataset", "line_by_line", "--dataset-path", fifo.to_str().unwrap(),
               "--outputs-dir", out.path().to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Nobody writes the FIFO: the read blocks until the signal.
    std::thread::sleep(Duration::from_millis(1500));
    sigterm_exits_within_5_s(&mut child);
}

#[test]
fn compare_says_when_the_runs_had_different_concurrency() {
    let a = common::Bench::sim_with(perfscope::sim::SimConfig {
        zero_delay: true,
        ..Default::default()
    })
    .parallel(2)
    .number(20)
    .run();
    let b = common::Bench::sim_with(perfscope::sim::SimConfig {
        zero_delay: true,
        ..Default::default()
    })
    .parallel(4)
    .number(20)
    .run();
    let o = bin()
        .args([
            "compare",
            a.outcome.dir.to_str().unwrap(),
            b.outcome.dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("The runs had different concurrency (base 2, new 4)"),
        "{stdout}"
    );
}
