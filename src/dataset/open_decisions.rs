//! `open_decisions`: the OpenDecisions benchmark (test split) as complete System One
//! request bodies, for `--api systemone`. evalscope 1.14.1 downloads
//! `evalscope/OpenDecisions`; perfscope reads a local copy: a JSONL file (one record
//! per line), a JSON list, a Parquet file, or a directory holding the `test` split in
//! any of these (`test.jsonl`, `test-00000-of-00001.parquet`, also under `data/`).
//!
//! As evalscope: each record's `question` loses its null fields and the body is
//! `{"state": <state>, "questions": {"answer": <question>}}`; `--api systemone`
//! adds `model`. Gold answers and provenance never enter a request.

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use std::path::{Path, PathBuf};

use super::prompt::Prompt;

pub(super) const HINT: &str = "download evalscope/OpenDecisions (ModelScope; also Hugging Face \
     jgeuter/OpenDecisions), split test, and pass its file or directory";

pub fn load(cfg: &super::config::DatasetConfig, count: u64) -> Result<Vec<Prompt>> {
    let Some(path) = cfg.path.as_deref() else {
        bail!("--dataset open_decisions needs --dataset-path: {HINT}");
    };
    let p = Path::new(path);
    let files = if p.is_dir() {
        test_files(p)
    } else if p.is_file() {
        vec![p.to_path_buf()]
    } else {
        bail!("--dataset-path: `{path}` does not exist; {HINT}");
    };
    if files.is_empty() {
        bail!("--dataset-path: {path} holds no test split (test.jsonl, test-*.parquet); {HINT}");
    }
    let mut out = Vec::new();
    for f in files {
        for (at, record) in records(&f)? {
            if out.len() as u64 >= count {
                return Ok(out);
            }
            out.push(Prompt::Body(body(&record).with_context(|| at.clone())?));
        }
    }
    Ok(out)
}

/// The test split's files of a snapshot directory, in name order.
fn test_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = [dir.to_path_buf(), dir.join("data"), dir.join("default")]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            name.starts_with("test") && matches!(ext, "jsonl" | "json" | "parquet")
        })
        .collect();
    files.sort();
    files
}

/// The records of one file with where each came from (`file:line` or `file#row`).
fn records(file: &Path) -> Result<Vec<(String, Value)>> {
    let shown = file.display().to_string();
    if file.extension().is_some_and(|x| x == "parquet") {
        let mut rows = super::parquet_rows::Rows::open(file)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next_row()? {
            let mut v = row.to_json_value();
            // A nested column a converter stored as JSON text.
            if let Some(q) = v.get("question").and_then(Value::as_str) {
                if let Ok(parsed) = serde_json::from_str::<Value>(q) {
                    v["question"] = parsed;
                }
            }
            out.push((format!("{shown}#{}", out.len() + 1), v));
        }
        return Ok(out);
    }
    let text = super::prompt::read_dataset_text(&file.to_string_lossy(), "--dataset-path")?;
    if text.trim_start().starts_with('[') {
        let list: Vec<Value> = serde_json::from_str(&text)
            .with_context(|| format!("{shown}: not a JSON list of records"))?;
        return Ok(list
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("{shown}#{}", i + 1), v))
            .collect());
    }
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let at = format!("{shown}:{}", i + 1);
        let v: Value =
            serde_json::from_str(l).with_context(|| format!("{at}: not a JSON object line"))?;
        out.push((at, v));
    }
    Ok(out)
}

/// The System One body of one record (no `model`: the API adds it).
fn body(record: &Value) -> Result<Map<String, Value>> {
    let Some(state) = record.get("state") else {
        bail!("the record has no `state`");
    };
    let Some(question) = record.get("question").and_then(Value::as_object) else {
        bail!("the record has no `question` object");
    };
    let question: Map<String, Value> = question
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut questions = Map::new();
    questions.insert("answer".into(), Value::Object(question));
    let mut body = Map::new();
    body.insert("state".into(), state.clone());
    body.insert("questions".into(), Value::Object(questions));
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_become_system_one_bodies() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("test.jsonl");
        std::fs::write(
            &f,
            r#"{"state": "s1", "question": {"type": "noul", "instructions": "Is it?", "criteria": null}, "expected": 0.9}
{"state": {"k": 1}, "question": {"type": "score", "instructions": "Rate", "criteria": ["bad", "ok", "good"]}}
"#,
        )
        .unwrap();
        let mut c = crate::dataset::test_config(crate::dataset::DatasetKind::OpenDecisions);
        c.path = Some(dir.path().to_string_lossy().into_owned());
        let out = load(&c, 10).unwrap();
        assert_eq!(
            out[0],
            Prompt::Body(
                json!({"state": "s1", "questions": {"answer": {"type": "noul", "instructions": "Is it?"}}})
                    .as_object()
                    .unwrap()
                    .clone()
            )
        );
        let Prompt::Body(b) = &out[1] else { panic!() };
        assert_eq!(b["state"], json!({"k": 1}));
        assert_eq!(load(&c, 1).unwrap().len(), 1);
        std::fs::write(&f, "{\"question\": {}}\n").unwrap();
        let e = format!("{:#}", load(&c, 10).unwrap_err());
        assert!(e.contains("test.jsonl:1") && e.contains("state"), "{e}");
    }
}
