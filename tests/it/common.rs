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

/// Load tests are serialised: the timing tests compare against injected delays to
/// within milliseconds and must not share the two cores with another load test.
/// (Each run logs to its own subscriber, so logs never need this.)
pub static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    static HELD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// The load-test lock, held until dropped; re-entrant within a test's thread, so a
/// test holding it can run `Bench`es.
pub struct Serial(Option<std::sync::MutexGuard<'static, ()>>);

impl Drop for Serial {
    fn drop(&mut self) {
        if self.0.is_some() {
            HELD.with(|h| h.set(false));
        }
    }
}

pub fn lock() -> Serial {
    if HELD.with(|h| h.get()) {
        return Serial(None);
    }
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    HELD.with(|h| h.set(true));
    Serial(Some(guard))
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

/// The common setup of a load test: a simulator on 127.0.0.1:0 (or a given URL), a
/// temporary outputs directory, and `perfscope perf` with `--model m` and no
/// connection test, plus the flags a test adds:
/// `Bench::sim().parallel(8).number(100).run()`.
pub struct Bench {
    sim: Option<SimConfig>,
    url: Option<String>,
    path: String,
    model: String,
    args: Vec<String>,
    stop: Stop,
}

/// A finished `Bench` run: its outcome, outputs and the simulator it ran against.
pub struct Ran {
    pub outcome: Outcome,
    pub out: tempfile::TempDir,
    pub sim: Option<SimHandle>,
    _serial: Serial,
}

impl Bench {
    /// Against a simulator with its default settings.
    pub fn sim() -> Bench {
        Bench::sim_with(SimConfig::default())
    }
    pub fn sim_with(cfg: SimConfig) -> Bench {
        Bench {
            sim: Some(cfg),
            url: None,
            path: "/v1/chat/completions".into(),
            model: "m".into(),
            args: Vec::new(),
            stop: Stop::default(),
        }
    }
    /// Against a server the test started itself.
    pub fn url(url: &str) -> Bench {
        Bench {
            sim: None,
            url: Some(url.into()),
            path: String::new(),
            model: "m".into(),
            args: Vec::new(),
            stop: Stop::default(),
        }
    }
    /// The simulator path requested (default `/v1/chat/completions`).
    pub fn path(mut self, path: &str) -> Bench {
        self.path = path.into();
        self
    }
    /// `--model` (default `m`).
    pub fn model(mut self, model: &str) -> Bench {
        self.model = model.into();
        self
    }
    pub fn parallel(self, n: u64) -> Bench {
        self.arg("--parallel", &n.to_string())
    }
    pub fn number(self, n: u64) -> Bench {
        self.arg("--number", &n.to_string())
    }
    pub fn rate(self, r: f64) -> Bench {
        self.arg("--rate", &r.to_string())
    }
    pub fn max_tokens(self, n: u64) -> Bench {
        self.arg("--max-tokens", &n.to_string())
    }
    /// A flag and its value.
    pub fn arg(mut self, flag: &str, value: &str) -> Bench {
        self.args.extend([flag.to_string(), value.to_string()]);
        self
    }
    /// Flags as written on a command line.
    pub fn args(mut self, args: &[&str]) -> Bench {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }
    /// Stops the run as a signal would (see `stop_after`).
    pub fn stop(mut self, stop: Stop) -> Bench {
        self.stop = stop;
        self
    }
    /// Runs it (serialised with the other load tests); panics if perfscope fails.
    pub fn run(self) -> Ran {
        self.try_run().expect("perfscope perf runs")
    }
    pub fn try_run(self) -> anyhow::Result<Ran> {
        let serial = lock();
        let sim = self.sim.map(start_sim);
        let url = match (&sim, self.url) {
            (Some(s), _) => format!("{}{}", s.base_url(), self.path),
            (None, Some(u)) => u,
            (None, None) => unreachable!("a Bench has a simulator or a URL"),
        };
        let out = tempfile::tempdir()?;
        let mut argv: Vec<String> = [
            "--url",
            &url,
            "--model",
            &self.model,
            "--outputs-dir",
            out.path().to_str().unwrap_or_default(),
            "--no-test-connection",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        argv.extend(self.args);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let outcome = run_with(&argv, self.stop)?;
        Ok(Ran {
            outcome,
            out,
            sim,
            _serial: serial,
        })
    }
}

impl Ran {
    /// A step's directory by name (`parallel_8_number_100`).
    pub fn step(&self, name: &str) -> std::path::PathBuf {
        self.outcome.dir.join(name)
    }
    /// The directory of a one-step run.
    pub fn only_step(&self) -> std::path::PathBuf {
        let dirs = run_dirs(&self.outcome.dir);
        assert_eq!(dirs.len(), 1, "one step expected: {dirs:?}");
        dirs[0].clone()
    }
    /// The one step's benchmark_summary.json.
    pub fn summary(&self) -> serde_json::Value {
        json(&self.only_step().join("benchmark_summary.json"))
    }
    /// The one step's database.
    pub fn db(&self) -> rusqlite::Connection {
        db(&self.only_step())
    }
    pub fn sim(&self) -> &SimHandle {
        self.sim.as_ref().expect("a simulator run")
    }
}

/// Every row of a query, each read by `row` (e.g. `|r| Ok((r.get(0)?, r.get(1)?))`).
pub fn rows<T>(
    conn: &rusqlite::Connection,
    sql: &str,
    row: impl FnMut(&rusqlite::Row) -> rusqlite::Result<T>,
) -> Vec<T> {
    conn.prepare(sql)
        .unwrap()
        .query_map([], row)
        .unwrap()
        .map(Result::unwrap)
        .collect()
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

/// An evalscope output directory as evalscope 1.14.1 writes it: the 14-column `result`
/// table (base64 pickles in `response_messages`), its own JSON and HTML files.
pub fn evalscope_dir(root: &Path) -> std::path::PathBuf {
    let model_dir = root.join("20260101_120000").join("Qwen2.5-0.5B");
    let step = model_dir.join("parallel_2_number_5");
    std::fs::create_dir_all(&step).unwrap();
    let conn = rusqlite::Connection::open(step.join("benchmark_data.db")).unwrap();
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS result(request TEXT, start_time REAL, inter_token_latencies TEXT,
         success INTEGER, response_messages TEXT, completed_time REAL, latency REAL,
         first_chunk_latency REAL, prompt_tokens INTEGER, completion_tokens INTEGER,
         max_gpu_memory_cost REAL, time_per_output_token REAL, request_id TEXT, is_stream INTEGER)",
    )
    .unwrap();
    let pickle = "gASVEgAAAAAAAABdlH2UjAF4lEsBc2Eu"; // base64(pickle([{'x': 1}]))
    #[allow(clippy::type_complexity)]
    let rows: [(
        f64,
        f64,
        Option<f64>,
        Option<f64>,
        Option<i64>,
        Option<i64>,
        Option<f64>,
        &str,
        i64,
    ); 5] = [
        // A 5-token stream: TTFT 100.05 ms, TPOT (0.5 − 0.10005)/4.
        (
            10.0,
            10.5,
            Some(0.5),
            Some(0.10005),
            Some(10),
            Some(5),
            Some(0.0999875),
            "[0.1, 0.1, 0.1, 0.09995]",
            1,
        ),
        // A one-token stream: TPOT 0, left out of Avg TPOT and the TPOT percentile.
        (
            10.1,
            10.3,
            Some(0.2),
            Some(0.2),
            Some(8),
            Some(1),
            Some(0.0),
            "[]",
            1,
        ),
        (
            10.2,
            11.2,
            Some(1.0),
            Some(0.2),
            Some(12),
            Some(9),
            Some(0.1),
            "[0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1]",
            1,
        ),
        // A failure as 1.14.1 writes it (real completed_time) and one as older
        // releases did (completed_time 0: outside the duration window).
        (10.3, 10.4, None, None, None, None, None, "[]", 0),
        (10.4, 0.0, None, None, None, None, None, "[]", 0),
    ];
    for (st, ct, lat, ttft, p, c, tpot, itl, ok) in rows {
        conn.execute(
            "INSERT INTO result VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11, NULL, 1)",
            rusqlite::params![r#"{"model":"m","stream":true}"#, st, itl, ok, pickle, ct, lat, ttft, p, c, tpot],
        )
        .unwrap();
    }
    std::fs::write(
        step.join("benchmark_args.json"),
        r#"{"model": "Qwen2.5-0.5B", "api": "openai", "url": "http://127.0.0.1:8000/v1/chat/completions", "parallel": 2, "number": 5, "rate": -1, "dataset": "openqa"}"#,
    )
    .unwrap();
    for f in ["benchmark_summary.json", "benchmark_percentile.json"] {
        std::fs::write(step.join(f), "evalscope's own").unwrap();
    }
    std::fs::write(model_dir.join("perf_report.html"), "evalscope's own").unwrap();
    model_dir
}

fn golden_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Compares `actual` with `tests/golden/<name>`, or rewrites that file when
/// PERFSCOPE_UPDATE_GOLDEN is set (after a deliberate change; review the diff).
pub fn golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("PERFSCOPE_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (regenerate with PERFSCOPE_UPDATE_GOLDEN=1)",
            path.display()
        )
    });
    if want != actual {
        let line = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from {} at line {}:\nwant: {:?}\ngot:  {:?}",
            path.display(),
            line + 1,
            want.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}
