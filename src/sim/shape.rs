//! Which API a simulator request came in on, and where its prompt is.

use serde_json::{json, Value};

/// Which API a request came in on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    Completions,
    Chat,
    Responses,
    Messages,
}

impl Shape {
    /// Whether the prompt arrives as messages (everything but completions).
    pub fn chat(self) -> bool {
        self != Shape::Completions
    }

    /// The request's messages: `messages` (with the Messages API's top-level
    /// `system` in front), or a Responses `input` list.
    pub fn messages(self, req: &Value) -> Option<Value> {
        match self {
            Shape::Completions => None,
            Shape::Chat => req.get("messages").cloned(),
            Shape::Responses => req.get("input").filter(|i| i.is_array()).cloned(),
            Shape::Messages => {
                let mut out = Vec::new();
                match req.get("system") {
                    Some(Value::String(s)) => out.push(json!({"role": "system", "content": s})),
                    Some(Value::Array(parts)) => {
                        out.push(json!({"role": "system", "content": parts}))
                    }
                    _ => {}
                }
                out.extend(req.get("messages")?.as_array()?.iter().cloned());
                Some(Value::Array(out))
            }
        }
    }

    /// The text of a prompt (a Responses `input` may be a plain string).
    pub fn input_string(self, req: &Value) -> Option<String> {
        match self {
            Shape::Responses => req.get("input")?.as_str().map(str::to_string),
            _ => None,
        }
    }
}
