//! Stopping a run: signals, grace periods, exit codes.

use std::sync::Arc;
use std::time::Duration;

use crate::client::Cancel;

/// How long in-flight requests may finish after Ctrl-C before they are cancelled.
pub const INTERRUPT_GRACE: Duration = Duration::from_secs(10);
/// The same after SIGTERM: shorter, so the summary is written before the SIGKILL
/// that `docker stop` sends 10 s after its SIGTERM.
pub const TERMINATE_GRACE: Duration = Duration::from_secs(5);

/// Exit codes.
pub const EXIT_OK: i32 = 0;
/// A run finished with no successful request.
pub const EXIT_NO_SUCCESS: i32 = 3;
/// Interrupted (Ctrl-C); what completed was stored and summarised.
pub const EXIT_INTERRUPTED: i32 = 130;
/// Terminated (SIGTERM), likewise: 128 + the signal number, as evalscope 1.14.
pub const EXIT_TERMINATED: i32 = 143;

#[derive(Clone, Default)]
pub struct Stop {
    /// Stop releasing new requests.
    pub dispatch: Cancel,
    /// Cancel requests in flight (recorded as `cancelled`).
    pub abort: Cancel,
    /// The signal that stopped the run (SIGINT when none was recorded).
    pub signal: Arc<std::sync::atomic::AtomicI32>,
}

impl Stop {
    /// The exit code of an interrupted run: 128 + the signal number.
    pub fn exit_code(&self) -> i32 {
        match self.signal.load(std::sync::atomic::Ordering::SeqCst) {
            0 => EXIT_INTERRUPTED,
            s => 128 + s,
        }
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

/// Installs the Ctrl-C and SIGTERM behaviour: stop dispatching, give in-flight
/// requests `INTERRUPT_GRACE` (`TERMINATE_GRACE` after SIGTERM), then cancel them; a
/// second signal cancels at once. Requests not yet sent are not sent. Handling SIGTERM
/// is what makes `docker stop`, Kubernetes, systemd and `timeout` drain the run
/// instead of losing it.
pub fn install_signals(stop: Stop) {
    tokio::spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let Some(sig) = next_signal(&mut term).await else {
            return;
        };
        stop.signal.store(sig, std::sync::atomic::Ordering::SeqCst);
        let grace = if sig == libc::SIGTERM {
            TERMINATE_GRACE
        } else {
            INTERRUPT_GRACE
        };
        // The run says so in its own log (engine::log_interruption).
        stop.dispatch.cancel();
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = next_signal(&mut term) => {}
        }
        stop.abort.cancel();
    });
}

/// The next SIGINT or SIGTERM, as its number.
async fn next_signal(term: &mut Option<tokio::signal::unix::Signal>) -> Option<i32> {
    let sigterm = async {
        match term {
            Some(t) => t.recv().await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        r = tokio::signal::ctrl_c() => r.ok().map(|_| libc::SIGINT),
        s = sigterm => s.map(|_| libc::SIGTERM),
    }
}
