//! `perfscope merge OUT DIR…`: the shards of a distributed run as one normal output
//! tree. Every shard keeps its raw rows, so the merge is exact: the merged figures
//! are recomputed from the union of the rows, as one run with those records would
//! report them.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

use crate::scheduler::SweepPoint;
use crate::store::{merge_point, MergedRun};
use crate::telemetry::log;

/// A shard's `shard.json`.
struct ShardFile {
    dir: PathBuf,
    run_id: String,
    index: u64,
    count: u64,
    host: String,
    offset: Option<f64>,
    uncertainty: Option<f64>,
    points: Vec<(String, SweepPoint)>,
    /// The flags every shard must share (shard-local ones removed).
    shared: Map<String, Value>,
    args: Map<String, Value>,
}

fn read_shard(dir: &Path) -> Result<ShardFile> {
    let p = dir.join("shard.json");
    let text = std::fs::read_to_string(&p).with_context(|| {
        format!(
            "{}: no shard.json; give the <outputs-dir>/<timestamp>/<name|model> directory of each shard of a run made with --shard-count",
            dir.display()
        )
    })?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", p.display()))?;
    let bad = |k: &str| anyhow::anyhow!("{}: `{k}` is missing or malformed", p.display());
    let num = |k: &str| v.get(k).and_then(Value::as_u64).ok_or_else(|| bad(k));
    let points = v
        .get("points")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("points"))?
        .iter()
        .map(|x| {
            Some((
                x.get("name")?.as_str()?.to_string(),
                SweepPoint {
                    parallel: x.get("parallel")?.as_i64()?,
                    number: x.get("number")?.as_u64()?,
                    rate: x.get("rate")?.as_f64()?,
                },
            ))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("points"))?;
    let args = v
        .get("args")
        .and_then(Value::as_object)
        .cloned()
        .ok_or_else(|| bad("args"))?;
    let mut shared = args.clone();
    for k in crate::scheduler::SHARD_LOCAL_KEYS {
        shared.shift_remove(*k);
    }
    // `--api sim`: each shard's own simulator listens on a free port, which its
    // outputs record; the address is the shard's, not the configuration's.
    if args.get("api").and_then(Value::as_str) == Some("sim") {
        shared.shift_remove("url");
        shared.shift_remove("port");
    }
    Ok(ShardFile {
        dir: dir.to_path_buf(),
        run_id: v
            .get("run_id")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("run_id"))?
            .to_string(),
        index: num("shard_index")?,
        count: num("shard_count")?,
        host: v
            .get("host")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        offset: v.get("clock_offset_s").and_then(Value::as_f64),
        uncertainty: v.get("clock_offset_uncertainty_s").and_then(Value::as_f64),
        points,
        shared,
        args,
    })
}

/// The first flag on which two shards differ.
fn first_difference(a: &Map<String, Value>, b: &Map<String, Value>) -> Option<String> {
    a.iter()
        .find(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, _)| k.clone())
        .or_else(|| b.keys().find(|k| !a.contains_key(*k)).cloned())
}

/// Checks that the directories are exactly the shards 0..N of one run, in any order.
fn check(shards: &mut [ShardFile]) -> Result<()> {
    shards.sort_by_key(|s| s.index);
    let first = &shards[0];
    for s in shards.iter() {
        if s.run_id != first.run_id {
            bail!(
                "{} belongs to run {} but {} to run {}; merge the shards of one run",
                s.dir.display(),
                s.run_id,
                first.dir.display(),
                first.run_id
            );
        }
        if s.count != first.count {
            bail!(
                "{} is one of {} shards but {} one of {}",
                s.dir.display(),
                s.count,
                first.dir.display(),
                first.count
            );
        }
        if let Some(k) = first_difference(&first.shared, &s.shared) {
            bail!(
                "{} and {} were run with different --{} ({} vs {}); only shards of one configuration can be merged",
                first.dir.display(),
                s.dir.display(),
                k.replace('_', "-"),
                first.shared.get(&k).unwrap_or(&Value::Null),
                s.shared.get(&k).unwrap_or(&Value::Null)
            );
        }
    }
    for w in shards.windows(2) {
        if w[0].index == w[1].index {
            bail!(
                "shard {} appears twice: {} and {}",
                w[0].index,
                w[0].dir.display(),
                w[1].dir.display()
            );
        }
    }
    let n = first.count;
    let missing: Vec<String> = (0..n)
        .filter(|i| !shards.iter().any(|s| s.index == *i))
        .map(|i| i.to_string())
        .collect();
    if !missing.is_empty() {
        bail!(
            "run {}: shard {} of 0..{} missing; give every shard's directory (a partial merge would not be the run's load)",
            first.run_id,
            missing.join(", "),
            n
        );
    }
    Ok(())
}

