//! OpenTelemetry export: an in-test OTLP/HTTP receiver decodes the protobuf; one
//! CLIENT span per request, GenAI attributes, first-token event, error.type on
//! failures, trace ids equal to SQLite's and to the traceparent sent.
use crate::common::{self, Bench};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use opentelemetry_proto::tonic::trace::v1::Span;
use perfscope::sim::SimConfig;
use prost::Message;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

fn attr(span: &Span, key: &str) -> Option<AnyValue> {
    span.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.clone()?.value)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// What an in-test OTLP receiver saw.
#[derive(Default)]
struct Seen {
    spans: Vec<Span>,
    /// `service.name` of every export's resource.
    services: Vec<String>,
    /// Request headers of every call (lower-case names).
    headers: Vec<HashMap<String, String>>,
    calls: usize,
}

type Shared = Arc<Mutex<Seen>>;

fn keep_request(seen: &Shared, headers: &axum::http::HeaderMap, req: ExportTraceServiceRequest) {
    let mut s = seen.lock().unwrap();
    s.headers.push(
        headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
            .collect(),
    );
    for rs in req.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| r.attributes.iter())
            .find(|a| a.key == "service.name")
            .and_then(|a| match a.value.clone()?.value? {
                AnyValue::StringValue(v) => Some(v),
                _ => None,
            })
            .unwrap_or_default();
        s.services.push(service);
        for ss in rs.scope_spans {
            s.spans.extend(ss.spans);
        }
    }
}

/// Serves `app` on 127.0.0.1:0 from its own thread and runtime.
fn serve(app: axum::Router) -> (String, std::thread::JoinHandle<()>) {
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();
    std_l.set_nonblocking(true).unwrap();
    let h = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_l).unwrap();
            let _ = axum::serve(l, app).await;
        });
    });
    (format!("http://{addr}"), h)
}

/// An OTLP/HTTP protobuf receiver; its first `fail_first` calls answer 503.
fn receiver_failing(fail_first: usize) -> (String, Shared, std::thread::JoinHandle<()>) {
    let seen: Shared = Arc::default();
    let keep = seen.clone();
    let app = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    assert_eq!(
                        headers.get("content-type").unwrap(),
                        "application/x-protobuf"
                    );
                    let call = {
                        let mut s = keep.lock().unwrap();
                        s.calls += 1;
                        s.calls
                    };
                    if call <= fail_first {
                        return axum::http::StatusCode::SERVICE_UNAVAILABLE;
                    }
                    let req = ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf");
                    keep_request(&keep, &headers, req);
                    axum::http::StatusCode::OK
                }
            },
        ),
    );
    let (url, h) = serve(app);
    (url, seen, h)
}

fn receiver() -> (String, Shared, std::thread::JoinHandle<()>) {
    receiver_failing(0)
}

