//! The load client behaves like evalscope's (aiohttp with `trust_env=True`) where a
//! server or the network asks something of it: redirects.
use crate::common;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{any, post};
use std::sync::{Arc, Mutex};

type Seen = Arc<Mutex<Vec<(String, String, String)>>>;

/// One chat completion as JSON, with usage.
fn answer() -> axum::response::Response {
    (
        [("content-type", "application/json")],
        r#"{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"hello there"},"finish_reason":"stop"}],"usage":{"prompt_tokens":7,"completion_tokens":2,"total_tokens":9}}"#,
    )
        .into_response()
}

/// A FastAPI app's answers: `/v1/chat/completions` (POST); `/old` answers 302 to
/// it; `/loop` redirects to itself. Every request is recorded (method, path, body).
fn fastapi_like(seen: Seen) -> axum::Router {
    let s2 = seen.clone();
    let s3 = seen.clone();
    let s4 = seen;
    axum::Router::new()
        .route(
            "/v1/chat/completions",
            post(move |h: HeaderMap, body: String| {
                let s = s2.clone();
                async move {
                    let auth = h
                        .get("authorization")
                        .map(|v| v.to_str().unwrap_or("").to_string())
                        .unwrap_or_default();
                    s.lock().unwrap().push((
                        "POST".into(),
                        format!("/v1/chat/completions {auth}"),
                        body,
                    ));
                    answer()
                }
            }),
        )
        .route(
            "/old/v1/chat/completions",
            any(move |m: axum::http::Method, body: String| {
                let s = s3.clone();
                async move {
                    s.lock().unwrap().push((
                        m.to_string(),
                        "/old/v1/chat/completions".into(),
                        body,
                    ));
                    (StatusCode::FOUND, [("location", "/v1/chat/completions")])
                }
            }),
        )
        .route(
            "/loop/v1/chat/completions",
            any(move |m: axum::http::Method| {
                let s = s4.clone();
                async move {
                    s.lock().unwrap().push((
                        m.to_string(),
                        "/loop/v1/chat/completions".into(),
                        String::new(),
                    ));
                    (
                        StatusCode::PERMANENT_REDIRECT,
                        [("location", "/loop/v1/chat/completions")],
                    )
                }
            }),
        )
}

