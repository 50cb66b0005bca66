//! TTFT against the wire: `cargo bench --bench wire_ttft [-- OPTIONS]`.
//!
//! Captures loopback with `tcpdump` (nanosecond timestamps) while `perfscope perf`
//! runs, and compares each stored TTFT with the wire's: the time from the first
//! segment of the request to the first server segment that carries output text.
//! Requests are matched to rows by the W3C trace id in their `traceparent` header.
//! Needs root (or CAP_NET_RAW) and Debian's `tcpdump`; skips with a message without.
//!
//! Options (defaults in brackets):
//!   --server python|sim|URL   the server [python]: `benches/wire/reference_server.py`
//!                             (asyncio, no perfscope code), the simulator as its own
//!                             process, or any running server (e.g. llama-server)
//!   --parallel N [256]  --number N [2000]  --runs N [3]
//!   --ttft-ms N [100]  --itl-ms N [20]   (python and sim servers)
//!   --pin                     client on core 0; server and tcpdump on core 1
//!   --perfscope PATH          another perfscope binary to measure (an A/B against
//!                             an older build) [the one built with this bench]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Opts {
    server: String,
    parallel: u32,
    number: u32,
    runs: u32,
    ttft_ms: u32,
    itl_ms: u32,
    pin: bool,
    perfscope: String,
}

