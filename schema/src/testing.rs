//! Fixture builders for the tests of every service that reads these messages (feature
//! `testing`), in the manner of linkerd2's policy-controller tests: `mk_*` builders of what
//! clusterlink observes, with small defaults (uid `<name>-uid`, label `app` from the name's
//! first part, one pod IP on `node-1`), modifiers for what a test varies, and [`Recorder`], the
//! log's record of events as a projection applies them.

use std::collections::{BTreeMap, HashMap};

use crate::WireMessage;
use crate::messages::eventlog::RecordedEvent;
use crate::messages::inventory::{
    LabelMapItem, ObjectDetails, ObservedObject, OwnerRef, ResourceKind, ServicePort,
    SliceEndpoint, SlicePort, ValueMapping,
};
use crate::messages::labeling::{
    EffectiveLabel, EnforcementMode, EntityKind, EntityLabels, EntityRef, LabelId, LabelSource,
    label_href,
};

/// The uid of the object named `name`.
pub fn uid(name: &str) -> String {
    format!("{name}-uid")
}

/// A string map, as Kubernetes labels and annotations are.
pub fn pairs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
    list.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// An object at resource version `1`, labelled `app=<the name up to its first '-'>`.
pub fn mk_object(
    kind: ResourceKind,
    name: &str,
    namespace: &str,
    owner: Option<&ObservedObject>,
    details: ObjectDetails,
) -> ObservedObject {
    let app = name.split('-').next().unwrap_or(name);
    ObservedObject {
        kind,
        uid: uid(name),
        namespace: namespace.into(),
        name: name.into(),
        resource_version: "1".into(),
        labels: pairs(&[("app", app)]),
        annotations: BTreeMap::new(),
        owner: owner.map(|o| OwnerRef {
            kind: o.kind.kube_kind().into(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        }),
        details,
    }
}

pub fn mk_namespace(name: &str) -> ObservedObject {
    mk_object(
        ResourceKind::Namespace,
        name,
        "",
        None,
        ObjectDetails::Namespace {},
    )
}

/// A worker node with one address and pod CIDR.
pub fn mk_node(name: &str, machine_id: &str) -> ObservedObject {
    mk_object(
        ResourceKind::Node,
        name,
        "",
        None,
        ObjectDetails::Node {
            machine_id: machine_id.into(),
            addresses: vec![format!("192.168.0.{}", name.len())],
            pod_cidrs: vec!["10.244.1.0/24".into()],
            roles: vec!["worker".into()],
            kubelet_version: "v1.33.1".into(),
        },
    )
}

/// A running pod on `node-1`, on the pod network with one IP; owned by `owner` when given.
pub fn mk_pod(name: &str, namespace: &str, owner: Option<&ObservedObject>) -> ObservedObject {
    mk_object(
        ResourceKind::Pod,
        name,
        namespace,
        owner,
        ObjectDetails::Pod {
            node_name: "node-1".into(),
            ips: vec![format!("10.244.1.{}", name.len())],
            host_network: false,
            phase: "Running".into(),
            containers: vec!["app".into()],
        },
    )
}

/// A controller of `kind` (Deployment, ReplicaSet, ...) of 2 replicas, its pod template
/// labelled `app=<name>`.
pub fn mk_workload(
    kind: ResourceKind,
    name: &str,
    namespace: &str,
    owner: Option<&ObservedObject>,
) -> ObservedObject {
    mk_object(
        kind,
        name,
        namespace,
        owner,
        ObjectDetails::Workload {
            template_labels: pairs(&[("app", name)]),
            template_annotations: BTreeMap::new(),
            replicas: Some(2),
        },
    )
}

pub fn mk_deployment(name: &str, namespace: &str) -> ObservedObject {
    mk_workload(ResourceKind::Deployment, name, namespace, None)
}

pub fn mk_replica_set(
    name: &str,
    namespace: &str,
    owner: Option<&ObservedObject>,
) -> ObservedObject {
    mk_workload(ResourceKind::ReplicaSet, name, namespace, owner)
}

/// A ClusterIP service with port `http` 80, selecting `app=<name>`.
pub fn mk_service(name: &str, namespace: &str) -> ObservedObject {
    mk_object(
        ResourceKind::Service,
        name,
        namespace,
        None,
        ObjectDetails::Service {
            service_type: "ClusterIP".into(),
            cluster_ips: vec!["10.96.0.10".into()],
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                target_port: "http".into(),
                protocol: "TCP".into(),
                node_port: None,
            }],
            selector: pairs(&[("app", name)]),
        },
    )
}

/// An EndpointSlice of `service` with one ready endpoint per pod, port `http` 8080.
pub fn mk_slice(
    name: &str,
    namespace: &str,
    service: &str,
    pods: &[&ObservedObject],
) -> ObservedObject {
    let endpoints = pods
        .iter()
        .map(|pod| {
            let ObjectDetails::Pod { ips, node_name, .. } = &pod.details else {
                panic!("endpoints are pods")
            };
            SliceEndpoint {
                addresses: ips.clone(),
                ready: true,
                pod_uid: Some(pod.uid.clone()),
                node_name: node_name.clone(),
            }
        })
        .collect();
    mk_object(
        ResourceKind::EndpointSlice,
        name,
        namespace,
        None,
        ObjectDetails::EndpointSlice {
            service_name: service.into(),
            endpoints,
            ports: vec![SlicePort {
                name: "http".into(),
                port: 8080,
                protocol: "TCP".into(),
            }],
        },
    )
}

