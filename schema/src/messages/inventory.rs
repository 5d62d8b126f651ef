//! What Bulkhead knows of its clusters: pairing, what clusterlink observes, the inventory
//! events in the log, and the queries the api asks.
//!
//! ```text
//!  clusterlink ──ClusterReport (observations, acked)──► inventory ──InventoryEvent──► eventlog
//!       │      ◄──DigestRequest/DigestReply (what inventory holds, for resync)──┘        │
//!       └──ClusterHeartbeat──► inventory                         inventory projection ◄──┘
//!  api ──ClusterCommand / InventoryQuery──► inventory
//! ```
//!
//! Observations are compact, kind-agnostic summaries of Kubernetes objects ([`ObservedObject`]):
//! the log keeps what was observed, and the inventory derives host workloads, pod workloads,
//! kube workloads and virtual services from it, so a derivation rule can change without
//! rewriting history. Their Bulkhead labels are the labeling service's: inventory also projects
//! [`LabelingEvent::EffectiveLabels`] (streams `effective/<cluster>`) into its views.
//!
//! [`LabelingEvent::EffectiveLabels`]: crate::messages::labeling::LabelingEvent::EffectiveLabels

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireMessage;
use crate::messages::labeling::{EnforcementMode, LabelSource};

/// The Kubernetes kinds clusterlink watches.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKind {
    Namespace,
    Node,
    Pod,
    Service,
    EndpointSlice,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    ReplicationController,
    Job,
    CronJob,
    /// Bulkhead's own custom resource (`labelmaps.bulkhead.io`): how the cluster's Kubernetes
    /// labels map to Bulkhead labels.
    LabelMap,
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 13] = [
        ResourceKind::Namespace,
        ResourceKind::Node,
        ResourceKind::Pod,
        ResourceKind::Service,
        ResourceKind::EndpointSlice,
        ResourceKind::Deployment,
        ResourceKind::ReplicaSet,
        ResourceKind::StatefulSet,
        ResourceKind::DaemonSet,
        ResourceKind::ReplicationController,
        ResourceKind::Job,
        ResourceKind::CronJob,
        ResourceKind::LabelMap,
    ];

    /// The Kubernetes `kind`, as in owner references.
    pub fn kube_kind(self) -> &'static str {
        match self {
            ResourceKind::Namespace => "Namespace",
            ResourceKind::Node => "Node",
            ResourceKind::Pod => "Pod",
            ResourceKind::Service => "Service",
            ResourceKind::EndpointSlice => "EndpointSlice",
            ResourceKind::Deployment => "Deployment",
            ResourceKind::ReplicaSet => "ReplicaSet",
            ResourceKind::StatefulSet => "StatefulSet",
            ResourceKind::DaemonSet => "DaemonSet",
            ResourceKind::ReplicationController => "ReplicationController",
            ResourceKind::Job => "Job",
            ResourceKind::CronJob => "CronJob",
            ResourceKind::LabelMap => "LabelMap",
        }
    }

    pub fn from_kube_kind(kind: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.kube_kind() == kind)
    }
}

/// The controller that owns an object (its owner reference with `controller: true`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct OwnerRef {
    /// Kubernetes kind, e.g. `ReplicaSet`.
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// A Kubernetes object as clusterlink reports it: identity, labels, the annotations Bulkhead
/// reads (`bulkhead.io/*` and `com.illumio.*`, nothing else is sent), the controlling owner, and
/// the kind's details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ObservedObject {
    pub kind: ResourceKind,
    pub uid: String,
    /// Empty for cluster-scoped kinds (namespaces, nodes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
    pub resource_version: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<OwnerRef>,
    pub details: ObjectDetails,
}

