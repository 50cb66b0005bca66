//! Stopping a run: signals, grace periods, exit codes.

use std::sync::Arc;
use std::time::Duration;

use crate::client::Cancel;

/// How long in-flight requests may finish after Ctrl-C before they are cancelled.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);
/// The same after SIGTERM: shorter, so the summary is written before the SIGKILL
/// that `docker stop` sends 10 s after its SIGTERM.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// How long in-flight requests may finish after a stop rule trips.
pub const STOP_RULE_GRACE: Duration = Duration::from_secs(10);

/// Exit codes.
pub const EXIT_OK: i32 = 0;
/// A run finished with no successful request.
pub const EXIT_NO_SUCCESS: i32 = 3;
/// Interrupted (Ctrl-C); what completed was stored and summarised.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Terminated (SIGTERM), likewise: 128 + the signal number, as evalscope 1.14.
pub const EXIT_TERMINATED: i32 = 143;
/// Hung up (SIGHUP: the terminal or ssh session closed), likewise.
pub const EXIT_HANGUP: i32 = 129;
/// The store failed (a full disk, an I/O error, a database locked too long): the
/// run was stopped, what could be stored was summarised. 74 is sysexits.h's
/// EX_IOERR.
pub const EXIT_STORE_FAILED: i32 = 74;
/// A stop rule tripped (`--max-error-rate`, `--stop-on-saturation`): dispatching
/// stopped, the requests in flight finished, everything was stored and summarised.
pub const EXIT_STOP_RULE: i32 = 4;

#[derive(Clone, Default)]
pub struct Stop {
    /// Stop releasing new requests.
    pub dispatch: Cancel,
    /// Cancel requests in flight (recorded as `cancelled`).
    pub abort: Cancel,
    /// The signal that stopped the run (SIGINT when none was recorded).
    pub signal: Arc<std::sync::atomic::AtomicI32>,
    /// Why the store failed, when it did (the run was stopped for it).
    pub failure: Arc<std::sync::OnceLock<String>>,
    /// The stop rule that tripped, with its figures.
    pub rule: Arc<std::sync::OnceLock<String>>,
}

impl Stop {
    /// The exit code of a stopped run: EXIT_STORE_FAILED when the store failed,
    /// EXIT_STOP_RULE when a stop rule tripped, else 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        if self.failure.get().is_some() {
            return EXIT_STORE_FAILED;
        }
        if self.rule.get().is_some() && self.signal.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            return EXIT_STOP_RULE;
        }
        match self.signal.load(std::sync::atomic::Ordering::SeqCst) {
            0 => EXIT_INTERRUPTED,
            s => 128 + s,
        }
    }

    /// The store cannot write: no new requests, and those in flight are cancelled
    /// now (recorded as `cancelled`), so the run ends while the rows held can still
    /// be written.
    pub fn fail(&self, cause: &str) {
        let _ = self.failure.set(cause.to_string());
        self.dispatch.cancel();
        self.abort.cancel();
    }

    /// A stop rule tripped: no new requests; those in flight get STOP_RULE_GRACE to
    /// finish (a saturated server's queue could take minutes), then are cancelled
    /// (recorded as `cancelled`). Called on the runtime (the fan-out task).
    pub fn trip(&self, why: String) {
        if self.rule.set(why.clone()).is_err() || self.dispatch.is_cancelled() {
            return;
        }
        crate::telemetry::log::warn(format!(
            "Stopped by a stop rule: {why}; no new requests, waiting up to {} s for those in flight",
            STOP_RULE_GRACE.as_secs()
        ));
        self.dispatch.cancel();
        let abort = self.abort.clone();
        tokio::spawn(async move {
            tokio::time::sleep(STOP_RULE_GRACE).await;
            abort.cancel();
        });
    }

    /// The run's status and why it stopped early: `completed`, `interrupted` with
    /// the signal's name, `stopped` with the stop rule and its figures, or `failed`
    /// with the store's error.
    pub fn status(&self) -> (&'static str, Option<String>) {
        if let Some(f) = self.failure.get() {
            return ("failed", Some(f.clone()));
        }
        if !self.dispatch.is_cancelled() {
            return ("completed", None);
        }
        let sig = self.signal.load(std::sync::atomic::Ordering::SeqCst);
        if let Some(r) = self.rule.get().filter(|_| sig == 0) {
            return ("stopped", Some(r.clone()));
        }
        ("interrupted", Some(signal_name(sig).to_string()))
    }
}

/// SIGINT, SIGTERM or SIGHUP by number (a stop without a signal: a caller's own).
pub fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGTERM => "SIGTERM",
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        _ => "stopped by the caller",
    }
}

/// A run stopped by a signal before its load started (during the connection test or
/// the local server's start-up); maps to exit code 128 + signal.
#[derive(Debug)]
pub struct Interrupted(pub i32);

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "interrupted before the benchmark started; nothing was sent"
        )
    }
}

impl std::error::Error for Interrupted {}

/// A dataset that cannot be read or parsed: a usage error (exit 2), like an
/// unreadable `--prompt @file` or `--tokenizer-path`, found when the run loads it.
#[derive(Debug)]
pub struct BadInput(pub String);

impl std::fmt::Display for BadInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// The grace in-flight requests get after a signal: SIGTERM and SIGHUP (an ssh
/// session closing) drain briefly, Ctrl-C longer.
pub fn grace_after(sig: i32) -> Duration {
    if sig == libc::SIGINT {
        INTERRUPT_GRACE
    } else {
        TERMINATE_GRACE
    }
}

/// Installs the Ctrl-C, SIGTERM and SIGHUP behaviour: stop dispatching, give
/// in-flight requests `INTERRUPT_GRACE` (`TERMINATE_GRACE` after SIGTERM or
/// SIGHUP), then cancel them; a second signal cancels at once. Requests not yet
/// sent are not sent. Handling SIGTERM is what makes `docker stop`, Kubernetes,
/// systemd and `timeout` drain the run instead of losing it; handling SIGHUP keeps
/// a run whose ssh session closed from dying with nothing written.
pub fn install_signals(stop: Stop) {
    tokio::spawn(async move {
        let mut signals = Signals::new();
        let Some(sig) = signals.next().await else {
            return;
        };
        stop.signal.store(sig, std::sync::atomic::Ordering::SeqCst);
        // The run says so in its own log (engine::log_interruption).
        stop.dispatch.cancel();
        tokio::select! {
            _ = tokio::time::sleep(grace_after(sig)) => {}
            _ = signals.next() => {}
        }
        stop.abort.cancel();
    });
}

/// SIGTERM and SIGHUP streams (SIGINT through tokio's ctrl_c).
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    hup: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        Signals {
            term: signal(SignalKind::terminate()).ok(),
            hup: signal(SignalKind::hangup()).ok(),
        }
    }

    /// The next SIGINT, SIGTERM or SIGHUP, as its number.
    async fn next(&mut self) -> Option<i32> {
        async fn recv(s: &mut Option<tokio::signal::unix::Signal>) -> Option<()> {
            match s {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.ok().map(|_| libc::SIGINT),
            s = recv(&mut self.term) => s.map(|_| libc::SIGTERM),
            s = recv(&mut self.hup) => s.map(|_| libc::SIGHUP),
        }
    }
}
