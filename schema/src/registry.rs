use crate::messages::common::RequestRejected;
use crate::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, CommittedEvents, ExpectedVersion, LogMember,
    LogStatus, MembershipReply, MembershipRequest, NewEvent, RaftRole, ReadReply, ReadRequest,
    ReadStreamRequest, RecordedEvent, ReplicationProgress, StatusRequest,
};
use crate::messages::health::{ServiceHeartbeat, ServiceState};
use crate::messages::inventory::{
    AssignedLabel, ClusterCommand, ClusterCommandReply, ClusterCredentials, ClusterError,
    ClusterHeartbeat, ClusterRef, ClusterReport, ClusterView, DigestReply, DigestRequest,
    EffectiveLabeling, InventoryEvent, InventoryFilter, InventoryItems, InventoryPage,
    InventoryQuery, InventoryQueryKind, InventoryReply, LabelSelector, ObjectDetails, Observation,
    ObservedObject, OwnerRef, PodWorkloadView, ReportAck, ResourceKind, SyncState, WorkloadRef,
};
use crate::messages::labeling::{
    EffectiveLabel, EffectiveLabelsView, EnforcementMode, EntityKind, EntityLabels, EntityRef,
    Href, LabelFilter, LabelMapOrigin, LabelSource, LabelingCommand, LabelingCommandReply,
    LabelingEvent, LabelingFilter, LabelingItem, LabelingItems, LabelingPage, LabelingQuery,
    LabelingQueryKind, LabelingReply, OutputPosition, ProfileLabel, ProfileOrigin, ProfileSettings,
    ProfileState, ProfileView, label_href, profile_href,
};
use crate::{DecodeError, Envelope, WireMessage};

/// Everything the contract tests and integrators need to know of one message type.
pub struct MessageInfo {
    pub message_type: &'static str,
    pub version: u16,
    /// The JSON Schema of the payload, with `x-bulkhead-type` and `x-bulkhead-version`.
    pub json_schema: fn() -> serde_json::Value,
    /// A fixed example in a fixed envelope: the golden byte vector.
    pub golden_bytes: fn() -> Vec<u8>,
    /// Decodes bytes as this type and encodes the result again in the same envelope.
    pub reencode: fn(&[u8]) -> Result<Vec<u8>, DecodeError>,
}

/// The envelope id and time used for golden vectors, so that they are reproducible.
const GOLDEN_ID: &str = "01890a5d-ac96-774b-bcce-b302099a8057";
const GOLDEN_SENT_AT_MS: u64 = 1_700_000_000_000;

fn json_schema_of<M: WireMessage>() -> serde_json::Value {
    let mut schema = serde_json::to_value(schemars::schema_for!(M)).expect("a schema is JSON");
    if let Some(object) = schema.as_object_mut() {
        object.insert("x-bulkhead-type".into(), M::TYPE.into());
        object.insert("x-bulkhead-version".into(), M::VERSION.into());
    }
    schema
}

fn golden_of<M: WireMessage>(example: &M) -> Vec<u8> {
    Envelope::wrap_with(example, GOLDEN_ID.into(), GOLDEN_SENT_AT_MS)
        .expect("examples encode")
        .to_bytes()
}

fn reencode_as<M: WireMessage>(bytes: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let decoded = Envelope::decode::<M>(bytes, usize::MAX)?;
    let again = Envelope::wrap_with(
        &decoded.message,
        decoded.envelope.id.clone(),
        decoded.envelope.sent_at_ms,
    )
    .expect("a decoded message encodes");
    Ok(Envelope {
        traceparent: decoded.envelope.traceparent,
        tracestate: decoded.envelope.tracestate,
        ..again
    }
    .to_bytes())
}

macro_rules! wire_messages {
    ($($message:ty => $example:expr),* $(,)?) => {
        /// Every message type of the contract, each with its example.
        pub fn registry() -> Vec<MessageInfo> {
            vec![$(MessageInfo {
                message_type: <$message as WireMessage>::TYPE,
                version: <$message as WireMessage>::VERSION,
                json_schema: json_schema_of::<$message>,
                golden_bytes: || golden_of::<$message>(&$example),
                reencode: reencode_as::<$message>,
            }),*]
        }
    };
}

