//! The CEL rules (`x-kubernetes-validations`) of a CRD, evaluated with the `cel` crate.

use serde_json::Value;

use super::yaml::Seg;

/// Evaluates the `x-kubernetes-validations` rules of `schema` on `instance`, everywhere
/// the instance has a value: `(path, message)` of every rule that evaluates to false.
///
/// Transition rules (those that read `oldSelf`) are skipped: the API server runs them only
/// on updates. A rule the interpreter cannot evaluate (a Kubernetes CEL library function
/// the `cel` crate lacks, such as `quantity()` or `isURL()`) is skipped too: the API
/// server still enforces it, and a lint that guessed would report false errors.
pub fn findings(schema: &Value, instance: &Value) -> Vec<(Vec<Seg>, String)> {
    let mut out = Vec::new();
    walk_cel(schema, instance, &mut Vec::new(), &mut out);
    out
}

fn walk_cel(schema: &Value, value: &Value, path: &mut Vec<Seg>, out: &mut Vec<(Vec<Seg>, String)>) {
    for rule in schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let Some(expression) = rule["rule"].as_str() else {
            continue;
        };
        if expression.contains("oldSelf") || evaluate(expression, value) != Some(false) {
            continue;
        }
        let message = rule["message"]
            .as_str()
            .map_or_else(|| format!("fails the rule `{expression}`"), str::to_string);
        let mut at = path.clone();
        if let Some(field) = rule["fieldPath"].as_str() {
            at.extend(
                field
                    .trim_start_matches('.')
                    .split('.')
                    .filter(|s| !s.is_empty())
                    .map(|s| Seg::Key(s.to_string())),
            );
        }
        out.push((at, message));
    }
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let child_schema = schema["properties"]
                    .get(key)
                    .or_else(|| schema.get("additionalProperties").filter(|s| s.is_object()));
                if let Some(child_schema) = child_schema {
                    path.push(Seg::Key(key.clone()));
                    walk_cel(child_schema, child, path, out);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    walk_cel(item_schema, item, path, out);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

/// The boolean result of `expression` with `self` bound to `value`, if it has one.
fn evaluate(expression: &str, value: &Value) -> Option<bool> {
    let program = cel::Program::compile(expression).ok()?;
    let mut context = cel::Context::default();
    context.add_variable("self", value).ok()?;
    match program.execute(&context) {
        Ok(cel::Value::Bool(result)) => Some(result),
        _ => None,
    }
}