#[test]
fn one_client_span_per_request_with_ids_from_sqlite() {
    let (endpoint, spans, _h) = receiver();
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        error_rate: 0.1,
        seed: 4,
        ..SimConfig::default()
    })
    .parallel(4)
    .number(120)
    .max_tokens(64)
    .args(&["--otlp-endpoint", &endpoint, "--metrics-addr", "off"])
    .run();
    assert_eq!(ran.outcome.exit_code, 0);
    let conn = ran.db();
    let mut st = conn
        .prepare("SELECT trace_id, success, failure_kind, completion_tokens FROM result")
        .unwrap();
    let rows: HashMap<String, (bool, Option<String>, Option<i64>)> = st
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                (r.get::<_, i64>(1)? == 1, r.get(2)?, r.get(3)?),
            ))
        })
        .unwrap()
        .map(|x| x.unwrap())
        .collect();
    assert_eq!(rows.len(), 120);
    // The exporter was flushed before the run returned.
    let spans = spans.lock().unwrap().spans.clone();
    assert_eq!(spans.len(), 120, "one span per request");
    // The server's own id of each request (its x-request-id), stored and on the span.
    let server_ids: HashMap<String, String> = conn
        .prepare("SELECT trace_id, request_id FROM result")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    let distinct: std::collections::HashSet<&String> = server_ids.values().collect();
    assert_eq!(distinct.len(), 120);
    // Each request sent its trace id as X-Request-Id, and the server (as vLLM)
    // answered with it.
    assert!(server_ids.iter().all(|(trace, id)| id == trace));
    let mut failures = 0;
    for s in &spans {
        let trace = hex(&s.trace_id);
        assert_eq!(
            attr(s, "perfscope.server.request_id"),
            Some(AnyValue::StringValue(server_ids[&trace].clone()))
        );
        let (ok, kind, tokens) = rows
            .get(&trace)
            .unwrap_or_else(|| panic!("span trace {trace} is not a stored row"));
        assert_eq!(s.name, "chat m");
        assert_eq!(s.kind, 3, "SPAN_KIND_CLIENT");
        assert!(s.parent_span_id.is_empty(), "each request is its own trace");
        assert!(s.end_time_unix_nano > s.start_time_unix_nano);
        assert_eq!(
            attr(s, "gen_ai.operation.name"),
            Some(AnyValue::StringValue("chat".into()))
        );
        assert_eq!(
            attr(s, "gen_ai.provider.name"),
            Some(AnyValue::StringValue("openai".into()))
        );
        assert_eq!(
            attr(s, "gen_ai.request.model"),
            Some(AnyValue::StringValue("m".into()))
        );
        assert_eq!(
            attr(s, "gen_ai.request.max_tokens"),
            Some(AnyValue::IntValue(64))
        );
        assert_eq!(
            attr(s, "server.address"),
            Some(AnyValue::StringValue("127.0.0.1".into()))
        );
        assert_eq!(
            attr(s, "perfscope.stage"),
            Some(AnyValue::StringValue("parallel_4_number_120".into()))
        );
        if *ok {
            assert_eq!(
                attr(s, "gen_ai.usage.output_tokens"),
                tokens.map(AnyValue::IntValue)
            );
            let ev = s
                .events
                .iter()
                .find(|e| e.name == "gen_ai.first_token")
                .expect("first-token event");
            assert!(
                ev.time_unix_nano >= s.start_time_unix_nano
                    && ev.time_unix_nano <= s.end_time_unix_nano
            );
            assert!(attr(s, "error.type").is_none());
            match attr(s, "gen_ai.response.finish_reasons") {
                Some(AnyValue::ArrayValue(a)) => {
                    assert_eq!(a.values.len(), 1);
                    assert!(matches!(
                        a.values[0].value.as_ref(),
                        Some(AnyValue::StringValue(r)) if r == "length" || r == "stop"
                    ));
                }
                other => panic!("finish_reasons: {other:?}"),
            }
            assert!(
                matches!(attr(s, "perfscope.ttft_s"), Some(AnyValue::DoubleValue(v)) if v > 0.0)
            );
            assert_eq!(s.flags & 0xff, 1, "sampled");
        } else {
            failures += 1;
            assert_eq!(
                attr(s, "error.type"),
                kind.clone().map(AnyValue::StringValue)
            );
            assert_eq!(
                s.status.as_ref().map(|st| st.code),
                Some(2),
                "STATUS_CODE_ERROR"
            );
        }
    }
    assert!(failures > 0);
}

