//! The inventory's state as a pure projection of [`InventoryEvent`]s: clusters and, per cluster,
//! the objects clusterlink observed, by kind and uid. The views (host workloads, pod workloads,
//! kube workloads, virtual services) are derived on demand in [`crate::views`], so the state
//! holds each fact once.
//!
//! Each object also holds what the labeling service last wrote of it (its effective labels,
//! from the `effective/<cluster>` streams of the same log), so that views show them and label
//! filters match them without asking labeling.
//!
//! Compactness (≤ 2 KiB per pod at 22,000 pods): objects drop what no view reads (uid lives in
//! the map key only; workload templates are not kept), and what repeats across objects is
//! interned in [`Pool`]s that forget what nobody uses any more: strings (namespaces, label keys
//! and values, owners, node and container names, phases), effective labels, and whole sets of
//! them.

use std::collections::BTreeMap;
use std::sync::Arc;

use bulkhead_runtime::intern::Pool;
use bulkhead_runtime::projection::Projection;
use bulkhead_schema::messages::eventlog::RecordedEvent;
use bulkhead_schema::messages::inventory::{
    ClusterCredentials, EffectiveLabeling, InventoryEvent, LabelMapItem, ObjectDetails,
    ObservedObject, OwnerRef, ResourceKind, ServicePort, SliceEndpoint, SlicePort,
};
use bulkhead_schema::messages::labeling::{EntityKind, LabelingEvent};
use serde::de::Deserializer;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

mod labeling;

pub(crate) use labeling::Labeling;
use labeling::{Label, entity_kind, resource_kinds};

pub(crate) use bulkhead_runtime::intern::Str;

/// Labels or annotations, sorted by key.
pub(crate) type Pairs = Box<[(Str, Str)]>;

/// Owner chains are followed at most this deep: a cycle in reported owner references (which
/// Kubernetes forbids, but a report is input) must not hang a query.
pub(crate) const MAX_OWNER_DEPTH: usize = 8;

/// The index's pools.
#[derive(Debug, Default)]
struct Pools {
    strings: Pool<str>,
    labels: Pool<Label>,
    labelings: Pool<Labeling>,
}

impl Pools {
    fn str(&mut self, s: &str) -> Str {
        self.strings.intern(s)
    }

    fn pairs(&mut self, map: &BTreeMap<String, String>) -> Pairs {
        map.iter()
            .map(|(k, v)| (self.str(k), self.str(v)))
            .collect()
    }

    /// Sets before the labels in them before strings: what a dropped set held can go in the
    /// same sweep.
    fn sweep_if_grown(&mut self) {
        self.labelings.sweep_if_grown();
        self.labels.sweep_if_grown();
        self.strings.sweep_if_grown();
    }
}

/// The controlling owner of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Owner {
    pub(crate) kind: Str,
    pub(crate) name: Str,
    pub(crate) uid: Str,
}

/// An observed object, without its uid (the key it is stored under) and kind (the map it is in).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    pub(crate) namespace: Str,
    pub(crate) name: Box<str>,
    pub(crate) resource_version: Box<str>,
    /// Kubernetes labels.
    pub(crate) labels: Pairs,
    pub(crate) annotations: Pairs,
    pub(crate) owner: Option<Owner>,
    pub(crate) details: Details,
    /// What labeling last wrote of the object, when it is an entity labeling wrote.
    pub(crate) labeling: Option<Arc<Labeling>>,
}

