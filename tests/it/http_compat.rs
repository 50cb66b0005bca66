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