#[test]
fn sample_ratio_and_no_exporter_without_configuration() {
    let _g = common::lock();
    let (endpoint, spans, _h) = receiver();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    #[rustfmt::skip]
    common::run(&[
        "--url", &url, "--model", "m", "--parallel", "4", "--number", "400", "--no-test-connection",
        "--otlp-endpoint", &endpoint, "--otlp-sample-ratio", "0.25", "--metrics-addr", "off",
        "--outputs-dir", out.path().to_str().unwrap(),
    ])
    .unwrap();
    let n = spans.lock().unwrap().spans.len();
    assert!(
        (50..=150).contains(&n),
        "about a quarter of 400 exported: {n}"
    );
    spans.lock().unwrap().spans.clear();
    // No --otlp-endpoint and no OTEL_EXPORTER_OTLP_* variable: nothing is exported.
    assert!(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_err());
    #[rustfmt::skip]
    common::run(&[
        "--url", &url, "--model", "m", "--number", "20", "--no-test-connection", "--metrics-addr", "off",
        "--outputs-dir", out.path().to_str().unwrap(), "--name", "plain",
    ])
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(spans.lock().unwrap().spans.len(), 0);
}

fn run_against(
    endpoint: &str,
    extra: &[&str],
    number: &str,
) -> (perfscope::engine::Outcome, tempfile::TempDir) {
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    #[rustfmt::skip]
    let mut args = vec![
        "--url", &url, "--model", "m", "--parallel", "4", "--number", number, "--no-test-connection",
        "--otlp-endpoint", endpoint, "--metrics-addr", "off",
        "--outputs-dir", out.path().to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = common::run(&args).unwrap();
    (o, out)
}

fn stored_trace_ids(o: &perfscope::engine::Outcome, stage: &str) -> Vec<String> {
    let conn = common::db(&o.dir.join(stage));
    let mut st = conn
        .prepare("SELECT trace_id FROM result ORDER BY trace_id")
        .unwrap();
    st.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|x| x.unwrap())
        .collect()
}

#[test]
fn exports_are_retried_after_503() {
    let _g = common::lock();
    let (endpoint, seen, _h) = receiver_failing(2);
    let (o, _out) = run_against(&endpoint, &[], "100");
    assert_eq!(o.exit_code, 0);
    let s = seen.lock().unwrap();
    assert!(
        s.calls >= 3,
        "two refusals, then at least one accepted call"
    );
    let mut got: Vec<String> = s.spans.iter().map(|x| hex(&x.trace_id)).collect();
    got.sort();
    assert_eq!(got, stored_trace_ids(&o, "parallel_4_number_100"));
    assert_eq!(s.services.first().map(String::as_str), Some("perfscope"));
}

#[test]
fn collector_down_leaves_the_benchmark_intact() {
    let _g = common::lock();
    // A port with nothing listening: every export is refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t0 = std::time::Instant::now();
    let (o, _out) = run_against(&format!("http://127.0.0.1:{port}"), &[], "60");
    assert_eq!(o.exit_code, 0);
    assert_eq!(stored_trace_ids(&o, "parallel_4_number_60").len(), 60);
    // Retries are bounded: a few seconds, not the export timeout per span.
    assert!(t0.elapsed() < std::time::Duration::from_secs(20));
}

