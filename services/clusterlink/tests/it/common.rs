//! The harness: a simulated cluster, a bus, a recording responder in inventory's place, and
//! clusterlink started and stopped as the binary would.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bulkhead_clusterlink::convert::{Observe, observe};
use bulkhead_clusterlink::crd::LabelMap;
use bulkhead_clusterlink::{ClusterlinkConfig, ClusterlinkError};
use bulkhead_kubesim::{Kind, RunningSim, SimConfig, Simulator};
use bulkhead_runtime::bus::{InProcessBus, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_schema::messages::health::ServiceState;
use bulkhead_schema::messages::inventory::{
    ClusterCredentials, ClusterHeartbeat, ClusterReport, DigestReply, DigestRequest, Observation,
    ObservedObject, ReportAck, ResourceKind,
};
use bulkhead_schema::{Subject, WireMessage};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::CustomResourceExt;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const CLUSTER: &str = "c1";
pub const TOKEN: &str = "t0ken";

pub type Key = (ResourceKind, String);

/// What inventory would hold: the latest observation of every object, by (kind, uid).
pub type State = BTreeMap<Key, ObservedObject>;

/// Stands in for inventory on the real bus: checks credentials, applies each report id once,
/// serves digests from what it applied, and records everything it was sent.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Recorded>>);

#[derive(Default)]
pub struct Recorded {
    /// The token it accepts.
    pub token: String,
    pub objects: State,
    /// Every report received, retries included.
    pub reports: Vec<ClusterReport>,
    /// Observations applied, in order, each report once.
    pub applied: Vec<Observation>,
    applied_ids: BTreeSet<String>,
    pub digests: Vec<DigestRequest>,
    pub heartbeats: Vec<ClusterHeartbeat>,
    /// Answers given to the next reports instead of applying them.
    pub script: VecDeque<ReportAck>,
}

fn unauthorized() -> (String, String) {
    ("unauthorized".into(), "wrong cluster id or token".into())
}

impl Recorded {
    fn authorized(&self, credentials: &ClusterCredentials) -> bool {
        credentials.cluster_id == CLUSTER && credentials.token == self.token
    }

    fn report(&mut self, report: ClusterReport) -> ReportAck {
        self.reports.push(report.clone());
        if !self.authorized(&report.credentials) {
            let (kind, reason) = unauthorized();
            return ReportAck::Rejected { kind, reason };
        }
        if let Some(ack) = self.script.pop_front() {
            return ack;
        }
        // inventory applies a report id once, however often it is sent
        if self.applied_ids.insert(report.report_id.clone()) {
            for observation in &report.observations {
                match observation {
                    Observation::Applied(object) => {
                        self.objects
                            .insert((object.kind, object.uid.clone()), object.clone());
                    }
                    Observation::Deleted { kind, uid } => {
                        self.objects.remove(&(*kind, uid.clone()));
                    }
                }
            }
            self.applied.extend(report.observations.iter().cloned());
        }
        ReportAck::Accepted {
            observations: report.observations.len() as u32,
        }
    }

    fn digest(&mut self, request: DigestRequest) -> DigestReply {
        self.digests.push(request.clone());
        if !self.authorized(&request.credentials) {
            let (kind, reason) = unauthorized();
            return DigestReply::Rejected { kind, reason };
        }
        let after = request.after_uid.unwrap_or_default();
        let entries = self
            .objects
            .range((request.kind, after.clone())..)
            .take_while(|((kind, _), _)| *kind == request.kind)
            .filter(|((_, uid), _)| *uid > after)
            .take(request.limit as usize)
            .map(|((_, uid), object)| (uid.clone(), object.resource_version.clone()))
            .collect();
        DigestReply::Page { entries }
    }

    fn heartbeat(&mut self, heartbeat: ClusterHeartbeat) -> ReportAck {
        self.heartbeats.push(heartbeat.clone());
        if !self.authorized(&heartbeat.credentials) {
            let (kind, reason) = unauthorized();
            return ReportAck::Rejected { kind, reason };
        }
        ReportAck::Accepted { observations: 0 }
    }
}

impl Recorder {
    /// A recorder accepting `token`, not answering yet.
    pub fn new(token: &str) -> Recorder {
        let recorder = Recorder::default();
        recorder.lock().token = token.into();
        recorder
    }

    /// Starts answering inventory's subjects of [`CLUSTER`] on `bus`.
    pub async fn answer(&self, bus: &TypedBus) {
        self.serve(bus, Subject::inventory_report(CLUSTER), Recorded::report)
            .await;
        self.serve(bus, Subject::inventory_digest(CLUSTER), Recorded::digest)
            .await;
        self.serve(
            bus,
            Subject::inventory_cluster_heartbeat(CLUSTER),
            Recorded::heartbeat,
        )
        .await;
        // the subscriptions are in place before anyone asks
        bus.raw().flush().await.unwrap();
    }

    async fn serve<Q: WireMessage, A: WireMessage>(
        &self,
        bus: &TypedBus,
        subject: Subject,
        answer: fn(&mut Recorded, Q) -> A,
    ) {
        let mut requests = bus.subscribe::<Q>(&subject).await.unwrap();
        let (recorder, bus) = (self.clone(), bus.clone());
        tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                let reply = answer(&mut recorder.lock(), request.message);
                if let Some(to) = request.reply {
                    bus.reply(&to, &reply).await.unwrap();
                }
            }
        });
    }

    pub fn lock(&self) -> MutexGuard<'_, Recorded> {
        self.0.lock().unwrap()
    }

    pub fn objects(&self) -> State {
        self.lock().objects.clone()
    }

    pub fn applied(&self) -> Vec<Observation> {
        self.lock().applied.clone()
    }
}

