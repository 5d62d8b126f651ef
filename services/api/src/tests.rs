//! The service over real HTTP on 127.0.0.1, with an in-process bus.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use bulkhead_runtime::bus::{InProcessBus, TypedBus};
use bulkhead_schema::Subject;
use bulkhead_schema::messages::health::{ServiceHeartbeat, ServiceState};
use reqwest::header::{ALLOW, WWW_AUTHENTICATE};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::keys::{ADMIN_KEY_FILE, KEYS_FILE};
use crate::testing::{error_code, http_client};
use crate::*;

struct Running {
    base: String,
    key: String,
    http: reqwest::Client,
    bus: TypedBus,
    stop: CancellationToken,
    served: JoinHandle<Result<(), ApiError>>,
    _data_dir: TempDir,
}

fn mk_bus() -> TypedBus {
    TypedBus::new(Arc::new(InProcessBus::default()))
}

fn mk_config(data_dir: &std::path::Path, expected: &[&str]) -> ApiConfig {
    ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_owned(),
        expected_services: expected.iter().map(|s| s.to_string()).collect(),
    }
}

async fn start_on(bus: TypedBus, expected: &[&str]) -> Running {
    let data_dir = tempfile::tempdir().unwrap();
    let api = bind(mk_config(data_dir.path(), expected), bus.clone())
        .await
        .unwrap();
    let base = format!("http://{}", api.local_addr());
    let key = api
        .new_admin_key()
        .expect("a fresh data dir gets an admin key")
        .to_owned();
    let stop = CancellationToken::new();
    let served = tokio::spawn(api.serve(stop.clone()));
    Running {
        base,
        key,
        http: http_client(),
        bus,
        stop,
        served,
        _data_dir: data_dir,
    }
}

async fn start(expected: &[&str]) -> Running {
    start_on(mk_bus(), expected).await
}

impl Running {
    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(format!("{}{path}", self.base))
    }

    async fn heartbeat(&self, service: &str, instance: &str, state: ServiceState) {
        let heartbeat = ServiceHeartbeat {
            service: service.into(),
            instance: instance.into(),
            state,
            detail: None,
            build_version: "9.9.9".into(),
            started_at_ms: 0,
        };
        self.bus
            .publish(&Subject::service_heartbeats(), &heartbeat)
            .await
            .unwrap();
    }
}

/// Status and JSON body; panics on a body that is not JSON, as no answer of ours may be.
async fn answer(
    request: reqwest::RequestBuilder,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let response = request.send().await.unwrap();
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text:?}"));
    (status, headers, body)
}

/// Polls `probe` until it returns `Some`, for state that arrives over the bus.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut probe: impl FnMut() -> F,
) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn service<'a>(health: &'a Value, name: &str) -> &'a Value {
    health["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {health}"))
}

