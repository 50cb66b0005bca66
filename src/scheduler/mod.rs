//! Load shapes: *when* each request should start. Pure and seeded, so they can be
//! tested without a network.
//!
//! With `--rate`, arrival offsets follow a Poisson process laid out in absolute time
//! (evalscope #1367, fixing the drift of #1366): exponential gaps are summed, then
//! rescaled so the last arrival is exactly at `n / rate`. The dispatcher sleeps until
//! each absolute offset; falling behind never shifts later arrivals, so the realised
//! rate cannot drift.

pub mod point;
pub mod poisson;
pub mod shape;
pub mod shard;

pub use point::{py_float, SweepPoint};
pub use poisson::poisson_schedule;
pub use shape::{LoadShape, Release};
pub use shard::{Shard, SHARD_LOCAL_KEYS};
