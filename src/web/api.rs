//! The read-only JSON API of the pages: the run list, a run, a step's rows, and
//! comparisons. Every file is read off the async threads; a run that cannot be
//! read is an answer saying why, never a failed page for the rest.

use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use std::path::PathBuf;
use std::sync::Arc;

use super::respond::{json, query_param, query_params, text};
use super::{history, jobs, live, paths, rows};

/// What the handlers share: the trees (canonical, so that a run's path can be
/// checked against them), the run starter when allowed, the live feed when this is
/// a running benchmark's listener.
pub(crate) struct State {
    pub(crate) trees: Vec<PathBuf>,
    pub(crate) jobs: Option<jobs::Jobs>,
    pub(crate) live: Option<live::Feed>,
}

/// `/api/jobs…`: starting and stopping runs (`--allow-run`).
pub(super) async fn jobs_list(s: Arc<State>, req: Request) -> Response {
    jobs::list(s.jobs.as_ref(), req).await
}
pub(super) async fn jobs_start(s: Arc<State>, req: Request) -> Response {
    jobs::start(s.jobs.as_ref(), req).await
}
pub(super) async fn jobs_stop(s: Arc<State>, req: Request) -> Response {
    jobs::stop(s.jobs.as_ref(), req).await
}
/// `/live/events`: the running benchmark's feed (its `--metrics-addr` only).
pub(super) async fn live_events(s: Arc<State>, req: Request) -> Response {
    live::events(s.live.clone(), req).await
}

/// Runs `f` on the blocking pool; a panic in it is a 500 with a reason.
async fn blocking(f: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|_| {
        text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "reading the run failed\n",
        )
    })
}

/// `GET /api/config`: what this server offers (the page shows the run form only
/// when runs can be started).
pub(super) async fn config(s: Arc<State>, _req: Request) -> Response {
    json(&serde_json::json!({
        "allow_run": s.jobs.is_some(),
        "live": s.live.is_some(),
    }))
}

/// `GET /api/runs?q=WORDS`: the runs, newest first, those matching every word.
pub(super) async fn runs(s: Arc<State>, req: Request) -> Response {
    let q = query_param(req.uri(), "q").unwrap_or_default();
    let trees = s.trees.clone();
    blocking(move || {
        let list: Vec<_> = history::scan(&trees)
            .into_iter()
            .filter(|e| history::matches(e, &q))
            .collect();
        json(&list)
    })
    .await
}

/// The run directory an `id` names, or the answer saying it is not one.
fn run_dir(s: &State, req: &Request) -> Result<(String, PathBuf), (StatusCode, &'static str)> {
    let Some(id) = query_param(req.uri(), "id") else {
        return Err((
            StatusCode::BAD_REQUEST,
            "give the run as ?id=<tree>/<path>\n",
        ));
    };
    match paths::resolve(&s.trees, &id) {
        Some(dir) => Ok((id, dir)),
        None => Err((
            StatusCode::NOT_FOUND,
            "no such run under the served output trees\n",
        )),
    }
}

/// `GET /api/run?id=ID`: a run's entry, its steps' figures and its charts, from
/// the files it wrote. 404 for an id outside the served trees.
pub(super) async fn run(s: Arc<State>, req: Request) -> Response {
    let (id, dir) = match run_dir(&s, &req) {
        Ok(x) => x,
        Err((status, why)) => return text(status, why),
    };
    blocking(move || json(&super::run::detail(&dir, id))).await
}

/// `GET /api/rows?id=ID&step=NAME&page=N&per_page=N&sort=COL&desc=1&filter=KIND&trace=T&after=ROWID`:
/// one page of a step's request rows (`after`: in stored order, the rows after that
/// one, which is how the page asks for the next page).
pub(super) async fn rows(s: Arc<State>, req: Request) -> Response {
    let (_, dir) = match run_dir(&s, &req) {
        Ok(x) => x,
        Err((status, why)) => return text(status, why),
    };
    let uri = req.uri().clone();
    let step = query_param(&uri, "step").unwrap_or_default();
    // The step is one of the run's own (a name, never a path).
    let Some(step_dir) = history::steps_of(&dir)
        .into_iter()
        .find(|p| p.file_name().is_some_and(|n| n.to_string_lossy() == step))
    else {
        return text(StatusCode::NOT_FOUND, "no such step in this run\n");
    };
    let num = |k: &str, default: u64| {
        query_param(&uri, k)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let q = rows::RowQuery {
        page: num("page", 0),
        per_page: num("per_page", 50),
        sort: query_param(&uri, "sort"),
        descending: query_param(&uri, "desc").is_some_and(|v| v == "1" || v == "true"),
        filter: query_param(&uri, "filter"),
        trace_id: query_param(&uri, "trace"),
        after_rowid: query_param(&uri, "after").and_then(|v| v.parse().ok()),
    };
    blocking(move || match rows::page(&step_dir, &q) {
        Ok(v) => json(&v),
        Err(e) => text(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}\n")),
    })
    .await
}

/// `GET /api/compare?id=BASE&id=NEW[&id=NEW2…]`: `perfscope compare` of the first
/// run against each other one (its defaults: 200 resamples, 95 % intervals, a 2 %
/// smallest effect, seed 0), with its verdicts and intervals.
pub(super) async fn compare(s: Arc<State>, req: Request) -> Response {
    let ids = query_params(req.uri(), "id");
    if ids.len() < 2 {
        return text(
            StatusCode::BAD_REQUEST,
            "give two or more runs as ?id=A&id=B\n",
        );
    }
    let mut dirs = Vec::new();
    for id in &ids {
        match paths::resolve(&s.trees, id) {
            Some(d) => dirs.push(d),
            None => {
                return text(
                    StatusCode::NOT_FOUND,
                    format!("{id}: no such run under the served output trees\n"),
                )
            }
        }
    }
    let o = crate::compare::Options {
        resamples: 200,
        confidence: 0.95,
        seed: 0,
        min_effect: 2.0,
        fail_on: Vec::new(),
    };
    blocking(move || {
        let results: Vec<serde_json::Value> = dirs[1..]
            .iter()
            .zip(&ids[1..])
            .map(|(d, id)| match crate::compare::compare(&dirs[0], d, &o) {
                Ok(c) => serde_json::json!({"id": id, "comparison": c}),
                Err(e) => serde_json::json!({"id": id, "problem": format!("{e:#}")}),
            })
            .collect();
        json(&serde_json::json!({"base": ids[0], "against": results}))
    })
    .await
}
