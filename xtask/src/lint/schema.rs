//! Custom resources against the `openAPIV3Schema` of their CRDs, with the `jsonschema` crate.
//!
//! A CRD's schema is a *structural* OpenAPI v3 schema; the API server prunes every field it
//! does not list. [`structural_to_json_schema`] turns one into a JSON schema that
//! reports those fields instead (`additionalProperties: false` wherever `properties` are
//! listed and `x-kubernetes-preserve-unknown-fields` is not set) and reads the Kubernetes
//! extensions: `nullable`, `x-kubernetes-int-or-string`, `x-kubernetes-embedded-resource` and
//! `x-kubernetes-list-type: set`. The CRD's `x-kubernetes-validations` rules are evaluated
//! with the `cel` crate ([`super::cel`]). `metadata` is not in a CRD's schema (the API server
//! validates it as an ObjectMeta): [`super::manifests`] round-trips it through k8s-openapi.

use std::fmt;

use anyhow::Context as _;
use serde_json::{Map, Value, json};

use super::Finding;
use super::yaml::{Doc, Seg, YamlFile, path_string};

/// A compiled JSON schema and the schema itself (for the names of allowed fields).
pub struct JsonSchema {
    validator: jsonschema::Validator,
    schema: Value,
}

impl fmt::Debug for JsonSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JsonSchema")
    }
}

/// One violation: where in the instance, and what.
#[derive(Debug, PartialEq, Eq)]
pub struct Violation {
    /// Path of the offending value (for an unknown field: the field itself).
    pub path: Vec<Seg>,
    /// What is wrong.
    pub message: String,
    /// The field names allowed there, for an unknown field.
    pub allowed: Vec<String>,
}

impl JsonSchema {
    /// Compiles `schema` for `draft`, or the draft its `$schema` names (draft 7 when it
    /// names none or just "the latest", as Helm's values schemas often do).
    ///
    /// NB: patterns are compiled with the `regex` crate, whose syntax is RE2's: Kubernetes
    /// evaluates CRD patterns with Go's RE2, and they use its syntax (`(?i)`), which an
    /// ECMA 262 engine rejects.
    pub fn compile(
        mut schema: Value,
        what: &str,
        draft: Option<jsonschema::Draft>,
    ) -> anyhow::Result<Self> {
        let named = schema
            .get("$schema")
            .and_then(Value::as_str)
            .map(str::to_string);
        let draft = draft.or_else(|| match named.as_deref() {
            Some(uri) if uri.contains("draft-04") => Some(jsonschema::Draft::Draft4),
            Some(uri) if uri.contains("draft-06") => Some(jsonschema::Draft::Draft6),
            Some(uri) if uri.contains("draft/2019-09") => Some(jsonschema::Draft::Draft201909),
            Some(uri) if uri.contains("draft/2020-12") => Some(jsonschema::Draft::Draft202012),
            _ => Some(jsonschema::Draft::Draft7),
        });
        if let (Some(draft), Value::Object(map)) = (draft, &mut schema) {
            // The draft is given: a `$schema` the validator does not know would override it.
            map.remove("$schema");
            let options = jsonschema::options()
                .with_draft(draft)
                .with_pattern_options(jsonschema::PatternOptions::regex());
            let validator = options
                .build(&schema)
                .map_err(|error| anyhow::anyhow!("{error}"))
                .with_context(|| format!("compile the schema of {what}"))?;
            return Ok(JsonSchema { validator, schema });
        }
        anyhow::bail!("the schema of {what} is not a JSON object")
    }

    /// Every violation of `instance`, one per unknown field.
    pub fn violations(&self, instance: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        for error in self.validator.iter_errors(instance) {
            let path: Vec<Seg> = error
                .instance_path()
                .iter()
                .map(|seg| match seg {
                    jsonschema::paths::LocationSegment::Property(p) => Seg::Key(p.to_string()),
                    jsonschema::paths::LocationSegment::Index(i) => Seg::Index(i),
                })
                .collect();
            if let jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } =
                error.kind()
            {
                // The schema path ends in `/additionalProperties`; its parent lists `properties`.
                let pointer = error.schema_path().as_str();
                let parent = pointer
                    .strip_suffix("/additionalProperties")
                    .unwrap_or(pointer);
                let allowed: Vec<String> = self
                    .schema
                    .pointer(parent)
                    .and_then(|s| s.get("properties"))
                    .and_then(Value::as_object)
                    .map(|p| p.keys().cloned().collect())
                    .unwrap_or_default();
                for field in unexpected {
                    let mut at = path.clone();
                    at.push(Seg::Key(field.clone()));
                    out.push(Violation {
                        path: at,
                        message: "is not in the schema".into(),
                        allowed: allowed.clone(),
                    });
                }
                continue;
            }
            let mut message = error.to_string();
            if message.chars().count() > 200 {
                message = format!("{}…", message.chars().take(200).collect::<String>());
            }
            out.push(Violation {
                path,
                message,
                allowed: Vec::new(),
            });
        }
        out
    }
}

