//! The snapshot commit `up` deploys: the working tree as it is (uncommitted and untracked
//! files included, ignored files not), with the tags of the images just built written
//! into the manifests, as one commit the in-cluster git server receives.
//!
//! The commit is built with git's plumbing in a temporary index, so the user's index,
//! HEAD and branches are untouched. It is deterministic: no parent, fixed author and
//! committer (`flightdeck`), dates of HEAD's commit, a message naming HEAD. The same
//! tree and images give the same commit id, so a second `up` with nothing changed pushes
//! nothing and Argo CD sees no new revision; any edit gives a new id.

use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use xshell::{Shell, cmd};

/// Where the deployed manifests live: their image references get the build's tags.
const MANIFESTS: &str = "infrastructure/k8s/";
/// Our images' namespace: `cargo xtask images` names every image `flightdeck/<bin>`.
pub const OUR_IMAGES: &str = "flightdeck/";
const AUTHOR: [(&str, &str); 4] = [
    ("GIT_AUTHOR_NAME", "flightdeck"),
    ("GIT_AUTHOR_EMAIL", "flightdeck@localhost"),
    ("GIT_COMMITTER_NAME", "flightdeck"),
    ("GIT_COMMITTER_EMAIL", "flightdeck@localhost"),
];

/// What is checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkout {
    /// The commit HEAD points at.
    pub head: String,
    /// The branch, or `None` for a detached HEAD.
    pub branch: Option<String>,
    /// HEAD's committer time (Unix seconds): the snapshot's dates.
    pub time: i64,
    /// Files that differ from HEAD (`git status --porcelain` paths), untracked included.
    pub changed: Vec<String>,
}

impl Checkout {
    /// Reads the checkout `sh` is in; fails with the fix when there is nothing to deploy.
    pub fn inspect(sh: &Shell) -> anyhow::Result<Self> {
        let inside = cmd!(sh, "git rev-parse --is-inside-work-tree")
            .quiet()
            .ignore_stderr()
            .read();
        if inside.ok().as_deref() != Some("true") {
            bail!(
                "{} is not a git checkout: `cargo xtask up` deploys a commit of the working tree. \
                 Fix: clone the repository with git (or `git init && git add -A && git commit -m 'first commit'`)",
                sh.current_dir().display()
            );
        }
        let Ok(head) = cmd!(sh, "git rev-parse --verify --quiet HEAD")
            .quiet()
            .ignore_stderr()
            .read()
        else {
            bail!(
                "the checkout has no commit yet: the images are stamped with the commit time and the \
                 deployed snapshot names its commit. Fix: `git add -A && git commit -m 'first commit'`"
            );
        };
        let branch = cmd!(sh, "git symbolic-ref --quiet --short HEAD")
            .quiet()
            .ignore_stderr()
            .read()
            .ok();
        let time = cmd!(sh, "git log -1 --format=%ct HEAD")
            .quiet()
            .read()
            .context("read HEAD's commit time")?;
        let time = time
            .trim()
            .parse()
            .with_context(|| format!("`git log` printed `{time}` as a commit time"))?;
        let status = cmd!(
            sh,
            "git status --porcelain=v1 --untracked-files=all --no-renames"
        )
        .quiet()
        .read()
        .context("list the uncommitted changes (`git status`)")?;
        let changed = status
            .lines()
            .filter(|line| line.len() > 3)
            .map(|line| line[3..].trim_matches('"').to_owned())
            .collect();
        Ok(Self {
            head,
            branch,
            time,
            changed,
        })
    }

    /// One line for a person: what `up` deploys.
    pub fn describe(&self) -> String {
        let at = match &self.branch {
            Some(branch) => format!("branch {branch} at {}", short(&self.head)),
            None => format!(
                "a detached HEAD at {} (no branch: deployed all the same)",
                short(&self.head)
            ),
        };
        match self.changed.len() {
            0 => format!("the checkout: {at}, no uncommitted changes"),
            n => {
                let shown: Vec<&str> = self.changed.iter().take(5).map(String::as_str).collect();
                let more = if n > 5 {
                    format!(" and {} more", n - 5)
                } else {
                    String::new()
                };
                format!(
                    "the checkout: {at} plus {n} uncommitted file(s), deployed as they are: {}{more}",
                    shown.join(", ")
                )
            }
        }
    }
}

/// The first 12 hex digits of a commit id.
pub fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

/// An image as the manifests name it, and the tag of the build to deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageTag {
    /// `flightdeck/processor`.
    pub name: String,
    /// `0.1.0-<12 hex digits of the digest>`.
    pub tag: String,
}

/// A commit ready to push.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Its id.
    pub commit: String,
    /// The manifests whose image references got a tag.
    pub retagged: Vec<String>,
}

impl fmt::Display for Snapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", short(&self.commit))
    }
}

