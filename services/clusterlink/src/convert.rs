//! Kubernetes objects -> [`ObservedObject`]s: what inventory needs of each kind, and nothing
//! else (labels, Bulkhead's own annotations, the controlling owner, the kind's details).
//!
//! Pure: no I/O, so every rule is tested with plain fixtures below.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bulkhead_schema::messages::inventory::{
    LabelMapItem, ObjectDetails, ObservedObject, OwnerRef, ResourceKind, ServicePort,
    SliceEndpoint, SlicePort, ValueMapping,
};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    Namespace, Node, Pod, PodTemplateSpec, ReplicationController, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::Resource;

use crate::crd::{LabelMap, LabelMapRule};

/// Annotations Bulkhead reads; the rest may hold anything (secrets in `last-applied-configuration`
/// included) and never leaves the cluster.
const ANNOTATION_PREFIXES: [&str; 2] = ["bulkhead.io/", "com.illumio."];
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// A Kubernetes kind clusterlink watches: which [`ResourceKind`] it is and what of it inventory
/// needs beyond the metadata every object has.
pub trait Observe: Resource<DynamicType = ()> {
    const KIND: ResourceKind;

    fn details(&self) -> ObjectDetails;

    /// What [`Observe::details`] left out as unusable, for the operators to hear of. Only
    /// custom resources have parts to leave out: the API server validates the built-in kinds.
    fn dropped(&self) -> Vec<Dropped> {
        Vec::new()
    }
}

/// The observation of `obj`; `None` for an object without a uid, which the API server never
/// serves.
pub fn observe<K: Observe>(obj: &K) -> Option<ObservedObject> {
    let meta = obj.meta();
    Some(ObservedObject {
        kind: K::KIND,
        uid: meta.uid.clone()?,
        namespace: meta.namespace.clone().unwrap_or_default(),
        name: meta.name.clone().unwrap_or_default(),
        resource_version: meta.resource_version.clone().unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        annotations: bulkhead_annotations(meta.annotations.as_ref()),
        owner: controller(meta.owner_references.as_deref()),
        details: obj.details(),
    })
}

