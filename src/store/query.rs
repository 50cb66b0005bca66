//! The words `stats` asks the stored rows in: the fields of a request row,
//! expressions over them, and filters. `RunRows` renders them as SQL; no SQL text
//! crosses this module's boundary, so a figure's definition reads as what it
//! means (`Field::CompletionTokens.per(Field::Latency)`) and the column names, the
//! schema versions and NULL handling live in one place.

use std::ops;

/// A value of one request row (seconds, Unix seconds or token counts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Field {
    /// Send time on the run's clock.
    StartTime,
    /// When the last byte arrived (evalscope's `completed_time`).
    CompletedTime,
    /// When the request ended, failures included.
    EndTime,
    /// Send time, Unix seconds.
    StartUnix,
    /// End time, Unix seconds.
    EndUnix,
    /// When the schedule meant the request to be sent.
    IntendedStart,
    Latency,
    /// evalscope's TTFT: the first chunk carrying output.
    FirstChunkLatency,
    /// The first response event of any kind.
    TimeToFirstEvent,
    TimePerOutputToken,
    PromptTokens,
    CompletionTokens,
    /// Cached prompt tokens the server reported.
    CachedTokens,
    /// evalscope's multi-turn estimate of cached tokens (where the server reported
    /// none).
    CachedTokensEstimate,
    /// 1-based turn of a multi-turn conversation.
    Turn,
    /// 1 when the request was resent once after a closed keep-alive connection.
    Resent,
    /// evalscope 1.14's decode chunks: the stored count, else the gaps + 1
    /// (databases that do not store it, evalscope's own); 0 when the gap list is
    /// unreadable.
    DecodeChunks,
    /// One inter-token gap: an expression using it runs over every gap of every
    /// row instead of over the rows.
    Gap,
}

/// A number computed from a row; NULL (unknown) propagates as in SQL, and a
/// figure leaves unknown values out.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    Field(Field),
    Num(f64),
    Add(Box<Expr>, Box<Expr>),
    Sub(Box<Expr>, Box<Expr>),
    Mul(Box<Expr>, Box<Expr>),
    /// a / b as a real number, unknown unless b > 0 (evalscope's NaN for a zero
    /// latency, which its percentiles drop).
    Per(Box<Expr>, Box<Expr>),
    /// max(x, 0).
    NonNegative(Box<Expr>),
    /// The first where known, else the second.
    Or(Box<Expr>, Box<Expr>),
    /// The value where the filter holds, else unknown.
    OnlyWhere(Box<Filter>, Box<Expr>),
}

