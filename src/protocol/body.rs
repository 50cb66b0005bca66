//! Helpers every protocol shares: prompt text, body merging, reply errors.

use serde_json::{Map, Value};

use crate::dataset::Prompt;

/// The text of a prompt, for APIs that take plain text: chat messages are flattened
/// to their text parts (evalscope's embedding plugin does the same).
pub fn prompt_text(prompt: &Prompt) -> String {
    match prompt {
        Prompt::Text(s) => s.clone(),
        Prompt::Messages(m) => messages_text(m),
        Prompt::Body(b) => b
            .get("prompt")
            .or_else(|| b.get("input"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| b.get("messages").map(messages_text))
            .unwrap_or_default(),
    }
}

/// The text parts of chat messages, joined by newlines.
pub fn messages_text(messages: &Value) -> String {
    let mut out: Vec<&str> = Vec::new();
    for m in messages.as_array().map(Vec::as_slice).unwrap_or_default() {
        match m.get("content") {
            Some(Value::String(s)) => out.push(s),
            Some(Value::Array(parts)) => {
                out.extend(parts.iter().filter_map(|p| p.get("text")?.as_str()))
            }
            _ => {}
        }
    }
    out.join("\n")
}

/// Merges `--extra-args` (set-default for user bodies, as evalscope).
pub(crate) fn put(body: &mut Map<String, Value>, user_body: bool, k: &str, v: Value) {
    if user_body {
        body.entry(k.to_string()).or_insert(v);
    } else {
        body.insert(k.to_string(), v);
    }
}

/// The first error found in a JSON reply: `{"error": ...}` or `{"object": "error"}`.
pub(crate) fn json_error(v: &Value) -> Option<String> {
    match v.get("error") {
        Some(Value::Null) | None => {}
        Some(Value::String(s)) => return Some(s.clone()),
        Some(e) => {
            return Some(
                e.get("message")
                    .and_then(Value::as_str)
                    .map_or_else(|| e.to_string(), str::to_string),
            )
        }
    }
    (v.get("object").and_then(Value::as_str) == Some("error")).then(|| {
        v.get("message")
            .and_then(Value::as_str)
            .map_or_else(|| v.to_string(), str::to_string)
    })
}

pub(crate) fn malformed(data: &[u8], why: &str) -> String {
    let shown = String::from_utf8_lossy(&data[..data.len().min(200)]).into_owned();
    format!("malformed response ({why}): {shown}")
}
