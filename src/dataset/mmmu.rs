//! `mmmu_multi_image`: multi-image requests from the MMMU validation split, read
//! from a local snapshot of the hub dataset (evalscope downloads
//! `AI-ModelScope/MMMU` / `MMMU/MMMU`; perfscope never downloads). The snapshot's
//! layout is one directory per subject holding `validation-*.parquet`.
//!
//! As in evalscope 1.14.1: the 30 subjects are read round-robin (one row from each
//! in turn, a finished subject dropped), a row with fewer than 2 of its
//! `image_1`…`image_7` is skipped, the prompt is the question plus
//! `\nOptions: <options>` unless the options are empty or `[]`, and every
//! `<image N>` placeholder becomes that image's content part in place, the text
//! between placeholders kept as text parts (blank ones dropped). A question
//! without placeholders is one text part followed by its images.
//!
//! Differs on purpose: evalscope re-encodes every image as JPEG (quality 75);
//! perfscope sends the stored bytes as they are (`image/png` or `image/jpeg` data
//! URLs), so the server decodes the dataset's own pixels.

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use super::parquet_rows::{self, Rows};
use super::prompt::Prompt;

/// evalscope's subject order.
pub const SUBJECTS: [&str; 30] = [
    "Accounting",
    "Agriculture",
    "Architecture_and_Engineering",
    "Art",
    "Art_Theory",
    "Basic_Medical_Science",
    "Biology",
    "Chemistry",
    "Clinical_Medicine",
    "Computer_Science",
    "Design",
    "Diagnostics_and_Laboratory_Medicine",
    "Economics",
    "Electronics",
    "Energy_and_Power",
    "Finance",
    "Geography",
    "History",
    "Literature",
    "Manage",
    "Marketing",
    "Materials",
    "Math",
    "Mechanical_Engineering",
    "Music",
    "Pharmacy",
    "Physics",
    "Psychology",
    "Public_Health",
    "Sociology",
];

const MAX_IMAGES: usize = 7;
const MIN_IMAGES: usize = 2;

pub(super) const HINT: &str =
    "download the MMMU dataset (ModelScope AI-ModelScope/MMMU or Hugging Face \
     MMMU/MMMU) and pass the directory that holds its subject folders \
     (Accounting/validation-00000-of-00001.parquet, …)";

/// One subject's validation rows, file after file.
struct Subject {
    files: VecDeque<PathBuf>,
    rows: Option<Rows>,
}

impl Subject {
    fn next(&mut self) -> Result<Option<parquet::record::Row>> {
        loop {
            if let Some(rows) = &mut self.rows {
                if let Some(r) = rows.next_row()? {
                    return Ok(Some(r));
                }
            }
            match self.files.pop_front() {
                Some(f) => self.rows = Some(Rows::open(&f)?),
                None => return Ok(None),
            }
        }
    }
}

pub fn load(cfg: &super::config::DatasetConfig, chat: bool, count: u64) -> Result<Vec<Prompt>> {
    let Some(path) = cfg.path.as_deref() else {
        bail!("--dataset mmmu_multi_image needs --dataset-path: {HINT}");
    };
    if !chat {
        bail!(
            "--dataset mmmu_multi_image sends images as chat message parts: use a chat URL \
             (…/v1/chat/completions) or --apply-chat-template"
        );
    }
    let root = Path::new(path);
    if !root.is_dir() {
        bail!("--dataset-path: `{path}` is not a directory; {HINT}");
    }
    let mut subjects: Vec<Subject> = SUBJECTS
        .iter()
        .map(|s| parquet_rows::split_files(&root.join(s), "validation"))
        .filter(|f| !f.is_empty())
        .map(|files| Subject {
            files: files.into(),
            rows: None,
        })
        .collect();
    if subjects.is_empty() {
        bail!("--dataset-path: {path} holds no <subject>/validation-*.parquet; {HINT}");
    }
    if subjects.len() < SUBJECTS.len() {
        tracing::warn!(
            "--dataset mmmu_multi_image: {} of the {} MMMU subjects found under {path}",
            subjects.len(),
            SUBJECTS.len()
        );
    }
    let mut out = Vec::new();
    while !subjects.is_empty() && (out.len() as u64) < count {
        let mut active = Vec::with_capacity(subjects.len());
        for mut s in subjects {
            if (out.len() as u64) >= count {
                break;
            }
            let Some(row) = s.next()? else { continue };
            let dir = s
                .rows
                .as_ref()
                .and_then(|r| r.path().parent().map(Path::to_path_buf))
                .unwrap_or_default();
            active.push(s);
            let images = images(&row, &dir)?;
            if images.len() < MIN_IMAGES {
                continue;
            }
            out.push(Prompt::Messages(json!([message(&prompt(&row), &images)])));
        }
        subjects = active;
    }
    Ok(out)
}

