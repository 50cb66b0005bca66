//! Memory over a long run: `cargo bench --bench soak_memory`.
//!
//! Starts `perfscope sim --zero-delay` as its own process and sends it REQUESTS
//! (1,000,000) requests with `perfscope perf --parallel 64` (another process),
//! once per `--store-responses` mode in MODES. While each run goes, the client's
//! resident set (VmRSS from /proc) is read when the live `/metrics` counter passes
//! 10 %, 50 % and 100 % of the requests; the database's size and bytes per row are
//! read at the end. Memory is flat when neither later reading grows more than 10 %
//! over the first (`growth`): the client keeps no per-request state beyond the
//! requests in flight and the writer's bounded queue.
//!
//! Environment: REQUESTS (1000000), PARALLEL (64), MAX_TOKENS (16),
//! MODES (`all,none`).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_perfscope");

fn env_or(k: &str, d: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(d)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A process's resident set in MB.
fn rss_mb(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = s
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Finished requests so far, from the live `/metrics` (a plain HTTP/1.0 GET).
fn finished(port: u16) -> Option<f64> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let n = text
        .lines()
        .filter(|l| l.starts_with("perfscope_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    Some(n)
}

fn db_bytes(out: &Path) -> u64 {
    fn walk(p: &Path, acc: &mut u64) {
        let Ok(rd) = std::fs::read_dir(p) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, acc);
            } else if p.file_name().is_some_and(|n| n == "benchmark_data.db") {
                *acc += e.metadata().map_or(0, |m| m.len());
            }
        }
    }
    let mut n = 0;
    walk(out, &mut n);
    n
}

fn main() -> anyhow::Result<()> {
    let requests = env_or("REQUESTS", 1_000_000);
    let parallel = env_or("PARALLEL", 64);
    let max_tokens = env_or("MAX_TOKENS", 16);
    let modes = std::env::var("MODES").unwrap_or_else(|_| "all,none".into());
    let sim_port = free_port()?;
    let _sim = Kill(
        Command::new(BIN)
            .args([
                "sim",
                "--port",
                &sim_port.to_string(),
                "--zero-delay",
                "--threads",
                "1",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "{requests} requests, --parallel {parallel}, --max-tokens {max_tokens}, zero-delay simulator"
    );
    println!("mode      RSS@10%  RSS@50%  RSS@100%  growth  rows/s   DB        bytes/row");
    for mode in modes.split(',') {
        let out = tempfile::tempdir()?;
        let metrics = free_port()?;
        let url = format!("http://127.0.0.1:{sim_port}/v1/chat/completions");
        #[rustfmt::skip]
        let child = Command::new(BIN)
            .args([
                "perf", "--url", &url, "--model", "m", "--parallel", &parallel.to_string(),
                "--number", &requests.to_string(), "--max-tokens", &max_tokens.to_string(),
                "--store-responses", mode, "--no-test-connection", "--server-metrics", "off",
                "--metrics-addr", &format!("127.0.0.1:{metrics}"), "--metrics-linger", "3",
                "--log-every-n-query", "100000000", "--no-timestamp",
                "--outputs-dir", out.path().to_str().unwrap_or("."),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let pid = child.id();
        let mut child = Kill(child);
        let t = Instant::now();
        let mut marks = [0.1, 0.5, 1.0].into_iter().peekable();
        let mut rss = Vec::new();
        while let Some(&m) = marks.peek() {
            if let Some(n) = finished(metrics) {
                if n >= m * requests as f64 {
                    rss.push(rss_mb(pid).unwrap_or(f64::NAN));
                    marks.next();
                    continue;
                }
            }
            if child.0.try_wait()?.is_some() {
                anyhow::bail!("the client exited before {m:.0} of the requests finished");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let secs = t.elapsed().as_secs_f64();
        child.0.wait()?;
        let bytes = db_bytes(out.path());
        let growth = 100.0 * (rss[1].max(rss[2]) - rss[0]) / rss[0];
        println!(
            "{mode:<9} {:>6.1}MB {:>6.1}MB {:>7.1}MB  {:>5.1}%  {:>6.0}  {:>7.1}MB  {:>8.0}",
            rss[0],
            rss[1],
            rss[2],
            growth,
            requests as f64 / secs,
            bytes as f64 / 1e6,
            bytes as f64 / requests as f64
        );
    }
    Ok(())
}
