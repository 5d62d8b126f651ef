//! Debian's kubectl against the simulator, each command checked against the simulator's state.

use std::{path::Path, time::Duration};

use bulkhead_kubesim::{Kind, KubesimArgs, RunningSim};
use clap::Parser;
use serde_json::Value;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::common::{self, eventually, name};

/// kubectl with its own kubeconfig and discovery cache.
struct Kubectl {
    dir: TempDir,
}

impl Kubectl {
    fn new(sim: &RunningSim) -> Self {
        let dir = tempfile::tempdir().unwrap();
        sim.write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        Kubectl { dir }
    }

    fn from_kubeconfig(kubeconfig: &Path) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::copy(kubeconfig, dir.path().join("kubeconfig")).unwrap();
        Kubectl { dir }
    }

    /// Runs kubectl; returns stdout, failing the test on a non-zero exit.
    async fn run(&self, args: &[&str]) -> String {
        let (ok, stdout, stderr) = self.try_run(args).await;
        assert!(ok, "kubectl {} failed: {stderr}", args.join(" "));
        stdout
    }

    async fn try_run(&self, args: &[&str]) -> (bool, String, String) {
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(self.dir.path().join("kubeconfig"))
            .arg("--cache-dir")
            .arg(self.dir.path().join("cache"))
            .args(args)
            .env("HOME", self.dir.path())
            .output()
            .await
            .unwrap_or_else(|e| {
                panic!("cannot run kubectl ({e}): install it with `apt-get install kubernetes-client` (Debian's kubectl)")
            });
        let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
        (
            output.status.success(),
            text(output.stdout),
            text(output.stderr),
        )
    }

    fn write(&self, file: &str, yaml: &str) -> String {
        let path = self.dir.path().join(file);
        std::fs::write(&path, yaml).unwrap();
        path.to_str().unwrap().to_string()
    }
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_reads_lists_tables_json_and_describes() {
    let sim = common::start(2, 3).await;
    sim.seed_demo_app().unwrap();
    let kubectl = Kubectl::new(&sim);

    let pods = json(&kubectl.run(&["get", "pods", "-A", "-o", "json"]).await);
    assert_eq!(pods["kind"], "List");
    assert_eq!(
        pods["items"].as_array().unwrap().len(),
        sim.count(Kind::Pod)
    );

    let table = kubectl
        .run(&["get", "pods", "-n", "shop", "-o", "wide"])
        .await;
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    );
    for p in sim.list(Kind::Pod, Some("shop")) {
        let line = table
            .lines()
            .find(|l| l.starts_with(&format!("{} ", name(&p))))
            .expect("a row per pod");
        assert!(
            line.contains("Running") && line.contains(p["status"]["podIP"].as_str().unwrap()),
            "{line}"
        );
    }

    let deployments = kubectl.run(&["get", "deployments", "-n", "shop"]).await;
    assert!(
        deployments
            .lines()
            .any(|l| l.starts_with("frontend ") && l.contains("3/3")),
        "{deployments}"
    );
    let nodes = kubectl.run(&["get", "nodes"]).await;
    assert_eq!(nodes.lines().count(), 1 + sim.count(Kind::Node), "{nodes}");
    assert!(nodes.contains("control-plane") && nodes.contains("Ready"));
    let node = json(
        &kubectl
            .run(&["get", "node", "node-000", "-o", "json"])
            .await,
    );
    assert_eq!(node["spec"]["podCIDR"], "10.244.0.0/24");
    let services = kubectl.run(&["get", "services", "-A"]).await;
    let frontend_ip = sim.get(Kind::Service, "shop", "frontend").unwrap()["spec"]["clusterIP"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        services
            .lines()
            .any(|l| l.contains("frontend") && l.contains(&frontend_ip)),
        "{services}"
    );
    let all = kubectl.run(&["get", "all", "-n", "payments"]).await;
    assert!(
        all.contains("cronjob.batch/settlement") && all.contains("statefulset.apps/ledger-db"),
        "{all}"
    );

    let describe = kubectl
        .run(&["describe", "pod", "-n", "shop", "db-0"])
        .await;
    let db = sim.get(Kind::Pod, "shop", "db-0").unwrap();
    for want in [
        "Name:",
        "db-0",
        "Running",
        "Controlled By:  StatefulSet/db",
        db["status"]["podIP"].as_str().unwrap(),
    ] {
        assert!(describe.contains(want), "{want} in {describe}");
    }
}

const DEPLOYMENT: &str = "
apiVersion: apps/v1
kind: Deployment
metadata:
  name: NAME
  labels: {app: NAME}
