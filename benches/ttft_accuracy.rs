//! TTFT/ITL accuracy at high concurrency: `cargo bench --bench ttft_accuracy`.
//!
//! Starts the simulator in fixed-delay mode (TTFT 100 ms, ITL 50 ms) and runs
//! `perf` against it at --parallel 1024 (and 256), connections opened during an
//! unrecorded warmup, arrivals ramped by --rate. Prints the client's mean TTFT and
//! ITL, the simulator's own first-token lateness (what the server really did beyond
//! the injected 100 ms), and the client's error: measured − (injected + lateness).

use clap::Parser;
use perfscope::cli::{Cli, Command};
use perfscope::config::RunConfig;
use perfscope::engine::{self, Stop};
use perfscope::sim::{self, SimConfig};

fn main() -> anyhow::Result<()> {
    for parallel in [256u64, 1024] {
        let number = parallel * 3;
        let handle = sim::spawn(
            "127.0.0.1:0".parse()?,
            SimConfig {
                ttft_ms: Some(100.0),
                itl_ms: Some(50.0),
                min_output_len: 16,
                max_output_len: 32,
                ..SimConfig::default()
            },
            1,
        )?;
        let out = tempfile::tempdir()?;
        let url = format!("{}/v1/chat/completions", handle.base_url());
        let (p, n, w) = (
            parallel.to_string(),
            number.to_string(),
            parallel.to_string(),
        );
        let rate = (parallel * 2).to_string();
        let argv = [
            "perfscope",
            "perf",
            "--url",
            &url,
            "--model",
            "m",
            "--parallel",
            &p,
            "--number",
            &n,
            "--warmup-num",
            &w,
            "--rate",
            &rate,
            "--no-test-connection",
            "--log-every-n-query",
            "1000000",
            "--outputs-dir",
            out.path().to_str().unwrap_or("."),
        ];
        let Command::Perf(args) = Cli::try_parse_from(argv)?.command else {
            anyhow::bail!("not perf")
        };
        let o = engine::run_blocking(RunConfig::resolve(&args)?, Stop::default(), false)?;
        let db = o
            .dir
            .join(format!("parallel_{parallel}_number_{number}"))
            .join("benchmark_data.db");
        let conn = rusqlite::Connection::open(db)?;
        let ttft: f64 = conn.query_row(
            "SELECT AVG(first_chunk_latency) * 1000 FROM result WHERE success=1",
            [],
            |r| r.get(0),
        )?;
        let itl: f64 = conn.query_row(
            "SELECT AVG(j.value) * 1000 FROM result, json_each(result.inter_token_latencies) AS j WHERE success=1",
            [],
            |r| r.get(0),
        )?;
        let ok: i64 = conn.query_row("SELECT SUM(success) FROM result", [], |r| r.get(0))?;
        let late: Vec<f64> = handle
            .sim
            .first_tokens
            .entries
            .lock()
            .map_err(|_| anyhow::anyhow!("lock"))?
            .iter()
            .filter(|(id, _)| *id >= parallel)
            .map(|(_, d)| d * 1000.0 - 100.0)
            .collect();
        let server_late = late.iter().sum::<f64>() / late.len().max(1) as f64;
        println!(
            "parallel {parallel:>5}: {ok} ok, mean TTFT {ttft:.3} ms (injected 100.000, simulator lateness {server_late:.3}), \
             client error {:+.3} ms; mean ITL {itl:.3} ms (injected 50.000)",
            ttft - 100.0 - server_late
        );
    }
    Ok(())
}