/// The kind's details; the rare, large ones boxed so that pods stay small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Details {
    Namespace,
    Node(Box<NodeDetails>),
    Pod(PodDetails),
    Service(Box<ServiceDetails>),
    EndpointSlice(Box<SliceDetails>),
    /// Controllers; their pod templates are the labeling service's business, not kept here.
    Workload {
        replicas: Option<i32>,
    },
    /// Kept whole though no view shows it: a cluster has a few small ones, and a checkpoint
    /// restores them as observed.
    LabelMap(Box<LabelMapDetails>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LabelMapDetails {
    pub(crate) node_label_map: Vec<LabelMapItem>,
    pub(crate) workload_label_map: Vec<LabelMapItem>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct NodeDetails {
    pub(crate) machine_id: String,
    pub(crate) addresses: Vec<String>,
    pub(crate) pod_cidrs: Vec<String>,
    pub(crate) roles: Vec<String>,
    pub(crate) kubelet_version: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PodDetails {
    pub(crate) node_name: Str,
    pub(crate) ips: Box<[Box<str>]>,
    pub(crate) host_network: bool,
    pub(crate) phase: Str,
    pub(crate) containers: Box<[Str]>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceDetails {
    pub(crate) service_type: String,
    pub(crate) cluster_ips: Vec<String>,
    pub(crate) ports: Vec<ServicePort>,
    pub(crate) selector: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SliceDetails {
    pub(crate) service_name: Str,
    pub(crate) endpoints: Box<[Endpoint]>,
    pub(crate) ports: Vec<SlicePort>,
}

/// One endpoint of a slice; as many as there are pods behind services, so kept small.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) addresses: Box<[Box<str>]>,
    pub(crate) ready: bool,
    pub(crate) pod_uid: Option<Box<str>>,
    pub(crate) node_name: Str,
}

impl Object {
    /// The compact form of `observed`; `None` when its details are not of its kind (a malformed
    /// observation, which [`validate_observation`] keeps out of the log).
    fn from_observed(observed: &ObservedObject, pools: &mut Pools) -> Option<Object> {
        use ResourceKind as K;
        let strs = |pools: &mut Pools, list: &[String]| -> Box<[Str]> {
            list.iter().map(|s| pools.str(s)).collect()
        };
        let details = match (&observed.details, observed.kind) {
            (ObjectDetails::Namespace {}, K::Namespace) => Details::Namespace,
            (
                ObjectDetails::Node {
                    machine_id,
                    addresses,
                    pod_cidrs,
                    roles,
                    kubelet_version,
                },
                K::Node,
            ) => Details::Node(Box::new(NodeDetails {
                machine_id: machine_id.clone(),
                addresses: addresses.clone(),
                pod_cidrs: pod_cidrs.clone(),
                roles: roles.clone(),
                kubelet_version: kubelet_version.clone(),
            })),
            (
                ObjectDetails::Pod {
                    node_name,
                    ips,
                    host_network,
                    phase,
                    containers,
                },
                K::Pod,
            ) => Details::Pod(PodDetails {
                node_name: pools.str(node_name),
                ips: ips.iter().map(|ip| ip.as_str().into()).collect(),
                host_network: *host_network,
                phase: pools.str(phase),
                containers: strs(pools, containers),
            }),
            (
                ObjectDetails::Service {
                    service_type,
                    cluster_ips,
                    ports,
                    selector,
                },
                K::Service,
            ) => Details::Service(Box::new(ServiceDetails {
                service_type: service_type.clone(),
                cluster_ips: cluster_ips.clone(),
                ports: ports.clone(),
                selector: selector.clone(),
            })),
            (
                ObjectDetails::EndpointSlice {
                    service_name,
                    endpoints,
                    ports,
                },
                K::EndpointSlice,
            ) => Details::EndpointSlice(Box::new(SliceDetails {
                service_name: pools.str(service_name),
                endpoints: endpoints
                    .iter()
                    .map(|e| Endpoint {
                        addresses: e.addresses.iter().map(|a| a.as_str().into()).collect(),
                        ready: e.ready,
                        pod_uid: e.pod_uid.as_deref().map(Into::into),
                        node_name: pools.str(&e.node_name),
                    })
                    .collect(),
                ports: ports.clone(),
            })),
            (ObjectDetails::Workload { replicas, .. }, kind) if is_controller(kind) => {
                Details::Workload {
                    replicas: *replicas,
                }
            }
            (
                ObjectDetails::LabelMap {
                    node_label_map,
                    workload_label_map,
                },
                K::LabelMap,
            ) => Details::LabelMap(Box::new(LabelMapDetails {
                node_label_map: node_label_map.clone(),
                workload_label_map: workload_label_map.clone(),
            })),
            _ => return None,
        };
        Some(Object {
            namespace: pools.str(&observed.namespace),
            name: observed.name.as_str().into(),
            resource_version: observed.resource_version.as_str().into(),
            labels: pools.pairs(&observed.labels),
            annotations: pools.pairs(&observed.annotations),
            owner: observed.owner.as_ref().map(|o| Owner {
                kind: pools.str(&o.kind),
                name: pools.str(&o.name),
                uid: pools.str(&o.uid),
            }),
            details,
            labeling: None,
        })
    }

    /// The observation this object was made from, as far as the index keeps it: what a
    /// checkpoint stores, and what [`Object::from_observed`] turns back into an equal object.
    fn to_observed(&self, kind: ResourceKind, uid: &str) -> ObservedObject {
        let strings = |list: &[Str]| list.iter().map(|s| s.to_string()).collect();
        let details = match &self.details {
            Details::Namespace => ObjectDetails::Namespace {},
            Details::Node(node) => ObjectDetails::Node {
                machine_id: node.machine_id.clone(),
                addresses: node.addresses.clone(),
                pod_cidrs: node.pod_cidrs.clone(),
                roles: node.roles.clone(),
                kubelet_version: node.kubelet_version.clone(),
            },
            Details::Pod(pod) => ObjectDetails::Pod {
                node_name: pod.node_name.to_string(),
                ips: pod.ips.iter().map(|ip| ip.to_string()).collect(),
                host_network: pod.host_network,
                phase: pod.phase.to_string(),
                containers: strings(&pod.containers),
            },
            Details::Service(service) => ObjectDetails::Service {
                service_type: service.service_type.clone(),
                cluster_ips: service.cluster_ips.clone(),
                ports: service.ports.clone(),
                selector: service.selector.clone(),
            },
            Details::EndpointSlice(slice) => ObjectDetails::EndpointSlice {
                service_name: slice.service_name.to_string(),
                endpoints: slice
                    .endpoints
                    .iter()
                    .map(|e| SliceEndpoint {
                        addresses: e.addresses.iter().map(|a| a.to_string()).collect(),
                        ready: e.ready,
                        pod_uid: e.pod_uid.as_deref().map(str::to_owned),
                        node_name: e.node_name.to_string(),
                    })
                    .collect(),
                ports: slice.ports.clone(),
            },
            Details::Workload { replicas } => ObjectDetails::Workload {
                template_labels: BTreeMap::new(),
                template_annotations: BTreeMap::new(),
                replicas: *replicas,
            },
            Details::LabelMap(map) => ObjectDetails::LabelMap {
                node_label_map: map.node_label_map.clone(),
                workload_label_map: map.workload_label_map.clone(),
            },
        };
        ObservedObject {
            kind,
            uid: uid.to_owned(),
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            resource_version: self.resource_version.to_string(),
            labels: to_map(&self.labels),
            annotations: to_map(&self.annotations),
            owner: self.owner.as_ref().map(|o| OwnerRef {
                kind: o.kind.to_string(),
                name: o.name.to_string(),
                uid: o.uid.to_string(),
            }),
            details,
        }
    }

    pub(crate) fn pod(&self) -> Option<&PodDetails> {
        match &self.details {
            Details::Pod(pod) => Some(pod),
            _ => None,
        }
    }
}

pub(crate) fn to_map(pairs: &[(Str, Str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The kinds that own pods (directly or through another controller).
const CONTROLLERS: [ResourceKind; 7] = [
    ResourceKind::Deployment,
    ResourceKind::ReplicaSet,
    ResourceKind::StatefulSet,
    ResourceKind::DaemonSet,
    ResourceKind::ReplicationController,
    ResourceKind::Job,
    ResourceKind::CronJob,
];

pub(crate) fn is_controller(kind: ResourceKind) -> bool {
    CONTROLLERS.contains(&kind)
}

/// Why an observation cannot be taken; the whole report is refused (nothing applied).
pub fn validate_observation(observed: &ObservedObject) -> Result<(), String> {
    if observed.uid.is_empty() || observed.name.is_empty() {
        return Err(format!(
            "a {} without uid or name",
            observed.kind.kube_kind()
        ));
    }
    if Object::from_observed(observed, &mut Pools::default()).is_none() {
        return Err(format!(
            "{} {}: details of another kind",
            observed.kind.kube_kind(),
            observed.uid
        ));
    }
    Ok(())
}

/// What clusterlink last said of its cluster, as logged by `ClusterConnected`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Connection {
    pub(crate) clusterlink_version: String,
    pub(crate) kubernetes_version: String,
    pub(crate) cluster_mode: String,
    pub(crate) network_type: String,
    pub(crate) at_ms: u64,
}

/// The pairing record of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ClusterMeta {
    pub(crate) name: String,
    pub(crate) description: String,
    /// `None` when the logged hash is not 32 bytes of hex: no token matches it.
    pub(crate) token_sha256: Option<[u8; 32]>,
    pub(crate) created_at_ms: u64,
    pub(crate) connection: Option<Connection>,
}

/// One cluster: its record, the version of its stream, and its objects by kind and uid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cluster {
    pub(crate) meta: ClusterMeta,
    pub(crate) stream_version: u64,
    pub(crate) objects: BTreeMap<ResourceKind, BTreeMap<Box<str>, Object>>,
    /// What labeling wrote of entities this cluster does not hold: one it wrote just after
    /// inventory deleted it (its removal follows), or, should labeling ever be ahead, one
    /// inventory has yet to apply. An object takes its entry when it arrives.
    unclaimed: BTreeMap<(EntityKind, Box<str>), Arc<Labeling>>,
}

impl Cluster {
    fn new(meta: ClusterMeta, stream_version: u64) -> Self {
        Cluster {
            meta,
            stream_version,
            objects: BTreeMap::new(),
            unclaimed: BTreeMap::new(),
        }
    }

    /// Sets (`None`: drops) what labeling wrote of an entity.
    fn set_labeling(&mut self, kind: EntityKind, uid: &str, labeling: Option<Arc<Labeling>>) {
        let held = resource_kinds(kind)
            .iter()
            .find(|k| self.object(**k, uid).is_some());
        if let Some(object) = held.and_then(|k| self.objects.get_mut(k)?.get_mut(uid)) {
            object.labeling = labeling;
            return;
        }
        match labeling {
            Some(labeling) => {
                self.unclaimed.insert((kind, uid.into()), labeling);
            }
            None => {
                self.take_unclaimed(kind, uid);
            }
        }
    }

    /// The unclaimed labeling of an entity, taken out.
    fn take_unclaimed(&mut self, kind: EntityKind, uid: &str) -> Option<Arc<Labeling>> {
        if self.unclaimed.is_empty() {
            return None;
        }
        self.unclaimed.remove(&(kind, uid.into()))
    }

    pub(crate) fn object(&self, kind: ResourceKind, uid: &str) -> Option<&Object> {
        self.objects.get(&kind)?.get(uid)
    }

    /// Objects of one kind, in uid order.
    pub(crate) fn all(&self, kind: ResourceKind) -> impl Iterator<Item = (&str, &Object)> {
        self.objects
            .get(&kind)
            .into_iter()
            .flatten()
            .map(|(uid, object)| (&**uid, object))
    }

    pub(crate) fn count(&self, kind: ResourceKind) -> usize {
        self.objects.get(&kind).map_or(0, BTreeMap::len)
    }
}

/// The projection: every cluster by id.
#[derive(Debug, Default)]
pub struct Index {
    pub(crate) clusters: BTreeMap<String, Cluster>,
    pools: Pools,
}

/// Why credentials were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("cluster {0} is not paired")]
    UnknownCluster(String),
    #[error("wrong token for cluster {0}")]
    WrongToken(String),
}

impl AuthError {
    pub fn kind(&self) -> &'static str {
        match self {
            AuthError::UnknownCluster(_) => "unknown_cluster",
            AuthError::WrongToken(_) => "wrong_token",
        }
    }
}

/// SHA-256 of a token, hex: what `ClusterCreated` logs.
pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Index {
    /// Applies one inventory event written to `stream` at `stream_version`. Events whose
    /// cluster is not their stream's are ignored: the stream decides which cluster changes.
    pub fn apply_event(&mut self, stream: &str, stream_version: u64, event: &InventoryEvent) {
        use InventoryEvent as E;
        let cluster_id = match event {
            E::ClusterAuthFailed { .. } => return,
            E::ClusterCreated { cluster_id, .. }
            | E::ClusterUpdated { cluster_id, .. }
            | E::ClusterDeleted { cluster_id }
            | E::ClusterConnected { cluster_id, .. }
            | E::ObjectApplied { cluster_id, .. }
            | E::ObjectDeleted { cluster_id, .. } => cluster_id,
        };
        if stream != InventoryEvent::stream(cluster_id) {
            tracing::warn!(
                stream,
                cluster_id,
                "inventory event on another cluster's stream; ignored"
            );
            return;
        }
        if let E::ClusterCreated {
            name,
            description,
            token_sha256,
            created_at_ms,
            ..
        } = event
        {
            self.clusters.entry(cluster_id.clone()).or_insert_with(|| {
                let meta = ClusterMeta {
                    name: name.clone(),
                    description: description.clone(),
                    token_sha256: hex::decode(token_sha256)
                        .ok()
                        .and_then(|h| h.try_into().ok()),
                    created_at_ms: *created_at_ms,
                    connection: None,
                };
                Cluster::new(meta, stream_version)
            });
            return;
        }
        if let E::ClusterDeleted { .. } = event {
            self.clusters.remove(cluster_id);
            self.pools.sweep_if_grown();
            return;
        }
        let Some(cluster) = self.clusters.get_mut(cluster_id) else {
            return;
        };
        cluster.stream_version = cluster.stream_version.max(stream_version);
        match event {
            E::ClusterUpdated {
                name, description, ..
            } => {
                cluster.meta.name.clone_from(name);
                cluster.meta.description.clone_from(description);
            }
            E::ClusterConnected {
                clusterlink_version,
                kubernetes_version,
                cluster_mode,
                network_type,
                at_ms,
                ..
            } => {
                cluster.meta.connection = Some(Connection {
                    clusterlink_version: clusterlink_version.clone(),
                    kubernetes_version: kubernetes_version.clone(),
                    cluster_mode: cluster_mode.clone(),
                    network_type: network_type.clone(),
                    at_ms: *at_ms,
                });
            }
            E::ObjectApplied { object, .. } => {
                if let Some(mut compact) = Object::from_observed(object, &mut self.pools) {
                    // A change of the object is no change of its labels: labeling writes
                    // those when they change.
                    compact.labeling = match cluster.object(object.kind, &object.uid) {
                        Some(held) => held.labeling.clone(),
                        None => entity_kind(object.kind)
                            .and_then(|entity| cluster.take_unclaimed(entity, &object.uid)),
                    };
                    cluster
                        .objects
                        .entry(object.kind)
                        .or_default()
                        .insert(object.uid.as_str().into(), compact);
                }
            }
            E::ObjectDeleted { kind, uid, .. } => {
                if let Some(objects) = cluster.objects.get_mut(kind) {
                    objects.remove(uid.as_str());
                }
                if let Some(entity) = entity_kind(*kind) {
                    cluster.take_unclaimed(entity, uid);
                }
            }
            E::ClusterCreated { .. } | E::ClusterDeleted { .. } | E::ClusterAuthFailed { .. } => {}
        }
        self.pools.sweep_if_grown();
    }

    /// Applies a labeling event written to `stream`: the effective labels of entities (a
    /// removed one's are dropped). Events whose cluster is not their stream's are ignored, as
    /// are the rest of labeling's events.
    pub fn apply_labeling_event(&mut self, stream: &str, event: &LabelingEvent) {
        let LabelingEvent::EffectiveLabels {
            cluster_id,
            entities,
            ..
        } = event
        else {
            return;
        };
        if stream != LabelingEvent::effective_stream(cluster_id) {
            tracing::warn!(
                stream,
                cluster_id,
                "effective labels on another cluster's stream; ignored"
            );
            return;
        }
        // Labeling may write a cluster's last labels after its deletion: nothing to label.
        let Some(cluster) = self.clusters.get_mut(cluster_id) else {
            return;
        };
        for written in entities {
            let labeling = (!written.removed).then(|| {
                let labels = written.labels.iter().map(|(key, label)| {
                    (
                        key.as_str(),
                        label.href.as_str(),
                        label.value.as_str(),
                        &label.source,
                    )
                });
                self.pools
                    .labeling(written.managed, written.enforcement_mode, labels)
            });
            cluster.set_labeling(written.entity.kind, &written.entity.uid, labeling);
        }
        self.pools.sweep_if_grown();
    }

    pub(crate) fn cluster(&self, cluster_id: &str) -> Option<&Cluster> {
        self.clusters.get(cluster_id)
    }

    /// The version of the cluster's stream as applied here; 0 for a cluster not (or no longer)
    /// known.
    pub fn stream_version(&self, cluster_id: &str) -> u64 {
        self.cluster(cluster_id).map_or(0, |c| c.stream_version)
    }

    /// Whether a cluster of that name exists, other than `except`. Names compare
    /// case-insensitively, as people read them.
    pub fn name_taken(&self, name: &str, except: Option<&str>) -> bool {
        self.clusters
            .iter()
            .any(|(id, c)| Some(id.as_str()) != except && c.meta.name.eq_ignore_ascii_case(name))
    }

    /// The cluster's name and description.
    pub fn cluster_names(&self, cluster_id: &str) -> Option<(&str, &str)> {
        self.cluster(cluster_id)
            .map(|c| (c.meta.name.as_str(), c.meta.description.as_str()))
    }

    /// What clusterlink last reported of its cluster: versions, mode, network type.
    pub fn connection(&self, cluster_id: &str) -> Option<[&str; 4]> {
        let c = self.cluster(cluster_id)?.meta.connection.as_ref()?;
        Some([
            &c.clusterlink_version,
            &c.kubernetes_version,
            &c.cluster_mode,
            &c.network_type,
        ])
    }

    /// Checks a clusterlink's credentials: the token's hash against the logged one, in constant
    /// time (an unknown cluster costs the same comparison).
    pub fn verify(&self, credentials: &ClusterCredentials) -> Result<(), AuthError> {
        let presented: [u8; 32] = Sha256::digest(credentials.token.as_bytes()).into();
        let expected = self
            .cluster(&credentials.cluster_id)
            .map(|c| c.meta.token_sha256);
        let matches: bool = presented
            .ct_eq(&expected.flatten().unwrap_or([0; 32]))
            .into();
        match expected {
            None => Err(AuthError::UnknownCluster(credentials.cluster_id.clone())),
            Some(Some(_)) if matches => Ok(()),
            Some(_) => Err(AuthError::WrongToken(credentials.cluster_id.clone())),
        }
    }

    /// The resource version held for an object, if it is held.
    pub fn resource_version(
        &self,
        cluster_id: &str,
        kind: ResourceKind,
        uid: &str,
    ) -> Option<&str> {
        self.cluster(cluster_id)?
            .object(kind, uid)
            .map(|o| &*o.resource_version)
    }

    /// `(uid, resource_version)` of one kind in a cluster, in uid order, after `after_uid`.
    pub fn digest(
        &self,
        cluster_id: &str,
        kind: ResourceKind,
        after_uid: Option<&str>,
        limit: usize,
    ) -> Vec<(String, String)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let Some(objects) = self.cluster(cluster_id).and_then(|c| c.objects.get(&kind)) else {
            return Vec::new();
        };
        let start = after_uid.map_or(Unbounded, Excluded);
        objects
            .range::<str, _>((start, Unbounded))
            .take(limit)
            .map(|(uid, o)| (uid.to_string(), o.resource_version.to_string()))
            .collect()
    }

    /// Strings, labels and label sets interned right now (for tests of the pools).
    #[cfg(test)]
    pub(crate) fn pooled(&self) -> [usize; 3] {
        [
            self.pools.strings.len(),
            self.pools.labels.len(),
            self.pools.labelings.len(),
        ]
    }

    /// Forces a sweep of the pools (for tests).
    #[cfg(test)]
    pub(crate) fn sweep_pools(&mut self) {
        self.pools.labelings.sweep();
        self.pools.labels.sweep();
        self.pools.strings.sweep();
    }
}

impl Projection for Index {
    fn apply(&mut self, event: &RecordedEvent) {
        match event.event_type.as_str() {
            InventoryEvent::EVENT_TYPE => match rmp_serde::from_slice(&event.data) {
                Ok(decoded) => self.apply_event(&event.stream, event.stream_version, &decoded),
                Err(error) => {
                    tracing::warn!(seq = event.seq, %error, "undecodable inventory event; skipped")
                }
            },
            LabelingEvent::EVENT_TYPE => match rmp_serde::from_slice(&event.data) {
                Ok(decoded) => self.apply_labeling_event(&event.stream, &decoded),
                Err(error) => {
                    tracing::warn!(seq = event.seq, %error, "undecodable labeling event; skipped")
                }
            },
            _ => {}
        }
    }
}

/// A cluster in a checkpoint. Objects are stored as observations and labelings as views, both
/// re-interned on load, so a checkpoint is independent of the in-memory layout and a restart
/// starts with fresh pools.
#[derive(Serialize, Deserialize)]
struct ClusterRecord<O, L> {
    cluster_id: String,
    meta: ClusterMeta,
    stream_version: u64,
    objects: O,
    /// Absent from checkpoints written before inventory read labeling's events.
    #[serde(default)]
    labelings: L,
}

/// What labeling wrote of one entity, in a checkpoint.
#[derive(Serialize, Deserialize)]
struct LabelingRecord {
    kind: EntityKind,
    uid: String,
    labeling: EffectiveLabeling,
}

/// A cluster's objects, serialised one observation at a time (never all copied at once).
struct ObjectsOf<'a>(&'a Cluster);

