//! Shared helpers: run `perfscope perf` in-process against an in-process simulator on
//! 127.0.0.1:0, and read the results back.
#![allow(dead_code)]

use clap::Parser;
use perfscope::cli::{Cli, Command};
use perfscope::config::RunConfig;
use perfscope::engine::{self, Outcome, Stop};
use perfscope::sim::{self, SimConfig, SimHandle};
use std::path::Path;
use std::sync::Mutex;

/// Engine runs in one test binary are serialised: the log sink is process-wide and
/// timing tests should not share the two cores with another load test.
pub static SERIAL: Mutex<()> = Mutex::new(());

pub fn lock() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn start_sim(cfg: SimConfig) -> SimHandle {
    sim::spawn("127.0.0.1:0".parse().unwrap(), cfg, 2).expect("simulator starts")
}

pub fn resolve(args: &[&str]) -> anyhow::Result<RunConfig> {
    let mut argv = vec!["perfscope", "perf"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv)?;
    let Command::Perf(a) = cli.command else {
        anyhow::bail!("not perf")
    };
    RunConfig::resolve(&a)
}

pub fn run_with(args: &[&str], stop: Stop) -> anyhow::Result<Outcome> {
    let cfg = resolve(args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(engine::run(cfg, stop))
}

/// A stop that interrupts a run as a signal would: dispatch stops after
/// `dispatch_ms`, and in-flight requests are cancelled `abort_ms` later if given.
pub fn stop_after(dispatch_ms: u64, abort_ms: Option<u64>) -> Stop {
    let stop = Stop::default();
    let s = stop.clone();
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(dispatch_ms));
        s.dispatch.cancel();
        if let Some(ms) = abort_ms {
            std::thread::sleep(std::time::Duration::from_millis(ms));
            s.abort.cancel();
        }
    });
    stop
}

pub fn run(args: &[&str]) -> anyhow::Result<Outcome> {
    run_with(args, Stop::default())
}

pub fn db(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("benchmark_data.db")).expect("db opens")
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Python-style NaN tokens are valid for evalscope's readers; map them for serde.
    serde_json::from_str(&text.replace(": NaN", ": null")).expect("valid JSON")
}

/// Every single-run directory under an invocation's output directory.
pub fn run_dirs(root: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

/// Whether an external program is on PATH. When it is not, the calling test prints
/// SKIPPED and returns early, unless PERFSCOPE_REQUIRE_EXTERNAL=1 (CI), which makes
/// the missing program a failure.
pub fn external(program: &str) -> bool {
    let found = std::process::Command::new(program)
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok();
    if !found {
        if std::env::var("PERFSCOPE_REQUIRE_EXTERNAL").as_deref() == Ok("1") {
            panic!("{program} is required (PERFSCOPE_REQUIRE_EXTERNAL=1) but not on PATH; install its Debian package");
        }
        eprintln!("SKIPPED: {program} not on PATH; this check did not run");
    }
    found
}

/// Every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The stored request bodies of a run, in send order.
pub fn bodies(dir: &Path) -> Vec<serde_json::Value> {
    db(dir)
        .prepare("SELECT request FROM result ORDER BY start_time")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|x| serde_json::from_str(&x.unwrap()).unwrap())
        .collect()
}

/// A response body fed by a channel: the test decides when each piece leaves.
pub struct ChannelBody(pub tokio::sync::mpsc::UnboundedReceiver<bytes::Bytes>);

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|b| Ok(http_body::Frame::data(b))))
    }
}

/// Serves `router` on 127.0.0.1:0 on its own thread and runtime until dropped.
pub struct Mock {
    pub addr: std::net::SocketAddr,
    _shutdown: tokio::sync::oneshot::Sender<()>,
}

pub fn serve(router: axum::Router) -> Mock {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (atx, arx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            atx.send(l.local_addr().unwrap()).unwrap();
            axum::serve(l, router)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    Mock {
        addr: arx.recv().unwrap(),
        _shutdown: tx,
    }
}

/// The error of a run that must fail, with its context chain.
pub fn run_err(args: &[&str]) -> String {
    match run(args) {
        Ok(o) => panic!("{args:?} succeeded (exit {})", o.exit_code),
        Err(e) => format!("{e:#}"),
    }
}