/// A label map rule: Kubernetes label `from_key` to label key `to_key`, its values mapped by
/// `values` (others kept), creating labels that do not exist when `create`.
pub fn mk_map_item(
    from_key: &str,
    to_key: &str,
    values: &[(&str, &str)],
    create: bool,
) -> LabelMapItem {
    LabelMapItem {
        from_key: from_key.into(),
        to_key: to_key.into(),
        values_map: values
            .iter()
            .map(|(from, to)| ValueMapping {
                from: (*from).into(),
                to: (*to).into(),
            })
            .collect(),
        allow_create: create,
    }
}

/// A LabelMap custom resource with these node and workload rules.
pub fn mk_label_map(
    name: &str,
    node_label_map: Vec<LabelMapItem>,
    workload_label_map: Vec<LabelMapItem>,
) -> ObservedObject {
    mk_object(
        ResourceKind::LabelMap,
        name,
        "",
        None,
        ObjectDetails::LabelMap {
            node_label_map,
            workload_label_map,
        },
    )
}

/// The object with these Kubernetes labels (a controller: pod template labels), at a new
/// resource version.
pub fn labeled(mut object: ObservedObject, list: &[(&str, &str)]) -> ObservedObject {
    match &mut object.details {
        ObjectDetails::Workload {
            template_labels, ..
        } => *template_labels = pairs(list),
        _ => object.labels = pairs(list),
    }
    object.resource_version.push('+');
    object
}

/// The object with these annotations, at a new resource version.
pub fn annotated(mut object: ObservedObject, list: &[(&str, &str)]) -> ObservedObject {
    object.annotations = pairs(list);
    object.resource_version.push('+');
    object
}

/// The controller with these pod template annotations.
pub fn template_annotated(mut object: ObservedObject, list: &[(&str, &str)]) -> ObservedObject {
    if let ObjectDetails::Workload {
        template_annotations,
        ..
    } = &mut object.details
    {
        *template_annotations = pairs(list);
    }
    object
}

/// The pod on `node`, with `ip`, on the host's network when `host`.
pub fn placed(mut pod: ObservedObject, node: &str, ip: &str, host: bool) -> ObservedObject {
    if let ObjectDetails::Pod {
        node_name,
        ips,
        host_network,
        ..
    } = &mut pod.details
    {
        *node_name = node.into();
        *ips = vec![ip.into()];
        *host_network = host;
    }
    pod
}

/// What labeling writes of `object` as an entity of `kind`: managed, enforced in full, with
/// these labels (key, label id, value), each from the namespace's profile.
pub fn mk_entity_labels(
    kind: EntityKind,
    object: &ObservedObject,
    labels: &[(&str, LabelId, &str)],
) -> EntityLabels {
    EntityLabels {
        entity: EntityRef {
            kind,
            uid: object.uid.clone(),
            namespace: object.namespace.clone(),
            name: object.name.clone(),
        },
        managed: true,
        enforcement_mode: Some(EnforcementMode::Full),
        labels: labels
            .iter()
            .map(|(key, id, value)| {
                let label = EffectiveLabel {
                    href: label_href(*id),
                    value: (*value).into(),
                    source: LabelSource::Profile,
                };
                ((*key).to_owned(), label)
            })
            .collect(),
        removed: false,
    }
}

/// `event` as the log records it as version `stream_version` of `stream` (at the same
/// sequence number: for projections that do not read it).
pub fn recorded<E: WireMessage>(stream: &str, stream_version: u64, event: &E) -> RecordedEvent {
    let data = rmp_serde::to_vec_named(event).expect("wire messages encode");
    recorded_at(stream_version, stream, stream_version, E::TYPE, data)
}

fn recorded_at(
    seq: u64,
    stream: &str,
    stream_version: u64,
    event_type: &str,
    data: Vec<u8>,
) -> RecordedEvent {
    RecordedEvent {
        seq,
        stream: stream.into(),
        stream_version,
        event_type: event_type.into(),
        data,
        idempotency_key: format!("k-{stream}-{stream_version}"),
        committed_at_ms: 1_700_000_000_000,
    }
}

/// The log as tests feed a projection: every event recorded gets the next global sequence
/// number and the next version of its stream.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    seq: u64,
    versions: HashMap<String, u64>,
}

impl Recorder {
    /// `event` as the log records it on `stream`.
    pub fn record<E: WireMessage>(&mut self, stream: &str, event: &E) -> RecordedEvent {
        let data = rmp_serde::to_vec_named(event).expect("wire messages encode");
        self.record_encoded(stream, E::TYPE, data)
    }

    /// An encoded event as the log records it on `stream`.
    pub fn record_encoded(
        &mut self,
        stream: &str,
        event_type: &str,
        data: Vec<u8>,
    ) -> RecordedEvent {
        self.seq += 1;
        let version = self.versions.entry(stream.to_owned()).or_default();
        *version += 1;
        recorded_at(self.seq, stream, *version, event_type, data)
    }

    /// The sequence number of the last event recorded.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The version `stream` is at (0: no events yet).
    pub fn version(&self, stream: &str) -> u64 {
        self.versions.get(stream).copied().unwrap_or(0)
    }
}
