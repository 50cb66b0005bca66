//! `--api local` / `--api local_vllm`: start the inference server as a child process
//! on `--port`, wait until it answers, and stop it when the benchmark ends (normal
//! exit, error or Ctrl-C).
//!
//! evalscope runs a transformers model in-process for `local` and starts vLLM without
//! a readiness probe for `local_vllm` (the connection test's retries cover the model
//! load). perfscope runs a command instead: `llama-server` by default for `local`
//! (any OpenAI-compatible server via `--local-server-cmd`), `vllm serve` for
//! `local_vllm`, and polls `GET /v1/models` until the server is up. The server binds
//! 127.0.0.1 (evalscope binds 0.0.0.0). Its output goes to `local_server.log` in the
//! output directory.

use anyhow::{bail, Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::redact::MASK;
use crate::telemetry::log;

/// The flags that describe the server to start.
pub struct LocalServerFlags<'a> {
    /// `--api local_vllm` (else `local`).
    pub vllm: bool,
    /// `--local-server-cmd`.
    pub cmd: Option<&'a str>,
    /// `--attn-implementation`.
    pub attn: Option<&'a str>,
    /// `--port`.
    pub port: u16,
    /// `--local-server-timeout`, seconds.
    pub timeout: f64,
}

#[derive(Clone, Debug)]
pub struct LocalServerConfig {
    /// Program and arguments, placeholders substituted.
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub port: u16,
    pub timeout: Duration,
}

/// Splits a command line on whitespace, honouring single and double quotes.
pub fn split_command(s: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut any = false;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
                any = false;
            }
            (None, c) => cur.push(c),
        }
    }
    if quote.is_some() {
        bail!("--local-server-cmd: unbalanced quote in `{s}`");
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

/// A command line for logs and stored arguments: the value after an option that
/// names a key, token, secret or password (`--api-key K`, `--hf-token=T`) is masked.
pub fn mask_command(cmd: &str) -> String {
    let secret = |opt: &str| {
        let o = opt.to_ascii_lowercase();
        o.starts_with('-')
            && ["key", "token", "secret", "password"]
                .iter()
                .any(|w| o.contains(w))
    };
    let mut out = Vec::new();
    let mut mask_next = false;
    for word in cmd.split_whitespace() {
        if mask_next {
            out.push(MASK.to_string());
            mask_next = false;
            continue;
        }
        match word.split_once('=') {
            Some((opt, _)) if secret(opt) => out.push(format!("{opt}={}", MASK)),
            _ => {
                mask_next = secret(word) && !word.contains('=');
                out.push(word.to_string());
            }
        }
    }
    out.join(" ")
}

/// GPUs visible to the server: CUDA_VISIBLE_DEVICES if set, else /dev/nvidiaN.
fn gpu_count() -> usize {
    if let Ok(v) = std::env::var("CUDA_VISIBLE_DEVICES") {
        return v.split(',').filter(|d| !d.trim().is_empty()).count().max(1);
    }
    std::fs::read_dir("/dev")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| {
                    let n = e.file_name().to_string_lossy().into_owned();
                    n.strip_prefix("nvidia")
                        .is_some_and(|r| !r.is_empty() && r.bytes().all(|b| b.is_ascii_digit()))
                })
                .count()
        })
        .unwrap_or(0)
        .max(1)
}

impl LocalServerConfig {
    pub fn resolve(f: &LocalServerFlags, model: &str) -> Result<LocalServerConfig> {
        let attn = f.attn;
        let mut env = Vec::new();
        let template = match (f.cmd, f.vllm) {
            (Some(c), _) => {
                if attn.is_some() && !c.contains("{attn_implementation}") {
                    bail!(
                        "--attn-implementation: --local-server-cmd has no {{attn_implementation}} \
                         placeholder; put it where your server takes the setting"
                    );
                }
                c.to_string()
            }
            (None, true) => {
                // evalscope's command, with `vllm serve` and a loopback bind.
                if let Some(v) = attn {
                    let backend = match v {
                        "flash_attention_2" | "flash_attention_3" | "flash_attn" => "FLASH_ATTN",
                        "sdpa" => "TORCH_SDPA",
                        "flashinfer" => "FLASHINFER",
                        other if other.chars().all(|c| c.is_ascii_uppercase() || c == '_') => other,
                        other => bail!(
                            "--attn-implementation: `{other}` has no vLLM attention backend; use \
                             flash_attention_2, sdpa, flashinfer or a VLLM_ATTENTION_BACKEND name"
                        ),
                    };
                    env.push(("VLLM_ATTENTION_BACKEND".into(), backend.into()));
                }
                env.push(("VLLM_ALLOW_LONG_MAX_MODEL_LEN".into(), "1".into()));
                env.push(("VLLM_WORKER_MULTIPROC_METHOD".into(), "spawn".into()));
                format!(
                    "vllm serve {{model}} --served-model-name {{model}} --tensor-parallel-size {} \
                     --max-model-len 32768 --gpu-memory-utilization 0.9 --host 127.0.0.1 \
                     --port {{port}} --trust-remote-code --disable-log-requests",
                    gpu_count()
                )
            }
            (None, false) => {
                let fa = match attn {
                    None => "",
                    Some("flash_attention_2" | "flash_attention_3" | "flash_attn") => {
                        " --flash-attn on"
                    }
                    Some("eager" | "sdpa") => " --flash-attn off",
                    Some(other) => bail!(
                        "--attn-implementation: `{other}` is not understood by llama-server; use \
                         flash_attention_2 or eager, or give --local-server-cmd"
                    ),
                };
                format!("llama-server --model {{model}} --host 127.0.0.1 --port {{port}}{fa}")
            }
        };
        let port = f.port.to_string();
        let argv: Vec<String> = split_command(&template)?
            .into_iter()
            .map(|t| {
                t.replace("{model}", model)
                    .replace("{port}", &port)
                    .replace("{attn_implementation}", attn.unwrap_or(""))
            })
            .collect();
        if argv.is_empty() {
            bail!("--local-server-cmd: the command is empty");
        }
        if !(f.timeout > 0.0 && f.timeout.is_finite()) {
            bail!(
                "--local-server-timeout: {} is not a positive number of seconds",
                f.timeout
            );
        }
        Ok(LocalServerConfig {
            argv,
            env,
            port: f.port,
            timeout: Duration::from_secs_f64(f.timeout),
        })
    }
}

