//! The simulated controllers, observed through kube-rs and the in-process handle.

use std::{
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use bulkhead_kubesim::{Kind, Simulator};
use k8s_openapi::api::{
    apps::v1::{Deployment, ReplicaSet},
    core::v1::{Node, Pod},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, Patch, PatchParams, PostParams},
};
use serde_json::{Value, json};

use crate::common::{self, deployment, endpoint_ips, name, pod, service};

/// Whether `ip` lies in `cidr` (a /24).
fn in_cidr(ip: &str, cidr: &str) -> bool {
    let (net, bits) = cidr.split_once('/').unwrap();
    assert_eq!(bits, "24");
    ip.parse::<Ipv4Addr>().unwrap().octets()[..3] == net.parse::<Ipv4Addr>().unwrap().octets()[..3]
}

fn owner_uid(obj: &Value) -> &str {
    let refs = obj["metadata"]["ownerReferences"]
        .as_array()
        .expect("owner references");
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["controller"], true);
    refs[0]["uid"].as_str().unwrap()
}

fn pods_of(sim: &Simulator, ns: &str, app: &str) -> Vec<Value> {
    sim.list(Kind::Pod, Some(ns))
        .into_iter()
        .filter(|p| p["metadata"]["labels"]["app"] == app)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployments_roll_out_replicasets_and_pods_with_owners_and_addresses() {
    let sim = common::start(3, 0).await;
    let (client, _dir) = common::client(&sim).await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let created: Deployment =
        serde_json::from_value(deployment("default", "shop", 4, "shop:1")).unwrap();
    let created = deployments
        .create(&PostParams::default(), &created)
        .await
        .unwrap();

    let sets: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let rs = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 1);
    let hash = rs[0].labels()["pod-template-hash"].clone();
    assert_eq!(rs[0].name_any(), format!("shop-{hash}"));
    let rs_json = serde_json::to_value(&rs[0]).unwrap();
    assert_eq!(owner_uid(&rs_json), created.uid().unwrap());
    assert_eq!(
        rs[0]
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()["pod-template-hash"],
        hash
    );

    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = nodes.list(&ListParams::default()).await.unwrap().items;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pods = pods
        .list(&ListParams::default().labels("app=shop"))
        .await
        .unwrap()
        .items;
    assert_eq!(pods.len(), 4);
    for p in &pods {
        let value = serde_json::to_value(p).unwrap();
        assert_eq!(owner_uid(&value), rs[0].uid().unwrap());
        assert_eq!(p.labels()["pod-template-hash"], hash);
        let status = p.status.as_ref().unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        let node_name = p.spec.as_ref().unwrap().node_name.clone().unwrap();
        let node = nodes.iter().find(|n| n.name_any() == node_name).unwrap();
        let cidr = node.spec.as_ref().unwrap().pod_cidr.clone().unwrap();
        assert!(
            in_cidr(status.pod_ip.as_ref().unwrap(), &cidr),
            "{:?} in {cidr}",
            status.pod_ip
        );
        let node_ip = &node.status.as_ref().unwrap().addresses.as_ref().unwrap()[0].address;
        assert_eq!(status.host_ip.as_ref(), Some(node_ip));
    }
    let used: std::collections::BTreeSet<_> = pods
        .iter()
        .map(|p| p.spec.as_ref().unwrap().node_name.clone())
        .collect();
    assert_eq!(used.len(), 3, "round-robin over the three nodes");

    let status = deployments.get("shop").await.unwrap().status.unwrap();
    assert_eq!(
        (
            status.replicas,
            status.ready_replicas,
            status.updated_replicas
        ),
        (Some(4), Some(4), Some(4))
    );

    // a new template: a new ReplicaSet takes over, the old one goes to zero
    let patch = json!({ "spec": { "template": { "spec": { "containers": [{ "name": "main", "image": "shop:2", "ports": [{ "name": "http", "containerPort": 8080 }] }] } } } });
    deployments
        .patch("shop", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let rs = sets.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(rs.len(), 2);
    let replicas: Vec<(bool, i32)> = rs
        .iter()
        .map(|r| {
            (
                r.labels()["pod-template-hash"] == hash,
                r.spec.as_ref().unwrap().replicas.unwrap(),
            )
        })
        .collect();
    assert!(
        replicas.contains(&(true, 0)) && replicas.contains(&(false, 4)),
        "{replicas:?}"
    );
    // a write from a stale read is refused
    match deployments
        .replace("shop", &PostParams::default(), &created)
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (409, "Conflict"))
        }
        other => panic!("expected a conflict, got {other:?}"),
    }
    let new_pods = pods_of(&sim, "default", "shop");
    assert_eq!(new_pods.len(), 4);
    assert!(
        new_pods
            .iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "shop:2")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_and_pod_changes_flow_into_endpointslices() {
    let sim = common::start(2, 0).await;
    let (client, _dir) = common::client(&sim).await;
    sim.apply(service("default", "web", "web")).unwrap();
    assert_eq!(endpoint_ips(&sim, "default", "web"), Vec::<String>::new());
    assert_eq!(
        sim.list(Kind::EndpointSlice, Some("default")).len(),
        2,
        "kubernetes, and web's empty slice"
    );
    sim.apply(deployment("default", "web", 2, "web:1")).unwrap();

    let ips = |sim: &Simulator| {
        let mut ips: Vec<String> = pods_of(sim, "default", "web")
            .iter()
            .map(|p| p["status"]["podIP"].as_str().unwrap().to_string())
            .collect();
        ips.sort();
        ips
    };
    assert_eq!(endpoint_ips(&sim, "default", "web"), ips(&sim));
    let slice = sim
        .list(Kind::EndpointSlice, Some("default"))
        .into_iter()
        .find(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
        .unwrap();
    assert_eq!(
        slice["ports"],
        json!([{ "name": "web", "port": 8080, "protocol": "TCP" }]),
        "the named target port resolved"
    );
    assert_eq!(slice["endpoints"][0]["targetRef"]["kind"], "Pod");
    assert_eq!(
        sim.get(Kind::Service, "default", "web").unwrap()["metadata"]["uid"].as_str(),
        Some(owner_uid(&slice))
    );

    // scale through the scale subresource, as kubectl and HPAs do
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let scale = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(&json!({ "spec": { "replicas": 5 } })),
        )
        .await
        .unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(5));
    assert_eq!(pods_of(&sim, "default", "web").len(), 5);
    assert_eq!(
        deployments
            .get_scale("web")
            .await
            .unwrap()
            .status
            .unwrap()
            .selector
            .as_deref(),
        Some("app=web")
    );
    assert_eq!(endpoint_ips(&sim, "default", "web").len(), 5);

    sim.scale(Kind::Deployment, "default", "web", 1).unwrap();
    assert_eq!(pods_of(&sim, "default", "web").len(), 1);
    assert_eq!(endpoint_ips(&sim, "default", "web"), ips(&sim));

    // 150 endpoints take two slices
    sim.scale(Kind::Deployment, "default", "web", 150).unwrap();
    let slices: Vec<usize> = sim
        .list(Kind::EndpointSlice, Some("default"))
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == "web")
        .map(|s| s["endpoints"].as_array().unwrap().len())
        .collect();
    assert_eq!(slices.iter().sum::<usize>(), 150);
    assert!(
        slices.iter().all(|n| *n <= 100) && slices.len() == 2,
        "{slices:?}"
    );
    sim.scale(Kind::Deployment, "default", "web", 2).unwrap();

    // a pod leaving the selector leaves the slice; an unready pod stays, marked unready
    let [first, second] = &pods_of(&sim, "default", "web")[..] else {
        panic!("two pods")
    };
    sim.set_labels(
        Kind::Pod,
        "default",
        name(first),
        [("app".into(), "elsewhere".into())].into(),
    )
    .unwrap();
    assert_eq!(
        endpoint_ips(&sim, "default", "web"),
        [second["status"]["podIP"].as_str().unwrap()]
    );
    let mut unready = second.clone();
    unready["status"]["conditions"] = json!([{ "type": "Ready", "status": "False" }]);
    sim.apply(unready).unwrap();
    let slice = sim
        .list(Kind::EndpointSlice, Some("default"))
        .into_iter()
        .find(|s| {
            s["metadata"]["labels"]["kubernetes.io/service-name"] == "web"
                && !s["endpoints"].as_array().unwrap().is_empty()
        })
        .unwrap();
    assert_eq!(slice["endpoints"][0]["conditions"]["ready"], false);
    assert_eq!(
        sim.get(Kind::Pod, "default", name(second)).unwrap()["status"]["podIP"],
        second["status"]["podIP"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_owner_deletes_its_dependents() {
    let sim = common::start(2, 0).await;
    sim.apply(json!({ "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": "shop" } }))
        .unwrap();
    sim.apply(deployment("shop", "web", 3, "web:1")).unwrap();
    sim.apply(service("shop", "web", "web")).unwrap();
    sim.apply(pod("shop", "bare", json!({ "app": "web" })))
        .unwrap();
    assert_eq!(endpoint_ips(&sim, "shop", "web").len(), 4);

    sim.delete(Kind::Deployment, "shop", "web").unwrap();
    assert_eq!(sim.list(Kind::ReplicaSet, Some("shop")).len(), 0);
    assert_eq!(
        sim.list(Kind::Pod, Some("shop"))
            .iter()
            .map(name)
            .collect::<Vec<_>>(),
        ["bare"]
    );
    assert_eq!(endpoint_ips(&sim, "shop", "web").len(), 1);

    // a deleted pod of a live ReplicaSet is replaced, as the controller would
    sim.apply(deployment("shop", "api", 2, "api:1")).unwrap();
    let victim = name(&pods_of(&sim, "shop", "api")[0]).to_string();
    sim.delete(Kind::Pod, "shop", &victim).unwrap();
    let after = pods_of(&sim, "shop", "api");
    assert_eq!(after.len(), 2);
    assert!(after.iter().all(|p| name(p) != victim));

    sim.delete(Kind::Namespace, "", "shop").unwrap();
    for kind in [
        Kind::Pod,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Deployment,
        Kind::ReplicaSet,
    ] {
        assert_eq!(sim.list(kind, Some("shop")).len(), 0, "{kind:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statefulsets_daemonsets_jobs_and_cronjobs_own_their_pods() {
    let sim = common::start(2, 0).await;
    let template = |app: &str| json!({ "metadata": { "labels": { "app": app } }, "spec": { "containers": [{ "name": "c", "image": "i" }] } });
    sim.apply(json!({ "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": { "name": "db" },
                      "spec": { "replicas": 3, "serviceName": "db", "selector": { "matchLabels": { "app": "db" } }, "template": template("db") } }))
        .unwrap();
    let mut names: Vec<String> = pods_of(&sim, "default", "db")
        .iter()
        .map(|p| name(p).to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    sim.scale(Kind::StatefulSet, "default", "db", 1).unwrap();
    assert_eq!(
        pods_of(&sim, "default", "db")
            .iter()
            .map(name)
            .collect::<Vec<_>>(),
        ["db-0"]
    );
    assert_eq!(
        sim.get(Kind::StatefulSet, "default", "db").unwrap()["status"]["readyReplicas"],
        1
    );

    let mut agent = template("agent");
    agent["spec"]["hostNetwork"] = json!(true);
    sim.apply(json!({ "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": { "name": "agent", "namespace": "kube-system" },
                      "spec": { "selector": { "matchLabels": { "app": "agent" } }, "template": agent } }))
        .unwrap();
    let agents = pods_of(&sim, "kube-system", "agent");
    assert_eq!(agents.len(), 2);
    for a in &agents {
        let node = sim
            .get(Kind::Node, "", a["spec"]["nodeName"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            a["status"]["podIP"], node["status"]["addresses"][0]["address"],
            "host network: the node's IP"
        );
    }
    sim.apply(json!({ "apiVersion": "v1", "kind": "Node", "metadata": { "name": "late" } }))
        .unwrap();
    assert_eq!(
        pods_of(&sim, "kube-system", "agent").len(),
        3,
        "a new node gets its agent"
    );
    let late = sim.get(Kind::Node, "", "late").unwrap();
    assert!(
        late["status"]["nodeInfo"]["machineID"]
            .as_str()
            .unwrap()
            .len()
            == 32
    );
    sim.delete(Kind::Node, "", "late").unwrap();
    assert_eq!(
        pods_of(&sim, "kube-system", "agent").len(),
        2,
        "a deleted node's pods go with it"
    );
    assert_eq!(
        sim.get(Kind::DaemonSet, "kube-system", "agent").unwrap()["status"]["numberReady"],
        2
    );

    sim.apply(
        json!({ "apiVersion": "batch/v1", "kind": "Job", "metadata": { "name": "once" },
                      "spec": { "parallelism": 2, "template": template("once") } }),
    )
    .unwrap();
    let job_pods = pods_of(&sim, "default", "once");
    assert_eq!(job_pods.len(), 2);
    assert!(
        job_pods
            .iter()
            .all(|p| p["metadata"]["labels"]["job-name"] == "once")
    );

    sim.apply(json!({ "apiVersion": "batch/v1", "kind": "CronJob", "metadata": { "name": "nightly" },
                      "spec": { "schedule": "0 3 * * *", "jobTemplate": { "spec": { "template": template("nightly") } } } }))
        .unwrap();
    let job = sim.trigger_cronjob("default", "nightly").unwrap();
    assert!(name(&job).starts_with("nightly-"));
    assert_eq!(
        owner_uid(&job),
        sim.get(Kind::CronJob, "default", "nightly").unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
    );
    let nightly = pods_of(&sim, "default", "nightly");
    assert_eq!(nightly.len(), 1);
    assert_eq!(
        owner_uid(&nightly[0]),
        job["metadata"]["uid"].as_str().unwrap()
    );
    sim.delete(Kind::CronJob, "default", "nightly").unwrap();
    assert_eq!(
        sim.list(Kind::Job, Some("default")).len(),
        1,
        "only `once` is left"
    );
    assert!(pods_of(&sim, "default", "nightly").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_app_has_every_kind() {
    let sim = common::start(0, 0).await;
    sim.seed_demo_app().unwrap();
    assert_eq!(sim.count(Kind::Node), 3);
    for (ns, app, pods) in [
        ("shop", "frontend", 3),
        ("shop", "backend", 2),
        ("shop", "db", 1),
        ("payments", "api", 2),
        ("payments", "ledger-db", 1),
        ("payments", "settlement", 1),
        ("kube-system", "kube-proxy", 3),
    ] {
        assert_eq!(pods_of(&sim, ns, app).len(), pods, "{ns}/{app}");
    }
    assert_eq!(endpoint_ips(&sim, "shop", "frontend").len(), 3);
    assert_eq!(endpoint_ips(&sim, "payments", "ledger-db").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_of_200_nodes_by_110_pods_seeds_and_lists_quickly() {
    let started = Instant::now();
    let sim = common::start(200, 110).await;
    let seeded = started.elapsed();
    assert_eq!(sim.count(Kind::Pod), 22_000);
    assert_eq!(sim.count(Kind::Node), 200);

    let (client, _dir) = common::client(&sim).await;
    let api: Api<Pod> = Api::all(client);
    let started = Instant::now();
    let mut per_node = std::collections::HashMap::<String, usize>::new();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(500);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let page = api.list(&params).await.unwrap();
        for p in &page.items {
            *per_node
                .entry(p.spec.as_ref().unwrap().node_name.clone().unwrap())
                .or_default() += 1;
        }
        token = page.metadata.continue_;
        if token.is_none() {
            break;
        }
    }
    let listed = started.elapsed();
    assert_eq!(per_node.len(), 200);
    assert!(
        per_node.values().all(|n| *n == 110),
        "every node exactly full"
    );
    println!(
        "22,000 pods: seeded in {seeded:?}, listed through kube-rs in pages of 500 in {listed:?}"
    );
    // about 3 s and well under 1 s in a release build on two busy cores; debug builds of
    // serde_json and kube-rs are some ten times slower
    let limit = Duration::from_secs(if cfg!(debug_assertions) { 60 } else { 10 });
    assert!(
        seeded < limit && listed < limit,
        "seeded in {seeded:?}, listed in {listed:?}"
    );
}
