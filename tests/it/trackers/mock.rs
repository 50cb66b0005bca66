//! In-process mock trackers on 127.0.0.1:0. Each implements the endpoints perfscope
//! uses and rejects (HTTP 400/401, or GraphQL `errors` in a 200) any request that does
//! not follow the protocol: auth scheme, paths, required fields, ordering (columns
//! before scalars, history offsets), JSON-lines bodies. Every request is kept for
//! transcripts; every rejection is kept as a violation.

use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Req {
    pub method: String,
    pub path: String,
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Req {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn header(&self, k: &str) -> &str {
        self.headers.get(k).map(String::as_str).unwrap_or("")
    }
}

#[derive(Default)]
pub struct State {
    pub log: Vec<Req>,
    pub violations: Vec<String>,
    /// Answer the next N requests whose path contains the key with 503.
    pub fail_next: HashMap<String, usize>,
    /// Answer every request whose path contains this with 503 (an outage).
    pub down: Option<String>,
    /// Tracker-specific progress.
    pub history_lines: u64,
    pub run_id: String,
    pub declared: HashSet<String>,
    pub finished: Option<Value>,
    pub uploads: HashMap<String, String>,
    pub scalars: Vec<Value>,
    pub events: Vec<Value>,
    pub heartbeats: usize,
}

pub type Shared = Arc<Mutex<State>>;
type Handler = fn(&Req, &mut State, &str) -> Result<(u16, Value), String>;

pub struct Mock {
    pub url: String,
    pub state: Shared,
    _thread: std::thread::JoinHandle<()>,
}

impl Mock {
    pub fn violations(&self) -> Vec<String> {
        self.state.lock().unwrap().violations.clone()
    }
    pub fn log(&self) -> Vec<Req> {
        self.state.lock().unwrap().log.clone()
    }
}

fn start(handler: Handler) -> Mock {
    let state: Shared = Arc::default();
    let keep = state.clone();
    let std_l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = std_l.local_addr().unwrap();
    std_l.set_nonblocking(true).unwrap();
    let base = format!("http://{addr}");
    let base2 = base.clone();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(std_l).unwrap();
            let app = axum::Router::new().fallback(
                move |method: axum::http::Method,
                      uri: axum::http::Uri,
                      headers: axum::http::HeaderMap,
                      body: axum::body::Bytes| {
                    let keep = keep.clone();
                    let base = base2.clone();
                    async move {
                        let req = Req {
                            method: method.to_string(),
                            path: uri.path().to_string(),
                            headers: headers
                                .iter()
                                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                                .collect(),
                            body: String::from_utf8_lossy(&body).into_owned(),
                        };
                        let mut s = keep.lock().unwrap();
                        s.log.push(req.clone());
                        let outage = s
                            .down
                            .as_ref()
                            .is_some_and(|d| req.path.contains(d.as_str()));
                        let flaky = s
                            .fail_next
                            .iter_mut()
                            .find(|(k, n)| req.path.contains(k.as_str()) && **n > 0)
                            .map(|(_, n)| *n -= 1)
                            .is_some();
                        let (status, v) = if outage || flaky {
                            (503, json!({"message": "unavailable"}))
                        } else {
                            match handler(&req, &mut s, &base) {
                                Ok(r) => r,
                                Err(why) => {
                                    s.violations
                                        .push(format!("{} {}: {why}", req.method, req.path));
                                    (400, json!({"message": why}))
                                }
                            }
                        };
                        (
                            axum::http::StatusCode::from_u16(status).unwrap(),
                            [("content-type", "application/json")],
                            v.to_string(),
                        )
                    }
                },
            );
            let _ = axum::serve(l, app).await;
        });
    });
    Mock {
        url: base,
        state,
        _thread: thread,
    }
}

fn need<'a>(v: &'a Value, path: &str) -> Result<&'a Value, String> {
    let mut cur = v;
    for k in path.split('.') {
        cur = cur.get(k).ok_or_else(|| format!("missing `{path}`"))?;
    }
    if cur.is_null() {
        return Err(format!("`{path}` is null"));
    }
    Ok(cur)
}

fn need_str<'a>(v: &'a Value, path: &str) -> Result<&'a str, String> {
    need(v, path)?
        .as_str()
        .ok_or_else(|| format!("`{path}` is not a string"))
}

// ---------------------------------------------------------------- W&B

pub const WANDB_KEY: &str = "local-0123456789abcdef0123456789abcdef01234567";

pub fn wandb() -> Mock {
    start(wandb_handler)
}

