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
//! rewriting history.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireMessage;

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
}

impl ResourceKind {
    pub const ALL: [ResourceKind; 12] = [
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
/// `report_id`) until it gets a [`ReportAck`], and inventory applies a report id once.
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