/// `serde_yaml` to `serde_json`, with non-string keys written as YAML writes them.
pub fn to_json(value: &serde_yaml::Value) -> Value {
    match value {
        serde_yaml::Value::Null => Value::Null,
        serde_yaml::Value::Bool(b) => Value::Bool(*b),
        serde_yaml::Value::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        serde_yaml::Value::String(s) => Value::String(s.clone()),
        serde_yaml::Value::Sequence(items) => Value::Array(items.iter().map(to_json).collect()),
        serde_yaml::Value::Mapping(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let key = match k {
                        serde_yaml::Value::String(s) => s.clone(),
                        other => serde_yaml::to_string(other)
                            .unwrap_or_default()
                            .trim()
                            .to_string(),
                    };
                    (key, to_json(v))
                })
                .collect(),
        ),
        serde_yaml::Value::Tagged(tagged) => to_json(&tagged.value),
    }
}

/// A structural OpenAPI v3 schema as a draft 2020-12 JSON schema that rejects what the API
/// server would prune. `in_junctor`: inside `allOf`/`anyOf`/`oneOf`/`not`, where a
/// structural schema may not declare fields of its own, so nothing is closed there.
pub fn structural_to_json_schema(node: &Value, in_junctor: bool) -> Value {
    let Value::Object(map) = node else {
        return node.clone();
    };
    let flag = |name: &str| map.get(name).and_then(Value::as_bool) == Some(true);
    let mut out = Map::new();
    for (key, value) in map {
        match key.as_str() {
            "properties" => {
                let props = value
                    .as_object()
                    .map(|p| {
                        p.iter()
                            .map(|(k, v)| (k.clone(), structural_to_json_schema(v, false)))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Object(props));
            }
            "items" | "additionalProperties" => {
                out.insert(key.clone(), structural_to_json_schema(value, false));
            }
            "allOf" | "anyOf" | "oneOf" => {
                let branches = value
                    .as_array()
                    .map(|b| {
                        b.iter()
                            .map(|v| structural_to_json_schema(v, true))
                            .collect()
                    })
                    .unwrap_or_default();
                out.insert(key.clone(), Value::Array(branches));
            }
            "not" => {
                out.insert(key.clone(), structural_to_json_schema(value, true));
            }
            // Documentation, and the extensions read below.
            "description" | "example" | "externalDocs" | "default" | "nullable" => {}
            _ if key.starts_with("x-kubernetes-") => {}
            _ => {
                out.insert(key.clone(), value.clone());
            }
        }
    }
    if flag("x-kubernetes-int-or-string") {
        out.insert("type".into(), json!(["integer", "string"]));
    }
    if flag("x-kubernetes-embedded-resource") {
        let props = out
            .entry("properties")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("properties is an object");
        for (field, schema) in [
            ("apiVersion", json!({"type": "string"})),
            ("kind", json!({"type": "string"})),
            ("metadata", json!({"type": "object"})),
        ] {
            props.entry(field).or_insert(schema);
        }
    }
    let is_object =
        out.get("type").and_then(Value::as_str) == Some("object") || out.contains_key("properties");
    // NB: a structural schema prunes every field it does not list, even under an object
    // that lists none; `x-kubernetes-preserve-unknown-fields` is the only way to keep them.
    if is_object
        && !in_junctor
        && !flag("x-kubernetes-preserve-unknown-fields")
        && !out.contains_key("additionalProperties")
    {
        out.insert("additionalProperties".into(), Value::Bool(false));
    }
    if flag("nullable") {
        if let Some(Value::String(ty)) = out.get("type").cloned() {
            out.insert("type".into(), json!([ty, "null"]));
        }
        if let Some(Value::Array(options)) = out.get_mut("enum") {
            options.push(Value::Null);
        }
    }
    if map.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        out.insert("uniqueItems".into(), Value::Bool(true));
    }
    Value::Object(out)
}

/// One version of one CRD.
struct CrdVersion {
    api_version: String,
    kind: String,
    /// `strimzi-kafka-operator 0.47.0`: whose CRD it is.
    origin: String,
    storage: bool,
    /// The `openAPIV3Schema` as published (for the CEL rules).
    openapi: Value,
    schema: JsonSchema,
}

/// The CRDs of the catalogue, by apiVersion and kind.
#[derive(Default)]
pub struct Crds {
    versions: Vec<CrdVersion>,
}

impl fmt::Debug for Crds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.versions
                    .iter()
                    .map(|v| format!("{} {}", v.api_version, v.kind)),
            )
            .finish()
    }
}

