//! Loading YAML files into documents that remember where they are.
//!
//! serde_yaml 0.9 reports locations for syntax and type errors, not for values, so every
//! document keeps its own text and first line: errors of a typed parse of that text are
//! shifted to file lines, and [`Doc::line_of`] finds the line of a value by walking the
//! keys and sequence items of its path through the block-style text.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::Deserialize as _;
use serde_yaml::Value;

use super::Finding;

/// One step of a path into a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A mapping key.
    Key(String),
    /// A sequence index.
    Index(usize),
}

/// Renders a path as `spec.template.spec.containers[0].image`.
pub fn path_string(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Seg::Index(index) => out.push_str(&format!("[{index}]")),
        }
    }
    out
}

/// A YAML file under `infrastructure/`.
#[derive(Debug)]
pub struct YamlFile {
    /// Path relative to the project root.
    pub rel: PathBuf,
    /// The documents that parsed.
    pub docs: Vec<Doc>,
    /// Syntax errors, as findings.
    pub parse_errors: Vec<Finding>,
}

/// One document of a multi-document YAML file.
#[derive(Debug)]
pub struct Doc {
    /// The document's text (between `---` separators).
    pub text: String,
    /// File line of the first line of `text` (1-based).
    pub first_line: usize,
    /// The parsed document.
    pub value: Value,
}

impl Doc {
    /// `apiVersion` and `kind`, when both are strings.
    pub fn type_meta(&self) -> Option<(&str, &str)> {
        Some((
            self.value.get("apiVersion")?.as_str()?,
            self.value.get("kind")?.as_str()?,
        ))
    }

    /// `metadata.name`, or `?`.
    pub fn name(&self) -> &str {
        self.value
            .get("metadata")
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or("?")
    }

    /// The file line of a serde_yaml error raised while parsing `self.text`.
    pub fn error_line(&self, error: &serde_yaml::Error) -> usize {
        error
            .location()
            .map_or(self.first_line, |loc| self.first_line + loc.line() - 1)
    }

    /// The file line where the value at `path` is written (its deepest key found).
    pub fn line_of(&self, path: &[Seg]) -> usize {
        let lines: Vec<&str> = self.text.lines().collect();
        let mut best = self.first_line;
        let mut lo = 0usize;
        let mut parent_indent: isize = -1;
        let mut same_line_ok = false;
        for seg in path {
            match seg {
                Seg::Key(key) => {
                    let Some((i, indent)) = find_key(&lines, lo, parent_indent, same_line_ok, key)
                    else {
                        return best;
                    };
                    best = self.first_line + i;
                    lo = i + 1;
                    parent_indent = indent as isize;
                    same_line_ok = false;
                }
                Seg::Index(n) => {
                    let Some((j, seq_indent)) = find_item(&lines, lo, parent_indent, *n) else {
                        return best;
                    };
                    best = self.first_line + j;
                    lo = j;
                    parent_indent = seq_indent as isize;
                    same_line_ok = true;
                }
            }
        }
        best
    }
}

fn is_content(line: &str) -> bool {
    let trimmed = line.trim_start();
    !trimmed.is_empty() && !trimmed.starts_with('#')
}

fn indent_of(line: &str) -> usize {
    line.len() - line.trim_start_matches(' ').len()
}

/// The line index and key column of `key:` inside the block that starts at `lo`.
fn find_key(
    lines: &[&str],
    lo: usize,
    parent: isize,
    same_line_ok: bool,
    key: &str,
) -> Option<(usize, usize)> {
    let candidates = [
        format!("{key}:"),
        format!("\"{key}\":"),
        format!("'{key}':"),
    ];
    for (i, line) in lines.iter().enumerate().skip(lo) {
        if !is_content(line) {
            continue;
        }
        let exempt = same_line_ok && i == lo;
        if !exempt && indent_of(line) as isize <= parent {
            return None;
        }
        // Keys may follow any number of `- ` sequence markers on the same line.
        let mut col = indent_of(line);
        let mut rest = &line[col..];
        while let Some(stripped) = rest.strip_prefix("- ") {
            let inner = stripped.trim_start_matches(' ');
            col += rest.len() - inner.len();
            rest = inner;
        }
        if col as isize > parent && candidates.iter().any(|c| rest.starts_with(c.as_str())) {
            return Some((i, col));
        }
    }
    None
}

