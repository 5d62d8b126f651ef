use std::time::{Duration, Instant};

use bulkhead_kubesim::{RunningSim, SimConfig, Simulator};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::{Value, json};
use tempfile::TempDir;

/// The LabelMap CustomResourceDefinition Bulkhead ships.
pub const LABEL_MAP_CRD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../deploy/crds/labelmap.yaml"
);

/// [`LABEL_MAP_CRD`] as an object for [`Simulator::apply`].
pub fn label_map_crd() -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(LABEL_MAP_CRD).unwrap()).unwrap()
}

/// A simulator with fast bookmarks and the given synthetic cluster.
pub async fn start(nodes: usize, pods_per_node: usize) -> RunningSim {
    start_with(SimConfig {
        nodes,
        pods_per_node,
        ..config()
    })
    .await
}

pub fn config() -> SimConfig {
    SimConfig {
        bookmark_interval: Duration::from_millis(200),
        ..SimConfig::default()
    }
}

pub async fn start_with(config: SimConfig) -> RunningSim {
    Simulator::start(config).await.expect("simulator starts")
}

/// A kube-rs client configured from the kubeconfig the simulator writes, as clusterlink's is.
pub async fn client(sim: &RunningSim) -> (kube::Client, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&path).unwrap();
    let kubeconfig = Kubeconfig::read_from(&path).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap();
    (kube::Client::try_from(config).unwrap(), dir)
}

/// Polls `check` until it holds, for up to 10 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn pod(ns: &str, name: &str, labels: Value) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": ns, "labels": labels },
        "spec": { "containers": [{ "name": "main", "image": "busybox" }] },
    })
}

pub fn deployment(ns: &str, name: &str, replicas: u32, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": { "name": name, "namespace": ns },
        "spec": {
            "replicas": replicas,
            "selector": { "matchLabels": { "app": name } },
            "template": {
                "metadata": { "labels": { "app": name } },
                "spec": { "containers": [{ "name": "main", "image": image, "ports": [{ "name": "http", "containerPort": 8080 }] }] },
            },
        },
    })
}

pub fn service(ns: &str, name: &str, app: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": { "name": name, "namespace": ns },
        "spec": { "selector": { "app": app }, "ports": [{ "name": "web", "port": 80, "targetPort": "http" }] },
    })
}

pub fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap()
}

/// The addresses of a service's EndpointSlices, sorted.
pub fn endpoint_ips(sim: &Simulator, ns: &str, svc: &str) -> Vec<String> {
    let mut ips: Vec<String> = sim
        .list(bulkhead_kubesim::Kind::EndpointSlice, Some(ns))
        .iter()
        .filter(|s| s["metadata"]["labels"]["kubernetes.io/service-name"] == svc)
        .flat_map(|s| s["endpoints"].as_array().cloned().unwrap_or_default())
        .map(|e| e["addresses"][0].as_str().unwrap().to_string())
        .collect();
    ips.sort();
    ips
}
