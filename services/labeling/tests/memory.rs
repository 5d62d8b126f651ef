//! Labeling's memory per labeled entity and the cost of a profile edit, at the scale of the
//! issue's benchmark: 10,000 pods in 1,000 deployments (each with its replica set) in one
//! namespace, each pod resolved from its deployment's annotations, a label map and its profile.
//! Memory is the growth of the process's resident memory while the objects are fed and their
//! output written (allocator overhead and the replica sets included), alone in its test binary
//! so nothing else allocates.

use std::collections::BTreeMap;
use std::time::Instant;

use bulkhead_labeling::Index;
use bulkhead_runtime::projection::Projection;
use bulkhead_schema::messages::eventlog::RecordedEvent;
use bulkhead_schema::messages::inventory::{
    InventoryEvent, LabelMapItem, ObjectDetails, ObservedObject, OwnerRef, ResourceKind,
};
use bulkhead_schema::messages::labeling::{
    EnforcementMode, LabelCreator, LabelMapSpec, LabelRule, LabelingEvent, LoggedSettings,
    OutputPosition,
};

const PODS: usize = 10_000;
const PODS_PER_DEPLOYMENT: usize = 10;
const TARGET_BYTES_PER_ENTITY: usize = 1024;

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
    seq: u64,
    versions: BTreeMap<String, u64>,
}

impl Feed {
    fn record(&mut self, stream: String, event_type: &str, data: Vec<u8>) {
        self.seq += 1;
        let version = self.versions.entry(stream.clone()).or_default();
        *version += 1;
        self.index.apply(&RecordedEvent {
            seq: self.seq,
            stream,
            stream_version: *version,
            event_type: event_type.into(),
            data,
            idempotency_key: format!("k{}", self.seq),
            committed_at_ms: 0,
        });
    }

    fn inventory(&mut self, event: InventoryEvent) {
        let data = rmp_serde::to_vec_named(&event).unwrap();
        self.record(
            InventoryEvent::stream("c1"),
            InventoryEvent::EVENT_TYPE,
            data,
        );
    }

    fn object(&mut self, object: ObservedObject) {
        self.inventory(InventoryEvent::ObjectApplied {
            cluster_id: "c1".into(),
            object,
        });
    }

    fn labeling(&mut self, event: LabelingEvent) {
        let data = rmp_serde::to_vec_named(&event).unwrap();
        self.record(
            LabelingEvent::CONFIG_STREAM.into(),
            LabelingEvent::EVENT_TYPE,
            data,
        );
    }

    /// As if every queued change had been written: a derived event covering all of them.
    fn written(&mut self) {
        let event = LabelingEvent::EffectiveLabels {
            cluster_id: "c1".into(),
            through: OutputPosition {
                seq: u64::MAX,
                index: u32::MAX,
            },
            entities: Vec::new(),
        };
        let data = rmp_serde::to_vec_named(&event).unwrap();
        self.record(
            LabelingEvent::effective_stream("c1"),
            LabelingEvent::EVENT_TYPE,
            data,
        );
    }

    fn edit_profile(&mut self, loc: u32) {
        self.labeling(LabelingEvent::ProfileUpdated {
            cluster_id: "c1".into(),
            profile_id: uuid(0, 0),
            name: "big".into(),
            settings: LoggedSettings {
                managed: true,
                enforcement_mode: EnforcementMode::Full,
                labels: [("loc".to_owned(), LabelRule::Assignment(loc))].into(),
            },
        });
    }
}

fn object(
    kind: ResourceKind,
    uid: String,
    name: String,
    labels: BTreeMap<String, String>,
    owner: Option<OwnerRef>,
    details: ObjectDetails,
) -> ObservedObject {
    ObservedObject {
        kind,
        uid,
        namespace: "big".into(),
        name,
        resource_version: "48213377".into(),
        labels,
        annotations: BTreeMap::new(),
        owner,
        details,
    }
}