#[test]
fn a_fastapi_trailing_slash_307_is_followed_with_the_same_post() {
    let seen: Seen = Arc::default();
    // The 307's Location is relative in Starlette: rewrite the route to send it so.
    let app = fastapi_like(seen.clone()).route(
        "/fastapi/v1/chat/completions/",
        post(|| async {
            (
                StatusCode::TEMPORARY_REDIRECT,
                [("location", "/v1/chat/completions")],
            )
        }),
    );
    let mock = common::serve(app);
    let url = format!("http://{}/fastapi/v1/chat/completions/", mock.addr);
    let ran = common::Bench::url(&url)
        .parallel(2)
        .number(6)
        .args(&["--no-stream", "--api-key", "sk-secret"])
        .run();
    let s = ran.summary();
    assert_eq!(s["Total Requests"].as_i64(), Some(6));
    assert_eq!(s["Success Requests"].as_i64(), Some(6), "{s}");
    let rows: Vec<(String, i64)> = common::rows(
        &ran.db(),
        "SELECT request, completion_tokens FROM result",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    let seen = seen.lock().unwrap();
    let followed: Vec<_> = seen
        .iter()
        .filter(|(m, p, _)| m == "POST" && p.starts_with("/v1/chat/completions "))
        .collect();
    assert_eq!(followed.len(), 6);
    // The method and the body are kept, and the same origin keeps the credentials.
    for (_, path, body) in &followed {
        assert_eq!(path, "/v1/chat/completions Bearer sk-secret");
        assert!(rows.iter().any(|(req, _)| req == body), "{body}");
    }
    assert!(rows.iter().all(|(_, c)| *c == 2));
    let log = std::fs::read_to_string(ran.outcome.dir.join("benchmark.log")).unwrap();
    assert_eq!(
        log.matches("redirects to POST").count(),
        1,
        "said once: {log}"
    );
}

#[test]
fn a_302_turns_the_post_into_a_get_and_a_loop_stops_after_10_with_its_location() {
    let seen: Seen = Arc::default();
    let mock = common::serve(fastapi_like(seen.clone()));
    let ran = common::Bench::url(&format!("http://{}/old/v1/chat/completions", mock.addr))
        .parallel(1)
        .number(1)
        .run();
    let err: String = ran
        .db()
        .query_row("SELECT error FROM result", [], |r| r.get(0))
        .unwrap();
    // aiohttp: a POST redirected by 302 becomes a GET without a body, which the
    // chat route refuses.
    assert!(
        err.starts_with("HTTP 405"),
        "{err} {:?}",
        seen.lock().unwrap()
    );
    let methods: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|(m, p, _)| format!("{m} {p}"))
        .collect();
    assert_eq!(methods, ["POST /old/v1/chat/completions"]);
    drop(ran);
    let ran = common::Bench::url(&format!("http://{}/loop/v1/chat/completions", mock.addr))
        .parallel(1)
        .number(1)
        .run();
    let (status, kind, err): (i64, String, String) = ran
        .db()
        .query_row(
            "SELECT http_status, failure_kind, error FROM result",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((status, kind.as_str()), (308, "other"));
    assert!(
        err.contains("Location: /loop/v1/chat/completions")
            && err.contains("more than 10 redirects"),
        "{err}"
    );
    let loops = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, p, _)| p == "/loop/v1/chat/completions")
        .count();
    assert_eq!(loops, 11, "the first request and 10 redirects");
}

/// A forward HTTP proxy on 127.0.0.1:0 (absolute-form requests and CONNECT), on
/// threads: each connection is piped to its target, and every request line the
/// clients sent through it is kept.
struct ForwardProxy {
    addr: std::net::SocketAddr,
    lines: Arc<Mutex<Vec<String>>>,
}

fn forward_proxy() -> ForwardProxy {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let lines: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen = lines.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut client) = c else { continue };
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut b = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match client.read(&mut b) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&b[..n]),
                    }
                }
                let text = String::from_utf8_lossy(&head).to_string();
                let first = text.lines().next().unwrap_or("").to_string();
                let mut parts = first.split(' ');
                let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
                let authority = if method == "CONNECT" {
                    target.to_string()
                } else {
                    target
                        .trim_start_matches("http://")
                        .split('/')
                        .next()
                        .unwrap_or("")
                        .to_string()
                };
                let Ok(mut server) = std::net::TcpStream::connect(&authority) else {
                    let _ =
                        client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
                    return;
                };
                if method == "CONNECT" {
                    seen.lock().unwrap().push(first.clone());
                    let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                } else {
                    let _ = server.write_all(&head);
                }
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut s2, &mut c2);
                    let _ = c2.shutdown(std::net::Shutdown::Write);
                });
                // Client to server, keeping the request lines it carries.
                let mut stream = if method == "CONNECT" {
                    Vec::new()
                } else {
                    head
                };
                loop {
                    match client.read(&mut b) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            stream.extend_from_slice(&b[..n]);
                            if server.write_all(&b[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = server.shutdown(std::net::Shutdown::Write);
                let text = String::from_utf8_lossy(&stream);
                let mut seen = seen.lock().unwrap();
                // Requests follow each other's bodies directly: find their lines
                // anywhere in the stream.
                for (i, _) in text.match_indices("POST http://") {
                    seen.push(text[i..].split("\r\n").next().unwrap_or("").to_string());
                }
                for (i, _) in text.match_indices("Proxy-Authorization: ") {
                    seen.push(text[i..].split("\r\n").next().unwrap_or("").to_string());
                }
            });
        }
    });
    ForwardProxy { addr, lines }
}

