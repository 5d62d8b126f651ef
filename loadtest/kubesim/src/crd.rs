//! CustomResourceDefinitions: what installing one does on the API server, for the custom kinds
//! of the kind table (`Desc::custom`), which the simulator serves while their definition exists.
//!
//! A definition must describe its kind as the table does (the simulator cannot serve a kind it
//! does not know); its `openAPIV3Schema` is then enforced on the custom objects as a structural
//! schema is: wrong types and missing required fields are refused, unknown fields pruned.
//! Not simulated: formats, patterns, bounds, enums, defaults, CEL rules, conversion webhooks.

use serde_json::{Value, json};

use crate::{error::Error, kinds::Kind};

/// Checks a definition against the kind it defines, and fills in the status the API server
/// reports once it serves the kind.
pub(crate) fn admit_definition(obj: &mut Value) -> Result<(), Error> {
    let name = obj["metadata"]["name"].as_str().unwrap_or_default();
    let invalid = |why: String| {
        Error::Invalid(format!(
            "CustomResourceDefinition.apiextensions.k8s.io \"{name}\" is invalid: {why}"
        ))
    };
    let kind = Kind::defined_by(name).ok_or_else(|| {
        let known: Vec<String> = Kind::ALL
            .iter()
            .filter(|k| k.desc().custom)
            .map(|k| k.desc().resource())
            .collect();
        invalid(format!(
            "metadata.name: the simulator serves only the custom resources it knows ({})",
            known.join(", ")
        ))
    })?;
    let desc = kind.desc();
    let spec = &obj["spec"];
    let scope = if desc.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    };
    for (field, want) in [
        ("spec.group", desc.group),
        ("spec.names.plural", desc.plural),
        ("spec.names.kind", desc.name),
        ("spec.scope", scope),
    ] {
        let have = field
            .split('.')
            .skip(1)
            .fold(spec, |v, key| &v[key])
            .as_str()
            .unwrap_or_default();
        if have != want {
            return Err(invalid(format!(
                "{field}: Invalid value: {have:?}: must be {want:?} for {name}"
            )));
        }
    }
    let served = spec["versions"].as_array().into_iter().flatten().any(|v| {
        v["name"] == desc.version
            && v["served"] == true
            && v["schema"]["openAPIV3Schema"].is_object()
    });
    if !served {
        return Err(invalid(format!(
            "spec.versions: Invalid value: version {} must be served, with a schema",
            desc.version
        )));
    }
    obj["status"] = json!({
        "acceptedNames": spec["names"],
        "conditions": [
            { "type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found" },
            { "type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted" },
        ],
        "storedVersions": [desc.version],
    });
    Ok(())
}