/// Merges the shards' directories into `tmp`, to be renamed to `out` (which must
/// be new or empty): the databases and merge.json (the reports are then
/// regenerated from them).
pub fn merge_tree(out: &Path, tmp: &Path, dirs: &[PathBuf]) -> Result<()> {
    if dirs.is_empty() {
        bail!("merge: give the output directory and every shard's run directory");
    }
    let mut shards = dirs
        .iter()
        .map(|d| read_shard(d))
        .collect::<Result<Vec<_>>>()?;
    check(&mut shards)?;
    if out.exists() && std::fs::read_dir(out)?.next().is_some() {
        bail!(
            "{}: not empty; give merge a new output directory",
            out.display()
        );
    }
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    std::fs::create_dir_all(tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    let out = tmp;
    let first = &shards[0];
    for (name, point) in &first.points {
        let mut dbs = Vec::new();
        for s in &shards {
            let db = s.dir.join(name).join("benchmark_data.db");
            if !db.is_file() {
                bail!(
                    "{}: shard {} has no run {name} (stopped early?); merge needs every shard's every point",
                    s.dir.display(),
                    s.index
                );
            }
            dbs.push((s.index, db));
        }
        std::fs::create_dir_all(out.join(name))?;
        let config = merged_args(&first.args, point);
        let m = MergedRun {
            run_id: first.run_id.clone(),
            point: point.clone(),
            config_json: Value::Object(config).to_string(),
        };
        let rows = merge_point(&out.join(name).join("benchmark_data.db"), &dbs, &m)?;
        log::info(format!("{name}: {rows} rows from {} shards", dbs.len()));
    }
    write_merge_file(out, &shards)
}

/// The merged run's benchmark_args.json: the shards' shared flags with the global
/// point, and the shard count kept (the index is no longer one shard's).
fn merged_args(args: &Map<String, Value>, p: &SweepPoint) -> Map<String, Value> {
    let mut m = args.clone();
    m.shift_remove("shard_index");
    m.insert("parallel".into(), p.parallel.into());
    m.insert("number".into(), p.number.into());
    m.insert("rate".into(), p.rate.into());
    m
}

/// `merge.json`: the shards merged, their hosts and clock offsets, and the offsets'
/// spread (how far apart the shards' clocks were).
fn write_merge_file(out: &Path, shards: &[ShardFile]) -> Result<()> {
    let offsets: Vec<f64> = shards.iter().filter_map(|s| s.offset).collect();
    let spread = (offsets.len() == shards.len() && !offsets.is_empty()).then(|| {
        offsets.iter().copied().fold(f64::MIN, f64::max)
            - offsets.iter().copied().fold(f64::MAX, f64::min)
    });
    match spread {
        Some(s) => log::info(format!(
            "Clock offsets of the {} shards spread over {:.1} ms",
            shards.len(),
            s * 1e3
        )),
        None => log::warn("Some shards measured no clock offset (--clock-ref off or unreachable): their clocks' agreement is unknown"),
    }
    let v = json!({
        "run_id": shards[0].run_id,
        "shard_count": shards[0].count,
        "clock_offset_spread_s": spread,
        "shards": shards.iter().map(|s| json!({
            "shard_index": s.index,
            "host": s.host,
            "dir": s.dir.display().to_string(),
            "clock_offset_s": s.offset,
            "clock_offset_uncertainty_s": s.uncertainty,
        })).collect::<Vec<_>>(),
    });
    let p = out.join("merge.json");
    std::fs::write(&p, serde_json::to_string_pretty(&v)? + "\n")
        .with_context(|| format!("cannot write {}", p.display()))
}