/// What Bulkhead needs of each kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ObjectDetails {
    Namespace {},
    Node {
        /// `status.nodeInfo.machineID`: must be unique across the cluster's nodes.
        machine_id: String,
        /// `status.addresses` of type InternalIP and ExternalIP.
        addresses: Vec<String>,
        /// `spec.podCIDRs` (or `spec.podCIDR`).
        pod_cidrs: Vec<String>,
        /// From the `node-role.kubernetes.io/<role>` labels.
        roles: Vec<String>,
        kubelet_version: String,
    },
    Pod {
        #[serde(default, skip_serializing_if = "String::is_empty")]
        node_name: String,
        /// `status.podIPs`.
        ips: Vec<String>,
        host_network: bool,
        /// `status.phase`: Pending, Running, Succeeded, Failed, Unknown.
        phase: String,
        /// Container names.
        containers: Vec<String>,
    },
    Service {
        /// ClusterIP, NodePort, LoadBalancer, ExternalName.
        service_type: String,
        /// `spec.clusterIPs` (empty for headless services).
        cluster_ips: Vec<String>,
        ports: Vec<ServicePort>,
        /// `spec.selector`; empty when endpoints are managed by hand.
        selector: BTreeMap<String, String>,
    },
    EndpointSlice {
        /// The `kubernetes.io/service-name` label.
        service_name: String,
        endpoints: Vec<SliceEndpoint>,
        ports: Vec<SlicePort>,
    },
    /// Deployments, replica sets, stateful sets, daemon sets, replication controllers, jobs and
    /// cron jobs: the pod template's labels and annotations are what their pods will carry.
    Workload {
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        template_labels: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        template_annotations: BTreeMap<String, String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replicas: Option<i32>,
    },
    /// A LabelMap custom resource, as clusterlink found it valid: items with an empty key, or
    /// with a `from_key` an earlier item of the same list has, are left out. A cluster may have
    /// several; the labeling service merges them in name order.
    LabelMap {
        /// `spec.nodeLabelMap`: from the labels of nodes (host workloads).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        node_label_map: Vec<LabelMapItem>,
        /// `spec.workloadLabelMap`: from the labels of pods and kube workloads.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        workload_label_map: Vec<LabelMapItem>,
    },
}

/// One rule of a LabelMap: the Kubernetes label `from_key` gives the Bulkhead label `to_key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelMapItem {
    /// The Kubernetes label key read (`fromKey`), e.g. `app.kubernetes.io/name`.
    pub from_key: String,
    /// The Bulkhead label key written (`toKey`), e.g. `app`.
    pub to_key: String,
    /// Translations of values (`valuesMap`). Empty: every value is taken as it is; otherwise
    /// only the values listed map, each to its `to`, and the others leave the rule out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values_map: Vec<ValueMapping>,
    /// Whether a value naming no existing Bulkhead label may create that label
    /// (`allowCreate`); when false, such a value is not applied.
    #[serde(default)]
    pub allow_create: bool,
}

/// One translation of a [`LabelMapItem`]: the Kubernetes value `from` becomes `to`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ValueMapping {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: i32,
    /// A number or a named container port, as in the Service spec.
    pub target_port: String,
    /// TCP, UDP or SCTP.
    pub protocol: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_port: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SliceEndpoint {
    pub addresses: Vec<String>,
    pub ready: bool,
    /// The backing pod's uid, from `targetRef`, when it is a pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_uid: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SlicePort {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub port: i32,
    pub protocol: String,
}

/// How clusterlink proves which cluster it speaks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterCredentials {
    pub cluster_id: String,
    /// The token shown once when the cluster was created.
    pub token: String,
}

/// One change clusterlink observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Observation {
    /// The object exists in this state (created or changed).
    Applied(ObservedObject),
    /// The object is gone.
    Deleted { kind: ResourceKind, uid: String },
}

/// A batch of observations from one cluster, sent as a request: clusterlink re-sends it (same
/// `report_id`) until it gets a [`ReportAck`], and inventory applies a report id once. A
/// cluster's reports go one at a time (the next after this one's ack), since they apply in
/// order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterReport {
    pub credentials: ClusterCredentials,
    /// Unique per report; the idempotency key of what inventory appends for it.
    pub report_id: String,
    pub observations: Vec<Observation>,
}

/// The answer to a [`ClusterReport`] or a [`ClusterHeartbeat`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReportAck {
    /// Committed to the log (or already there): do not send it again.
    Accepted { observations: u32 },
    /// Wrong cluster id or token, or a malformed report: nothing was applied. Not retried.
    Rejected { kind: String, reason: String },
    /// Inventory could not commit now; send the same report again later.
    Unavailable { reason: String },
}

