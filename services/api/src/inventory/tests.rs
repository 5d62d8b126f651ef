//! The inventory routes over real HTTP, with the inventory and labeling services and a
//! single-node event log behind the in-process bus, and a simulated clusterlink reporting on
//! the bus.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{BusError, InProcessBus, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::inventory::{
    ClusterCredentials, ClusterReport, ObjectDetails, Observation, ObservedObject, OwnerRef,
    ReportAck, ResourceKind, SliceEndpoint,
};
use bulkhead_schema::messages::labeling::{
    EnforcementMode, Href, LabelingCommand, LabelingCommandReply, LabelingItem, LabelingRejection,
    ProfileLabel, ProfileSettings,
};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{ApiConfig, bind};

const WAIT: Duration = Duration::from_secs(10);

struct Stack {
    base: String,
    key: String,
    http: reqwest::Client,
    bus: TypedBus,
    stop: CancellationToken,
    /// Inventory and labeling, each failing its task should it fail.
    services: Vec<JoinHandle<()>>,
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
    let inventory = bulkhead_inventory::run(
        bulkhead_inventory::InventoryConfig::embedded(dir.path().join("inventory")),
        bus.clone(),
        Health::new("inventory", "1"),
        stop.clone(),
    );
    let labeling = bulkhead_labeling::run(
        bulkhead_labeling::LabelingConfig::embedded(dir.path().join("labeling")),
        bus.clone(),
        Health::new("labeling", "1"),
        stop.clone(),
    );
    let services = vec![
        tokio::spawn(async move { inventory.await.unwrap() }),
        tokio::spawn(async move { labeling.await.unwrap() }),
    ];
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
        services,
        _dir: dir,
    }
}

/// Status, `X-Total-Count`, and the JSON body (`Null` when empty).
type Answer = (u16, Option<u64>, Value);

