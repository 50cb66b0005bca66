//! Logging to the console and `benchmark.log` (evalscope writes every log line to
//! both). Lines never carry secrets: callers log masked headers and arguments only.

use std::io::Write;
use std::sync::Mutex;

struct Sink {
    file: Option<std::fs::File>,
    bar: Option<indicatif::ProgressBar>,
    debug: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    file: None,
    bar: None,
    debug: false,
});

/// Directs the log to `path` (appended) in addition to stderr.
pub fn to_file(path: &std::path::Path) -> std::io::Result<()> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if let Ok(mut s) = SINK.lock() {
        s.file = Some(f);
    }
    Ok(())
}

pub fn close_file() {
    if let Ok(mut s) = SINK.lock() {
        s.file = None;
    }
}

pub fn set_debug(on: bool) {
    if let Ok(mut s) = SINK.lock() {
        s.debug = on;
    }
}

/// While a progress bar is drawn, log lines are printed above it.
pub fn set_bar(bar: Option<indicatif::ProgressBar>) {
    if let Ok(mut s) = SINK.lock() {
        s.bar = bar;
    }
}

fn emit(level: &str, msg: &str, console: bool) {
    let ts = chrono::Local::now().format("%Y-%m-%d %H:%M:%S");
    let line = format!("{ts} - perfscope - {level}: {msg}");
    if let Ok(mut s) = SINK.lock() {
        if level == "DEBUG" && !s.debug {
            return;
        }
        if let Some(f) = s.file.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        if console {
            match &s.bar {
                Some(b) if !b.is_hidden() => b.suspend(|| eprintln!("{line}")),
                _ => eprintln!("{line}"),
            }
        }
    }
}

pub fn info(msg: impl AsRef<str>) {
    emit("INFO", msg.as_ref(), true);
}
pub fn warn(msg: impl AsRef<str>) {
    emit("WARNING", msg.as_ref(), true);
}
pub fn error(msg: impl AsRef<str>) {
    emit("ERROR", msg.as_ref(), true);
}
pub fn debug(msg: impl AsRef<str>) {
    emit("DEBUG", msg.as_ref(), true);
}

/// Text that goes to stdout (tables) and into benchmark.log without a prefix.
pub fn block(text: &str) {
    if let Ok(mut s) = SINK.lock() {
        if let Some(f) = s.file.as_mut() {
            let _ = writeln!(f, "{text}");
        }
        match &s.bar {
            Some(b) if !b.is_hidden() => b.suspend(|| println!("{text}")),
            _ => println!("{text}"),
        }
    }
}