/// Commits the working tree of `sh`'s checkout with `images` tagged in the manifests.
pub fn create(sh: &Shell, checkout: &Checkout, images: &[ImageTag]) -> anyhow::Result<Snapshot> {
    let scratch = tempfile::tempdir().context("create a temporary directory")?;
    let index = scratch.path().join("index");
    // NB: starting from a copy of the user's index only saves re-hashing unchanged
    // files; `git add -A` makes the temporary index match the working tree either way.
    let git_index = cmd!(sh, "git rev-parse --git-path index")
        .quiet()
        .read()
        .context("find the git index")?;
    let git_index = sh.current_dir().join(git_index);
    if git_index.is_file() {
        std::fs::copy(&git_index, &index).context("copy the git index")?;
    }
    let top = cmd!(sh, "git rev-parse --show-toplevel")
        .quiet()
        .read()
        .context("find the top of the checkout")?;
    let _top = sh.push_dir(PathBuf::from(&top));
    cmd!(sh, "git add --all")
        .env("GIT_INDEX_FILE", &index)
        .quiet()
        .run()
        .context("stage the working tree in a temporary index (`git add --all`)")?;
    let files = cmd!(sh, "git ls-files -z -- {MANIFESTS}")
        .env("GIT_INDEX_FILE", &index)
        .quiet()
        .read()
        .context("list the manifests")?;
    let mut retagged = Vec::new();
    let mut untagged = Vec::new();
    for file in files.split('\0').filter(|f| is_yaml(f)) {
        let path = Path::new(&top).join(file);
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let tagged = retag(&text, images);
        untagged.extend(
            untagged_references(&tagged)
                .into_iter()
                .map(|(line, image)| format!("{file}:{line}: {image}")),
        );
        if tagged == text {
            continue;
        }
        let blob = cmd!(sh, "git hash-object -w --stdin")
            .stdin(tagged.as_bytes())
            .quiet()
            .read()
            .with_context(|| format!("store the tagged {file}"))?;
        cmd!(
            sh,
            "git update-index --add --cacheinfo 100644,{blob},{file}"
        )
        .env("GIT_INDEX_FILE", &index)
        .quiet()
        .run()
        .with_context(|| format!("put the tagged {file} into the snapshot"))?;
        retagged.push(file.to_owned());
    }
    if !untagged.is_empty() {
        let built: Vec<&str> = images.iter().map(|i| i.name.as_str()).collect();
        bail!(
            "the manifests reference images of ours that were not built, so no tag can be written for them:\n  {}\n\
             `cargo xtask images` built {}. Fix the image name, or add the service under services/",
            untagged.join("\n  "),
            built.join(", ")
        );
    }
    let tree = cmd!(sh, "git write-tree")
        .env("GIT_INDEX_FILE", &index)
        .quiet()
        .read()
        .context("write the snapshot's tree")?;
    let date = format!("{} +0000", checkout.time);
    let message = format!(
        "flightdeck snapshot of {}{}\n\nDeployed by `cargo xtask up`: the working tree with the image tags of the build.\n",
        short(&checkout.head),
        if checkout.changed.is_empty() {
            ""
        } else {
            " with uncommitted changes"
        }
    );
    let mut commit_tree = cmd!(sh, "git commit-tree --no-gpg-sign -m {message} {tree}")
        .env("GIT_AUTHOR_DATE", &date)
        .env("GIT_COMMITTER_DATE", &date)
        .quiet();
    for (key, value) in AUTHOR {
        commit_tree = commit_tree.env(key, value);
    }
    let commit = commit_tree
        .read()
        .context("commit the snapshot (`git commit-tree`)")?;
    Ok(Snapshot { commit, retagged })
}

fn is_yaml(file: &str) -> bool {
    file.ends_with(".yaml") || file.ends_with(".yml")
}

/// `text` with every YAML scalar that is exactly one of `images` (an `image:` field, an
/// `*_IMAGE` env value, a list item) given that image's tag. Comments and layout stay.
///
/// Helm charts split the reference (`image: {repository: …, tag: …}`, rendered as
/// `repository:tag`): a `repository:` naming one of `images` keeps its value, and the tag
/// goes into its sibling `tag:`, which is added right after it when the mapping has none.
pub fn retag(text: &str, images: &[ImageTag]) -> String {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    // Line index → its replacement (without the newline), and lines added after a line.
    let mut replaced: Vec<Option<String>> = vec![None; lines.len()];
    let mut added: Vec<Option<String>> = vec![None; lines.len()];
    for (i, line) in lines.iter().enumerate() {
        let body = line.strip_suffix('\n').unwrap_or(line);
        let Some((start, end)) = scalar(body) else {
            continue;
        };
        let Some(image) = images.iter().find(|i| i.name == body[start..end]) else {
            continue;
        };
        if key_of(body, start) == "repository:" {
            let column = key_column(body);
            let tag = format!("tag: \"{}\"", image.tag);
            match sibling(&lines, i, column, "tag:") {
                Some(t) => {
                    let line = lines[t].strip_suffix('\n').unwrap_or(lines[t]);
                    let comment = line
                        .find(" #")
                        .map_or("", |at| &line[line[..at].trim_end().len()..]);
                    replaced[t] = Some(format!("{}{tag}{comment}", &line[..column]));
                }
                None => added[i] = Some(format!("{}{tag}", " ".repeat(column))),
            }
        } else {
            replaced[i] = Some(format!("{}:{}{}", &body[..end], image.tag, &body[end..]));
        }
    }
    let mut out = String::with_capacity(text.len() + 64);
    for (i, line) in lines.iter().enumerate() {
        let newline = if line.ends_with('\n') { "\n" } else { "" };
        match &replaced[i] {
            Some(new) => {
                out.push_str(new);
                out.push_str(newline);
            }
            None => out.push_str(line),
        }
        if let Some(extra) = &added[i] {
            if newline.is_empty() {
                out.push('\n');
            }
            out.push_str(extra);
            out.push_str(if newline.is_empty() { "" } else { "\n" });
        }
    }
    out
}

