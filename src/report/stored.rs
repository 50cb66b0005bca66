//! A stored invocation's results, recomputed from its rows.

use anyhow::Result;
use serde_json::Value;
use std::path::Path;

use super::run::RunResult;
use crate::scheduler::SweepPoint;
use crate::store::{evalscope_args, import_evalscope, is_evalscope_db, open_run, Stored};

/// Every step's summary and percentiles, recomputed from its rows with the goodput
/// bounds it was run with.
pub fn load_all(stored: &[Stored]) -> Result<Vec<RunResult>> {
    stored
        .iter()
        .map(|s| {
            let goodput = s
                .config
                .get("goodput")
                .and_then(|v| serde_json::from_value::<Vec<String>>(v.clone()).ok())
                .and_then(|g| crate::stats::Goodput::parse(&g).ok().flatten());
            load_run(&s.dir, s.point.clone(), goodput)
        })
        .collect()
}

/// A run's summary and percentiles, computed from its stored rows alone. The
/// database is perfscope's, or evalscope's own (`result` table only): then its rows
/// are read into memory (the file is never written) and the API comes from its
/// benchmark_args.json.
pub fn load_run(
    dir: &Path,
    point: SweepPoint,
    goodput: Option<crate::stats::Goodput>,
) -> Result<RunResult> {
    let db = dir.join("benchmark_data.db");
    let (conn, api, url) = if is_evalscope_db(&db)? {
        let args = evalscope_args(dir);
        let text = |k: &str| {
            args.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        (import_evalscope(&db)?, text("api"), text("url"))
    } else {
        open_run(&db)?
    };
    let encoder = crate::protocol::is_encoder_run(&api, &url);
    let summary = crate::stats::summary(
        &conn,
        &crate::stats::RunInputs {
            parallel: point.parallel,
            rate: point.rate,
            goodput,
            encoder,
        },
    )?;
    let columns = crate::stats::percentile_columns(&conn, encoder)?;
    Ok(RunResult {
        point,
        summary,
        columns,
        dir: dir.to_path_buf(),
        encoder,
    })
}
