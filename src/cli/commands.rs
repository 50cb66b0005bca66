//! The command tree: `perfscope` and its commands, with every command's flags but
//! `perf`'s (perf.rs).

use clap::{Args, Parser, Subcommand};

use super::perf::{PerfArgs, TrackerArgs};
use crate::sim::SimConfig;

#[derive(Parser, Debug)]
#[command(
    name = "perfscope",
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("PERFSCOPE_COMMIT"), ")"),
    about = "Load generator and benchmark for LLM serving endpoints"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Benchmark an endpoint (drop-in for `evalscope perf`).
    Perf(Box<PerfArgs>),
    /// Run the simulated OpenAI-compatible LLM server.
    Sim(SimArgs),
    /// Push a stored run to W&B, SwanLab or ClearML from its SQLite databases.
    Push(PushArgs),
    /// Regenerate every output file and perf_report.html from the SQLite databases.
    Report(ReportArgs),
    /// Merge the shards of a distributed run (--shard-count) into one output tree.
    Merge(MergeArgs),
    /// Compare two stored runs point by point, with bootstrap confidence intervals.
    Compare(CompareArgs),
    /// Browse the runs under output directories in a web page (read-only).
    Serve(ServeArgs),
    /// Print the shell completion script (e.g. `perfscope completions bash >
    /// ~/.local/share/bash-completion/completions/perfscope`).
    Completions(CompletionsArgs),
    /// Write the man pages (perfscope.1 and one per command) into a directory.
    Man(ManArgs),
}

#[derive(Args, Debug)]
pub struct CompletionsArgs {
    /// The shell to complete in.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args, Debug)]
pub struct ManArgs {
    /// Where to write the pages (created if missing); then `man -l DIR/perfscope-perf.1`,
    /// or copy them into a MANPATH directory such as /usr/local/share/man/man1.
    #[arg(long, default_value = "man")]
    pub dir: std::path::PathBuf,
}

/// `perfscope completions SHELL`: the script, from the same definitions as `--help`.
pub fn write_completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "perfscope", out);
}

/// `perfscope man --dir DIR`: one page per command, from the same definitions as
/// `--help`.
pub fn write_man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    use clap::CommandFactory;
    std::fs::create_dir_all(dir)?;
    clap_mangen::generate_to(Cli::command(), dir)
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The output trees to list (the `--outputs-dir` of perfscope's or evalscope's
    /// runs); runs written there later appear without a restart.
    #[arg(long, num_args = 1.., default_values_t = ["outputs".to_string()])]
    pub outputs: Vec<String>,
    /// The address to listen on (loopback: only this machine can browse the runs).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 9000)]
    pub port: u16,
    /// Let the page start and stop runs (`perf` with the form's flags, into the
    /// first of --outputs). Every such request needs the token printed at start-up.
    #[arg(long)]
    pub allow_run: bool,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    /// The merged run's directory (created; must be new or empty).
    pub out: std::path::PathBuf,
    /// Every shard's run directory (`<outputs-dir>/<timestamp>/<name|model>`).
    #[arg(required = true, num_args = 1..)]
    pub dirs: Vec<std::path::PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The baseline run's directory (perfscope's, merged, or evalscope's).
    pub base: std::path::PathBuf,
    /// The run to judge against it.
    pub new: std::path::PathBuf,
    /// Exit non-zero when a change crosses a threshold: `METRIC:+N%` fails when NEW is
    /// more than N% above BASE, `METRIC:-N%` when more than N% below. Metric names as
    /// in --sla-params: avg_latency, avg_ttft, avg_tpot, p50/p90/p99_latency,
    /// p50/p90/p99_ttft, p50/p90/p99_tpot, rps, tps, total_token_throughput, goodput.
    #[arg(long)]
    pub fail_on: Option<String>,
    /// Output: console, markdown or json.
    #[arg(long, default_value = "console")]
    pub format: String,
    /// Bootstrap resamples per run.
    #[arg(long, default_value_t = 200)]
    pub resamples: u32,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    pub confidence: f64,
    /// Seed of the resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Smallest relative change (percent) that counts as better or worse even when
    /// the interval excludes zero: run-to-run drift of one machine is not a
    /// regression. Figures without an interval (the server's) need 5 times this.
    #[arg(long, default_value_t = 2.0)]
    pub min_effect: f64,
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The run's directory: `<outputs-dir>/<timestamp>/<name|model>`.
    pub run_dir: std::path::PathBuf,
}

#[derive(Args, Debug)]
pub struct PushArgs {
    /// The run's directory: `<outputs-dir>/<timestamp>/<name|model>` (or one
    /// `parallel_*` directory of it).
    pub run_dir: std::path::PathBuf,
    #[command(flatten)]
    pub tracker: TrackerArgs,
    /// Run name in the tracker (default: the stored name and start time).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct SimArgs {
    /// Address to bind (loopback by default; bind a public interface only on purpose).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8877)]
    pub port: u16,
    /// Runtime worker threads for the server.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    #[command(flatten)]
    pub config: SimConfig,
}
