//! The HTTP API: discovery, and one generic handler for every kind's paths
//! (`/api/v1/...`, `/apis/<group>/<version>/...`, namespaced or cluster-wide).

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use serde_json::{Value, json};

use crate::{
    cluster::StatusFrom,
    error::Error,
    kinds::Kind,
    openapi,
    patch::PatchType,
    selector::{self, FieldSelector, LabelSelector},
    sim::Inner,
    store::{Key, Obj},
    table, watch,
};

/// The Kubernetes version the simulator claims to be: the oldest kube 5 supports, and within
/// kubectl 1.32's supported skew.
pub(crate) const GIT_VERSION: &str = "v1.33.0";

pub(crate) fn router(inner: Arc<Inner>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/api", get(core_versions))
        .route("/apis", get(groups))
        .route("/api/{*rest}", any(core))
        .route("/apis/{*rest}", any(grouped))
        .route("/openapi/v3", get(openapi::index))
        .route("/openapi/v3/{*gv}", get(openapi::document))
        .route("/healthz", get(ok))
        .route("/livez", get(ok))
        .route("/readyz", get(ok))
        .fallback(|| async { Error::NoSuchPath })
        .with_state(inner)
}

async fn ok() -> &'static str {
    "ok"
}

async fn version() -> Json<Value> {
    Json(json!({
        "major": "1",
        "minor": "33",
        "gitVersion": GIT_VERSION,
        "gitCommit": "kubesim",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T00:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }))
}

async fn core_versions(State(inner): State<Arc<Inner>>) -> Json<Value> {
    Json(json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{ "clientCIDR": "0.0.0.0/0", "serverAddress": inner.addr.to_string() }],
    }))
}

fn group_doc(group: &str) -> Value {
    let version = json!({ "groupVersion": format!("{group}/v1"), "version": "v1" });
    json!({ "kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": [version], "preferredVersion": version })
}

