//! PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), and strategic merge patch
//! approximated as a merge patch without its directives.
//!
//! The approximation is exact for what `kubectl label`, `annotate`, `scale` and `apply` of a
//! changed scalar send; a strategic patch of a list (containers by name, ports by port) replaces
//! the whole list instead of merging it by key.

use serde_json::Value;

use crate::error::Error;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    StrategicMerge,
}

impl PatchType {
    pub fn from_content_type(content_type: &str) -> Result<Self, Error> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        match media {
            "application/json-patch+json" => Ok(PatchType::Json),
            "application/merge-patch+json" => Ok(PatchType::Merge),
            "application/strategic-merge-patch+json" => Ok(PatchType::StrategicMerge),
            other => Err(Error::UnsupportedMediaType(other.to_string())),
        }
    }

    pub fn apply(self, target: &mut Value, patch: &Value) -> Result<(), Error> {
        match self {
            PatchType::Json => {
                let ops: json_patch::Patch = serde_json::from_value(patch.clone())
                    .map_err(|e| Error::BadRequest(format!("invalid JSON patch: {e}")))?;
                json_patch::patch(target, &ops.0)
                    .map_err(|e| Error::Invalid(format!("JSON patch failed: {e}")))
            }
            PatchType::Merge => {
                json_patch::merge(target, patch);
                Ok(())
            }
            PatchType::StrategicMerge => {
                json_patch::merge(target, &without_directives(patch));
                Ok(())
            }
        }
    }
}

/// Drops `$patch`, `$retainKeys`, `$setElementOrder/...` and the other `$` directives of a
/// strategic merge patch, which a plain merge would store as fields.
fn without_directives(patch: &Value) -> Value {
    match patch {
        Value::Object(map) => Value::Object(
            map.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), without_directives(v)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(without_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn patch_types() {
        let doc =
            json!({ "metadata": { "labels": { "a": "1", "b": "2" } }, "spec": { "replicas": 1 } });

        let mut merged = doc.clone();
        PatchType::Merge
            .apply(
                &mut merged,
                &json!({ "metadata": { "labels": { "a": null, "c": "3" } } }),
            )
            .unwrap();
        assert_eq!(merged["metadata"]["labels"], json!({ "b": "2", "c": "3" }));

        let mut strategic = doc.clone();
        let patch = json!({ "$setElementOrder/x": [], "spec": { "replicas": 4, "$retainKeys": ["replicas"] } });
        PatchType::StrategicMerge
            .apply(&mut strategic, &patch)
            .unwrap();
        assert_eq!(strategic["spec"], json!({ "replicas": 4 }));

        let mut patched = doc.clone();
        let ops = json!([{ "op": "replace", "path": "/spec/replicas", "value": 3 }, { "op": "remove", "path": "/metadata/labels/a" }]);
        PatchType::Json.apply(&mut patched, &ops).unwrap();
        assert_eq!(
            patched,
            json!({ "metadata": { "labels": { "b": "2" } }, "spec": { "replicas": 3 } })
        );
        assert!(
            PatchType::Json
                .apply(&mut patched, &json!([{ "op": "remove", "path": "/nope" }]))
                .is_err()
        );

        assert_eq!(
            PatchType::from_content_type("application/merge-patch+json; charset=utf-8").unwrap(),
            PatchType::Merge
        );
        assert!(PatchType::from_content_type("application/apply-patch+yaml").is_err());
    }
}