/// `image_1`…`image_7` that are present, as data URLs by their index.
fn images(row: &parquet::record::Row, dir: &Path) -> Result<Vec<(usize, String)>> {
    let mut out = Vec::new();
    for i in 1..=MAX_IMAGES {
        let bytes = match parquet_rows::image(row, &format!("image_{i}")) {
            None => continue,
            Some(parquet_rows::Image::Bytes(b)) => b.to_vec(),
            Some(parquet_rows::Image::Path(p)) => std::fs::read(dir.join(p))
                .with_context(|| format!("--dataset-path: image_{i} `{p}` cannot be read"))?,
        };
        out.push((i, data_url(&bytes)));
    }
    Ok(out)
}

fn data_url(bytes: &[u8]) -> String {
    let mime = if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else if bytes.starts_with(b"GIF8") {
        "image/gif"
    } else if bytes.starts_with(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        "image/webp"
    } else {
        "image/jpeg"
    };
    format!(
        "data:{mime};base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn prompt(row: &parquet::record::Row) -> String {
    let q = parquet_rows::text(row, "question").unwrap_or_default();
    match parquet_rows::text(row, "options") {
        Some(o) if !o.is_empty() && o != "[]" => format!("{q}\nOptions: {o}"),
        _ => q.to_string(),
    }
}

fn image_part(url: &str) -> Value {
    json!({"type": "image_url", "image_url": {"url": url}})
}

/// The user message: `<image N>` / `<image_N>` placeholders replaced in place.
fn message(prompt: &str, images: &[(usize, String)]) -> Value {
    let url = |n: usize| images.iter().find(|(i, _)| *i == n).map(|(_, u)| u);
    let mut content = Vec::new();
    let mut rest = prompt;
    let mut found = false;
    while let Some((start, n, len)) = next_placeholder(rest) {
        found = true;
        let text = &rest[..start];
        if !text.trim().is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        if let Some(u) = url(n) {
            content.push(image_part(u));
        }
        rest = &rest[start + len..];
    }
    if !rest.trim().is_empty() {
        content.push(json!({"type": "text", "text": rest}));
    }
    if !found || content.is_empty() {
        content = std::iter::once(json!({"type": "text", "text": prompt}))
            .chain(images.iter().map(|(_, u)| image_part(u)))
            .collect();
    }
    json!({"role": "user", "content": content})
}

/// The first `<image N>` or `<image_N>` in `s`: its byte offset, N and length
/// (evalscope's pattern `<image[_ ](\d+)>`).
fn next_placeholder(s: &str) -> Option<(usize, usize, usize)> {
    let mut from = 0;
    while let Some(i) = s[from..].find("<image") {
        let at = from + i;
        let tail = &s[at + 6..];
        if let Some(after) = tail.strip_prefix([' ', '_']) {
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            if digits > 0 && after[digits..].starts_with('>') {
                if let Ok(n) = after[..digits].parse() {
                    return Some((at, n, 6 + 1 + digits + 1));
                }
            }
        }
        from = at + 6;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_parts_in_place() {
        let imgs = vec![(1, "u1".to_string()), (3, "u3".to_string())];
        let m = message("A <image 1> b <image_3>< image 2><image 9>", &imgs);
        let parts: Vec<String> = m["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                p["text"]
                    .as_str()
                    .map(|t| format!("t:{t}"))
                    .unwrap_or_else(|| format!("i:{}", p["image_url"]["url"].as_str().unwrap()))
            })
            .collect();
        assert_eq!(parts, ["t:A ", "i:u1", "t: b ", "i:u3", "t:< image 2>"]);
        // No placeholder: the text, then every image.
        let m = message("plain", &imgs);
        assert_eq!(m["content"].as_array().unwrap().len(), 3);
        assert_eq!(m["content"][0]["text"], "plain");
        assert_eq!(next_placeholder("<image>"), None);
        assert_eq!(next_placeholder("x<image_12>"), Some((1, 12, 10)));
    }
}
