//! Inventory's memory per pod at the scale of the benchmark: one cluster of 200 nodes
//! x 110 pods (22,000 pods) in 2,000 deployments, each with its replica set, a service and an
//! EndpointSlice, then the effective labels labeling writes of every node, pod, deployment and
//! service (four labels each). Measured as the growth of the process's resident memory while
//! the index is fed (allocator overhead included), alone in its test binary so nothing else
//! allocates.

use std::collections::BTreeMap;

use bulkhead_inventory::{Index, token_sha256};
use bulkhead_runtime::projection::Projection;
use bulkhead_schema::WireMessage;
use bulkhead_schema::messages::eventlog::RecordedEvent;
use bulkhead_schema::messages::inventory::{
    InventoryEvent, ObjectDetails, ObservedObject, OwnerRef, ResourceKind, ServicePort,
    SliceEndpoint, SlicePort,
};
use bulkhead_schema::messages::labeling::{
    EffectiveLabel, EnforcementMode, EntityKind, EntityLabels, EntityRef, LabelMapOrigin,
    LabelSource, LabelingEvent, OutputPosition, label_href,
};

const NODES: usize = 200;
const PODS_PER_NODE: usize = 110;
const PODS_PER_DEPLOYMENT: usize = 11;
const NAMESPACES: usize = 20;
const ROLES: usize = 5;
const TARGET_BYTES_PER_POD: usize = 2048;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn uuid(kind: u8, i: usize) -> String {
    format!("{kind:02x}{i:06x}-4b7a-4f43-9f7e-1f3b2a6c8d10")
}

struct Feed {
    index: Index,
    version: u64,
}

impl Feed {
    fn record<E: WireMessage>(&mut self, stream: String, event: E) {
        self.version += 1;
        self.index.apply(&RecordedEvent {
            seq: self.version,
            stream,
            stream_version: self.version,
            event_type: E::TYPE.into(),
            data: rmp_serde::to_vec_named(&event).unwrap(),
            idempotency_key: format!("k{}", self.version),
            committed_at_ms: 0,
        });
    }

    fn event(&mut self, event: InventoryEvent) {
        self.record(InventoryEvent::stream("c1"), event);
    }

    fn labeling(&mut self, entities: Vec<EntityLabels>) {
        let event = LabelingEvent::EffectiveLabels {
            cluster_id: "c1".into(),
            through: OutputPosition::default(),
            entities,
        };
        self.record(LabelingEvent::effective_stream("c1"), event);
    }

    fn object(&mut self, object: ObservedObject) {
        self.event(InventoryEvent::ObjectApplied {
            cluster_id: "c1".into(),
            object,
        });
    }
}

fn object(
    kind: ResourceKind,
    uid: String,
    namespace: &str,
    name: String,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerRef>,
    details: ObjectDetails,
) -> ObservedObject {
    ObservedObject {
        kind,
        uid,
        namespace: namespace.into(),
        name,
        resource_version: "48213377".into(),
        labels,
        annotations: BTreeMap::new(),
        owner,
        details,
    }
}

/// A label as labeling writes it.
fn label(key: &str, id: u32, value: &str, source: LabelSource) -> (String, EffectiveLabel) {
    let label = EffectiveLabel {
        href: label_href(id),
        value: value.into(),
        source,
    };
    (key.into(), label)
}

/// An entity of `object` managed, in full enforcement, with `labels`.
fn entity(
    kind: EntityKind,
    object: &ObservedObject,
    labels: &[(String, EffectiveLabel)],
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
        labels: labels.iter().cloned().collect(),
        removed: false,
    }
}

/// A label from the workload label map's `app` rule.
fn mapped(from_key: &str) -> LabelSource {
    LabelSource::LabelMap {
        origin: LabelMapOrigin::CustomResource,
        map: "default".into(),
        from_key: from_key.into(),
    }
}