fn bulkhead_annotations(all: Option<&BTreeMap<String, String>>) -> BTreeMap<String, String> {
    all.into_iter()
        .flatten()
        .filter(|(key, _)| ANNOTATION_PREFIXES.iter().any(|p| key.starts_with(p)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The owner with `controller: true`: the API server allows at most one, and only it says which
/// workload an object belongs to (other owners are for garbage collection).
fn controller(owners: Option<&[OwnerReference]>) -> Option<OwnerRef> {
    owners?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| OwnerRef {
            kind: o.kind.clone(),
            name: o.name.clone(),
            uid: o.uid.clone(),
        })
}

/// What a pod-creating controller's pods will carry. Template annotations are filtered like an
/// object's: they become the pods' annotations.
fn workload(template: Option<&PodTemplateSpec>, replicas: Option<i32>) -> ObjectDetails {
    let meta = template.and_then(|t| t.metadata.as_ref());
    ObjectDetails::Workload {
        template_labels: meta.and_then(|m| m.labels.clone()).unwrap_or_default(),
        template_annotations: bulkhead_annotations(meta.and_then(|m| m.annotations.as_ref())),
        replicas,
    }
}

impl Observe for Namespace {
    const KIND: ResourceKind = ResourceKind::Namespace;

    fn details(&self) -> ObjectDetails {
        ObjectDetails::Namespace {}
    }
}

impl Observe for Node {
    const KIND: ResourceKind = ResourceKind::Node;

    fn details(&self) -> ObjectDetails {
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        let info = status.and_then(|s| s.node_info.as_ref());
        let addresses = status
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .map(|a| a.address.clone())
            .collect();
        // `podCIDRs` supersedes `podCIDR` (dual stack); older clusters set only the latter
        let pod_cidrs = match spec.and_then(|s| s.pod_cidrs.clone()) {
            Some(cidrs) if !cidrs.is_empty() => cidrs,
            _ => spec.and_then(|s| s.pod_cidr.clone()).into_iter().collect(),
        };
        let roles = self
            .metadata
            .labels
            .iter()
            .flatten()
            .filter_map(|(key, _)| key.strip_prefix(NODE_ROLE_PREFIX))
            .filter(|role| !role.is_empty())
            .map(str::to_owned)
            .collect();
        ObjectDetails::Node {
            machine_id: info.map(|i| i.machine_id.clone()).unwrap_or_default(),
            addresses,
            pod_cidrs,
            roles,
            kubelet_version: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
        }
    }
}

impl Observe for Pod {
    const KIND: ResourceKind = ResourceKind::Pod;

    fn details(&self) -> ObjectDetails {
        let spec = self.spec.as_ref();
        let status = self.status.as_ref();
        // `podIPs` lists every family; a kubelet older than dual stack sets only `podIP`
        let ips = match status.and_then(|s| s.pod_ips.as_ref()) {
            Some(ips) if !ips.is_empty() => ips.iter().map(|ip| ip.ip.clone()).collect(),
            _ => status.and_then(|s| s.pod_ip.clone()).into_iter().collect(),
        };
        ObjectDetails::Pod {
            node_name: spec.and_then(|s| s.node_name.clone()).unwrap_or_default(),
            ips,
            host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            containers: spec
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default(),
        }
    }
}

impl Observe for Service {
    const KIND: ResourceKind = ResourceKind::Service;

    fn details(&self) -> ObjectDetails {
        let spec = self.spec.clone().unwrap_or_default();
        let cluster_ips = match spec.cluster_ips {
            Some(ips) if !ips.is_empty() => ips,
            _ => spec.cluster_ip.into_iter().collect(),
        };
        let ports = spec
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| ServicePort {
                name: p.name.unwrap_or_default(),
                port: p.port,
                // the API server defaults an unset target port to the port
                target_port: match p.target_port {
                    Some(IntOrString::Int(n)) => n.to_string(),
                    Some(IntOrString::String(name)) => name,
                    None => p.port.to_string(),
                },
                protocol: p.protocol.unwrap_or_else(|| "TCP".into()),
                node_port: p.node_port,
            })
            .collect();
        ObjectDetails::Service {
            service_type: spec.type_.unwrap_or_else(|| "ClusterIP".into()),
            // "None" marks a headless service: it has no virtual IP
            cluster_ips: cluster_ips
                .into_iter()
                .filter(|ip| !ip.is_empty() && ip != "None")
                .collect(),
            ports,
            selector: spec.selector.unwrap_or_default(),
        }
    }
}

impl Observe for EndpointSlice {
    const KIND: ResourceKind = ResourceKind::EndpointSlice;

    fn details(&self) -> ObjectDetails {
        let endpoints = self
            .endpoints
            .iter()
            .map(|e| SliceEndpoint {
                addresses: e.addresses.clone(),
                // unset means unknown, which consumers are to take as ready
                ready: e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true),
                pod_uid: e
                    .target_ref
                    .as_ref()
                    .filter(|r| r.kind.as_deref() == Some("Pod"))
                    .and_then(|r| r.uid.clone()),
                node_name: e.node_name.clone().unwrap_or_default(),
            })
            .collect();
        let ports = self
            .ports
            .iter()
            .flatten()
            .map(|p| SlicePort {
                name: p.name.clone().unwrap_or_default(),
                // an unset port means every port; 0 is no valid port, so it cannot be mistaken
                port: p.port.unwrap_or(0),
                protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
            })
            .collect();
        ObjectDetails::EndpointSlice {
            service_name: self
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL).cloned())
                .unwrap_or_default(),
            endpoints,
            ports,
        }
    }
}

impl Observe for Deployment {
    const KIND: ResourceKind = ResourceKind::Deployment;

    fn details(&self) -> ObjectDetails {
        let spec = self.spec.as_ref();
        workload(spec.map(|s| &s.template), spec.and_then(|s| s.replicas))
    }
}

impl Observe for ReplicaSet {
    const KIND: ResourceKind = ResourceKind::ReplicaSet;

    fn details(&self) -> ObjectDetails {
        let spec = self.spec.as_ref();
        workload(
            spec.and_then(|s| s.template.as_ref()),
            spec.and_then(|s| s.replicas),
        )
    }
}

impl Observe for StatefulSet {
    const KIND: ResourceKind = ResourceKind::StatefulSet;

    fn details(&self) -> ObjectDetails {
        let spec = self.spec.as_ref();
        workload(spec.map(|s| &s.template), spec.and_then(|s| s.replicas))
    }
}

// DaemonSets, Jobs and CronJobs have no replica count: their pods follow the nodes, or the run.
impl Observe for DaemonSet {
    const KIND: ResourceKind = ResourceKind::DaemonSet;

    fn details(&self) -> ObjectDetails {
        workload(self.spec.as_ref().map(|s| &s.template), None)
    }
}

impl Observe for ReplicationController {
    const KIND: ResourceKind = ResourceKind::ReplicationController;

    fn details(&self) -> ObjectDetails {
        let spec = self.spec.as_ref();
        workload(
            spec.and_then(|s| s.template.as_ref()),
            spec.and_then(|s| s.replicas),
        )
    }
}

impl Observe for Job {
    const KIND: ResourceKind = ResourceKind::Job;

    fn details(&self) -> ObjectDetails {
        workload(self.spec.as_ref().map(|s| &s.template), None)
    }
}