/// Which rows a count or a figure covers.
#[derive(Clone, Debug, PartialEq)]
pub enum Filter {
    All,
    Success,
    Failure,
    Stream,
    /// The expression is known (not NULL).
    Known(Expr),
    Cmp(Expr, Cmp, Expr),
    Not(Box<Filter>),
    And(Vec<Filter>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

/// The aggregates of `RunRows::aggregate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Agg {
    Sum,
    Avg,
    Min,
    Max,
}

impl From<Field> for Expr {
    fn from(f: Field) -> Expr {
        Expr::Field(f)
    }
}

impl From<f64> for Expr {
    fn from(x: f64) -> Expr {
        Expr::Num(x)
    }
}

impl From<i32> for Expr {
    fn from(x: i32) -> Expr {
        Expr::Num(x.into())
    }
}

/// Expression building, for fields and expressions alike.
pub trait Build: Into<Expr> {
    fn per(self, divisor: impl Into<Expr>) -> Expr {
        Expr::Per(Box::new(self.into()), Box::new(divisor.into()))
    }
    fn non_negative(self) -> Expr {
        Expr::NonNegative(Box::new(self.into()))
    }
    fn or(self, fallback: impl Into<Expr>) -> Expr {
        Expr::Or(Box::new(self.into()), Box::new(fallback.into()))
    }
    fn only_where(self, filter: Filter) -> Expr {
        Expr::OnlyWhere(Box::new(filter), Box::new(self.into()))
    }
    fn known(self) -> Filter {
        Filter::Known(self.into())
    }
    fn equals(self, x: impl Into<Expr>) -> Filter {
        Filter::Cmp(self.into(), Cmp::Eq, x.into())
    }
    fn below(self, x: impl Into<Expr>) -> Filter {
        Filter::Cmp(self.into(), Cmp::Lt, x.into())
    }
    fn at_most(self, x: impl Into<Expr>) -> Filter {
        Filter::Cmp(self.into(), Cmp::Le, x.into())
    }
    fn above(self, x: impl Into<Expr>) -> Filter {
        Filter::Cmp(self.into(), Cmp::Gt, x.into())
    }
    fn at_least(self, x: impl Into<Expr>) -> Filter {
        Filter::Cmp(self.into(), Cmp::Ge, x.into())
    }
}

impl Build for Field {}
impl Build for Expr {}

macro_rules! arithmetic {
    ($($t:ty),*) => {$(
        impl<R: Into<Expr>> ops::Add<R> for $t {
            type Output = Expr;
            fn add(self, r: R) -> Expr {
                Expr::Add(Box::new(self.into()), Box::new(r.into()))
            }
        }
        impl<R: Into<Expr>> ops::Sub<R> for $t {
            type Output = Expr;
            fn sub(self, r: R) -> Expr {
                Expr::Sub(Box::new(self.into()), Box::new(r.into()))
            }
        }
        impl<R: Into<Expr>> ops::Mul<R> for $t {
            type Output = Expr;
            fn mul(self, r: R) -> Expr {
                Expr::Mul(Box::new(self.into()), Box::new(r.into()))
            }
        }
    )*};
}
arithmetic!(Field, Expr);

impl Filter {
    /// Both filters hold.
    pub fn and(self, other: Filter) -> Filter {
        let mut all = match self {
            Filter::And(v) => v,
            Filter::All => Vec::new(),
            f => vec![f],
        };
        match other {
            Filter::And(v) => all.extend(v),
            Filter::All => {}
            f => all.push(f),
        }
        Filter::And(all)
    }
}

/// The filter does not hold.
impl ops::Not for Filter {
    type Output = Filter;
    fn not(self) -> Filter {
        Filter::Not(Box::new(self))
    }
}

/// What rendering needs to know of the stored table: which columns it has.
pub(super) trait Columns {
    fn has(&self, column: &str) -> bool;
}

impl Field {
    /// The column holding the field (None for the computed ones).
    fn column(self) -> Option<&'static str> {
        Some(match self {
            Field::StartTime => "start_time",
            Field::CompletedTime => "completed_time",
            Field::EndTime => "end_time",
            Field::StartUnix => "start_unix",
            Field::EndUnix => "end_unix",
            Field::IntendedStart => "intended_start",
            Field::Latency => "latency",
            Field::FirstChunkLatency => "first_chunk_latency",
            Field::TimeToFirstEvent => "time_to_first_event",
            Field::TimePerOutputToken => "time_per_output_token",
            Field::PromptTokens => "prompt_tokens",
            Field::CompletionTokens => "completion_tokens",
            Field::CachedTokens => "cached_tokens",
            Field::CachedTokensEstimate => "cached_tokens_estimate",
            Field::Turn => "turn",
            Field::Resent => "resent",
            Field::DecodeChunks | Field::Gap => return None,
        })
    }

    fn sql(self, cols: &dyn Columns) -> String {
        match (self, self.column()) {
            (Field::Gap, _) => "j.value".into(),
            (Field::DecodeChunks, _) => {
                let gaps = "json_array_length(inter_token_latencies) + 1";
                let chunks = if cols.has("decode_chunks") {
                    format!("COALESCE(NULLIF(decode_chunks, 0), {gaps})")
                } else {
                    gaps.to_string()
                };
                format!("(CASE WHEN json_valid(inter_token_latencies) THEN {chunks} ELSE 0 END)")
            }
            // A column an older database (or evalscope's) lacks is unknown in every row.
            (_, Some(c)) if cols.has(c) => c.to_string(),
            _ => "NULL".into(),
        }
    }
}

/// A number as an SQL literal; a non-finite one is unknown.
fn num(x: f64) -> String {
    if x.is_finite() {
        format!("{x:?}")
    } else {
        "NULL".into()
    }
}

impl Expr {
    pub(super) fn sql(&self, cols: &dyn Columns) -> String {
        let two = |a: &Expr, op: &str, b: &Expr| format!("({} {op} {})", a.sql(cols), b.sql(cols));
        match self {
            Expr::Field(f) => f.sql(cols),
            Expr::Num(x) => num(*x),
            Expr::Add(a, b) => two(a, "+", b),
            Expr::Sub(a, b) => two(a, "-", b),
            Expr::Mul(a, b) => two(a, "*", b),
            // NULL unless b > 0, with b written (and so evaluated) once: a divisor
            // such as `DecodeChunks` parses the row's gap list each time.
            Expr::Per(a, b) => format!(
                "(CAST({} AS REAL) / NULLIF(MAX({}, 0), 0))",
                a.sql(cols),
                b.sql(cols)
            ),
            Expr::NonNegative(x) => format!("MAX({}, 0)", x.sql(cols)),
            Expr::Or(a, b) => format!("COALESCE({}, {})", a.sql(cols), b.sql(cols)),
            Expr::OnlyWhere(f, x) => {
                format!("(CASE WHEN {} THEN {} END)", f.sql(cols), x.sql(cols))
            }
        }
    }