wire_messages! {
    ServiceHeartbeat => ServiceHeartbeat {
        service: "eventlog".into(),
        instance: "eventlog-1".into(),
        state: ServiceState::Degraded,
        detail: Some("no leader".into()),
        build_version: "0.1.0".into(),
        started_at_ms: 1_700_000_000_000,
    },
    AppendRequest => AppendRequest {
        stream: "cluster/7".into(),
        expected_version: ExpectedVersion::Exact(3),
        idempotency_key: GOLDEN_ID.into(),
        events: vec![NewEvent { event_type: "inventory.ClusterPaired".into(), data: vec![0x81, 0xa2, 0x69, 0x64, 0x07] }],
    },
    AppendReply => AppendReply::Decided(AppendOutcome::Appended { first_seq: 41, last_seq: 41, stream_version: 4 }),
    ReadRequest => ReadRequest { from_seq: 41, limit: 500 },
    ReadStreamRequest => ReadStreamRequest { stream: "cluster/7".into(), from_version: 1, limit: 500 },
    ReadReply => ReadReply::Events { events: vec![example_recorded_event()], last_seq: 57 },
    CommittedEvents => CommittedEvents { events: vec![example_recorded_event()] },
    StatusRequest => StatusRequest {},
    LogStatus => LogStatus {
        node_id: 1,
        role: RaftRole::Leader,
        leader: Some(1),
        term: 3,
        last_log_index: Some(120),
        commit_index: Some(120),
        last_applied: Some(120),
        snapshot_index: Some(100),
        purged_index: Some(90),
        last_seq: 57,
        voters: example_members(),
        learners: vec![],
        replication: vec![
            ReplicationProgress { node_id: 2, matched_index: Some(120), lag: 0 },
            ReplicationProgress { node_id: 3, matched_index: Some(118), lag: 2 },
        ],
    },
    MembershipRequest => MembershipRequest::AddLearner { node_id: 4, addr: "10.0.0.4:7000".into() },
    MembershipReply => MembershipReply::Changed { voters: example_members(), learners: vec![LogMember { node_id: 4, addr: "10.0.0.4:7000".into() }] },
    RequestRejected => RequestRejected {
        kind: "wrong_type".into(),
        reason: "expected a eventlog.AppendRequest message, got eventlog.ReadRequest".into(),
    },
    ClusterReport => ClusterReport {
        credentials: example_credentials(),
        report_id: "2f1c0d9e-4b7a-4f43-9f7e-1f3b2a6c8d10".into(),
        observations: vec![
            Observation::Applied(example_pod()),
            Observation::Deleted { kind: ResourceKind::Pod, uid: "0b9f3c2e-old".into() },
        ],
    },
    ReportAck => ReportAck::Accepted { observations: 2 },
    ClusterHeartbeat => ClusterHeartbeat {
        credentials: example_credentials(),
        clusterlink_version: "0.1.0".into(),
        kubernetes_version: "v1.32.0".into(),
        cluster_mode: "legacy".into(),
        network_type: "overlay".into(),
    },
    DigestRequest => DigestRequest {
        credentials: example_credentials(),
        kind: ResourceKind::Pod,
        after_uid: Some("0b9f3c2e-old".into()),
        limit: 1000,
    },
    DigestReply => DigestReply::Page { entries: vec![("7d4e-pod-uid".into(), "4711".into())] },
    InventoryEvent => InventoryEvent::ObjectApplied {
        cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        object: example_pod(),
    },
    ClusterCommand => ClusterCommand::Update {
        cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        name: Some("prod-eu".into()),
        description: None,
    },
    ClusterCommandReply => ClusterCommandReply::Done {
        cluster: example_cluster(),
        token: Some("bct_0123456789abcdef".into()),
    },
    InventoryQuery => InventoryQuery {
        what: InventoryQueryKind::PodWorkloads,
        filter: InventoryFilter {
            cluster_id: Some("c0ffee00-0000-4000-8000-000000000001".into()),
            namespace: Some("shop".into()),
            node: None,
            name: Some("frontend".into()),
            labels: vec![
                vec![LabelSelector::Href(label_href(1)), LabelSelector::Href(label_href(4))],
                vec![LabelSelector::KeyValue { key: "app".into(), value: "shop".into() }],
            ],
        },
        offset: 0,
        limit: 100,
    },
    InventoryReply => InventoryReply::Page(InventoryPage {
        total: 1,
        offset: 0,
        items: InventoryItems::PodWorkloads(vec![PodWorkloadView {
            cluster: ClusterRef { cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(), name: "prod-eu".into() },
            uid: "7d4e-pod-uid".into(),
            namespace: "shop".into(),
            name: "frontend-7c9f8d-abcde".into(),
            node_name: "node-1".into(),
            ips: vec!["10.244.1.7".into()],
            phase: "Running".into(),
            containers: vec!["web".into()],
            labels: [("app".to_owned(), "frontend".to_owned())].into(),
            annotations: Default::default(),
            owners: vec![
                WorkloadRef { kind: "ReplicaSet".into(), name: "frontend-7c9f8d".into(), uid: "5a1b-rs-uid".into() },
                WorkloadRef { kind: "Deployment".into(), name: "frontend".into(), uid: "9c2d-deploy-uid".into() },
            ],
            labeling: Some(EffectiveLabeling {
                managed: true,
                enforcement_mode: Some(EnforcementMode::Full),
                labels: example_entity_labels()
                    .labels
                    .into_iter()
                    .map(|(key, label)| AssignedLabel { href: label.href, key, value: label.value, source: label.source })
                    .collect(),
            }),
        }]),
    }),
    LabelingEvent => LabelingEvent::EffectiveLabels {
        cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        through: OutputPosition { seq: 4711, index: 0 },
        entities: vec![example_entity_labels()],
    },
    LabelingCommand => LabelingCommand::CreateProfile {
        cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        name: "payments".into(),
        settings: example_profile_settings(),
    },
    LabelingCommandReply => LabelingCommandReply::Done {
        item: LabelingItem::Profile(ProfileView {
            href: profile_href("c0ffee00-0000-4000-8000-000000000001", "6f1d2c3b-0000-4000-8000-00000000000a"),
            id: "6f1d2c3b-0000-4000-8000-00000000000a".into(),
            cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
            name: "payments".into(),
            namespace: None,
            origin: ProfileOrigin::PreCreated,
            state: ProfileState::Pending,
            settings: example_profile_settings(),
        }),
        pairing_key: Some("abc8aaffdb2101e13a9da02bf492badb8d09d5ce338af116d076aef77558afcd".into()),
    },
    LabelingQuery => LabelingQuery {
        what: LabelingQueryKind::EffectiveLabels,
        filter: LabelingFilter {
            cluster_id: Some("c0ffee00-0000-4000-8000-000000000001".into()),
            namespace: Some("shop".into()),
            entity_kind: Some(EntityKind::Pod),
            label: Some(LabelFilter { key: "role".into(), value: "web".into() }),
            ..LabelingFilter::default()
        },
        offset: 0,
        limit: 100,
    },
    LabelingReply => LabelingReply::Page(LabelingPage {
        total: 1,
        offset: 0,
        items: LabelingItems::EffectiveLabels(vec![EffectiveLabelsView {
            cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
            labels: example_entity_labels(),
        }]),
    }),
}

