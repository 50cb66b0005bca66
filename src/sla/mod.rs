//! SLA auto-tune (`--sla-auto-tune`): find the largest concurrency or rate meeting a
//! set of constraints, or the one optimising a metric, by evalscope's search:
//! double from the start while it passes, then binary-search the last interval.
//!
//! Constraints come in two formats:
//! - evalscope's groups, `[{"p99_ttft": "<=50", "avg_latency": "<=2"}, {"rps": "max"}]`
//!   (metrics in a group are ANDed; each group is its own search). As evalscope since
//!   v1.7, bare TTFT/TPOT names are in **milliseconds** and latency in seconds;
//!   explicit names (`p99_ttft_ms`, `avg_ttft_s`, `avg_latency_s`) say their unit.
//! - a list of `{"name", "operator", "value"}` with names `latency`, `ttft`, `tpot`
//!   (averages, in **seconds**), `request_throughput`, `output_token_throughput`,
//!   `total_token_throughput` (per second) and `goodput` (req/s), all ANDed.

mod criteria;
mod search;
mod tune;

pub use criteria::{parse_params, point_passes, Criterion, NamedMetric, Op, METRIC_NAMES};
pub use search::{average, constraint_search, optimise};
pub use tune::{summary_table, tune, write_summary, SlaConfig, Tested};