/// The line index and indentation of item `n` of the sequence that starts at `lo`.
fn find_item(lines: &[&str], lo: usize, parent: isize, n: usize) -> Option<(usize, usize)> {
    let mut seq_indent = None;
    let mut count = 0;
    for (i, line) in lines.iter().enumerate().skip(lo) {
        if !is_content(line) {
            continue;
        }
        let indent = indent_of(line);
        let is_item = line[indent..].starts_with("- ") || line[indent..].trim_end() == "-";
        match seq_indent {
            None if is_item && indent as isize >= parent => seq_indent = Some(indent),
            None => return None,
            Some(s) if indent < s || (indent == s && !is_item) => return None,
            Some(_) => {}
        }
        if is_item && Some(indent) == seq_indent {
            if count == n {
                return Some((i, indent));
            }
            count += 1;
        }
    }
    None
}

/// Loads every `.yaml`/`.yml` file under `root/infrastructure`.
pub fn load_tree(root: &Path) -> anyhow::Result<Vec<YamlFile>> {
    let dir = root.join("infrastructure");
    // NB: the git source setting is not a Kubernetes object (see lint/source.rs).
    let setting = root.join(crate::cluster::source::SETTING);
    crate::files::with_endings(&dir, &[".yaml", ".yml"])?
        .into_iter()
        .filter(|path| *path != setting)
        .map(|path| load_file(root, &path))
        .collect()
}

/// Reads and parses `path`; findings name it relative to `root`.
pub fn load_file(root: &Path, path: &Path) -> anyhow::Result<YamlFile> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let rel = path.strip_prefix(root).unwrap_or(path).to_path_buf();
    Ok(parse_file(rel, &text))
}

impl YamlFile {
    /// The parsed documents, or the first syntax error as an error.
    pub fn into_values(self) -> anyhow::Result<Vec<Value>> {
        if let Some(error) = self.parse_errors.first() {
            anyhow::bail!("{}:{}: {}", error.file.display(), error.line, error.message);
        }
        Ok(self.docs.into_iter().map(|doc| doc.value).collect())
    }
}

/// Splits `text` into documents and parses each one.
pub fn parse_file(rel: PathBuf, text: &str) -> YamlFile {
    let mut file = YamlFile {
        rel,
        docs: Vec::new(),
        parse_errors: Vec::new(),
    };
    // The whole stream first, as Kubernetes tools read it: its errors carry file lines.
    for document in serde_yaml::Deserializer::from_str(text) {
        if let Err(error) = Value::deserialize(document) {
            let line = error.location().map_or(1, |loc| loc.line());
            file.parse_errors.push(Finding::new(
                &file.rel,
                line,
                format!("YAML does not parse: {error}"),
                "fix the syntax (indentation, quoting, a tab instead of spaces)",
            ));
            return file;
        }
    }
    let mut start = 0usize;
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let mut chunks = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let trimmed = line.trim_end();
        if trimmed == "---" || trimmed.starts_with("--- ") {
            chunks.push((start, i));
            start = i + 1;
        }
    }
    chunks.push((start, lines.len()));
    for (from, to) in chunks {
        let chunk: String = lines[from..to].concat();
        if !chunk.lines().any(is_content) {
            continue;
        }
        let first_line = from + 1;
        match serde_yaml::from_str::<Value>(&chunk) {
            Ok(Value::Null) => {}
            Ok(value) => file.docs.push(Doc {
                text: chunk,
                first_line,
                value,
            }),
            Err(error) => {
                let line = error
                    .location()
                    .map_or(first_line, |loc| first_line + loc.line() - 1);
                file.parse_errors.push(Finding::new(
                    &file.rel,
                    line,
                    format!("YAML does not parse: {error}"),
                    "fix the syntax",
                ));
            }
        }
    }
    file
}
