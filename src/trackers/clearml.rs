//! ClearML (app.clear.ml or a self-hosted clearml-server): `auth.login` with the
//! access/secret pair for a bearer token, then versioned `service.action` calls
//! (POST, JSON body, `{meta, data}` envelope): project get-or-create, `tasks.create`
//! (type testing, the config as hyper-parameters), `tasks.started`, scalars and a
//! Plotly table through `events.add_batch` (JSON lines), and the final status.

use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::http::{Body, Http, Reply};
use super::payload::{group, Final, Outcome, Point, RunMeta, Tracker};
use super::settings::{http_url, TrackerFlags, TrackerSettings};

/// The newest API version whose calls we use; the server's own maximum is lower on
/// old servers (read from the login token).
const MAX_VERSION: (u32, u32) = (2, 23);
/// `Logger.report_single_value` iteration: shown as a summary table in the UI.
const SINGLE_VALUE_ITER: i64 = -2_147_483_648;

pub struct Clearml {
    s: TrackerSettings,
    http: Http,
    token: String,
    version: String,
    project_id: String,
    task: String,
}

impl Clearml {
    pub fn new(s: TrackerSettings) -> Clearml {
        Clearml {
            http: Http::new("ClearML", s.timeout, s.attempts, s.first_wait),
            s,
            token: String::new(),
            version: String::new(),
            project_id: String::new(),
            task: String::new(),
        }
    }

    fn login(&mut self) -> Result<()> {
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                self.s.key,
                self.s.secret.as_deref().unwrap_or("")
            ))
        );
        let r = self.http.send(
            "POST",
            &format!("{}/auth.login", self.s.host),
            &[("Authorization", &basic)],
            Body::Json(&json!({})),
        )?;
        let token = r.json()["data"]["token"].as_str().map(str::to_string);
        let Some(token) = token.filter(|_| r.ok()) else {
            bail!(
                "ClearML rejected the credentials (HTTP {}); check CLEARML_API_ACCESS_KEY, \
                 CLEARML_API_SECRET_KEY and CLEARML_API_HOST",
                r.status
            );
        };
        let (maj, min) = token_api_version(&token)
            .unwrap_or(MAX_VERSION)
            .min(MAX_VERSION);
        self.version = format!("v{maj}.{min}");
        self.token = token;
        Ok(())
    }

    fn call_raw(&self, action: &str, body: &Body) -> Result<Reply> {
        let url = format!("{}/{}/{action}", self.s.host, self.version);
        let auth = format!("Bearer {}", self.token);
        self.http
            .send("POST", &url, &[("Authorization", &auth)], body.clone())
    }

    /// A call, logging in again once on 401 (expired token); returns `data`.
    fn call(&mut self, action: &str, body: Body) -> Result<Value> {
        let mut r = self.call_raw(action, &body)?;
        if r.status == 401 {
            self.login()?;
            r = self.call_raw(action, &body)?;
        }
        let v = r.json();
        let code = v["meta"]["result_code"]
            .as_i64()
            .unwrap_or(i64::from(r.status));
        if !r.ok() || code != 200 {
            let msg = v["meta"]["result_msg"].as_str().unwrap_or("").to_string();
            bail!("ClearML {action}: HTTP {} {msg}", r.status);
        }
        Ok(v["data"].clone())
    }

    fn events(&mut self, lines: Vec<Value>) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let body: Vec<u8> = lines
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
            .into_bytes();
        let d = self.call(
            "events.add_batch",
            Body::Raw("application/json-lines", body),
        )?;
        let errors = d["errors"].as_i64().unwrap_or(0);
        if errors > 0 {
            bail!(
                "ClearML events.add_batch: {errors} events rejected: {}",
                d["errors_info"]
            );
        }
        Ok(())
    }

    fn web_host(&self) -> String {
        if let Some(w) = &self.s.web_host {
            return w.clone();
        }
        self.s
            .host
            .replacen("://api.", "://app.", 1)
            .replacen("://demoapi.", "://demoapp.", 1)
            .replacen(":8008", ":8080", 1)
    }
}

/// `api_version` from the token's payload (base64url JSON; not verified, as the SDK).
fn token_api_version(token: &str) -> Option<(u32, u32)> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    let s = v.get("api_version")?.as_str()?;
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// The name as an anchored Python regex (`projects.get_all` matches names by regex).
fn exact_match_regex(name: &str) -> String {
    let mut out = String::from("^");
    for c in name.chars() {
        if "\\.^$*+?{}[]|()".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('$');
    out
}

fn hyper_type(v: &Value) -> &'static str {
    match v {
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_i64() || n.is_u64() => "int",
        Value::Number(_) => "float",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
        _ => "str",
    }
}

