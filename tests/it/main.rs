//! The integration tests, one binary: in-process servers on 127.0.0.1:0, the
//! perfscope binary where a test needs a process (signals, exit codes).

mod agentx;
mod alert_delivery;
mod alert_rules;
mod apis;
mod architecture;
mod binary;
mod cli;
mod common;
mod decisions;
mod evalscope_parity;
mod failures;
mod faults;
mod golden;
mod http_compat;
mod hub_datasets;
mod kubernetes;
mod load_shapes;
mod local_server;
mod metrics;
mod otel;
mod outputs;
mod prometheus_scrape;
mod report;
mod scale;
mod server_metrics;
mod servers;
mod simulator;
mod sinks;
mod sla;
mod soak;
mod stack_config;
mod timing;
mod tokenizer;
mod typed_apis;
mod workloads;