/// OTLP/gRPC: an in-test HTTP/2 server implementing TraceService/Export. Its first
/// call answers UNAVAILABLE in a trailers-only response, which must be retried.
#[cfg(feature = "otlp-grpc")]
#[test]
fn grpc_export_with_status_in_trailers() {
    use http_body_util::BodyExt;
    let _g = common::lock();
    let seen: Shared = Arc::default();
    let keep = seen.clone();
    let app = axum::Router::new().route(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        axum::routing::post(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let keep = keep.clone();
                async move {
                    assert_eq!(headers.get("content-type").unwrap(), "application/grpc");
                    assert_eq!(headers.get("te").unwrap(), "trailers");
                    let call = {
                        let mut s = keep.lock().unwrap();
                        s.calls += 1;
                        s.calls
                    };
                    let grpc = |status: &'static str, body: Vec<u8>, in_trailers: bool| {
                        let mut t = axum::http::HeaderMap::new();
                        t.insert("grpc-status", status.parse().unwrap());
                        let b = http_body_util::Full::new(axum::body::Bytes::from(body));
                        let mut r = if in_trailers {
                            axum::http::Response::new(axum::body::Body::new(
                                b.with_trailers(async move { Some(Ok(t)) }),
                            ))
                        } else {
                            let mut r = axum::http::Response::new(axum::body::Body::new(b));
                            r.headers_mut().extend(t);
                            r
                        };
                        r.headers_mut()
                            .insert("content-type", "application/grpc".parse().unwrap());
                        r
                    };
                    if call == 1 {
                        return grpc("14", Vec::new(), false);
                    }
                    // 5-byte prefix: compressed flag 0, big-endian length.
                    assert_eq!(body[0], 0);
                    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
                    assert_eq!(len, body.len() - 5);
                    let req = ExportTraceServiceRequest::decode(&body[5..]).expect("valid OTLP");
                    keep_request(&keep, &headers, req);
                    // An empty ExportTraceServiceResponse, then grpc-status 0 in trailers.
                    grpc("0", vec![0, 0, 0, 0, 0], true)
                }
            },
        ),
    );
    let (endpoint, _h) = serve(app);
    let (o, _out) = run_against(&endpoint, &["--otlp-protocol", "grpc"], "50");
    assert_eq!(o.exit_code, 0);
    let s = seen.lock().unwrap();
    assert!(s.calls >= 2);
    let mut got: Vec<String> = s.spans.iter().map(|x| hex(&x.trace_id)).collect();
    got.sort();
    assert_eq!(got, stored_trace_ids(&o, "parallel_4_number_50"));
    assert!(s.spans.iter().all(|x| x.kind == 3 && x.name == "chat m"));
}

/// The standard variables configure the binary; header values (credentials) are sent
/// but never printed or stored.
#[test]
fn environment_configures_headers_and_resource_without_leaking_them() {
    let _g = common::lock();
    let (endpoint, seen, _h) = receiver();
    let out = tempfile::tempdir().unwrap();
    #[rustfmt::skip]
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_perfscope"))
        .args([
            "perf", "--api", "sim", "--model", "sim-7b", "--number", "12", "--parallel", "3",
            "--metrics-addr", "off", "--outputs-dir", out.path().to_str().unwrap(),
            "--sim-args", r#"{"zero_delay": true}"#,
        ])
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)
        .env("OTEL_EXPORTER_OTLP_HEADERS", "authorization=Bearer%20sekret-otlp-9,x-tenant=lab")
        .env("OTEL_SERVICE_NAME", "bench-client")
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{printed}");
    let s = seen.lock().unwrap();
    assert_eq!(
        s.spans.len(),
        12,
        "one span per request, connection test excluded"
    );
    assert!(s.services.iter().all(|x| x == "bench-client"));
    let h = &s.headers[0];
    assert_eq!(
        h.get("authorization").map(String::as_str),
        Some("Bearer sekret-otlp-9")
    );
    assert_eq!(h.get("x-tenant").map(String::as_str), Some("lab"));
    assert!(printed.contains("12 spans exported"), "{printed}");
    assert!(!printed.contains("sekret"), "{printed}");
    for f in common::files_under(out.path()) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !bytes.windows(6).any(|w| w == b"sekret"),
            "secret in {}",
            f.display()
        );
    }
}