impl Tracker for Clearml {
    fn start(&mut self, run: &RunMeta) -> Result<String> {
        self.login()?;
        let project = self.s.project.clone();
        let d = self.call(
            "projects.get_all",
            Body::Json(&json!({"name": exact_match_regex(&project), "only_fields": ["id"]})),
        )?;
        self.project_id = match d["projects"].as_array().and_then(|p| p.first()) {
            Some(p) => p["id"].as_str().unwrap_or_default().to_string(),
            None => {
                let d = self.call(
                    "projects.create",
                    Body::Json(&json!({"name": project, "description": "LLM serving benchmarks"})),
                )?;
                d["id"].as_str().unwrap_or_default().to_string()
            }
        };
        if self.project_id.is_empty() {
            bail!("ClearML: no id for project {project}");
        }
        let mut args = Map::new();
        for (k, v) in &run.config {
            let value = match v {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            args.insert(
                k.clone(),
                json!({"section": "Args", "name": k, "value": value, "type": hyper_type(v)}),
            );
        }
        let d = self.call(
            "tasks.create",
            Body::Json(&json!({
                "name": run.name, "type": "testing", "project": self.project_id,
                "tags": ["perfscope"], "comment": "perfscope perf benchmark (evalscope-compatible)",
                "hyperparams": {"Args": args},
            })),
        )?;
        self.task = d["id"]
            .as_str()
            .ok_or_else(|| anyhow!("ClearML tasks.create returned no id"))?
            .to_string();
        self.call("tasks.started", Body::Json(&json!({"task": self.task})))?;
        Ok(format!(
            "{}/projects/{}/experiments/{}/output/log",
            self.web_host(),
            self.project_id,
            self.task
        ))
    }

    fn point(&mut self, p: &Point) -> Result<()> {
        let ts = (p.unix * 1000.0) as i64;
        let lines = p
            .values
            .iter()
            .map(|(k, v)| {
                let (metric, variant) = group(k);
                json!({"type": "training_stats_scalar", "task": self.task, "metric": metric,
                       "variant": variant, "value": v, "iter": p.step, "timestamp": ts})
            })
            .collect();
        self.events(lines)
    }

    fn heartbeat_every(&self) -> std::time::Duration {
        // tasks.ping refreshes last_update, so the server's watchdog leaves the task.
        std::time::Duration::from_secs(300)
    }

    fn heartbeat(&mut self) -> Result<()> {
        self.call("tasks.ping", Body::Json(&json!({"task": self.task})))?;
        Ok(())
    }

    fn finish(&mut self, f: &Final) -> Result<()> {
        let ts = (f.unix * 1000.0) as i64;
        let mut lines: Vec<Value> = f
            .summary
            .iter()
            .map(|(k, v)| {
                json!({"type": "training_stats_scalar", "task": self.task, "metric": "Summary",
                       "variant": k, "value": v, "iter": SINGLE_VALUE_ITER, "timestamp": ts})
            })
            .collect();
        let t = &f.percentiles;
        if !t.rows.is_empty() {
            // Plotly table; cells are column-major.
            let cells: Vec<Vec<Value>> = (0..t.columns.len())
                .map(|c| {
                    t.rows
                        .iter()
                        .map(|r| r.get(c).cloned().unwrap_or(Value::Null))
                        .collect()
                })
                .collect();
            let fig = json!({
                "data": [{"type": "table", "header": {"values": t.columns}, "cells": {"values": cells}}],
                "layout": {"title": "Percentiles"},
            });
            lines.push(
                json!({"type": "plot", "task": self.task, "metric": "Percentiles",
                              "variant": "all steps", "iter": 0, "timestamp": ts,
                              "plot_str": fig.to_string()}),
            );
        }
        self.events(lines)?;
        match f.outcome {
            Outcome::Finished => self.call(
                "tasks.completed",
                Body::Json(&json!({"task": self.task, "status_reason": "benchmark finished", "force": true})),
            )?,
            Outcome::Failed => self.call(
                "tasks.failed",
                Body::Json(&json!({"task": self.task, "status_reason": "benchmark failed",
                                   "status_message": "a step had no successful request", "force": true})),
            )?,
            Outcome::Interrupted => self.call(
                "tasks.stopped",
                Body::Json(&json!({"task": self.task, "status_reason": "interrupted", "force": true})),
            )?,
        };
        Ok(())
    }
}

/// ClearML: the access and secret keys and the host from ClearML's (or the older
/// TRAINS_) variables.
pub fn settings(
    _flags: &TrackerFlags,
    env: &dyn Fn(&str) -> Option<String>,
    base: TrackerSettings,
) -> Result<TrackerSettings> {
    let url = http_url;
    let access = env("CLEARML_API_ACCESS_KEY").or_else(|| env("TRAINS_API_ACCESS_KEY"));
    let secret = env("CLEARML_API_SECRET_KEY").or_else(|| env("TRAINS_API_SECRET_KEY"));
    let (Some(key), Some(secret)) = (access, secret) else {
        bail!(
            "--visualizer clearml: set CLEARML_API_ACCESS_KEY and CLEARML_API_SECRET_KEY \
                 (ClearML web UI → Settings → Workspace → Create new credentials)"
        );
    };
    Ok(TrackerSettings {
        key,
        secret: Some(secret),
        host: url(
            "CLEARML_API_HOST",
            env("CLEARML_API_HOST")
                .or_else(|| env("TRAINS_API_HOST"))
                .unwrap_or_else(|| "https://api.clear.ml".into()),
        )?,
        web_host: env("CLEARML_WEB_HOST").map(|u| u.trim_end_matches('/').to_string()),
        project: env("CLEARML_PROJECT_NAME").unwrap_or(base.project.clone()),
        ..base
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_and_metric_names() {
        assert_eq!(exact_match_regex("perf_benchmark"), "^perf_benchmark$");
        assert_eq!(exact_match_regex("a.b(c)"), "^a\\.b\\(c\\)$");
        assert_eq!(super::group("TTFT (ms) p99"), ("TTFT (ms)", "p99"));
        assert_eq!(
            super::group("Req Throughput (req/s)"),
            ("Performance Metrics", "Req Throughput (req/s)")
        );
    }

    #[test]
    fn api_version_from_token() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"api_version":"2.20","server_version":"1.16"}"#);
        assert_eq!(token_api_version(&format!("h.{payload}.s")), Some((2, 20)));
        assert_eq!(token_api_version("opaque"), None);
    }
}
