//! Just enough OpenAPI v3 for kubectl: each kind's PATCH operation, tagged with its
//! group/version/kind and accepting `fieldValidation`.
//!
//! kubectl's default `--validate=strict` asks the OpenAPI documents whether the server validates
//! fields itself; a server that does (or says so, like this one) gets the objects as they are,
//! and kubectl skips its own schema validation, which would need every kind's full schema. With
//! no OpenAPI at all, `kubectl create -f` and `apply -f` fail unless given `--validate=false`.
//! Without schemas, `kubectl apply` computes patches from its built-in types.

use std::sync::Arc;

use axum::{
    Json,
    extract::{Path, State},
};
use serde_json::{Map, Value, json};

use crate::{api::GIT_VERSION, error::Error, kinds::Kind, sim::Inner};

/// `api/v1`, `apis/apps/v1`, ...: the OpenAPI documents there are, one per group/version.
fn group_versions(inner: &Inner) -> Vec<String> {
    let mut out = vec!["api/v1".to_string()];
    let groups = inner.read(|c| Kind::groups(|k| c.serves(k)));
    out.extend(groups.into_iter().map(|g| format!("apis/{g}/v1")));
    out
}

/// `GET /openapi/v3`: where each group/version's document is.
pub(crate) async fn index(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let paths: Map<String, Value> = group_versions(&inner)
        .into_iter()
        .map(|gv| {
            let url = format!("/openapi/v3/{gv}?hash={GIT_VERSION}");
            (gv, json!({ "serverRelativeURL": url }))
        })
        .collect();
    Json(json!({ "paths": paths }))
}

/// `GET /openapi/v3/{api/v1 | apis/<group>/<version>}`.
pub(crate) async fn document(
    State(inner): State<Arc<Inner>>,
    Path(gv): Path<String>,
) -> Result<Json<Value>, Error> {
    let (group, version) = match gv.split('/').collect::<Vec<_>>()[..] {
        ["api", version] => ("", version),
        ["apis", group, version] => (group, version),
        _ => return Err(Error::NoSuchPath),
    };
    let mut paths = Map::new();
    let descs: Vec<_> =
        inner.read(|c| Kind::in_group_version(group, version, |k| c.serves(k)).collect());
    for desc in descs {
        let prefix = if group.is_empty() {
            format!("/api/{version}")
        } else {
            format!("/apis/{group}/{version}")
        };
        let path = if desc.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", desc.plural)
        } else {
            format!("{prefix}/{}/{{name}}", desc.plural)
        };
        let patch = json!({
            "x-kubernetes-group-version-kind": { "group": group, "version": version, "kind": desc.name },
            "parameters": [{ "name": "fieldValidation", "in": "query", "schema": { "type": "string" } }],
        });
        paths.insert(path, json!({ "patch": patch }));
    }
    if paths.is_empty() {
        return Err(Error::NoSuchPath);
    }
    Ok(Json(json!({
        "openapi": "3.0.0",
        "info": { "title": "Kubernetes", "version": GIT_VERSION },
        "paths": paths,
        "components": { "schemas": {} },
    })))
}