/// A simulated cluster with a small shop (every kind, the LabelMap CRD and one LabelMap), a
/// recorder and a bus.
pub struct Env {
    pub sim: RunningSim,
    pub bus: TypedBus,
    pub recorder: Recorder,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Env {
    /// On the in-process bus, the recorder answering.
    pub async fn start() -> Env {
        Env::start_on(TypedBus::new(Arc::new(InProcessBus::default()))).await
    }

    pub async fn start_on(bus: TypedBus) -> Env {
        let env = Env::unanswered(bus).await;
        env.recorder.answer(&env.bus).await;
        env
    }

    /// The recorder not answering yet: requests find no responders.
    pub async fn unanswered(bus: TypedBus) -> Env {
        let sim = Simulator::start(SimConfig {
            // watches of quiet kinds learn of an expired history at the next bookmark
            bookmark_interval: Duration::from_millis(200),
            ..SimConfig::default()
        })
        .await
        .unwrap();
        sim.seed_demo_app().unwrap();
        sim.apply(replication_controller("shop", "legacy")).unwrap();
        install_label_map_crd(&sim);
        sim.apply(label_map("default")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig).unwrap();
        Env {
            sim,
            bus,
            recorder: Recorder::new(TOKEN),
            kubeconfig,
            _dir: dir,
        }
    }

    /// Fast timings, so that retries and heartbeats happen within a test's patience.
    pub fn config(&self) -> ClusterlinkConfig {
        ClusterlinkConfig {
            cluster_id: CLUSTER.into(),
            cluster_token: Some(TOKEN.into()),
            kubeconfig: Some(self.kubeconfig.clone()),
            report_batch_size: 50,
            report_linger_ms: 10,
            heartbeat_interval_ms: 200,
            request_timeout_ms: 1_000,
            retry_max_ms: 200,
            verbosity: 1,
            ..ClusterlinkConfig::default()
        }
    }

    pub fn link(&self) -> Link {
        Link::start(self.config(), self.bus.clone())
    }

    /// What inventory must hold for the cluster as it is now.
    pub fn expected(&self) -> State {
        expected(&self.sim)
    }

    /// Waits until the recorder holds exactly what the cluster holds.
    pub async fn converged(&self, what: &str) {
        let sim = self.sim.simulator();
        let recorder = self.recorder.clone();
        eventually(what, move || recorder.objects() == expected(&sim)).await;
    }
}

/// clusterlink running as `bulkhead serve clusterlink` runs it.
pub struct Link {
    pub health: Health,
    shutdown: CancellationToken,
    task: JoinHandle<Result<(), ClusterlinkError>>,
}

impl Link {
    pub fn start(config: ClusterlinkConfig, bus: TypedBus) -> Link {
        let health = Health::new("clusterlink", "test");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(bulkhead_clusterlink::run(
            config,
            bus,
            health.clone(),
            shutdown.clone(),
        ));
        Link {
            health,
            shutdown,
            task,
        }
    }

