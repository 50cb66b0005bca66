//! A conversation as the session driver sends it: its turns, each the messages it
//! appends to the context (the model's real replies are added between turns).

use serde_json::Value;

/// One turn: the messages it appends to the conversation, and its own output cap.
#[derive(Clone, Debug, PartialEq)]
pub struct Turn {
    pub messages: Vec<Value>,
    pub max_tokens: Option<u64>,
    /// Seconds to wait before sending this turn (a trie trace's tool-call time).
    pub tool_call_latency: Option<f64>,
    /// The conversation's request id (swe_smith's `rid`): turn k's body gets
    /// `rid = "<rid>_t<k>"` unless it has one (evalscope).
    pub rid: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Conversation {
    pub turns: Vec<Turn>,
}