/// clusterlink's periodic sign of life with what it knows of its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterHeartbeat {
    pub credentials: ClusterCredentials,
    pub clusterlink_version: String,
    pub kubernetes_version: String,
    /// `legacy` or `clas`.
    pub cluster_mode: String,
    /// `overlay` or `flat`.
    pub network_type: String,
}

/// Asks what inventory holds of one kind in the caller's cluster, page by page, so that a
/// restarted clusterlink sends only what changed and deletes what vanished.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct DigestRequest {
    pub credentials: ClusterCredentials,
    pub kind: ResourceKind,
    /// Start after this uid (uids in ascending order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_uid: Option<String>,
    pub limit: u32,
}

impl DigestRequest {
    /// The largest `limit` inventory answers (a page must fit one message); more is refused.
    pub const MAX_LIMIT: u32 = 10_000;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DigestReply {
    /// `(uid, resource_version)` pairs in ascending uid order; fewer than `limit`: the end.
    Page {
        entries: Vec<(String, String)>,
    },
    Rejected {
        kind: String,
        reason: String,
    },
}

/// Everything inventory writes to the log (stream `cluster/<id>`), in `RecordedEvent.data`
/// with `event_type` [`InventoryEvent::EVENT_TYPE`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InventoryEvent {
    ClusterCreated {
        cluster_id: String,
        name: String,
        description: String,
        /// SHA-256 of the token, hex; the token itself is never stored.
        token_sha256: String,
        created_at_ms: u64,
    },
    ClusterUpdated {
        cluster_id: String,
        name: String,
        description: String,
    },
    ClusterDeleted {
        cluster_id: String,
    },
    /// clusterlink connected, or what it reports of the cluster changed. Heartbeats that change
    /// nothing are not logged.
    ClusterConnected {
        cluster_id: String,
        clusterlink_version: String,
        kubernetes_version: String,
        cluster_mode: String,
        network_type: String,
        at_ms: u64,
    },
    ObjectApplied {
        cluster_id: String,
        object: ObservedObject,
    },
    ObjectDeleted {
        cluster_id: String,
        kind: ResourceKind,
        uid: String,
    },
    /// A clusterlink presented wrong credentials: an audit record; nothing else changed.
    ClusterAuthFailed {
        /// The cluster id it claimed.
        cluster_id: String,
        reason: String,
        at_ms: u64,
    },
}

impl InventoryEvent {
    pub const EVENT_TYPE: &'static str = "inventory.Event";

    /// The stream of a cluster's events.
    pub fn stream(cluster_id: &str) -> String {
        format!("cluster/{cluster_id}")
    }

    /// The stream of [`InventoryEvent::ClusterAuthFailed`] records. Not the claimed cluster's
    /// stream: a caller with a made-up cluster id must not create streams, nor move a real
    /// cluster's stream version under its owner's feet.
    pub const AUDIT_STREAM: &'static str = "inventory/audit";
}

/// Why inventory refused a command or a query; the api maps it to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InventoryRejection {
    /// The request itself is wrong (an empty or overlong name, a filter that does not apply).
    Invalid,
    /// The cluster does not exist.
    NotFound,
    /// It clashes with the current state: the name is taken, or the cluster changed meanwhile.
    Conflict,
}

/// Changes a cluster's pairing record; answered with a [`ClusterCommandReply`]. The command's
/// envelope id is its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterCommand {
    /// Pairs a new cluster: inventory picks its id and token.
    Create {
        /// 1 to 255 characters, unique among the clusters.
        name: String,
        #[serde(default)]
        description: String,
    },
    /// Changes what is given, keeps the rest.
    Update {
        cluster_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
    },
    /// Forgets the cluster and everything observed in it; its token stops working.
    Delete { cluster_id: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClusterCommandReply {
    /// Committed, and visible to queries from now on. For a delete: the cluster as it was.
    Done {
        cluster: ClusterView,
        /// The pairing token, in the reply to `Create` only: inventory keeps only its hash, so
        /// this is the one time anybody sees it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token: Option<String>,
    },
    /// Nothing changed.
    Rejected {
        kind: InventoryRejection,
        reason: String,
    },
    /// The event log could not commit now; nothing changed, the command may be sent again.
    Unavailable { reason: String },
}

/// Whether inventory holds what the cluster's clusterlink sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncState {
    /// Online, and its last report was committed.
    InSync,
    /// Not heard from within the online period, never connected, or its last report could not
    /// be committed.
    OutOfSync,
}

