//! The web UI, one in the binary: `perfscope serve` (the run history of the given
//! output trees, a run's page, comparisons, and, with `--allow-run`, starting and
//! stopping runs) and the live page of a running benchmark on its `--metrics-addr`
//! listener (next to `/metrics`). Every script and style ships in the binary; the
//! pages request nothing outside this server.
//!
//! The server is axum on tokio, as `/metrics` and the simulator; the front end is
//! plain HTML, one stylesheet and small scripts without a framework or a build
//! step, the charts SVG.

mod api;
pub mod history;
pub mod jobs;
pub mod live;
pub mod paths;
mod respond;
pub mod rows;
pub mod run;

use anyhow::{Context, Result};
use api::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use crate::telemetry::log;
use respond::text;
pub use respond::{query_param, query_params};

/// What `perfscope serve` serves, and where.
pub struct ServeOptions {
    /// The output trees (`--outputs-dir` of the runs), as given.
    pub trees: Vec<PathBuf>,
    pub addr: SocketAddr,
    /// `--allow-run`: runs can be started and stopped from the page.
    pub allow_run: bool,
}

const INDEX: &str = include_str!("assets/index.html");
const LIVE: &str = include_str!("assets/live.html");
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "/assets/app.js",
        include_str!("assets/app.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/live.js",
        include_str!("assets/live.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/chart.js",
        include_str!("assets/chart.js"),
        "text/javascript; charset=utf-8",
    ),
    (
        "/assets/app.css",
        include_str!("assets/app.css"),
        "text/css; charset=utf-8",
    ),
];

fn canonical_trees(trees: &[PathBuf]) -> Result<Vec<PathBuf>> {
    trees
        .iter()
        .map(|t| {
            std::fs::canonicalize(t).with_context(|| {
                format!(
                    "--outputs: cannot read {}; give a directory runs were written to (their --outputs-dir)",
                    t.display()
                )
            })
        })
        .collect()
}

/// `perfscope serve`'s router, read-only (the tests serve it on 127.0.0.1:0).
pub fn router(trees: Vec<PathBuf>) -> Result<axum::Router> {
    router_with(trees, None)
}

/// `perfscope serve`'s router; with `jobs`, runs can be started and stopped.
pub fn router_with(trees: Vec<PathBuf>, jobs: Option<jobs::Jobs>) -> Result<axum::Router> {
    let state = Arc::new(State {
        trees: canonical_trees(&trees)?,
        jobs,
        live: None,
    });
    Ok(app(state, INDEX))
}

/// The live page of a running benchmark (`/`), its event stream, and the run
/// history of its output tree (`/history`, where a slow point's request is found),
/// to be merged with `/metrics` on the `--metrics-addr` listener. Without
/// `with_history` (a listener other hosts can reach) the rows and history are not
/// served: the live page shows what `/metrics` already does, and no more.
pub fn live_router(feed: live::Feed, outputs: PathBuf, with_history: bool) -> axum::Router {
    // The output tree exists once the run has started writing; a tree that cannot
    // be read leaves the history empty, never the live page without its feed.
    let trees = if with_history {
        canonical_trees(&[outputs]).unwrap_or_default()
    } else {
        Vec::new()
    };
    let state = Arc::new(State {
        trees,
        jobs: None,
        live: Some(feed),
    });
    let page_route = axum::Router::new().route(
        "/history",
        get(move || async move {
            if with_history {
                page(INDEX, "text/html; charset=utf-8")
            } else {
                text(
                    StatusCode::NOT_FOUND,
                    "the run history is served on a loopback --metrics-addr only;                      browse it with `perfscope serve`\n",
                )
            }
        }),
    );
    app(state, LIVE).merge(page_route)
}

fn app(state: Arc<State>, index: &'static str) -> axum::Router {
    let mut r = axum::Router::new().route(
        "/",
        get(move || async move { page(index, "text/html; charset=utf-8") }),
    );
    for &(path, body, kind) in ASSETS {
        r = r.route(path, get(move || async move { page(body, kind) }));
    }
    macro_rules! api {
        ($method:ident, $path:expr, $handler:path) => {{
            let s = state.clone();
            r = r.route(
                $path,
                $method(move |req: axum::extract::Request| {
                    let s = s.clone();
                    async move { $handler(s, req).await }
                }),
            );
        }};
    }
    api!(get, "/api/config", api::config);
    api!(get, "/api/runs", api::runs);
    api!(get, "/api/run", api::run);
    api!(get, "/api/rows", api::rows);
    api!(get, "/api/compare", api::compare);
    api!(get, "/api/jobs", api::jobs_list);
    api!(post, "/api/jobs", api::jobs_start);
    api!(post, "/api/jobs/stop", api::jobs_stop);
    api!(get, "/live/events", api::live_events);
    r.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
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

/// Serves until Ctrl-C.
pub fn serve_blocking(o: ServeOptions) -> Result<()> {
    let jobs = if o.allow_run {
        Some(jobs::Jobs::new(
            o.trees.first().cloned().unwrap_or_default(),
        )?)
    } else {
        None
    };
    let token = jobs.as_ref().map(|j| j.token().to_string());
    let app = router_with(o.trees.clone(), jobs)?;
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
        let trees = o
            .trees
            .iter()
            .map(|t| t.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match &token {
            // The token goes in the fragment: browsers never send it, so it stays
            // out of access logs; the page keeps it for its requests.
            Some(t) => log::info(format!(
                "Serving the runs under {trees} on http://{local}/#token={t} \
                 (runs can be started and stopped with this token; Ctrl-C to stop)"
            )),
            None => log::info(format!(
                "Serving the runs under {trees} on http://{local}/ (Ctrl-C to stop)"
            )),
        }
        crate::recorder::prometheus::serve_bounded(listener, app, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("the web server failed")
    })
}
