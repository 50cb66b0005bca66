//! A step's request rows, a page at a time, in SQL over the `result` table
//! (perfscope's or evalscope's): in stored order by rowid after the last row of the
//! page before (a b-tree seek), sorted by a whitelisted column with `LIMIT`/`OFFSET`,
//! and
//! filtered by outcome, failure kind or trace id. Only the shown columns are read;
//! the stored request and response text (which can make rows kilobytes long) is
//! never selected (evalscope's is a pickle, never read).

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::Path;

/// Most rows a page holds.
pub const MAX_PER_PAGE: u64 = 500;

/// The columns a page shows, in order. A column an older or foreign database lacks
/// reads as null.
const SHOWN: &[&str] = &[
    "seq",
    "start_time",
    "success",
    "http_status",
    "failure_kind",
    "error",
    "latency",
    "first_chunk_latency",
    "time_per_output_token",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "trace_id",
    "session_id",
    "turn",
];

/// What a page can be sorted by (a whitelist: the name goes into SQL).
const SORTABLE: &[&str] = &[
    "start_time",
    "latency",
    "first_chunk_latency",
    "time_per_output_token",
    "prompt_tokens",
    "completion_tokens",
    "http_status",
];

/// Which page of which rows.
#[derive(Clone, Debug, Default)]
pub struct RowQuery {
    pub page: u64,
    pub per_page: u64,
    /// A SORTABLE column (None: in the order they were stored).
    pub sort: Option<String>,
    pub descending: bool,
    /// `ok`, `failed`, or a failure kind (`timeout`, `http_5xx`, …).
    pub filter: Option<String>,
    pub trace_id: Option<String>,
    /// In stored order: the rows after this rowid (the last of the page before),
    /// found through the table's b-tree rather than by skipping `page` pages.
    pub after_rowid: Option<i64>,
}

/// One page: `{rows: [{column: value…}], more: bool, page, per_page}`.
pub fn page(step: &Path, q: &RowQuery) -> Result<Value> {
    let db = step.join("benchmark_data.db");
    if !db.is_file() {
        bail!("{}: no benchmark_data.db in this step", step.display());
    }
    let conn = rusqlite::Connection::open_with_flags(
        &db,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .with_context(|| format!("cannot open {}", db.display()))?;
    let have =
        columns(&conn).with_context(|| format!("{}: not a results database", db.display()))?;
    if !have.iter().any(|c| c == "success") {
        bail!(
            "{}: its `result` table has no `success` column; not a perfscope or evalscope database",
            db.display()
        );
    }
    let has = |c: &str| have.iter().any(|h| h == c);
    let select: Vec<String> = SHOWN
        .iter()
        .map(|&c| match c {
            _ if has(c) => c.to_string(),
            _ => format!("NULL AS {c}"),
        })
        .collect();
    let mut sql = format!("SELECT rowid, {} FROM result", select.join(", "));
    let mut params: Vec<rusqlite::types::Value> = Vec::new();
    let mut wheres: Vec<&str> = Vec::new();
    match q.filter.as_deref() {
        None | Some("") | Some("all") => {}
        Some("ok") => wheres.push("success = 1"),
        Some("failed") => wheres.push("success = 0"),
        Some(kind) if has("failure_kind") => {
            wheres.push("failure_kind = ?");
            params.push(kind.to_string().into());
        }
        // evalscope records no kinds: every failure is of an unknown kind.
        Some(_) => wheres.push("0"),
    }
    if let Some(t) = q.trace_id.as_deref().filter(|t| !t.is_empty()) {
        if has("trace_id") {
            wheres.push("trace_id = ?");
            params.push(t.to_string().into());
        } else {
            wheres.push("0");
        }
    }
    let sorted = matches!(q.sort.as_deref(), Some(s) if !s.is_empty() && s != "rowid");
    let keyset = q.after_rowid.filter(|_| !sorted);
    if let Some(after) = keyset {
        wheres.push(if q.descending {
            "rowid < ?"
        } else {
            "rowid > ?"
        });
        params.push(after.into());
    }
    if !wheres.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&wheres.join(" AND "));
    }
    match q.sort.as_deref() {
        Some(s) if SORTABLE.contains(&s) && has(s) => {
            let dir = if q.descending { "DESC" } else { "ASC" };
            sql.push_str(&format!(" ORDER BY {s} IS NULL, {s} {dir}, rowid"));
        }
        Some(s) if !s.is_empty() && s != "rowid" => {
            bail!(
                "sort: {s:?} is not a sortable column; use one of {}",
                SORTABLE.join(", ")
            )
        }
        _ => sql.push_str(if q.descending {
            " ORDER BY rowid DESC"
        } else {
            " ORDER BY rowid"
        }),
    }
    let per = q.per_page.clamp(1, MAX_PER_PAGE);
    // One more than a page: whether there is a next one, without counting the table.
    // OFFSET walks every row before the page, which on a cold multi-gigabyte table
    // takes seconds; the keyset form does not.
    let offset = if keyset.is_some() {
        0
    } else {
        q.page.saturating_mul(per)
    };
    sql.push_str(&format!(" LIMIT {} OFFSET {offset}", per + 1));
    let mut st = conn.prepare(&sql)?;
    let mut rows = Vec::new();
    let mut it = st.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(r) = it.next()? {
        let mut m = Map::new();
        for (i, name) in std::iter::once(&"rowid").chain(SHOWN).enumerate() {
            m.insert((*name).to_string(), cell(r.get_ref(i)?));
        }
        rows.push(Value::Object(m));
    }
    let more = rows.len() as u64 > per;
    rows.truncate(per as usize);
    Ok(serde_json::json!({"rows": rows, "more": more, "page": q.page, "per_page": per}))
}

/// The `result` table's column names (an error when there is no such table).
fn columns(conn: &rusqlite::Connection) -> Result<Vec<String>> {
    let mut st = conn.prepare("SELECT name FROM pragma_table_info('result')")?;
    let names: Vec<String> = st
        .query_map([], |r| r.get(0))?
        .collect::<std::result::Result<_, _>>()?;
    if names.is_empty() {
        bail!("no `result` table");
    }
    Ok(names)
}

fn cell(v: rusqlite::types::ValueRef<'_>) -> Value {
    use rusqlite::types::ValueRef;
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::from(i),
        ValueRef::Real(f) => serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number),
        ValueRef::Text(t) => Value::String(String::from_utf8_lossy(t).into_owned()),
        ValueRef::Blob(b) => Value::String(format!("<{} bytes>", b.len())),
    }
}