/// Something wrong with a cluster that its operators must fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "error_type", rename_all = "snake_case")]
pub enum ClusterError {
    /// Several nodes report the same `/etc/machine-id`, so enforcers cannot be told apart.
    DuplicateMachineId {
        machine_id: String,
        /// The nodes sharing it, by name.
        nodes: Vec<String>,
    },
}

/// A cluster as the api shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterView {
    pub cluster_id: String,
    pub name: String,
    pub description: String,
    pub created_at_ms: u64,
    /// A heartbeat arrived within the online period (60 s unless configured).
    pub online: bool,
    pub sync_state: SyncState,
    /// When clusterlink last connected (or reported a change of versions, mode or network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_connected_ms: Option<u64>,
    /// Empty until clusterlink first connects, as are the next three.
    pub clusterlink_version: String,
    pub kubernetes_version: String,
    /// `legacy` or `clas`.
    pub cluster_mode: String,
    /// `overlay` or `flat`.
    pub network_type: String,
    pub errors: Vec<ClusterError>,
    pub nodes: u32,
    pub pods: u32,
}

/// The cluster an entity belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ClusterRef {
    pub cluster_id: String,
    pub name: String,
}

/// A pod, by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodRef {
    pub uid: String,
    pub namespace: String,
    pub name: String,
}

/// A controller (or, for a bare pod, the pod itself) as a Kubernetes kind, name and uid.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadRef {
    /// Kubernetes kind, e.g. `Deployment`, or `Pod` for a bare pod.
    pub kind: String,
    pub name: String,
    pub uid: String,
}

/// A Bulkhead label an entity carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AssignedLabel {
    /// `/orgs/1/labels/<id>`.
    pub href: String,
    pub key: String,
    pub value: String,
    /// Why the entity carries it: a label map rule, its profile, an annotation, its node.
    pub source: LabelSource,
}

/// What the labeling service last wrote of an entity (`LabelingEvent::EffectiveLabels`): views
/// carry it once labeling has written the entity, and not before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveLabeling {
    /// False for pods, services and kube workloads of unmanaged namespaces (no labels then).
    pub managed: bool,
    /// The namespace profile's mode, for managed pods, services and kube workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement_mode: Option<EnforcementMode>,
    /// By key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<AssignedLabel>,
}

/// A node (host workload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HostWorkloadView {
    pub cluster: ClusterRef,
    pub uid: String,
    pub name: String,
    pub machine_id: String,
    /// Another node of the cluster has the same machine id (see the cluster's errors).
    pub duplicate_machine_id: bool,
    pub addresses: Vec<String>,
    pub pod_cidrs: Vec<String>,
    pub roles: Vec<String>,
    pub kubelet_version: String,
    /// Kubernetes labels.
    pub labels: BTreeMap<String, String>,
    /// Host-network pods on this node: they share the node's addresses and policy.
    pub host_network_pods: Vec<PodRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeling: Option<EffectiveLabeling>,
}

/// A pod on the pod network (pod workload, legacy mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PodWorkloadView {
    pub cluster: ClusterRef,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub node_name: String,
    pub ips: Vec<String>,
    pub phase: String,
    pub containers: Vec<String>,
    /// Kubernetes labels.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Controlling owners from the pod up, e.g. its ReplicaSet, then that one's Deployment.
    pub owners: Vec<WorkloadRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeling: Option<EffectiveLabeling>,
}

/// The controller at the top of an owner chain, or a bare pod (kube workload, CLAS mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct KubeWorkloadView {
    pub cluster: ClusterRef,
    pub namespace: String,
    #[serde(flatten)]
    pub workload: WorkloadRef,
    /// Kubernetes labels; empty when only known from its pods' owner references (not observed
    /// itself).
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Its pods on the pod network.
    pub pods: u32,
    /// Those pods' IPs.
    pub ips: Vec<String>,
    /// Nodes its pods run on.
    pub nodes: Vec<String>,
    /// A controller's, as labeling resolved it; a bare pod's is its pod's. None for a workload
    /// known only by reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeling: Option<EffectiveLabeling>,
}