impl Observe for CronJob {
    const KIND: ResourceKind = ResourceKind::CronJob;

    /// The pods a CronJob's Jobs will create carry its job template's pod template.
    fn details(&self) -> ObjectDetails {
        let template = self
            .spec
            .as_ref()
            .and_then(|s| s.job_template.spec.as_ref())
            .map(|s| &s.template);
        workload(template, None)
    }
}

/// A part of a LabelMap left out of its observation. Only the part: the rest of the map still
/// applies, where refusing the whole map would unlabel every workload it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// An item whose `fromKey` or `toKey` is empty: it maps nothing to nothing.
    EmptyKey { list: &'static str, index: usize },
    /// An item whose `fromKey` an earlier item of the same list has: the earlier one applies.
    DuplicateFromKey {
        list: &'static str,
        index: usize,
        from_key: String,
    },
    /// A `valuesMap` entry whose `from` an earlier entry of the same item has: the earlier one
    /// applies.
    DuplicateValue {
        list: &'static str,
        index: usize,
        from: String,
    },
}

impl Dropped {
    /// A short, stable label for the metric.
    pub fn reason(&self) -> &'static str {
        match self {
            Dropped::EmptyKey { .. } => "empty_key",
            Dropped::DuplicateFromKey { .. } => "duplicate_from_key",
            Dropped::DuplicateValue { .. } => "duplicate_value",
        }
    }
}

impl fmt::Display for Dropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dropped::EmptyKey { list, index } => {
                write!(f, "{list}[{index}] has an empty fromKey or toKey")
            }
            Dropped::DuplicateFromKey {
                list,
                index,
                from_key,
            } => write!(
                f,
                "{list}[{index}] maps fromKey {from_key:?} again; the first item for it applies"
            ),
            Dropped::DuplicateValue { list, index, from } => write!(
                f,
                "{list}[{index}].valuesMap maps {from:?} again; the first entry for it applies"
            ),
        }
    }
}

/// The usable items of one list of a LabelMap, and what was left out of it.
fn label_map_items(
    list: &'static str,
    rules: &[LabelMapRule],
) -> (Vec<LabelMapItem>, Vec<Dropped>) {
    let mut items = Vec::new();
    let mut dropped = Vec::new();
    let mut from_keys = BTreeSet::new();
    for (index, rule) in rules.iter().enumerate() {
        if rule.from_key.is_empty() || rule.to_key.is_empty() {
            dropped.push(Dropped::EmptyKey { list, index });
            continue;
        }
        if !from_keys.insert(rule.from_key.as_str()) {
            dropped.push(Dropped::DuplicateFromKey {
                list,
                index,
                from_key: rule.from_key.clone(),
            });
            continue;
        }
        let mut froms = BTreeSet::new();
        let mut values_map = Vec::new();
        for value in &rule.values_map {
            if froms.insert(value.from.as_str()) {
                values_map.push(ValueMapping {
                    from: value.from.clone(),
                    to: value.to.clone(),
                });
            } else {
                dropped.push(Dropped::DuplicateValue {
                    list,
                    index,
                    from: value.from.clone(),
                });
            }
        }
        items.push(LabelMapItem {
            from_key: rule.from_key.clone(),
            to_key: rule.to_key.clone(),
            values_map,
            allow_create: rule.allow_create,
        });
    }
    (items, dropped)
}

/// A LabelMap's usable items and what was left out, in list order.
fn label_map(map: &LabelMap) -> (ObjectDetails, Vec<Dropped>) {
    let (node_label_map, mut dropped) = label_map_items("nodeLabelMap", &map.spec.node_label_map);
    let (workload_label_map, more) =
        label_map_items("workloadLabelMap", &map.spec.workload_label_map);
    dropped.extend(more);
    let details = ObjectDetails::LabelMap {
        node_label_map,
        workload_label_map,
    };
    (details, dropped)
}

impl Observe for LabelMap {
    const KIND: ResourceKind = ResourceKind::LabelMap;

    fn details(&self) -> ObjectDetails {
        label_map(self).0
    }

