//! The SQL the computations share: row filters, single values, sorted scans.

use anyhow::Result;
use rusqlite::{Connection, OptionalExtension};

use super::percentile::percentiles_of_sorted;

/// The WHERE clause selecting rows that count for TTFT/TPOT: successful streams,
/// or all successes when no stream succeeded.
pub(crate) fn ttft_filter(conn: &Connection) -> Result<&'static str> {
    let streams: i64 = conn.query_row(
        "SELECT COUNT(*) FROM result WHERE success=1 AND is_stream=1",
        [],
        |r| r.get(0),
    )?;
    Ok(if streams > 0 {
        "success=1 AND is_stream=1"
    } else {
        "success=1"
    })
}

/// Percentiles of one SQL expression (`SELECT <expr> AS v FROM ... WHERE ...`),
/// sorted by SQLite and streamed.
pub(crate) fn sql_percentiles(conn: &Connection, from_where: &str, expr: &str) -> Result<Vec<f64>> {
    let base = format!("SELECT {expr} AS v FROM {from_where}");
    let n: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM ({base}) WHERE v IS NOT NULL"),
        [],
        |r| r.get(0),
    )?;
    let mut st = conn.prepare(&format!(
        "SELECT v FROM ({base}) WHERE v IS NOT NULL ORDER BY v"
    ))?;
    let rows = st.query_map([], |r| r.get::<_, f64>(0))?;
    Ok(percentiles_of_sorted(
        n.max(0) as usize,
        rows.filter_map(|r| r.ok()),
    ))
}

/// Whether the `result` table has a column (databases of older versions, and
/// evalscope's own, lack our later additions).
pub fn has_column(conn: &Connection, name: &str) -> Result<bool> {
    table_has_column(conn, "result", name)
}

pub(crate) fn table_has_column(conn: &Connection, table: &str, name: &str) -> Result<bool> {
    let mut st = conn.prepare("SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2")?;
    Ok(st.exists([table, name])?)
}

pub(crate) fn one<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str) -> Result<Option<T>> {
    Ok(conn
        .query_row(sql, [], |r| r.get::<_, Option<T>>(0))
        .optional()?
        .flatten())
}
