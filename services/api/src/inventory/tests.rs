//! The inventory routes over real HTTP ([`crate::testing`]), with a simulated clusterlink
//! reporting on the bus.

use bulkhead_schema::messages::inventory::ObservedObject;
use bulkhead_schema::testing::{
    labeled, mk_deployment, mk_namespace, mk_node, mk_pod, mk_replica_set, mk_service, mk_slice,
    placed,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::testing::{Stack, credentials, error_code, start};

impl Stack {
    /// A list once `done` says so: labeling writes its labels after inventory has the objects.
    async fn list_until(&self, path: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let list = self
            .until(path, |body| {
                body.as_array().is_some_and(|items| done(items))
            })
            .await;
        list.as_array().unwrap().clone()
    }
}

/// A small cluster: a node, a namespace, a deployment with a replica set and two pods, a
/// host-network pod, a service with its slice; namespace and pods labelled `app=shop`.
fn small_cluster() -> Vec<ObservedObject> {
    let shop = |object| labeled(object, &[("app", "shop")]);
    let deploy = mk_deployment("web", "shop");
    let rs = mk_replica_set("web-1", "shop", Some(&deploy));
    let pod = |name, owner, ip, host| shop(placed(mk_pod(name, "shop", owner), "node-1", ip, host));
    let a = pod("web-1-a", Some(&rs), "10.244.1.2", false);
    let b = pod("web-1-b", Some(&rs), "10.244.1.3", false);
    let host = pod("node-exporter", None, "192.168.0.1", true);
    // Kubernetes uids are unique across kinds, and labeling finds entities by uid alone.
    let service = ObservedObject {
        uid: "web-svc-uid".into(),
        ..mk_service("web", "shop")
    };
    let slice = mk_slice("web-xyz", "shop", "web", &[&a, &b]);
    vec![
        mk_node("node-1", "m1"),
        shop(mk_namespace("shop")),
        deploy,
        rs,
        a,
        b,
        host,
        service,
        slice,
    ]
}

/// `path?labels=<labels>`, URL-encoded.
fn with_labels(path: &str, labels: &Value) -> String {
    let mut url = reqwest::Url::parse("http://bulkhead.invalid/").unwrap();
    url.query_pairs_mut()
        .append_pair("labels", &labels.to_string());
    format!("{path}?{}", url.query().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_clusters_are_created_listed_changed_and_deleted() {
    let stack = start().await;
    let created = stack.create_cluster("prod").await;
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

    let post = |body: Value| stack.post("/container_clusters", body);
    let (status, _, body) = post(json!({ "name": "Prod" })).await;
    assert_eq!((status, error_code(&body)), (409, "conflict"));
    let (status, _, body) = post(json!({ "name": "" })).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, _, body) = stack.get("/container_clusters/no-such-id").await;
    assert_eq!((status, error_code(&body)), (404, "not_found"));

    let path = format!("/container_clusters/{id}");
    let (status, _, body) = stack
        .put(&path, json!({ "name": "production", "description": "EU" }))
        .await;
    assert_eq!((status, body), (204, Value::Null));
    let (_, _, one) = stack.get(&path).await;
    assert_eq!(
        (one["name"].clone(), one["description"].clone()),
        (json!("production"), json!("EU"))
    );
    let (status, _, _) = stack
        .put("/container_clusters/nope", json!({ "name": "x" }))
        .await;
    assert_eq!(status, 404);

    let (status, _, _) = stack.delete(&path).await;
    assert_eq!(status, 204);
    assert_eq!(stack.get(&path).await.0, 404);
    assert_eq!(stack.delete(&path).await.0, 404);
    assert_eq!(stack.get("/container_clusters").await.1, Some(0));
    stack.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_clusterlink_reports_is_listed_with_filters_and_pages() {
    let stack = start().await;
    let cluster = stack.create_cluster("prod").await;
    let id = cluster["cluster_id"].as_str().unwrap().to_owned();
    let cluster_link =
        json!({ "href": format!("/orgs/1/container_clusters/{id}"), "name": "prod" });
    let mut observed = small_cluster();
    // two objects the report leaves out: the ack counts seven
    let slice = observed.pop().unwrap();
    let service = observed.pop().unwrap();
    stack.report(&credentials(&cluster), observed).await;
    stack
        .report(&credentials(&cluster), vec![service, slice])
        .await;

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
    let cluster = stack.create_cluster("prod").await;
    let id = cluster["cluster_id"].as_str().unwrap().to_owned();
    let role = stack.label("role", "web").await;
    let env = stack.label("env", "prod").await;
    // every namespace's profile: managed, enforced, role assigned, env free for annotations
    let template = format!("/container_clusters/{id}/container_workload_profile_template");
    let settings = json!({
        "managed": true, "enforcement_mode": "full",
        "labels": [{ "key": "role", "assignment": { "href": role } }],
    });
    // 404 until labeling learns of the cluster
    stack
        .eventually(Method::PUT, &template, Some(settings), 204)
        .await;
    let mut observed = small_cluster();
    let annotated = observed.iter_mut().find(|o| o.name == "web-1-b").unwrap();
    annotated
        .annotations
        .insert("bulkhead.io/env".into(), "prod".into());
    stack.report(&credentials(&cluster), observed).await;

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
