//! Logging through `tracing`, to the console and `benchmark.log` (evalscope writes
//! every log line to both), as `YYYY-mm-dd HH:MM:SS - perfscope - LEVEL: message`.
//!
//! Each invocation installs its own subscriber for the tasks and threads of its run
//! ([`RunLog::dispatch`]), so two runs in one process (the tests) never write into
//! each other's `benchmark.log`; outside a run the binary's default subscriber
//! ([`console`]) prints to the console only. Lines never carry secrets: callers log
//! masked headers and arguments only.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// The target of text blocks (tables): printed to stdout and the file unprefixed.
const BLOCK: &str = "perfscope::block";

pub fn info(msg: impl AsRef<str>) {
    tracing::info!("{}", msg.as_ref());
}
pub fn warn(msg: impl AsRef<str>) {
    tracing::warn!("{}", msg.as_ref());
}
pub fn error(msg: impl AsRef<str>) {
    tracing::error!("{}", msg.as_ref());
}
pub fn debug(msg: impl AsRef<str>) {
    tracing::debug!("{}", msg.as_ref());
}
/// Text that goes to stdout (tables) and into benchmark.log without a prefix.
pub fn block(text: &str) {
    tracing::info!(target: BLOCK, "{}", text);
}

/// Where one invocation's log goes: its `benchmark.log`, the console, and around
/// its progress bar while one is drawn.
pub struct RunLog {
    file: Mutex<Option<std::fs::File>>,
    bar: Mutex<Option<indicatif::ProgressBar>>,
    debug: bool,
}

impl RunLog {
    /// Appends to `path`.
    pub fn open(path: &Path, debug: bool) -> std::io::Result<Arc<RunLog>> {
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(Arc::new(RunLog {
            file: Mutex::new(Some(f)),
            bar: Mutex::new(None),
            debug,
        }))
    }

    /// The console only (no file, no debug lines).
    fn console_only() -> Arc<RunLog> {
        Arc::new(RunLog {
            file: Mutex::new(None),
            bar: Mutex::new(None),
            debug: false,
        })
    }

    /// While a progress bar is drawn, log lines are printed above it.
    pub fn set_bar(&self, bar: Option<indicatif::ProgressBar>) {
        if let Ok(mut b) = self.bar.lock() {
            *b = bar;
        }
    }

    /// A subscriber writing to this log, for `WithSubscriber::with_subscriber` on
    /// the run's future and `dispatcher::with_default` on its threads.
    pub fn dispatch(self: &Arc<Self>) -> tracing::Dispatch {
        tracing::Dispatch::new(tracing_subscriber::registry().with(LogLayer(self.clone())))
    }

    fn write(&self, level: &Level, block: bool, msg: &str) {
        if *level == Level::DEBUG && !self.debug {
            return;
        }
        let line = if block {
            msg.to_string()
        } else {
            let ts = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
            let name = match *level {
                Level::ERROR => "ERROR",
                Level::WARN => "WARNING",
                Level::DEBUG | Level::TRACE => "DEBUG",
                _ => "INFO",
            };
            format!("{ts} - perfscope - {name}: {msg}")
        };
        if let Ok(mut f) = self.file.lock() {
            if let Some(f) = f.as_mut() {
                let _ = writeln!(f, "{line}");
            }
        }
        let print = || {
            if block {
                out(&line)
            } else {
                err(&line)
            }
        };
        let before = console_closed();
        match self.bar.lock().ok().and_then(|b| b.clone()) {
            Some(b) if !b.is_hidden() => b.suspend(print),
            _ => print(),
        }
        let after = console_closed();
        if after != before {
            // Said once per stream, in the file only: the run goes on.
            let which = if after.1 != before.1 {
                "stderr"
            } else {
                "stdout"
            };
            if let Ok(mut f) = self.file.lock() {
                if let Some(f) = f.as_mut() {
                    let ts = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
                    let _ = writeln!(
                        f,
                        "{ts} - perfscope - WARNING: {which} is closed (broken pipe or lost terminal); the run goes on and its lines continue in this file only"
                    );
                }
            }
        }
    }
}

/// Console streams that failed (a closed pipe: `perfscope perf … 2>&1 | head`, a
/// terminal gone with its ssh session): printing to them stops, the run goes on,
/// and benchmark.log keeps every line. `println!` would panic on EPIPE and kill
/// the task that logged.
static STDOUT_GONE: AtomicBool = AtomicBool::new(false);
static STDERR_GONE: AtomicBool = AtomicBool::new(false);

fn write_console(gone: &AtomicBool, mut w: impl Write, text: &str) {
    if gone.load(Ordering::Relaxed) {
        return;
    }
    if writeln!(w, "{text}").and_then(|_| w.flush()).is_err() {
        gone.store(true, Ordering::Relaxed);
    }
}

/// One line to stdout; nothing when stdout is closed.
pub fn out(text: &str) {
    write_console(&STDOUT_GONE, std::io::stdout().lock(), text);
}

/// One line to stderr; nothing when stderr is closed.
pub fn err(text: &str) {
    write_console(&STDERR_GONE, std::io::stderr().lock(), text);
}

/// Whether a console stream has been found closed (stdout, stderr).
pub fn console_closed() -> (bool, bool) {
    (
        STDOUT_GONE.load(Ordering::Relaxed),
        STDERR_GONE.load(Ordering::Relaxed),
    )
}

/// The process-wide default outside a run: the console only.
pub fn console() -> tracing::Dispatch {
    RunLog::console_only().dispatch()
}

struct LogLayer(Arc<RunLog>);

/// The `message` field of an event, as formatted by the macro.
struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

impl<S: Subscriber> Layer<S> for LogLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        // perfscope's own lines only, not those of its dependencies.
        if !meta.target().starts_with("perfscope") {
            return;
        }
        let mut m = Message(String::new());
        event.record(&mut m);
        self.0.write(meta.level(), meta.target() == BLOCK, &m.0);
    }
}