    pub async fn state_is(&self, state: ServiceState) {
        let health = self.health.clone();
        eventually(&format!("clusterlink {state:?}"), move || {
            health.state().0 == state
        })
        .await;
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("clusterlink stops within 5 s")
            .unwrap()
            .unwrap();
    }
}

/// Polls `check` every 20 ms for up to 15 s.
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A line of the metrics exposition with all of `parts`.
pub fn metric_line_with(parts: &[&str]) -> bool {
    bulkhead_runtime::metrics::render()
        .lines()
        .any(|line| parts.iter().all(|p| line.contains(p)))
}

/// Runs `test` for at most 30 s.
pub async fn bounded<F: Future<Output = ()>>(test: F) {
    tokio::time::timeout(Duration::from_secs(30), test)
        .await
        .expect("the test finishes within 30 s");
}

fn collect<K: Observe + DeserializeOwned>(sim: &Simulator, kind: Kind, into: &mut State) {
    for value in sim.list(kind, None) {
        let object: K = serde_json::from_value(value).unwrap();
        let observed = observe(&object).unwrap();
        into.insert((observed.kind, observed.uid.clone()), observed);
    }
}

/// Every object of the watched kinds in `sim`, observed by clusterlink's own conversion (whose
/// rules the unit tests check): the recorder must end up holding exactly this.
pub fn expected(sim: &Simulator) -> State {
    let mut all = State::new();
    collect::<Namespace>(sim, Kind::Namespace, &mut all);
    collect::<Node>(sim, Kind::Node, &mut all);
    collect::<Pod>(sim, Kind::Pod, &mut all);
    collect::<Service>(sim, Kind::Service, &mut all);
    collect::<EndpointSlice>(sim, Kind::EndpointSlice, &mut all);
    collect::<Deployment>(sim, Kind::Deployment, &mut all);
    collect::<ReplicaSet>(sim, Kind::ReplicaSet, &mut all);
    collect::<StatefulSet>(sim, Kind::StatefulSet, &mut all);
    collect::<DaemonSet>(sim, Kind::DaemonSet, &mut all);
    collect::<ReplicationController>(sim, Kind::ReplicationController, &mut all);
    collect::<Job>(sim, Kind::Job, &mut all);
    collect::<CronJob>(sim, Kind::CronJob, &mut all);
    collect::<LabelMap>(sim, Kind::LabelMap, &mut all);
    all
}

/// Installs the CustomResourceDefinition of LabelMaps (the one `deploy/crds` ships).
pub fn install_label_map_crd(sim: &Simulator) {
    sim.apply(serde_json::to_value(LabelMap::crd()).unwrap())
        .unwrap();
}

pub fn uninstall_label_map_crd(sim: &Simulator) {
    sim.delete(Kind::CustomResourceDefinition, "", "labelmaps.bulkhead.io")
        .unwrap();
}

/// A LabelMap with a node rule, a workload rule, and a second workload rule for the same
/// `fromKey`, which clusterlink leaves out.
pub fn label_map(name: &str) -> Value {
    json!({
        "apiVersion": "bulkhead.io/v1", "kind": "LabelMap",
        "metadata": { "name": name },
        "spec": {
            "nodeLabelMap": [{
                "fromKey": "topology.kubernetes.io/zone", "toKey": "loc",
                "valuesMap": [{ "from": "us-east-1a", "to": "east" }], "allowCreate": true,
            }],
            "workloadLabelMap": [
                { "fromKey": "app.kubernetes.io/name", "toKey": "app" },
                { "fromKey": "app.kubernetes.io/name", "toKey": "role" },
            ],
        },
    })
}

/// The observations that take `before` to `after`, as a set: what a resync may send, at most.
pub fn difference(before: &State, after: &State) -> BTreeMap<Key, Option<String>> {
    let mut changes = BTreeMap::new();
    for (key, object) in after {
        if before.get(key).map(|o| &o.resource_version) != Some(&object.resource_version) {
            changes.insert(key.clone(), Some(object.resource_version.clone()));
        }
    }
    for key in before.keys().filter(|k| !after.contains_key(*k)) {
        changes.insert(key.clone(), None);
    }
    changes
}

/// `observations` in the shape of [`difference`]: the last word on each object.
pub fn as_changes(observations: &[Observation]) -> BTreeMap<Key, Option<String>> {
    observations
        .iter()
        .map(|o| match o {
            Observation::Applied(object) => (
                (object.kind, object.uid.clone()),
                Some(object.resource_version.clone()),
            ),
            Observation::Deleted { kind, uid } => ((*kind, uid.clone()), None),
        })
        .collect()
}

pub fn pod(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": name, "namespace": namespace, "labels": { "app": name } },
        "spec": { "containers": [{ "name": "main", "image": "busybox" }] },
    })
}

fn replication_controller(namespace: &str, name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": { "name": name, "namespace": namespace },
        "spec": {
            "replicas": 1,
            "selector": { "app": name },
            "template": {
                "metadata": { "labels": { "app": name }, "annotations": { "bulkhead.io/tier": "old" } },
                "spec": { "containers": [{ "name": "main", "image": "busybox" }] },
            },
        },
    })
}

pub fn uid(value: &Value) -> String {
    value["metadata"]["uid"].as_str().unwrap().to_owned()
}
