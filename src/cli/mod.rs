//! Command-line flags. `perf` mirrors `evalscope perf` flag for flag (names, types,
//! defaults, multi-value pairing; see perf-parameters.md), plus evalscope's newer
//! `--warmup-num`, `--open-loop`, `--duration`, `--swanlab-host`,
//! `--sla-fixed-parallel`, and our own `--sim-args`. Validation that needs more than
//! one flag lives in `config::RunConfig::resolve`.

mod args_file;
mod commands;
mod perf;

pub use args_file::{json_to_flags, perf_args_from_file};
pub use commands::{
    write_completions, write_man_pages, Cli, Command, CompareArgs, CompletionsArgs, ManArgs,
    MergeArgs, PushArgs, ReportArgs, ServeArgs, SimArgs,
};
pub use perf::{PerfArgs, TrackerArgs, DEFAULT_METRICS_ADDR, DEFAULT_URL};
