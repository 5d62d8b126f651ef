//! What labeling keeps of inventory's objects: for each node, pod, service and controller only
//! what resolution reads, compactly (interned strings, shared label and annotation sets), plus
//! its entity's resolution. Objects live in a slab and are named by a `u32` there, so that the
//! reverse indexes cost four bytes per entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use bulkhead_schema::messages::inventory::{ObjectDetails, ObservedObject, OwnerRef, ResourceKind};
use bulkhead_schema::messages::labeling::{EntityKind, EntityRef};
use sha2::{Digest, Sha256};

use crate::catalog::valid_key;
use crate::resolve::{Annotation, Resolution};
use bulkhead_runtime::intern::{Pool, Str};

/// An object's place in the [`Slab`].
pub(crate) type ObjId = u32;

/// Owner chains are followed at most this deep: a cycle in reported owner references (which
/// Kubernetes forbids, but a report is input) must not hang resolution.
pub(crate) const MAX_OWNER_DEPTH: usize = 8;

pub(crate) const BULKHEAD_PREFIX: &str = "bulkhead.io/";
pub(crate) const ILLUMIO_PREFIX: &str = "com.illumio.";
const PAIRING_KEY_ANNOTATIONS: [&str; 2] = ["bulkhead.io/pairing-key", "com.illumio.pairing_key"];

pub(crate) type KubeLabels = Arc<[(Str, Str)]>;
pub(crate) type Annotations = Arc<[Annotation]>;

/// The interners of one index.
#[derive(Debug, Default)]
pub(crate) struct Pools {
    pub(crate) strings: Pool<str>,
    labels: Pool<[(Str, Str)]>,
    annotations: Pool<[Annotation]>,
}

impl Pools {
    pub(crate) fn str(&mut self, s: &str) -> Str {
        self.strings.intern(s)
    }

    fn kube_labels(&mut self, map: &BTreeMap<String, String>) -> KubeLabels {
        let pairs: Vec<(Str, Str)> = map
            .iter()
            .map(|(k, v)| (self.str(k), self.str(v)))
            .collect();
        self.labels.intern(pairs)
    }

    /// The label annotations of `map` (`bulkhead.io/<key>`, else `com.illumio.<key>`), by key.
    fn annotations(&mut self, map: &BTreeMap<String, String>) -> Annotations {
        let mut by_key: BTreeMap<&str, (&str, bool)> = BTreeMap::new();
        for (name, value) in map {
            let (key, illumio) = match (
                name.strip_prefix(BULKHEAD_PREFIX),
                name.strip_prefix(ILLUMIO_PREFIX),
            ) {
                (Some(key), _) => (key, false),
                (None, Some(key)) => (key, true),
                (None, None) => continue,
            };
            if !valid_key(key) || value.is_empty() {
                continue;
            }
            if illumio
                && by_key
                    .get(key)
                    .is_some_and(|(_, from_illumio)| !from_illumio)
            {
                continue;
            }
            by_key.insert(key, (value, illumio));
        }
        let list: Vec<Annotation> = by_key
            .into_iter()
            .map(|(key, (value, illumio))| Annotation {
                key: self.str(key),
                value: self.str(value),
                illumio,
            })
            .collect();
        self.annotations.intern(list)
    }

    pub(crate) fn sweep_if_grown(&mut self) {
        self.strings.sweep_if_grown();
        self.labels.sweep_if_grown();
        self.annotations.sweep_if_grown();
    }
}