/// One endpoint behind a virtual service, from its EndpointSlices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BackendView {
    pub addresses: Vec<String>,
    pub ready: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_name: String,
    /// The backing pod, when the endpoint names one inventory knows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    /// That pod's kube workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<WorkloadRef>,
}

/// A Kubernetes service (virtual service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VirtualServiceView {
    pub cluster: ClusterRef,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub service_type: String,
    pub cluster_ips: Vec<String>,
    pub ports: Vec<ServicePort>,
    pub selector: BTreeMap<String, String>,
    /// Kubernetes labels.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub backends: Vec<BackendView>,
    /// The ports of its EndpointSlices: the target ports, named ones resolved.
    pub backend_ports: Vec<SlicePort>,
    /// The kube workloads behind it, whatever kind (Deployment, DaemonSet, bare pod...).
    pub workloads: Vec<WorkloadRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labeling: Option<EffectiveLabeling>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NamespaceView {
    pub cluster: ClusterRef,
    pub uid: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// What an [`InventoryQuery`] lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InventoryQueryKind {
    Clusters,
    /// One cluster; `Rejected(NotFound)` when it does not exist.
    Cluster {
        cluster_id: String,
    },
    HostWorkloads,
    PodWorkloads,
    KubeWorkloads,
    VirtualServices,
    /// Needs the cluster filter.
    Namespaces,
}

/// Narrows a query; every given filter must match. A filter that does not apply to the kind
/// (a namespace for nodes) is `Invalid`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The node name (host workloads: the node; pods and kube workloads: where they run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A part of the name, case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Bulkhead labels, as the reference API's `labels` parameter has them: an entity matches
    /// when it carries every label of at least one of the lists (`[[a, b], [c]]`: a and b, or
    /// c). Host workloads, pod workloads, kube workloads and virtual services only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Vec<LabelSelector>>,
}

/// One label of a label filter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelSelector {
    /// The label's href, `/orgs/1/labels/<id>`.
    Href(String),
    /// The label's key, exactly, and its value, ignoring ASCII case (a key's values are
    /// unique so).
    KeyValue { key: String, value: String },
}

/// Asks inventory for a page of one kind of entity; answered with an [`InventoryReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryQuery {
    pub what: InventoryQueryKind,
    #[serde(default)]
    pub filter: InventoryFilter,
    /// Entries to skip, in the listing's order (cluster, namespace, name).
    #[serde(default)]
    pub offset: u32,
    /// 1 to [`InventoryQuery::MAX_LIMIT`].
    pub limit: u32,
}

impl InventoryQuery {
    pub const MAX_LIMIT: u32 = 1000;
}

/// The entries of one page, typed by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InventoryItems {
    Clusters(Vec<ClusterView>),
    HostWorkloads(Vec<HostWorkloadView>),
    PodWorkloads(Vec<PodWorkloadView>),
    KubeWorkloads(Vec<KubeWorkloadView>),
    VirtualServices(Vec<VirtualServiceView>),
    Namespaces(Vec<NamespaceView>),
}