/// Multi-turn: one INTERNAL span per conversation, parent of its turns' CLIENT spans,
/// all in one trace, each with `session.id`; the turns' trace id is the stored one.
#[test]
fn one_parent_span_per_session_with_its_turns_as_children() {
    let (endpoint, spans, _h) = receiver();
    let ran = Bench::sim_with(SimConfig {
        zero_delay: true,
        ..SimConfig::default()
    })
    .parallel(2)
    .number(4)
    .max_tokens(4)
    .args(&[
        "--dataset",
        "random_multi_turn",
        "--multi-turn",
        "--min-turns",
        "2",
        "--max-turns",
        "3",
        "--min-prompt-length",
        "20",
        "--max-prompt-length",
        "40",
        "--otlp-endpoint",
        &endpoint,
        "--metrics-addr",
        "off",
    ])
    .run();
    let rows: Vec<(String, String, i64)> = common::rows(
        &ran.db(),
        "SELECT session_id, trace_id, turn FROM result",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    );
    let spans = spans.lock().unwrap().spans.clone();
    let sessions: Vec<&Span> = spans.iter().filter(|s| s.kind == 1).collect();
    assert_eq!(sessions.len(), 4, "one span per conversation");
    assert_eq!(spans.len(), 4 + rows.len());
    for p in &sessions {
        let id = match attr(p, "session.id") {
            Some(AnyValue::StringValue(v)) => v,
            other => panic!("{other:?}"),
        };
        let turns: Vec<&Span> = spans
            .iter()
            .filter(|s| s.parent_span_id == p.span_id)
            .collect();
        let stored: Vec<&(String, String, i64)> = rows.iter().filter(|r| r.0 == id).collect();
        assert_eq!(turns.len(), stored.len(), "{id}");
        assert_eq!(
            attr(p, "perfscope.turns"),
            Some(AnyValue::IntValue(stored.len() as i64))
        );
        for t in &turns {
            assert_eq!(t.trace_id, p.trace_id);
            assert_eq!(
                attr(t, "session.id"),
                Some(AnyValue::StringValue(id.clone()))
            );
            assert!(t.start_time_unix_nano >= p.start_time_unix_nano);
            assert!(t.end_time_unix_nano <= p.end_time_unix_nano);
        }
        assert!(stored.iter().all(|r| r.1 == hex(&p.trace_id)));
    }
}

/// `--scenario agentx`: one trace per tree play; a subagent's session span is a
/// child of its root conversation's session span, and every request span a child
/// of its own conversation's session span.
#[test]
fn an_agentx_tree_play_is_one_span_tree() {
    let (endpoint, spans, _h) = receiver();
    let _g = common::lock();
    let (o, _dir) = crate::agentx::run_set(
        SimConfig {
            ttft_ms: Some(2.0),
            itl_ms: Some(0.5),
            ..SimConfig::default()
        },
        &[
            "--parallel",
            "2",
            "--duration",
            "12",
            "--no-test-connection",
            "--otlp-endpoint",
            &endpoint,
        ],
    );
    let rows: Vec<(String, String)> = common::rows(
        &common::db(&o.dir.join("agentx_256k/parallel_2")),
        "SELECT session_id, trace_id FROM result WHERE is_last_turn = 1",
        |r| Ok((r.get(0)?, r.get(1)?)),
    );
    let spans = spans.lock().unwrap().spans.clone();
    let session = |id: &str| {
        spans.iter().find(|s| {
            s.kind == 1 && attr(s, "session.id") == Some(AnyValue::StringValue(id.into()))
        })
    };
    let mut children = 0;
    for (id, trace) in &rows {
        let Some(s) = session(id) else { continue };
        assert_eq!(hex(&s.trace_id), *trace, "{id}");
        let (conv, play) = id.rsplit_once('#').unwrap();
        match conv.split_once("::sa:") {
            None => assert!(
                s.parent_span_id.is_empty(),
                "{id}: a root session has no parent"
            ),
            Some((root, _)) => {
                // A root cut by the deadline has no session span of its own.
                if let Some(parent) = session(&format!("{root}#{play}")) {
                    children += 1;
                    assert_eq!(s.parent_span_id, parent.span_id, "{id}");
                    assert_eq!(s.trace_id, parent.trace_id, "{id}: one trace per tree play");
                }
            }
        }
        // Its requests are its children.
        assert!(
            spans
                .iter()
                .any(|r| r.kind != 1 && r.parent_span_id == s.span_id),
            "{id}"
        );
    }
    assert!(children > 0, "some whole trees finished: {rows:?}");
}