/// The key of the line whose value starts at `start` (`image:`, `repository:`), without
/// indentation, a list item's dash or the value's opening quote.
fn key_of(line: &str, start: usize) -> &str {
    line[..start]
        .trim()
        .trim_end_matches(['"', '\''])
        .trim_start_matches("- ")
        .trim()
}

/// The column where a line's key starts: its indentation, plus a list item's `- `.
fn key_column(line: &str) -> usize {
    let indent = line.len() - line.trim_start().len();
    let rest = &line[indent..];
    match rest.strip_prefix("- ") {
        Some(item) => indent + 2 + (item.len() - item.trim_start().len()),
        None => indent,
    }
}

/// The line of the key `key` (`tag:`) in the same YAML mapping as the key at `column` on
/// line `at`: the lines around it whose key starts at that column, up to a line indented
/// less (which ends the mapping, or starts it when it is a list item's `- key:`).
fn sibling(lines: &[&str], at: usize, column: usize, key: &str) -> Option<usize> {
    let indent = |line: &str| line.len() - line.trim_start().len();
    let meaningful = |line: &str| {
        let trimmed = line.trim();
        !trimmed.is_empty() && !trimmed.starts_with('#')
    };
    let is_key = |line: &str| {
        key_column(line) == column && line.get(column..).is_some_and(|k| k.starts_with(key))
    };
    for (j, line) in lines.iter().enumerate().skip(at + 1) {
        if !meaningful(line) {
            continue;
        }
        if indent(line) < column {
            break;
        }
        if is_key(line) {
            return Some(j);
        }
    }
    if indent(lines[at]) < column {
        // `at` is the list item's first line: the mapping starts there.
        return None;
    }
    for j in (0..at).rev() {
        let line = lines[j];
        if !meaningful(line) {
            continue;
        }
        if is_key(line) {
            return Some(j);
        }
        if indent(line) < column {
            break;
        }
    }
    None
}

/// The byte range of the plain or quoted scalar value on a YAML line (`key: value`,
/// `- value`, `- key: value`), without quotes and without a trailing comment.
fn scalar(line: &str) -> Option<(usize, usize)> {
    let code_end = line.find(" #").unwrap_or(line.len());
    let code = &line[..code_end];
    let start = match code.find(": ") {
        Some(at) => at + 2,
        None => {
            let trimmed = code.trim_start();
            let dash = trimmed.strip_prefix("- ")?;
            code.len() - dash.len()
        }
    };
    let raw = &code[start..];
    let start = start + (raw.len() - raw.trim_start().len());
    let value = raw.trim();
    let unquoted = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')));
    match unquoted {
        Some(inner) => Some((start + 1, start + 1 + inner.len())),
        None if !value.is_empty() => Some((start, start + value.len())),
        None => None,
    }
}

/// `(line, image)` of every reference to one of our images that has no tag: an `image:`
/// field, the value of an environment variable named `*_IMAGE` (`- name:` on the line
/// before `value:`), or a Helm `repository:` whose mapping has no `tag:` with a value.
fn untagged_references(text: &str) -> Vec<(usize, String)> {
    let lines: Vec<&str> = text.lines().collect();
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, line)| {
            let (start, end) = scalar(line)?;
            let value = &line[start..end];
            let key = key_of(line, start);
            let image_env = key.starts_with("value:")
                && i > 0
                && lines[i - 1]
                    .trim()
                    .trim_start_matches("- ")
                    .strip_prefix("name:")
                    .is_some_and(|name| name.trim().trim_matches(['"', '\'']).ends_with("_IMAGE"));
            let helm_untagged = key == "repository:"
                && sibling(&lines, i, key_column(line), "tag:")
                    .and_then(|t| scalar(lines[t]))
                    .is_none_or(|(s, e)| s == e);
            let is_image = key.starts_with("image:") || image_env || helm_untagged;
            (is_image && is_our_untagged_image(value)).then(|| (i + 1, value.to_owned()))
        })
        .collect()
}

/// Whether `reference` is one of our images without a tag or digest.
pub fn is_our_untagged_image(reference: &str) -> bool {
    reference
        .strip_prefix(OUR_IMAGES)
        .is_some_and(|rest| !rest.is_empty() && !rest.contains([':', '@', '/', ' ']))
}

#[cfg(test)]
mod tests;
