//! The canonical store: one SQLite database per run (`benchmark_data.db`). This
//! module owns its schema, the writer and every read of stored runs: `stats` asks
//! `RunRows` for counts, aggregates and sorted values in the typed words of
//! `query` (fields, expressions, filters), and never sees SQL text or the
//! connection.

mod merge;
mod query;
mod read;
mod reserve;
mod rows;
mod schema;
mod server;
mod writer;

pub use merge::{merge_point, MergedRun};
pub use read::{
    evalscope_args, import_evalscope, is_evalscope_db, speed_rows, steps, SpeedRow, Stored,
};
pub use reserve::{Reserve, RESERVE_FILE};

/// The claim a running invocation holds on its output directory, removed when it
/// ends (the engine takes it; the run history reads it as "still running").
pub const LOCK_FILE: &str = ".perfscope-lock";
pub use query::{Agg, Build, Cmp, Expr, Field, Filter};
pub use rows::{RunRows, TurnRow};
pub use schema::{open, SCHEMA};
pub use server::{read_timeline, write_timeline, ServerSamples};
pub use writer::{
    RunMeta, StoreResponses, Stored as WriterStored, Writer, WriterOptions, BUSY_LIMIT,
};
