//! `openqa`: open-ended questions. evalscope downloads HC3-Chinese's `open_qa.jsonl`
//! from ModelScope (`AI-ModelScope/HC3-Chinese`); perfscope never downloads. Point
//! `--dataset-path` at a local copy of that file (any JSONL with a `question` field),
//! or run with the small bundled English set below, written for this project.

use anyhow::{bail, Context, Result};

const BUNDLED: &str = include_str!("openqa_questions.txt");

pub fn bundled() -> Vec<String> {
    BUNDLED
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Reads the `question` field of every JSONL line (evalscope: `item['question'].strip()`).
pub fn read_jsonl(path: &str) -> Result<Vec<String>> {
    // A path that cannot be opened: where to get the file, or to drop the flag.
    if std::fs::metadata(path).is_err() {
        anyhow::bail!(
            "--dataset-path: cannot read `{path}`; give a local copy of HC3-Chinese's open_qa.jsonl \
             (or any JSONL with a \"question\" field), or omit --dataset-path to use the bundled questions"
        );
    }
    let text = super::prompt::read_dataset_text(path, "--dataset-path")?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(l)
            .with_context(|| format!("{path}:{}: not a JSON object line", i + 1))?;
        match v.get("question").and_then(|q| q.as_str()) {
            Some(q) if !q.trim().is_empty() => out.push(q.trim().to_string()),
            Some(_) => {}
            None => bail!("{path}:{}: no string field \"question\"", i + 1),
        }
    }
    Ok(out)
}
