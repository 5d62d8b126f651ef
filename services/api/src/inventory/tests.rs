//! The inventory routes over real HTTP, with the inventory service and a single-node event log
//! behind the in-process bus, and a simulated clusterlink reporting on the bus.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{InProcessBus, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::inventory::{
    ClusterCredentials, ClusterReport, ObjectDetails, Observation, ObservedObject, OwnerRef,
    ReportAck, ResourceKind, SliceEndpoint,
};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::{ApiConfig, bind};

const WAIT: Duration = Duration::from_secs(10);

struct Stack {
    base: String,
    key: String,
    http: reqwest::Client,
    bus: TypedBus,
    stop: CancellationToken,
    inventory: Option<tokio::task::JoinHandle<Result<(), bulkhead_inventory::InventoryError>>>,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn start() -> Stack {
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
    let config = ApiConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        data_dir: dir.path().join("api"),
        expected_services: vec![],
    };
    let api = bind(config, bus.clone()).await.unwrap();
    let base = format!("http://{}/api/v2/orgs/1", api.local_addr());
    let key = api.new_admin_key().unwrap().to_owned();
    tokio::spawn(api.serve(stop.clone()));
    // Err only when a parallel test installed it first.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Stack {
        base,
        key,
        http: reqwest::Client::new(),
        bus,
        stop,
        inventory: Some(inventory),
        _dir: dir,
    }
}

/// Status, `X-Total-Count`, and the JSON body (`Null` when empty).
type Answer = (u16, Option<u64>, Value);

