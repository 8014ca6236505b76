//! No credentials in git: private keys, literal passwords, tokens, credentials in URLs and
//! data in committed Secrets are findings. Credentials are generated (Terraform's
//! `random_password`, CloudNativePG) or created by hand with a documented
//! `kubectl create secret`.

use std::path::Path;

use anyhow::Context as _;
use serde_yaml::Value;

use super::Finding;
use super::policy::walk;
use super::yaml::{Doc, Seg, YamlFile};

const GENERATE: &str = "generate it (infrastructure/terraform/secrets.tf) or document a one-line `kubectl create secret`, and reference the Secret";

fn normalized(key: &str) -> String {
    key.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

fn is_password_key(key: &str) -> bool {
    let key = normalized(key);
    key.ends_with("password") || key.ends_with("passwd") || key == "dbpass" || key == "pass"
}

fn is_secretish_key(key: &str) -> bool {
    let key = normalized(key);
    [
        "secret",
        "token",
        "apikey",
        "secretkey",
        "privatekey",
        "fernetkey",
        "accesskey",
    ]
    .iter()
    .any(|s| key.ends_with(s))
}

/// A value that refers to a secret instead of being one: `$(VAR)`, `${VAR}`, a template,
/// or Superset's `XXXXXXXXXX` mask.
fn is_reference(value: &str) -> bool {
    let value = value.trim();
    value.is_empty()
        || value.starts_with("$(")
        || value.starts_with("${")
        || value.starts_with("{{")
        || value.chars().all(|c| c == 'X' || c == '*')
}

/// Shannon entropy in bits per character.
fn entropy(value: &str) -> f64 {
    let mut counts = std::collections::BTreeMap::new();
    for c in value.chars() {
        *counts.entry(c).or_insert(0usize) += 1;
    }
    let len = value.chars().count() as f64;
    counts
        .values()
        .map(|&n| n as f64 / len)
        .map(|p| -p * p.log2())
        .sum()
}

fn looks_random(value: &str) -> bool {
    value.len() >= 20 && !value.contains(char::is_whitespace) && entropy(value) >= 3.5
}

/// Findings in one YAML document.
pub fn check_document(file: &YamlFile, doc: &Doc) -> Vec<Finding> {
    let mut findings = Vec::new();
    if doc.type_meta().map(|(_, kind)| kind) == Some("Secret") {
        for field in ["data", "stringData"] {
            for (key, _) in doc.value[field].as_mapping().into_iter().flatten() {
                let key = key.as_str().unwrap_or("?").to_string();
                let path = [Seg::Key(field.into()), Seg::Key(key.clone())];
                findings.push(Finding::new(
                    &file.rel,
                    doc.line_of(&path),
                    format!("Secret {} commits a value for `{key}`", doc.name()),
                    GENERATE,
                ));
            }
        }
    }
    walk(&doc.value, &mut Vec::new(), &mut |path, value| {
        let (Some(Seg::Key(key)), Value::String(text)) = (path.last(), value) else {
            return;
        };
        let literal_password = is_password_key(key) && !is_reference(text);
        let random_secret = is_secretish_key(key) && !is_reference(text) && looks_random(text);
        if literal_password || random_secret {
            findings.push(Finding::new(
                &file.rel,
                doc.line_of(path),
                format!("`{key}` holds a literal credential"),
                GENERATE,
            ));
        }
    });
    findings
}

/// Findings in the text of every file under `infrastructure/` and `dags/`.
pub fn check_text_files(root: &Path) -> anyhow::Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let extensions = [
        ".yaml", ".yml", ".tf", ".tfvars", ".py", ".json", ".md", ".sh", ".txt", ".cfg", ".ini",
        ".env",
    ];
    for dir in ["infrastructure", "dags"] {
        for path in crate::files::with_endings(&root.join(dir), &extensions)? {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("read {}", path.display()))?;
            let rel = path.strip_prefix(root).unwrap_or(&path);
            let is_tf = rel.extension().is_some_and(|e| e == "tf" || e == "tfvars");
            for (i, line) in text.lines().enumerate() {
                if let Some(problem) = line_problem(line, is_tf) {
                    findings.push(Finding::new(rel, i + 1, problem, GENERATE));
                }
            }
        }
    }
    Ok(findings)
}

/// What is wrong with `line`, when it holds something that looks like a credential.
pub(super) fn line_problem(line: &str, is_tf: bool) -> Option<String> {
    if line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
        return Some("a private key is committed".into());
    }
    for prefix in ["ghp_", "gho_", "github_pat_", "glpat-", "xoxb-", "xoxp-"] {
        if let Some(at) = line.find(prefix) {
            let token: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .collect();
            if token.len() >= prefix.len() + 16 {
                return Some(format!("a `{prefix}…` token is committed"));
            }
        }
    }
    if let Some(at) = line.find("AKIA") {
        let id: String = line[at..].chars().take(20).collect();
        if id.len() == 20
            && id
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Some("an AWS access key id is committed".into());
        }
    }
    let mut rest = line;
    while let Some(at) = rest.find("://") {
        rest = &rest[at + 3..];
        let authority: String = rest
            .chars()
            .take_while(|c| !c.is_whitespace() && !"/\"'`".contains(*c))
            .collect();
        if let Some((userinfo, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = userinfo.split_once(':')
            && !is_reference(password)
        {
            return Some("a URL carries a password".into());
        }
    }
    if is_tf {
        let trimmed = line.trim_start();
        if let Some((name, value)) = trimmed.split_once('=') {
            let name = name.trim();
            let value = value.trim();
            if (is_password_key(name)
                || (is_secretish_key(name) && looks_random(value.trim_matches('"'))))
                && value.starts_with('"')
                && !value.contains("${")
                && value != "\"\""
            {
                return Some(format!("`{name}` is a literal string"));
            }
        }
    }
    None
}