/// SHA-256 of the pairing key a namespace carries, if it carries one.
pub(crate) fn pairing_key_of(annotations: &BTreeMap<String, String>) -> Option<[u8; 32]> {
    PAIRING_KEY_ANNOTATIONS
        .iter()
        .find_map(|name| annotations.get(*name))
        .map(|key| key.trim())
        .filter(|key| !key.is_empty())
        .map(|key| Sha256::digest(key.as_bytes()).into())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Kind {
    Node,
    Pod {
        node: Str,
        host_network: bool,
    },
    Service,
    Controller {
        kind: ResourceKind,
        template_annotations: Annotations,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Object {
    pub(crate) cluster: Str,
    pub(crate) uid: Str,
    /// Empty for nodes.
    pub(crate) namespace: Str,
    pub(crate) name: Str,
    pub(crate) owner: Option<Str>,
    /// The Kubernetes labels label maps read; a controller's pod template's, so that a kube
    /// workload is labeled as its pods are.
    pub(crate) labels: KubeLabels,
    pub(crate) annotations: Annotations,
    pub(crate) kind: Kind,
    /// `None` when the object is not an entity (a controller below another one).
    pub(crate) entity: Option<Resolution>,
}

impl Object {
    /// The compact form of what inventory observed; `None` for kinds that are not labeled
    /// (namespaces and label maps are handled apart, EndpointSlices are not needed).
    pub(crate) fn from_observed(
        cluster: &Str,
        observed: &ObservedObject,
        pools: &mut Pools,
    ) -> Option<Object> {
        use ResourceKind as K;
        let (kind, labels) = match (&observed.details, observed.kind) {
            (ObjectDetails::Node { .. }, K::Node) => (Kind::Node, &observed.labels),
            (
                ObjectDetails::Pod {
                    node_name,
                    host_network,
                    ..
                },
                K::Pod,
            ) => (
                Kind::Pod {
                    node: pools.str(node_name),
                    host_network: *host_network,
                },
                &observed.labels,
            ),
            (ObjectDetails::Service { .. }, K::Service) => (Kind::Service, &observed.labels),
            (
                ObjectDetails::Workload {
                    template_labels,
                    template_annotations,
                    ..
                },
                kind,
            ) if is_controller(kind) => (
                Kind::Controller {
                    kind,
                    template_annotations: pools.annotations(template_annotations),
                },
                template_labels,
            ),
            _ => return None,
        };
        // A pod's uid and name are its own: interning them would only cost pool entries.
        // Controllers' uids recur as their children's owners, nodes' names in their pods.
        let own = |pools: &mut Pools, s: &str| match kind {
            Kind::Pod { .. } => Str::from(s),
            _ => pools.str(s),
        };
        Some(Object {
            cluster: cluster.clone(),
            uid: own(pools, &observed.uid),
            namespace: pools.str(&observed.namespace),
            name: own(pools, &observed.name),
            owner: observed.owner.as_ref().map(|o| pools.str(&o.uid)),
            labels: pools.kube_labels(labels),
            annotations: pools.annotations(&observed.annotations),
            kind,
            entity: None,
        })
    }

    /// The observation this object keeps (what the checkpoint stores; `from_observed` of it
    /// gives this object back).
    pub(crate) fn to_observed(&self) -> ObservedObject {
        let labels: BTreeMap<String, String> = self
            .labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let (kind, details, labels) = match &self.kind {
            Kind::Node => (
                ResourceKind::Node,
                ObjectDetails::Node {
                    machine_id: String::new(),
                    addresses: Vec::new(),
                    pod_cidrs: Vec::new(),
                    roles: Vec::new(),
                    kubelet_version: String::new(),
                },
                labels,
            ),
            Kind::Pod { node, host_network } => (
                ResourceKind::Pod,
                ObjectDetails::Pod {
                    node_name: node.to_string(),
                    ips: Vec::new(),
                    host_network: *host_network,
                    phase: String::new(),
                    containers: Vec::new(),
                },
                labels,
            ),
            Kind::Service => (
                ResourceKind::Service,
                ObjectDetails::Service {
                    service_type: String::new(),
                    cluster_ips: Vec::new(),
                    ports: Vec::new(),
                    selector: BTreeMap::new(),
                },
                labels,
            ),
            Kind::Controller {
                kind,
                template_annotations,
            } => (
                *kind,
                ObjectDetails::Workload {
                    template_labels: labels,
                    template_annotations: annotation_map(template_annotations),
                    replicas: None,
                },
                BTreeMap::new(),
            ),
        };
        ObservedObject {
            kind,
            uid: self.uid.to_string(),
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
            resource_version: String::new(),
            labels,
            annotations: annotation_map(&self.annotations),
            owner: self.owner.as_ref().map(|uid| OwnerRef {
                kind: String::new(),
                name: String::new(),
                uid: uid.to_string(),
            }),
            details,
        }
    }

    pub(crate) fn entity_kind(&self) -> EntityKind {
        match self.kind {
            Kind::Node => EntityKind::Node,
            Kind::Pod { .. } => EntityKind::Pod,
            Kind::Service => EntityKind::Service,
            Kind::Controller { .. } => EntityKind::KubeWorkload,
        }
    }

    pub(crate) fn entity_ref(&self) -> EntityRef {
        EntityRef {
            kind: self.entity_kind(),
            uid: self.uid.to_string(),
            namespace: self.namespace.to_string(),
            name: self.name.to_string(),
        }
    }

    /// The Kubernetes kind, as an annotation's source names it.
    pub(crate) fn kube_kind(&self) -> &'static str {
        match &self.kind {
            Kind::Node => "Node",
            Kind::Pod { .. } => "Pod",
            Kind::Service => "Service",
            Kind::Controller { kind, .. } => kind.kube_kind(),
        }
    }

    pub(crate) fn template_annotations(&self) -> &[Annotation] {
        match &self.kind {
            Kind::Controller {
                template_annotations,
                ..
            } => template_annotations,
            _ => &[],
        }
    }
}

fn annotation_map(annotations: &[Annotation]) -> BTreeMap<String, String> {
    annotations
        .iter()
        .map(|a| {
            let prefix = if a.illumio {
                ILLUMIO_PREFIX
            } else {
                BULKHEAD_PREFIX
            };
            (format!("{prefix}{}", a.key), a.value.to_string())
        })
        .collect()
}

/// The kinds that own pods (directly or through another controller).
fn is_controller(kind: ResourceKind) -> bool {
    use ResourceKind as K;
    matches!(
        kind,
        K::Deployment
            | K::ReplicaSet
            | K::StatefulSet
            | K::DaemonSet
            | K::ReplicationController
            | K::Job
            | K::CronJob
    )
}

/// Objects by [`ObjId`]; freed ids are reused.
#[derive(Debug, Default)]
pub(crate) struct Slab {
    slots: Vec<Option<Object>>,
    free: Vec<ObjId>,
}

impl Slab {
    pub(crate) fn insert(&mut self, object: Object) -> ObjId {
        match self.free.pop() {
            Some(id) => {
                self.slots[id as usize] = Some(object);
                id
            }
            None => {
                self.slots.push(Some(object));
                (self.slots.len() - 1) as ObjId
            }
        }
    }

    pub(crate) fn remove(&mut self, id: ObjId) -> Option<Object> {
        let object = self.slots.get_mut(id as usize)?.take()?;
        self.free.push(id);
        Some(object)
    }

    pub(crate) fn get(&self, id: ObjId) -> Option<&Object> {
        self.slots.get(id as usize)?.as_ref()
    }

    pub(crate) fn get_mut(&mut self, id: ObjId) -> Option<&mut Object> {
        self.slots.get_mut(id as usize)?.as_mut()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = (ObjId, &Object)> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, slot)| slot.as_ref().map(|o| (i as ObjId, o)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn label_annotations_prefer_bulkhead_io_and_skip_everything_else() {
        let mut pools = Pools::default();
        let annotations = pools.annotations(&map(&[
            ("bulkhead.io/role", "web"),
            ("com.illumio.role", "db"),
            ("com.illumio.app", "shop"),
            ("bulkhead.io/pairing-key", "k"),
            ("com.illumio.pairing_key", "k"),
            ("bulkhead.io/Bad Key", "x"),
            ("bulkhead.io/env", ""),
            ("example.com/role", "x"),
        ]));
        let shown: Vec<(&str, &str, bool)> = annotations
            .iter()
            .map(|a| (&*a.key, &*a.value, a.illumio))
            .collect();
        assert_eq!(shown, [("app", "shop", true), ("role", "web", false)]);
    }

    #[test]
    fn pods_of_one_template_share_their_sets() {
        let mut pools = Pools::default();
        let labels = map(&[("app", "shop"), ("pod-template-hash", "abc")]);
        let a = pools.kube_labels(&labels);
        let b = pools.kube_labels(&labels);
        assert!(Arc::ptr_eq(&a, &b));
        let notes = map(&[("bulkhead.io/role", "web")]);
        assert!(Arc::ptr_eq(
            &pools.annotations(&notes),
            &pools.annotations(&notes)
        ));
    }

    #[test]
    fn pairing_keys_are_hashed_trimmed_and_either_annotation_counts() {
        let key = pairing_key_of(&map(&[("com.illumio.pairing_key", " abc\n")]));
        assert_eq!(key, Some(Sha256::digest(b"abc").into()));
        assert_eq!(
            key,
            pairing_key_of(&map(&[("bulkhead.io/pairing-key", "abc")]))
        );
        assert_eq!(
            pairing_key_of(&map(&[("bulkhead.io/pairing-key", " ")])),
            None
        );
    }
}
