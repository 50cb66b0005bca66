//! The image + text datasets from a local copy (perfscope never downloads):
//! `flickr8k` (evalscope downloads `clip-benchmark/wds_flickr8k`, split `test`) and
//! `kontext_bench` (`black-forest-labs/kontext-bench`, split `test`). Accepted layouts:
//! - a directory of pairs `<key>.jpg`/`.png` + `<key>.txt` (flickr8k's extracted tar
//!   shards; for kontext_bench, one instruction per `.txt`);
//! - a JSONL file, one object per line, with the text in `txt`, `caption`, `text` or
//!   `instruction` and the image in `jpg`, `image` or `png` (base64, a data URL, or
//!   a path relative to the file).
//!
//! As in evalscope each request is one user message: the text and the image as a
//! base64 data URL. kontext_bench's missing instruction is "Describe the image".

use anyhow::{bail, Context, Result};
use base64::Engine;
use serde_json::{json, Value};
use std::path::Path;

use super::prompt::Prompt;

/// One image dataset: its name, where to get a copy, and the text of an item
/// without one (None: such an item is an error).
pub struct ImageSet {
    pub name: &'static str,
    pub hint: &'static str,
    pub default_text: Option<&'static str>,
}

pub const FLICKR8K: ImageSet = ImageSet {
    name: "flickr8k",
    hint: "download clip-benchmark/wds_flickr8k (Hugging Face), extract the test shards \
           (tar xf test/*.tar) and pass the directory",
    default_text: None,
};

pub const KONTEXT_BENCH: ImageSet = ImageSet {
    name: "kontext_bench",
    hint: "download black-forest-labs/kontext-bench (ModelScope or Hugging Face, split \
           test) and write its `instruction` and `image` (a file path or base64) as one JSON \
           object per line, or a directory of <key>.png + <key>.txt pairs",
    default_text: Some("Describe the image"),
};

fn mime(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(b"\x89PNG") {
        "image/png"
    } else {
        "image/jpeg"
    }
}

fn message(caption: &str, image: &[u8]) -> Prompt {
    let url = format!(
        "data:{};base64,{}",
        mime(image),
        base64::engine::general_purpose::STANDARD.encode(image)
    );
    Prompt::Messages(json!([{"role": "user", "content": [
        {"type": "text", "text": caption},
        {"type": "image_url", "image_url": {"url": url}}
    ]}]))
}

pub fn load(
    set: &ImageSet,
    cfg: &super::config::DatasetConfig,
    chat: bool,
    count: u64,
) -> Result<Vec<Prompt>> {
    let (name, hint) = (set.name, set.hint);
    let Some(path) = cfg.path.as_deref() else {
        bail!("--dataset {name} needs --dataset-path: {hint}");
    };
    if !chat {
        bail!(
            "--dataset {name} sends images as chat message parts: use a chat URL \
             (…/v1/chat/completions) or --apply-chat-template"
        );
    }
    let p = Path::new(path);
    if p.is_dir() {
        return from_dir(set, p, count);
    }
    if !p.is_file() {
        bail!("--dataset-path: `{path}` does not exist; {hint}");
    }
    from_jsonl(set, p, count)
}

fn from_dir(set: &ImageSet, dir: &Path, count: u64) -> Result<Vec<Prompt>> {
    let mut keys: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("--dataset-path: cannot list {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "jpg" || x == "jpeg" || x == "png")
        })
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for img in keys {
        if out.len() as u64 >= count {
            break;
        }
        let txt = img.with_extension("txt");
        let caption = match (std::fs::read_to_string(&txt), set.default_text) {
            (Ok(c), _) => c,
            (Err(_), Some(d)) => d.to_string(),
            (Err(_), None) => continue,
        };
        let bytes =
            std::fs::read(&img).with_context(|| format!("cannot read {}", img.display()))?;
        out.push(message(caption.trim(), &bytes));
    }
    if out.is_empty() {
        bail!(
            "--dataset-path: {} holds no <key>.jpg + <key>.txt pairs; {}",
            dir.display(),
            set.hint
        );
    }
    Ok(out)
}

fn from_jsonl(set: &ImageSet, file: &Path, count: u64) -> Result<Vec<Prompt>> {
    let text = super::prompt::read_dataset_text(&file.to_string_lossy(), "--dataset-path")?;
    let base = file.parent().unwrap_or(Path::new("."));
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if out.len() as u64 >= count {
            break;
        }
        let l = line.trim();
        if l.is_empty() {
            continue;
        }
        let at = format!("{}:{}", file.display(), i + 1);
        let v: Value =
            serde_json::from_str(l).with_context(|| format!("{at}: not a JSON object line"))?;
        let caption = ["txt", "caption", "text", "instruction"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .or(set.default_text)
            .with_context(|| format!("{at}: no caption (`txt` or `caption`)"))?;
        let img = ["jpg", "image", "png"]
            .iter()
            .find_map(|k| v.get(*k).and_then(Value::as_str))
            .with_context(|| format!("{at}: no image (`jpg` or `image`)"))?;
        let img = img
            .strip_prefix("data:")
            .map_or(img, |r| r.split_once(',').map_or(r, |(_, d)| d));
        let bytes = match b64.decode(img) {
            Ok(b) => b,
            Err(_) => std::fs::read(base.join(img)).with_context(|| {
                format!("{at}: the image is neither base64 nor a readable file `{img}`")
            })?,
        };
        out.push(message(caption.trim(), &bytes));
    }
    Ok(out)
}