fn example_cluster() -> ClusterView {
    ClusterView {
        cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        name: "prod-eu".into(),
        description: "EU production".into(),
        created_at_ms: 1_700_000_000_000,
        online: true,
        sync_state: SyncState::InSync,
        last_connected_ms: Some(1_700_000_060_000),
        clusterlink_version: "0.1.0".into(),
        kubernetes_version: "v1.32.0".into(),
        cluster_mode: "legacy".into(),
        network_type: "overlay".into(),
        errors: vec![ClusterError::DuplicateMachineId {
            machine_id: "ec2eefcfc1bdfa9d38218812405a27d9".into(),
            nodes: vec!["node-1".into(), "node-2".into()],
        }],
        nodes: 2,
        pods: 17,
    }
}

/// A profile: role from annotations among two labels, loc fixed, env never.
fn example_profile_settings() -> ProfileSettings {
    ProfileSettings {
        managed: true,
        enforcement_mode: EnforcementMode::VisibilityOnly,
        labels: vec![
            ProfileLabel {
                key: "env".into(),
                assignment: None,
                restriction: Some(vec![]),
            },
            ProfileLabel {
                key: "loc".into(),
                assignment: Some(Href::label(4)),
                restriction: None,
            },
            ProfileLabel {
                key: "role".into(),
                assignment: None,
                restriction: Some(vec![Href::label(1), Href::label_group(2)]),
            },
        ],
    }
}

