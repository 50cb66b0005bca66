//! The cost of the live page: `cargo bench --bench live_page`.
//!
//! Starts `perfscope sim --zero-delay` as its own process and runs `perfscope perf
//! --rate RATE` (20,000 req/s) for REQUESTS requests against it, RUNS times
//! without and RUNS times with the live page open (a client reading
//! `/live/events` from the start, as a browser's EventSource does), alternating.
//! The client's CPU (user + system, from wait4) per finished request is the
//! figure: the page is cheap when the medians differ by under 5 %.
//!
//! Environment: REQUESTS (200000), RATE (20000), PARALLEL (256), RUNS (3).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

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

/// Reads the event stream until the run's listener closes; returns the events.
fn watch(port: u16) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        use std::io::Write;
        let stream = loop {
            match std::net::TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        };
        let mut s = stream;
        if s.write_all(
            b"GET /live/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .is_err()
        {
            return 0;
        }
        let mut buf = [0u8; 16384];
        let mut events = 0;
        while let Ok(n) = s.read(&mut buf) {
            if n == 0 {
                break;
            }
            events += buf[..n].windows(6).filter(|w| w == b"data: ").count();
        }
        events
    })
}

/// One run: (CPU seconds, wall seconds, events seen).
fn run(
    sim_port: u16,
    requests: u64,
    rate: u64,
    parallel: u64,
    page: bool,
) -> anyhow::Result<(f64, f64, usize)> {
    let out = tempfile::tempdir()?;
    let metrics = free_port()?;
    let url = format!("http://127.0.0.1:{sim_port}/v1/chat/completions");
    let t = std::time::Instant::now();
    #[rustfmt::skip]
    let child = Command::new(BIN)
        .args([
            "perf", "--url", &url, "--model", "m", "--parallel", &parallel.to_string(),
            "--rate", &rate.to_string(), "--number", &requests.to_string(), "--max-tokens", "8",
            "--store-responses", "none", "--no-test-connection", "--server-metrics", "off",
            "--metrics-addr", &format!("127.0.0.1:{metrics}"), "--metrics-linger", "0",
            "--log-every-n-query", "100000000", "--no-timestamp",
            "--outputs-dir", out.path().to_str().unwrap_or("."),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let watcher = page.then(|| watch(metrics));
    let pid = libc::pid_t::try_from(child.id())?;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 on our own child's pid.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    if rc != pid {
        anyhow::bail!("wait4 failed: {}", std::io::Error::last_os_error());
    }
    let wall = t.elapsed().as_secs_f64();
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let cpu = secs(usage.ru_utime) + secs(usage.ru_stime);
    let events = watcher.map_or(0, |w| w.join().unwrap_or(0));
    Ok((cpu, wall, events))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let requests = env_or("REQUESTS", 200_000);
    let rate = env_or("RATE", 20_000);
    let parallel = env_or("PARALLEL", 256);
    let runs = env_or("RUNS", 3);
    let sim_port = free_port()?;
    let mut sim = Command::new(BIN)
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
        .spawn()?;
    std::thread::sleep(Duration::from_millis(500));
    println!("{requests} requests at --rate {rate}, --parallel {parallel}, zero-delay simulator");
    println!("page    CPU µs/request  achieved req/s  events");
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for page in [false, true] {
            let (cpu, wall, events) = run(sim_port, requests, rate, parallel, page)?;
            let per = cpu / requests as f64 * 1e6;
            println!(
                "{:<7} {per:>14.2}  {:>14.0}  {events:>6}",
                if page { "open" } else { "closed" },
                requests as f64 / wall
            );
            if page {
                on.push(per)
            } else {
                off.push(per)
            }
        }
    }
    let (a, b) = (median(off), median(on));
    println!(
        "median CPU µs/request: closed {a:.2}, open {b:.2}: {:+.1} %",
        100.0 * (b - a) / a
    );
    let _ = sim.kill();
    let _ = sim.wait();
    Ok(())
}
