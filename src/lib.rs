//! perfscope: a load generator and benchmark for LLM serving endpoints, a drop-in for
//! `evalscope perf` with a built-in simulated server.
//!
//! ```text
//! Dataset ──Prompt──▶ protocol::openai::build_body ──┐
//! scheduler (when) ──Ticket{seq, intended_start}─────┼──▶ client (HTTP + SSE + timestamps)
//!                                                    ▼
//!                                 RequestRecord (always, failures included)
//!                                                    ▼
//!        recorder::fanout ──▶ recorder::sqlite (canonical) ──▶ stats ──▶ report
//!                         └─▶ live progress / log lines
//! ```

pub mod cli;
pub mod client;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod local_server;
pub mod protocol;
pub mod record;
pub mod recorder;
pub mod redact;
pub mod report;
pub mod scheduler;
pub mod sim;
pub mod sinks;
pub mod sla;
pub mod stats;
pub mod telemetry;
pub mod tokenizer;
