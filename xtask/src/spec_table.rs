//! The spec reference (in the document [`DOC`]): one row per field of the CRD's `spec` schema with
//! its type, default, validation and description. It walks whatever schema
//! the operator's CRD has, so a new field needs no change here.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::check::Checks;
use crate::markdown::{self, cell, code};

/// The document that holds the spec reference.
pub const DOC: &str = "docs/reference.md";
/// The marker name of its section there.
pub const SECTION: &str = "spec-reference";

/// Kubernetes core types embedded in the spec, told apart by the fields they
/// have: documented as one row (`[]Type` for a list of them), since their
/// fields are Kubernetes' own (the reader follows the link).
const K8S_TYPES: &[(&[&str], &str)] = &[
    (
        &["limits", "requests"],
        "[`ResourceRequirements`](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#resources)",
    ),
    (
        &["nodeAffinity", "podAffinity", "podAntiAffinity"],
        "[`Affinity`](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#scheduling)",
    ),
    (
        &["effect", "key", "operator", "tolerationSeconds", "value"],
        "[`Toleration`](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#scheduling)",
    ),
    (
        &["maxSkew", "topologyKey", "whenUnsatisfiable"],
        "[`TopologySpreadConstraint`](https://kubernetes.io/docs/reference/kubernetes-api/workload-resources/pod-v1/#scheduling)",
    ),
];

/// One documented field.
#[derive(Debug, PartialEq)]
pub struct Row {
    pub path: String,
    pub kind: String,
    pub default: String,
    pub validation: String,
    pub description: String,
}

/// The storage version's `spec` schema of a CRD.
fn storage_version(crd: &Value) -> &Value {
    let versions = crd["spec"]["versions"]
        .as_array()
        .expect("a CRD has versions");
    versions
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(true))
        .expect("a CRD has a storage version")
}

fn spec_schema(crd: &Value) -> &Value {
    &storage_version(crd)["schema"]["openAPIV3Schema"]["properties"]["spec"]
}

/// Every field under `spec`, depth first, in name order.
pub fn rows(crd: &Value) -> Vec<Row> {
    let mut rows = Vec::new();
    walk(spec_schema(crd), "", &mut rows);
    rows
}

fn walk(schema: &Value, prefix: &str, rows: &mut Vec<Row>) {
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(properties) = schema["properties"].as_object() else {
        return;
    };
    let mut names: Vec<&String> = properties.keys().collect();
    names.sort();
    for name in names {
        let sub = &properties[name];
        let path = format!("{prefix}{name}");
        rows.push(Row {
            path: path.clone(),
            kind: type_of(sub),
            default: default_of(sub, required.contains(name.as_str())),
            validation: validation(sub),
            description: one_line(sub["description"].as_str().unwrap_or("")),
        });
        if k8s_type(sub).is_some() {
            continue;
        }
        if has_properties(sub) {
            walk(sub, &format!("{path}."), rows);
        } else if sub["type"] == "array" && has_properties(&sub["items"]) {
            walk(&sub["items"], &format!("{path}[]."), rows);
        }
    }
}

fn has_properties(schema: &Value) -> bool {
    schema["properties"]
        .as_object()
        .is_some_and(|p| !p.is_empty())
}

/// The Kubernetes type of `schema`, or of its items (`[]Type`).
fn k8s_type(schema: &Value) -> Option<String> {
    let object = |s: &Value| {
        let props = s["properties"].as_object()?;
        K8S_TYPES
            .iter()
            .find(|(fields, _)| fields.iter().all(|f| props.contains_key(*f)))
            .map(|(_, name)| name.to_string())
    };
    object(schema).or_else(|| {
        (schema["type"] == "array")
            .then(|| object(&schema["items"]).map(|name| format!("[]{name}")))
            .flatten()
    })
}

fn type_of(s: &Value) -> String {
    if let Some(k) = k8s_type(s) {
        return k;
    }
    if s["x-kubernetes-int-or-string"] == true {
        return "int or string".into();
    }
    let t = match &s["type"] {
        Value::String(t) => Some(t.clone()),
        Value::Array(ts) => Some(
            ts.iter()
                .filter_map(Value::as_str)
                .filter(|t| *t != "null")
                .collect::<Vec<_>>()
                .join("/"),
        ),
        _ => None,
    }
    .filter(|t| !t.is_empty());
    if s.get("enum").is_some() {
        return "enum".into();
    }
    match t.as_deref() {
        Some("array") => {
            let items = &s["items"];
            let inner = if has_properties(items) {
                "object".to_string()
            } else {
                type_of(items)
            };
            format!("[]{inner}")
        }
        Some("object") if s.get("additionalProperties").is_some() && !has_properties(s) => {
            match &s["additionalProperties"] {
                ap @ Value::Object(_) => format!("map[string]{}", type_of(ap)),
                _ => "map[string]any".into(),
            }
        }
        Some("integer") if s["format"].is_string() => {
            format!("integer ({})", s["format"].as_str().unwrap_or_default())
        }
        None => match s.get("anyOf").or_else(|| s.get("oneOf")) {
            Some(Value::Array(options)) => format!(
                "any of: {}",
                options.iter().map(type_of).collect::<Vec<_>>().join(", ")
            ),
            _ => "any".into(),
        },
        Some(t) => t.to_string(),
    }
}