impl InventoryItems {
    pub fn len(&self) -> usize {
        match self {
            InventoryItems::Clusters(items) => items.len(),
            InventoryItems::HostWorkloads(items) => items.len(),
            InventoryItems::PodWorkloads(items) => items.len(),
            InventoryItems::KubeWorkloads(items) => items.len(),
            InventoryItems::VirtualServices(items) => items.len(),
            InventoryItems::Namespaces(items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A page of a listing. It may hold fewer than `limit` entries before the end, when more would
/// not fit one message: the next page starts at `offset + items.len()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct InventoryPage {
    /// Entries matching the filter, on all pages.
    pub total: u64,
    pub offset: u32,
    pub items: InventoryItems,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InventoryReply {
    Page(InventoryPage),
    Rejected {
        kind: InventoryRejection,
        reason: String,
    },
}

impl WireMessage for ClusterReport {
    const TYPE: &'static str = "inventory.ClusterReport";
    const VERSION: u16 = 1;
}

impl WireMessage for ReportAck {
    const TYPE: &'static str = "inventory.ReportAck";
    const VERSION: u16 = 1;
}

impl WireMessage for ClusterHeartbeat {
    const TYPE: &'static str = "inventory.ClusterHeartbeat";
    const VERSION: u16 = 1;
}

impl WireMessage for DigestRequest {
    const TYPE: &'static str = "inventory.DigestRequest";
    const VERSION: u16 = 1;
}

impl WireMessage for DigestReply {
    const TYPE: &'static str = "inventory.DigestReply";
    const VERSION: u16 = 1;
}

impl WireMessage for InventoryEvent {
    const TYPE: &'static str = InventoryEvent::EVENT_TYPE;
    const VERSION: u16 = 1;
}

impl WireMessage for ClusterCommand {
    const TYPE: &'static str = "inventory.ClusterCommand";
    const VERSION: u16 = 1;
}

impl WireMessage for ClusterCommandReply {
    const TYPE: &'static str = "inventory.ClusterCommandReply";
    const VERSION: u16 = 1;
}

impl WireMessage for InventoryQuery {
    const TYPE: &'static str = "inventory.InventoryQuery";
    const VERSION: u16 = 1;
}

impl WireMessage for InventoryReply {
    const TYPE: &'static str = "inventory.InventoryReply";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    /// The golden vectors of [`InventoryQuery`] and [`InventoryReply`] before label filters and
    /// effective labels were added: what an older sender writes.
    const QUERY_BEFORE_LABELS: &str = concat!(
        "85a474797065b8696e76656e746f72792e496e76656e746f72795175657279a776657273696f6e01a26964d9",
        "2430313839306135642d616339362d373734622d626363652d623330323039396138303537aa73656e745f61",
        "745f6d73cf0000018bcfe56800a77061796c6f6164c47984a477686174ad706f645f776f726b6c6f616473a6",
        "66696c74657283aa636c75737465725f6964d92463306666656530302d303030302d343030302d383030302d",
        "303030303030303030303031a96e616d657370616365a473686f70a46e616d65a866726f6e74656e64a66f66",
        "6673657400a56c696d697464",
    );
    const REPLY_BEFORE_LABELS: &str = concat!(
        "85a474797065b8696e76656e746f72792e496e76656e746f72795265706c79a776657273696f6e01a26964d9",
        "2430313839306135642d616339362d373734622d626363652d623330323039396138303537aa73656e745f61",
        "745f6d73cf0000018bcfe56800a77061796c6f6164c5018181a47061676583a5746f74616c01a66f66667365",
        "7400a56974656d7381ad706f645f776f726b6c6f616473918ba7636c757374657282aa636c75737465725f69",
        "64d92463306666656530302d303030302d343030302d383030302d303030303030303030303031a46e616d65",
        "a770726f642d6575a3756964ac376434652d706f642d756964a96e616d657370616365a473686f70a46e616d",
        "65b566726f6e74656e642d3763396638642d6162636465a96e6f64655f6e616d65a66e6f64652d31a3697073",
        "91aa31302e3234342e312e37a57068617365a752756e6e696e67aa636f6e7461696e65727391a3776562a66c",
        "6162656c7381a3617070a866726f6e74656e64ab616e6e6f746174696f6e7380a66f776e6572739283a46b69",
        "6e64aa5265706c696361536574a46e616d65af66726f6e74656e642d376339663864a3756964ab356131622d",
        "72732d75696483a46b696e64aa4465706c6f796d656e74a46e616d65a866726f6e74656e64a3756964af3963",
        "32642d6465706c6f792d756964",
    );

    #[test]
    fn messages_of_senders_that_know_no_labels_still_decode() {
        let query = Envelope::decode::<InventoryQuery>(
            &hex::decode(QUERY_BEFORE_LABELS).unwrap(),
            usize::MAX,
        )
        .unwrap()
        .message;
        assert_eq!(query.filter.name.as_deref(), Some("frontend"));
        assert!(query.filter.labels.is_empty());
        let reply = Envelope::decode::<InventoryReply>(
            &hex::decode(REPLY_BEFORE_LABELS).unwrap(),
            usize::MAX,
        )
        .unwrap()
        .message;
        let InventoryReply::Page(InventoryPage {
            items: InventoryItems::PodWorkloads(pods),
            ..
        }) = reply
        else {
            panic!("{reply:?}")
        };
        assert_eq!(pods[0].labels["app"], "frontend");
        assert_eq!(pods[0].labeling, None);
    }
}