    /// Whether the expression runs over the inter-token gaps.
    pub(super) fn over_gaps(&self) -> bool {
        match self {
            Expr::Field(f) => *f == Field::Gap,
            Expr::Num(_) => false,
            Expr::Add(a, b) | Expr::Sub(a, b) | Expr::Mul(a, b) | Expr::Per(a, b) => {
                a.over_gaps() || b.over_gaps()
            }
            Expr::Or(a, b) => a.over_gaps() || b.over_gaps(),
            Expr::NonNegative(x) => x.over_gaps(),
            Expr::OnlyWhere(f, x) => f.over_gaps() || x.over_gaps(),
        }
    }
}

impl Filter {
    pub(super) fn sql(&self, cols: &dyn Columns) -> String {
        match self {
            Filter::All => "1".into(),
            Filter::Success => "success = 1".into(),
            Filter::Failure => "success = 0".into(),
            Filter::Stream => "is_stream = 1".into(),
            Filter::Known(x) => format!("{} IS NOT NULL", x.sql(cols)),
            Filter::Cmp(a, op, b) => {
                let op = match op {
                    Cmp::Eq => "=",
                    Cmp::Lt => "<",
                    Cmp::Le => "<=",
                    Cmp::Gt => ">",
                    Cmp::Ge => ">=",
                };
                format!("{} {op} {}", a.sql(cols), b.sql(cols))
            }
            Filter::Not(f) => format!("NOT ({})", f.sql(cols)),
            Filter::And(v) if v.is_empty() => "1".into(),
            Filter::And(v) => v
                .iter()
                .map(|f| format!("({})", f.sql(cols)))
                .collect::<Vec<_>>()
                .join(" AND "),
        }
    }

    pub(super) fn over_gaps(&self) -> bool {
        match self {
            Filter::All | Filter::Success | Filter::Failure | Filter::Stream => false,
            Filter::Known(x) => x.over_gaps(),
            Filter::Cmp(a, _, b) => a.over_gaps() || b.over_gaps(),
            Filter::Not(f) => f.over_gaps(),
            Filter::And(v) => v.iter().any(Filter::over_gaps),
        }
    }
}

