//! SwanLab (swanlab.cn or a self-hosted swanlab-server): key exchange for a `sid`
//! cookie, project get-or-create, experiment create, profile (config and metadata),
//! columns before scalars, `house/metrics` scalars, and the final state. Every API
//! path is under `{host}/api`.

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

use super::http::{Body, Http};
use super::payload::{
    base36_id, group, rfc3339, url_segment as seg, Final, Outcome, Point, RunMeta, Tracker,
};
use super::settings::{http_url, TrackerFlags, TrackerSettings};

pub struct Swanlab {
    s: TrackerSettings,
    http: Http,
    cookie: String,
    workspace: String,
    project_id: String,
    exp: String,
    /// Project `version == 1`: the newer series API for columns.
    series_api: bool,
    declared: HashSet<String>,
    flag_id: String,
    last_step: u64,
    /// Per-key log counter (the pre-2026 SDK's `epoch`).
    epochs: std::collections::HashMap<String, u64>,
}

impl Swanlab {
    pub fn new(s: TrackerSettings) -> Swanlab {
        Swanlab {
            http: Http::new("SwanLab", s.timeout, s.attempts, s.first_wait),
            s,
            cookie: String::new(),
            workspace: String::new(),
            project_id: String::new(),
            exp: String::new(),
            series_api: false,
            declared: HashSet::new(),
            flag_id: base36_id(16),
            last_step: 0,
            epochs: Default::default(),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api{path}", self.s.host)
    }

    fn call(&self, method: &str, path: &str, body: Body) -> Result<super::http::Reply> {
        self.http
            .send(method, &self.url(path), &[("Cookie", &self.cookie)], body)
    }

    fn call_ok(&self, method: &str, path: &str, body: Body) -> Result<Value> {
        let r = self.call(method, path, body)?;
        if !r.ok() {
            bail!("SwanLab: {method} /api{path} was refused: {}", r.describe());
        }
        Ok(r.json())
    }

    fn run_path(&self, what: &str) -> String {
        format!(
            "/project/{}/{}/runs/{}/{what}",
            seg(&self.workspace),
            seg(&self.s.project),
            seg(&self.exp)
        )
    }

    /// Declares the keys not declared yet, then sends their scalars at `index`.
    fn scalars(&mut self, index: u64, values: &[(String, f64)], unix: f64) -> Result<()> {
        let new: Vec<&(String, f64)> = values
            .iter()
            .filter(|(k, _)| !self.declared.contains(k))
            .collect();
        if !new.is_empty() {
            let section = |k: &str| group(k).0.to_string();
            if self.series_api {
                let series: Vec<Value> = new
                    .iter()
                    .map(|(k, _)| json!({"key": k, "type": "FLOAT", "sectionName": section(k)}))
                    .collect();
                let path = format!(
                    "/projects/{}/{}/series",
                    seg(&self.workspace),
                    seg(&self.s.project)
                );
                self.call_ok("POST", &path, Body::Json(&json!({ "series": series })))?;
            } else {
                let cols: Value = new
                    .iter()
                    .map(|(k, _)| json!({"key": k, "type": "FLOAT", "class": "CUSTOM", "sectionName": section(k)}))
                    .collect();
                let path = format!("/experiment/{}/columns", seg(&self.exp));
                self.call_ok("POST", &path, Body::Json(&cols))?;
            }
            for (k, _) in new {
                self.declared.insert(k.clone());
            }
        }
        let t = rfc3339(unix);
        let metrics: Vec<Value> = values
            .iter()
            .map(|(k, v)| {
                let e = self.epochs.entry(k.clone()).or_insert(0);
                *e += 1;
                json!({"key": k, "index": index, "epoch": *e, "data": v, "create_time": t})
            })
            .collect();
        let body = json!({
            "type": "scalar", "projectId": self.project_id, "experimentId": self.exp,
            "flagId": self.flag_id, "metrics": metrics,
        });
        self.call_ok("POST", "/house/metrics", Body::Json(&body))?;
        Ok(())
    }
}

impl Tracker for Swanlab {
    fn start(&mut self, run: &RunMeta) -> Result<String> {
        // Key exchange: the raw key in `authorization`, no scheme, no body.
        let r = self.http.send(
            "POST",
            &self.url("/login/api_key"),
            &[("authorization", &self.s.key)],
            Body::None,
        )?;
        let v = r.json();
        let Some(sid) = v.get("sid").and_then(Value::as_str).filter(|_| r.ok()) else {
            bail!(
                "SwanLab rejected the API key (HTTP {}); check --swanlab-api-key / SWANLAB_API_KEY \
                 and --swanlab-host",
                r.status
            );
        };
        self.cookie = format!("sid={sid}");
        let username = v["userInfo"]["username"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.workspace = self.s.workspace.clone().unwrap_or(username);
        if self.workspace.is_empty() {
            bail!("SwanLab: no workspace; set SWANLAB_WORKSPACE");
        }
        let project = self.s.project.clone();
        let create = json!({"name": project, "visibility": "PRIVATE"});
        let r = self.call(
            "POST",
            &format!("/projects/{}", seg(&self.workspace)),
            Body::Json(&create),
        )?;
        if r.status == 404 {
            // Older servers.
            let legacy =
                json!({"name": project, "visibility": "PRIVATE", "username": self.workspace});
            self.call_ok("POST", "/project", Body::Json(&legacy))?;
        } else if !r.ok() {
            bail!("SwanLab: creating project {project}: {}", r.describe());
        }
        let p = self.call_ok(
            "GET",
            &format!("/project/{}/{}", seg(&self.workspace), seg(&project)),
            Body::None,
        )?;
        self.project_id = p["cuid"]
            .as_str()
            .ok_or_else(|| anyhow!("SwanLab: project {project} has no cuid"))?
            .to_string();
        self.series_api = p.get("version").and_then(Value::as_i64) == Some(1);
        let exp = json!({
            "name": run.name,
            "description": "perfscope perf benchmark",
            "createdAt": rfc3339(run.started_unix),
            "colors": ["#528d59", "#528d59"],
            "labels": [{"name": "perfscope"}],
            "job": "benchmark",
        });
        let e = self.call_ok(
            "POST",
            &format!(
                "/project/{}/{}/experiment",
                seg(&self.workspace),
                seg(&project)
            ),
            Body::Json(&exp),
        )?;
        self.exp = e["cuid"]
            .as_str()
            .ok_or_else(|| anyhow!("SwanLab: experiment create returned no cuid"))?
            .to_string();
        let slug = e["slug"].as_str().unwrap_or(&self.exp).to_string();
        self.call_ok(
            "POST",
            &format!("/house/experiments/{}/heartbeat", seg(&self.exp)),
            Body::Json(&json!({"flagId": self.flag_id})),
        )?;
        let mut config = Map::new();
        for (i, (k, v)) in run.config.iter().enumerate() {
            config.insert(k.clone(), json!({"value": v, "desc": "", "sort": i}));
        }
        self.call_ok(
            "PUT",
            &self.run_path("profile"),
            Body::Json(&json!({ "config": config })),
        )?;
        let web = self
            .s
            .web_host
            .clone()
            .unwrap_or_else(|| self.s.host.clone());
        Ok(format!(
            "{web}/@{}/{}/runs/{}",
            seg(&self.workspace),
            seg(&project),
            seg(&slug)
        ))
    }

    fn point(&mut self, p: &Point) -> Result<()> {
        self.last_step = p.step;
        self.scalars(p.step, &p.values, p.unix)
    }

    fn heartbeat_every(&self) -> std::time::Duration {
        // The SDK's default heartbeat interval.
        std::time::Duration::from_secs(600)
    }

    fn heartbeat(&mut self) -> Result<()> {
        let path = format!("/house/experiments/{}/heartbeat", seg(&self.exp));
        self.call_ok("POST", &path, Body::Json(&json!({"flagId": self.flag_id})))?;
        Ok(())
    }

    fn finish(&mut self, f: &Final) -> Result<()> {
        // No summary API: run-level results are scalars at the last step, and the full
        // summary and percentile table go into the experiment's metadata.
        let values: Vec<(String, f64)> = f
            .summary
            .iter()
            .map(|(k, v)| (format!("Summary {k}"), *v))
            .collect();
        if !values.is_empty() {
            self.scalars(self.last_step, &values, f.unix)?;
        }
        let summary: Map<String, Value> = f
            .summary
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        let meta = json!({"metadata": {"perfscope": {
            "summary": summary,
            "percentiles": {"columns": f.percentiles.columns, "rows": f.percentiles.rows},
        }}});
        self.call_ok("PUT", &self.run_path("profile"), Body::Json(&meta))?;
        let state = match f.outcome {
            Outcome::Finished => "FINISHED",
            Outcome::Failed => "CRASHED",
            Outcome::Interrupted => "ABORTED",
        };
        self.call_ok(
            "PUT",
            &self.run_path("state"),
            Body::Json(&json!({"state": state, "finishedAt": rfc3339(f.unix), "from": "sdk"})),
        )?;
        Ok(())
    }
}

/// SwanLab: the key from --swanlab-api-key or SWANLAB_API_KEY, the host from
/// --swanlab-host, SWANLAB_HOST or SWANLAB_API_HOST.
pub fn settings(
    f: &TrackerFlags,
    env: &dyn Fn(&str) -> Option<String>,
    base: TrackerSettings,
) -> Result<TrackerSettings> {
    let url = http_url;
    let Some(key) = f
        .swanlab_api_key
        .map(str::to_string)
        .or_else(|| env("SWANLAB_API_KEY"))
    else {
        bail!("--visualizer swanlab: no API key; pass --swanlab-api-key or set SWANLAB_API_KEY");
    };
    if key == "local" {
        bail!(
            "--swanlab-api-key local: SwanLab's local mode writes files for the \
                 SwanLab Python package, which perfscope does not use; run a self-hosted \
                 SwanLab and pass its --swanlab-host and key"
        );
    }
    let (src, host) = match (f.swanlab_host, env("SWANLAB_HOST"), env("SWANLAB_API_HOST")) {
        (Some(h), _, _) => ("--swanlab-host", h.to_string()),
        (None, Some(h), _) => ("SWANLAB_HOST", h),
        (None, None, Some(h)) => ("SWANLAB_API_HOST", h),
        (None, None, None) => ("SWANLAB_API_HOST", "https://api.swanlab.cn".into()),
    };
    let host = url(src, host)?;
    // A self-hosted server serves the UI on the same host.
    let web = env("SWANLAB_WEB_HOST")
        .map(|u| u.trim_end_matches('/').to_string())
        .or_else(|| (host != "https://api.swanlab.cn").then(|| host.clone()));
    Ok(TrackerSettings {
        key,
        host,
        web_host: web.or(Some("https://swanlab.cn".into())),
        project: env("SWANLAB_PROJ_NAME")
            .or_else(|| env("SWANLAB_PROJECT"))
            .unwrap_or(base.project.clone()),
        workspace: env("SWANLAB_WORKSPACE"),
        ..base
    })
}
