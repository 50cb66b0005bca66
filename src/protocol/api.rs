//! `--api`: which server and wire format a run targets (the names `--api` accepts,
//! read by the flags and the configuration alike).

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
    /// Every `--api` name and the API it selects (evalscope's plugin names too):
    /// what `--api` accepts and what `--help`, the shell completions and the errors
    /// list.
    pub const ALL: &'static [(&'static str, Api)] = &[
        ("openai", Api::OpenAi),
        ("openai_responses", Api::Responses),
        ("openai_response", Api::Responses),
        ("responses", Api::Responses),
        ("anthropic", Api::Anthropic),
        ("sim", Api::Sim),
        ("local", Api::Local),
        ("local_vllm", Api::LocalVllm),
        ("dashscope", Api::DashScope),
        ("embedding", Api::Embedding),
        ("openai_embedding", Api::Embedding),
        ("rerank", Api::Rerank),
        ("openai_rerank", Api::Rerank),
        ("systemone", Api::SystemOne),
        ("autotrust", Api::AutoTrust),
        ("custom", Api::Custom),
    ];

    /// The API a `--api` name selects.
    pub fn from_name(name: &str) -> Option<Api> {
        Self::ALL.iter().find(|(n, _)| *n == name).map(|(_, a)| *a)
    }

    /// The names, for error messages.
    pub fn names() -> String {
        Self::ALL
            .iter()
            .map(|(n, _)| *n)
            .collect::<Vec<_>>()
            .join(", ")
    }

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