    fn dropped(&self) -> Vec<Dropped> {
        label_map(self).1
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use k8s_openapi::api::apps::v1::{
        DaemonSetSpec, DeploymentSpec, ReplicaSetSpec, StatefulSetSpec,
    };
    use k8s_openapi::api::batch::v1::{CronJobSpec, JobSpec, JobTemplateSpec};
    use k8s_openapi::api::core::v1::{
        Container, NodeAddress, NodeSpec, NodeStatus, NodeSystemInfo, ObjectReference, PodIP,
        PodSpec, PodStatus, ReplicationControllerSpec, ServiceSpec,
    };
    use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointPort};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Metadata as the API server serves it: uid derived from the name, resourceVersion 1.
    pub(crate) fn mk_meta(namespace: &str, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: (!namespace.is_empty()).then(|| namespace.into()),
            uid: Some(format!("uid-{name}")),
            resource_version: Some("1".into()),
            ..ObjectMeta::default()
        }
    }

    fn owned_by(mut meta: ObjectMeta, kind: &str, name: &str) -> ObjectMeta {
        meta.owner_references = Some(vec![OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: name.into(),
            uid: format!("uid-{name}"),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }]);
        meta
    }

    fn mk_template(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> PodTemplateSpec {
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(map(labels)),
                annotations: Some(map(annotations)),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec::default()),
        }
    }

    pub(crate) fn mk_pod(namespace: &str, name: &str, node: &str, ip: &str) -> Pod {
        Pod {
            metadata: mk_meta(namespace, name),
            spec: Some(PodSpec {
                node_name: Some(node.into()),
                containers: vec![
                    Container {
                        name: "app".into(),
                        ..Container::default()
                    },
                    Container {
                        name: "sidecar".into(),
                        ..Container::default()
                    },
                ],
                ..PodSpec::default()
            }),
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                pod_ips: Some(vec![PodIP { ip: ip.into() }]),
                ..PodStatus::default()
            }),
        }
    }

    fn mk_node(name: &str, labels: &[(&str, &str)]) -> Node {
        let mut metadata = mk_meta("", name);
        metadata.labels = Some(map(labels));
        let address = |type_: &str, address: &str| NodeAddress {
            type_: type_.into(),
            address: address.into(),
        };
        Node {
            metadata,
            spec: Some(NodeSpec {
                pod_cidr: Some("10.244.1.0/24".into()),
                pod_cidrs: Some(vec!["10.244.1.0/24".into(), "fd00:1::/64".into()]),
                ..NodeSpec::default()
            }),
            status: Some(NodeStatus {
                addresses: Some(vec![
                    address("InternalIP", "172.18.0.2"),
                    address("Hostname", name),
                    address("ExternalIP", "203.0.113.7"),
                    address("InternalDNS", "node.internal"),
                ]),
                node_info: Some(NodeSystemInfo {
                    machine_id: "m-1".into(),
                    kubelet_version: "v1.33.0".into(),
                    ..NodeSystemInfo::default()
                }),
                ..NodeStatus::default()
            }),
        }
    }

    fn mk_service(spec: ServiceSpec) -> Service {
        Service {
            metadata: mk_meta("shop", "web"),
            spec: Some(spec),
            status: None,
        }
    }

    fn mk_slice(endpoints: Vec<Endpoint>, ports: Option<Vec<EndpointPort>>) -> EndpointSlice {
        let mut metadata = mk_meta("shop", "web-abcde");
        metadata.labels = Some(map(&[(SERVICE_NAME_LABEL, "web")]));
        EndpointSlice {
            metadata,
            address_type: "IPv4".into(),
            endpoints,
            ports,
        }
    }

    fn mk_deployment(replicas: i32, template: PodTemplateSpec) -> Deployment {
        Deployment {
            metadata: mk_meta("shop", "web"),
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                template,
                ..DeploymentSpec::default()
            }),
            status: None,
        }
    }

    fn workload_of(
        details: ObjectDetails,
    ) -> (
        BTreeMap<String, String>,
        BTreeMap<String, String>,
        Option<i32>,
    ) {
        match details {
            ObjectDetails::Workload {
                template_labels,
                template_annotations,
                replicas,
            } => (template_labels, template_annotations, replicas),
            other => panic!("not a workload: {other:?}"),
        }
    }

    #[test]
    fn identity_labels_and_only_bulkhead_annotations() {
        let mut pod = mk_pod("shop", "web-1", "node-1", "10.244.1.5");
        pod.metadata.labels = Some(map(&[("app", "web"), ("tier", "frontend")]));
        pod.metadata.annotations = Some(map(&[
            ("bulkhead.io/role", "db"),
            ("com.illumio.app", "shop"),
            (
                "kubectl.kubernetes.io/last-applied-configuration",
                "{\"secret\":1}",
            ),
            ("bulkhead.iox/spoof", "x"),
            ("meta.illumio.podIPObservability", "true"),
        ]));
        pod.metadata.resource_version = Some("42".into());
        let observed = observe(&pod).unwrap();
        assert_eq!(observed.kind, ResourceKind::Pod);
        assert_eq!(
            (observed.uid.as_str(), observed.namespace.as_str()),
            ("uid-web-1", "shop")
        );
        assert_eq!(
            (observed.name.as_str(), observed.resource_version.as_str()),
            ("web-1", "42")
        );
        assert_eq!(
            observed.labels,
            map(&[("app", "web"), ("tier", "frontend")])
        );
        assert_eq!(
            observed.annotations,
            map(&[("bulkhead.io/role", "db"), ("com.illumio.app", "shop")])
        );
    }

    #[test]
    fn objects_without_uid_are_not_observed() {
        let mut pod = mk_pod("shop", "web-1", "node-1", "10.244.1.5");
        pod.metadata.uid = None;
        assert_eq!(observe(&pod), None);
    }

    #[test]
    fn only_the_controlling_owner_is_reported() {
        let mut pod = mk_pod("shop", "web-1", "node-1", "10.244.1.5");
        pod.metadata = owned_by(pod.metadata, "ReplicaSet", "web-7d9f");
        let gc_only = OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "cfg".into(),
            uid: "uid-cfg".into(),
            controller: None,
            block_owner_deletion: None,
        };
        pod.metadata
            .owner_references
            .as_mut()
            .unwrap()
            .insert(0, gc_only.clone());
        assert_eq!(
            observe(&pod).unwrap().owner,
            Some(OwnerRef {
                kind: "ReplicaSet".into(),
                name: "web-7d9f".into(),
                uid: "uid-web-7d9f".into(),
            })
        );
        pod.metadata.owner_references = Some(vec![gc_only]);
        assert_eq!(
            observe(&pod).unwrap().owner,
            None,
            "no controller, no owner"
        );
    }

    #[test]
    fn owner_chain_pod_replicaset_deployment() {
        let mut pod = mk_pod("shop", "web-7d9f-x", "node-1", "10.244.1.5");
        pod.metadata = owned_by(pod.metadata, "ReplicaSet", "web-7d9f");
        let rs = ReplicaSet {
            metadata: owned_by(mk_meta("shop", "web-7d9f"), "Deployment", "web"),
            spec: Some(ReplicaSetSpec {
                replicas: Some(2),
                template: Some(mk_template(&[("app", "web")], &[])),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        };
        let deployment = mk_deployment(2, mk_template(&[("app", "web")], &[]));
        let pod_owner = observe(&pod).unwrap().owner.unwrap();
        let rs_observed = observe(&rs).unwrap();
        assert_eq!(pod_owner.uid, rs_observed.uid);
        let rs_owner = rs_observed.owner.unwrap();
        assert_eq!(
            (rs_owner.kind.as_str(), rs_owner.uid.as_str()),
            ("Deployment", observe(&deployment).unwrap().uid.as_str())
        );
        assert_eq!(observe(&deployment).unwrap().owner, None);
    }

    #[test]
    fn namespace() {
        let ns = Namespace {
            metadata: mk_meta("", "shop"),
            ..Namespace::default()
        };
        let observed = observe(&ns).unwrap();
        assert_eq!(observed.kind, ResourceKind::Namespace);
        assert_eq!(observed.namespace, "", "cluster-scoped");
        assert_eq!(observed.details, ObjectDetails::Namespace {});
    }

    #[test]
    fn node_details() {
        let node = mk_node(
            "node-1",
            &[
                ("node-role.kubernetes.io/control-plane", ""),
                ("node-role.kubernetes.io/worker", "true"),
                ("node-role.kubernetes.io/", "empty role name"),
                ("kubernetes.io/hostname", "node-1"),
            ],
        );
        assert_eq!(
            observe(&node).unwrap().details,
            ObjectDetails::Node {
                machine_id: "m-1".into(),
                addresses: vec!["172.18.0.2".into(), "203.0.113.7".into()],
                pod_cidrs: vec!["10.244.1.0/24".into(), "fd00:1::/64".into()],
                roles: vec!["control-plane".into(), "worker".into()],
                kubelet_version: "v1.33.0".into(),
            }
        );
    }

    #[test]
    fn node_with_only_the_legacy_pod_cidr_and_no_status() {
        let mut node = mk_node("node-1", &[]);
        node.spec.as_mut().unwrap().pod_cidrs = None;
        node.status = None;
        assert_eq!(
            node.details(),
            ObjectDetails::Node {
                machine_id: String::new(),
                addresses: vec![],
                pod_cidrs: vec!["10.244.1.0/24".into()],
                roles: vec![],
                kubelet_version: String::new(),
            }
        );
    }

    #[test]
    fn pod_details() {
        let mut pod = mk_pod("shop", "web-1", "node-1", "10.244.1.5");
        pod.status.as_mut().unwrap().pod_ips = Some(vec![
            PodIP {
                ip: "10.244.1.5".into(),
            },
            PodIP {
                ip: "fd00:1::5".into(),
            },
        ]);
        assert_eq!(
            pod.details(),
            ObjectDetails::Pod {
                node_name: "node-1".into(),
                ips: vec!["10.244.1.5".into(), "fd00:1::5".into()],
                host_network: false,
                phase: "Running".into(),
                containers: vec!["app".into(), "sidecar".into()],
            }
        );
    }

    #[test]
    fn host_network_and_pending_pods() {
        let mut agent = mk_pod("kube-system", "agent-1", "node-1", "172.18.0.2");
        agent.spec.as_mut().unwrap().host_network = Some(true);
        agent.status.as_mut().unwrap().pod_ips = None;
        let ObjectDetails::Pod {
            host_network, ips, ..
        } = agent.details()
        else {
            panic!("a pod")
        };
        assert!(host_network);
        assert_eq!(ips, vec!["172.18.0.2"], "podIP when podIPs is absent");

        let mut pending = mk_pod("shop", "web-2", "", "");
        pending.spec.as_mut().unwrap().node_name = None;
        pending.status = Some(PodStatus {
            phase: Some("Pending".into()),
            ..PodStatus::default()
        });
        let ObjectDetails::Pod {
            node_name,
            ips,
            phase,
            ..
        } = pending.details()
        else {
            panic!("a pod")
        };
        assert_eq!((node_name.as_str(), phase.as_str()), ("", "Pending"));
        assert!(ips.is_empty());
    }

    #[test]
    fn service_details() {
        let service = mk_service(ServiceSpec {
            type_: Some("NodePort".into()),
            cluster_ip: Some("10.96.0.10".into()),
            cluster_ips: Some(vec!["10.96.0.10".into(), "fd00:96::a".into()]),
            selector: Some(map(&[("app", "web")])),
            ports: Some(vec![
                k8s_openapi::api::core::v1::ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::String("http".into())),
                    protocol: Some("TCP".into()),
                    node_port: Some(30080),
                    ..Default::default()
                },
                k8s_openapi::api::core::v1::ServicePort {
                    name: Some("dns".into()),
                    port: 53,
                    target_port: Some(IntOrString::Int(5353)),
                    protocol: Some("UDP".into()),
                    ..Default::default()
                },
                k8s_openapi::api::core::v1::ServicePort {
                    port: 9000,
                    ..Default::default()
                },
            ]),
            ..ServiceSpec::default()
        });
        assert_eq!(
            service.details(),
            ObjectDetails::Service {
                service_type: "NodePort".into(),
                cluster_ips: vec!["10.96.0.10".into(), "fd00:96::a".into()],
                ports: vec![
                    ServicePort {
                        name: "http".into(),
                        port: 80,
                        target_port: "http".into(),
                        protocol: "TCP".into(),
                        node_port: Some(30080),
                    },
                    ServicePort {
                        name: "dns".into(),
                        port: 53,
                        target_port: "5353".into(),
                        protocol: "UDP".into(),
                        node_port: None,
                    },
                    ServicePort {
                        name: String::new(),
                        port: 9000,
                        target_port: "9000".into(),
                        protocol: "TCP".into(),
                        node_port: None,
                    },
                ],
                selector: map(&[("app", "web")]),
            }
        );
    }

    #[test]
    fn headless_service_without_selector() {
        let service = mk_service(ServiceSpec {
            cluster_ip: Some("None".into()),
            cluster_ips: Some(vec!["None".into()]),
            ..ServiceSpec::default()
        });
        assert_eq!(
            service.details(),
            ObjectDetails::Service {
                service_type: "ClusterIP".into(),
                cluster_ips: vec![],
                ports: vec![],
                selector: BTreeMap::new(),
            }
        );
    }

    #[test]
    fn endpoint_slice_details() {
        let endpoint = |ip: &str, ready: Option<bool>, pod: Option<&str>| Endpoint {
            addresses: vec![ip.into()],
            conditions: Some(EndpointConditions {
                ready,
                ..EndpointConditions::default()
            }),
            node_name: Some("node-1".into()),
            target_ref: pod.map(|name| ObjectReference {
                kind: Some("Pod".into()),
                name: Some(name.into()),
                uid: Some(format!("uid-{name}")),
                ..ObjectReference::default()
            }),
            ..Endpoint::default()
        };
        let mut external = endpoint("192.0.2.9", Some(true), None);
        external.node_name = None;
        external.target_ref = Some(ObjectReference {
            kind: Some("Node".into()),
            uid: Some("uid-node".into()),
            ..ObjectReference::default()
        });
        let slice = mk_slice(
            vec![
                endpoint("10.244.1.5", Some(true), Some("web-1")),
                endpoint("10.244.1.6", Some(false), Some("web-2")),
                endpoint("10.244.1.7", None, Some("web-3")),
                external,
            ],
            Some(vec![
                EndpointPort {
                    name: Some("http".into()),
                    port: Some(8080),
                    protocol: Some("TCP".into()),
                    ..EndpointPort::default()
                },
                EndpointPort::default(),
            ]),
        );
        let pod = |uid: &str| Some(format!("uid-{uid}"));
        assert_eq!(
            slice.details(),
            ObjectDetails::EndpointSlice {
                service_name: "web".into(),
                endpoints: vec![
                    SliceEndpoint {
                        addresses: vec!["10.244.1.5".into()],
                        ready: true,
                        pod_uid: pod("web-1"),
                        node_name: "node-1".into(),
                    },
                    SliceEndpoint {
                        addresses: vec!["10.244.1.6".into()],
                        ready: false,
                        pod_uid: pod("web-2"),
                        node_name: "node-1".into(),
                    },
                    SliceEndpoint {
                        addresses: vec!["10.244.1.7".into()],
                        ready: true,
                        pod_uid: pod("web-3"),
                        node_name: "node-1".into(),
                    },
                    SliceEndpoint {
                        addresses: vec!["192.0.2.9".into()],
                        ready: true,
                        pod_uid: None,
                        node_name: String::new(),
                    },
                ],
                ports: vec![
                    SlicePort {
                        name: "http".into(),
                        port: 8080,
                        protocol: "TCP".into(),
                    },
                    SlicePort {
                        name: String::new(),
                        port: 0,
                        protocol: "TCP".into(),
                    },
                ],
            }
        );
    }

    #[test]
    fn deployment_template_and_replicas() {
        let deployment = mk_deployment(
            3,
            mk_template(
                &[("app", "web")],
                &[
                    ("bulkhead.io/env", "prod"),
                    ("prometheus.io/scrape", "true"),
                ],
            ),
        );
        assert_eq!(
            workload_of(deployment.details()),
            (
                map(&[("app", "web")]),
                map(&[("bulkhead.io/env", "prod")]),
                Some(3)
            )
        );
    }

    #[test]
    fn every_other_workload_kind() {
        let template = || mk_template(&[("app", "x")], &[("com.illumio.role", "db"), ("x", "y")]);
        let expected = |replicas| {
            (
                map(&[("app", "x")]),
                map(&[("com.illumio.role", "db")]),
                replicas,
            )
        };
        let meta = || mk_meta("shop", "x");
        let rs = ReplicaSet {
            metadata: meta(),
            spec: Some(ReplicaSetSpec {
                replicas: Some(2),
                template: Some(template()),
                ..ReplicaSetSpec::default()
            }),
            status: None,
        };
        let sts = StatefulSet {
            metadata: meta(),
            spec: Some(StatefulSetSpec {
                replicas: Some(1),
                template: template(),
                ..StatefulSetSpec::default()
            }),
            status: None,
        };
        let ds = DaemonSet {
            metadata: meta(),
            spec: Some(DaemonSetSpec {
                template: template(),
                ..DaemonSetSpec::default()
            }),
            status: None,
        };
        let rc = ReplicationController {
            metadata: meta(),
            spec: Some(ReplicationControllerSpec {
                replicas: Some(4),
                template: Some(template()),
                ..ReplicationControllerSpec::default()
            }),
            status: None,
        };
        let job = Job {
            metadata: meta(),
            spec: Some(JobSpec {
                template: template(),
                ..JobSpec::default()
            }),
            status: None,
        };
        // a CronJob's own labels are not its pods': the job template's pod template is
        let cron = CronJob {
            metadata: meta(),
            spec: Some(CronJobSpec {
                schedule: "0 * * * *".into(),
                job_template: JobTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(map(&[("job-level", "not-the-pods")])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(JobSpec {
                        template: template(),
                        ..JobSpec::default()
                    }),
                },
                ..CronJobSpec::default()
            }),
            status: None,
        };
        assert_eq!(workload_of(rs.details()), expected(Some(2)));
        assert_eq!(workload_of(sts.details()), expected(Some(1)));
        assert_eq!(workload_of(ds.details()), expected(None));
        assert_eq!(workload_of(rc.details()), expected(Some(4)));
        assert_eq!(workload_of(job.details()), expected(None));
        assert_eq!(workload_of(cron.details()), expected(None));
        let kinds = [
            observe(&rs).unwrap().kind,
            observe(&sts).unwrap().kind,
            observe(&ds).unwrap().kind,
            observe(&rc).unwrap().kind,
            observe(&job).unwrap().kind,
            observe(&cron).unwrap().kind,
        ];
        assert_eq!(
            kinds,
            [
                ResourceKind::ReplicaSet,
                ResourceKind::StatefulSet,
                ResourceKind::DaemonSet,
                ResourceKind::ReplicationController,
                ResourceKind::Job,
                ResourceKind::CronJob,
            ]
        );
    }

    #[test]
    fn workloads_without_spec_or_template() {
        let empty = (BTreeMap::new(), BTreeMap::new(), None);
        let deployment = Deployment {
            metadata: mk_meta("shop", "x"),
            ..Deployment::default()
        };
        assert_eq!(workload_of(deployment.details()), empty);
        let cron = CronJob {
            metadata: mk_meta("shop", "x"),
            spec: Some(CronJobSpec::default()),
            status: None,
        };
        assert_eq!(workload_of(cron.details()), empty);
    }

    fn mk_label_map(spec: serde_json::Value) -> LabelMap {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "bulkhead.io/v1",
            "kind": "LabelMap",
            "metadata": { "name": "default", "uid": "uid-default", "resourceVersion": "7" },
            "spec": spec,
        }))
        .unwrap()
    }

    fn item(from_key: &str, to_key: &str) -> LabelMapItem {
        LabelMapItem {
            from_key: from_key.into(),
            to_key: to_key.into(),
            values_map: vec![],
            allow_create: false,
        }
    }

    #[test]
    fn label_map_as_written_in_yaml() {
        let map = mk_label_map(serde_json::json!({
            "nodeLabelMap": [{
                "fromKey": "topology.kubernetes.io/zone",
                "toKey": "loc",
                "valuesMap": [{ "from": "us-east-1a", "to": "east" }, { "from": "us-west-2b", "to": "west" }],
                "allowCreate": true,
            }],
            "workloadLabelMap": [{ "fromKey": "app.kubernetes.io/name", "toKey": "app" }],
        }));
        let observed = observe(&map).unwrap();
        assert_eq!(
            (
                observed.kind,
                observed.namespace.as_str(),
                observed.name.as_str()
            ),
            (ResourceKind::LabelMap, "", "default"),
            "cluster-scoped"
        );
        let zone = LabelMapItem {
            values_map: vec![
                ValueMapping {
                    from: "us-east-1a".into(),
                    to: "east".into(),
                },
                ValueMapping {
                    from: "us-west-2b".into(),
                    to: "west".into(),
                },
            ],
            allow_create: true,
            ..item("topology.kubernetes.io/zone", "loc")
        };
        assert_eq!(
            observed.details,
            ObjectDetails::LabelMap {
                node_label_map: vec![zone],
                workload_label_map: vec![item("app.kubernetes.io/name", "app")],
            }
        );
        assert!(map.dropped().is_empty());
    }

    #[test]
    fn an_empty_label_map_maps_nothing() {
        let map = mk_label_map(serde_json::json!({}));
        assert_eq!(
            map.details(),
            ObjectDetails::LabelMap {
                node_label_map: vec![],
                workload_label_map: vec![],
            }
        );
        assert!(map.dropped().is_empty());
    }

    #[test]
    fn unusable_label_map_items_are_dropped_one_by_one() {
        let map = mk_label_map(serde_json::json!({
            "nodeLabelMap": [
                { "fromKey": "", "toKey": "loc" },
                { "toKey": "env" },
                { "fromKey": "zone", "toKey": "loc" },
                { "fromKey": "zone", "toKey": "env" },
                { "fromKey": "tier", "toKey": "" },
            ],
            "workloadLabelMap": [
                // the same fromKey as in the other list: each list stands alone
                { "fromKey": "zone", "toKey": "loc",
                  "valuesMap": [{ "from": "a", "to": "x" }, { "from": "a", "to": "y" }, { "from": "", "to": "none" }] },
            ],
        }));
        let ObjectDetails::LabelMap {
            node_label_map,
            workload_label_map,
        } = map.details()
        else {
            panic!("label map details")
        };
        assert_eq!(node_label_map, vec![item("zone", "loc")]);
        let values: Vec<(&str, &str)> = workload_label_map[0]
            .values_map
            .iter()
            .map(|v| (v.from.as_str(), v.to.as_str()))
            .collect();
        assert_eq!(
            values,
            [("a", "x"), ("", "none")],
            "an empty value is a value"
        );
        let dropped = map.dropped();
        let list = "nodeLabelMap";
        assert_eq!(
            dropped,
            vec![
                Dropped::EmptyKey { list, index: 0 },
                Dropped::EmptyKey { list, index: 1 },
                Dropped::DuplicateFromKey {
                    list,
                    index: 3,
                    from_key: "zone".into()
                },
                Dropped::EmptyKey { list, index: 4 },
                Dropped::DuplicateValue {
                    list: "workloadLabelMap",
                    index: 0,
                    from: "a".into()
                },
            ]
        );
        let reasons: Vec<&str> = dropped.iter().map(Dropped::reason).collect();
        assert_eq!(
            reasons,
            [
                "empty_key",
                "empty_key",
                "duplicate_from_key",
                "empty_key",
                "duplicate_value"
            ]
        );
        assert_eq!(
            dropped[2].to_string(),
            "nodeLabelMap[3] maps fromKey \"zone\" again; the first item for it applies"
        );
    }
}