#[test]
fn a_labeled_pod_costs_little_and_a_profile_edit_is_incremental() {
    let mut feed = Feed {
        index: Index::default(),
        seq: 0,
        versions: BTreeMap::new(),
    };
    feed.inventory(InventoryEvent::ClusterCreated {
        cluster_id: "c1".into(),
        name: "bench".into(),
        description: String::new(),
        token_sha256: String::new(),
        created_at_ms: 0,
    });
    // labels 1-2: loc eu/us; 3: role web; 4..: app-NNNN
    let mut labels = vec![
        ("loc", "eu".to_owned()),
        ("loc", "us".to_owned()),
        ("role", "web".to_owned()),
    ];
    labels.extend((0..PODS / PODS_PER_DEPLOYMENT).map(|d| ("app", format!("app-{d:04}"))));
    for (i, (key, value)) in labels.into_iter().enumerate() {
        feed.labeling(LabelingEvent::LabelCreated {
            label_id: i as u32 + 1,
            key: key.into(),
            value,
            created_by: LabelCreator::Api,
        });
    }
    feed.labeling(LabelingEvent::LabelMapPut {
        cluster_id: "c1".into(),
        name: "apps".into(),
        spec: LabelMapSpec {
            node_label_map: vec![],
            workload_label_map: vec![LabelMapItem {
                from_key: "app.kubernetes.io/name".into(),
                to_key: "app".into(),
                values_map: vec![],
                allow_create: false,
            }],
        },
    });
    feed.object(ObservedObject {
        namespace: String::new(),
        ..object(
            ResourceKind::Namespace,
            uuid(0, 0),
            "big".into(),
            BTreeMap::new(),
            None,
            ObjectDetails::Namespace {},
        )
    });
    feed.edit_profile(1);
    // From here on, what the entities cost (the process's and the labels' own memory apart).
    let before = resident_bytes();
    for d in 0..PODS / PODS_PER_DEPLOYMENT {
        let app = format!("app-{d:04}");
        let hash = format!("{:010x}", d * 7919);
        let labels = |extra: bool| -> BTreeMap<String, String> {
            let mut labels: BTreeMap<String, String> =
                [("app.kubernetes.io/name".to_owned(), app.clone())].into();
            if extra {
                labels.insert("pod-template-hash".into(), hash.clone());
            }
            labels
        };
        let workload = ObjectDetails::Workload {
            template_labels: labels(false),
            template_annotations: [("bulkhead.io/role".to_owned(), "web".to_owned())].into(),
            replicas: Some(PODS_PER_DEPLOYMENT as i32),
        };
        feed.object(object(
            ResourceKind::Deployment,
            uuid(2, d),
            app.clone(),
            labels(false),
            None,
            workload.clone(),
        ));
        let rs_name = format!("{app}-{hash}");
        feed.object(object(
            ResourceKind::ReplicaSet,
            uuid(3, d),
            rs_name.clone(),
            labels(true),
            Some(OwnerRef {
                kind: "Deployment".into(),
                name: app.clone(),
                uid: uuid(2, d),
            }),
            workload,
        ));
        for p in 0..PODS_PER_DEPLOYMENT {
            let i = d * PODS_PER_DEPLOYMENT + p;
            feed.object(object(
                ResourceKind::Pod,
                uuid(4, i),
                format!("{rs_name}-{i:05x}"),
                labels(true),
                Some(OwnerRef {
                    kind: "ReplicaSet".into(),
                    name: rs_name.clone(),
                    uid: uuid(3, d),
                }),
                ObjectDetails::Pod {
                    node_name: format!("node-{:03}", i % 100),
                    ips: vec![format!("10.{}.{}.{}", i / 65536, (i / 256) % 256, i % 256)],
                    host_network: false,
                    phase: "Running".into(),
                    containers: vec!["app".into()],
                },
            ));
        }
    }
    feed.written();
    let entities = PODS + PODS / PODS_PER_DEPLOYMENT;
    let grown = resident_bytes().saturating_sub(before);
    let per_entity = grown / entities;

    let started = Instant::now();
    feed.edit_profile(2);
    let edit = started.elapsed();
    feed.written();
    let started = Instant::now();
    feed.edit_profile(1);
    let edit_back = started.elapsed();

    eprintln!(
        "labeling: {entities} labeled entities, {} KiB resident growth, {per_entity} bytes per \
         entity; a profile edit relabeling all of them applied in {edit:?} (and back in \
         {edit_back:?})",
        grown / 1024
    );
    assert!(
        per_entity <= TARGET_BYTES_PER_ENTITY,
        "{per_entity} bytes per entity"
    );
    drop(feed);
}
