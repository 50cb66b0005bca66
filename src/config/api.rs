//! `--api`: which server and wire format a run targets.

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Api {
    OpenAi,
    Sim,
    /// A user-configured OpenAI-compatible server started as a child process.
    Local,
    /// vLLM's OpenAI server started as a child process.
    LocalVllm,
    DashScope,
    /// The OpenAI Responses API (evalscope's `openai_responses`).
    Responses,
    /// The Anthropic Messages API.
    Anthropic,
    Embedding,
    Rerank,
    /// evalscope's decision APIs: System One and AutoTrust.
    SystemOne,
    AutoTrust,
    Custom,
}

impl Api {
    pub fn as_str(&self) -> &'static str {
        match self {
            Api::OpenAi => "openai",
            Api::Sim => "sim",
            Api::Local => "local",
            Api::LocalVllm => "local_vllm",
            Api::DashScope => "dashscope",
            Api::Responses => "openai_responses",
            Api::Anthropic => "anthropic",
            Api::Embedding => "embedding",
            Api::Rerank => "rerank",
            Api::SystemOne => "systemone",
            Api::AutoTrust => "autotrust",
            Api::Custom => "custom",
        }
    }
    pub fn is_local(&self) -> bool {
        matches!(self, Api::Local | Api::LocalVllm)
    }
}