impl Stack {
    /// Stops everything and waits for inventory (its checkpoint written) before the test's
    /// runtime goes: sled must not be dropped while the runtime tears its tasks down.
    async fn stop(mut self) {
        self.stop.cancel();
        let inventory = self.inventory.take().unwrap();
        let stopped = tokio::time::timeout(WAIT, inventory).await;
        stopped.expect("inventory stops").unwrap().unwrap();
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .timeout(WAIT);
        if let Some(body) = body {
            request = request.json(&body);
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

    async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// Creates a cluster, waiting while inventory starts (503 until it has caught up).
    async fn create(&self, name: &str) -> Value {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, _, body) = self
                .call(
                    Method::POST,
                    "/container_clusters",
                    Some(json!({ "name": name })),
                )
                .await;
            if status == 201 {
                return body;
            }
            assert!(
                status == 503 && tokio::time::Instant::now() < deadline,
                "{status} {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// What a clusterlink would send.
    async fn report(&self, cluster: &Value, observations: Vec<ObservedObject>) {
        let report = ClusterReport {
            credentials: ClusterCredentials {
                cluster_id: cluster["cluster_id"].as_str().unwrap().into(),
                token: cluster["container_cluster_token"].as_str().unwrap().into(),
            },
            report_id: "r1".into(),
            observations: observations.into_iter().map(Observation::Applied).collect(),
        };
        let subject = Subject::inventory_report(&report.credentials.cluster_id);
        let ack = self
            .bus
            .request::<_, ReportAck>(&subject, &report, WAIT)
            .await
            .unwrap()
            .message;
        assert_eq!(ack, ReportAck::Accepted { observations: 7 });
    }
}

fn mk(
    kind: ResourceKind,
    name: &str,
    namespace: &str,
    owner: Option<&ObservedObject>,
    details: ObjectDetails,
) -> ObservedObject {
    ObservedObject {
        kind,
        uid: format!("{name}-uid"),
        namespace: namespace.into(),
        name: name.into(),
        resource_version: "1".into(),
        labels: [("app".to_owned(), "shop".to_owned())].into(),
        annotations: Default::default(),
        owner: owner.map(|o| OwnerRef {
            kind: o.kind.kube_kind().into(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        }),
        details,
    }
}

fn mk_pod(
    name: &str,
    owner: Option<&ObservedObject>,
    ip: &str,
    host_network: bool,
) -> ObservedObject {
    let details = ObjectDetails::Pod {
        node_name: "node-1".into(),
        ips: vec![ip.into()],
        host_network,
        phase: "Running".into(),
        containers: vec!["web".into()],
    };
    mk(ResourceKind::Pod, name, "shop", owner, details)
}

/// A small cluster: a node, a namespace, a deployment with a replica set and two pods, a
/// host-network pod, a service with its slice.
fn small_cluster() -> Vec<ObservedObject> {
    let workload = ObjectDetails::Workload {
        template_labels: Default::default(),
        template_annotations: Default::default(),
        replicas: Some(2),
    };
    let deploy = mk(
        ResourceKind::Deployment,
        "web",
        "shop",
        None,
        workload.clone(),
    );
    let rs = mk(
        ResourceKind::ReplicaSet,
        "web-1",
        "shop",
        Some(&deploy),
        workload,
    );
    let a = mk_pod("web-1-a", Some(&rs), "10.244.1.2", false);
    let b = mk_pod("web-1-b", Some(&rs), "10.244.1.3", false);
    let host = mk_pod("node-exporter", None, "192.168.0.1", true);
    let node = ObjectDetails::Node {
        machine_id: "m1".into(),
        addresses: vec!["192.168.0.1".into()],
        pod_cidrs: vec!["10.244.1.0/24".into()],
        roles: vec!["worker".into()],
        kubelet_version: "v1.33.1".into(),
    };
    let slice = ObjectDetails::EndpointSlice {
        service_name: "web".into(),
        endpoints: [&a, &b]
            .iter()
            .map(|p| SliceEndpoint {
                addresses: vec![
                    if p.name.ends_with('a') {
                        "10.244.1.2"
                    } else {
                        "10.244.1.3"
                    }
                    .into(),
                ],
                ready: true,
                pod_uid: Some(p.uid.clone()),
                node_name: "node-1".into(),
            })
            .collect(),
        ports: vec![],
    };
    let service = ObjectDetails::Service {
        service_type: "ClusterIP".into(),
        cluster_ips: vec!["10.96.0.20".into()],
        ports: vec![],
        selector: [("app".to_owned(), "web".to_owned())].into(),
    };
    vec![
        mk(ResourceKind::Node, "node-1", "", None, node),
        mk(
            ResourceKind::Namespace,
            "shop",
            "",
            None,
            ObjectDetails::Namespace {},
        ),
        deploy,
        rs,
        a,
        b,
        host,
        mk(ResourceKind::Service, "web", "shop", None, service),
        mk(ResourceKind::EndpointSlice, "web-xyz", "shop", None, slice),
    ]
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("not an error: {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_clusters_are_created_listed_changed_and_deleted() {
    let stack = start().await;
    let created = stack.create("prod").await;
    let id = created["cluster_id"].as_str().unwrap().to_owned();
    let href = format!("/orgs/1/container_clusters/{id}");
    assert_eq!(created["href"], href);
    assert_eq!(created["name"], "prod");
    assert!(
        created["container_cluster_token"]
            .as_str()
            .unwrap()
            .starts_with("bct_")
    );
    assert_eq!(
        (created["online"].clone(), created["sync_state"].clone()),
        (json!(false), json!("out_of_sync"))
    );

    let (status, total, list) = stack.get("/container_clusters").await;
    assert_eq!((status, total), (200, Some(1)));
    assert_eq!(list[0]["href"], href);
    assert!(
        list[0].get("container_cluster_token").is_none(),
        "the token is shown once"
    );
    let (status, _, one) = stack.get(&format!("/container_clusters/{id}")).await;
    assert_eq!((status, one["name"].clone()), (200, json!("prod")));
    assert!(one.get("container_cluster_token").is_none());

    let post = |body: Value| stack.call(Method::POST, "/container_clusters", Some(body));
    let (status, _, body) = post(json!({ "name": "Prod" })).await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, _, body) = post(json!({ "name": "" })).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, _, body) = stack.get("/container_clusters/no-such-id").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    let path = format!("/container_clusters/{id}");
    let (status, _, body) = stack
        .call(
            Method::PUT,
            &path,
            Some(json!({ "name": "production", "description": "EU" })),
        )
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (_, _, one) = stack.get(&path).await;
    assert_eq!(
        (one["name"].clone(), one["description"].clone()),
        (json!("production"), json!("EU"))
    );
    let (status, _, _) = stack
        .call(
            Method::PUT,
            "/container_clusters/nope",
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(status, 404);

    let (status, _, _) = stack.call(Method::DELETE, &path, None).await;
    assert_eq!(status, 204);
    assert_eq!(stack.get(&path).await.0, 404);
    assert_eq!(stack.call(Method::DELETE, &path, None).await.0, 404);
    assert_eq!(stack.get("/container_clusters").await.1, Some(0));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_clusterlink_reports_is_listed_with_filters_and_pages() {
    let stack = start().await;
    let cluster = stack.create("prod").await;
    let id = cluster["cluster_id"].as_str().unwrap().to_owned();
    let cluster_link =
        json!({ "href": format!("/orgs/1/container_clusters/{id}"), "name": "prod" });
    let mut observed = small_cluster();
    // two objects the report leaves out: the ack counts seven
    let slice = observed.pop().unwrap();
    let service = observed.pop().unwrap();
    stack.report(&cluster, observed).await;
    let rest = ClusterReport {
        credentials: ClusterCredentials {
            cluster_id: id.clone(),
            token: cluster["container_cluster_token"].as_str().unwrap().into(),
        },
        report_id: "r2".into(),
        observations: vec![Observation::Applied(service), Observation::Applied(slice)],
    };
    stack
        .bus
        .request::<_, ReportAck>(&Subject::inventory_report(&id), &rest, WAIT)
        .await
        .unwrap();

    let (status, total, nodes) = stack.get("/workloads").await;
    assert_eq!((status, total), (200, Some(1)));
    assert_eq!(nodes[0]["href"], "/orgs/1/workloads/node-1-uid");
    assert_eq!(nodes[0]["name"], "node-1");
    assert_eq!(nodes[0]["container_cluster"], cluster_link);
    assert_eq!(nodes[0]["host_network_pods"][0]["name"], "node-exporter");

    let (_, total, pods) = stack.get("/container_workloads").await;
    assert_eq!(
        total,
        Some(2),
        "host-network pods are not container workloads"
    );
    assert_eq!(pods[0]["href"], "/orgs/1/container_workloads/web-1-a-uid");
    assert_eq!(pods[0]["owners"][1]["kind"], "Deployment");
    let (_, total, page) = stack
        .get(&format!("/container_workloads?container_cluster=/orgs/1/container_clusters/{id}&namespace=shop&node=node-1&name=WEB&max_results=1&offset=1"))
        .await;
    assert_eq!(total, Some(2));
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(page[0]["name"], "web-1-b");

    let (_, total, workloads) = stack.get("/kubernetes_workloads").await;
    assert_eq!(
        total,
        Some(1),
        "the deployment; its replica set is under it, the host-network pod is its node's: {workloads}"
    );
    let web = workloads
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == "web")
        .unwrap();
    assert_eq!(web["kind"], "Deployment");
    assert_eq!(web["href"], "/orgs/1/kubernetes_workloads/web-uid");
    assert_eq!(web["ips"], json!(["10.244.1.2", "10.244.1.3"]));

    let (_, total, services) = stack.get("/virtual_services?namespace=shop").await;
    assert_eq!(total, Some(1));
    assert_eq!(services[0]["href"], "/orgs/1/virtual_services/web-uid");
    assert_eq!(services[0]["backends"].as_array().unwrap().len(), 2);
    assert_eq!(services[0]["workloads"][0]["name"], "web");

    let (_, total, namespaces) = stack
        .get(&format!("/container_clusters/{id}/namespaces"))
        .await;
    assert_eq!(total, Some(1));
    assert_eq!(
        namespaces[0]["href"],
        format!("/orgs/1/container_clusters/{id}/namespaces/shop-uid")
    );
    assert_eq!(namespaces[0]["name"], "shop");

    for (path, status) in [
        ("/workloads?namespace=shop", 400),
        ("/virtual_services?node=node-1", 400),
        ("/container_workloads?max_results=0", 400),
        ("/container_workloads?max_results=1001", 400),
        ("/container_workloads?container_cluster=nope", 404),
        ("/container_clusters/nope/namespaces", 404),
        ("/container_clusters/x/namespaces?container_cluster=x", 400),
    ] {
        let (got, _, body) = stack.get(path).await;
        assert_eq!(got, status, "{path}: {body}");
        error_code(&body);
    }
    stack.stop().await;
}
