//! Parse, run, map errors to exit codes — nothing else.

use clap::Parser;
use perfscope::cli::{Cli, Command};
use perfscope::config::RunConfig;
use perfscope::engine::{self, Stop};

fn main() {
    let cli = Cli::parse();
    // Outside a run (flag checks, `report`, `push`) log lines go to the console; each
    // run installs its own subscriber that also writes its benchmark.log.
    let _ = tracing::dispatcher::set_global_default(perfscope::telemetry::log::console());
    let code = match cli.command {
        Command::Perf(args) => match RunConfig::resolve(&args) {
            Err(e) => {
                eprintln!("error: {e:#}");
                2
            }
            Ok(cfg) => match engine::run_blocking(cfg, Stop::default(), true) {
                Ok(o) => o.exit_code,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    // A signal before the load started: 128 + signal, like a run;
                    // an unreadable dataset: a usage error, like any other input.
                    if let Some(i) = e.downcast_ref::<engine::Interrupted>() {
                        i.0
                    } else if e.downcast_ref::<engine::BadInput>().is_some() {
                        2
                    } else {
                        1
                    }
                }
            },
        },
        Command::Sim(a) => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match rt
                .map_err(anyhow::Error::from)
                .and_then(|rt| rt.block_on(run_sim(a)))
            {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    1
                }
            }
        }
        Command::Push(a) => push(&a),
        Command::Report(a) => match perfscope::report::regenerate(&a.run_dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}

fn push(a: &perfscope::cli::PushArgs) -> i32 {
    let settings = match perfscope::sinks::SinkSettings::resolve(&a.tracker.flags()) {
        Ok(Some(s)) => s,
        Ok(None) => {
            eprintln!(
                "error: --visualizer: name the tracker to push to (wandb, swanlab or clearml)"
            );
            return 2;
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            return 2;
        }
    };
    match perfscope::sinks::push::push(&a.run_dir, &settings, a.name.as_deref()) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
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
        "perfscope sim: OpenAI-compatible server on {} (POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/rerank); Ctrl-C to stop",
        h.base_url()
    );
    tokio::signal::ctrl_c().await?;
    drop(h);
    Ok(())
}
