//! Servers that behave as real ones do at the edges of HTTP/1.1, written byte by byte:
//! llama.cpp's `llama-server` closing every connection after its response while it
//! advertises keep-alive, a server that dies mid-stream, one that closes before it
//! answers, endless bodies, and a stream that is only `data: [DONE]`.
use crate::common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Injected before the first token: every TTFT must be about this, resend or not.
const TTFT_MS: u64 = 50;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// llama-server: answer, then close at once, with `Keep-Alive` and no
    /// `Connection: close`.
    CloseAfterResponse,
    /// The same race made certain: the connection is kept after the answer, and the
    /// next request written to it is met, `delay` ms later, by a close.
    CloseOnReuse { delay_ms: u64 },
    /// Headers and two tokens, then the connection is cut.
    CloseMidStream,
    /// The request is read and the connection closed without a byte of answer.
    CloseBeforeAnswer,
    /// `data: xxxx…` without a newline, forever.
    EndlessLine,
    /// HTTP 500 with an endless body.
    Endless500,
    /// HTTP 200 `text/html`, endless.
    EndlessHtml,
    /// A 200 event stream that carries only `data: [DONE]`.
    DoneOnly,
    /// A normal keep-alive server.
    KeepAlive,
}

struct Server {
    addr: SocketAddr,
    /// Requests read by the server (each resend is one more).
    requests: Arc<AtomicUsize>,
    /// Every request head read (request line and headers).
    heads: Arc<std::sync::Mutex<Vec<String>>>,
    _rt: tokio::runtime::Runtime,
}

async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let len: usize = head
                .to_ascii_lowercase()
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                buf.drain(..end + 4 + len);
                return Some(head);
            }
        }
        let mut tmp = [0u8; 8192];
        match s.read(&mut tmp).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&tmp[..n]),
        }
    }
}

fn chunk(data: &str) -> Vec<u8> {
    format!("{:x}\r\n{data}\r\n", data.len()).into_bytes()
}

fn event(json: &str) -> Vec<u8> {
    chunk(&format!("data: {json}\n\n"))
}

const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nKeep-Alive: timeout=5, max=100\r\nTransfer-Encoding: chunked\r\n\r\n";

/// A whole answer of three tokens: role prelude, tokens 10 ms apart, finish, usage.
async fn answer(s: &mut TcpStream, cut_after: Option<usize>) -> std::io::Result<()> {
    s.write_all(SSE_HEAD).await?;
    tokio::time::sleep(Duration::from_millis(TTFT_MS)).await;
    s.write_all(&event(
        r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
    ))
    .await?;
    for (i, t) in ["a", "b", "c"].iter().enumerate() {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if cut_after == Some(i) {
            return Ok(());
        }
        s.write_all(&event(&format!(
            r#"{{"choices":[{{"index":0,"delta":{{"content":"{t}"}}}}]}}"#
        )))
        .await?;
    }
    s.write_all(&event(
        r#"{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
    ))
    .await?;
    s.write_all(&event(
        r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#,
    ))
    .await?;
    s.write_all(&chunk("data: [DONE]\n\n")).await?;
    s.write_all(b"0\r\n\r\n").await
}

async fn endless(s: &mut TcpStream, head: &[u8], filler: &[u8]) {
    if s.write_all(head).await.is_err() {
        return;
    }
    let block = filler.repeat(64 * 1024 / filler.len());
    while s.write_all(&block).await.is_ok() {}
}

type Heads = Arc<std::sync::Mutex<Vec<String>>>;

async fn serve(mut s: TcpStream, mode: Mode, requests: Arc<AtomicUsize>, heads: Heads) {
    let mut buf = Vec::new();
    let mut served = 0;
    while let Some(head) = read_request(&mut s, &mut buf).await {
        requests.fetch_add(1, Ordering::SeqCst);
        heads.lock().unwrap().push(head);
        match mode {
            Mode::CloseAfterResponse => {
                let _ = answer(&mut s, None).await;
                return;
            }
            Mode::CloseOnReuse { delay_ms } => {
                if served == 1 {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    return;
                }
                if answer(&mut s, None).await.is_err() {
                    return;
                }
                served += 1;
            }
            Mode::CloseMidStream => {
                let _ = answer(&mut s, Some(2)).await;
                return;
            }
            Mode::CloseBeforeAnswer => return,
            Mode::KeepAlive => {
                if answer(&mut s, None).await.is_err() {
                    return;
                }
            }
            Mode::EndlessLine => {
                // A body delimited by the close, which never comes.
                endless(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: ",
                    b"x",
                )
                .await;
                return;
            }
            Mode::Endless500 => {
                endless(
                    &mut s,
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\r\n",
                    b"error ",
                )
                .await;
                return;
            }
            Mode::EndlessHtml => {
                endless(
                    &mut s,
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n\r\n",
                    b"<p>proxy</p>",
                )
                .await;
                return;
            }
            Mode::DoneOnly => {
                let mut r = SSE_HEAD.to_vec();
                r.extend_from_slice(&chunk("data: [DONE]\n\n"));
                r.extend_from_slice(b"0\r\n\r\n");
                if s.write_all(&r).await.is_err() {
                    return;
                }
            }
        }
    }
}

