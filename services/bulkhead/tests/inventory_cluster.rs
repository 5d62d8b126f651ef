//! Inventory end to end, every service its own process on a real nats-server (the control plane
//! of tests/common/control_plane.rs) and `serve clusterlink` watching a simulated Kubernetes
//! cluster over HTTP with the real kube-rs client. The test drives the cluster as its users
//! would (the simulator as the cluster, the CLI as the administrator) and checks that the
//! inventory follows: after changes, after clusterlink was away while the cluster changed,
//! against a clusterlink with a wrong token, and after inventory restarts with or without its
//! checkpoint.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use bulkhead_kubesim::{Kind, RunningSim, SimConfig};
use common::cli;
use common::control_plane::{CONVERGE, ControlPlane};
use serde_json::{Value, json};

/// What inventory shows of one cluster, as sets of names (and pod uids, which change when a
/// pod is replaced), for comparison with the simulator.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    nodes: BTreeSet<String>,
    pods: BTreeSet<(String, String, String)>,
    kube_workloads: BTreeSet<(String, String, String)>,
    services: BTreeSet<(String, String)>,
    namespaces: BTreeSet<String>,
}

fn names(list: &Value, fields: &[&str]) -> Vec<Vec<String>> {
    list.as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| {
                    fields
                        .iter()
                        .map(|f| item[*f].as_str().unwrap_or_default().to_owned())
                        .collect()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn triples(rows: Vec<Vec<String>>) -> BTreeSet<(String, String, String)> {
    rows.into_iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect()
}

fn pairs(rows: Vec<Vec<String>>) -> BTreeSet<(String, String)> {
    rows.into_iter()
        .map(|r| (r[0].clone(), r[1].clone()))
        .collect()
}

fn singles(rows: Vec<Vec<String>>) -> BTreeSet<String> {
    rows.into_iter().map(|r| r[0].clone()).collect()
}

impl Seen {
    /// What the simulator holds: the truth the inventory must converge to.
    fn in_simulator(sim: &RunningSim) -> Self {
        let sim = sim.simulator();
        let meta = |o: &Value, f: &str| o["metadata"][f].as_str().unwrap_or_default().to_owned();
        let pods = sim
            .list(Kind::Pod, None)
            .into_iter()
            .filter(|p| p["spec"]["hostNetwork"] != json!(true))
            .map(|p| (meta(&p, "namespace"), meta(&p, "name"), meta(&p, "uid")))
            .collect();
        // Kube workloads are the controllers at the top of their chains: deployments (not
        // their replica sets), daemon sets, stateful sets, cron jobs (not their jobs)...
        let mut kube_workloads = BTreeSet::new();
        for kind in [
            Kind::Deployment,
            Kind::ReplicaSet,
            Kind::StatefulSet,
            Kind::DaemonSet,
            Kind::ReplicationController,
            Kind::Job,
            Kind::CronJob,
        ] {
            for o in sim.list(kind, None) {
                if o["metadata"]["ownerReferences"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
                {
                    let kind = o["kind"].as_str().unwrap_or_default().to_owned();
                    kube_workloads.insert((meta(&o, "namespace"), kind, meta(&o, "name")));
                }
            }
        }
        Seen {
            nodes: sim
                .list(Kind::Node, None)
                .iter()
                .map(|n| meta(n, "name"))
                .collect(),
            pods,
            kube_workloads,
            services: sim
                .list(Kind::Service, None)
                .iter()
                .map(|s| (meta(s, "namespace"), meta(s, "name")))
                .collect(),
            namespaces: sim
                .list(Kind::Namespace, None)
                .iter()
                .map(|n| meta(n, "name"))
                .collect(),
        }
    }

    fn in_inventory(plane: &ControlPlane, cluster: &str) -> Self {
        let list = |what: &str| plane.json(&[what, "--cluster", cluster, "--max-results", "1000"]);
        Seen {
            nodes: singles(names(&list("workloads"), &["name"])),
            pods: triples(names(
                &list("container-workloads"),
                &["namespace", "name", "uid"],
            )),
            kube_workloads: triples(names(
                &list("kubernetes-workloads"),
                &["namespace", "kind", "name"],
            ))
            .into_iter()
            .filter(|(_, kind, _)| kind != "Pod")
            .collect(),
            services: pairs(names(&list("virtual-services"), &["namespace", "name"])),
            namespaces: singles(names(
                &plane.json(&["namespaces", "--cluster", cluster, "--max-results", "1000"]),
                &["name"],
            )),
        }
    }
}

/// Polls until inventory shows exactly what the simulator holds.
fn converges(plane: &ControlPlane, cluster: &str, sim: &RunningSim, what: &str) {
    let deadline = std::time::Instant::now() + CONVERGE;
    loop {
        let truth = Seen::in_simulator(sim);
        let seen = Seen::in_inventory(plane, cluster);
        if seen == truth {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: inventory did not converge within {CONVERGE:?}\nsimulator: {truth:#?}\ninventory: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn inventory_follows_a_cluster_across_processes_outages_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(bulkhead_kubesim::Simulator::start(SimConfig {
            nodes: 3,
            pods_per_node: 4,
            ..SimConfig::default()
        }))
        .unwrap();
    sim.simulator().seed_demo_app().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();

    let mut plane = ControlPlane::start(dir.path());
    let created = plane.json(&["cluster", "create", "prod", "--description", "e2e"]);
    let cluster_id = created["cluster_id"].as_str().unwrap().to_owned();
    let token = created["container_cluster_token"]
        .as_str()
        .unwrap()
        .to_owned();

    // Pair: everything the cluster holds appears, and the cluster is online and in sync.
    let mut clusterlink = plane.clusterlink(&cluster_id, &token, &kubeconfig);
    converges(&plane, &cluster_id, &sim, "first sync");
    let cluster = plane.eventually(&["cluster", "get", &cluster_id], |c| {
        c["online"] == json!(true) && c["sync_state"] == "in_sync"
    });
    assert_eq!(cluster["kubernetes_version"], "v1.33.0", "{cluster}");

    // Live changes: scale, delete, a new namespace with a deployment and a service.
    let sim_handle = sim.simulator();
    sim_handle
        .scale(Kind::Deployment, "shop", "frontend", 5)
        .unwrap();
    sim_handle
        .delete(Kind::StatefulSet, "payments", "ledger-db")
        .unwrap();
    converges(&plane, &cluster_id, &sim, "scale and delete");

    // clusterlink away while the cluster changes, and the watch history compacted meanwhile:
    // the restarted clusterlink resyncs and nothing stale remains.
    drop(clusterlink);
    sim_handle
        .scale(Kind::Deployment, "shop", "frontend", 1)
        .unwrap();
    sim_handle
        .delete(Kind::Service, "shop", "frontend")
        .unwrap();
    sim_handle
        .apply(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "batch"}}))
        .unwrap();
    sim_handle
        .apply(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "worker", "namespace": "batch"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "worker"}},
                     "template": {"metadata": {"labels": {"app": "worker"}},
                                  "spec": {"containers": [{"name": "w", "image": "worker:1"}]}}}
        }))
        .unwrap();
    sim_handle.expire_history();
    let stale = Seen::in_inventory(&plane, &cluster_id);
    assert_ne!(
        stale,
        Seen::in_simulator(&sim),
        "the changes happened while nobody watched"
    );
    clusterlink = plane.clusterlink(&cluster_id, &token, &kubeconfig);
    converges(
        &plane,
        &cluster_id,
        &sim,
        "resync after clusterlink was away",
    );

    // A clusterlink with a wrong token for the same cluster, and one claiming a cluster that
    // does not exist: refused, counted, audited, and nothing changes.
    let before = Seen::in_inventory(&plane, &cluster_id);
    let failures_before = plane.auth_failures();
    sim_handle
        .scale(Kind::Deployment, "batch", "worker", 4)
        .unwrap();
    drop(clusterlink);
    let impostor = plane.clusterlink(&cluster_id, "bht_not-the-token", &kubeconfig);
    let stranger = plane.clusterlink("no-such-cluster", &token, &kubeconfig);
    let deadline = std::time::Instant::now() + CONVERGE;
    while plane.auth_failures() < failures_before + 2 {
        assert!(std::time::Instant::now() < deadline, "refusals are counted");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        Seen::in_inventory(&plane, &cluster_id),
        before,
        "a refused clusterlink changes nothing"
    );
    let audited: Vec<Value> = plane
        .log_events()
        .into_iter()
        .filter(|e| e["stream"] == "inventory/audit")
        .collect();
    assert!(audited.len() >= 2, "each refusal is audited: {audited:?}");
    drop((impostor, stranger));

    // The rightful clusterlink again: it catches up with the scale it missed.
    let clusterlink = plane.clusterlink(&cluster_id, &token, &kubeconfig);
    converges(&plane, &cluster_id, &sim, "after the refused clusterlinks");
    let settled = Seen::in_inventory(&plane, &cluster_id);

    // inventory restarted from its checkpoint, then from nothing (the whole log replayed):
    // the same state both times.
    plane.kill_inventory();
    plane.start_inventory();
    assert_eq!(
        Seen::in_inventory_eventually(&plane, &cluster_id, &settled),
        settled
    );
    plane.kill_inventory();
    std::fs::remove_dir_all(dir.path().join("inventory")).unwrap();
    plane.start_inventory();
    assert_eq!(
        Seen::in_inventory_eventually(&plane, &cluster_id, &settled),
        settled
    );
    drop(clusterlink);
}

impl Seen {
    /// Polls until inventory answers with `expected` (it must first replay the log).
    fn in_inventory_eventually(plane: &ControlPlane, cluster: &str, expected: &Seen) -> Seen {
        let deadline = std::time::Instant::now() + CONVERGE;
        loop {
            let out = cli(
                &plane.dir,
                &plane.cli_args(&["workloads", "--cluster", cluster]),
            );
            if out.status.success() {
                let seen = Seen::in_inventory(plane, cluster);
                if &seen == expected || std::time::Instant::now() >= deadline {
                    return seen;
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "inventory answers again"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}
