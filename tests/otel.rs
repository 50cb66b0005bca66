//! OpenTelemetry export: an in-test OTLP/HTTP receiver decodes the protobuf; one
//! CLIENT span per request, GenAI attributes, first-token event, error.type on
//! failures, trace ids equal to SQLite's and to the traceparent sent.
mod common;

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

/// Receives OTLP/HTTP protobuf exports on 127.0.0.1:0 and keeps the decoded spans.
fn receiver() -> (String, Arc<Mutex<Vec<Span>>>, std::thread::JoinHandle<()>) {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let keep = spans.clone();
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
                            let req = ExportTraceServiceRequest::decode(body)
                                .expect("valid OTLP protobuf");
                            for rs in req.resource_spans {
                                for ss in rs.scope_spans {
                                    keep.lock().unwrap().extend(ss.spans);
                                }
                            }
                            ""
                        }
                    },
                ),
            );
            let _ = axum::serve(l, app).await;
        });
    });
    (format!("http://{addr}"), spans, h)
}

#[test]
fn one_client_span_per_request_with_ids_from_sqlite() {
    let _g = common::lock();
    let (endpoint, spans, _h) = receiver();
    let sim = common::start_sim(SimConfig {
        zero_delay: true,
        error_rate: 0.1,
        seed: 4,
        ..SimConfig::default()
    });
    let out = tempfile::tempdir().unwrap();
    let url = format!("{}/v1/chat/completions", sim.base_url());
    #[rustfmt::skip]
    let o = common::run(&[
        "--url", &url, "--model", "m", "--parallel", "4", "--number", "120", "--no-test-connection",
        "--otlp-endpoint", &endpoint, "--metrics-addr", "off", "--max-tokens", "64",
        "--outputs-dir", out.path().to_str().unwrap(),
    ])
    .unwrap();
    assert_eq!(o.exit_code, 0);
    let conn = common::db(&o.dir.join("parallel_4_number_120"));
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
    let spans = spans.lock().unwrap().clone();
    assert_eq!(spans.len(), 120, "one span per request");
    let mut failures = 0;
    for s in &spans {
        let trace = hex(&s.trace_id);
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
    let n = spans.lock().unwrap().len();
    assert!(
        (50..=150).contains(&n),
        "about a quarter of 400 exported: {n}"
    );
    spans.lock().unwrap().clear();
    // No --otlp-endpoint and no OTEL_EXPORTER_OTLP_* variable: nothing is exported.
    assert!(std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").is_err());
    #[rustfmt::skip]
    common::run(&[
        "--url", &url, "--model", "m", "--number", "20", "--no-test-connection", "--metrics-addr", "off",
        "--outputs-dir", out.path().to_str().unwrap(), "--name", "plain",
    ])
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(spans.lock().unwrap().len(), 0);
}
