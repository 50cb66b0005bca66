//! The canonical store: one SQLite database per run (`benchmark_data.db`). This
//! module owns its schema, the writer and the reads of stored runs; `stats` computes
//! the summary and percentiles over the connection it opens.

mod read;
mod schema;
mod writer;

pub use read::{
    evalscope_args, import_evalscope, is_evalscope_db, open_run, speed_rows, steps, SpeedRow,
    Stored,
};
pub use schema::{open, SCHEMA};
pub use writer::{RunMeta, Writer};