fn bin() -> std::process::Command {
    std::process::Command::new(env!("CARGO_BIN_EXE_perfscope"))
}

/// Runs `perfscope perf` with the proxy variables given (and no others).
fn perf_with_env(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    let mut c = bin();
    for v in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "no_proxy",
        "NO_PROXY",
        "ALL_PROXY",
        "all_proxy",
    ] {
        c.env_remove(v);
    }
    #[rustfmt::skip]
    let o = c
        .args(["perf", "--model", "m", "--metrics-addr", "off", "--outputs-dir", out.path().to_str().unwrap()])
        .args(args)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn the_proxy_variables_are_honoured_by_the_load_and_the_scraper_or_bypassed_by_no_proxy() {
    let _g = common::lock();
    let sim = common::start_sim(perfscope::sim::SimConfig {
        zero_delay: true,
        ..Default::default()
    });
    let url = format!("{}/v1/chat/completions", sim.base_url());
    let proxy = forward_proxy();
    let proxy_url = format!("http://alice:s3cret@{}", proxy.addr);
    let args = ["--url", url.as_str(), "--parallel", "2", "--number", "10"];
    let (code, stderr) = perf_with_env(&args, &[("HTTP_PROXY", &proxy_url)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("go through the proxy http://**********@"),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret"), "{stderr}");
    // Give the proxy's threads a moment to record the closed connections.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let lines = proxy.lines.lock().unwrap().clone();
    let posts = lines
        .iter()
        .filter(|l| l.starts_with("POST http://") && l.contains("/v1/chat/completions"))
        .count();
    // The connection test, its max_tokens check and the 10 requests, in absolute
    // form, with the proxy's credentials; the server-metrics scrapes tunnel through
    // it (ureq CONNECTs).
    assert_eq!(posts, 12, "{lines:?}");
    let sim_authority = sim.base_url().trim_start_matches("http://").to_string();
    assert!(
        lines.contains(&format!("CONNECT {sim_authority} HTTP/1.1")),
        "{lines:?}"
    );
    let auth = lines
        .iter()
        .filter(|l| *l == "Proxy-Authorization: Basic YWxpY2U6czNjcmV0")
        .count();
    assert!(auth >= 12, "{lines:?}");
    assert_eq!(
        sim.sim
            .requests_total
            .load(std::sync::atomic::Ordering::Relaxed),
        12
    );
    proxy.lines.lock().unwrap().clear();

    // NO_PROXY names the host: nothing goes through the proxy.
    let (code, stderr) = perf_with_env(
        &args,
        &[
            ("HTTP_PROXY", &proxy_url),
            ("NO_PROXY", "localhost,127.0.0.1"),
        ],
    );
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("through the proxy"), "{stderr}");
    // --api sim: perfscope's own simulator is never proxied.
    let (code, stderr) = perf_with_env(
        &[
            "--api",
            "sim",
            "--parallel",
            "2",
            "--number",
            "10",
            "--sim-args",
            r#"{"zero_delay": true}"#,
        ],
        &[("http_proxy", &proxy_url)],
    );
    assert_eq!(code, 0, "{stderr}");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(
        proxy.lines.lock().unwrap().len(),
        0,
        "{:?}",
        proxy.lines.lock().unwrap()
    );
}

/// A self-signed certificate and key as `openssl req -x509` makes them (marked as a
/// CA, no subjectAltName), written to `dir`.
fn openssl_self_signed(dir: &std::path::Path) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    if !common::external("openssl") {
        return None;
    }
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    #[rustfmt::skip]
    let ok = std::process::Command::new("openssl")
        .args(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=localhost",
               "-keyout", key.to_str().unwrap(), "-out", cert.to_str().unwrap()])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "openssl req -x509 failed");
    Some((cert, key))
}

