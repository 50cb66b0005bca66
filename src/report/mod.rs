//! Reports computed from stored rows: evalscope's JSON files, the per-run console
//! tables and the multi-run summary written to performance_summary.txt.

mod charts;
mod console;
pub mod html;
mod json;
mod merge;
mod run;
pub mod stored;
pub mod table;

use anyhow::{Context, Result};
use serde_json::Value;
use std::path::Path;

use crate::telemetry::log;

pub use console::{multi_run_summary, percentile_table, run_notes, speed_benchmark, summary_table};
pub use json::{parse_py_json, percentile_json, to_py_json, write_run_files};
pub use run::{endpoint, recommendations, sweep_order, Header, RunResult};
pub use stored::load_run;

/// The report's charts (sweep, percentile curves, each step over time) as SVG
/// elements, for a viewer that has the steps' figures.
pub fn charts_svg(runs: &[RunResult]) -> Vec<String> {
    charts::charts(&sweep_order(runs))
}

/// `perfscope merge OUT DIR…`: the shards' databases merged into OUT, then every
/// report written from them as for one run.
pub fn merge(out: &Path, dirs: &[std::path::PathBuf]) -> Result<()> {
    // Built beside OUT and renamed into place: a merge that fails or is stopped
    // leaves no partial OUT to block the next attempt.
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "merged".into());
    let tmp = out.with_file_name(format!(".{name}.merging-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    if let Err(e) = merge::merge_tree(out, &tmp, dirs) {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if let Err(e) = std::fs::rename(&tmp, out) {
        let _ = std::fs::remove_dir_all(&tmp);
        anyhow::bail!("cannot move the merged run into {}: {e}", out.display());
    }
    regenerate(out)
}

/// Writes `perf_report.html` for an invocation.
pub fn write_html(runs: &[RunResult], root: &Path, h: &Header) -> Result<()> {
    write_html_as(runs, root, "perf_report.html", h)
}

fn write_html_as(runs: &[RunResult], root: &Path, file: &str, h: &Header) -> Result<()> {
    let meta = html::Meta {
        header: h,
        generated: chrono::Local::now().format("%Y-%m-%d %H:%M:%S").to_string(),
        output_path: root.display().to_string(),
    };
    let p = root.join(file);
    std::fs::write(&p, html::render(runs, &meta))
        .with_context(|| format!("cannot write {}", p.display()))
}

/// `perfscope report DIR`: every output file of an invocation (each step's three
/// JSON files, performance_summary.txt and perf_report.html) from its SQLite
/// databases alone. For an evalscope output directory, perfscope's summary and HTML
/// report are written beside evalscope's files (`perfscope_summary.txt`,
/// `perfscope_report.html`), which stay as they are.
pub fn regenerate(dir: &Path) -> Result<()> {
    let stored = crate::store::steps(dir)?;
    let runs = stored::load_all(&stored)?;
    // An evalscope output directory keeps its own files: perfscope's go beside them.
    let evalscope = stored.iter().any(|s| s.evalscope);
    if !evalscope {
        for (s, r) in stored.iter().zip(&runs) {
            write_run_files(r, &s.config)?;
            let dataset = s
                .config
                .get("dataset")
                .and_then(Value::as_str)
                .unwrap_or("");
            if dataset.starts_with("speed_benchmark") {
                speed_benchmark(&s.dir)?;
            }
        }
    }
    let cfg = &stored[0].config;
    // The model id as the run showed it: the directory name (--name or the model's
    // basename).
    let model_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| {
            cfg.get("model")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        });
    let header = Header::from_args(model_id, cfg);
    for note in run_notes(&runs) {
        log::warn(note);
    }
    let summary = multi_run_summary(&runs, &header, dir);
    let (summary_name, html_name) = if evalscope {
        ("perfscope_summary.txt", "perfscope_report.html")
    } else {
        ("performance_summary.txt", "perf_report.html")
    };
    let p = dir.join(summary_name);
    std::fs::write(&p, format!("{summary}\n"))
        .with_context(|| format!("cannot write {}", p.display()))?;
    write_html_as(&runs, dir, html_name, &header)?;
    log::info(format!(
        "Regenerated {} runs' {}{summary_name} and {html_name} in {}",
        runs.len(),
        if evalscope {
            "reports (evalscope's files untouched): "
        } else {
            "files, "
        },
        dir.display()
    ));
    Ok(())
}
