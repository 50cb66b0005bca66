//! `--api custom`: a declarative API described by a JSON file (`--api-config`), for
//! servers that speak neither OpenAI nor DashScope (e.g. Hugging Face TGI's
//! `/generate_stream`). evalscope asks users to write a Python plugin class; here the
//! request is a Jinja template and the response is read with JSON pointers:
//!
//! ```json
//! {
//!   "body": "{\"inputs\": {{ prompt | tojson }}, \"parameters\": {\"max_new_tokens\": {{ max_tokens }}}, \"stream\": {{ stream | tojson }}}",
//!   "headers": {"X-Tenant": "bench"},
//!   "response": {
//!     "content": ["/token/text", "/generated_text"],
//!     "finish_reason": "/details/finish_reason",
//!     "prompt_tokens": "/usage/prompt_tokens",
//!     "completion_tokens": "/details/generated_tokens",
//!     "error": "/error",
//!     "done": "[DONE]"
//!   }
//! }
//! ```
//!
//! The template sees `prompt`, `messages`, `model`, `max_tokens`, `min_tokens`,
//! `temperature`, `top_p`, `top_k`, `seed`, `stop`, `stream` and `extra_args`. Each
//! response pointer may be one pointer or a list tried in order; `content` counts the
//! characters of the first string found (output text, for TTFT and ITL).

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use serde_json::{Map, Value};

use super::body::{malformed, prompt_text};
use super::chunk::{ChunkInfo, Usage};
use super::params::GenParams;
use crate::dataset::Prompt;

#[derive(Deserialize, Debug, Default)]
#[serde(untagged)]
enum Pointers {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl Pointers {
    fn list(&self) -> &[String] {
        match self {
            Pointers::None => &[],
            Pointers::One(p) => std::slice::from_ref(p),
            Pointers::Many(v) => v,
        }
    }
    fn find<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        self.list()
            .iter()
            .filter_map(|p| v.pointer(p))
            .find(|x| !x.is_null())
    }
}

#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct ResponseSpec {
    #[serde(default)]
    content: Pointers,
    #[serde(default)]
    finish_reason: Pointers,
    #[serde(default)]
    prompt_tokens: Pointers,
    #[serde(default)]
    completion_tokens: Pointers,
    #[serde(default)]
    cached_tokens: Pointers,
    #[serde(default)]
    error: Pointers,
    /// The data of the stream's last event, when the server sends one.
    #[serde(default)]
    done: Option<String>,
}

#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct FileSpec {
    body: String,
    #[serde(default)]
    headers: Map<String, Value>,
    #[serde(default)]
    response: ResponseSpec,
}

/// A loaded `--api-config`.
pub struct CustomApi {
    path: String,
    env: minijinja::Environment<'static>,
    response: ResponseSpec,
    /// Extra request headers from the file.
    pub headers: Vec<(String, String)>,
}

impl std::fmt::Debug for CustomApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomApi")
            .field("path", &self.path)
            .finish()
    }
}

impl CustomApi {
    pub fn load(path: &str) -> Result<CustomApi> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("--api-config: cannot read `{path}`"))?;
        let spec: FileSpec = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "--api-config: {path}:{}: {e} (expected {{\"body\": TEMPLATE, \"headers\": {{...}}, \
                 \"response\": {{\"content\": POINTER, ...}}}}; see README, \"Custom API\")",
                e.line()
            )
        })?;
        for p in [
            &spec.response.content,
            &spec.response.finish_reason,
            &spec.response.prompt_tokens,
            &spec.response.completion_tokens,
            &spec.response.cached_tokens,
            &spec.response.error,
        ] {
            for ptr in p.list() {
                if !ptr.is_empty() && !ptr.starts_with('/') {
                    bail!("--api-config: {path}: `{ptr}` is not a JSON pointer (write /a/0/b)");
                }
            }
        }
        if spec.response.content.list().is_empty() {
            bail!("--api-config: {path}: response.content is required (the pointer to the output text)");
        }
        let mut env = minijinja::Environment::new();
        env.add_template_owned("body", spec.body).map_err(|e| {
            anyhow!("--api-config: {path}: body is not a valid Jinja template: {e}")
        })?;
        let headers = spec
            .headers
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k, s)),
                other => bail!("--api-config: {path}: header `{k}` must be a string, got {other}"),
            })
            .collect::<Result<_>>()?;
        Ok(CustomApi {
            path: path.to_string(),
            env,
            response: spec.response,
            headers,
        })
    }

    pub fn build_body(
        &self,
        prompt: &Prompt,
        p: &GenParams,
        rng: &mut fastrand::Rng,
    ) -> Result<Map<String, Value>> {
        let messages = match prompt {
            Prompt::Messages(m) => m.clone(),
            Prompt::Body(b) => b.get("messages").cloned().unwrap_or(Value::Null),
            Prompt::Text(t) => serde_json::json!([{"role": "user", "content": t}]),
        };
        let max_tokens = p.sample_max_tokens(rng);
        let ctx = minijinja::context! {
            prompt => prompt_text(prompt),
            messages => messages,
            model => p.model,
            max_tokens => max_tokens,
            min_tokens => p.min_tokens,
            temperature => p.temperature,
            top_p => p.top_p,
            top_k => p.top_k,
            seed => p.seed,
            stop => p.stop,
            stream => p.stream,
            extra_args => Value::Object(p.extra_args.clone()),
        };
        let tmpl = self
            .env
            .get_template("body")
            .map_err(|e| anyhow!("--api-config: {}: {e}", self.path))?;
        let rendered = tmpl
            .render(ctx)
            .map_err(|e| anyhow!("--api-config: {}: rendering the body: {e}", self.path))?;
        match serde_json::from_str(&rendered) {
            Ok(Value::Object(o)) => Ok(o),
            Ok(_) => bail!(
                "--api-config: {}: the body renders to JSON that is not an object",
                self.path
            ),
            Err(e) => bail!(
                "--api-config: {}: the body does not render to JSON ({e}): {}",
                self.path,
                rendered.chars().take(200).collect::<String>()
            ),
        }
    }

    /// The output text of one payload (the first `content` pointer that is a string).
    pub fn content<'a>(&self, v: &'a Value) -> &'a str {
        self.response
            .content
            .find(v)
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn parse(&self, data: &[u8]) -> Result<ChunkInfo, String> {
        let r = &self.response;
        if r.done.as_deref().is_some_and(|d| d.as_bytes() == data) {
            return Ok(ChunkInfo {
                finish_reason: Some("stop".into()),
                ..Default::default()
            });
        }
        let v: Value = serde_json::from_slice(data).map_err(|e| malformed(data, &e.to_string()))?;
        if let Some(e) = r.error.find(&v) {
            if e != &Value::Bool(false) {
                return Ok(ChunkInfo {
                    error: Some(e.as_str().map_or_else(|| e.to_string(), str::to_string)),
                    ..Default::default()
                });
            }
        }
        let n = |p: &Pointers| r_u64(p.find(&v));
        let usage = Usage {
            prompt_tokens: n(&r.prompt_tokens),
            completion_tokens: n(&r.completion_tokens),
            cached_tokens: n(&r.cached_tokens),
        };
        Ok(ChunkInfo {
            has_choices: true,
            output_chars: self.content(&v).chars().count(),
            finish_reason: r
                .finish_reason
                .find(&v)
                .and_then(Value::as_str)
                .map(str::to_string),
            usage: (usage != Usage::default()).then_some(usage),
            body_id: None,
            error: None,
        })
    }
}