fn wandb_handler(r: &Req, s: &mut State, base: &str) -> Result<(u16, Value), String> {
    if r.path.starts_with("/upload/") {
        if r.method != "PUT" {
            return Err("uploads are PUT".into());
        }
        if r.headers.contains_key("authorization") {
            return Err("no credentials may be sent to a presigned URL".into());
        }
        let t: Value = serde_json::from_str(&r.body).map_err(|_| "table is not JSON")?;
        need(&t, "columns")?;
        need(&t, "data")?;
        s.uploads
            .insert(r.path["/upload/".len()..].to_string(), r.body.clone());
        return Ok((200, json!({})));
    }
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{WANDB_KEY}"))
    );
    if r.header("authorization") != want {
        return Ok((401, json!({"error": "unauthorized"})));
    }
    if r.method != "POST" {
        return Err("W&B endpoints are POST".into());
    }
    let b = r.json();
    if r.path == "/graphql" {
        if !r.header("content-type").starts_with("application/json") {
            return Err("GraphQL needs Content-Type: application/json".into());
        }
        let q = need_str(&b, "query")?;
        let vars = need(&b, "variables")?;
        let gql_err = |m: &str| Ok((200, json!({"errors": [{"message": m}], "data": null})));
        if q.starts_with("query Viewer") {
            return Ok((
                200,
                json!({"data": {"viewer": {"id": "u1", "entity": "alice", "username": "alice"}}}),
            ));
        }
        if q.starts_with("mutation UpsertBucket") {
            if !q.contains("modelName: $project") || !q.contains("entityName: $entity") {
                return gql_err("project goes in modelName, entity in entityName");
            }
            let id = need_str(vars, "name")?;
            if id.len() != 8
                || !id
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            {
                return gql_err("run id must be 8 base-36 characters");
            }
            let project = need_str(vars, "project")?;
            let entity = need_str(vars, "entity")?;
            need_str(vars, "displayName")?;
            let cfg: Value = serde_json::from_str(need_str(vars, "config")?)
                .map_err(|_| "config must be a JSON string")?;
            let ok = cfg
                .as_object()
                .is_some_and(|m| m.values().all(|v| v.get("value").is_some()));
            if !ok {
                return gql_err("every config key must wrap its value as {\"value\": v}");
            }
            if project == "forbidden" {
                return gql_err("permission denied for project forbidden");
            }
            s.run_id = id.to_string();
            return Ok((
                200,
                json!({"data": {"upsertBucket": {"bucket": {
                "id": "QnVja2V0OjE=", "name": id, "displayName": vars["displayName"],
                "project": {"id": "p1", "name": project, "entity": {"id": "e1", "name": entity}},
                "historyLineCount": 0}, "inserted": true}}}),
            ));
        }
        if q.starts_with("mutation CreateRunFiles") {
            if need_str(vars, "run")? != s.run_id {
                return gql_err("unknown run");
            }
            let files = need(vars, "files")?
                .as_array()
                .ok_or("files must be a list")?;
            let out: Vec<Value> = files
                .iter()
                .map(|f| json!({"name": f, "uploadUrl": format!("{base}/upload/{}", f.as_str().unwrap_or(""))}))
                .collect();
            return Ok((
                200,
                json!({"data": {"createRunFiles": {
                "runID": "r1", "uploadHeaders": ["Content-Type:application/json"], "files": out}}}),
            ));
        }
        return gql_err("unknown operation");
    }
    let fs = format!("/files/alice/perf_benchmark/{}/file_stream", s.run_id);
    if r.path == fs && b == json!({}) {
        s.heartbeats += 1;
        return Ok((200, json!({"exitcode": null, "limits": {}})));
    }
    if r.path == fs {
        let files = need(&b, "files")?;
        if let Some(h) = files.get("wandb-history.jsonl") {
            let off = need(h, "offset")?
                .as_u64()
                .ok_or("offset must be an integer")?;
            if off != s.history_lines {
                return Err(format!(
                    "history offset {off}, expected {}",
                    s.history_lines
                ));
            }
            for line in need(h, "content")?
                .as_array()
                .ok_or("content must be a list")?
            {
                let l: Value = serde_json::from_str(line.as_str().ok_or("lines are strings")?)
                    .map_err(|_| "each history line is one JSON object")?;
                need(&l, "_step")?;
                need(&l, "_runtime")?;
                need(&l, "_timestamp")?;
                s.history_lines += 1;
            }
        }
        if let Some(sm) = files.get("wandb-summary.json") {
            if need(sm, "offset")? != 0 {
                return Err("the summary is always at offset 0".into());
            }
        }
        if b.get("complete") == Some(&Value::Bool(true)) {
            need(&b, "exitcode")?;
            for u in b
                .get("uploaded")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if !s.uploads.contains_key(u.as_str().unwrap_or("")) {
                    return Err(format!("{u} reported uploaded but never PUT"));
                }
            }
            s.finished = Some(b.clone());
        }
        return Ok((200, json!({"exitcode": null, "limits": {}})));
    }
    Err("unknown path".into())
}

