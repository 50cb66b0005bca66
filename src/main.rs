//! Parse, run, map errors to exit codes — nothing else.

use clap::Parser;
use perfscope::cli::{Cli, Command};
use perfscope::config::RunConfig;
use perfscope::engine::{self, Stop};

fn main() {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(async move {
        match cli.command {
            Command::Perf(args) => {
                let cfg = match RunConfig::resolve(&args) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        return 2;
                    }
                };
                let stop = Stop::default();
                engine::install_ctrl_c(stop.clone());
                match engine::run(cfg, stop).await {
                    Ok(o) => o.exit_code,
                    Err(e) => {
                        eprintln!("error: {e:#}");
                        1
                    }
                }
            }
            Command::Sim(a) => match run_sim(a).await {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            },
        }
    });
    std::process::exit(code);
}

async fn run_sim(a: perfscope::cli::SimArgs) -> anyhow::Result<()> {
    let addr: std::net::SocketAddr = format!("{}:{}", a.host, a.port).parse().map_err(|e| {
        anyhow::anyhow!(
            "--host/--port: `{}:{}` is not an address: {e}",
            a.host,
            a.port
        )
    })?;
    let h = perfscope::sim::spawn(addr, a.config, a.threads)?;
    eprintln!(
        "perfscope sim: OpenAI-compatible server on {} (POST /v1/chat/completions, /v1/completions); Ctrl-C to stop",
        h.base_url()
    );
    tokio::signal::ctrl_c().await?;
    drop(h);
    Ok(())
}
