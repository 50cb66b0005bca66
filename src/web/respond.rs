//! Answers and query parameters shared by the web handlers.

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// A JSON answer.
pub fn json<T: serde::Serialize>(v: &T) -> Response {
    match serde_json::to_string(v) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A plain-text answer with a status.
pub fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (status, body.into()).into_response()
}

/// A query parameter, percent-decoded.
pub fn query_param(uri: &Uri, key: &str) -> Option<String> {
    query_params(uri, key).into_iter().next()
}

/// Every value of a repeated query parameter, percent-decoded.
pub fn query_params(uri: &Uri, key: &str) -> Vec<String> {
    let Some(q) = uri.query() else {
        return Vec::new();
    };
    let Ok(url) = reqwest::Url::parse(&format!("http://x/?{q}")) else {
        return Vec::new();
    };
    url.query_pairs()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}
