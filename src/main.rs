//! Parse, run, map errors to exit codes — nothing else.
//!
//! Exit codes: 0 success; 1 a command that could not do its work; 2 bad flags or
//! input; 3 `compare --fail-on` crossed; a run's own code (objectives, stop rules,
//! 128 + signal) from the engine.

use clap::Parser;
use perfscope::cli::{Cli, Command};
use perfscope::config::RunConfig;
use perfscope::engine::{self, Stop};
use perfscope::telemetry::log;

/// Why a command failed, and the exit code that says so.
struct Failure {
    code: i32,
    error: anyhow::Error,
}

/// Bad flags or input: exit code 2.
fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

/// The command could not do its work: exit code 1.
fn failed(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        error: error.into(),
    }
}

fn main() {
    let cli = Cli::parse();
    // Outside a run (flag checks, `report`, `push`) log lines go to the console; each
    // run installs its own subscriber that also writes its benchmark.log.
    let _ = tracing::dispatcher::set_global_default(log::console());
    // The one place a failure becomes a message and an exit code.
    let code = match dispatch(cli.command) {
        Ok(code) => code,
        Err(f) => {
            log::err(&format!("error: {:#}", f.error));
            f.code
        }
    };
    std::process::exit(code);
}

fn dispatch(command: Command) -> Result<i32, Failure> {
    match command {
        Command::Perf(args) => perf(*args),
        Command::Sim(a) => sim(a).map(|()| 0).map_err(failed),
        Command::Push(a) => push(&a).map(|()| 0),
        Command::Merge(a) => perfscope::report::merge(&a.out, &a.dirs)
            .map(|()| 0)
            .map_err(failed),
        Command::Compare(a) => compare(&a),
        Command::Serve(a) => serve(&a).map(|()| 0),
        Command::Report(a) => perfscope::report::regenerate(&a.run_dir)
            .map(|()| 0)
            .map_err(failed),
        Command::Completions(a) => {
            perfscope::cli::write_completions(a.shell, &mut std::io::stdout());
            Ok(0)
        }
        Command::Man(a) => perfscope::cli::write_man_pages(&a.dir)
            .map(|()| 0)
            .map_err(|e| {
                failed(anyhow::anyhow!(
                    "--dir: cannot write man pages into `{}`: {e}",
                    a.dir.display()
                ))
            }),
    }
}

/// `perfscope perf`: the run's own exit code; 2 for flags or input it cannot use,
/// 128 + signal when interrupted before the load started, 1 otherwise.
fn perf(args: perfscope::cli::PerfArgs) -> Result<i32, Failure> {
    let args = match &args.args_file {
        Some(path) => perfscope::cli::perf_args_from_file(path).map_err(usage)?,
        None => args,
    };
    let cfg = RunConfig::resolve(&args).map_err(usage)?;
    match engine::run_blocking(cfg, Stop::default(), true) {
        Ok(o) => Ok(o.exit_code),
        Err(e) => {
            let code = if let Some(i) = e.downcast_ref::<engine::Interrupted>() {
                i.0
            } else if e.downcast_ref::<engine::BadInput>().is_some() {
                2
            } else {
                1
            };
            Err(Failure { code, error: e })
        }
    }
}

/// `perfscope serve`: 2 for a bad address, 1 when it cannot serve.
fn serve(a: &perfscope::cli::ServeArgs) -> Result<(), Failure> {
    let addr = format!("{}:{}", a.host, a.port)
        .parse::<std::net::SocketAddr>()
        .or_else(|_| format!("[{}]:{}", a.host, a.port).parse())
        .map_err(|_| {
            usage(anyhow::anyhow!(
                "--host: `{}` is not an IP address (e.g. 127.0.0.1)",
                a.host
            ))
        })?;
    let o = perfscope::web::ServeOptions {
        trees: a.outputs.iter().map(std::path::PathBuf::from).collect(),
        addr,
        allow_run: a.allow_run,
    };
    perfscope::web::serve_blocking(o).map_err(failed)
}

/// `perfscope push`: 2 without a usable tracker, 1 when the push fails.
fn push(a: &perfscope::cli::PushArgs) -> Result<(), Failure> {
    let settings = perfscope::trackers::TrackerSettings::resolve(&a.tracker.flags())
        .map_err(usage)?
        .ok_or_else(|| {
            usage(anyhow::anyhow!(
                "--visualizer: name the tracker to push to (wandb, swanlab or clearml)"
            ))
        })?;
    perfscope::trackers::push::push(&a.run_dir, &settings, a.name.as_deref())
        .map(|_| ())
        .map_err(failed)
}

/// `perfscope compare`: 0 when no --fail-on threshold is crossed, 3 when one is,
/// 2 for bad flags, 1 when a run cannot be read.
fn compare(a: &perfscope::cli::CompareArgs) -> Result<i32, Failure> {
    let fail_on = match a.fail_on.as_deref() {
        None => Vec::new(),
        Some(s) => perfscope::compare::parse_fail_on(s).map_err(usage)?,
    };
    if !matches!(a.format.as_str(), "console" | "markdown" | "json") {
        return Err(usage(anyhow::anyhow!(
            "--format: `{}` is not console, markdown or json",
            a.format
        )));
    }
    let o = perfscope::compare::Options {
        resamples: a.resamples,
        confidence: a.confidence,
        seed: a.seed,
        min_effect: a.min_effect,
        fail_on,
    };
    let c = perfscope::compare::compare(&a.base, &a.new, &o).map_err(failed)?;
    let text = match a.format.as_str() {
        "markdown" => perfscope::compare::markdown(&c),
        "json" => serde_json::to_string_pretty(&c).unwrap_or_default() + "\n",
        _ => perfscope::compare::console(&c),
    };
    log::out(text.trim_end_matches('\n'));
    Ok(if c.failed() { 3 } else { 0 })
}

/// `perfscope sim`: serves until Ctrl-C.
fn sim(a: perfscope::cli::SimArgs) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let addr: std::net::SocketAddr =
            format!("{}:{}", a.host, a.port).parse().map_err(|e| {
                anyhow::anyhow!(
                    "--host/--port: `{}:{}` is not an address: {e}",
                    a.host,
                    a.port
                )
            })?;
        // One descriptor per client connection: as many as the system allows.
        perfscope::engine::raise_fd_limit(None, "the simulator's connections");
        let h = perfscope::sim::spawn(addr, a.config, a.threads)?;
        log::err(&format!(
            "perfscope sim: OpenAI-compatible server on {} (POST /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/rerank); Ctrl-C to stop",
            h.base_url()
        ));
        tokio::signal::ctrl_c().await?;
        drop(h);
        Ok(())
    })
}
