//! The simulator handle: starting it, and driving it in-process (tests, load generators).

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr},
    ops::Deref,
    path::Path,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{
    api,
    cluster::{Cluster, StatusFrom},
    error::Error,
    kinds::Kind,
    store::Key,
};

/// How to start a simulator.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Where to serve the API (plain HTTP). Port 0 picks a free one; see [`RunningSim::addr`].
    pub listen: SocketAddr,
    /// Nodes of the synthetic cluster seeded at start (see [`Simulator::seed_cluster`]).
    pub nodes: usize,
    /// Pods per node of the synthetic cluster (at most 253: one /24 per node).
    pub pods_per_node: usize,
    /// Watch events retained per kind: a watch or continued list from further back gets
    /// `410 Expired`. The API server keeps a few minutes' worth.
    pub history: usize,
    /// How often watchers that asked for bookmarks get one.
    pub bookmark_interval: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            nodes: 0,
            pods_per_node: 0,
            history: 10_000,
            bookmark_interval: Duration::from_secs(10),
        }
    }
}

/// What the HTTP layer and the handle share.
pub(crate) struct Inner {
    cluster: Mutex<Cluster>,
    pub addr: SocketAddr,
    pub bookmark_interval: Duration,
    pub shutdown: CancellationToken,
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, Cluster> {
        // a panic while holding the lock leaves a consistent store (writes are single puts);
        // keep serving rather than poison every later request
        self.cluster
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn read<R>(&self, f: impl FnOnce(&Cluster) -> R) -> R {
        f(&self.lock())
    }

    /// One transaction: the change, then the controllers until settled, then watchers woken.
    pub fn write<R>(&self, f: impl FnOnce(&mut Cluster) -> R) -> R {
        let mut cluster = self.lock();
        let result = f(&mut cluster);
        cluster.settle();
        result
    }
}

/// A handle on a running simulator's cluster; cheap to clone. Its methods change the cluster
/// as API requests would (controllers included) and are seen by watchers at once. They take a
/// lock for their duration: the seeding ones for seconds on a large cluster.
#[derive(Clone)]
pub struct Simulator {
    pub(crate) inner: Arc<Inner>,
}

/// A simulator serving its API; stops when dropped (or with [`RunningSim::stop`]).
pub struct RunningSim {
    /// The address the API is served on.
    pub addr: SocketAddr,
    sim: Simulator,
    server: JoinHandle<()>,
}

fn key(kind: Kind, namespace: &str, name: &str) -> Key {
    let namespace = if kind.namespaced() { namespace } else { "" };
    (namespace.to_string(), name.to_string())
}

impl Simulator {
    /// Binds `config.listen`, creates the namespaces every cluster has (`default`,
    /// `kube-system`, `kube-public`, `kube-node-lease`) and the `kubernetes` service, seeds the
    /// synthetic cluster of `config.nodes` × `config.pods_per_node`, and serves.
    pub async fn start(config: SimConfig) -> Result<RunningSim, Error> {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: config.listen,
            source,
        })?;
        let shutdown = CancellationToken::new();
        let inner = Arc::new(Inner {
            cluster: Mutex::new(Cluster::new(config.history)),
            addr,
            bookmark_interval: config.bookmark_interval,
            shutdown: shutdown.clone(),
        });
        let sim = Simulator {
            inner: inner.clone(),
        };
        sim.seed_system()?;
        // seconds of work for a large cluster: off the async workers
        let seeding = sim.clone();
        tokio::task::spawn_blocking(move || {
            seeding.seed_cluster(config.nodes, config.pods_per_node)
        })
        .await
        .expect("seeding does not panic")?;
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, api::router(inner))
                .with_graceful_shutdown(shutdown.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!("kubesim server failed: {e}");
            }
        });
        Ok(RunningSim { addr, sim, server })
    }

    fn seed_system(&self) -> Result<(), Error> {
        let api_ip = match self.inner.addr.ip() {
            ip if ip.is_unspecified() => Ipv4Addr::LOCALHOST.to_string(),
            ip => ip.to_string(),
        };
        self.inner.write(|c| {
            for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
                c.create(Kind::Namespace, json!({ "metadata": { "name": ns } }))?;
            }
            c.create(
                Kind::Service,
                json!({
                    "metadata": { "name": "kubernetes", "namespace": "default",
                                  "labels": { "component": "apiserver", "provider": "kubernetes" } },
                    "spec": { "clusterIP": "10.96.0.1",
                              "ports": [{ "name": "https", "port": 443, "protocol": "TCP", "targetPort": self.inner.addr.port() }] },
                }),
            )?;
            // the API server keeps this one itself: the service has no selector
            c.create(
                Kind::EndpointSlice,
                json!({
                    "metadata": { "name": "kubernetes", "namespace": "default",
                                  "labels": { "kubernetes.io/service-name": "kubernetes",
                                              "endpointslice.kubernetes.io/managed-by": "endpointslicemirroring-controller.k8s.io" } },
                    "addressType": "IPv4",
                    "endpoints": [{ "addresses": [api_ip], "conditions": { "ready": true, "serving": true, "terminating": false } }],
                    "ports": [{ "name": "https", "port": self.inner.addr.port(), "protocol": "TCP" }],
                }),
            )?;
            Ok(())
        })
    }

    /// Creates or replaces an object (kind from its `apiVersion`/`kind`, namespace `default`
    /// when absent). Unlike a PUT, a given `status` is kept: this is how a test marks a pod
    /// unready. Returns the stored object.
    pub fn apply(&self, obj: Value) -> Result<Value, Error> {
        self.inner.write(|c| c.apply(obj)).map(|o| o.value.clone())
    }

    /// An object (`namespace` is ignored for cluster-scoped kinds).
    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<Value> {
        self.inner.read(|c| {
            c.store
                .get(kind, &key(kind, namespace, name))
                .map(|o| o.value.clone())
        })
    }

    /// Objects of a kind, in one namespace or all, in (namespace, name) order.
    pub fn list(&self, kind: Kind, namespace: Option<&str>) -> Vec<Value> {
        self.inner.read(|c| {
            c.store
                .iter(kind, namespace, None)
                .map(|o| o.value.clone())
                .collect()
        })
    }

    pub fn count(&self, kind: Kind) -> usize {
        self.inner.read(|c| c.store.len(kind))
    }

    /// The current resourceVersion of the whole cluster.
    pub fn resource_version(&self) -> u64 {
        self.inner.read(|c| c.store.rv())
    }

    /// Deletes an object and, as the garbage collector does, whatever it owns.
    pub fn delete(&self, kind: Kind, namespace: &str, name: &str) -> Result<(), Error> {
        self.inner
            .write(|c| c.delete(kind, &key(kind, namespace, name)))
            .map(drop)
    }

    /// Sets `spec.replicas` of a Deployment, ReplicaSet, StatefulSet or ReplicationController.
    pub fn scale(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        replicas: u32,
    ) -> Result<(), Error> {
        self.inner
            .write(|c| c.scale(kind, &key(kind, namespace, name), i64::from(replicas)))
            .map(drop)
    }

    /// Replaces an object's labels.
    pub fn set_labels(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Value, Error> {
        self.inner
            .write(|c| {
                let mut value = c.get(kind, &key(kind, namespace, name))?.value.clone();
                value["metadata"]["labels"] = json!(labels);
                c.update(kind, value, StatusFrom::Stored)
            })
            .map(|o| o.value.clone())
    }

    /// Runs a CronJob now: creates its Job (and the Job its pods). Returns the Job.
    pub fn trigger_cronjob(&self, namespace: &str, name: &str) -> Result<Value, Error> {
        self.inner
            .write(|c| c.trigger_cronjob(&key(Kind::CronJob, namespace, name)))
            .map(|o| o.value.clone())
    }

    /// Forgets the watch history, as an etcd compaction does: open watches end with
    /// `410 Expired`, and so does any watch or continued list from an older resourceVersion,
    /// so that clients re-list.
    pub fn expire_history(&self) {
        self.inner.write(|c| c.store.expire_history());
    }
}

