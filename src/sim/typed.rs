//! The simulator's two typed-event APIs, framed as vLLM 0.32 frames them (`event:`
//! and `data:` lines, no `[DONE]`): the OpenAI Responses API (`/v1/responses`) and
//! the Anthropic Messages API (`/v1/messages`). Chat and completions chunks are in
//! `stream.rs`.

use serde_json::{json, Value};
use std::io::Write;

use super::shape::Shape;
use super::stream::Formatter;

fn event(out: &mut Vec<u8>, name: &str, data: &Value) {
    let _ = write!(out, "event: {name}\ndata: {data}\n\n");
}

impl Formatter {
    fn response_object(&self, status: &str, text: Option<&str>, usage: bool) -> Value {
        let output = match text {
            Some(t) => json!([{"id": format!("msg_{}", self.id_text), "type": "message",
                "role": "assistant", "status": "completed",
                "content": [{"type": "output_text", "text": t, "annotations": []}]}]),
            None => json!([]),
        };
        let mut r = json!({
            "id": format!("resp_{}", self.id_text), "object": "response",
            "created_at": self.created, "model": &*self.model, "status": status,
            "output": output, "usage": null,
        });
        if status == "incomplete" {
            r["incomplete_details"] = json!({"reason": "max_output_tokens"});
        }
        if usage {
            // vLLM's Responses usage carries the cached tokens whether or not
            // --enable-prompt-tokens-details is on.
            r["usage"] = json!({
                "input_tokens": self.prompt_tokens,
                "input_tokens_details": {"cached_tokens": self.cached.unwrap_or(0)},
                "output_tokens": self.target,
                "total_tokens": self.prompt_tokens + self.target,
            });
        }
        r
    }

    fn status(&self) -> &'static str {
        if self.finish == "length" {
            "incomplete"
        } else {
            "completed"
        }
    }

    /// Anthropic usage: input tokens exclude the cached ones (vLLM's
    /// `_build_anthropic_usage`), which are `cache_read_input_tokens`.
    fn anthropic_usage(&self, output: u64) -> Value {
        let mut u = json!({"input_tokens": self.prompt_tokens, "output_tokens": output});
        if let Some(c) = self.reported_cached() {
            u["input_tokens"] = self.prompt_tokens.saturating_sub(c).into();
            u["cache_read_input_tokens"] = c.into();
        }
        u
    }

    fn stop_reason(&self) -> &'static str {
        if self.finish == "length" {
            "max_tokens"
        } else {
            "end_turn"
        }
    }

    pub(super) fn typed_prelude(&self, out: &mut Vec<u8>) {
        match self.shape {
            Shape::Responses => {
                let r = self.response_object("in_progress", None, false);
                event(
                    out,
                    "response.created",
                    &json!({"response": r, "sequence_number": 0, "type": "response.created"}),
                );
                event(
                    out,
                    "response.in_progress",
                    &json!({"response": r, "sequence_number": 1, "type": "response.in_progress"}),
                );
            }
            Shape::Messages => {
                let mut u = self.anthropic_usage(0);
                // vLLM's first usage carries the whole prompt, before cache details.
                u["input_tokens"] = self.prompt_tokens.into();
                if let Some(o) = u.as_object_mut() {
                    o.remove("cache_read_input_tokens");
                }
                event(
                    out,
                    "message_start",
                    &json!({"type": "message_start", "message": {
                    "id": format!("chatcmpl-{}", self.id_text), "type": "message",
                    "role": "assistant", "content": [], "model": &*self.model,
                    "stop_reason": null, "stop_sequence": null, "usage": u}}),
                );
                event(
                    out,
                    "content_block_start",
                    &json!({"type": "content_block_start",
                    "content_block": {"type": "text", "text": ""}, "index": 0}),
                );
            }
            _ => {}
        }
    }

    pub(super) fn typed_token(&self, i: u64, word: &str, out: &mut Vec<u8>) {
        match self.shape {
            Shape::Responses => event(
                out,
                "response.output_text.delta",
                &json!({
                "content_index": 0, "delta": word, "item_id": format!("msg_{}", self.id_text),
                "output_index": 0, "sequence_number": i + 2, "type": "response.output_text.delta"}),
            ),
            _ => event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta",
                "delta": {"type": "text_delta", "text": word}, "index": 0}),
            ),
        }
    }

    pub(super) fn typed_tail(&self, out: &mut Vec<u8>) {
        let usage = self.include_usage;
        match self.shape {
            Shape::Responses => {
                let r = self.response_object(self.status(), Some(&self.text()), usage);
                event(
                    out,
                    "response.completed",
                    &json!({"response": r,
                    "sequence_number": self.target + 2, "type": "response.completed"}),
                );
            }
            _ => {
                event(
                    out,
                    "content_block_stop",
                    &json!({"type": "content_block_stop", "index": 0}),
                );
                let mut d = json!({"type": "message_delta",
                    "delta": {"stop_reason": self.stop_reason(), "stop_sequence": null}});
                if usage {
                    d["usage"] = self.anthropic_usage(self.target);
                }
                event(out, "message_delta", &d);
                event(out, "message_stop", &json!({"type": "message_stop"}));
            }
        }
    }

    /// The whole non-streaming reply of a typed-event API.
    pub(super) fn typed_json(&self, usage: bool) -> Value {
        let text = self.text();
        match self.shape {
            Shape::Responses => self.response_object(self.status(), Some(&text), usage),
            _ => {
                let mut v = json!({"id": format!("chatcmpl-{}", self.id_text), "type": "message",
                    "role": "assistant", "content": [{"type": "text", "text": text}],
                    "model": &*self.model, "stop_reason": self.stop_reason(),
                    "stop_sequence": null});
                if usage {
                    v["usage"] = self.anthropic_usage(self.target);
                }
                v
            }
        }
    }
}