impl Crds {
    /// Every served version of every CustomResourceDefinition in `files`
    /// (`(origin, path, text)`), compiled.
    pub fn from_files(files: &[(String, String, String)]) -> anyhow::Result<Self> {
        use serde::Deserialize as _;
        let mut versions = Vec::new();
        for (origin, path, text) in files {
            for document in serde_yaml::Deserializer::from_str(text) {
                let doc = serde_yaml::Value::deserialize(document)
                    .with_context(|| format!("{origin} {path}"))?;
                if doc["kind"].as_str() != Some("CustomResourceDefinition") {
                    continue;
                }
                let doc = to_json(&doc);
                let spec = &doc["spec"];
                let (Some(group), Some(kind)) =
                    (spec["group"].as_str(), spec["names"]["kind"].as_str())
                else {
                    anyhow::bail!("{origin} {path}: a CRD without spec.group or spec.names.kind");
                };
                for version in spec["versions"].as_array().into_iter().flatten() {
                    let name = version["name"].as_str().unwrap_or_default();
                    if version["served"].as_bool() != Some(true) {
                        continue;
                    }
                    let openapi = version["schema"]["openAPIV3Schema"].clone();
                    let mut converted = structural_to_json_schema(&openapi, false);
                    // `metadata` is checked as an ObjectMeta, not by the CRD.
                    if let Some(props) = converted
                        .get_mut("properties")
                        .and_then(Value::as_object_mut)
                    {
                        props.insert("metadata".into(), json!({"type": "object"}));
                    }
                    let what = format!("{origin} {path} ({group}/{name} {kind})");
                    versions.push(CrdVersion {
                        api_version: format!("{group}/{name}"),
                        kind: kind.to_string(),
                        origin: origin.clone(),
                        storage: version["storage"].as_bool() == Some(true),
                        // NB: draft 2020-12, where `format` (and so the meta-schema's `format: regex`
                        // of every pattern) is an annotation; OpenAPI 3.0's `exclusiveMinimum`
                        // booleans, the one draft 4 trait that would differ, are not used by
                        // structural schemas' generators (controller-gen, Strimzi's crd-generator).
                        schema: JsonSchema::compile(
                            converted,
                            &what,
                            Some(jsonschema::Draft::Draft202012),
                        )?,
                        openapi,
                    });
                }
            }
        }
        Ok(Crds { versions })
    }

    /// The apiVersions under which `kind` is served, the storage version first.
    pub fn api_versions(&self, kind: &str) -> Vec<String> {
        let mut out: Vec<&CrdVersion> = self.versions.iter().filter(|v| v.kind == kind).collect();
        out.sort_by_key(|v| !v.storage);
        out.into_iter().map(|v| v.api_version.clone()).collect()
    }

    /// Findings of a custom resource against its CRD; `None` when no CRD serves its
    /// apiVersion and kind.
    pub fn check(&self, file: &YamlFile, doc: &Doc) -> Option<Vec<Finding>> {
        let (api_version, kind) = doc.type_meta()?;
        let crd = self
            .versions
            .iter()
            .find(|v| v.api_version == api_version && v.kind == kind)?;
        let rel = &file.rel;
        let name = doc.name();
        let mut findings = Vec::new();
        if !crd.storage
            && let Some(storage) = self
                .versions
                .iter()
                .find(|v| v.kind == kind && v.storage && v.origin == crd.origin)
        {
            findings.push(Finding::new(
                rel,
                doc.line_of(&[Seg::Key("apiVersion".into())]),
                format!(
                    "wrong apiVersion `{api_version}` for {kind}: served by {}, but converted to its storage version {} (older versions go away first)",
                    crd.origin, storage.api_version
                ),
                format!("use `apiVersion: {}`", storage.api_version),
            ));
        }
        let instance = to_json(&doc.value);
        for violation in crd.schema.violations(&instance) {
            let at = path_string(&violation.path);
            let (message, fix) = if violation.allowed.is_empty() {
                (
                    format!("{kind} {name}: `{at}`: {}", violation.message),
                    format!("match the {kind} CRD of {}", crd.origin),
                )
            } else {
                (
                    format!("{kind} {name}: unknown field `{at}` (the API server prunes it)",),
                    did_you_mean(
                        &violation.path,
                        &violation.allowed,
                        &format!("the {kind} CRD of {}", crd.origin),
                    ),
                )
            };
            findings.push(Finding::new(
                rel,
                doc.line_of(&violation.path),
                message,
                fix,
            ));
        }
        for (path, message) in super::cel::findings(&crd.openapi, &instance) {
            findings.push(Finding::new(
                rel,
                doc.line_of(&path),
                format!("{kind} {name}: `{}`: {message}", path_string(&path)),
                format!("satisfy the rule of the {kind} CRD of {}", crd.origin),
            ));
        }
        Some(findings)
    }
}

/// The fix of an unknown field: the closest allowed name, or the allowed names.
pub fn did_you_mean(path: &[Seg], allowed: &[String], whose: &str) -> String {
    let Some(Seg::Key(field)) = path.last() else {
        return String::new();
    };
    let closest = allowed
        .iter()
        .map(|a| {
            (
                strsim::damerau_levenshtein(&a.to_lowercase(), &field.to_lowercase()),
                a,
            )
        })
        .min();
    match closest {
        Some((distance, name)) if distance <= 3.max(field.len() / 3) => {
            format!("did you mean `{name}`? ({whose})")
        }
        _ if allowed.len() > 12 => format!(
            "{whose} allows here: {}, … ({} in all)",
            allowed[..12].join(", "),
            allowed.len()
        ),
        _ => format!("{whose} allows here: {}", allowed.join(", ")),
    }
}

#[cfg(test)]
mod tests;