impl RunningSim {
    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.client_addr())
    }

    fn client_addr(&self) -> SocketAddr {
        match self.addr.ip() {
            ip if ip.is_unspecified() => SocketAddr::from((Ipv4Addr::LOCALHOST, self.addr.port())),
            _ => self.addr,
        }
    }

    /// A kubeconfig for this simulator: plain HTTP, a dummy token, context `kubesim`,
    /// namespace `default`.
    pub fn kubeconfig(&self) -> String {
        let server = self.url();
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: kubesim
  cluster:
    server: {server}
users:
- name: kubesim
  user:
    token: kubesim-dummy-token
contexts:
- name: kubesim
  context:
    cluster: kubesim
    user: kubesim
    namespace: default
current-context: kubesim
"
        )
    }

    pub fn write_kubeconfig(&self, path: &Path) -> Result<(), Error> {
        std::fs::write(path, self.kubeconfig()).map_err(|source| Error::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })
    }

    /// A handle that outlives this value's borrow (it does not keep the server up).
    pub fn simulator(&self) -> Simulator {
        self.sim.clone()
    }

    /// Stops serving: open watches end, and the server's task is awaited.
    pub async fn stop(mut self) {
        self.sim.inner.shutdown.cancel();
        if let Err(e) = (&mut self.server).await {
            tracing::error!("kubesim server task: {e}");
        }
    }
}

impl Deref for RunningSim {
    type Target = Simulator;
    fn deref(&self) -> &Simulator {
        &self.sim
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.sim.inner.shutdown.cancel();
    }
}