async fn groups(State(inner): State<Arc<Inner>>) -> Json<Value> {
    let groups = inner.read(|c| Kind::groups(|k| c.serves(k)));
    let groups: Vec<Value> = groups.into_iter().map(group_doc).collect();
    Json(json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": groups }))
}

fn resource_list(inner: &Inner, group: &str, version: &str) -> Result<Value, Error> {
    let descs: Vec<_> =
        inner.read(|c| Kind::in_group_version(group, version, |k| c.serves(k)).collect());
    if descs.is_empty() {
        return Err(Error::NoSuchPath);
    }
    let group_version = descs[0].api_version();
    let resources: Vec<Value> = descs.iter().flat_map(|d| d.api_resources()).collect();
    Ok(
        json!({ "kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources }),
    )
}

/// The query parameters the simulator reads; the others (`fieldManager`, `fieldValidation`,
/// `pretty`, `resourceVersionMatch`, ...) are accepted and ignored.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Params {
    watch: Option<String>,
    label_selector: Option<String>,
    field_selector: Option<String>,
    limit: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
    pub resource_version: Option<String>,
    allow_watch_bookmarks: Option<String>,
    timeout_seconds: Option<String>,
    send_initial_events: Option<String>,
    dry_run: Option<String>,
}

fn flag(value: &Option<String>) -> bool {
    matches!(value.as_deref(), Some("true" | "1"))
}

impl Params {
    pub fn bookmarks(&self) -> bool {
        flag(&self.allow_watch_bookmarks)
    }
    pub fn send_initial_events(&self) -> bool {
        flag(&self.send_initial_events)
    }
    /// The watch's timeout; 0 or none means the server's default, as on the API server.
    pub fn timeout_seconds(&self) -> Option<u64> {
        self.timeout_seconds
            .as_deref()
            .and_then(|t| t.parse().ok())
            .filter(|&t| t > 0)
    }
}

/// Which objects a list or watch selects.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub namespace: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl Filter {
    fn new(namespace: Option<String>, params: &Params) -> Result<Self, Error> {
        Ok(Filter {
            namespace,
            labels: LabelSelector::parse(params.label_selector.as_deref().unwrap_or_default())?,
            fields: FieldSelector::parse(params.field_selector.as_deref().unwrap_or_default())?,
        })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| obj["metadata"]["namespace"] == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}

/// A request path resolved against the kind table.
#[derive(Debug)]
struct Target {
    kind: Kind,
    namespace: Option<String>,
    name: Option<String>,
    scale: bool,
}

impl Target {
    fn key(&self) -> Key {
        (
            self.namespace.clone().unwrap_or_default(),
            self.name.clone().unwrap_or_default(),
        )
    }
}

enum Route {
    Group(String),
    Resources(String, String),
    Resource(Target),
}

fn route(group: &str, rest: &str) -> Result<Route, Error> {
    let segments: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    let Some((&version, segments)) = segments.split_first() else {
        return Ok(Route::Group(group.to_string()));
    };
    if segments.is_empty() {
        return Ok(Route::Resources(group.to_string(), version.to_string()));
    }
    let namespaced =
        |plural: &str| Kind::from_plural(group, version, plural).is_some_and(Kind::namespaced);
    // `namespaces/x/<plural>/...` is inside namespace x; `namespaces/x` is the namespace itself
    let (namespace, segments) = match segments {
        ["namespaces", ns, plural, ..] if namespaced(plural) => {
            (Some(ns.to_string()), &segments[2..])
        }
        _ => (None, segments),
    };
    let kind = Kind::from_plural(group, version, segments[0]).ok_or(Error::NoSuchPath)?;
    let name = segments.get(1).map(|n| n.to_string());
    let scale = match segments.get(2..) {
        None | Some([]) => false,
        Some(["scale"]) if kind.desc().scalable => true,
        Some(_) => return Err(Error::NoSuchPath),
    };
    // a named namespaced object needs its namespace in the path
    if kind.namespaced() && namespace.is_none() && name.is_some() {
        return Err(Error::NoSuchPath);
    }
    Ok(Route::Resource(Target {
        kind,
        namespace,
        name,
        scale,
    }))
}

/// What a handler got, past the path.
struct Request {
    method: Method,
    params: Params,
    headers: HeaderMap,
    body: Bytes,
}

async fn core(
    State(inner): State<Arc<Inner>>,
    method: Method,
    Path(rest): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    handle(
        inner,
        "",
        &rest,
        Request {
            method,
            params,
            headers,
            body,
        },
    )
    .await
}

async fn grouped(
    State(inner): State<Arc<Inner>>,
    method: Method,
    Path(rest): Path<String>,
    Query(params): Query<Params>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (group, rest) = rest.split_once('/').unwrap_or((&rest, ""));
    handle(
        inner,
        group,
        rest,
        Request {
            method,
            params,
            headers,
            body,
        },
    )
    .await
}

async fn handle(inner: Arc<Inner>, group: &str, rest: &str, req: Request) -> Response {
    let target = match route(group, rest) {
        Ok(Route::Group(group))
            if inner.read(|c| Kind::groups(|k| c.serves(k)).contains(&group.as_str())) =>
        {
            return Json(group_doc(&group)).into_response();
        }
        Ok(Route::Resources(group, version)) => {
            return json_result(resource_list(&inner, &group, &version));
        }
        // a custom resource whose definition is not installed is not there at all
        Ok(Route::Resource(target)) if !inner.read(|c| c.serves(target.kind)) => {
            return Error::NoSuchPath.into_response();
        }
        Ok(Route::Resource(target)) => target,
        Ok(Route::Group(_)) => return Error::NoSuchPath.into_response(),
        Err(e) => return e.into_response(),
    };
    if req.method == Method::GET && target.name.is_none() && flag(&req.params.watch) {
        return match Filter::new(target.namespace.clone(), &req.params) {
            Ok(filter) => watch::serve(
                inner,
                target.kind,
                filter,
                &req.params,
                table::wanted(&req.headers),
            ),
            Err(e) => e.into_response(),
        };
    }
    match dispatch(&inner, &target, &req) {
        Ok(response) => response,
        Err(e) => e.into_response(),
    }
}

fn dispatch(inner: &Inner, target: &Target, req: &Request) -> Result<Response, Error> {
    let (kind, key) = (target.kind, target.key());
    // writes are not undoable here: refuse a dry run rather than make it real
    if req.method != Method::GET && req.params.dry_run.is_some() {
        return Err(Error::BadRequest(
            "the simulator does not support dryRun".into(),
        ));
    }
    match (&req.method, target.name.is_some(), target.scale) {
        (&Method::GET, false, _) => list(inner, target, req),
        (&Method::POST, false, _) => {
            let mut obj = body_object(&req.body)?;
            if kind.namespaced() {
                let path_ns = target.namespace.as_deref().ok_or(Error::MethodNotAllowed)?;
                match obj["metadata"]["namespace"].as_str() {
                    Some(ns) if ns != path_ns => {
                        return Err(Error::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request"
                                .into(),
                        ));
                    }
                    _ => obj["metadata"]["namespace"] = json!(path_ns),
                }
            }
            let created = inner.write(|c| c.create(kind, obj))?;
            Ok(raw(StatusCode::CREATED, &created))
        }
        (&Method::GET, true, false) => {
            let (obj, rv) = inner.read(|c| Ok::<_, Error>((c.get(kind, &key)?, c.store.rv())))?;
            if table::wanted(&req.headers) {
                return Ok(Json(table::render(kind, rv, None, &[obj])).into_response());
            }
            Ok(raw(StatusCode::OK, &obj))
        }
        (&Method::PUT, true, false) => {
            let mut obj = body_object(&req.body)?;
            if obj["metadata"]["name"].as_str() != Some(key.1.as_str()) {
                return Err(Error::BadRequest(
                    "the name of the object does not match the name on the URL".into(),
                ));
            }
            if kind.namespaced() {
                obj["metadata"]["namespace"] = json!(key.0);
            }
            Ok(raw(
                StatusCode::OK,
                &inner.write(|c| c.update(kind, obj, StatusFrom::Stored))?,
            ))
        }
        (&Method::PATCH, true, false) => {
            let patch_type = patch_type(&req.headers)?;
            let patch = body_json(&req.body)?;
            Ok(raw(
                StatusCode::OK,
                &inner.write(|c| c.patch(kind, &key, patch_type, &patch))?,
            ))
        }
        (&Method::DELETE, true, false) => {
            let deleted = inner.write(|c| c.delete(kind, &key))?;
            let d = kind.desc();
            Ok(Json(json!({
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": { "name": key.1, "group": d.group, "kind": d.plural, "uid": deleted.uid() },
            }))
            .into_response())
        }
        (&Method::GET, true, true) => {
            Ok(Json(scale_of(&inner.read(|c| c.get(kind, &key))?)).into_response())
        }
        (&Method::PUT | &Method::PATCH, true, true) => {
            let scaled = inner.write(|c| {
                let mut scale = scale_of(&c.get(kind, &key)?);
                if req.method == Method::PUT {
                    scale = body_json(&req.body)?;
                } else {
                    patch_type(&req.headers)?.apply(&mut scale, &body_json(&req.body)?)?;
                }
                let replicas = scale["spec"]["replicas"]
                    .as_i64()
                    .ok_or_else(|| Error::Invalid("spec.replicas: Required value".into()))?;
                c.scale(kind, &key, replicas)
            })?;
            Ok(Json(scale_of(&scaled)).into_response())
        }
        _ => Err(Error::MethodNotAllowed),
    }
}

fn body_json(body: &Bytes) -> Result<Value, Error> {
    serde_json::from_slice(body)
        .map_err(|e| Error::BadRequest(format!("the request body is not JSON: {e}")))
}

/// A POST or PUT body: an object, with object metadata (empty when absent).
fn body_object(body: &Bytes) -> Result<Value, Error> {
    let mut obj = body_json(body)?;
    let map = obj
        .as_object_mut()
        .ok_or_else(|| Error::BadRequest("the body is not a JSON object".into()))?;
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    if !meta.is_object() {
        return Err(Error::BadRequest("metadata must be an object".into()));
    }
    Ok(obj)
}

fn patch_type(headers: &HeaderMap) -> Result<PatchType, Error> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    PatchType::from_content_type(content_type)
}

