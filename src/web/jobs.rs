//! `perfscope serve --allow-run`: runs started and stopped from the page. A run is
//! this binary's `perf` with the form's flags (the common ones, and a field for the
//! rest) as a child process writing into the first served tree, with its own live
//! page on a free loopback port. Stopping sends it Ctrl-C (SIGINT), so that it
//! ends as a run stopped from its terminal does: rows stored, reports written.
//!
//! Every request here needs the token printed at start-up
//! (`Authorization: Bearer TOKEN`); without `--allow-run` there is nothing to start
//! and these routes answer 403.

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use super::respond::{json, query_param, text};

/// The output kept of a run (its last bytes).
const TAIL_BYTES: usize = 16 * 1024;
/// Most runs kept in the list.
const MAX_JOBS: usize = 50;
/// Largest form accepted.
const MAX_BODY: usize = 64 * 1024;

pub struct Jobs {
    token: String,
    outputs: PathBuf,
    program: PathBuf,
    list: Mutex<Vec<Job>>,
}

struct Job {
    n: usize,
    args: Vec<String>,
    started_unix: f64,
    child: Child,
    exit: Option<i32>,
    output: Arc<Mutex<String>>,
    live: Option<String>,
}

/// The start form: the common flags, and the rest as one line.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RunForm {
    pub api: String,
    pub url: String,
    pub model: String,
    pub dataset: String,
    pub parallel: String,
    pub number: String,
    pub rate: String,
    pub max_tokens: String,
    pub name: String,
    /// Any other flags, as on a command line (quotes group words).
    pub extra: String,
}

impl Jobs {
    /// Runs this binary's `perf`, into `outputs`; the token is 128 random bits.
    pub fn new(outputs: PathBuf) -> anyhow::Result<Jobs> {
        let program = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("--allow-run: cannot find this program: {e}"))?;
        Jobs::with_program(outputs, program)
    }

    /// Runs `program perf …` (the tests give the built binary).
    pub fn with_program(outputs: PathBuf, program: PathBuf) -> anyhow::Result<Jobs> {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| anyhow::anyhow!("--allow-run: no randomness for the token"))?;
        Ok(Jobs {
            token: bytes.iter().map(|b| format!("{b:02x}")).collect(),
            outputs,
            program,
            list: Mutex::new(Vec::new()),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// Whether the request carries the token (compared in constant time).
    fn authorised(&self, req: &Request) -> bool {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .as_bytes();
        let want = self.token.as_bytes();
        given.len() == want.len()
            && given
                .iter()
                .zip(want)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The runs' starter, or the answer that refuses the request.
fn guard<'a>(
    jobs: Option<&'a Jobs>,
    req: &Request,
) -> Result<&'a Jobs, (StatusCode, &'static str)> {
    let Some(j) = jobs else {
        return Err((
            StatusCode::FORBIDDEN,
            "runs cannot be started here: start `perfscope serve` with --allow-run\n",
        ));
    };
    if !j.authorised(req) {
        return Err((
            StatusCode::UNAUTHORIZED,
            "give the token `perfscope serve --allow-run` printed at start-up \
             (Authorization: Bearer TOKEN; the page reads it from #token=…)\n",
        ));
    }
    Ok(j)
}

/// Splits a line of flags as a shell would for words, single and double quotes
/// (no variables, no escapes beyond `\"` inside double quotes).
pub fn split_words(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(x) if x == c => break,
                        Some('\\') if c == '"' && chars.peek() == Some(&'"') => {
                            cur.push('"');
                            chars.next();
                        }
                        Some(x) => cur.push(x),
                        None => return Err(format!("unclosed {c} in the extra flags")),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    Ok(out)
}

/// `perf`'s arguments for a form: each filled field as its flag, then the extra
/// flags; the output tree and a live page added unless the extra flags set them.
pub fn perf_args(
    f: &RunForm,
    outputs: &std::path::Path,
    live_port: Option<u16>,
) -> Result<Vec<String>, String> {
    let mut args = vec!["perf".to_string()];
    for (flag, v) in [
        ("--api", &f.api),
        ("--url", &f.url),
        ("--model", &f.model),
        ("--dataset", &f.dataset),
        ("--name", &f.name),
    ] {
        if !v.trim().is_empty() {
            args.extend([flag.to_string(), v.trim().to_string()]);
        }
    }
    // Sweeps: "1 4 8" is three points, as on the command line.
    for (flag, v) in [
        ("--parallel", &f.parallel),
        ("--number", &f.number),
        ("--rate", &f.rate),
        ("--max-tokens", &f.max_tokens),
    ] {
        let words = split_words(v)?;
        if !words.is_empty() {
            args.push(flag.to_string());
            args.extend(words);
        }
    }
    let extra = split_words(&f.extra)?;
    let given = |flag: &str| {
        extra
            .iter()
            .any(|w| w == flag || w.starts_with(&format!("{flag}=")))
    };
    if !given("--outputs-dir") {
        args.extend(["--outputs-dir".into(), outputs.display().to_string()]);
    }
    if let (false, Some(p)) = (given("--metrics-addr"), live_port) {
        args.extend(["--metrics-addr".into(), format!("127.0.0.1:{p}")]);
    }
    args.extend(extra);
    Ok(args)
}

/// A free loopback port for a run's live page (bound, then released for the run).
fn free_port() -> Option<u16> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .ok()
}

/// Keeps the last TAIL_BYTES of a stream.
fn keep_tail(mut from: impl Read + Send + 'static, into: Arc<Mutex<String>>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = into.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > TAIL_BYTES {
                    let mut cut = s.len() - TAIL_BYTES;
                    while !s.is_char_boundary(cut) {
                        cut += 1;
                    }
                    s.drain(..cut);
                }
            }
        }
    });
}

