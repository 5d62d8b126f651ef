//! Inventory end to end, every service its own process on a real nats-server: `serve eventlog`,
//! `serve inventory`, `serve api` and `serve clusterlink` watching a simulated Kubernetes
//! cluster over HTTP with the real kube-rs client. The test drives the cluster as its users
//! would (the simulator as the cluster, the CLI as the administrator) and checks that the
//! inventory follows: after changes, after clusterlink was away while the cluster changed,
//! against a clusterlink with a wrong token, and after inventory restarts with or without its
//! checkpoint.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_kubesim::{Kind, RunningSim, SimConfig};
use bulkhead_runtime::testing::{NatsServer, free_port};
use common::{Process, cli, eventually_json, wait_healthy};
use serde_json::{Value, json};

const CONVERGE: Duration = Duration::from_secs(30);

/// The control plane's processes and how to reach them.
struct ControlPlane {
    dir: PathBuf,
    nats: NatsServer,
    api: String,
    api_key: String,
    inventory_metrics: String,
    _eventlog: Process,
    _api: Process,
    inventory: Option<Process>,
}

impl ControlPlane {
    fn start(dir: &Path) -> Self {
        let nats = NatsServer::start();
        let raft = format!("127.0.0.1:{}", free_port());
        let eventlog = Process::spawn(
            &[
                "serve",
                "eventlog",
                "--nats",
                &nats.url(),
                "--node-id",
                "1",
                "--data-dir",
                dir.join("eventlog").to_str().unwrap(),
                "--raft-listen",
                &raft,
                "--peers",
                &format!("1={raft}"),
                "--init",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            dir,
        );
        let api = format!("127.0.0.1:{}", free_port());
        let api_process = Process::spawn(
            &[
                "serve",
                "api",
                "--nats",
                &nats.url(),
                "--listen",
                &api,
                "--data-dir",
                dir.join("api").to_str().unwrap(),
                "--admin-listen",
                "127.0.0.1:0",
            ],
            dir,
        );
        let api = format!("http://{api}");
        wait_healthy(&format!("{api}/api/v2/health"), CONVERGE);
        let api_key = std::fs::read_to_string(dir.join("api/admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        let mut plane = ControlPlane {
            dir: dir.to_owned(),
            nats,
            api,
            api_key,
            inventory_metrics: format!("127.0.0.1:{}", free_port()),
            _eventlog: eventlog,
            _api: api_process,
            inventory: None,
        };
        plane.start_inventory();
        // inventory answers once it has caught up with the log
        plane.eventually(&["cluster", "list"], |_| true);
        plane
    }

    fn start_inventory(&mut self) {
        assert!(self.inventory.is_none());
        self.inventory = Some(Process::spawn(
            &[
                "serve",
                "inventory",
                "--nats",
                &self.nats.url(),
                "--data-dir",
                self.dir.join("inventory").to_str().unwrap(),
                "--admin-listen",
                &self.inventory_metrics,
            ],
            &self.dir,
        ));
    }

    fn kill_inventory(&mut self) {
        drop(self.inventory.take().expect("inventory runs"));
    }

    fn clusterlink(&self, cluster_id: &str, token: &str, kubeconfig: &Path) -> Process {
        Process::spawn(
            &[
                "serve",
                "clusterlink",
                "--nats",
                &self.nats.url(),
                "--cluster-id",
                cluster_id,
                "--cluster-token",
                token,
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--heartbeat-interval-ms",
                "500",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            &self.dir,
        )
    }

    /// The CLI with `--output json` against this control plane.
    fn cli_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            "--server",
            &self.api,
            "--api-key",
            &self.api_key,
            "--output",
            "json",
        ];
        all.extend_from_slice(args);
        all
    }

    fn json(&self, args: &[&str]) -> Value {
        let out = cli(&self.dir, &self.cli_args(args));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    fn eventually(&self, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
        eventually_json(&self.dir, &self.cli_args(args), CONVERGE, check)
    }

    /// inventory's `bulkhead_inventory_auth_failures_total`, all reasons.
    fn auth_failures(&self) -> u64 {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://{}/metrics", self.inventory_metrics)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("bulkhead_inventory_auth_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Every committed event of the log, through the CLI (pages of 1,000).
    fn log_events(&self) -> Vec<Value> {
        let mut events: Vec<Value> = Vec::new();
        loop {
            let from = (events.len() + 1).to_string();
            let page = self.json(&["log", "events", "--from", &from, "--limit", "1000"]);
            let batch = page["events"].as_array().unwrap().clone();
            if batch.is_empty() {
                return events;
            }
            events.extend(batch);
        }
    }
}

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
