//! Rows of a local Parquet file: the layout ModelScope and Hugging Face serve
//! datasets in (`<subset>/<split>-00000-of-00001.parquet`), so a snapshot of a hub
//! dataset is read as downloaded. Only Snappy-compressed or uncompressed files are
//! read (what the hubs' own conversion writes); another codec is an error that
//! names the file.

use anyhow::{Context, Result};
use parquet::file::reader::SerializedFileReader;
use parquet::record::{Field, Row};
use std::path::{Path, PathBuf};

/// The rows of one file, read lazily (a 30-subject round robin holds 30 of these).
pub struct Rows {
    path: PathBuf,
    iter: parquet::record::reader::RowIter<'static>,
}

impl Rows {
    pub fn open(path: &Path) -> Result<Rows> {
        let f = std::fs::File::open(path)
            .with_context(|| format!("--dataset-path: cannot read {}", path.display()))?;
        let reader = SerializedFileReader::new(f)
            .with_context(|| format!("--dataset-path: {} is not a Parquet file", path.display()))?;
        Ok(Rows {
            path: path.to_path_buf(),
            iter: reader.into_iter(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The next row; a row that cannot be decoded is an error naming the file.
    pub fn next_row(&mut self) -> Result<Option<Row>> {
        match self.iter.next() {
            None => Ok(None),
            Some(r) => r
                .map(Some)
                .with_context(|| format!("--dataset-path: cannot decode {}", self.path.display())),
        }
    }
}

/// A row's column by name.
pub fn column<'a>(row: &'a Row, name: &str) -> Option<&'a Field> {
    row.get_column_iter()
        .find(|(k, _)| k.as_str() == name)
        .map(|(_, v)| v)
}

/// A string column (None when absent or null).
pub fn text<'a>(row: &'a Row, name: &str) -> Option<&'a str> {
    match column(row, name)? {
        Field::Str(s) => Some(s),
        _ => None,
    }
}

/// An image column as the hubs store one: a struct of `bytes` and `path`
/// (the `datasets` Image feature), or plain bytes. The bytes, or the path when
/// the bytes are null.
pub enum Image<'a> {
    Bytes(&'a [u8]),
    Path(&'a str),
}

pub fn image<'a>(row: &'a Row, name: &str) -> Option<Image<'a>> {
    match column(row, name)? {
        Field::Bytes(b) => Some(Image::Bytes(b.data())),
        Field::Group(g) => match (column(g, "bytes"), column(g, "path")) {
            (Some(Field::Bytes(b)), _) if !b.data().is_empty() => Some(Image::Bytes(b.data())),
            (_, Some(Field::Str(p))) if !p.is_empty() => Some(Image::Path(p)),
            _ => None,
        },
        _ => None,
    }
}

/// The `<split>-*.parquet` files of a directory, in name order (a split may be
/// sharded: `validation-00000-of-00002.parquet`, `validation-00001-of-00002…`).
pub fn split_files(dir: &Path, split: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension().is_some_and(|x| x == "parquet")
                && p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    n == format!("{split}.parquet") || n.starts_with(&format!("{split}-"))
                })
        })
        .collect();
    files.sort();
    files
}