fn r_u64(v: Option<&Value>) -> Option<u64> {
    v.and_then(|x| x.as_u64().or_else(|| x.as_f64().map(|f| f as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TGI: &str = r#"{
      "body": "{\"inputs\": {{ prompt | tojson }}, \"parameters\": {\"max_new_tokens\": {{ max_tokens }}, \"temperature\": {{ temperature }}}, \"stream\": {{ stream | tojson }}}",
      "headers": {"X-Tenant": "bench"},
      "response": {
        "content": ["/token/text", "/generated_text"],
        "finish_reason": "/details/finish_reason",
        "completion_tokens": "/details/generated_tokens",
        "error": "/error"
      }
    }"#;

    fn load(text: &str) -> Result<CustomApi> {
        let dir = tempfile::tempdir()?;
        let p = dir.path().join("api.json");
        std::fs::write(&p, text)?;
        CustomApi::load(&p.to_string_lossy())
    }

    #[test]
    fn tgi_body_and_events() {
        let api = load(TGI).unwrap();
        assert_eq!(
            api.headers,
            vec![("X-Tenant".to_string(), "bench".to_string())]
        );
        let p = GenParams {
            max_tokens: (32, 32),
            temperature: 0.5,
            ..crate::protocol::test_params("m")
        };
        let b = api
            .build_body(
                &Prompt::Text("say \"x\"".into()),
                &p,
                &mut fastrand::Rng::with_seed(0),
            )
            .unwrap();
        assert_eq!(
            Value::Object(b).to_string(),
            r#"{"inputs":"say \"x\"","parameters":{"max_new_tokens":32,"temperature":0.5},"stream":true}"#
        );
        let e = api
            .parse(br#"{"index":1,"token":{"id":5,"text":"Hel","special":false},"generated_text":null,"details":null}"#)
            .unwrap();
        assert_eq!((e.output_chars, e.finish_reason.clone()), (3, None));
        let e = api
            .parse(br#"{"token":{"text":"lo"},"generated_text":"Hello","details":{"finish_reason":"length","generated_tokens":2}}"#)
            .unwrap();
        assert_eq!(e.output_chars, 2);
        assert_eq!(e.finish_reason.as_deref(), Some("length"));
        assert_eq!(e.usage.and_then(|u| u.completion_tokens), Some(2));
        let e = api
            .parse(br#"{"error":"Input validation error","error_type":"validation"}"#)
            .unwrap();
        assert_eq!(e.error.as_deref(), Some("Input validation error"));
    }

    #[test]
    fn config_errors_name_the_file() {
        let e = load("{\"body\": 1}").unwrap_err().to_string();
        assert!(
            e.contains("--api-config") && e.contains("api.json:1"),
            "{e}"
        );
        let e = load(r#"{"body": "{}", "response": {"content": "token.text"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a JSON pointer"), "{e}");
        let e = load(r#"{"body": "{}"}"#).unwrap_err().to_string();
        assert!(e.contains("response.content"), "{e}");
        let e = load(r#"{"body": "{{ unclosed", "response": {"content": "/x"}}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("Jinja"), "{e}");
    }
}
