//! Helm values against their charts: every Argo CD Application's `helm.valuesObject` (or
//! `helm.values`) and every Terraform `helm_release`'s `values`.
//!
//! Helm ignores a key its chart does not know, silently. So every key path the values set
//! must exist in the chart's default `values.yaml` (or, under a subchart's key such as
//! `grafana`, in the parent's defaults for it merged over the subchart's `values.yaml`),
//! and the values must satisfy the chart's `values.schema.json` when it has one.
//!
//! NB: a map is free-form, and accepts any key, when its default is empty (`podAnnotations:
//! {}`), null, or written mostly with keys that are names rather than values (argo-cd's
//! `configs.cm` holds `timeout.reconciliation` and a few more: keys with a `.` or a `/`
//! say the map is passed through, as ConfigMap data, labels or annotations; one such key
//! among many, like grafana's `grafana.ini`, does not). Lists are never looked into: Helm
//! replaces them whole, and their items' shape is the templates' business.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context as _;
use hcl_edit::Span as _;
use hcl_edit::expr::{Expression, ObjectKey};
use serde_json::{Map, Value};

use super::Finding;
use super::schema::{did_you_mean, to_json};
use super::upstream::{CATALOGUE_PATH, Upstream};
use super::yaml::{Doc, Seg, YamlFile, parse_file, path_string};

/// Values given to one chart, with the file lines of their keys.
pub struct Release<'a> {
    /// What sets them, for messages: `Application airflow`.
    pub owner: String,
    /// Chart name and version.
    pub chart: &'a str,
    /// Exact chart version.
    pub version: &'a str,
    /// The values.
    pub values: Value,
    /// File line of a path into `values`.
    pub line_of: &'a dyn Fn(&[Seg]) -> usize,
}

/// Checks the values of one release; charts not in reach go to `unchecked`.
pub fn check_release(
    upstream: &Upstream,
    rel: &Path,
    release: &Release,
    findings: &mut Vec<Finding>,
    unchecked: &mut BTreeSet<String>,
) {
    let (name, version) = (release.chart, release.version);
    // An unpinned version is reported by the policy check; there is nothing to compare with.
    if super::policy::unpinned_version(version).is_some() {
        return;
    }
    let Some(chart) = upstream.chart(name) else {
        unchecked.insert(format!("chart {name} {version}: not in {CATALOGUE_PATH}"));
        return;
    };
    if chart.version != version {
        findings.push(Finding::new(
            rel,
            (release.line_of)(&[]),
            format!(
                "{}: chart {name} {version}, but {CATALOGUE_PATH} pins {name} {}",
                release.owner, chart.version
            ),
            format!(
                "bump the `{name}` source of {CATALOGUE_PATH} (version and sha256) with the chart"
            ),
        ));
        return;
    }
    if let Some(why) = &chart.unchecked {
        unchecked.insert(format!("chart {name} {version}: {why}"));
        return;
    }
    if let Some(schema) = &chart.schema {
        for violation in schema.violations(&release.values) {
            let at = path_string(&violation.path);
            findings.push(Finding::new(
                rel,
                (release.line_of)(&violation.path),
                format!(
                    "{}: values `{at}` {}",
                    release.owner,
                    if violation.allowed.is_empty() {
                        violation.message.clone()
                    } else {
                        "is not in the chart's values.schema.json".to_string()
                    }
                ),
                format!("match the values.schema.json of chart {name} {version}"),
            ));
        }
    }
    let Some(defaults) = &chart.values else {
        return;
    };
    let mut defaults = to_json(defaults);
    let Value::Object(top) = &mut defaults else {
        return;
    };
    // Values under `global` are shared with every subchart.
    top.entry("global")
        .or_insert_with(|| Value::Object(Map::new()));
    for (key, dep_name, dep_version) in &chart.dependencies {
        let sub = upstream
            .chart(dep_name)
            .filter(|c| c.version == *dep_version && c.unchecked.is_none())
            .and_then(|c| c.values.as_ref());
        let parent = top.remove(key).unwrap_or(Value::Object(Map::new()));
        let merged = match sub {
            Some(sub) => merge(to_json(sub), parent),
            None => {
                if release.values.get(key).is_some() {
                    unchecked.insert(format!(
                        "chart {dep_name} {dep_version} (subchart `{key}` of {name} {version}): not in {CATALOGUE_PATH}"
                    ));
                }
                Value::Object(Map::new())
            }
        };
        top.insert(key.clone(), merged);
    }
    let mut unknown = Vec::new();
    unknown_keys(&release.values, &defaults, &mut Vec::new(), &mut unknown);
    for (path, allowed) in unknown {
        findings.push(Finding::new(
            rel,
            (release.line_of)(&path),
            format!(
                "{}: `{}` is not a value of chart {name} {version} (Helm ignores it)",
                release.owner,
                path_string(&path)
            ),
            did_you_mean(
                &path,
                &allowed,
                &format!("the values.yaml of chart {name} {version}"),
            ),
        ));
    }
}

