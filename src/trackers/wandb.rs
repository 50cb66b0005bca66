//! Weights & Biases: GraphQL `UpsertBucket` to create the run, `file_stream` for
//! history lines, the summary and the finish, `CreateRunFiles` plus a presigned PUT
//! for the percentile table (as the official SDK's Go core does).

use anyhow::{anyhow, bail, Result};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::http::{Body, Http};
use super::payload::{
    base36_id, url_segment as seg, Final, Outcome, Point, RunMeta, Table, Tracker,
};
use super::settings::{http_url, TrackerFlags, TrackerSettings};

const UPSERT: &str = "mutation UpsertBucket($id: String, $name: String, $project: String, $entity: String, $groupName: String, $description: String, $displayName: String, $notes: String, $commit: String, $config: JSONString, $host: String, $debug: Boolean, $program: String, $repo: String, $jobType: String, $state: String, $sweep: String, $tags: [String!], $summaryMetrics: JSONString) { upsertBucket(input: {id: $id, name: $name, groupName: $groupName, modelName: $project, entityName: $entity, description: $description, displayName: $displayName, notes: $notes, config: $config, commit: $commit, host: $host, debug: $debug, jobProgram: $program, jobRepo: $repo, jobType: $jobType, state: $state, sweep: $sweep, tags: $tags, summaryMetrics: $summaryMetrics}) { bucket { id name displayName description config sweepName project { id name entity { id name } } historyLineCount } inserted } }";
const VIEWER: &str = "query Viewer { viewer { id entity username } }";
const CREATE_FILES: &str = "mutation CreateRunFiles($entity: String!, $project: String!, $run: String!, $files: [String!]!) { createRunFiles(input: {entityName: $entity, projectName: $project, runName: $run, files: $files}) { runID uploadHeaders files { name uploadUrl } } }";

pub struct Wandb {
    s: TrackerSettings,
    http: Http,
    auth: String,
    entity: String,
    project: String,
    run: String,
    offset: u64,
    started: f64,
}