#[tokio::test]
async fn health_follows_heartbeats() {
    let api = start(&["api", "eventlog"]).await;
    let health = |want: &'static str| {
        let api = &api;
        async move {
            let (status, _, body) = answer(api.get("/api/v2/health")).await;
            (service(&body, "api")["state"] == "healthy"
                && service(&body, "eventlog")["state"] == want)
                .then_some((status, body))
        }
    };

    let (status, body) = eventually("the api's own heartbeat", || health("unreachable")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(service(&body, "eventlog")["instances"], json!([]));

    api.heartbeat("eventlog", "e1", ServiceState::Ready).await;
    let (status, body) = eventually("eventlog ready", || health("healthy")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["status"], "healthy");
    let instance = &service(&body, "eventlog")["instances"][0];
    assert_eq!(instance["instance"], "e1");
    assert_eq!(instance["state"], "ready");
    assert_eq!(instance["detail"], Value::Null);
    assert_eq!(instance["build_version"], "9.9.9");
    assert!(instance["last_seen_ms_ago"].as_u64().unwrap() < 5000);

    api.heartbeat("eventlog", "e1", ServiceState::Stopping)
        .await;
    let (status, body) = eventually("eventlog gone", || health("unreachable")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(service(&body, "eventlog")["instances"], json!([]));
}

#[tokio::test]
async fn requests_without_a_valid_key_get_401_json() {
    let api = start(&[]).await;
    let whoami = "/api/v2/orgs/1/whoami";
    let failures = |reason| metrics::AUTH_FAILURES.with_label_values(&[reason]).get();
    let unauthorized = || metrics::REQUESTS.with_label_values(&["401"]).get();
    let before = (
        failures("missing"),
        failures("wrong"),
        failures("malformed"),
        unauthorized(),
    );

    let cases = [
        ("missing", api.get(whoami)),
        ("wrong bearer", api.get(whoami).bearer_auth("bhk_guess")),
        (
            "wrong basic",
            api.get(whoami).basic_auth("admin", Some("bhk_guess")),
        ),
        (
            "key as basic user name",
            api.get(whoami).basic_auth(&api.key, None::<&str>),
        ),
        (
            "malformed",
            api.get(whoami)
                .header("authorization", format!("Token {}", api.key)),
        ),
    ];
    for (case, request) in cases {
        let (status, headers, body) = answer(request).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{case}");
        assert_eq!(error_code(&body), "unauthorized", "{case}");
        assert_eq!(
            headers[WWW_AUTHENTICATE], r#"Bearer realm="bulkhead""#,
            "{case}"
        );
    }

    // Other tests share the registry, so counts only grow by at least ours.
    assert!(failures("missing") > before.0);
    assert!(failures("wrong") >= before.1 + 2);
    assert!(failures("malformed") >= before.2 + 2);
    assert!(unauthorized() >= before.3 + 5);
}

#[tokio::test]
async fn bearer_and_basic_keys_are_accepted() {
    let api = start(&[]).await;
    let whoami = "/api/v2/orgs/1/whoami";
    for request in [
        api.get(whoami).bearer_auth(&api.key),
        api.get(whoami).basic_auth("any-user-name", Some(&api.key)),
        api.get(whoami).basic_auth("", Some(&api.key)),
    ] {
        let (status, _, body) = answer(request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "admin");
        let href = body["href"].as_str().unwrap();
        let id = href
            .strip_prefix("/orgs/1/api_keys/")
            .unwrap_or_else(|| panic!("{href}"));
        assert!(!id.is_empty() && !api.key.contains(id), "{href}");
    }
}

#[tokio::test]
async fn unknown_paths_need_a_key_before_they_are_404() {
    let api = start(&[]).await;
    for path in [
        "/api/v2/nothing",
        "/api/v2/orgs/1/nothing",
        "/api/v2/orgs/2/whoami",
    ] {
        let (status, _, body) = answer(api.get(path)).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::UNAUTHORIZED, "unauthorized"),
            "{path}"
        );
        let (status, _, body) = answer(api.get(path).bearer_auth(&api.key)).await;
        assert_eq!(
            (status, error_code(&body)),
            (StatusCode::NOT_FOUND, "not_found"),
            "{path}"
        );
    }
    let (_, _, body) = answer(api.get("/api/v2/orgs/2/whoami").bearer_auth(&api.key)).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("organization 2"),
        "{body}"
    );
    let (status, _, body) = answer(api.get("/elsewhere")).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::NOT_FOUND, "not_found")
    );
}

#[tokio::test]
async fn wrong_methods_and_large_bodies_get_the_error_shape() {
    let api = start(&[]).await;
    let (status, headers, body) =
        answer(api.http.post(format!("{}/api/v2/health", api.base))).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
    assert!(headers[ALLOW].to_str().unwrap().contains("GET"));

    let large = vec![b'x'; routes::MAX_REQUEST_BODY_BYTES + 1];
    let request = api
        .http
        .post(format!("{}/api/v2/orgs/1/whoami", api.base))
        .bearer_auth(&api.key)
        .body(large);
    let (status, _, body) = answer(request).await;
    assert_eq!(
        (status, error_code(&body)),
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
    );
}

/// No route takes a JSON body yet, so a stand-in one gets the layers every route gets.
#[tokio::test]
async fn bad_json_gets_the_error_shape() {
    #[derive(serde::Deserialize)]
    struct Wanted {
        #[expect(dead_code, reason = "only its presence is checked")]
        name: String,
    }
    let app = routes::with_outer_layers(
        Router::new().route("/echo", post(|Json(_): Json<Wanted>| async { "ok" })),
    );
    let cases = [
        (
            "syntax",
            Some("application/json"),
            "{",
            StatusCode::BAD_REQUEST,
            "bad_request",
        ),
        (
            "missing field",
            Some("application/json"),
            "{}",
            StatusCode::UNPROCESSABLE_ENTITY,
            "unprocessable_entity",
        ),
        (
            "content type",
            None,
            r#"{"name": "x"}"#,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        (
            "fine",
            Some("application/json"),
            r#"{"name": "x"}"#,
            StatusCode::OK,
            "",
        ),
    ];
    for (case, content_type, body, want_status, want_code) in cases {
        let mut request = Request::post("/echo");
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let response = app
            .clone()
            .oneshot(request.body(Body::from(body)).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), want_status, "{case}");
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        if want_status.is_success() {
            continue;
        }
        let body: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(error_code(&body), want_code, "{case}");
    }
}