fn raw(status: StatusCode, obj: &Arc<Obj>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        obj.raw.clone(),
    )
        .into_response()
}

fn json_result(result: Result<Value, Error>) -> Response {
    match result {
        Ok(value) => Json(value).into_response(),
        Err(e) => e.into_response(),
    }
}

/// The `autoscaling/v1` Scale view of a scalable object.
fn scale_of(obj: &Arc<Obj>) -> Value {
    let (v, meta) = (&obj.value, &obj.value["metadata"]);
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
            "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
        },
        "spec": { "replicas": v["spec"]["replicas"] },
        "status": { "replicas": v["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector::to_query(&v["spec"]["selector"]) },
    })
}

/// A continue token: the list's resourceVersion and the last key served.
fn continue_token(rv: u64, key: &Key) -> String {
    format!("{rv}/{}/{}", key.0, key.1)
}

fn parse_continue(token: &str) -> Result<(u64, Key), Error> {
    let bad = || Error::BadRequest(format!("invalid continue token {token:?}"));
    let mut parts = token.splitn(3, '/');
    let rv = parts
        .next()
        .and_then(|rv| rv.parse().ok())
        .ok_or_else(bad)?;
    let (Some(ns), Some(name)) = (parts.next(), parts.next()) else {
        return Err(bad());
    };
    Ok((rv, (ns.to_string(), name.to_string())))
}