/// `POST /api/jobs` with the form as JSON: starts a run.
pub(super) async fn start(jobs: Option<&Jobs>, req: Request) -> Response {
    let jobs = match guard(jobs, &req) {
        Ok(j) => j,
        Err((status, why)) => return text(status, why),
    };
    let Ok(body) = axum::body::to_bytes(req.into_body(), MAX_BODY).await else {
        return text(StatusCode::PAYLOAD_TOO_LARGE, "the form is too large\n");
    };
    let form: RunForm = match serde_json::from_slice(&body) {
        Ok(f) => f,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("the form is not JSON: {e}\n"),
            )
        }
    };
    let port = free_port();
    let args = match perf_args(&form, &jobs.outputs, port) {
        Ok(a) => a,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("{e}\n")),
    };
    // The run's live page, unless it was turned off.
    let addr = args
        .iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix("--metrics-addr") {
            Some("") => args.get(i + 1).cloned(),
            Some(rest) => rest.strip_prefix('=').map(str::to_string),
            None => None,
        });
    let live = addr.filter(|a| a != "off").map(|a| format!("http://{a}/"));
    let mut child = match Command::new(&jobs.program)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot start {}: {e}\n", jobs.program.display()),
            )
        }
    };
    let output = Arc::new(Mutex::new(String::new()));
    if let Some(o) = child.stdout.take() {
        keep_tail(o, output.clone());
    }
    if let Some(e) = child.stderr.take() {
        keep_tail(e, output.clone());
    }
    let Ok(mut list) = jobs.list.lock() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the run list is unusable\n",
        );
    };
    let n = list.last().map_or(1, |j| j.n + 1);
    // Ended runs beyond MAX_JOBS leave the list (their outputs stay on disk).
    while list.len() >= MAX_JOBS {
        match list.iter().position(|j| j.exit.is_some()) {
            Some(i) => drop(list.remove(i)),
            None => break,
        }
    }
    list.push(Job {
        n,
        args,
        started_unix: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64()),
        child,
        exit: None,
        output,
        live,
    });
    json(&serde_json::json!({"n": n}))
}

/// `GET /api/jobs`: the runs started here, newest first, with their state, live
/// page and the tail of their output.
pub(super) async fn list(jobs: Option<&Jobs>, req: Request) -> Response {
    let jobs = match guard(jobs, &req) {
        Ok(j) => j,
        Err((status, why)) => return text(status, why),
    };
    let Ok(mut list) = jobs.list.lock() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the run list is unusable\n",
        );
    };
    let out: Vec<serde_json::Value> = list
        .iter_mut()
        .rev()
        .map(|j| {
            if j.exit.is_none() {
                if let Ok(Some(st)) = j.child.try_wait() {
                    j.exit = Some(st.code().unwrap_or(-1));
                }
            }
            serde_json::json!({
                "n": j.n,
                "args": j.args,
                "started_unix": j.started_unix,
                "running": j.exit.is_none(),
                "exit": j.exit,
                "live": j.live,
                "output": j.output.lock().map(|s| s.clone()).unwrap_or_default(),
            })
        })
        .collect();
    json(&out)
}

/// `POST /api/jobs/stop?n=N`: Ctrl-C to a running run.
pub(super) async fn stop(jobs: Option<&Jobs>, req: Request) -> Response {
    let jobs = match guard(jobs, &req) {
        Ok(j) => j,
        Err((status, why)) => return text(status, why),
    };
    let n: Option<usize> = query_param(req.uri(), "n").and_then(|v| v.parse().ok());
    let Ok(mut list) = jobs.list.lock() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the run list is unusable\n",
        );
    };
    let Some(j) = list.iter_mut().find(|j| Some(j.n) == n) else {
        return text(StatusCode::NOT_FOUND, "no such run\n");
    };
    if j.exit.is_some() || matches!(j.child.try_wait(), Ok(Some(_))) {
        return text(StatusCode::CONFLICT, "the run has ended\n");
    }
    let Ok(pid) = libc::pid_t::try_from(j.child.id()) else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the run's process id is out of range\n",
        );
    };
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped.
    let rc = unsafe { libc::kill(pid, libc::SIGINT) };
    if rc != 0 {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot stop the run: {}\n", std::io::Error::last_os_error()),
        );
    }
    json(&serde_json::json!({"n": j.n, "stopping": true}))
}

impl Drop for Jobs {
    /// Runs still going when the server stops are stopped as from their terminal.
    fn drop(&mut self) {
        if let Ok(list) = self.list.get_mut() {
            for j in list.iter_mut() {
                if matches!(j.child.try_wait(), Ok(None)) {
                    if let Ok(pid) = libc::pid_t::try_from(j.child.id()) {
                        // SAFETY: as in `stop`.
                        unsafe { libc::kill(pid, libc::SIGINT) };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_and_args() {
        assert_eq!(
            split_words(r#"--stream  --prompt "a b \"c\"" 'd e'"#).unwrap(),
            vec!["--stream", "--prompt", "a b \"c\"", "d e"]
        );
        assert!(split_words("'open").is_err());
        let f = RunForm {
            api: "sim".into(),
            parallel: "1 4".into(),
            number: "10 40".into(),
            extra: "--stream --metrics-addr=127.0.0.1:1".into(),
            ..RunForm::default()
        };
        let a = perf_args(&f, std::path::Path::new("/o"), Some(7)).unwrap();
        assert_eq!(
            a,
            vec![
                "perf",
                "--api",
                "sim",
                "--parallel",
                "1",
                "4",
                "--number",
                "10",
                "40",
                "--outputs-dir",
                "/o",
                "--stream",
                "--metrics-addr=127.0.0.1:1"
            ]
        );
    }
}
