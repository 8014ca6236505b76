//! Tests of the CRD schema conversion and the CEL rules.
use super::*;

#[test]
fn pruned_fields_nullable_and_int_or_string_follow_kubernetes() {
    let openapi = json!({
        "type": "object",
        "properties": {
            "spec": {
                "type": "object",
                "properties": {
                    "port": {"x-kubernetes-int-or-string": true},
                    "note": {"type": "string", "nullable": true},
                    "config": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                },
            },
        },
    });
    let schema = JsonSchema::compile(
        structural_to_json_schema(&openapi, false),
        "test",
        Some(jsonschema::Draft::Draft202012),
    )
    .expect("compiles");
    let ok =
        json!({"spec": {"port": "http", "note": null, "config": {"any": 1}, "labels": {"a": "b"}}});
    assert_eq!(schema.violations(&ok), []);
    assert_eq!(schema.violations(&json!({"spec": {"port": 8080}})), []);
    let bad = schema.violations(&json!({"spec": {"prot": 1}}));
    assert_eq!(bad.len(), 1, "{bad:?}");
    assert_eq!(path_string(&bad[0].path), "spec.prot");
    assert_eq!(bad[0].allowed, ["config", "labels", "note", "port"]);
}

/// Every CEL rule of the pinned CRDs parses: a rule the interpreter cannot even parse
/// would be skipped silently on every resource.
#[test]
fn every_cel_rule_of_the_pinned_crds_parses() {
    let upstream = super::super::upstream::shared().expect("the upstream files load");
    if !upstream.complete() {
        eprintln!("SKIPPED: the upstream files are not in reach");
        return;
    }
    let mut rules = Vec::new();
    for version in &upstream.crds.versions {
        collect_rules(&version.openapi, &mut rules);
    }
    let unparsed: Vec<&String> = rules
        .iter()
        .filter(|rule| cel::Program::compile(rule).is_err())
        .collect();
    assert!(rules.len() > 20, "{rules:?}");
    assert_eq!(unparsed, Vec::<&String>::new());
}

fn collect_rules(schema: &Value, out: &mut Vec<String>) {
    match schema {
        Value::Object(map) => {
            for rule in map
                .get("x-kubernetes-validations")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.extend(rule["rule"].as_str().map(str::to_string));
            }
            map.values().for_each(|v| collect_rules(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_rules(v, out)),
        _ => {}
    }
}

#[test]
fn cel_rules_are_evaluated_and_transition_rules_skipped() {
    let openapi = json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "x-kubernetes-validations": [
                {"rule": "!(has(self.a) && has(self.b))", "message": "a and b are mutually exclusive"},
                {"rule": "self == oldSelf", "message": "immutable"},
            ],
            "properties": {"replicas": {
                "type": "integer",
                "x-kubernetes-validations": [{"rule": "self > 0"}],
            }},
        }},
    });
    assert_eq!(
        super::super::cel::findings(&openapi, &json!({"spec": {"replicas": 0}})),
        [(
            vec![Seg::Key("spec".into()), Seg::Key("replicas".into())],
            "fails the rule `self > 0`".to_string()
        )]
    );
    assert_eq!(
        super::super::cel::findings(&openapi, &json!({"spec": {"a": 1}})),
        []
    );
    assert_eq!(
        super::super::cel::findings(&openapi, &json!({"spec": {"a": 1, "b": 2}})),
        [(
            vec![Seg::Key("spec".into())],
            "a and b are mutually exclusive".to_string()
        )]
    );
}
