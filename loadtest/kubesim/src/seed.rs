//! Ready-made clusters: a synthetic one of any size for load tests, and a small multi-tier demo
//! app for `bulkhead up --demo`.

use serde_json::{Value, json};

use crate::{
    cluster::Cluster,
    error::Error,
    kinds::Kind,
    network::{DEFAULT_MAX_PODS, MAX_PODS_PER_CIDR},
    sim::Simulator,
};

/// Nodes the pod CIDR scheme (10.244.0.0/24 to 10.255.255.0/24) has room for.
const MAX_NODES: usize = 3072;
/// Replicas of each synthetic deployment.
const REPLICAS: usize = 10;
/// Synthetic deployments (and services) per namespace.
const DEPLOYMENTS_PER_NAMESPACE: usize = 20;
const APPS: [&str; DEPLOYMENTS_PER_NAMESPACE] = [
    "web",
    "api",
    "auth",
    "cart",
    "search",
    "orders",
    "billing",
    "ledger",
    "inventory",
    "shipping",
    "catalog",
    "reviews",
    "notify",
    "media",
    "gateway",
    "session",
    "profile",
    "pricing",
    "recommend",
    "analytics",
];
const TIERS: [&str; 3] = ["frontend", "backend", "data"];

impl Simulator {
    /// Adds `nodes` nodes (`node-000`, ...; the first with the control-plane role, the others
    /// workers) and `nodes × pods_per_node` pods, filling every node to exactly
    /// `pods_per_node`: one host-network pod per node from the DaemonSet
    /// `kube-system/node-agent`, the rest from Deployments of 10 replicas, 20 to a namespace
    /// (`team-000`, ...), each with a Service. Labels: `app`, `tier`, and `env` on namespaces.
    /// Meant for a fresh cluster; 200 × 110 takes about 3 s in a release build (on two cores).
    pub fn seed_cluster(&self, nodes: usize, pods_per_node: usize) -> Result<(), Error> {
        if pods_per_node > MAX_PODS_PER_CIDR {
            return Err(Error::Config(format!(
                "at most {MAX_PODS_PER_CIDR} pods per node (one /24 each)"
            )));
        }
        if nodes > MAX_NODES {
            return Err(Error::Config(format!("at most {MAX_NODES} nodes")));
        }
        if nodes == 0 {
            return if pods_per_node == 0 {
                Ok(())
            } else {
                Err(Error::Config("pods need nodes".into()))
            };
        }
        let width = nodes.to_string().len().max(3);
        self.inner.write(|c| {
            let first = c.store.len(Kind::Node);
            for i in first..first + nodes {
                let role = if i == 0 { "control-plane" } else { "worker" };
                c.create(
                    Kind::Node,
                    json!({
                        "metadata": { "name": format!("node-{i:0width$}"),
                                      "labels": { format!("node-role.kubernetes.io/{role}"): "" } },
                        "status": { "allocatable": { "pods": pods_per_node.max(DEFAULT_MAX_PODS).to_string() } },
                    }),
                )?;
            }
            if pods_per_node > 0 {
                c.create(Kind::DaemonSet, daemonset("kube-system", "node-agent", "registry.example/node-agent:1.0"))?;
            }
            Ok::<_, Error>(())
        })?;

        let mut remaining = nodes * pods_per_node.saturating_sub(1);
        let mut namespace_index = 0;
        while remaining > 0 {
            let ns = loop {
                let name = format!("team-{namespace_index:03}");
                namespace_index += 1;
                if self.get(Kind::Namespace, "", &name).is_none() {
                    break name;
                }
            };
            let env = if namespace_index % 2 == 0 {
                "staging"
            } else {
                "production"
            };
            // one transaction per namespace keeps the API answering while a big cluster seeds
            self.inner.write(|c| {
                c.create(
                    Kind::Namespace,
                    json!({ "metadata": { "name": ns, "labels": { "env": env } } }),
                )?;
                for (i, app) in APPS.iter().enumerate() {
                    if remaining == 0 {
                        break;
                    }
                    let replicas = if remaining < 2 * REPLICAS {
                        remaining
                    } else {
                        REPLICAS
                    };
                    remaining -= replicas;
                    let tier = TIERS[i % TIERS.len()];
                    create_app(
                        c,
                        &ns,
                        app,
                        tier,
                        replicas,
                        "registry.example/app:1.0",
                        8080,
                    )?;
                }
                Ok::<_, Error>(())
            })?;
        }
        Ok(())
    }

