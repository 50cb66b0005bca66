//! Blocking HTTP for the trackers (ureq): JSON in and out, retries with backoff
//! on 429, 5xx, timeouts and refused connections, and errors that name the tracker
//! and the URL but never a header value (keys, tokens and cookies travel in headers).

use anyhow::{anyhow, bail, Result};
use serde_json::Value;
use std::time::Duration;

pub struct Http {
    /// One agent per proxy the trackers' URLs go through (None: direct), by the
    /// proxy rule of every HTTP path (`crate::proxy`).
    agents: std::sync::Mutex<Vec<(Option<String>, ureq::Agent)>>,
    timeout: Duration,
    tracker: &'static str,
    attempts: u32,
    first_wait: Duration,
}

/// A response with any status (statuses are not errors here).
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Reply {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    /// A short, secret-free description of a refused request.
    pub fn describe(&self) -> String {
        let body: String = self.body.chars().take(300).collect();
        format!("HTTP {}: {}", self.status, body.trim())
    }
}

#[derive(Clone)]
pub enum Body<'a> {
    None,
    Json(&'a Value),
    Raw(&'a str, Vec<u8>),
}

impl Http {
    pub fn new(
        tracker: &'static str,
        timeout: Duration,
        attempts: u32,
        first_wait: Duration,
    ) -> Http {
        crate::client::install_tls_provider();
        Http {
            agents: Default::default(),
            timeout,
            tracker,
            attempts: attempts.max(1),
            first_wait,
        }
    }

    /// Sends a request, retrying transient failures; returns the final reply.
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Reply> {
        let mut backoff = crate::retry::Backoff::new(self.first_wait, Duration::from_secs(30));
        let mut last = String::new();
        for attempt in 1..=self.attempts {
            let mut retry_after = None;
            match self.once(method, url, headers, &body) {
                Ok((reply, after)) => {
                    let transient = reply.status == 429 || reply.status >= 500;
                    if !transient || attempt == self.attempts {
                        return Ok(reply);
                    }
                    last = reply.describe();
                    retry_after = after;
                }
                Err(e) => last = e,
            }
            if attempt < self.attempts {
                std::thread::sleep(backoff.wait(retry_after));
            }
        }
        bail!(
            "{}: {method} {} failed after {} attempts: {last}",
            self.tracker,
            redact_url(url),
            self.attempts
        )
    }

    /// [`send`](Self::send), requiring a 2xx status.
    pub fn send_ok(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Result<Reply> {
        let r = self.send(method, url, headers, body)?;
        if !r.ok() {
            return Err(anyhow!(
                "{}: {method} {} was refused: {}",
                self.tracker,
                redact_url(url),
                r.describe()
            ));
        }
        Ok(r)
    }

    /// The agent for `url`: direct, or through the proxy the environment names
    /// for it.
    fn agent(&self, url: &str) -> ureq::Agent {
        let proxy = crate::proxy::ureq_proxy(url);
        let key = proxy.as_ref().map(|p| p.uri().to_string());
        let mut agents = self.agents.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, a)) = agents.iter().find(|(k, _)| *k == key) {
            return a.clone();
        }
        let a: ureq::Agent = ureq::Agent::config_builder()
            .proxy(proxy)
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .user_agent(concat!("perfscope/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        agents.push((key, a.clone()));
        a
    }

    fn once(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &Body,
    ) -> std::result::Result<(Reply, Option<Duration>), String> {
        let agent = self.agent(url);
        let result = match method {
            "GET" => {
                let mut r = agent.get(url);
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                r.call()
            }
            _ => {
                let mut r = match method {
                    "PUT" => agent.put(url),
                    _ => agent.post(url),
                };
                for (k, v) in headers {
                    r = r.header(*k, *v);
                }
                match body {
                    Body::None => r.send_empty(),
                    Body::Json(v) => r
                        .content_type("application/json")
                        .send(serde_json::to_vec(v).unwrap_or_default()),
                    Body::Raw(ct, bytes) => r.content_type(*ct).send(&bytes[..]),
                }
            }
        };
        let mut resp = result.map_err(|e| transport(&e))?;
        let retry_after = crate::retry::retry_after(
            resp.headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok()),
        );
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_string()
            .unwrap_or_default();
        Ok((Reply { status, body }, retry_after))
    }
}

fn transport(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(_) => "timed out".into(),
        ureq::Error::ConnectionFailed => "connection refused".into(),
        ureq::Error::HostNotFound => "host not found".into(),
        ureq::Error::Io(io) => format!("I/O error: {io}"),
        other => format!("transport error: {other}"),
    }
}

pub use crate::redact::redact_url;