spec:
  replicas: 2
  selector:
    matchLabels: {app: NAME}
  template:
    metadata:
      labels: {app: NAME}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - {name: http, containerPort: 80}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_applies_labels_annotates_scales_and_deletes() {
    let sim = common::start(2, 0).await;
    let kubectl = Kubectl::new(&sim);
    let replicas = |name: &str| {
        sim.list(Kind::Pod, Some("default"))
            .iter()
            .filter(|p| p["metadata"]["labels"]["app"] == name)
            .count()
    };

    let created = kubectl.write("created.yaml", &DEPLOYMENT.replace("NAME", "created"));
    let out = kubectl.run(&["create", "-f", &created]).await;
    assert_eq!(out.trim(), "deployment.apps/created created");
    assert_eq!(replicas("created"), 2);
    let (ok, _, err) = kubectl.try_run(&["create", "-f", &created]).await;
    assert!(!ok && err.contains("AlreadyExists"), "{err}");

    let applied = kubectl.write("applied.yaml", &DEPLOYMENT.replace("NAME", "applied"));
    assert_eq!(
        kubectl.run(&["apply", "-f", &applied]).await.trim(),
        "deployment.apps/applied created"
    );
    let deploy = sim.get(Kind::Deployment, "default", "applied").unwrap();
    assert!(
        deploy["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    assert_eq!(
        kubectl.run(&["apply", "-f", &applied]).await.trim(),
        "deployment.apps/applied unchanged"
    );
    let rescaled = kubectl.write(
        "rescaled.yaml",
        &DEPLOYMENT
            .replace("NAME", "applied")
            .replace("replicas: 2", "replicas: 3"),
    );
    assert_eq!(
        kubectl.run(&["apply", "-f", &rescaled]).await.trim(),
        "deployment.apps/applied configured"
    );
    assert_eq!(replicas("applied"), 3);

    kubectl
        .run(&["label", "deployment", "created", "team=checkout"])
        .await;
    assert_eq!(
        sim.get(Kind::Deployment, "default", "created").unwrap()["metadata"]["labels"]["team"],
        "checkout"
    );
    let pod = name(&sim.list(Kind::Pod, Some("default"))[0]).to_string();
    kubectl
        .run(&["label", "pod", &pod, "bulkhead.io/role=web", "--overwrite"])
        .await;
    assert_eq!(
        sim.get(Kind::Pod, "default", &pod).unwrap()["metadata"]["labels"]["bulkhead.io/role"],
        "web"
    );
    kubectl
        .run(&["label", "pod", &pod, "bulkhead.io/role-"])
        .await;
    assert!(
        sim.get(Kind::Pod, "default", &pod).unwrap()["metadata"]["labels"]
            .get("bulkhead.io/role")
            .is_none()
    );

    kubectl
        .run(&[
            "annotate",
            "deployment",
            "created",
            "bulkhead.io/policy=strict",
        ])
        .await;
    assert_eq!(
        sim.get(Kind::Deployment, "default", "created").unwrap()["metadata"]["annotations"]["bulkhead.io/policy"],
        "strict"
    );

    assert_eq!(
        kubectl
            .run(&["scale", "deployment/created", "--replicas=5"])
            .await
            .trim(),
        "deployment.apps/created scaled"
    );
    assert_eq!(replicas("created"), 5);
    kubectl
        .run(&["scale", "deployment", "created", "--replicas=1"])
        .await;
    assert_eq!(replicas("created"), 1);

    let out = kubectl.run(&["delete", "deployment", "created"]).await;
    assert_eq!(out.trim(), "deployment.apps \"created\" deleted");
    assert!(sim.get(Kind::Deployment, "default", "created").is_none());
    assert_eq!(replicas("created"), 0, "its pods went with it");
    kubectl.run(&["delete", "-f", &applied]).await;
    assert_eq!(replicas("applied"), 0);
    let (ok, _, err) = kubectl.try_run(&["get", "deployment", "applied"]).await;
    assert!(!ok && err.contains("NotFound"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubesim_command_writes_a_kubeconfig_kubectl_can_use() {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: KubesimArgs,
    }
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("demo.kubeconfig");
    let cli = Cli::parse_from([
        "kubesim",
        "--listen=127.0.0.1:0",
        "--nodes=2",
        "--pods-per-node=3",
        "--demo",
        "--kubeconfig-out",
        kubeconfig.to_str().unwrap(),
    ]);
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(bulkhead_kubesim::run(cli.args, shutdown.clone()));
    eventually("the kubeconfig", || kubeconfig.exists()).await;

    let kubectl = Kubectl::from_kubeconfig(&kubeconfig);
    let pods = json(
        &kubectl
            .run(&["get", "pods", "-n", "shop", "-o", "json"])
            .await,
    );
    assert_eq!(
        pods["items"].as_array().unwrap().len(),
        6,
        "frontend 3, backend 2, db 1"
    );
    let nodes = json(&kubectl.run(&["get", "nodes", "-o", "json"]).await);
    assert_eq!(nodes["items"].as_array().unwrap().len(), 2);

    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

const LABEL_MAP: &str = "
apiVersion: bulkhead.io/v1
kind: LabelMap
metadata: {name: NAME}
spec:
  nodeLabelMap:
    - fromKey: topology.kubernetes.io/zone
      toKey: loc
      valuesMap: [{from: us-east-1a, to: east}]
      allowCreate: true
  workloadLabelMap:
    - fromKey: app.kubernetes.io/name
      toKey: app
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_installs_the_label_map_crd_then_applies_gets_and_deletes_label_maps() {
    let sim = common::start(1, 0).await;
    let kubectl = Kubectl::new(&sim);
    let crd = common::LABEL_MAP_CRD;
    let (ok, _, err) = kubectl.try_run(&["get", "labelmaps"]).await;
    assert!(
        !ok && err.contains("the server doesn't have a resource type \"labelmaps\""),
        "not served before its CRD is installed: {err}"
    );

    assert_eq!(
        kubectl.run(&["apply", "-f", crd]).await.trim(),
        "customresourcedefinition.apiextensions.k8s.io/labelmaps.bulkhead.io created"
    );
    kubectl
        .run(&[
            "wait",
            "--for=condition=Established",
            "crd/labelmaps.bulkhead.io",
        ])
        .await;

    let default = kubectl.write("default.yaml", &LABEL_MAP.replace("NAME", "default"));
    assert_eq!(
        kubectl.run(&["apply", "-f", &default]).await.trim(),
        "labelmap.bulkhead.io/default created"
    );
    let stored = sim.get(Kind::LabelMap, "", "default").unwrap();
    assert_eq!(
        stored["spec"]["nodeLabelMap"][0],
        serde_json::json!({
            "fromKey": "topology.kubernetes.io/zone", "toKey": "loc",
            "valuesMap": [{ "from": "us-east-1a", "to": "east" }], "allowCreate": true,
        })
    );
    assert_eq!(
        stored["spec"]["workloadLabelMap"][0]["toKey"], "app",
        "{stored}"
    );
    assert_eq!(
        kubectl.run(&["apply", "-f", &default]).await.trim(),
        "labelmap.bulkhead.io/default unchanged"
    );
    let retargeted = kubectl.write(
        "retargeted.yaml",
        &LABEL_MAP
            .replace("NAME", "default")
            .replace("toKey: app", "toKey: role"),
    );
    assert_eq!(
        kubectl.run(&["apply", "-f", &retargeted]).await.trim(),
        "labelmap.bulkhead.io/default configured"
    );
    assert_eq!(
        sim.get(Kind::LabelMap, "", "default").unwrap()["spec"]["workloadLabelMap"][0]["toKey"],
        "role"
    );

    // the CRD's schema holds: a wrong type is refused, an unknown field pruned
    let wrong = kubectl.write(
        "wrong.yaml",
        &LABEL_MAP
            .replace("NAME", "wrong")
            .replace("allowCreate: true", "allowCreate: [yes]"),
    );
    let (ok, _, err) = kubectl.try_run(&["apply", "-f", &wrong]).await;
    assert!(
        !ok && err.contains("spec.nodeLabelMap[0].allowCreate: Invalid value"),
        "{err}"
    );
    let typo = kubectl.write(
        "typo.yaml",
        &LABEL_MAP
            .replace("NAME", "typo")
            .replace("toKey: loc", "toKey: loc\n      tokey: oops"),
    );
    kubectl
        .run(&["apply", "-f", &typo, "--validate=false"])
        .await;
    let item = &sim.get(Kind::LabelMap, "", "typo").unwrap()["spec"]["nodeLabelMap"][0];
    assert!(
        item.get("tokey").is_none() && item["toKey"] == "loc",
        "{item}"
    );

    let table = kubectl.run(&["get", "labelmaps"]).await;
    let rows: Vec<Vec<&str>> = table
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "AGE"], "{table}");
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["default", "typo"], "{table}");
    let listed = json(
        &kubectl
            .run(&["get", "labelmap", "default", "-o", "json"])
            .await,
    );
    assert_eq!(listed["metadata"]["uid"], stored["metadata"]["uid"]);

    assert_eq!(
        kubectl.run(&["delete", "labelmap", "default"]).await.trim(),
        "labelmap.bulkhead.io \"default\" deleted"
    );
    assert!(sim.get(Kind::LabelMap, "", "default").is_none());

    // uninstalling the CRD takes its objects with it, and the resource is gone
    kubectl.run(&["delete", "-f", crd]).await;
    assert_eq!(sim.count(Kind::LabelMap), 0);
    let (ok, _, err) = kubectl.try_run(&["get", "labelmaps"]).await;
    assert!(!ok, "{err}");
}
