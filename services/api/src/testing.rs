//! What the tests of the areas share: the api over real HTTP, with the inventory and labeling
//! services and a single-node event log behind the in-process bus, requests to it, and a
//! simulated clusterlink reporting on the bus.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{InProcessBus, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::inventory::{
    ClusterCredentials, ClusterReport, Observation, ObservedObject, ReportAck,
};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{ApiConfig, bind};

pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Status, `X-Total-Count`, and the JSON body (`Null` when empty).
pub(crate) type Answer = (u16, Option<u64>, Value);

type Stopped<E> = JoinHandle<Result<(), E>>;

pub(crate) struct Stack {
    base: String,
    key: String,
    http: reqwest::Client,
    bus: TypedBus,
    stop: CancellationToken,
    /// Stops labeling alone (a child of `stop`).
    stop_labeling: CancellationToken,
    inventory: Option<Stopped<bulkhead_inventory::InventoryError>>,
    labeling: Option<Stopped<bulkhead_labeling::LabelingError>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// reqwest (built with `rustls-no-provider`) wants a process-wide crypto provider even for
/// plain http; ring is the one the workspace builds.
pub(crate) fn http_client() -> reqwest::Client {
    // Err only when a parallel test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The event log, inventory, labeling and the api, the api's requests going to org 1.
pub(crate) async fn start() -> Stack {
    let bus = TypedBus::new(Arc::new(InProcessBus::default()));
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(bulkhead_eventlog::run(
        bulkhead_eventlog::EventlogConfig::single_node(dir.path().join("eventlog")),
        bus.clone(),
        Health::new("eventlog", "1"),
        stop.clone(),
    ));
    let inventory = tokio::spawn(bulkhead_inventory::run(
        bulkhead_inventory::InventoryConfig::embedded(dir.path().join("inventory")),
        bus.clone(),
        Health::new("inventory", "1"),
        stop.clone(),
    ));
    let stop_labeling = stop.child_token();
    let labeling = tokio::spawn(bulkhead_labeling::run(
        bulkhead_labeling::LabelingConfig::embedded(dir.path().join("labeling")),
        bus.clone(),
        Health::new("labeling", "1"),
        stop_labeling.clone(),
    ));
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("api"),
        expected_services: vec![],
    };
    let api = bind(config, bus.clone()).await.unwrap();
    let base = format!("http://{}/api/v2/orgs/1", api.local_addr());
    let key = api.new_admin_key().unwrap().to_owned();
    tokio::spawn(api.serve(stop.clone()));
    Stack {
        base,
        key,
        http: http_client(),
        bus,
        stop,
        stop_labeling,
        inventory: Some(inventory),
        labeling: Some(labeling),
        _dir: dir,
    }
}

impl Stack {
    /// Stops everything and waits for the services (their checkpoints written) before the
    /// test's runtime goes: sled must not be dropped while the runtime tears its tasks down.
    pub(crate) async fn stop(mut self) {
        self.stop_labeling().await;
        self.stop.cancel();
        let inventory = tokio::time::timeout(WAIT, self.inventory.take().unwrap()).await;
        inventory.expect("inventory stops").unwrap().unwrap();
    }

    pub(crate) async fn stop_labeling(&mut self) {
        self.stop_labeling.cancel();
        if let Some(labeling) = self.labeling.take() {
            let stopped = tokio::time::timeout(WAIT, labeling).await;
            stopped.expect("labeling stops").unwrap().unwrap();
        }
    }

    async fn send(&self, method: Method, path: &str, body: reqwest::Body, json: bool) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .timeout(WAIT)
            .body(body);
        if json {
            request = request.header("content-type", "application/json");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let total = response
            .headers()
            .get("x-total-count")
            .map(|v| v.to_str().unwrap().parse().unwrap());
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
        };
        (status, total, body)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        match body {
            Some(body) => self.send(method, path, body.to_string().into(), true).await,
            None => {
                self.send(method, path, reqwest::Body::default(), false)
                    .await
            }
        }
    }

    pub(crate) async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    pub(crate) async fn post(&self, path: &str, body: Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    pub(crate) async fn put(&self, path: &str, body: Value) -> Answer {
        self.call(Method::PUT, path, Some(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> Answer {
        self.call(Method::DELETE, path, None).await
    }

    /// Sends a body that is not JSON at all, labelled as JSON.
    pub(crate) async fn garbage(&self, method: Method, path: &str) -> Answer {
        self.send(method, path, "{not JSON".into(), true).await
    }

    /// Sends until the answer has `status`, while it is a 503 (a service catching up) or a 404
    /// (labeling not yet holding what inventory committed).
    pub(crate) async fn eventually(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (got, _, answer) = self.call(method.clone(), path, body.clone()).await;
            if got == status {
                return answer;
            }
            assert!(
                [503, 404].contains(&got) && tokio::time::Instant::now() < deadline,
                "{method} {path}: {got} {answer}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Polls `path` until `done` accepts its body.
    pub(crate) async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, _, body) = self.get(path).await;
            if status == 200 && done(&body) {
                return body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} never got there: {status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Pairs a cluster (waiting while inventory starts); the new cluster as the api answers it.
    pub(crate) async fn create_cluster(&self, name: &str) -> Value {
        let body = json!({ "name": name });
        self.eventually(Method::POST, "/container_clusters", Some(body), 201)
            .await
    }

    /// Creates a label (waiting while labeling starts); its href.
    pub(crate) async fn label(&self, key: &str, value: &str) -> String {
        let body = json!({ "key": key, "value": value });
        let label = self
            .eventually(Method::POST, "/labels", Some(body), 201)
            .await;
        label["href"].as_str().unwrap().to_owned()
    }

    /// What a clusterlink would send; inventory accepts all of it.
    pub(crate) async fn report(
        &self,
        (cluster_id, token): &(String, String),
        objects: Vec<ObservedObject>,
    ) {
        let report = ClusterReport {
            credentials: ClusterCredentials {
                cluster_id: cluster_id.clone(),
                token: token.clone(),
            },
            report_id: report_id_of(&objects),
            observations: objects.into_iter().map(Observation::Applied).collect(),
        };
        let ack = self
            .bus
            .request::<_, ReportAck>(&Subject::inventory_report(cluster_id), &report, WAIT)
            .await
            .unwrap()
            .message;
        let observations = report.observations.len() as u32;
        assert_eq!(ack, ReportAck::Accepted { observations });
    }
}

/// A cluster's id and token, as [`Stack::report`] takes them, from its creation's answer.
pub(crate) fn credentials(created: &Value) -> (String, String) {
    let field = |name: &str| created[name].as_str().unwrap().to_owned();
    (field("cluster_id"), field("container_cluster_token"))
}

/// A report id that differs between reports of different objects.
fn report_id_of(objects: &[ObservedObject]) -> String {
    objects
        .iter()
        .map(|o| o.uid.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// Asserts the one error shape and returns the code.
pub(crate) fn error_code(body: &Value) -> &str {
    let error = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("not the error shape: {body}"));
    assert_eq!(error.len(), 2, "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty(), "{body}");
    error["code"].as_str().unwrap()
}