#[tokio::test]
async fn the_admin_key_is_created_once_and_never_reprinted() {
    let data_dir = tempfile::tempdir().unwrap();
    let nested = data_dir.path().join("bulkhead-data");
    let bus = mk_bus();

    let first = bind(mk_config(&nested, &[]), bus.clone()).await.unwrap();
    let key = first.new_admin_key().unwrap().to_owned();
    drop(first);
    let key_file = nested.join(ADMIN_KEY_FILE);
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    let hashes = std::fs::read_to_string(nested.join(KEYS_FILE)).unwrap();
    assert!(!hashes.contains(key.trim_start_matches("bhk_")), "{hashes}");

    let second = bind(mk_config(&nested, &[]), bus).await.unwrap();
    assert_eq!(second.new_admin_key(), None);
    assert_eq!(std::fs::read_to_string(&key_file).unwrap().trim(), key);
    let base = format!("http://{}", second.local_addr());
    let stop = CancellationToken::new();
    let served = tokio::spawn(second.serve(stop.clone()));
    let response = http_client()
        .get(format!("{base}/api/v2/orgs/1/whoami"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    stop.cancel();
    served.await.unwrap().unwrap();
}

#[tokio::test]
async fn serve_says_ready_then_stopping_and_ends_on_shutdown() {
    let bus = mk_bus();
    let mut heartbeats = bus
        .subscribe::<ServiceHeartbeat>(&Subject::service_heartbeats())
        .await
        .unwrap();
    let api = start_on(bus, &[]).await;
    let mut next_api_state = async || loop {
        let heartbeat = heartbeats.next().await.unwrap().message;
        if heartbeat.service == "api" {
            return heartbeat.state;
        }
    };
    assert_eq!(next_api_state().await, ServiceState::Ready);
    api.stop.cancel();
    let stopped = async { while next_api_state().await != ServiceState::Stopping {} };
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("a Stopping heartbeat");
    let served = tokio::time::timeout(Duration::from_secs(5), api.served)
        .await
        .expect("serve returns");
    served.unwrap().unwrap();
}

/// The route paths axum holds. axum has no route listing, but its `Debug` output prints the
/// paths of the route table (`RouteId(n): "/path"`) ahead of the fallback table.
fn registered_paths(router: &Router) -> BTreeSet<String> {
    let debug = format!("{router:?}");
    let routes = debug.split("fallback_router").next().unwrap();
    let paths: BTreeSet<String> = routes
        .split("RouteId(")
        .skip(1)
        .filter_map(|entry| {
            entry
                .split_once("): \"")?
                .1
                .split('"')
                .next()
                .map(str::to_owned)
        })
        .collect();
    assert!(
        paths.contains("/api/v2/health"),
        "axum's Debug output changed: {debug}"
    );
    paths
}

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes() {
    let data_dir = tempfile::tempdir().unwrap();
    let api = bind(mk_config(data_dir.path(), &[]), mk_bus())
        .await
        .unwrap();
    let documented: BTreeSet<String> = openapi().paths.paths.keys().cloned().collect();
    assert_eq!(
        registered_paths(&routes::app(api.state.clone())),
        documented
    );
    drop(api);

    // and every documented operation answers, for the documented method
    let api = start(&[]).await;
    let doc = serde_json::to_value(openapi()).unwrap();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            let url = format!("{}{}", api.base, path.replace("{org_id}", "1"));
            let method = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let response = api
                .http
                .request(method.clone(), url)
                .bearer_auth(&api.key)
                .send()
                .await
                .unwrap();
            assert!(
                ![404, 405].contains(&response.status().as_u16()),
                "{method} {path}: {}",
                response.status()
            );
        }
    }
}

#[tokio::test]
async fn the_openapi_document_is_served_with_auth_and_errors_described() {
    let api = start(&[]).await;
    let (status, _, served) = answer(api.get("/api/v2/openapi.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(served, serde_json::to_value(openapi()).unwrap());
    assert!(served["openapi"].as_str().unwrap().starts_with("3."));

    let schemes = &served["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    assert_eq!(schemes["basic"]["scheme"], "basic");
    assert_eq!(served["security"], json!([{"bearer": []}, {"basic": []}]));

    let operation = |path: &str| &served["paths"][path]["get"];
    let whoami = operation("/api/v2/orgs/{org_id}/whoami");
    assert!(whoami["responses"]["401"].is_object(), "{whoami}");
    assert!(whoami["responses"]["default"].is_object(), "{whoami}");
    for public in ["/api/v2/health", "/api/v2/openapi.json"] {
        assert_eq!(operation(public)["security"], json!([{}]), "{public}");
        assert!(
            operation(public)["responses"].get("401").is_none(),
            "{public}"
        );
    }
}