fn example_entity_labels() -> EntityLabels {
    EntityLabels {
        entity: EntityRef {
            kind: EntityKind::Pod,
            uid: "7d4e-pod-uid".into(),
            namespace: "shop".into(),
            name: "frontend-7c9f8d-abcde".into(),
        },
        managed: true,
        enforcement_mode: Some(EnforcementMode::Full),
        labels: [
            (
                "app".to_owned(),
                EffectiveLabel {
                    href: label_href(9),
                    value: "shop".into(),
                    source: LabelSource::LabelMap {
                        origin: LabelMapOrigin::CustomResource,
                        map: "default".into(),
                        from_key: "app.kubernetes.io/part-of".into(),
                    },
                },
            ),
            (
                "loc".to_owned(),
                EffectiveLabel {
                    href: label_href(4),
                    value: "eu".into(),
                    source: LabelSource::Profile,
                },
            ),
            (
                "role".to_owned(),
                EffectiveLabel {
                    href: label_href(1),
                    value: "web".into(),
                    source: LabelSource::Annotation {
                        kind: "Deployment".into(),
                        name: "frontend".into(),
                        key: "bulkhead.io/role".into(),
                        template: false,
                    },
                },
            ),
        ]
        .into(),
        removed: false,
    }
}

fn example_credentials() -> ClusterCredentials {
    ClusterCredentials {
        cluster_id: "c0ffee00-0000-4000-8000-000000000001".into(),
        token: "bct_0123456789abcdef".into(),
    }
}

fn example_pod() -> ObservedObject {
    ObservedObject {
        kind: ResourceKind::Pod,
        uid: "7d4e-pod-uid".into(),
        namespace: "shop".into(),
        name: "frontend-7c9f8d-abcde".into(),
        resource_version: "4711".into(),
        labels: [("app".to_owned(), "frontend".to_owned())].into(),
        annotations: [("bulkhead.io/app".to_owned(), "shop-frontend".to_owned())].into(),
        owner: Some(OwnerRef {
            kind: "ReplicaSet".into(),
            name: "frontend-7c9f8d".into(),
            uid: "5a1b-rs-uid".into(),
        }),
        details: ObjectDetails::Pod {
            node_name: "node-1".into(),
            ips: vec!["10.244.1.7".into()],
            host_network: false,
            phase: "Running".into(),
            containers: vec!["web".into()],
        },
    }
}

fn example_members() -> Vec<LogMember> {
    (1..=3)
        .map(|node_id| LogMember {
            node_id,
            addr: format!("10.0.0.{node_id}:7000"),
        })
        .collect()
}

fn example_recorded_event() -> RecordedEvent {
    RecordedEvent {
        seq: 41,
        stream: "cluster/7".into(),
        stream_version: 4,
        event_type: "inventory.ClusterPaired".into(),
        data: vec![0x81, 0xa2, 0x69, 0x64, 0x07],
        idempotency_key: GOLDEN_ID.into(),
        committed_at_ms: 1_700_000_000_000,
    }
}

/// The JSON Schema of the envelope itself.
pub fn envelope_json_schema() -> serde_json::Value {
    serde_json::to_value(schemars::schema_for!(Envelope)).expect("a schema is JSON")
}