/// `base` with `over` merged into it, as Helm merges a parent's values over a subchart's.
fn merge(base: Value, over: Value) -> Value {
    match (base, over) {
        (Value::Object(mut base), Value::Object(over)) => {
            for (key, value) in over {
                let merged = match base.remove(&key) {
                    Some(old) => merge(old, value),
                    None => value,
                };
                base.insert(key, merged);
            }
            Value::Object(base)
        }
        (_, over) => over,
    }
}

fn free_form(defaults: &Map<String, Value>) -> bool {
    let names = defaults
        .keys()
        .filter(|k| k.contains('.') || k.contains('/'))
        .count();
    defaults.is_empty() || names * 2 > defaults.len()
}

/// Every key path of `values` that `defaults` does not have, with the keys it has there.
fn unknown_keys(
    values: &Value,
    defaults: &Value,
    path: &mut Vec<Seg>,
    out: &mut Vec<(Vec<Seg>, Vec<String>)>,
) {
    let (Value::Object(values), Value::Object(defaults)) = (values, defaults) else {
        return;
    };
    if free_form(defaults) {
        return;
    }
    for (key, value) in values {
        path.push(Seg::Key(key.clone()));
        match defaults.get(key) {
            Some(default) => unknown_keys(value, default, path, out),
            None => out.push((path.clone(), defaults.keys().cloned().collect())),
        }
        path.pop();
    }
}

/// The Helm sources of an Application: `(path of the source, chart, version)`.
fn helm_sources(doc: &Doc) -> Vec<(Vec<Seg>, &str, &str)> {
    let spec = &doc.value["spec"];
    let key = |k: &str| Seg::Key(k.into());
    let mut sources = vec![(vec![key("spec"), key("source")], &spec["source"])];
    for (i, source) in spec["sources"]
        .as_sequence()
        .into_iter()
        .flatten()
        .enumerate()
    {
        sources.push((vec![key("spec"), key("sources"), Seg::Index(i)], source));
    }
    sources
        .into_iter()
        .filter_map(|(path, source)| {
            Some((
                path,
                source["chart"].as_str()?,
                source["targetRevision"].as_str()?,
            ))
        })
        .collect()
}

/// The values of every Helm source of an Argo CD Application.
pub fn check_application(
    upstream: &Upstream,
    file: &YamlFile,
    doc: &Doc,
    findings: &mut Vec<Finding>,
    unchecked: &mut BTreeSet<String>,
) {
    let owner = format!("Application {}", doc.name());
    for (source_path, chart, version) in helm_sources(doc) {
        let mut helm = source_path.clone();
        helm.push(Seg::Key("helm".into()));
        let mut source = &doc.value;
        for seg in &helm {
            source = match seg {
                Seg::Key(k) => &source[k.as_str()],
                Seg::Index(i) => &source[*i],
            };
        }
        let revision_line =
            doc.line_of(&[source_path.clone(), vec![Seg::Key("targetRevision".into())]].concat());
        if let Some(object) = source.get("valuesObject") {
            let mut prefix = helm.clone();
            prefix.push(Seg::Key("valuesObject".into()));
            let line_of = |path: &[Seg]| {
                if path.is_empty() {
                    revision_line
                } else {
                    doc.line_of(&[prefix.as_slice(), path].concat())
                }
            };
            let release = Release {
                owner: owner.clone(),
                chart,
                version,
                values: to_json(object),
                line_of: &line_of,
            };
            check_release(upstream, &file.rel, &release, findings, unchecked);
        }
        if let Some(text) = source.get("values").and_then(serde_yaml::Value::as_str) {
            let mut at = helm.clone();
            at.push(Seg::Key("values".into()));
            let values_line = doc.line_of(&at);
            let inner = parse_file(file.rel.clone(), text);
            let Some(inner) = inner.docs.first() else {
                continue;
            };
            // A block scalar starts on the line after `values: |`.
            let line_of = |path: &[Seg]| {
                if path.is_empty() {
                    revision_line
                } else {
                    values_line + inner.line_of(path)
                }
            };
            let release = Release {
                owner: owner.clone(),
                chart,
                version,
                values: to_json(&inner.value),
                line_of: &line_of,
            };
            check_release(upstream, &file.rel, &release, findings, unchecked);
        }
    }
}