/// TLS on 127.0.0.1:0 in front of `backend` (a plain-HTTP address), with `cert`.
fn tls_front(
    cert: &std::path::Path,
    key: &std::path::Path,
    backend: std::net::SocketAddr,
) -> std::net::SocketAddr {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    perfscope::client::install_tls_provider();
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(l.local_addr().unwrap()).unwrap();
            loop {
                let Ok((tcp, _)) = l.accept().await else {
                    continue;
                };
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let Ok(mut back) = tokio::net::TcpStream::connect(backend).await else {
                        return;
                    };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut back).await;
                });
            }
        });
    });
    rx.recv().unwrap()
}

#[test]
fn https_trusts_ca_cert_ssl_cert_file_or_insecure_and_names_a_plain_http_port() {
    let _g = common::lock();
    let dir = tempfile::tempdir().unwrap();
    let Some((cert, key)) = openssl_self_signed(dir.path()) else {
        return;
    };
    let sim = common::start_sim(perfscope::sim::SimConfig {
        zero_delay: true,
        ..Default::default()
    });
    let backend: std::net::SocketAddr = sim
        .base_url()
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    let front = tls_front(&cert, &key, backend);
    let url = format!("https://127.0.0.1:{}/v1/chat/completions", front.port());
    let base = [
        "--url",
        url.as_str(),
        "--parallel",
        "2",
        "--number",
        "6",
        "--server-metrics",
        "off",
    ];
    let cert_s = cert.to_str().unwrap();
    // Not trusted: the connection test fails at once, naming the certificate.
    let (code, stderr) = perf_with_env(&base, &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.to_lowercase().contains("certificate"), "{stderr}");
    // --ca-cert with the server's own certificate.
    let (code, stderr) = perf_with_env(&[&base[..], &["--ca-cert", cert_s]].concat(), &[]);
    assert_eq!(code, 0, "{stderr}");
    // SSL_CERT_FILE naming it.
    let (code, stderr) = perf_with_env(&base, &[("SSL_CERT_FILE", cert_s)]);
    assert_eq!(code, 0, "{stderr}");
    // --insecure, with its warning.
    let (code, stderr) = perf_with_env(&[&base[..], &["--insecure"]].concat(), &[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("--insecure: the TLS certificate"),
        "{stderr}"
    );
    // Through an HTTPS_PROXY: a CONNECT tunnel to the server.
    let proxy = forward_proxy();
    let (code, stderr) = perf_with_env(
        &[&base[..], &["--ca-cert", cert_s]].concat(),
        &[("HTTPS_PROXY", &format!("http://{}", proxy.addr))],
    );
    assert_eq!(code, 0, "{stderr}");
    let connects = proxy
        .lines
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("CONNECT 127.0.0.1:"))
        .count();
    assert!(connects >= 2, "{:?}", proxy.lines.lock().unwrap());
    assert_eq!(
        sim.sim
            .requests_total
            .load(std::sync::atomic::Ordering::Relaxed),
        // Four runs: the connection test, its max_tokens check, then the requests.
        4 * 8
    );

    // https:// to the simulator's plain-HTTP port: named, and quick.
    let plain = format!("https://{backend}/v1/chat/completions");
    let t = std::time::Instant::now();
    let (code, stderr) = perf_with_env(&["--url", &plain, "--number", "1"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("this port speaks plain HTTP, not TLS; use http://"),
        "{stderr}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        t.elapsed()
    );
    // A port that accepts and stays silent: the handshake times out in 10 s, with
    // the hint, and no retry.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!(
        "https://{}/v1/chat/completions",
        silent.local_addr().unwrap()
    );
    let t = std::time::Instant::now();
    let (code, stderr) = perf_with_env(&["--url", &silent_url, "--number", "1"], &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("within 10 s") && stderr.contains("use http://"),
        "{stderr}"
    );
    assert!(
        t.elapsed() < std::time::Duration::from_secs(14),
        "{:?}",
        t.elapsed()
    );
    drop(silent);
}