/// LIST, paginated: the pages of one list share its resourceVersion, from which a watch replays
/// whatever changed while the pages were read (the pages themselves show the current state).
fn list(inner: &Inner, target: &Target, req: &Request) -> Result<Response, Error> {
    let kind = target.kind;
    let filter = Filter::new(target.namespace.clone(), &req.params)?;
    let limit = req
        .params
        .limit
        .as_deref()
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|&l| l > 0);
    let resumed = req
        .params
        .continue_token
        .as_deref()
        .map(parse_continue)
        .transpose()?;
    let (rv, items, more) = inner.read(|c| {
        let (rv, after) = match resumed {
            Some((rv, after)) => {
                c.store.check_fresh(kind, rv)?;
                (rv, Some(after))
            }
            None => (c.store.rv(), None),
        };
        let mut items: Vec<Arc<Obj>> = c
            .store
            .iter(kind, target.namespace.as_deref(), after.as_ref())
            .filter(|o| filter.matches(&o.value))
            .take(limit.map_or(usize::MAX, |l| l + 1))
            .cloned()
            .collect();
        let more = limit.is_some_and(|l| items.len() > l);
        if more {
            items.pop();
        }
        Ok::<_, Error>((rv, items, more))
    })?;
    let next = if more {
        items.last().map(|o| continue_token(rv, &o.key()))
    } else {
        None
    };
    if table::wanted(&req.headers) {
        return Ok(Json(table::render(kind, rv, next, &items)).into_response());
    }
    let mut metadata = json!({ "resourceVersion": rv.to_string() });
    if let Some(next) = next {
        metadata["continue"] = json!(next);
    }
    let head = json!({ "kind": format!("{}List", kind.name()), "apiVersion": kind.api_version(), "metadata": metadata });
    // the items are spliced in as stored bytes
    let head = head.to_string();
    let mut body =
        Vec::with_capacity(head.len() + 16 + items.iter().map(|o| o.raw.len() + 1).sum::<usize>());
    body.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
    body.extend_from_slice(b",\"items\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&item.raw);
    }
    body.extend_from_slice(b"]}");
    Ok(([(header::CONTENT_TYPE, "application/json")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(group: &str, rest: &str) -> Target {
        match route(group, rest) {
            Ok(Route::Resource(t)) => t,
            _ => panic!("{rest} is not a resource path"),
        }
    }

    #[test]
    fn routes() {
        let t = target("", "v1/namespaces/default/pods/web-1");
        assert_eq!(
            (t.kind, t.namespace.as_deref(), t.name.as_deref(), t.scale),
            (Kind::Pod, Some("default"), Some("web-1"), false)
        );
        let t = target("", "v1/namespaces/default");
        assert_eq!(
            (t.kind, t.namespace.as_deref(), t.name.as_deref()),
            (Kind::Namespace, None, Some("default"))
        );
        let t = target("", "v1/namespaces");
        assert_eq!((t.kind, t.name.as_deref()), (Kind::Namespace, None));
        let t = target("apps", "v1/namespaces/x/deployments/web/scale");
        assert!(t.scale && t.kind == Kind::Deployment);
        let t = target("", "v1/pods");
        assert_eq!((t.kind, t.namespace.as_deref()), (Kind::Pod, None));
        assert!(matches!(route("", "v1"), Ok(Route::Resources(..))));
        assert!(matches!(route("apps", ""), Ok(Route::Group(_))));
        assert!(route("", "v1/pods/x").is_err());
        assert!(route("apps", "v1/namespaces/x/daemonsets/d/scale").is_err());
        assert!(route("", "v1/namespaces/x/widgets").is_err());
    }

    #[test]
    fn continue_tokens_round_trip() {
        let key = ("ns".to_string(), "a.b".to_string());
        assert_eq!(parse_continue(&continue_token(7, &key)).unwrap(), (7, key));
        assert!(parse_continue("x/y").is_err());
    }
}