fn opts() -> Opts {
    let mut o = Opts {
        server: "python".into(),
        parallel: 256,
        number: 2000,
        runs: 3,
        ttft_ms: 100,
        itl_ms: 20,
        pin: false,
        perfscope: env!("CARGO_BIN_EXE_perfscope").to_string(),
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let val = args.get(i + 1).cloned().unwrap_or_default();
        let num = || val.parse::<u32>().unwrap_or(0);
        match args[i].as_str() {
            "--server" => o.server = val.clone(),
            "--parallel" => o.parallel = num(),
            "--number" => o.number = num(),
            "--runs" => o.runs = num(),
            "--ttft-ms" => o.ttft_ms = num(),
            "--itl-ms" => o.itl_ms = num(),
            "--perfscope" => o.perfscope = val.clone(),
            "--pin" => {
                o.pin = true;
                i += 1;
                continue;
            }
            // `cargo bench` passes --bench.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18555)
}

fn wait_port(port: u16) {
    let t = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "server on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pinned(core: Option<u32>, prog: &str) -> Command {
    match core {
        Some(c) => {
            let mut cmd = Command::new("taskset");
            cmd.args(["-c", &c.to_string(), prog]);
            cmd
        }
        None => Command::new(prog),
    }
}

/// Starts the server; returns it (when started here), its port and its URL.
fn start_server(o: &Opts) -> (Option<Child>, u16, String) {
    let core = o.pin.then_some(1);
    if o.server.starts_with("http://") {
        let port = o
            .server
            .rsplit_once(':')
            .and_then(|(_, r)| r.split('/').next()?.parse().ok())
            .unwrap_or(80);
        return (None, port, o.server.clone());
    }
    let port = free_port();
    let child = if o.server == "sim" {
        let mut cmd = pinned(core, env!("CARGO_BIN_EXE_perfscope"));
        cmd.args(["sim", "--port", &port.to_string(), "--threads", "1"]);
        cmd.args(["--ttft-ms", &o.ttft_ms.to_string()]);
        cmd.args(["--itl-ms", &o.itl_ms.to_string()]);
        cmd.args(["--min-output-len", "8", "--max-output-len", "8"]);
        cmd
    } else {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/wire/reference_server.py"
        );
        let mut cmd = pinned(core, "python3");
        cmd.args([script, &port.to_string(), &o.ttft_ms.to_string()]);
        cmd.args([&o.itl_ms.to_string(), "8"]);
        cmd
    }
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .expect("the server starts");
    wait_port(port);
    let url = format!("http://127.0.0.1:{port}/v1/chat/completions");
    (Some(child), port, url)
}

/// One captured TCP segment with payload.
struct Segment {
    t: f64,
    src_port: u16,
    dst_port: u16,
    payload: Vec<u8>,
}

/// Reads a pcap file (nanosecond or microsecond, either byte order) of IPv4/IPv6 TCP.
fn read_pcap(path: &std::path::Path) -> Vec<Segment> {
    let b = std::fs::read(path).expect("capture file");
    let magic = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    let (le, nanos) = match magic {
        0xa1b2c3d4 => (true, false),
        0xa1b23c4d => (true, true),
        0xd4c3b2a1 => (false, false),
        0x4d3cb2a1 => (false, true),
        m => panic!("not a pcap file (magic {m:#x})"),
    };
    let u32at = |i: usize| {
        let a = [b[i], b[i + 1], b[i + 2], b[i + 3]];
        if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        }
    };
    let link = u32at(20);
    let l2 = match link {
        1 => 14,   // Ethernet (Linux `lo`)
        113 => 16, // Linux cooked
        276 => 20, // Linux cooked v2
        0 => 4,    // BSD loopback
        101 => 0,  // raw IP
        l => panic!("link type {l} not handled"),
    };
    let mut out = Vec::new();
    let mut i = 24;
    while i + 16 <= b.len() {
        let (sec, frac, incl) = (u32at(i), u32at(i + 4), u32at(i + 8) as usize);
        let t = sec as f64 + frac as f64 / if nanos { 1e9 } else { 1e6 };
        let pkt = &b[i + 16..(i + 16 + incl).min(b.len())];
        i += 16 + incl;
        let Some(ip) = pkt.get(l2..) else { continue };
        let (proto, tcp) = match ip.first().map(|v| v >> 4) {
            Some(4) => (ip[9], ip.get(((ip[0] & 15) as usize) * 4..)),
            Some(6) => (ip[6], ip.get(40..)),
            _ => continue,
        };
        let Some(tcp) = tcp.filter(|t| proto == 6 && t.len() >= 20) else {
            continue;
        };
        let off = ((tcp[12] >> 4) as usize) * 4;
        let payload = tcp.get(off..).unwrap_or(&[]);
        if payload.is_empty() {
            continue;
        }
        out.push(Segment {
            t,
            src_port: u16::from_be_bytes([tcp[0], tcp[1]]),
            dst_port: u16::from_be_bytes([tcp[2], tcp[3]]),
            payload: payload.to_vec(),
        });
    }
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Where the first output-carrying SSE event ends in `p`: a non-empty `content`,
/// `text` or `reasoning_content` string (a role prelude's `"content":""` or `null`
/// does not count), then the event's blank line. None until both have arrived.
fn output_event_end(p: &[u8]) -> Option<usize> {
    let mut first: Option<usize> = None;
    for key in [
        &b"\"content\":\""[..],
        b"\"text\":\"",
        b"\"reasoning_content\":\"",
    ] {
        let mut from = 0;
        while let Some(k) = find(&p[from..], key) {
            let at = from + k + key.len();
            if p.get(at).is_some_and(|&c| c != b'"') {
                first = Some(first.map_or(at, |f: usize| f.min(at)));
                break;
            }
            from = at;
        }
    }
    let at = first?;
    find(&p[at..], b"\n\n").map(|e| at + e)
}

/// Wire TTFT per trace id: from the first segment of the request to the server
/// segment that completes the first output-carrying event (an event may span
/// segments: llama.cpp's server writes some in pieces), per connection (one request
/// at a time on each).
fn wire_ttft(segs: &[Segment], server_port: u16) -> HashMap<String, f64> {
    // Per client port: trace id, request time, server bytes so far, done.
    let mut current: HashMap<u16, (String, f64, Vec<u8>, bool)> = HashMap::new();
    let mut out = HashMap::new();
    for s in segs {
        if s.dst_port == server_port && s.payload.starts_with(b"POST ") {
            if let Some(k) = find(&s.payload, b"traceparent: 00-") {
                let id = &s.payload[k + 16..(k + 48).min(s.payload.len())];
                let id = String::from_utf8_lossy(id).into_owned();
                current.insert(s.src_port, (id, s.t, Vec::new(), false));
            }
        } else if s.src_port == server_port {
            if let Some(c) = current.get_mut(&s.dst_port) {
                if !c.3 {
                    c.2.extend_from_slice(&s.payload);
                    if output_event_end(&c.2).is_some() {
                        c.3 = true;
                        c.2 = Vec::new();
                        out.insert(c.0.clone(), s.t - c.1);
                    }
                }
            }
        }
    }
    out
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let rank = ((sorted.len() as f64) * p / 100.0).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn main() {
    // `--analyse PCAP DB PORT`: compare an existing capture with a database.
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--analyse") {
        let (pcap, db, port) = (&args[i + 1], &args[i + 2], &args[i + 3]);
        let wire = wire_ttft(
            &read_pcap(std::path::Path::new(pcap)),
            port.parse().unwrap_or(0),
        );
        let conn = rusqlite::Connection::open(db).expect("database");
        let mut st = conn.prepare("SELECT trace_id FROM result").expect("query");
        let ids: Vec<String> = st
            .query_map([], |r| r.get(0))
            .expect("rows")
            .filter_map(Result::ok)
            .collect();
        let missing: Vec<&String> = ids.iter().filter(|i| !wire.contains_key(*i)).collect();
        println!(
            "{} rows, {} on the wire, missing {missing:?}",
            ids.len(),
            wire.len()
        );
        return;
    }
    let o = opts();
    let tcpdump = ["/usr/bin/tcpdump", "/usr/sbin/tcpdump"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists());
    let Some(tcpdump) = tcpdump else {
        println!("wire_ttft: SKIPPED: tcpdump is not installed (apt-get install tcpdump)");
        return;
    };
    println!(
        "wire TTFT, server {}, --parallel {} --number {}, TTFT {} ms, ITL {} ms{}",
        o.server,
        o.parallel,
        o.number,
        o.ttft_ms,
        o.itl_ms,
        if o.pin {
            ", client on core 0, server and capture on core 1"
        } else {
            ""
        }
    );
    for run in 1..=o.runs {
        let (server, port, url) = start_server(&o);
        let dir = tempfile::tempdir().expect("temp dir");
        let cap = dir.path().join("lo.pcap");
        let mut dump = pinned(o.pin.then_some(1), tcpdump)
            .args(["-i", "lo", "-nn", "-s", "2048", "-B", "131072"])
            .args(["--time-stamp-precision", "nano", "-w"])
            .arg(&cap)
            .args(["tcp", "port", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump starts");
        // tcpdump says "listening on lo" once the capture runs. Its stderr is drained
        // to the end: a closed pipe would kill it with SIGPIPE when it prints its
        // statistics, before it flushes the last packets.
        if let Some(err) = dump.stderr.take() {
            let mut r = BufReader::new(err);
            let mut line = String::new();
            let _ = r.read_line(&mut line);
            std::thread::spawn(move || std::io::copy(&mut r, &mut std::io::sink()));
        }
        let out = dir.path().join("out");
        let (p, n) = (o.parallel.to_string(), o.number.to_string());
        let status = pinned(o.pin.then_some(0), &o.perfscope)
            .args(["perf", "--url", &url, "--model", "m", "--parallel", &p])
            .args(["--number", &n, "--max-tokens", "8", "--no-test-connection"])
            .args(["--metrics-addr", "off", "--no-timestamp", "--outputs-dir"])
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("perfscope runs");
        // tcpdump drops what it has not read from the kernel when it stops: give it
        // time to catch up (a busy server can starve it).
        std::thread::sleep(Duration::from_secs(2));
        let _ = Command::new("kill")
            .args(["-INT", &dump.id().to_string()])
            .status();
        let _ = dump.wait();
        if let Some(mut s) = server {
            let _ = s.kill();
            let _ = s.wait();
        }
        let db = out
            .join("m")
            .join(format!("parallel_{p}_number_{n}"))
            .join("benchmark_data.db");
        let conn = rusqlite::Connection::open(&db).expect("database");
        let mut st = conn
            .prepare("SELECT trace_id, first_chunk_latency FROM result WHERE success=1")
            .expect("query");
        let stored: Vec<(String, f64)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("rows")
            .filter_map(Result::ok)
            .collect();
        let wire = wire_ttft(&read_pcap(&cap), port);
        let mut err: Vec<f64> = stored
            .iter()
            .filter_map(|(id, t)| wire.get(id).map(|w| (t - w) * 1000.0))
            .collect();
        err.sort_by(f64::total_cmp);
        if err.is_empty() {
            println!("run {run}: no request matched (exit {status}); is the capture readable?");
            continue;
        }
        let mean = err.iter().sum::<f64>() / err.len() as f64;
        println!(
            "run {run}: {} of {} rows matched; stored − wire TTFT: mean {mean:+.3} ms, p50 {:+.3}, p99 {:+.3}, max {:+.3}, min {:+.3}",
            err.len(),
            stored.len(),
            pct(&err, 50.0),
            pct(&err, 99.0),
            err[err.len() - 1],
            err[0],
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn output_detection() {
        use super::output_event_end as end;
        assert_eq!(
            end(b"data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n"),
            None
        );
        assert_eq!(end(b"data: {\"delta\":{\"content\":\"x\"}}"), None);
        assert!(end(b"data: {\"delta\":{\"content\":\"x\"}}\n\n").is_some());
    }
}