fn start(mode: Mode) -> Server {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let heads = Heads::default();
    let l = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
    let addr = l.local_addr().unwrap();
    let (n, h) = (requests.clone(), heads.clone());
    rt.spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve(s, mode, n.clone(), h.clone()));
        }
    });
    Server {
        addr,
        requests,
        heads,
        _rt: rt,
    }
}

fn run(server: &Server, extra: &[&str]) -> (perfscope::engine::Outcome, rusqlite::Connection) {
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://{}/v1/chat/completions", server.addr);
    let mut args = vec![
        "--url",
        &url,
        "--model",
        "m",
        "--outputs-dir",
        out.path().to_str().unwrap(),
        "--metrics-addr",
        "off",
        // These servers count every request they read; a /metrics probe would be one.
        "--server-metrics",
        "off",
    ];
    args.extend_from_slice(extra);
    let o = common::run(&args).unwrap();
    let dir = common::run_dirs(&o.dir).pop().unwrap();
    let conn = common::db(&dir);
    // The temporary directory must outlive the connection: leak it for the test.
    std::mem::forget(out);
    (o, conn)
}

fn stored(conn: &rusqlite::Connection) -> Vec<(bool, Option<String>, bool, Option<f64>)> {
    let mut st = conn
        .prepare(
            "SELECT success, failure_kind, resent, first_chunk_latency FROM result ORDER BY seq",
        )
        .unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn summary(o: &perfscope::engine::Outcome) -> serde_json::Value {
    common::json(&common::run_dirs(&o.dir)[0].join("benchmark_summary.json"))
}

#[test]
fn llama_server_closing_after_every_response_gives_no_failures() {
    let _g = common::lock();
    for parallel in ["1", "8"] {
        let server = start(Mode::CloseAfterResponse);
        let (o, conn) = run(&server, &["--parallel", parallel, "--number", "40"]);
        let rows = stored(&conn);
        assert_eq!(rows.len(), 40, "parallel {parallel}");
        assert!(
            rows.iter().all(|r| r.0),
            "parallel {parallel}: every request succeeds: {:?}",
            rows.iter().filter(|r| !r.0).collect::<Vec<_>>()
        );
        assert_eq!(o.exit_code, 0);
        // The server read every row's request and the connection test's two once: a
        // first attempt written to a connection it had already closed never reached it.
        let resent = rows.iter().filter(|r| r.2).count();
        assert_eq!(server.requests.load(Ordering::SeqCst), 40 + 2);
        let s = summary(&o);
        assert_eq!(s["Resent Requests"].as_u64().unwrap() as usize, resent);
    }
}

#[test]
fn a_reused_connection_closed_unanswered_is_resent_and_timed_from_the_resend() {
    let _g = common::lock();
    for parallel in ["1", "8"] {
        // The close comes 150 ms after the request: timed from the first write, TTFT
        // would be over 200 ms.
        let server = start(Mode::CloseOnReuse { delay_ms: 150 });
        let (o, conn) = run(
            &server,
            &[
                "--parallel",
                parallel,
                "--number",
                "24",
                "--no-test-connection",
            ],
        );
        let rows = stored(&conn);
        assert_eq!(rows.len(), 24);
        assert!(rows.iter().all(|r| r.0), "parallel {parallel}");
        let resent = rows.iter().filter(|r| r.2).count();
        // Every connection carries two requests: the second is always resent.
        assert!(resent >= 24 / 2 - 8, "parallel {parallel}: {resent} resent");
        assert_eq!(server.requests.load(Ordering::SeqCst), 24 + resent);
        for r in &rows {
            let ttft_ms = r.3.unwrap() * 1000.0;
            assert!(
                (TTFT_MS as f64 - 1.0..TTFT_MS as f64 + 60.0).contains(&ttft_ms),
                "TTFT {ttft_ms} ms (resent {})",
                r.2
            );
        }
        let s = summary(&o);
        assert_eq!(s["Resent Requests"].as_u64().unwrap() as usize, resent);
        assert_eq!(s["Failed Requests"], 0);
        // evalscope 1.14's n_decode_chunks: the three tokens and the empty finish
        // delta, not the role prelude before them nor the usage-only chunk. Three
        // tokens over four chunks is L < 1: no speculative-decoding keys.
        let (out, dec): (i64, i64) = conn
            .query_row(
                "SELECT MIN(output_chunks), MIN(decode_chunks) FROM result",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((out, dec), (3, 4));
        assert!(s.get("Avg Decoded Tok/Iter").is_none());
    }
}

#[test]
fn a_signal_during_the_connection_test_exits_as_an_interrupt() {
    let _g = common::lock();
    // A server that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/v1/chat/completions",
        silent.local_addr().unwrap()
    );
    let _keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in silent.incoming().take(4).flatten() {
            held.push(s);
        }
        std::thread::sleep(Duration::from_secs(30));
    });
    let out = tempfile::tempdir().unwrap();
    let stop = common::stop_after(400, None);
    let t = std::time::Instant::now();
    let err = common::run_with(
        &[
            "--url",
            &url,
            "--model",
            "m",
            "--metrics-addr",
            "off",
            "--outputs-dir",
            out.path().to_str().unwrap(),
        ],
        stop,
    )
    .err()
    .expect("interrupted");
    let i = err
        .downcast_ref::<perfscope::engine::Interrupted>()
        .unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(i.0, 130);
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

