//! `perfscope serve`: the run history in a browser, read-only, from the given
//! output trees (perfscope's and evalscope's runs). Every script and style ships in
//! the binary; the page requests nothing outside this server.
//!
//! The server is axum on tokio, as `/metrics` and the simulator; the page is one
//! HTML file, one stylesheet and one small script without a framework.

pub mod history;
pub mod paths;

use anyhow::{Context, Result};
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::telemetry::log;

/// What `perfscope serve` serves, and where.
pub struct ServeOptions {
    /// The output trees (`--outputs-dir` of the runs), as given.
    pub trees: Vec<PathBuf>,
    pub addr: SocketAddr,
}

const INDEX: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");

/// The trees, canonical (so that a run's path can be checked against them).
struct State {
    trees: Vec<PathBuf>,
}

/// The router (the tests serve it on 127.0.0.1:0).
pub fn router(trees: Vec<PathBuf>) -> Result<axum::Router> {
    let trees = trees
        .iter()
        .map(|t| {
            std::fs::canonicalize(t).with_context(|| {
                format!(
                    "--outputs: cannot read {}; give a directory runs were written to (their --outputs-dir)",
                    t.display()
                )
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let state = Arc::new(State { trees });
    let s = state.clone();

    Ok(axum::Router::new()
        .route(
            "/",
            get(|| async { page(INDEX, "text/html; charset=utf-8") }),
        )
        .route(
            "/assets/app.js",
            get(|| async { page(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/assets/app.css",
            get(|| async { page(APP_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/api/runs",
            get(move |uri: Uri| {
                let s = s.clone();
                async move { runs(&s, &uri).await }
            }),
        )
        .route(
            "/api/run",
            get(move |uri: Uri| {
                let s = state.clone();
                async move { run(&s, &uri).await }
            }),
        )
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") }))
}

fn page(body: &'static str, kind: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, kind),
            // Nothing from elsewhere: scripts, styles, images, fonts and requests
            // are this server's only.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /api/runs?q=WORDS`: the runs, newest first, those matching every word.
async fn runs(s: &State, uri: &Uri) -> Response {
    let q = query_param(uri, "q").unwrap_or_default();
    let trees = s.trees.clone();
    // The scan reads files: off the async threads.
    let list = tokio::task::spawn_blocking(move || history::scan(&trees))
        .await
        .unwrap_or_default();
    let list: Vec<_> = list
        .into_iter()
        .filter(|e| history::matches(e, &q))
        .collect();
    json(&list)
}

/// One step of a run as `/api/run` shows it: its summary, or why it is unreadable.
#[derive(serde::Serialize)]
struct Step {
    name: String,
    summary: serde_json::Map<String, serde_json::Value>,
    problem: Option<String>,
}

/// `GET /api/run?id=ID`: a run's entry and its steps' summaries. 404 for an id
/// outside the served trees.
async fn run(s: &State, uri: &Uri) -> Response {
    let Some(id) = query_param(uri, "id") else {
        return (
            StatusCode::BAD_REQUEST,
            "give the run as ?id=<tree>/<path>\n",
        )
            .into_response();
    };
    let Some(dir) = paths::resolve(&s.trees, &id) else {
        return (
            StatusCode::NOT_FOUND,
            "no such run under the served output trees\n",
        )
            .into_response();
    };
    let detail = tokio::task::spawn_blocking(move || {
        let steps: Vec<Step> = history::steps_of(&dir)
            .iter()
            .map(|p| {
                let name = p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                match history::read_json(&p.join("benchmark_summary.json")) {
                    Ok(summary) => Step {
                        name,
                        summary,
                        problem: None,
                    },
                    Err(e) => Step {
                        name,
                        summary: Default::default(),
                        problem: Some(e),
                    },
                }
            })
            .collect();
        serde_json::json!({"entry": history::read_run(&dir, id), "steps": steps})
    })
    .await;
    match detail {
        Ok(v) => json(&v),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the run failed\n",
        )
            .into_response(),
    }
}

/// A JSON answer.
fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A query parameter, percent-decoded.
pub fn query_param(uri: &Uri, key: &str) -> Option<String> {
    let q = uri.query()?;
    let url = reqwest::Url::parse(&format!("http://x/?{q}")).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Serves until Ctrl-C.
pub fn serve_blocking(o: ServeOptions) -> Result<()> {
    let app = router(o.trees.clone())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(o.addr)
            .await
            .with_context(|| format!("--host/--port: cannot listen on {}", o.addr))?;
        let local = listener.local_addr().unwrap_or(o.addr);
        log::info(format!(
            "Serving the runs under {} on http://{local}/ (Ctrl-C to stop)",
            o.trees
                .iter()
                .map(|t| t.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        crate::recorder::prometheus::serve_bounded(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the web server failed")
    })
}