impl Wandb {
    pub fn new(s: TrackerSettings) -> Wandb {
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("api:{}", s.key))
        );
        Wandb {
            http: Http::new("W&B", s.timeout, s.attempts, s.first_wait),
            auth,
            entity: String::new(),
            project: s.project.clone(),
            run: String::new(),
            offset: 0,
            started: 0.0,
            s,
        }
    }

    /// A GraphQL call; errors in a 200 response are errors.
    fn graphql(&self, query: &str, variables: Value) -> Result<Value> {
        let body = json!({"query": query, "variables": variables});
        let r = self.http.send(
            "POST",
            &format!("{}/graphql", self.s.host),
            &[("Authorization", &self.auth)],
            Body::Json(&body),
        )?;
        if r.status == 401 || r.status == 403 {
            bail!(
                "W&B rejected the API key (HTTP {}); check --wandb-api-key / WANDB_API_KEY",
                r.status
            );
        }
        if !r.ok() {
            bail!("W&B GraphQL: {}", r.describe());
        }
        let v = r.json();
        if let Some(errs) = v
            .get("errors")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            let msgs: Vec<&str> = errs
                .iter()
                .filter_map(|e| e.get("message").and_then(Value::as_str))
                .collect();
            bail!("W&B GraphQL error: {}", msgs.join("; "));
        }
        v.get("data")
            .cloned()
            .ok_or_else(|| anyhow!("W&B GraphQL: response without data"))
    }

    fn file_stream(&self, body: &Value) -> Result<Value> {
        let url = format!(
            "{}/files/{}/{}/{}/file_stream",
            self.s.host,
            seg(&self.entity),
            seg(&self.project),
            seg(&self.run)
        );
        let r = self.http.send_ok(
            "POST",
            &url,
            &[("Authorization", &self.auth)],
            Body::Json(body),
        )?;
        Ok(r.json())
    }

    fn app_url(&self) -> String {
        if let Some(u) = &self.s.web_host {
            return u.clone();
        }
        let h = &self.s.host;
        if h.contains("://api.wandb.") {
            h.replacen("://api.", "://", 1)
        } else if h.contains("://api.") {
            h.replacen("://api.", "://app.", 1)
        } else {
            h.clone()
        }
    }

    /// Uploads a table as `media/table/<key>_<step>_<hash>.table.json` and returns the
    /// summary reference the UI renders.
    fn upload_table(&self, key: &str, step: u64, t: &Table) -> Result<(String, Value)> {
        let data = serde_json::to_vec(&json!({"columns": t.columns, "data": t.rows}))?;
        let sha = hex(ring::digest::digest(&ring::digest::SHA256, &data).as_ref());
        let path = format!("media/table/{key}_{step}_{}.table.json", &sha[..20]);
        let d = self.graphql(
            CREATE_FILES,
            json!({"entity": self.entity, "project": self.project, "run": self.run, "files": [path]}),
        )?;
        let crf = &d["createRunFiles"];
        let url = crf["files"]
            .as_array()
            .and_then(|f| f.iter().find(|x| x["name"] == path.as_str()))
            .and_then(|x| x["uploadUrl"].as_str())
            .ok_or_else(|| anyhow!("W&B createRunFiles: no upload URL for {path}"))?
            .to_string();
        // Presigned URL: its own headers, never our Basic auth.
        let headers: Vec<(String, String)> = crf["uploadHeaders"]
            .as_array()
            .map(|h| {
                h.iter()
                    .filter_map(|x| x.as_str()?.split_once(':'))
                    .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let hdr: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        self.http.send_ok(
            "PUT",
            &url,
            &hdr,
            Body::Raw("application/json", data.clone()),
        )?;
        let reference = json!({
            "_type": "table-file", "path": path, "sha256": sha, "size": data.len(),
            "ncols": t.columns.len(), "nrows": t.rows.len(),
        });
        Ok((path, reference))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

impl Tracker for Wandb {
    fn start(&mut self, run: &RunMeta) -> Result<String> {
        self.entity = match &self.s.workspace {
            Some(e) => e.clone(),
            None => {
                let d = self.graphql(VIEWER, json!({}))?;
                d["viewer"]["entity"]
                    .as_str()
                    .ok_or_else(|| {
                        anyhow!("W&B: the API key has no default entity; set WANDB_ENTITY")
                    })?
                    .to_string()
            }
        };
        // The SDK's run config: every top-level key wraps its value as {"value": v}.
        let config: Map<String, Value> = run
            .config
            .iter()
            .map(|(k, v)| (k.clone(), json!({ "value": v })))
            .collect();
        let id = base36_id(8);
        let d = self.graphql(
            UPSERT,
            json!({
                "name": id, "project": self.project, "entity": self.entity,
                "displayName": run.name, "jobType": "benchmark", "tags": ["perfscope"],
                "config": Value::Object(config).to_string(),
            }),
        )?;
        let b = &d["upsertBucket"]["bucket"];
        self.run = b["name"].as_str().unwrap_or(&id).to_string();
        if let Some(p) = b["project"]["name"].as_str() {
            self.project = p.to_string();
        }
        if let Some(e) = b["project"]["entity"]["name"].as_str() {
            self.entity = e.to_string();
        }
        self.offset = b["historyLineCount"].as_u64().unwrap_or(0);
        self.started = run.started_unix;
        Ok(format!(
            "{}/{}/{}/runs/{}",
            self.app_url(),
            seg(&self.entity),
            seg(&self.project),
            seg(&self.run)
        ))
    }

    fn point(&mut self, p: &Point) -> Result<()> {
        let mut line = Map::new();
        line.insert("_step".into(), p.step.into());
        line.insert("_runtime".into(), (p.unix - self.started).max(0.0).into());
        line.insert("_timestamp".into(), p.unix.into());
        for (k, v) in &p.values {
            line.insert(k.clone(), (*v).into());
        }
        let body = json!({"files": {"wandb-history.jsonl": {
            "offset": self.offset, "content": [Value::Object(line).to_string()]}}});
        let r = self.file_stream(&body)?;
        // The offset moves only after a 2xx, so a retried chunk is idempotent.
        self.offset += 1;
        if r.get("stopped").and_then(Value::as_bool) == Some(true) {
            crate::telemetry::log::warn(
                "W&B: the run was stopped from the W&B UI; further points are still sent",
            );
        }
        Ok(())
    }

    fn heartbeat_every(&self) -> std::time::Duration {
        // The SDK sends an empty file_stream body every 30 s.
        std::time::Duration::from_secs(30)
    }

    fn heartbeat(&mut self) -> Result<()> {
        self.file_stream(&json!({}))?;
        Ok(())
    }

    fn finish(&mut self, f: &Final) -> Result<()> {
        let mut summary = Map::new();
        for (k, v) in f.last.iter().chain(&f.summary) {
            summary.insert(k.clone(), (*v).into());
        }
        summary.insert("_runtime".into(), f.runtime_s.into());
        let mut uploaded = Vec::new();
        if !f.percentiles.rows.is_empty() {
            let (path, reference) = self.upload_table("percentiles", 0, &f.percentiles)?;
            summary.insert("percentiles".into(), reference);
            uploaded.push(path);
        }
        let exitcode = match f.outcome {
            Outcome::Finished => 0,
            Outcome::Failed => 1,
            Outcome::Interrupted => 130,
        };
        let body = json!({
            "files": {"wandb-summary.json": {"offset": 0, "content": [Value::Object(summary).to_string()]}},
            "uploaded": uploaded,
            "complete": true,
            "exitcode": exitcode,
        });
        self.file_stream(&body)?;
        Ok(())
    }
}

/// W&B: the key from --wandb-api-key or WANDB_API_KEY (the flag wins, as
/// evalscope's `wandb.login(key=...)`), host and project from W&B's variables.
pub fn settings(
    f: &TrackerFlags,
    env: &dyn Fn(&str) -> Option<String>,
    base: TrackerSettings,
) -> Result<TrackerSettings> {
    let url = http_url;
    // The flag wins, as evalscope's `wandb.login(key=...)`.
    let Some(key) = f
        .wandb_api_key
        .map(str::to_string)
        .or_else(|| env("WANDB_API_KEY"))
    else {
        bail!("--visualizer wandb: no API key; pass --wandb-api-key or set WANDB_API_KEY");
    };
    Ok(TrackerSettings {
        key,
        host: url(
            "WANDB_BASE_URL",
            env("WANDB_BASE_URL").unwrap_or_else(|| "https://api.wandb.ai".into()),
        )?,
        web_host: env("WANDB_APP_URL").map(|u| u.trim_end_matches('/').to_string()),
        project: env("WANDB_PROJECT").unwrap_or(base.project.clone()),
        workspace: env("WANDB_ENTITY"),
        ..base
    })
}
