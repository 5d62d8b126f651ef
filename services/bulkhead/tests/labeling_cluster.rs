//! Labeling end to end: the control plane as separate processes on a real nats-server
//! (tests/common/control_plane.rs), `serve clusterlink` watching a simulated Kubernetes cluster,
//! Debian's kubectl changing that cluster, and the CLI as the administrator. An annotation on a
//! deployment relabels its pods; an annotation the namespace's profile does not allow changes
//! nothing; a pre-created profile links to the namespace that carries its pairing key, and a
//! wrong key links nothing.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use bulkhead_kubesim::{SimConfig, Simulator};
use common::control_plane::ControlPlane;
use serde_json::Value;

/// Bulkhead labels of each pod of `namespace` whose name starts with `prefix`, as
/// `key -> (value, source kind)`.
type PodLabels = BTreeMap<String, BTreeMap<String, (String, String)>>;

fn pod_labels(list: &Value, namespace: &str, prefix: &str) -> PodLabels {
    let source_kind = |source: &Value| match source {
        Value::String(kind) => kind.clone(),
        Value::Object(one) => one.keys().next().cloned().unwrap_or_default(),
        _ => String::new(),
    };
    list.as_array()
        .unwrap()
        .iter()
        .filter(|pod| pod["namespace"] == namespace)
        .filter(|pod| pod["name"].as_str().unwrap().starts_with(prefix))
        .map(|pod| {
            let labels = pod["labels"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| {
                    let value = l["value"].as_str().unwrap().to_owned();
                    (
                        l["key"].as_str().unwrap().to_owned(),
                        (value, source_kind(&l["source"])),
                    )
                })
                .collect();
            (pod["name"].as_str().unwrap().to_owned(), labels)
        })
        .collect()
}

/// The cluster under test: changed with kubectl, its pods' labels read through the CLI.
struct Live<'a> {
    plane: &'a ControlPlane,
    cluster: &'a str,
    kubeconfig: &'a Path,
}

impl Live<'_> {
    fn kubectl(&self, args: &[&str]) {
        common::kubectl(self.kubeconfig, args);
    }

    /// Polls the pods' labels until every pod of `namespace`/`prefix` carries exactly
    /// `expected`.
    fn pods_carry(
        &self,
        namespace: &str,
        prefix: &str,
        expected: &[(&str, &str, &str)],
    ) -> PodLabels {
        let expected: BTreeMap<String, (String, String)> = expected
            .iter()
            .map(|(k, v, s)| (k.to_string(), (v.to_string(), s.to_string())))
            .collect();
        let args = [
            "container-workloads",
            "--cluster",
            self.cluster,
            "--namespace",
            namespace,
            "--max-results",
            "1000",
        ];
        let list = self.plane.eventually(&args, |list| {
            let pods = pod_labels(list, namespace, prefix);
            !pods.is_empty() && pods.values().all(|labels| *labels == expected)
        });
        pod_labels(&list, namespace, prefix)
    }
}

#[test]
fn annotations_profiles_and_pairing_keys_label_a_live_cluster() {
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime
        .block_on(Simulator::start(SimConfig {
            nodes: 2,
            ..SimConfig::default()
        }))
        .unwrap();
    sim.simulator().seed_demo_app().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    sim.write_kubeconfig(&kubeconfig).unwrap();

    let plane = ControlPlane::start(dir.path());
    let created = plane.json(&["cluster", "create", "prod"]);
    let cluster = created["cluster_id"].as_str().unwrap().to_owned();
    let token = created["container_cluster_token"].as_str().unwrap();
    for label in [
        "role=web",
        "role=db",
        "app=storefront",
        "env=prod",
        "env=dev",
        "loc=eu",
    ] {
        plane.json(&["labels", "create", label]);
    }
    // Every namespace's profile: managed, env fixed, role only `web`, app from annotations.
    plane.json(&[
        "profile-template",
        "--cluster",
        &cluster,
        "set",
        "--managed",
        "true",
        "--assign",
        "env=prod",
        "--restrict",
        "role=web",
    ]);
    // A pre-created profile for `payments`, linked by its pairing key.
    let pre_created = plane.json(&[
        "profiles",
        "--cluster",
        &cluster,
        "create",
        "payments-team",
        "--managed",
        "true",
        "--assign",
        "loc=eu",
    ]);
    let pairing_key = pre_created["pairing_key"].as_str().unwrap().to_owned();
    let profile_id = pre_created["href"]
        .as_str()
        .unwrap()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();

    let _clusterlink = plane.clusterlink(&cluster, token, &kubeconfig);
    let live = Live {
        plane: &plane,
        cluster: &cluster,
        kubeconfig: &kubeconfig,
    };
    // The template applies to the discovered namespaces: env from the profile, nothing else.
    live.pods_carry("shop", "frontend", &[("env", "prod", "profile")]);

    // kubectl annotates the deployment: its pods take the labels the profile allows.
    live.kubectl(&[
        "-n",
        "shop",
        "annotate",
        "deployment",
        "frontend",
        "bulkhead.io/role=web",
        "com.illumio.app=storefront",
    ]);
    let labelled = live.pods_carry(
        "shop",
        "frontend",
        &[
            ("app", "storefront", "annotation"),
            ("env", "prod", "profile"),
            ("role", "web", "annotation"),
        ],
    );
    assert_eq!(labelled.len(), 3, "every replica of frontend: {labelled:?}");
    live.pods_carry("shop", "backend", &[("env", "prod", "profile")]);

    // Spoofing: a role outside the allowed list and an env against the fixed one are ignored;
    // the key the profile restricts is left unset rather than given the spoofed value.
    live.kubectl(&[
        "-n",
        "shop",
        "annotate",
        "--overwrite",
        "deployment",
        "frontend",
        "bulkhead.io/role=db",
        "bulkhead.io/env=dev",
    ]);
    let role_unset = [
        ("app", "storefront", "annotation"),
        ("env", "prod", "profile"),
    ];
    live.pods_carry("shop", "frontend", &role_unset);

    // A wrong pairing key links nothing: `shop` keeps its own profile, the pre-created one
    // stays pending.
    live.kubectl(&[
        "annotate",
        "namespace",
        "shop",
        "bulkhead.io/pairing-key=not-the-key",
    ]);
    // The right key links `payments` to the pre-created profile: its pods get `loc=eu` and no
    // longer the template's env.
    live.kubectl(&[
        "annotate",
        "namespace",
        "payments",
        &format!("bulkhead.io/pairing-key={pairing_key}"),
    ]);
    live.pods_carry("payments", "api", &[("loc", "eu", "profile")]);
    let profile = plane.json(&["profiles", "--cluster", &cluster, "get", &profile_id]);
    assert_eq!(profile["namespace"], "payments", "{profile}");
    let profiles = plane.json(&["profiles", "--cluster", &cluster, "list"]);
    let of_namespace = |namespace: &str| -> Vec<&Value> {
        profiles
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["namespace"] == namespace)
            .collect()
    };
    assert_eq!(of_namespace("payments").len(), 1, "{profiles}");
    let shop = of_namespace("shop");
    assert_eq!(shop.len(), 1, "{profiles}");
    assert_ne!(shop[0]["href"], pre_created["href"], "{profiles}");
    // The wrong key is on the record, and the labels of `shop` did not move.
    let rejected = plane
        .log_events()
        .into_iter()
        .filter(|e| e["stream"] == format!("effective/{cluster}"))
        .filter(|e| e.to_string().contains("pairing_key_rejected"))
        .count();
    assert!(rejected >= 1, "the wrong pairing key is recorded");
    live.pods_carry("shop", "frontend", &role_unset);
}