    /// A small shop: namespaces `shop` (Deployments `frontend` and `backend`, StatefulSet `db`)
    /// and `payments` (Deployment `api`, StatefulSet `ledger-db`, CronJob `settlement` run
    /// once), a Service in front of each, and the host-network DaemonSet `kube-system/kube-proxy`.
    /// Adds three nodes first if the cluster has none.
    pub fn seed_demo_app(&self) -> Result<(), Error> {
        if self.count(Kind::Node) == 0 {
            self.seed_cluster(3, 0)?;
        }
        self.inner.write(|c| {
            c.create(Kind::DaemonSet, daemonset("kube-system", "kube-proxy", "registry.k8s.io/kube-proxy:v1.33.0"))?;
            for ns in ["shop", "payments"] {
                c.create(Kind::Namespace, json!({ "metadata": { "name": ns, "labels": { "env": "production" } } }))?;
            }
            create_app(c, "shop", "frontend", "web", 3, "nginx:1.27", 8080)?;
            create_app(c, "shop", "backend", "api", 2, "registry.example/shop-backend:2.3", 9090)?;
            create_db(c, "shop", "db", "postgres:16")?;
            create_app(c, "payments", "api", "api", 2, "registry.example/payments-api:1.8", 8443)?;
            create_db(c, "payments", "ledger-db", "postgres:16")?;
            c.create(
                Kind::CronJob,
                json!({
                    "metadata": { "name": "settlement", "namespace": "payments", "labels": { "app": "settlement" } },
                    "spec": {
                        "schedule": "0 * * * *",
                        "jobTemplate": {
                            "metadata": { "labels": { "app": "settlement", "tier": "batch" } },
                            "spec": { "template": pod_template("settlement", "batch", "registry.example/settlement:1.0", None, "Never") },
                        },
                    },
                }),
            )?;
            c.trigger_cronjob(&("payments".into(), "settlement".into()))?;
            Ok(())
        })
    }
}

fn pod_template(app: &str, tier: &str, image: &str, port: Option<u16>, restart: &str) -> Value {
    let mut container = json!({ "name": app, "image": image });
    if let Some(port) = port {
        container["ports"] = json!([{ "name": "http", "containerPort": port, "protocol": "TCP" }]);
    }
    json!({
        "metadata": { "labels": { "app": app, "tier": tier } },
        "spec": { "containers": [container], "restartPolicy": restart },
    })
}

/// A Deployment and a Service in front of it (port 80 to the pods' `http` port).
fn create_app(
    c: &mut Cluster,
    ns: &str,
    app: &str,
    tier: &str,
    replicas: usize,
    image: &str,
    port: u16,
) -> Result<(), Error> {
    c.create(
        Kind::Deployment,
        json!({
            "metadata": { "name": app, "namespace": ns, "labels": { "app": app, "tier": tier } },
            "spec": {
                "replicas": replicas,
                "selector": { "matchLabels": { "app": app } },
                "template": pod_template(app, tier, image, Some(port), "Always"),
            },
        }),
    )?;
    c.create(
        Kind::Service,
        json!({
            "metadata": { "name": app, "namespace": ns, "labels": { "app": app } },
            "spec": { "selector": { "app": app }, "ports": [{ "name": "http", "port": 80, "targetPort": "http" }] },
        }),
    )?;
    Ok(())
}

/// A one-replica StatefulSet behind a headless Service.
fn create_db(c: &mut Cluster, ns: &str, app: &str, image: &str) -> Result<(), Error> {
    c.create(
        Kind::StatefulSet,
        json!({
            "metadata": { "name": app, "namespace": ns, "labels": { "app": app, "tier": "db" } },
            "spec": {
                "replicas": 1,
                "serviceName": app,
                "selector": { "matchLabels": { "app": app } },
                "template": pod_template(app, "db", image, Some(5432), "Always"),
            },
        }),
    )?;
    c.create(
        Kind::Service,
        json!({
            "metadata": { "name": app, "namespace": ns, "labels": { "app": app } },
            "spec": { "clusterIP": "None", "selector": { "app": app }, "ports": [{ "name": "postgres", "port": 5432, "targetPort": "http" }] },
        }),
    )?;
    Ok(())
}

/// A DaemonSet of host-network pods, as node agents are.
fn daemonset(ns: &str, name: &str, image: &str) -> Value {
    let mut template = pod_template(name, "system", image, None, "Always");
    template["spec"]["hostNetwork"] = json!(true);
    json!({
        "metadata": { "name": name, "namespace": ns, "labels": { "app": name } },
        "spec": { "selector": { "matchLabels": { "app": name } }, "template": template },
    })
}