impl Agg {
    pub(super) fn sql(self) -> &'static str {
        match self {
            Agg::Sum => "SUM",
            Agg::Avg => "AVG",
            Agg::Min => "MIN",
            Agg::Max => "MAX",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::RunRows;
    use super::*;
    use rusqlite::{params, Connection};
    use Field::*;

    /// Rows: (success, stream, latency, prompt, completion, tpot, itl, decode_chunks,
    /// failure_kind).
    type Row = (
        i64,
        i64,
        f64,
        Option<i64>,
        Option<i64>,
        Option<f64>,
        Option<&'static str>,
        Option<i64>,
        Option<&'static str>,
    );

    fn rows(schema: &str, rows: &[Row]) -> RunRows {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(schema).unwrap();
        for r in rows {
            conn.execute(
                "INSERT INTO result(success, is_stream, latency, prompt_tokens, completion_tokens,
                                    time_per_output_token, inter_token_latencies, start_time)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 1.0)",
                params![r.0, r.1, r.2, r.3, r.4, r.5, r.6],
            )
            .unwrap();
            let id = conn.last_insert_rowid();
            let set = |col: &str, v: &dyn rusqlite::ToSql| {
                // Only where the table has the column (the old-schema test lacks some).
                let _ = conn.execute(
                    &format!("UPDATE result SET {col} = ?1 WHERE rowid = ?2"),
                    params![v, id],
                );
            };
            set("decode_chunks", &r.7);
            set("failure_kind", &r.8);
        }
        RunRows::from_connection(conn)
    }

    fn sample() -> RunRows {
        rows(
            super::super::SCHEMA,
            &[
                (
                    1,
                    1,
                    2.0,
                    Some(10),
                    Some(9),
                    Some(0.25),
                    Some("[0.1, 0.3]"),
                    Some(3),
                    None,
                ),
                (
                    1,
                    1,
                    0.0,
                    Some(4),
                    Some(1),
                    Some(0.0),
                    Some("[]"),
                    Some(0),
                    None,
                ),
                (1, 0, 1.0, None, Some(5), None, None, None, None),
                (0, 1, 0.5, Some(7), None, None, None, None, Some("http")),
                (0, 1, 0.5, Some(7), None, None, None, None, None),
            ],
        )
    }

    fn values(rows: &RunRows, e: impl Into<Expr>, f: &Filter) -> Vec<f64> {
        rows.sorted(e, f, |n, v| {
            let out: Vec<f64> = v.collect();
            assert_eq!(out.len(), n);
            out
        })
        .unwrap()
    }

    #[test]
    fn expressions_mean_what_they_say() {
        let r = sample();
        let ok = Filter::Success;
        // A rate is unknown where its divisor is not positive (evalscope's NaN).
        assert_eq!(
            values(&r, CompletionTokens.per(Latency), &ok),
            vec![4.5, 5.0]
        );
        // Unknown propagates: the third row has no prompt count.
        assert_eq!(
            values(&r, PromptTokens + CompletionTokens, &ok),
            vec![5.0, 19.0]
        );
        assert_eq!(
            values(&r, (Latency - 1.5).non_negative(), &Filter::All),
            vec![0.0, 0.0, 0.0, 0.0, 0.5]
        );
        assert_eq!(
            values(&r, TimePerOutputToken.or(-1) * 2, &ok),
            vec![-2.0, 0.0, 0.5]
        );
        let no_zero_stream_tpot =
            TimePerOutputToken.only_where(!Filter::Stream.and(TimePerOutputToken.at_most(0)));
        assert_eq!(values(&r, no_zero_stream_tpot, &ok), vec![0.25]);
        // The gaps of every row: an expression naming them runs over each gap.
        assert_eq!(values(&r, Gap * 1000.0, &ok), vec![100.0, 300.0]);
        assert_eq!(r.aggregate(Agg::Avg, Gap, &ok).unwrap(), Some(0.2));
        assert_eq!(r.count(&ok.clone().and(Gap.above(0.2))).unwrap(), 1);
        // Decode chunks: stored, else the gaps + 1 (a stored 0 counts as not stored);
        // 0 without a readable gap list.
        assert_eq!(values(&r, DecodeChunks, &ok), vec![0.0, 1.0, 3.0]);
        let l = (CompletionTokens - 1).per(DecodeChunks - 1);
        assert_eq!(r.aggregate(Agg::Avg, l, &ok).unwrap(), Some(4.0));
    }

    #[test]
    fn filters_select_what_they_say() {
        let r = sample();
        assert_eq!(r.count(&Filter::All).unwrap(), 5);
        assert_eq!(r.count(&Filter::Success).unwrap(), 3);
        assert_eq!(r.count(&Filter::Failure).unwrap(), 2);
        assert_eq!(r.count(&Filter::Stream).unwrap(), 4);
        assert_eq!(r.count(&Filter::Success.and(Filter::Stream)).unwrap(), 2);
        assert_eq!(r.count(&!Filter::Stream).unwrap(), 1);
        assert_eq!(r.count(&PromptTokens.known()).unwrap(), 4);
        assert_eq!(r.count(&Latency.equals(0.5)).unwrap(), 2);
        assert_eq!(r.count(&Latency.below(1)).unwrap(), 3);
        assert_eq!(r.count(&Latency.at_most(1)).unwrap(), 4);
        assert_eq!(r.count(&Latency.at_least(1)).unwrap(), 2);
        assert_eq!(r.count(&Latency.above(1)).unwrap(), 1);
        // `All` is the identity of `and`, and nested conjunctions flatten.
        assert_eq!(
            Filter::All.and(Filter::Success),
            Filter::And(vec![Filter::Success])
        );
        assert_eq!(
            Filter::Success
                .and(Filter::Stream)
                .and(Filter::All.and(Filter::Failure)),
            Filter::And(vec![Filter::Success, Filter::Stream, Filter::Failure])
        );
        assert_eq!(r.count(&Filter::And(Vec::new())).unwrap(), 5);
        // A non-finite bound is unknown, so no row meets it.
        assert_eq!(r.count(&Latency.at_most(f64::NAN)).unwrap(), 0);
        assert_eq!(r.count(&Latency.above(1e-7)).unwrap(), 4);
        let kinds = r.failure_kinds().unwrap();
        assert_eq!(kinds, vec![(None, 1), (Some("http".to_string()), 1)]);
    }

    #[test]
    fn a_column_the_database_lacks_is_unknown() {
        // An older database: no turn, no decode chunks, no resends.
        let old = super::super::SCHEMA
            .replace("  decode_chunks INTEGER,\n", "")
            .replace("  resent INTEGER,\n", "")
            .replace("  turn INTEGER,\n", "");
        let r = rows(
            &old,
            &[(
                1,
                1,
                2.0,
                Some(10),
                Some(9),
                Some(0.25),
                Some("[0.1, 0.3]"),
                None,
                None,
            )],
        );
        assert_eq!(r.count(&Turn.known()).unwrap(), 0);
        assert_eq!(r.aggregate(Agg::Sum, Resent, &Filter::All).unwrap(), None);
        assert_eq!(values(&r, DecodeChunks, &Filter::All), vec![3.0]);
    }
}