fn default_of(s: &Value, required: bool) -> String {
    match s.get("default") {
        Some(Value::String(d)) if d.is_empty() => code("\"\""),
        Some(Value::String(d)) => code(d),
        Some(d) => {
            let json = d.to_string();
            if d.is_object() && json.chars().count() > 40 {
                "see fields".into()
            } else {
                code(&json)
            }
        }
        None if required => "required".into(),
        None => "unset".into(),
    }
}

/// A number as written in a schema: whole floats without `.0`.
fn number(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn validation(s: &Value) -> String {
    let mut out = Vec::new();
    if let Some(values) = s["enum"].as_array() {
        let values: Vec<String> = values
            .iter()
            .filter(|v| !v.is_null())
            .map(|v| code(&scalar(v)))
            .collect();
        out.push(format!("one of {}", values.join(", ")));
    }
    for (key, label) in [
        ("minimum", ">="),
        ("maximum", "<="),
        ("exclusiveMinimum", ">"),
        ("exclusiveMaximum", "<"),
    ] {
        let v = &s[key];
        // OpenAPI v3.0 style flags go with minimum/maximum.
        if v.is_boolean() || v.is_null() {
            continue;
        }
        let label = match key {
            "minimum" if s["exclusiveMinimum"] == true => ">",
            "maximum" if s["exclusiveMaximum"] == true => "<",
            _ => label,
        };
        out.push(format!("{label} {}", number(v)));
    }
    for (key, label) in [
        ("minLength", "length >="),
        ("maxLength", "length <="),
        ("minItems", "items >="),
        ("maxItems", "items <="),
    ] {
        if let Some(v) = s.get(key) {
            out.push(format!("{label} {}", number(v)));
        }
    }
    if let Some(pattern) = s["pattern"].as_str() {
        out.push(format!("matches {}", code(pattern)));
    }
    for rule in s["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let mut text = code(rule["rule"].as_str().unwrap_or_default());
        if let Some(message) = rule["message"].as_str().filter(|m| !m.is_empty()) {
            text.push_str(&format!(" ({message})"));
        }
        out.push(text);
    }
    cell(&out.join("; "))
}

/// The first paragraph, or its first sentence when that is still long (the
/// rest is for `kubectl explain`), on one line.
fn one_line(description: &str) -> String {
    let mut text = description.trim().split("\n\n").next().unwrap_or_default();
    if text.chars().count() > 160 {
        let end = text
            .char_indices()
            .zip(text.chars().skip(1))
            .find(|((_, c), next)| *c == '.' && next.is_whitespace())
            .map(|((i, _), _)| i + 1);
        if let Some(end) = end {
            text = &text[..end];
        }
    }
    cell(&text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The section's text: a note, the table and the rules on the whole spec.
pub fn markdown(crd: &Value) -> String {
    let version = storage_version(crd);
    let mut lines = vec![
        format!(
            "Generated from the CRD (`{}/{}`, kind `{}`) by `make generate`; do not edit by hand.",
            crd["spec"]["group"].as_str().unwrap_or_default(),
            version["name"].as_str().unwrap_or_default(),
            crd["spec"]["names"]["kind"].as_str().unwrap_or_default(),
        ),
        String::new(),
        "| Field | Type | Default | Validation | Description |".into(),
        "|---|---|---|---|---|".into(),
    ];
    for r in rows(crd) {
        lines.push(format!(
            "| {} | {} | {} | {} | {} |",
            code(&r.path),
            r.kind,
            r.default,
            r.validation,
            r.description
        ));
    }
    for (schema, whole) in [
        (&version["schema"]["openAPIV3Schema"], "object"),
        (spec_schema(crd), "`spec`"),
    ] {
        let rules = schema["x-kubernetes-validations"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if rules.is_empty() {
            continue;
        }
        lines.extend([
            String::new(),
            format!("Rules on the whole {whole} (checked by the API server):"),
            String::new(),
        ]);
        for r in rules {
            let message = r["message"]
                .as_str()
                .filter(|m| !m.is_empty())
                .map(|m| format!(": {m}"))
                .unwrap_or_default();
            lines.push(format!(
                "- {}{message}",
                code(r["rule"].as_str().unwrap_or_default())
            ));
        }
    }
    lines.join("\n") + "\n"
}

/// The spec reference in `text` (the text of [`DOC`]) names every field of
/// the CRD with its default, no field the CRD lacks, and is exactly what
/// `make generate` writes.
pub fn check(checks: &mut Checks, text: &str, crd: &Value) {
    let Some(current) = checks.section(DOC, text, SECTION) else {
        return;
    };
    let table = markdown::table(current);
    let documented = table.by_first_code();
    let rows = rows(crd);
    for r in &rows {
        let path = &r.path;
        let cells = documented.get(path);
        if checks.ok(cells.is_some(), || {
            format!("{DOC} spec reference lacks field `spec.{path}` (run `make generate`)")
        }) {
            let there = cells.and_then(|c| c.get(2)).map(String::as_str);
            checks.ok(there == Some(r.default.as_str()), || {
                format!(
                    "{DOC} spec reference: `spec.{path}` default is {} there but {} in the CRD (run `make generate`)",
                    there.unwrap_or("missing"),
                    r.default
                )
            });
        }
    }
    let paths: BTreeSet<&str> = rows.iter().map(|r| r.path.as_str()).collect();
    for path in documented.keys() {
        checks.ok(paths.contains(path.as_str()), || {
            format!("{DOC} spec reference documents `spec.{path}`, which the CRD does not have")
        });
    }
    checks.ok(current == markdown(crd), || {
        "{DOC} spec reference differs from what the CRD generates (run `make generate`)".into()
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(spec: Value) -> Value {
        json!({"spec": {"group": "g.io", "names": {"kind": "K"}, "versions": [
            {"name": "v1", "storage": true, "schema": {"openAPIV3Schema": {"properties": {"spec": spec}}}}
        ]}})
    }

    #[test]
    fn a_new_field_becomes_a_row_with_type_default_and_validation() {
        let c = crd(
            json!({"type": "object", "required": ["image"], "properties": {
                "image": {"type": "string", "minLength": 1, "description": "The image."},
                "workers": {"type": "object", "default": {}, "properties": {
                    "max": {"type": "integer", "format": "int32", "default": 10, "minimum": 1.0, "maximum": 1000}
                }, "x-kubernetes-validations": [{"rule": "self.max > 0", "message": "max | positive"}]},
                "mode": {"type": "string", "enum": ["A", "B", null], "nullable": true}
            }}),
        );
        let rows = rows(&c);
        let paths: Vec<&str> = rows.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, ["image", "mode", "workers", "workers.max"]);
        assert_eq!(rows[0].default, "required");
        assert_eq!(rows[0].validation, "length >= 1");
        assert_eq!(rows[1].kind, "enum");
        assert_eq!(rows[1].validation, "one of `A`, `B`");
        assert_eq!(rows[2].default, "`{}`");
        assert_eq!(rows[2].validation, "`self.max > 0` (max \\| positive)");
        assert_eq!(rows[3].kind, "integer (int32)");
        assert_eq!(rows[3].default, "`10`");
        assert_eq!(rows[3].validation, ">= 1; <= 1000");
    }

    #[test]
    fn kubernetes_types_and_lists_of_them_are_one_linked_row() {
        let c = crd(json!({"type": "object", "properties": {
            "affinity": {"type": "object", "properties": {
                "nodeAffinity": {"type": "object", "properties": {"x": {"type": "string"}}},
                "podAffinity": {"type": "object"}, "podAntiAffinity": {"type": "object"}}},
            "tolerations": {"type": "array", "items": {"type": "object", "properties": {
                "effect": {"type": "string"}, "key": {"type": "string"}, "operator": {"type": "string"},
                "tolerationSeconds": {"type": "integer"}, "value": {"type": "string"}}}},
            "labels": {"type": "array", "items": {"type": "object", "properties": {"key": {"type": "string"}}}},
        }}));
        let rows = rows(&c);
        let kinds: Vec<(&str, &str)> = rows
            .iter()
            .map(|r| (r.path.as_str(), r.kind.as_str()))
            .collect();
        assert_eq!(
            kinds,
            [
                ("affinity", K8S_TYPES[1].1),
                ("labels", "[]object"),
                ("labels[].key", "string"),
                ("tolerations", &*format!("[]{}", K8S_TYPES[2].1)),
            ]
        );
    }

    #[test]
    fn the_check_names_a_missing_field_a_stale_default_and_an_extra_field() {
        let c = crd(json!({"type": "object", "properties": {
            "a": {"type": "integer", "default": 1}, "b": {"type": "string"}
        }}));
        let good = format!(
            "<!-- {SECTION}:start -->\n{}<!-- {SECTION}:end -->\n",
            markdown(&c)
        );
        let mut checks = Checks::default();
        check(&mut checks, &good, &c);
        assert!(checks.failures().is_empty(), "{:?}", checks.failures());

        let bad = good
            .replace("| `a` | integer | `1` |", "| `a` | integer | `2` |")
            .replace("| `b` |", "| `c` |");
        let mut checks = Checks::default();
        check(&mut checks, &bad, &c);
        let failures = checks.failures().join("\n");
        assert!(
            failures.contains("`spec.a` default is `2` there but `1`"),
            "{failures}"
        );
        assert!(failures.contains("lacks field `spec.b`"), "{failures}");
        assert!(
            failures.contains("documents `spec.c`, which the CRD does not have"),
            "{failures}"
        );
        assert!(failures.contains("run `make generate`"), "{failures}");
    }
}