impl Stack {
    /// Stops everything and waits for inventory and labeling (their checkpoints written)
    /// before the test's runtime goes: sled must not be dropped while the runtime tears its
    /// tasks down.
    async fn stop(mut self) {
        self.stop.cancel();
        for service in std::mem::take(&mut self.services) {
            let stopped = tokio::time::timeout(WAIT, service).await;
            stopped.expect("services stop").unwrap();
        }
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

    /// A list once `done` says so: labeling writes its labels after inventory has the objects.
    async fn list_until(&self, path: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (status, _, body) = self.get(path).await;
            assert_eq!(status, 200, "{path}: {body}");
            let items = body.as_array().unwrap();
            if done(items) {
                return items.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path}: still {body}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A labeling command, sent again while labeling starts (nobody answers yet) or has yet
    /// to learn of a cluster just created (not found).
    async fn labeling(&self, command: LabelingCommand) -> LabelingItem {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = self
                .bus
                .request::<_, LabelingCommandReply>(&Subject::labeling_command(), &command, WAIT)
                .await
                .map(|r| r.message);
            let starting = matches!(
                reply,
                Err(BusError::NoResponders(_))
                    | Ok(LabelingCommandReply::Rejected {
                        kind: LabelingRejection::NotFound,
                        ..
                    })
            );
            match reply {
                Ok(LabelingCommandReply::Done { item, .. }) => return item,
                _ if starting && tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => panic!("{command:?}: {other:?}"),
            }
        }
    }

    /// A new label's href.
    async fn create_label(&self, key: &str, value: &str) -> String {
        let command = LabelingCommand::CreateLabel {
            key: key.into(),
            value: value.into(),
        };
        match self.labeling(command).await {
            LabelingItem::Label(label) => label.href,
            other => panic!("{other:?}"),
        }
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
        let observations = report.observations.len() as u32;
        assert_eq!(ack, ReportAck::Accepted { observations });
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
    // Kubernetes uids are unique across kinds, and labeling finds entities by uid alone.
    let service = ObservedObject {
        uid: "web-svc-uid".into(),
        ..mk(ResourceKind::Service, "web", "shop", None, service)
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
        service,
        mk(ResourceKind::EndpointSlice, "web-xyz", "shop", None, slice),
    ]
}

/// `path?labels=<labels>`, URL-encoded.
fn with_labels(path: &str, labels: &Value) -> String {
    let mut url = reqwest::Url::parse("http://bulkhead.invalid/").unwrap();
    url.query_pairs_mut()
        .append_pair("labels", &labels.to_string());
    format!("{path}?{}", url.query().unwrap())
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
    assert_eq!(services[0]["href"], "/orgs/1/virtual_services/web-svc-uid");
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workloads_carry_their_effective_labels_and_are_filtered_by_them() {
    let stack = start().await;
    let cluster = stack.create("prod").await;
    let id = cluster["cluster_id"].as_str().unwrap().to_owned();
    let role = stack.create_label("role", "web").await;
    let env = stack.create_label("env", "prod").await;
    // every namespace's profile: managed, enforced, role assigned, env free for annotations
    stack
        .labeling(LabelingCommand::SetTemplate {
            cluster_id: id.clone(),
            settings: ProfileSettings {
                managed: true,
                enforcement_mode: EnforcementMode::Full,
                labels: vec![ProfileLabel {
                    key: "role".into(),
                    assignment: Some(Href { href: role.clone() }),
                    restriction: None,
                }],
            },
        })
        .await;
    let mut observed = small_cluster();
    let annotated = observed.iter_mut().find(|o| o.name == "web-1-b").unwrap();
    annotated
        .annotations
        .insert("bulkhead.io/env".into(), "prod".into());
    stack.report(&cluster, observed).await;

    let pods = stack
        .list_until("/container_workloads", |pods| {
            pods.len() == 2 && pods[1]["labels"].as_array().unwrap().len() == 2
        })
        .await;
    let by_profile = json!({ "href": role, "key": "role", "value": "web", "source": "profile" });
    assert_eq!(pods[0]["labels"], json!([by_profile]));
    assert_eq!(
        pods[1]["labels"],
        json!([
            {
                "href": env,
                "key": "env",
                "value": "prod",
                "source": {
                    "annotation": { "kind": "Pod", "name": "web-1-b", "key": "bulkhead.io/env" },
                },
            },
            by_profile,
        ])
    );
    assert_eq!(
        (
            pods[1]["managed"].clone(),
            pods[1]["enforcement_mode"].clone()
        ),
        (json!(true), json!("full"))
    );
    assert_eq!(pods[1]["kubernetes_labels"], json!({ "app": "shop" }));
    assert!(pods[1].get("labeling").is_none(), "lifted to the top");

    let workloads = stack
        .list_until("/kubernetes_workloads", |w| {
            w[0]["labels"] == json!([by_profile])
        })
        .await;
    assert_eq!(workloads[0]["name"], "web");
    let services = stack
        .list_until("/virtual_services", |s| {
            s[0]["labels"] == json!([by_profile])
        })
        .await;
    assert_eq!(services[0]["enforcement_mode"], "full");
    let (_, _, nodes) = stack.get("/workloads").await;
    assert!(nodes[0]["labels"].is_array(), "{nodes}");
    let (_, _, namespaces) = stack
        .get(&format!("/container_clusters/{id}/namespaces"))
        .await;
    assert_eq!(namespaces[0]["kubernetes_labels"], json!({ "app": "shop" }));
    assert!(
        namespaces[0].get("labels").is_none(),
        "namespaces carry none"
    );

    for (path, labels, total) in [
        ("/container_workloads", json!([[role]]), 2),
        ("/container_workloads", json!([[role, env]]), 1),
        (
            "/container_workloads",
            json!([[{ "key": "env", "value": "PROD" }]]),
            1,
        ),
        (
            "/container_workloads",
            json!([[env], [{ "href": role }]]),
            2,
        ),
        ("/container_workloads", json!([pods[1]["labels"]]), 1),
        ("/kubernetes_workloads", json!([[role]]), 1),
        ("/kubernetes_workloads", json!([[env]]), 0),
        ("/virtual_services", json!([[role]]), 1),
        ("/workloads", json!([[role]]), 0),
    ] {
        let path = with_labels(path, &labels);
        let (status, got, body) = stack.get(&path).await;
        assert_eq!((status, got), (200, Some(total)), "{path}: {body}");
    }

    for (path, labels, says) in [
        (
            "/container_workloads",
            json!("nope"),
            "a JSON list of lists",
        ),
        (
            "/container_workloads",
            json!([role]),
            "a JSON list of lists",
        ),
        ("/container_workloads", json!([[7]]), "each label an href"),
        ("/container_workloads", json!([[]]), "is empty"),
        (
            "/virtual_services",
            json!([["/orgs/1/label_groups/1"]]),
            "label group",
        ),
        (
            "/kubernetes_workloads",
            json!([["/orgs/1/workloads/1"]]),
            "not a label href",
        ),
        (
            "/container_clusters",
            json!([[role]]),
            "cannot be filtered by labels",
        ),
        (
            &format!("/container_clusters/{id}/namespaces"),
            json!([[role]]),
            "cannot be filtered by labels",
        ),
    ] {
        let path = with_labels(path, &labels);
        let (status, _, body) = stack.get(&path).await;
        assert_eq!(
            (status, error_code(&body)),
            (400, "bad_request"),
            "{path}: {body}"
        );
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{path}: {message}");
    }
    stack.stop().await;
}