/// The `values` of every `helm_release` under `root/infrastructure/terraform`.
pub fn check_terraform(
    upstream: &Upstream,
    root: &Path,
    findings: &mut Vec<Finding>,
    unchecked: &mut BTreeSet<String>,
) -> anyhow::Result<()> {
    let mut files = Vec::new();
    for path in crate::files::with_endings(&root.join("infrastructure/terraform"), &[".tf"])? {
        let text =
            std::fs::read_to_string(&path).with_context(|| format!("read {}", path.display()))?;
        let rel = path.strip_prefix(root).unwrap_or(&path).to_path_buf();
        // A file that does not parse is reported by `terraform fmt`.
        if let Ok(body) = hcl_edit::parser::parse_body(&text) {
            files.push((rel, text, body));
        }
    }
    let variable_default = |name: &str| {
        files.iter().find_map(|(_, _, body)| {
            body.get_blocks("variable")
                .find(|b| b.labels.first().is_some_and(|l| l.as_str() == name))
                .and_then(|b| b.body.get_attribute("default"))
                .and_then(|a| a.value.as_str().map(str::to_string))
        })
    };
    for (rel, text, body) in &files {
        for block in body.get_blocks("resource") {
            let labels: Vec<&str> = block.labels.iter().map(|l| l.as_str()).collect();
            let [kind, name] = labels.as_slice() else {
                continue;
            };
            if *kind != "helm_release" {
                continue;
            }
            let attribute = |key: &str| block.body.get_attribute(key).map(|a| &a.value);
            let Some(chart) = attribute("chart").and_then(Expression::as_str) else {
                continue;
            };
            let version = match attribute("version") {
                Some(Expression::Traversal(traversal)) => {
                    let variable = traversal.operators.first().and_then(|op| match op.value() {
                        hcl_edit::expr::TraversalOperator::GetAttr(id) => Some(id.as_str()),
                        _ => None,
                    });
                    match (&traversal.expr, variable) {
                        (Expression::Variable(var), Some(v)) if var.as_str() == "var" => {
                            variable_default(v)
                        }
                        _ => None,
                    }
                }
                Some(other) => other.as_str().map(str::to_string),
                None => None,
            };
            let Some(version) = version else {
                continue;
            };
            let Some(Expression::Array(values)) = attribute("values") else {
                continue;
            };
            let owner = format!("resource \"helm_release\" \"{name}\"");
            let block_line = line_at(text, block.span().map_or(0, |s| s.start));
            for element in values.iter() {
                let mut lines = Vec::new();
                let value = match element {
                    Expression::FuncCall(call) if call.name.name.as_str() == "yamlencode" => {
                        let Some(arg) = call.args.iter().next() else {
                            continue;
                        };
                        hcl_value(arg, text, &mut Vec::new(), &mut lines)
                    }
                    _ => None,
                };
                let Some(value) = value else {
                    continue;
                };
                let line_of = |path: &[Seg]| {
                    lines
                        .iter()
                        .filter(|(p, _)| path.starts_with(p))
                        .max_by_key(|(p, _)| p.len())
                        .map_or(block_line, |(_, line)| *line)
                };
                let release = Release {
                    owner: owner.clone(),
                    chart,
                    version: &version,
                    values: value,
                    line_of: &line_of,
                };
                check_release(upstream, rel, &release, findings, unchecked);
            }
        }
    }
    Ok(())
}

fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The value of an HCL expression made of literals, recording the line of every object key;
/// `None` for what only Terraform can evaluate (variables, function calls, templates with
/// interpolations).
fn hcl_value(
    expr: &Expression,
    text: &str,
    path: &mut Vec<Seg>,
    lines: &mut Vec<(Vec<Seg>, usize)>,
) -> Option<Value> {
    Some(match expr {
        Expression::Null(_) => Value::Null,
        Expression::Bool(b) => Value::Bool(*b.value()),
        Expression::Number(n) => {
            let n = n.value();
            match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Value::from(i),
                (None, Some(f)) => Value::from(f),
                _ => return None,
            }
        }
        Expression::String(s) => Value::String(s.value().clone()),
        Expression::StringTemplate(_) | Expression::HeredocTemplate(_) => {
            // Only the shape matters here: the text is Terraform's to render.
            Value::String(String::new())
        }
        Expression::Parenthesis(inner) => hcl_value(inner.inner(), text, path, lines)?,
        Expression::Array(items) => {
            let mut out = Vec::new();
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                if let Some(value) = hcl_value(item, text, path, lines) {
                    out.push(value);
                }
                path.pop();
            }
            Value::Array(out)
        }
        Expression::Object(object) => {
            let mut out = Map::new();
            for (key, value) in object.iter() {
                let name = match key {
                    ObjectKey::Ident(id) => id.as_str().to_string(),
                    ObjectKey::Expression(Expression::String(s)) => s.value().clone(),
                    ObjectKey::Expression(_) => continue,
                };
                path.push(Seg::Key(name.clone()));
                lines.push((
                    path.clone(),
                    line_at(text, key.span().map_or(0, |s| s.start)),
                ));
                if let Some(value) = hcl_value(value.expr(), text, path, lines) {
                    out.insert(name, value);
                }
                path.pop();
            }
            Value::Object(out)
        }
        _ => return None,
    })
}