impl Serialize for ObjectsOf<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let total = self.0.objects.values().map(BTreeMap::len).sum();
        let mut seq = serializer.serialize_seq(Some(total))?;
        for (kind, objects) in &self.0.objects {
            for (uid, object) in objects {
                seq.serialize_element(&object.to_observed(*kind, uid))?;
            }
        }
        seq.end()
    }
}

/// A cluster's labelings, serialised one entity at a time: its objects', then unclaimed ones.
struct LabelingsOf<'a>(&'a Cluster);

impl LabelingsOf<'_> {
    fn entities(&self) -> impl Iterator<Item = (EntityKind, &str, &Labeling)> {
        let held = self.0.objects.iter().flat_map(|(kind, objects)| {
            objects.iter().filter_map(|(uid, object)| {
                Some((entity_kind(*kind)?, &**uid, object.labeling.as_deref()?))
            })
        });
        let unclaimed = self
            .0
            .unclaimed
            .iter()
            .map(|((kind, uid), labeling)| (*kind, &**uid, &**labeling));
        held.chain(unclaimed)
    }
}

impl Serialize for LabelingsOf<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.entities().count()))?;
        for (kind, uid, labeling) in self.entities() {
            seq.serialize_element(&LabelingRecord {
                kind,
                uid: uid.to_owned(),
                labeling: labeling.view(),
            })?;
        }
        seq.end()
    }
}

impl Serialize for Index {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.clusters.iter().map(|(id, cluster)| ClusterRecord {
            cluster_id: id.clone(),
            meta: cluster.meta.clone(),
            stream_version: cluster.stream_version,
            objects: ObjectsOf(cluster),
            labelings: LabelingsOf(cluster),
        }))
    }
}

impl<'de> Deserialize<'de> for Index {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let records = Vec::<ClusterRecord<Vec<ObservedObject>, Vec<LabelingRecord>>>::deserialize(
            deserializer,
        )?;
        let mut index = Index::default();
        for record in records {
            let mut cluster = Cluster::new(record.meta, record.stream_version);
            for observed in &record.objects {
                if let Some(object) = Object::from_observed(observed, &mut index.pools) {
                    cluster
                        .objects
                        .entry(observed.kind)
                        .or_default()
                        .insert(observed.uid.as_str().into(), object);
                }
            }
            for entity in &record.labelings {
                let labeling = index.pools.labeling_of_view(&entity.labeling);
                cluster.set_labeling(entity.kind, &entity.uid, Some(labeling));
            }
            index.clusters.insert(record.cluster_id, cluster);
        }
        Ok(index)
    }
}

#[cfg(test)]
pub(crate) mod tests;
