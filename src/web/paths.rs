//! Run ids in URLs (`<tree index>/<relative path>`) resolved to directories that
//! cannot escape the given output trees: only plain path components are accepted,
//! and the resolved directory (symbolic links followed) must lie inside its tree.

use std::path::{Component, Path, PathBuf};

/// The directory an id names, inside one of `trees` (canonical paths); None for an
/// id that is malformed, escapes its tree or names nothing.
pub fn resolve(trees: &[PathBuf], id: &str) -> Option<PathBuf> {
    let (index, rel) = id.split_once('/').unwrap_or((id, ""));
    let root = trees.get(index.parse::<usize>().ok()?)?;
    let rel = Path::new(rel);
    if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    let dir = std::fs::canonicalize(root.join(rel)).ok()?;
    (dir.starts_with(root) && dir.is_dir()).then_some(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_their_tree() {
        let base = tempfile::tempdir().unwrap();
        let tree = base.path().join("outputs");
        std::fs::create_dir_all(tree.join("20260101_000000/m/parallel_1_number_1")).unwrap();
        std::fs::create_dir_all(base.path().join("secret")).unwrap();
        std::os::unix::fs::symlink(base.path().join("secret"), tree.join("link")).unwrap();
        let trees = vec![std::fs::canonicalize(&tree).unwrap()];
        assert!(resolve(&trees, "0/20260101_000000/m").is_some());
        assert!(resolve(&trees, "0").is_some());
        for bad in [
            "0/../secret",
            "0/20260101_000000/../../secret",
            "0//etc",
            "0/link",
            "1/20260101_000000/m",
            "x/20260101_000000/m",
            "0/missing",
            "0/./20260101_000000",
        ] {
            assert_eq!(resolve(&trees, bad), None, "{bad}");
        }
    }
}