#[test]
fn a_pod_costs_at_most_2_kib_of_inventory_memory() {
    let before = resident_bytes();
    let mut feed = Feed {
        index: Index::default(),
        version: 0,
    };
    feed.event(InventoryEvent::ClusterCreated {
        cluster_id: "c1".into(),
        name: "bench".into(),
        description: String::new(),
        token_sha256: token_sha256("t"),
        created_at_ms: 0,
    });
    let loc = label("loc", 1, "eu-west", LabelSource::Profile);
    let mut node_labels = Vec::new();
    for n in 0..NODES {
        let node = object(
            ResourceKind::Node,
            uuid(1, n),
            "",
            format!("node-{n:03}"),
            [("kubernetes.io/hostname".to_owned(), format!("node-{n:03}"))].into(),
            None,
            ObjectDetails::Node {
                machine_id: format!("{n:032x}"),
                addresses: vec![format!("192.168.{}.{}", n / 256, n % 256)],
                pod_cidrs: vec![format!("10.{}.{}.0/24", n / 256, n % 256)],
                roles: vec!["worker".into()],
                kubelet_version: "v1.33.1".into(),
            },
        );
        let zone = label("loc", 1, "eu-west", mapped("topology.kubernetes.io/zone"));
        node_labels.push(entity(EntityKind::Node, &node, &[zone]));
        feed.object(node);
    }
    feed.labeling(node_labels);
    let pods = NODES * PODS_PER_NODE;
    for d in 0..pods / PODS_PER_DEPLOYMENT {
        let namespace = format!("team-{:02}", d % NAMESPACES);
        let app = format!("app-{d:04}");
        let hash = format!("{:010x}", d * 7919);
        let labels = |extra: bool| -> BTreeMap<String, String> {
            let mut labels: BTreeMap<String, String> = [
                ("app".to_owned(), app.clone()),
                ("tier".to_owned(), "backend".to_owned()),
            ]
            .into();
            if extra {
                labels.insert("pod-template-hash".into(), hash.clone());
            }
            labels
        };
        let workload = ObjectDetails::Workload {
            template_labels: labels(false),
            template_annotations: BTreeMap::new(),
            replicas: Some(PODS_PER_DEPLOYMENT as i32),
        };
        let deploy_uid = uuid(2, d);
        let deployment = object(
            ResourceKind::Deployment,
            deploy_uid.clone(),
            &namespace,
            app.clone(),
            labels(false),
            None,
            workload.clone(),
        );
        // As labeling resolves them: role from the deployment's pod template annotation, app
        // from the label map, env and loc from the namespace's profile.
        let role = format!("role-{}", d % ROLES);
        let annotated = LabelSource::Annotation {
            kind: "Deployment".into(),
            name: app.clone(),
            key: "bulkhead.io/role".into(),
            template: true,
        };
        let env = ["prod", "staging"][d % NAMESPACES % 2];
        let effective = [
            label("role", 10 + (d % ROLES) as u32, &role, annotated),
            label("app", 100 + d as u32, &app, mapped("app")),
            label(
                "env",
                2 + (d % NAMESPACES % 2) as u32,
                env,
                LabelSource::Profile,
            ),
            loc.clone(),
        ];
        let mut entities = vec![entity(EntityKind::KubeWorkload, &deployment, &effective)];
        feed.object(deployment);
        let rs_name = format!("{app}-{hash}");
        let rs_uid = uuid(3, d);
        let to_deploy = OwnerRef {
            kind: "Deployment".into(),
            name: app.clone(),
            uid: deploy_uid,
        };
        feed.object(object(
            ResourceKind::ReplicaSet,
            rs_uid.clone(),
            &namespace,
            rs_name.clone(),
            labels(true),
            Some(to_deploy),
            workload,
        ));
        let mut endpoints = Vec::new();
        for p in 0..PODS_PER_DEPLOYMENT {
            let i = d * PODS_PER_DEPLOYMENT + p;
            let node = i % NODES;
            let ip = format!("10.{}.{}.{}", node / 256, node % 256, 2 + i / NODES);
            let pod_uid = uuid(4, i);
            let to_rs = OwnerRef {
                kind: "ReplicaSet".into(),
                name: rs_name.clone(),
                uid: rs_uid.clone(),
            };
            let pod = object(
                ResourceKind::Pod,
                pod_uid.clone(),
                &namespace,
                format!("{rs_name}-{:05x}", i),
                labels(true),
                Some(to_rs),
                ObjectDetails::Pod {
                    node_name: format!("node-{node:03}"),
                    ips: vec![ip.clone()],
                    host_network: false,
                    phase: "Running".into(),
                    containers: vec!["app".into(), "sidecar".into()],
                },
            );
            entities.push(entity(EntityKind::Pod, &pod, &effective));
            feed.object(pod);
            endpoints.push(SliceEndpoint {
                addresses: vec![ip],
                ready: true,
                pod_uid: Some(pod_uid),
                node_name: format!("node-{node:03}"),
            });
        }
        let service = object(
            ResourceKind::Service,
            uuid(5, d),
            &namespace,
            app.clone(),
            labels(false),
            None,
            ObjectDetails::Service {
                service_type: "ClusterIP".into(),
                cluster_ips: vec![format!("10.96.{}.{}", d / 256, d % 256)],
                ports: vec![ServicePort {
                    name: "http".into(),
                    port: 80,
                    target_port: "8080".into(),
                    protocol: "TCP".into(),
                    node_port: None,
                }],
                selector: [("app".to_owned(), app.clone())].into(),
            },
        );
        entities.push(entity(EntityKind::Service, &service, &effective[1..]));
        feed.object(service);
        // labeling writes soon after inventory: in the log, its output follows each report
        feed.labeling(entities);
        feed.object(object(
            ResourceKind::EndpointSlice,
            uuid(6, d),
            &namespace,
            format!("{app}-abcde"),
            [("kubernetes.io/service-name".to_owned(), app.clone())].into(),
            None,
            ObjectDetails::EndpointSlice {
                service_name: app.clone(),
                endpoints,
                ports: vec![SlicePort {
                    name: "http".into(),
                    port: 8080,
                    protocol: "TCP".into(),
                }],
            },
        ));
    }
    let grown = resident_bytes().saturating_sub(before);
    let per_pod = grown / pods;
    eprintln!(
        "inventory: {pods} pods, {} KiB resident growth, {per_pod} bytes per pod",
        grown / 1024
    );
    assert!(per_pod <= TARGET_BYTES_PER_POD, "{per_pod} bytes per pod");
    drop(feed);
}