// ---------------------------------------------------------------- SwanLab

pub const SWANLAB_KEY: &str = "sl-key-0123456789";

pub fn swanlab() -> Mock {
    start(swanlab_handler)
}

fn swanlab_handler(r: &Req, s: &mut State, _base: &str) -> Result<(u16, Value), String> {
    let Some(path) = r.path.strip_prefix("/api") else {
        return Err("every SwanLab path is under /api".into());
    };
    if path == "/login/api_key" {
        if r.method != "POST" {
            return Err("login is POST".into());
        }
        if r.header("authorization") != SWANLAB_KEY {
            return Ok((
                401,
                json!({"code": "Unauthorized", "message": "invalid api key"}),
            ));
        }
        return Ok((
            200,
            json!({"sid": "sid-42", "expiredAt": "2099-01-01T00:00:00.000Z",
                               "userInfo": {"username": "alice", "name": "Alice"}}),
        ));
    }
    if !r
        .header("cookie")
        .split(';')
        .any(|c| c.trim() == "sid=sid-42")
    {
        return Ok((
            401,
            json!({"code": "Unauthorized", "message": "no session"}),
        ));
    }
    let b = r.json();
    let exp = "/project/alice/perf_benchmark/runs/exp-1";
    match (r.method.as_str(), path) {
        ("POST", "/projects/alice") => {
            need_str(&b, "name")?;
            need_str(&b, "visibility")?;
            Ok((201, json!({})))
        }
        ("GET", "/project/alice/perf_benchmark") => Ok((
            200,
            json!({
            "cuid": "proj-1", "name": "perf_benchmark", "path": "/alice/perf_benchmark",
            "visibility": "PRIVATE", "group": {"username": "alice"}, "_count": {"experiments": 0}}),
        )),
        ("POST", "/project/alice/perf_benchmark/experiment") => {
            need_str(&b, "name")?;
            let created = need_str(&b, "createdAt")?;
            if !created.ends_with('Z') {
                return Err("createdAt must be RFC 3339 UTC".into());
            }
            Ok((
                201,
                json!({"cuid": "exp-1", "slug": "run-slug", "name": b["name"]}),
            ))
        }
        ("POST", "/house/experiments/exp-1/heartbeat") => {
            need_str(&b, "flagId")?;
            s.heartbeats += 1;
            Ok((200, json!({})))
        }
        ("PUT", p) if p == format!("{exp}/profile") => {
            if b.get("config").is_none() && b.get("metadata").is_none() {
                return Err("profile takes config or metadata".into());
            }
            if let Some(c) = b.get("config").and_then(Value::as_object) {
                if !c
                    .values()
                    .all(|v| v.get("value").is_some() && v.get("sort").is_some())
                {
                    return Err("config items are {value, desc, sort}".into());
                }
            }
            Ok((200, json!({})))
        }
        ("POST", "/experiment/exp-1/columns") => {
            for c in b.as_array().ok_or("columns is a JSON array")? {
                if need_str(c, "type")? != "FLOAT" {
                    return Err("scalar columns are FLOAT".into());
                }
                s.declared.insert(need_str(c, "key")?.to_string());
            }
            Ok((201, json!({})))
        }
        ("POST", "/house/metrics") => {
            if need_str(&b, "type")? != "scalar"
                || need_str(&b, "projectId")? != "proj-1"
                || need_str(&b, "experimentId")? != "exp-1"
            {
                return Err("type scalar with projectId and experimentId".into());
            }
            for m in need(&b, "metrics")?.as_array().ok_or("metrics is a list")? {
                let k = need_str(m, "key")?;
                if !s.declared.contains(k) {
                    return Err(format!("column {k} used before it was declared"));
                }
                need(m, "index")?.as_u64().ok_or("index is the step")?;
                need(m, "data")?;
                need_str(m, "create_time")?;
                s.scalars.push(m.clone());
            }
            Ok((200, json!({})))
        }
        ("PUT", p) if p == format!("{exp}/state") => {
            let st = need_str(&b, "state")?;
            if !["FINISHED", "CRASHED", "ABORTED"].contains(&st) {
                return Err(format!("unknown state {st}"));
            }
            need_str(&b, "finishedAt")?;
            s.finished = Some(b.clone());
            Ok((200, json!({})))
        }
        _ => Err("unknown endpoint".into()),
    }
}

// ---------------------------------------------------------------- ClearML