#[test]
fn closes_after_response_bytes_or_on_new_connections_stay_failures() {
    let _g = common::lock();
    let server = start(Mode::CloseMidStream);
    let (o, conn) = run(
        &server,
        &["--parallel", "4", "--number", "12", "--no-test-connection"],
    );
    let rows = stored(&conn);
    assert_eq!(rows.len(), 12);
    for r in &rows {
        assert!(!r.0);
        assert_eq!(r.1.as_deref(), Some("transport"));
        assert!(!r.2, "a close after response bytes is never resent");
    }
    assert_eq!(server.requests.load(Ordering::SeqCst), 12);
    assert_eq!(o.exit_code, 3);

    let server = start(Mode::CloseBeforeAnswer);
    let (_, conn) = run(
        &server,
        &["--parallel", "2", "--number", "6", "--no-test-connection"],
    );
    let rows = stored(&conn);
    assert_eq!(rows.len(), 6);
    // Each request went out on a new connection (the server never keeps one): a
    // close there is the server's answer, not a stale connection.
    assert!(rows
        .iter()
        .all(|r| !r.0 && r.1.as_deref() == Some("transport") && !r.2));
    assert_eq!(server.requests.load(Ordering::SeqCst), 6);
}

#[test]
fn a_stream_of_only_done_succeeds_with_zero_times() {
    let _g = common::lock();
    let server = start(Mode::DoneOnly);
    let (o, conn) = run(
        &server,
        &["--parallel", "1", "--number", "3", "--no-test-connection"],
    );
    // evalscope 1.14.1: `[DONE]` is not JSON and is skipped; the stream has no
    // error, so it succeeds with no output chunk: TTFT 0.0 and completed_time =
    // start_time. Never a negative duration.
    let (ok, lat, ttft, start, end): (i64, f64, f64, f64, f64) = conn
        .query_row(
            "SELECT MIN(success), MIN(latency), MAX(first_chunk_latency), MIN(start_time), MIN(completed_time - start_time) FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!((ok, ttft), (1, 0.0));
    assert!(lat >= 0.0 && end >= 0.0 && start > 0.0, "{lat} {end}");
    let s = summary(&o);
    assert!(s["Avg Latency (s)"].as_f64().unwrap() >= 0.0);
    assert!(s["Req Throughput (req/s)"].as_f64().unwrap() >= 0.0);
}

/// The binary against an endless body: every request is a row of the right kind, and
/// the process stays small. Peak RSS: the kernel's figure for this child (`wait4`).
/// A stored row's failure kind and HTTP status.
type KindStatus = (Option<String>, Option<i64>);

// The child is reaped by wait4, which clippy cannot see.
#[allow(clippy::zombie_processes)]
fn endless_run(mode: Mode) -> (i32, u64, Vec<KindStatus>) {
    let server = start(mode);
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://{}/v1/chat/completions", server.addr);
    #[rustfmt::skip]
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args([
            "perf", "--url", &url, "--model", "m", "--parallel", "2", "--number", "4",
            "--total-timeout", "6", "--no-test-connection", "--metrics-addr", "off",
            "--outputs-dir", out.path().to_str().unwrap(), "--no-timestamp",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // This child's own peak RSS, from wait4: RUSAGE_CHILDREN would be the largest
    // of every child the test process ever waited for, other tests' included.
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: wait4 fills the status and the struct it is given.
    let (reaped, u) = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        (libc::wait4(pid, &mut status, 0, &mut u), u)
    };
    assert_eq!(reaped, pid);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    let peak_kb = u.ru_maxrss as u64;
    assert!(peak_kb > 0);
    let dir = out.path().join("m").join("parallel_2_number_4");
    let conn = rusqlite::Connection::open(dir.join("benchmark_data.db")).unwrap();
    let mut st = conn
        .prepare("SELECT failure_kind, http_status FROM result")
        .unwrap();
    let rows = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    (code, peak_kb, rows)
}

#[test]
fn endless_bodies_are_bounded_and_classified() {
    let _g = common::lock();
    for (mode, kind, status) in [
        (Mode::EndlessLine, "response_too_large", Some(200)),
        (Mode::Endless500, "http_5xx", Some(500)),
        (Mode::EndlessHtml, "other", Some(200)),
    ] {
        let (code, peak_kb, rows) = endless_run(mode);
        assert_eq!(code, 3, "{kind}: no request succeeded");
        assert_eq!(rows.len(), 4, "{kind}: every request is a row");
        for r in &rows {
            assert_eq!(r.0.as_deref(), Some(kind));
            assert_eq!(r.1.map(|s| s as u16), status);
        }
        assert!(peak_kb < 300 * 1024, "{kind}: peak RSS {peak_kb} kB");
        eprintln!("{kind}: peak RSS {} MB", peak_kb / 1024);
    }
}

#[test]
fn credentials_in_the_url_reach_the_server_and_nothing_else() {
    let _g = common::lock();
    let server = start(Mode::KeepAlive);
    let out = tempfile::tempdir().unwrap();
    // A free port for /metrics, scraped while the run lingers.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let url = format!(
        "http://alice:PW-SECRET@{}/v1?api-version=2024-02-01&key=KEY-SECRET",
        server.addr
    );
    let scrape = std::thread::spawn(move || {
        for _ in 0..200 {
            std::thread::sleep(Duration::from_millis(50));
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let _ =
                    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
                let mut text = String::new();
                let _ = s.read_to_string(&mut text);
                if text.contains("perfscope_run_info") {
                    return text;
                }
            }
        }
        String::new()
    });
    let o = common::run(&[
        "--url",
        &url,
        "--model",
        "m",
        "--parallel",
        "2",
        "--number",
        "4",
        "--outputs-dir",
        out.path().to_str().unwrap(),
        "--server-metrics",
        "off",
        "--metrics-addr",
        &metrics,
        "--metrics-linger",
        "1.5",
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    // The server got the query string after the completed path, and the userinfo as
    // Basic credentials.
    let heads = server.heads.lock().unwrap().clone();
    // The connection test, its max_tokens check and the requests.
    assert_eq!(heads.len(), 6);
    for h in &heads {
        assert!(
            h.starts_with(
                "POST /v1/chat/completions?api-version=2024-02-01&key=KEY-SECRET HTTP/1.1\r\n"
            ),
            "{h}"
        );
        // base64("alice:PW-SECRET")
        assert!(
            h.contains("Authorization: Basic YWxpY2U6UFctU0VDUkVU"),
            "{h}"
        );
    }
    let text = scrape.join().unwrap();
    assert!(text.contains("perfscope_run_info"), "scraped /metrics");
    assert!(text.contains("api-version=2024-02-01"), "{text}");
    assert!(!text.contains("SECRET"), "/metrics leaks: {text}");
    for f in common::files_under(&o.dir) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("SECRET"),
            "secret in {}",
            f.display()
        );
    }
    let args = common::json(&common::run_dirs(&o.dir)[0].join("benchmark_args.json"));
    assert_eq!(
        args["url"],
        format!(
            "http://**********@{}/v1/chat/completions?api-version=2024-02-01&key=**********",
            server.addr
        )
    );
}

#[test]
fn the_stored_request_id_is_the_servers_own_as_vllm_uses_it() {
    // perfscope sends X-Request-Id (the request's trace id); a vLLM-like server
    // echoes it and names the request `chatcmpl-<id>` in its body, log and spans.
    let ran = common::Bench::sim_with(perfscope::sim::SimConfig {
        zero_delay: true,
        ..Default::default()
    })
    .parallel(2)
    .number(6)
    .args(&["--debug"])
    .run();
    let rows: Vec<(String, String, String)> = common::rows(
        &ran.db(),
        "SELECT request_id, trace_id, response_messages FROM result",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    assert_eq!(rows.len(), 6);
    for (id, trace, messages) in rows {
        assert_eq!(id, trace);
        assert!(
            messages.contains(&format!("\"id\":\"chatcmpl-{id}\"")),
            "{messages}"
        );
    }
}