/// The schema of a kind's served version in its definition.
pub(crate) fn schema_of(definition: &Value, kind: Kind) -> Option<&Value> {
    definition["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == kind.desc().version)
        .map(|v| &v["schema"]["openAPIV3Schema"])
}

/// Makes a custom object conform to its schema: type errors are refused, fields the schema
/// does not name are dropped. `apiVersion`, `kind` and `metadata` are the API server's own.
pub(crate) fn conform(schema: &Value, kind: Kind, obj: &mut Value) -> Result<(), Error> {
    let Some(fields) = obj.as_object_mut() else {
        return Err(Error::BadRequest("the body is not a JSON object".into()));
    };
    let name = fields
        .get("metadata")
        .and_then(|m| m["name"].as_str())
        .unwrap_or_default()
        .to_string();
    let server_owned = |field: &str| matches!(field, "apiVersion" | "kind" | "metadata");
    fields.retain(|field, _| server_owned(field) || schema["properties"].get(field).is_some());
    let missing = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .find(|field| !fields.contains_key(*field));
    match missing {
        Some(field) => Err(format!("{field}: Required value")),
        None => fields
            .iter_mut()
            .filter(|(field, _)| !server_owned(field))
            .try_for_each(|(field, value)| check(&schema["properties"][field], value, field)),
    }
    .map_err(|why| {
        Error::Invalid(format!(
            "{}.{} \"{name}\" is invalid: {why}",
            kind.name(),
            kind.desc().group
        ))
    })
}

/// Checks `value` at `path` against `schema`, pruning unknown fields of objects.
fn check(schema: &Value, value: &mut Value, path: &str) -> Result<(), String> {
    if value.is_null() && schema["nullable"] == true {
        return Ok(());
    }
    let want = schema["type"].as_str().unwrap_or_default();
    let fits = match want {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        // untyped (x-kubernetes-int-or-string, preserve-unknown-fields): anything goes
        _ => true,
    };
    if !fits {
        return Err(format!(
            "{path}: Invalid value: {}: {path} in body must be of type {want}",
            type_name(value)
        ));
    }
    match value {
        Value::Object(fields) => {
            for required in schema["required"].as_array().into_iter().flatten() {
                if let Some(required) = required.as_str()
                    && !fields.contains_key(required)
                {
                    return Err(format!("{path}.{required}: Required value"));
                }
            }
            let Some(properties) = schema["properties"].as_object() else {
                // a map (additionalProperties) or preserved unknown fields: kept as they are
                return Ok(());
            };
            fields.retain(|field, _| properties.contains_key(field));
            for (field, value) in fields.iter_mut() {
                check(&properties[field], value, &format!("{path}.{field}"))?;
            }
        }
        Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                check(&schema["items"], item, &format!("{path}[{i}]"))?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "rules": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "required": ["key"],
                                "properties": {
                                    "key": { "type": "string" },
                                    "on": { "type": "boolean" },
                                    "note": { "type": "string", "nullable": true },
                                },
                            },
                        },
                        "extra": { "type": "object", "additionalProperties": { "type": "string" } },
                    },
                },
            },
        })
    }

    /// A LabelMap named `m`; without spec when `spec` is null.
    fn label_map(spec: Value) -> Value {
        let mut obj = json!({ "apiVersion": "bulkhead.io/v1", "kind": "LabelMap", "metadata": { "name": "m" } });
        if !spec.is_null() {
            obj["spec"] = spec;
        }
        obj
    }

    #[test]
    fn conforming_objects_lose_only_unknown_fields() {
        let mut obj = label_map(json!({
            "rules": [{ "key": "a", "on": true, "note": null, "typo": 1 }],
            "extra": { "anything": "kept" },
            "unknown": "pruned",
        }));
        obj["status"] = json!({ "not": "in the schema" });
        conform(&schema(), Kind::LabelMap, &mut obj).unwrap();
        assert_eq!(
            obj,
            label_map(json!({
                "rules": [{ "key": "a", "on": true, "note": null }],
                "extra": { "anything": "kept" },
            }))
        );
    }

    #[test]
    fn wrong_types_and_missing_fields_are_refused_with_their_path() {
        for (spec, complaint) in [
            (
                json!({ "rules": "x" }),
                "spec.rules: Invalid value: string: spec.rules in body must be of type array",
            ),
            (
                json!({ "rules": [{ "key": 1 }] }),
                "spec.rules[0].key: Invalid value: integer",
            ),
            (
                json!({ "rules": [{ "on": true }] }),
                "spec.rules[0].key: Required value",
            ),
            (Value::Null, "spec: Required value"),
            (
                json!({ "rules": [{ "key": "a", "on": "yes" }] }),
                "spec.rules[0].on: Invalid value: string",
            ),
        ] {
            let error = conform(&schema(), Kind::LabelMap, &mut label_map(spec))
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("LabelMap.bulkhead.io \"m\" is invalid: ")
                    && error.contains(complaint),
                "{error}"
            );
        }
    }

    fn definition() -> Value {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": { "name": "labelmaps.bulkhead.io" },
            "spec": {
                "group": "bulkhead.io",
                "names": { "kind": "LabelMap", "plural": "labelmaps", "singular": "labelmap" },
                "scope": "Cluster",
                "versions": [{ "name": "v1", "served": true, "storage": true, "schema": { "openAPIV3Schema": schema() } }],
            },
        })
    }

    #[test]
    fn a_definition_must_describe_the_kind_as_the_simulator_serves_it() {
        let mut crd = definition();
        admit_definition(&mut crd).unwrap();
        assert_eq!(crd["status"]["conditions"][1]["type"], "Established");
        assert_eq!(schema_of(&crd, Kind::LabelMap), Some(&schema()));

        let mut namespaced = definition();
        namespaced["spec"]["scope"] = json!("Namespaced");
        let mut unserved = definition();
        unserved["spec"]["versions"][0]["served"] = json!(false);
        let mut unknown = definition();
        unknown["metadata"]["name"] = json!("widgets.example.com");
        for (mut crd, complaint) in [
            (namespaced, "spec.scope"),
            (unserved, "spec.versions"),
            (unknown, "labelmaps.bulkhead.io"),
        ] {
            let error = admit_definition(&mut crd).unwrap_err().to_string();
            assert!(error.contains(complaint), "{error}");
        }
    }
}