pub const CLEARML_ACCESS: &str = "ACCESSKEY123";
pub const CLEARML_SECRET: &str = "secret-clearml-456";

fn clearml_token() -> String {
    let e = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
    format!(
        "{}.{}.sig",
        e(r#"{"alg":"HS256"}"#),
        e(r#"{"api_version":"2.20","server_version":"1.16.0","feature_set":"basic"}"#)
    )
}

pub fn clearml() -> Mock {
    start(clearml_handler)
}

fn envelope(action: &str, code: u16, data: Value) -> (u16, Value) {
    (
        code,
        json!({"meta": {"id": "x", "trx": "x", "endpoint": {"name": action, "requested_version": "2.20",
               "actual_version": "2.20"}, "result_code": code, "result_subcode": 0,
               "result_msg": if code == 200 { "OK" } else { "error" }}, "data": data}),
    )
}

fn clearml_handler(r: &Req, s: &mut State, _base: &str) -> Result<(u16, Value), String> {
    if r.method != "POST" {
        return Err("ClearML calls are POST with a JSON body".into());
    }
    if r.path == "/auth.login" {
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{CLEARML_ACCESS}:{CLEARML_SECRET}"))
        );
        if r.header("authorization") != want {
            return Ok(envelope("auth.login", 401, json!({})));
        }
        return Ok(envelope(
            "auth.login",
            200,
            json!({"token": clearml_token()}),
        ));
    }
    // Versioned service.action paths, at the token's api_version.
    let Some(action) = r.path.strip_prefix("/v2.20/") else {
        return Err("calls go to /v2.20/<service>.<action> (the token's api_version)".into());
    };
    let (svc, act) = action.split_once('.').ok_or("path is service.action")?;
    if svc.is_empty() || act.is_empty() || act.contains('/') {
        return Err("path is service.action".into());
    }
    if r.header("authorization") != format!("Bearer {}", clearml_token()) {
        return Ok(envelope(action, 401, json!({})));
    }
    if action == "events.add_batch" {
        if r.header("content-type") != "application/json-lines" {
            return Err("events.add_batch takes application/json-lines".into());
        }
        let mut n = 0;
        for line in r.body.lines() {
            let e: Value = serde_json::from_str(line).map_err(|_| "one JSON event per line")?;
            if need_str(&e, "task")? != "task-1" {
                return Err("event for an unknown task".into());
            }
            need_str(&e, "metric")?;
            need_str(&e, "variant")?;
            need(&e, "iter")?.as_i64().ok_or("iter is an integer")?;
            match need_str(&e, "type")? {
                "training_stats_scalar" => {
                    need(&e, "value")?.as_f64().ok_or("value is a number")?;
                }
                "plot" => {
                    let p: Value = serde_json::from_str(need_str(&e, "plot_str")?)
                        .map_err(|_| "plot_str is a JSON string")?;
                    need(&p, "data")?;
                }
                t => return Err(format!("unknown event type {t}")),
            }
            s.events.push(e);
            n += 1;
        }
        return Ok(envelope(action, 200, json!({"added": n, "errors": 0})));
    }
    let b = r.json();
    if !b.is_object() {
        return Err("body is a JSON object".into());
    }
    let data = match action {
        "projects.get_all" => {
            if need_str(&b, "name")? != "^perf_benchmark$" {
                return Err("name is an anchored, escaped regex".into());
            }
            json!({"projects": []})
        }
        "projects.create" => {
            need_str(&b, "name")?;
            json!({"id": "proj-1"})
        }
        "tasks.create" => {
            need_str(&b, "name")?;
            if need_str(&b, "type")? != "testing" || need_str(&b, "project")? != "proj-1" {
                return Err("type testing in project proj-1".into());
            }
            for (k, p) in need(&b, "hyperparams.Args")?
                .as_object()
                .ok_or("Args is an object")?
            {
                if need_str(p, "section")? != "Args" || need_str(p, "name")? != k {
                    return Err("hyperparams items are {section, name, value}".into());
                }
                need(p, "value")?
                    .as_str()
                    .ok_or("hyperparameter values are strings")?;
            }
            json!({"id": "task-1"})
        }
        "tasks.ping" => {
            if need_str(&b, "task")? != "task-1" {
                return Err("unknown task".into());
            }
            s.heartbeats += 1;
            json!({})
        }
        "tasks.started" | "tasks.completed" | "tasks.failed" | "tasks.stopped" => {
            if need_str(&b, "task")? != "task-1" {
                return Err("unknown task".into());
            }
            if action != "tasks.started" {
                s.finished = Some(json!({"action": action, "body": b}));
            }
            json!({"updated": 1})
        }
        _ => return Err("unknown action".into()),
    };
    Ok(envelope(action, 200, data))
}
