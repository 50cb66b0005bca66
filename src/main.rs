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
                perfscope::telemetry::log::err(&format!("error: {e:#}"));
                2
            }
            Ok(cfg) => match engine::run_blocking(cfg, Stop::default(), true) {
                Ok(o) => o.exit_code,
                Err(e) => {
                    perfscope::telemetry::log::err(&format!("error: {e:#}"));
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
                    perfscope::telemetry::log::err(&format!("error: {e:#}"));
                    1
                }
            }
        }
        Command::Push(a) => push(&a),
        Command::Merge(a) => match perfscope::report::merge(&a.out, &a.dirs) {
            Ok(()) => 0,
            Err(e) => {
                perfscope::telemetry::log::err(&format!("error: {e:#}"));
                1
            }
        },
        Command::Compare(a) => compare(&a),
        Command::Serve(a) => serve(&a),
        Command::Report(a) => match perfscope::report::regenerate(&a.run_dir) {
            Ok(()) => 0,
            Err(e) => {
                perfscope::telemetry::log::err(&format!("error: {e:#}"));
                1
            }
        },
    };
    std::process::exit(code);
}

/// `perfscope serve`: 2 for a bad address, 1 when it cannot serve.
fn serve(a: &perfscope::cli::ServeArgs) -> i32 {
    let addr = match format!("{}:{}", a.host, a.port)
        .parse::<std::net::SocketAddr>()
        .or_else(|_| format!("[{}]:{}", a.host, a.port).parse())
    {
        Ok(addr) => addr,
        Err(_) => {
            perfscope::telemetry::log::err(&format!(
                "error: --host: `{}` is not an IP address (e.g. 127.0.0.1)",
                a.host
            ));
            return 2;
        }
    };
    let o = perfscope::web::ServeOptions {
        trees: a.outputs.iter().map(std::path::PathBuf::from).collect(),
        addr,
        allow_run: a.allow_run,
    };
    match perfscope::web::serve_blocking(o) {
        Ok(()) => 0,
        Err(e) => {
            perfscope::telemetry::log::err(&format!("error: {e:#}"));
            1
        }
    }
}

fn push(a: &perfscope::cli::PushArgs) -> i32 {
    let settings = match perfscope::sinks::SinkSettings::resolve(&a.tracker.flags()) {
        Ok(Some(s)) => s,
        Ok(None) => {
            perfscope::telemetry::log::err(
                "error: --visualizer: name the tracker to push to (wandb, swanlab or clearml)",
            );
            return 2;
        }
        Err(e) => {
            perfscope::telemetry::log::err(&format!("error: {e:#}"));
            return 2;
        }
    };
    match perfscope::sinks::push::push(&a.run_dir, &settings, a.name.as_deref()) {
        Ok(_) => 0,
        Err(e) => {
            perfscope::telemetry::log::err(&format!("error: {e:#}"));
            1
        }
    }
}

/// `perfscope compare`: 0 when no --fail-on threshold is crossed, 3 when one is,
/// 2 for bad flags, 1 when a run cannot be read.
fn compare(a: &perfscope::cli::CompareArgs) -> i32 {
    let fail_on = match a.fail_on.as_deref().map(perfscope::compare::parse_fail_on) {
        None => Vec::new(),
        Some(Ok(t)) => t,
        Some(Err(e)) => {
            perfscope::telemetry::log::err(&format!("error: {e:#}"));
            return 2;
        }
    };
    if !matches!(a.format.as_str(), "console" | "markdown" | "json") {
        perfscope::telemetry::log::err(&format!(
            "error: --format: `{}` is not console, markdown or json",
            a.format
        ));
        return 2;
    }
    let o = perfscope::compare::Options {
        resamples: a.resamples,
        confidence: a.confidence,
        seed: a.seed,
        min_effect: a.min_effect,
        fail_on,
    };
    let c = match perfscope::compare::compare(&a.base, &a.new, &o) {
        Ok(c) => c,
        Err(e) => {
            perfscope::telemetry::log::err(&format!("error: {e:#}"));
            return 1;
        }
    };
    let text = match a.format.as_str() {
        "markdown" => perfscope::compare::markdown(&c),
        "json" => serde_json::to_string_pretty(&c).unwrap_or_default() + "\n",
        _ => perfscope::compare::console(&c),
    };
    perfscope::telemetry::log::out(text.trim_end_matches('\n'));
    if c.failed() {
        3
    } else {
        0
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
    // One descriptor per client connection: as many as the system allows.
    perfscope::engine::raise_fd_limit(None, "the simulator's connections");
    let h = perfscope::sim::spawn(addr, a.config, a.threads)?;
    perfscope::telemetry::log::err(&format!(
        "perfscope sim: OpenAI-compatible server on {} (POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/rerank); Ctrl-C to stop",
        h.base_url()
    ));
    tokio::signal::ctrl_c().await?;
    drop(h);
    Ok(())
}
