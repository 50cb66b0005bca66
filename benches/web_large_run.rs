//! How fast the web UI opens a large run: `cargo bench --bench web_large_run`.
//!
//! Writes a run with `perfscope perf` (stored request and response text, as by
//! default), then grows its step's `result` table to ROWS rows (1,000,000) by
//! copying its rows, and times what opening the run does: the history's scan, the
//! run's page (`/api/run`: figures and charts from its files) and the first page
//! of rows (`/api/rows`), then deeper and sorted pages. With COLD=1 the page cache
//! is dropped before each timing (needs root), as on a first open after a reboot.
//!
//! Environment: ROWS (1000000), COLD (0).

use std::process::{Command, Stdio};
use std::time::Instant;

use perfscope::web::{history, rows, run};

const BIN: &str = env!("CARGO_BIN_EXE_perfscope");

fn drop_caches(cold: bool) {
    if cold {
        let _ = Command::new("sync").status();
        let _ = std::fs::write("/proc/sys/vm/drop_caches", "3");
    }
}

fn timed<T>(cold: bool, what: &str, f: impl FnOnce() -> T) -> T {
    drop_caches(cold);
    let t = Instant::now();
    let v = f();
    println!("{what:<44} {:>9.1} ms", t.elapsed().as_secs_f64() * 1e3);
    v
}

fn main() -> anyhow::Result<()> {
    let want: u64 = std::env::var("ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cold = std::env::var("COLD").as_deref() == Ok("1");
    let tree = tempfile::tempdir()?;
    let st = Command::new(BIN)
        .args([
            "perf",
            "--api",
            "sim",
            "--parallel",
            "4",
            "--number",
            "200",
            "--name",
            "big",
            "--outputs-dir",
            tree.path().to_str().unwrap_or("."),
            "--no-timestamp",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()?;
    anyhow::ensure!(st.success(), "the seed run failed");
    let run_dir = tree.path().join("big");
    let step = history::steps_of(&run_dir)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no step"))?;
    let db = step.join("benchmark_data.db");
    let t = Instant::now();
    {
        let conn = rusqlite::Connection::open(&db)?;
        let have: i64 = conn.query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0))?;
        let have = have as u64;
        let copies = want.div_ceil(have.max(1));
        conn.execute_batch(&format!(
            "PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;
             CREATE TEMP TABLE seed AS SELECT * FROM result;
             WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {})
             INSERT INTO result SELECT seed.* FROM seed, n;
             DELETE FROM result WHERE rowid > {want};",
            copies - 1
        ))?;
    }
    let rows_now: i64 =
        rusqlite::Connection::open(&db)?
            .query_row("SELECT COUNT(*) FROM result", [], |r| r.get(0))?;
    println!(
        "{rows_now} rows, {:.0} MB database, {:.0} bytes/row (built in {:.0} s){}",
        std::fs::metadata(&db)?.len() as f64 / 1e6,
        std::fs::metadata(&db)?.len() as f64 / rows_now.max(1) as f64,
        t.elapsed().as_secs_f64(),
        if cold {
            "; page cache dropped before each timing"
        } else {
            ""
        }
    );
    let trees = vec![std::fs::canonicalize(tree.path())?];
    let list = timed(cold, "history (scan of the tree)", || history::scan(&trees));
    anyhow::ensure!(list.len() == 1, "one run listed");
    let detail = timed(cold, "the run's page (/api/run: figures, charts)", || {
        run::detail(&run_dir, list[0].id.clone())
    });
    anyhow::ensure!(detail["charts"].as_array().is_some_and(|c| !c.is_empty()));
    let q = |page: u64, sort: Option<&str>, filter: Option<&str>| rows::RowQuery {
        page,
        per_page: 50,
        sort: sort.map(str::to_string),
        descending: true,
        filter: filter.map(str::to_string),
        trace_id: None,
        after_rowid: None,
    };
    let first = timed(cold, "first page of rows (/api/rows)", || {
        rows::page(&step, &q(0, None, None))
    })?;
    anyhow::ensure!(first["rows"].as_array().is_some_and(|r| r.len() == 50));
    timed(cold, "page 10,000 of rows by OFFSET (row 500,000)", || {
        rows::page(&step, &q(10_000, None, None))
    })?;
    timed(cold, "the rows after row 500,000 (the page's Next)", || {
        rows::page(
            &step,
            &rows::RowQuery {
                after_rowid: Some(500_000),
                ..q(0, None, None)
            },
        )
    })?;
    timed(cold, "rows sorted by latency (whole table)", || {
        rows::page(&step, &q(0, Some("latency"), None))
    })?;
    timed(cold, "failed rows only (whole table)", || {
        rows::page(&step, &q(0, None, Some("failed")))
    })?;
    Ok(())
}
