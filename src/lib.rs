//! perfscope: a load generator and benchmark for LLM serving endpoints, a drop-in for
//! `evalscope perf` with a built-in simulated server.
//!
//! ```text
//! cli ──▶ config (assembles each stage's settings)
//! dataset ──Prompt──▶ protocol ──┐
//! scheduler ──LoadShape──────────┼──▶ client (HTTP/1.1 + SSE + timestamps)
//!                                ▼
//!               record::RequestRecord (always, failures included)
//!                                ▼
//! recorder (fan-out) ──▶ store (SQLite, canonical) ──▶ stats ──▶ report ──▶ trackers, sla, compare
//!                    ├─▶ prometheus, otel, progress
//! scrape (the served model's /metrics) ──▶ store (server_metrics)
//! engine wires one invocation; sim, slo, telemetry, redact, retry, tokenizer stand alone.
//! ```
//!
//! No module imports one above it, and none import each other (ARCHITECTURE.md;
//! checked by `tests/it/architecture.rs`).

pub mod agentx;
pub mod cli;
pub mod client;
pub mod compare;
pub mod config;
pub mod dataset;
pub mod engine;
pub mod local_server;
pub mod protocol;
pub mod proxy;
pub mod record;
pub mod recorder;
pub mod redact;
pub mod report;
pub mod retry;
pub mod scheduler;
pub mod scrape;
pub mod sim;
pub mod sla;
pub mod slo;
pub mod stats;
pub mod store;
pub mod telemetry;
pub mod tokenizer;
pub mod trackers;
pub mod web;