/// A running server; stopped (SIGTERM to its process group, then SIGKILL after 10 s,
/// as evalscope's atexit hook) when dropped.
pub struct LocalServer {
    child: Child,
    log_path: std::path::PathBuf,
}

impl LocalServer {
    /// Starts the server and waits until `GET /v1/models` answers 2xx. `stop` aborts
    /// the wait (Ctrl-C).
    pub async fn start(
        cfg: &LocalServerConfig,
        dir: &Path,
        stop: &crate::client::Cancel,
    ) -> Result<LocalServer> {
        if std::net::TcpStream::connect(("127.0.0.1", cfg.port)).is_ok() {
            bail!(
                "--port {}: something already listens on 127.0.0.1:{}; stop it or choose another --port",
                cfg.port,
                cfg.port
            );
        }
        let log_path = dir.join("local_server.log");
        let out = std::fs::File::create(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let err = out.try_clone()?;
        let mut cmd = Command::new(&cfg.argv[0]);
        cmd.args(&cfg.argv[1..])
            .envs(cfg.env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        // Its own process group, so stopping it also stops the workers it forks.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().with_context(|| {
            format!(
                "--api local: cannot start `{}`; install it or give the command with --local-server-cmd",
                cfg.argv[0]
            )
        })?;
        log::info(format!(
            "Local server started (pid {}): {} (output in {})",
            child.id(),
            mask_command(&cfg.argv.join(" ")),
            log_path.display()
        ));
        let mut server = LocalServer { child, log_path };
        server.wait_ready(cfg, stop).await?;
        Ok(server)
    }

    async fn wait_ready(
        &mut self,
        cfg: &LocalServerConfig,
        stop: &crate::client::Cancel,
    ) -> Result<()> {
        let url = format!("http://127.0.0.1:{}/v1/models", cfg.port);
        crate::client::install_tls_provider();
        let http = crate::proxy::reqwest_builder(&url)
            .timeout(Duration::from_secs(5))
            .build()
            .context("cannot build the HTTP client")?;
        let t0 = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the local server exited ({status}) before answering on port {}; last output:\n{}",
                    cfg.port,
                    self.tail(20)
                );
            }
            if let Ok(r) = http.get(&url).send().await {
                if r.status().is_success() {
                    log::info(format!(
                        "Local server ready on port {} after {:.1} s",
                        cfg.port,
                        t0.elapsed().as_secs_f64()
                    ));
                    return Ok(());
                }
            }
            if t0.elapsed() > cfg.timeout {
                bail!(
                    "the local server did not answer {url} within {:.0} s (--local-server-timeout); last output:\n{}",
                    cfg.timeout.as_secs_f64(),
                    self.tail(20)
                );
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = stop.cancelled() => bail!("interrupted while waiting for the local server"),
            }
        }
    }

    fn tail(&self, n: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(Some(_))) {
            return;
        }
        let pgid = self.child.id() as i32;
        // SAFETY: kill(2) with a negative pid signals the process group we created.
        unsafe { libc::kill(-pgid, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                log::info("Local server stopped");
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // SAFETY: as above.
        unsafe { libc::kill(-pgid, libc::SIGKILL) };
        let _ = self.child.wait();
        log::warn("Local server did not stop within 10 s of SIGTERM; killed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_splitting() {
        assert_eq!(
            split_command(r#"llama-server -m '/models/a b.gguf' --alias "x y" -c 4096"#).unwrap(),
            vec![
                "llama-server",
                "-m",
                "/models/a b.gguf",
                "--alias",
                "x y",
                "-c",
                "4096"
            ]
        );
        assert_eq!(split_command("a '' b").unwrap(), vec!["a", "", "b"]);
        assert!(split_command("a 'b").is_err());
    }

    #[test]
    fn secrets_in_commands_are_masked() {
        assert_eq!(
            mask_command("llama-server --api-key sk-1 --port 8 --hf-token=hf_x -m m"),
            "llama-server --api-key ********** --port 8 --hf-token=********** -m m"
        );
    }
}
