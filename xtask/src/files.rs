//! Finding files in the repository: the one directory walk of the xtask.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

/// Every file under `dir` (recursively, following links) whose name ends with one of
/// `endings`, sorted; hidden directories (`.terraform/`, `.git/`) are not entered. Nothing
/// when `dir` does not exist.
pub fn with_endings(dir: &Path, endings: &[&str]) -> anyhow::Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let hidden = |entry: &walkdir::DirEntry| {
        entry.depth() > 0
            && entry.file_type().is_dir()
            && entry.file_name().to_string_lossy().starts_with('.')
    };
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_entry(|entry| !hidden(entry))
    {
        let entry = entry.with_context(|| format!("read directory {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy();
        if entry.file_type().is_file() && endings.iter().any(|ending| name.ends_with(ending)) {
            out.push(entry.into_path());
        }
    }
    out.sort();
    Ok(out)
}

/// The `*.json` files directly in `dir` (replay files, recorded responses), sorted.
pub fn json_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("read {}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_by_ending_in_order_outside_hidden_directories() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        for file in [
            "b.yaml",
            "a/c.yml",
            "a/d.txt",
            ".terraform/e.yaml",
            "a/.f/g.yaml",
        ] {
            let path = dir.path().join(file);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("create");
            std::fs::write(&path, "").expect("write");
        }
        let found = with_endings(dir.path(), &[".yaml", ".yml"]).expect("walk");
        let rel: Vec<_> = found
            .iter()
            .map(|p| p.strip_prefix(dir.path()).expect("below").to_owned())
            .collect();
        assert_eq!(rel, [PathBuf::from("a/c.yml"), PathBuf::from("b.yaml")]);
        assert!(
            with_endings(&dir.path().join("none"), &[".yaml"])
                .expect("absent")
                .is_empty()
        );
    }
}
