//! Inventory against a real single-node event log on the in-process bus, as `bulkhead up` runs
//! them: pairing, clusterlink's reports, heartbeats and digests, wrong credentials, idempotency,
//! labeling's effective labels, and restarts. Every wait is bounded.

use std::time::Duration;

use bulkhead_eventlog::testing::SingleNodeLog;
use bulkhead_inventory::{InventoryConfig, run};
use bulkhead_runtime::health::Health;
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, ExpectedVersion, NewEvent, ReadReply, ReadRequest,
    RecordedEvent,
};
use bulkhead_schema::messages::inventory::{
    ClusterCommand, ClusterCommandReply, ClusterCredentials, ClusterHeartbeat, ClusterReport,
    ClusterView, DigestReply, DigestRequest, InventoryEvent, InventoryFilter, InventoryItems,
    InventoryQuery, InventoryQueryKind, InventoryRejection, InventoryReply, LabelSelector,
    Observation, ObservedObject, PodWorkloadView, ReportAck, ResourceKind, SyncState,
};
use bulkhead_schema::messages::labeling::{
    EnforcementMode, EntityKind, EntityLabels, LabelingEvent, OutputPosition, label_href,
};
use bulkhead_schema::testing::{mk_entity_labels, mk_pod};
use bulkhead_schema::{Subject, WireMessage};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    log: SingleNodeLog,
    inventory: Option<(CancellationToken, JoinHandle<()>)>,
}

impl Harness {
    async fn start() -> Self {
        let mut harness = Harness {
            log: SingleNodeLog::start(),
            inventory: None,
        };
        harness.start_inventory();
        harness
    }

    fn start_inventory(&mut self) {
        let stop = CancellationToken::new();
        let config = InventoryConfig {
            data_dir: self.log.dir().join("inventory"),
            online_period_secs: 60,
        };
        let task = tokio::spawn(run(
            config,
            self.log.bus.clone(),
            Health::new("inventory", "1"),
            stop.clone(),
        ));
        let task = tokio::spawn(async move { task.await.unwrap().unwrap() });
        self.inventory = Some((stop, task));
    }

    /// Stops inventory and waits for it (its last checkpoint written) before the test's
    /// runtime goes: sled must not be dropped while the runtime tears its tasks down.
    async fn stop(mut self) {
        self.stop_inventory().await;
    }

    async fn stop_inventory(&mut self) {
        let (stop, task) = self.inventory.take().unwrap();
        stop.cancel();
        tokio::time::timeout(WAIT, task)
            .await
            .expect("inventory stops")
            .unwrap();
    }

    /// A request, retried while nobody serves the subject yet (the log electing itself,
    /// inventory catching up).
    async fn ask<Q: WireMessage, R: WireMessage>(&self, subject: &Subject, request: &Q) -> R {
        self.log.ask(subject, request, WAIT).await
    }

    async fn command(&self, command: ClusterCommand) -> ClusterCommandReply {
        self.ask(&Subject::inventory_command(), &command).await
    }

    /// Creates a cluster; its credentials and view.
    async fn create(&self, name: &str) -> (ClusterCredentials, ClusterView) {
        match self
            .command(ClusterCommand::Create {
                name: name.into(),
                description: format!("the {name} cluster"),
            })
            .await
        {
            ClusterCommandReply::Done {
                cluster,
                token: Some(token),
            } => (
                ClusterCredentials {
                    cluster_id: cluster.cluster_id.clone(),
                    token,
                },
                cluster,
            ),
            other => panic!("create {name}: {other:?}"),
        }
    }

    async fn report(
        &self,
        credentials: &ClusterCredentials,
        report_id: &str,
        observations: Vec<Observation>,
    ) -> ReportAck {
        let report = ClusterReport {
            credentials: credentials.clone(),
            report_id: report_id.into(),
            observations,
        };
        self.ask(&Subject::inventory_report(&credentials.cluster_id), &report)
            .await
    }

    async fn heartbeat(&self, credentials: &ClusterCredentials, version: &str) -> ReportAck {
        let heartbeat = ClusterHeartbeat {
            credentials: credentials.clone(),
            clusterlink_version: version.into(),
            kubernetes_version: "v1.33.1".into(),
            cluster_mode: "legacy".into(),
            network_type: "overlay".into(),
        };
        self.ask(
            &Subject::inventory_cluster_heartbeat(&credentials.cluster_id),
            &heartbeat,
        )
        .await
    }

    async fn query(&self, what: InventoryQueryKind, filter: InventoryFilter) -> InventoryReply {
        let query = InventoryQuery {
            what,
            filter,
            offset: 0,
            limit: 1000,
        };
        self.ask(&Subject::inventory_query(), &query).await
    }

    async fn pods(&self, cluster_id: &str) -> Vec<PodWorkloadView> {
        let filter = InventoryFilter {
            cluster_id: Some(cluster_id.into()),
            ..Default::default()
        };
        self.pods_where(filter).await
    }

    async fn pods_where(&self, filter: InventoryFilter) -> Vec<PodWorkloadView> {
        match self.query(InventoryQueryKind::PodWorkloads, filter).await {
            InventoryReply::Page(page) => match page.items {
                InventoryItems::PodWorkloads(pods) => pods,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    async fn cluster(&self, cluster_id: &str) -> Result<ClusterView, InventoryRejection> {
        let what = InventoryQueryKind::Cluster {
            cluster_id: cluster_id.into(),
        };
        match self.query(what, InventoryFilter::default()).await {
            InventoryReply::Page(page) => match page.items {
                InventoryItems::Clusters(mut clusters) => Ok(clusters.remove(0)),
                other => panic!("{other:?}"),
            },
            InventoryReply::Rejected { kind, .. } => Err(kind),
        }
    }

    /// Every event in the log.
    async fn events(&self) -> Vec<RecordedEvent> {
        let mut all: Vec<RecordedEvent> = Vec::new();
        loop {
            let request = ReadRequest {
                from_seq: all.last().map_or(1, |e| e.seq + 1),
                limit: 1000,
            };
            match self.ask(&Subject::eventlog_read(), &request).await {
                ReadReply::Events { events, .. } if events.is_empty() => return all,
                ReadReply::Events { events, .. } => all.extend(events),
                ReadReply::Unavailable { reason } => panic!("{reason}"),
            }
        }
    }

    /// Appends `event` to `stream` as another service would.
    async fn append<E: WireMessage>(&self, stream: String, key: &str, event: &E) {
        let append = AppendRequest {
            stream,
            expected_version: ExpectedVersion::Any,
            idempotency_key: key.into(),
            events: vec![NewEvent {
                event_type: E::TYPE.into(),
                data: rmp_serde::to_vec_named(event).unwrap(),
            }],
        };
        let appended: AppendReply = self.ask(&Subject::eventlog_append(), &append).await;
        assert!(
            matches!(
                appended,
                AppendReply::Decided(AppendOutcome::Appended { .. })
            ),
            "{appended:?}"
        );
    }

    async fn stream(&self, stream: &str) -> Vec<InventoryEvent> {
        self.events()
            .await
            .into_iter()
            .filter(|e| e.stream == stream)
            .map(|e| rmp_serde::from_slice(&e.data).unwrap())
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some((stop, _)) = &self.inventory {
            stop.cancel();
        }
    }
}

/// Pod `name` of namespace `shop` at resource version `version`.
fn pod(name: &str, version: &str) -> ObservedObject {
    ObservedObject {
        resource_version: version.into(),
        ..mk_pod(name, "shop", None)
    }
}

fn applied(name: &str, version: &str) -> Observation {
    Observation::Applied(pod(name, version))
}

fn names(pods: &[PodWorkloadView]) -> Vec<&str> {
    pods.iter().map(|p| p.name.as_str()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clusters_are_paired_reported_and_managed() {
    let h = Harness::start().await;
    let (prod, view) = h.create("prod").await;
    assert!(prod.token.starts_with("bct_") && prod.token.len() == 4 + 64);
    assert_eq!((view.name.as_str(), view.online), ("prod", false));
    let created = h.stream(&InventoryEvent::stream(&prod.cluster_id)).await;
    let InventoryEvent::ClusterCreated { token_sha256, .. } = &created[0] else {
        panic!("{created:?}")
    };
    assert_eq!(*token_sha256, bulkhead_inventory::token_sha256(&prod.token));
    assert!(
        !format!("{created:?}").contains(&prod.token),
        "only the hash is logged"
    );

    // the token works: what is reported is listed as soon as the report is acknowledged
    let ack = h
        .report(
            &prod,
            "r1",
            vec![applied("web-a", "1"), applied("web-b", "1")],
        )
        .await;
    assert_eq!(ack, ReportAck::Accepted { observations: 2 });
    assert_eq!(names(&h.pods(&prod.cluster_id).await), ["web-a", "web-b"]);

    // heartbeats: online and in sync; a connection is logged once, and again when it changes
    assert_eq!(
        h.heartbeat(&prod, "0.1.0").await,
        ReportAck::Accepted { observations: 0 }
    );
    assert_eq!(
        h.heartbeat(&prod, "0.1.0").await,
        ReportAck::Accepted { observations: 0 }
    );
    let view = h.cluster(&prod.cluster_id).await.unwrap();
    assert_eq!((view.online, view.sync_state), (true, SyncState::InSync));
    assert_eq!(view.clusterlink_version, "0.1.0");
    assert!(view.last_connected_ms.is_some());
    h.heartbeat(&prod, "0.2.0").await;
    let connected = |events: &[InventoryEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, InventoryEvent::ClusterConnected { .. }))
            .count()
    };
    assert_eq!(
        connected(&h.stream(&InventoryEvent::stream(&prod.cluster_id)).await),
        2
    );
    assert_eq!(
        h.cluster(&prod.cluster_id)
            .await
            .unwrap()
            .clusterlink_version,
        "0.2.0"
    );

    // names: validated and unique; updates and deletes of unknown clusters are not found
    let refused = |reply: ClusterCommandReply| match reply {
        ClusterCommandReply::Rejected { kind, .. } => kind,
        other => panic!("{other:?}"),
    };
    let create = |name: &str| ClusterCommand::Create {
        name: name.into(),
        description: String::new(),
    };
    assert_eq!(
        refused(h.command(create("PROD")).await),
        InventoryRejection::Conflict
    );
    assert_eq!(
        refused(h.command(create("  ")).await),
        InventoryRejection::Invalid
    );
    assert_eq!(
        refused(h.command(create(&"x".repeat(256))).await),
        InventoryRejection::Invalid
    );
    let (staging, _) = h.create("staging").await;
    let rename = |id: &str, name: &str| ClusterCommand::Update {
        cluster_id: id.into(),
        name: Some(name.into()),
        description: None,
    };
    assert_eq!(
        refused(h.command(rename(&staging.cluster_id, "prod")).await),
        InventoryRejection::Conflict
    );
    assert_eq!(
        refused(h.command(rename("nope", "x")).await),
        InventoryRejection::NotFound
    );
    match h.command(rename(&staging.cluster_id, "stage")).await {
        ClusterCommandReply::Done { cluster, token } => {
            assert_eq!(
                (cluster.name.as_str(), cluster.description.as_str(), token),
                ("stage", "the staging cluster", None)
            );
        }
        other => panic!("{other:?}"),
    }
    let before = h.events().await.len();
    h.command(rename(&staging.cluster_id, "stage")).await;
    assert_eq!(
        h.events().await.len(),
        before,
        "an update that changes nothing appends nothing"
    );

    // deleting: gone with its objects, and its token stops working
    let delete = ClusterCommand::Delete {
        cluster_id: prod.cluster_id.clone(),
    };
    assert!(
        matches!(h.command(delete.clone()).await, ClusterCommandReply::Done { cluster, .. } if cluster.name == "prod")
    );
    assert_eq!(
        h.cluster(&prod.cluster_id).await,
        Err(InventoryRejection::NotFound)
    );
    assert_eq!(
        refused(h.command(delete).await),
        InventoryRejection::NotFound
    );
    assert!(matches!(
        h.report(&prod, "r2", vec![applied("web-c", "1")]).await,
        ReportAck::Rejected { kind, .. } if kind == "unknown_cluster"
    ));
    h.command(create("prod")).await; // the name is free again
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_credentials_are_rejected_audited_and_change_nothing() {
    let h = Harness::start().await;
    let (a, _) = h.create("a").await;
    let (b, _) = h.create("b").await;
    h.report(&a, "a1", vec![applied("a-pod", "1")]).await;
    let a_stream = InventoryEvent::stream(&a.cluster_id);
    let a_before = h.stream(&a_stream).await;

    let forged = |cluster_id: &str, token: &str| ClusterCredentials {
        cluster_id: cluster_id.into(),
        token: token.into(),
    };
    let wrong = forged(&a.cluster_id, "bct_guess");
    let ack = h
        .report(
            &wrong,
            "evil-1",
            vec![
                applied("evil", "1"),
                Observation::Deleted {
                    kind: ResourceKind::Pod,
                    uid: "a-pod-uid".into(),
                },
            ],
        )
        .await;
    assert!(
        matches!(&ack, ReportAck::Rejected { kind, .. } if kind == "wrong_token"),
        "{ack:?}"
    );
    // B's valid token does not open A
    let crossed = forged(&a.cluster_id, &b.token);
    assert!(matches!(
        h.report(&crossed, "evil-2", vec![applied("evil", "1")])
            .await,
        ReportAck::Rejected { .. }
    ));
    let unknown = forged("no-such-cluster", &a.token);
    assert!(
        matches!(h.report(&unknown, "evil-3", vec![]).await, ReportAck::Rejected { kind, .. } if kind == "unknown_cluster")
    );
    assert!(matches!(
        h.heartbeat(&wrong, "x").await,
        ReportAck::Rejected { .. }
    ));
    let digest = DigestRequest {
        credentials: wrong.clone(),
        kind: ResourceKind::Pod,
        after_uid: None,
        limit: 10,
    };
    assert!(matches!(
        h.ask::<_, DigestReply>(&Subject::inventory_digest(&a.cluster_id), &digest)
            .await,
        DigestReply::Rejected { .. }
    ));

    assert_eq!(h.stream(&a_stream).await, a_before, "nothing changed in A");
    assert_eq!(names(&h.pods(&a.cluster_id).await), ["a-pod"]);
    assert!(
        !h.cluster(&a.cluster_id).await.unwrap().online,
        "a refused heartbeat is no sign of life"
    );
    let audit = h.stream(InventoryEvent::AUDIT_STREAM).await;
    let audited: Vec<(&str, &str)> = audit
        .iter()
        .map(|e| match e {
            InventoryEvent::ClusterAuthFailed {
                cluster_id, reason, ..
            } => (cluster_id.as_str(), reason.as_str()),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        audited,
        [
            (a.cluster_id.as_str(), "wrong_token"),
            ("no-such-cluster", "unknown_cluster")
        ],
        "one audit event per claimed cluster per interval"
    );

    // B's clusterlink changes only B, whatever its objects say
    let mut claims_a = pod("a-pod", "2");
    claims_a.namespace = "shop".into();
    assert_eq!(
        h.report(&b, "b1", vec![Observation::Applied(claims_a)])
            .await,
        ReportAck::Accepted { observations: 1 }
    );
    assert_eq!(h.stream(&a_stream).await, a_before);
    assert_eq!(names(&h.pods(&b.cluster_id).await), ["a-pod"]);
    let b_digest = DigestRequest {
        credentials: b.clone(),
        kind: ResourceKind::Pod,
        after_uid: None,
        limit: 10,
    };
    assert_eq!(
        h.ask::<_, DigestReply>(&Subject::inventory_digest(&b.cluster_id), &b_digest)
            .await,
        DigestReply::Page {
            entries: vec![("a-pod-uid".into(), "2".into())]
        }
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_and_unchanged_reports_append_nothing() {
    let h = Harness::start().await;
    let (c, _) = h.create("c").await;
    let stream = InventoryEvent::stream(&c.cluster_id);
    let first = vec![applied("p1", "1"), applied("p2", "1")];
    assert_eq!(
        h.report(&c, "r1", first.clone()).await,
        ReportAck::Accepted { observations: 2 }
    );
    let after_first = h.stream(&stream).await.len();
    assert_eq!(after_first, 3);

    assert_eq!(
        h.report(&c, "r1", first.clone()).await,
        ReportAck::Accepted { observations: 2 }
    );
    assert_eq!(
        h.stream(&stream).await.len(),
        after_first,
        "a repeated report id appends nothing"
    );
    h.report(&c, "r2", first).await;
    let gone = Observation::Deleted {
        kind: ResourceKind::Pod,
        uid: "never-uid".into(),
    };
    h.report(&c, "r3", vec![applied("p1", "1"), gone]).await;
    assert_eq!(
        h.stream(&stream).await.len(),
        after_first,
        "unchanged observations append nothing"
    );

    let changed = vec![
        applied("p1", "2"),
        Observation::Deleted {
            kind: ResourceKind::Pod,
            uid: "p2-uid".into(),
        },
    ];
    h.report(&c, "r4", changed).await;
    assert_eq!(h.stream(&stream).await.len(), after_first + 2);
    assert_eq!(names(&h.pods(&c.cluster_id).await), ["p1"]);

    // a report larger than one append is committed in several, all before the ack
    let many: Vec<Observation> = (0..2500)
        .map(|i| applied(&format!("bulk-{i:04}"), "1"))
        .collect();
    assert_eq!(
        h.report(&c, "big", many).await,
        ReportAck::Accepted { observations: 2500 }
    );
    assert_eq!(h.cluster(&c.cluster_id).await.unwrap().pods, 2501);
    assert_eq!(
        h.pods(&c.cluster_id).await.len(),
        1000,
        "a page holds at most 1000"
    );
    let events = h.events().await;
    let keys: std::collections::BTreeSet<&str> = events
        .iter()
        .filter(|e| e.idempotency_key.contains("/big/"))
        .map(|e| e.idempotency_key.as_str())
        .collect();
    assert_eq!(keys.len(), 3, "1000 events per append at most: {keys:?}");

    // malformed reports are refused whole
    let mut bad = pod("bad", "1");
    bad.kind = ResourceKind::Node;
    let ack = h
        .report(
            &c,
            "r5",
            vec![applied("p9", "1"), Observation::Applied(bad)],
        )
        .await;
    assert!(
        matches!(&ack, ReportAck::Rejected { kind, .. } if kind == "invalid"),
        "{ack:?}"
    );
    assert!(!names(&h.pods(&c.cluster_id).await).contains(&"p9"));
    let ack = h.report(&c, "", vec![]).await;
    assert!(matches!(ack, ReportAck::Rejected { .. }));
    assert_eq!(
        h.cluster(&c.cluster_id).await.unwrap().sync_state,
        SyncState::OutOfSync,
        "never heard from"
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_inventory_has_the_same_state_from_checkpoint_and_tail() {
    let mut h = Harness::start().await;
    let (c, _) = h.create("c").await;
    h.report(&c, "r1", vec![applied("before", "1")]).await;
    h.stop_inventory().await;

    // written while inventory is down (as another replica would)
    let tail = InventoryEvent::ObjectApplied {
        cluster_id: c.cluster_id.clone(),
        object: pod("while-down", "1"),
    };
    h.append(InventoryEvent::stream(&c.cluster_id), "while-down", &tail)
        .await;

    h.start_inventory();
    assert_eq!(
        names(&h.pods(&c.cluster_id).await),
        ["before", "while-down"]
    );
    assert_eq!(
        h.report(&c, "r2", vec![applied("after", "1")]).await,
        ReportAck::Accepted { observations: 1 }
    );
    let stream = InventoryEvent::stream(&c.cluster_id);
    let before_repeat = h.stream(&stream).await.len();
    h.report(
        &c,
        "r3",
        vec![applied("before", "1"), applied("while-down", "1")],
    )
    .await;
    assert_eq!(
        h.stream(&stream).await.len(),
        before_repeat,
        "the restored state knows what it holds"
    );
    h.stop_inventory().await;
    h.start_inventory();
    assert_eq!(
        names(&h.pods(&c.cluster_id).await),
        ["after", "before", "while-down"]
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelings_effective_labels_are_listed_filtered_and_kept_across_restarts() {
    let mut h = Harness::start().await;
    let (c, _) = h.create("c").await;
    h.report(&c, "r1", vec![applied("web", "1"), applied("db", "1")])
        .await;
    let web = pod("web", "1");
    let written = LabelingEvent::EffectiveLabels {
        cluster_id: c.cluster_id.clone(),
        through: OutputPosition { seq: 3, index: 0 },
        entities: vec![EntityLabels {
            enforcement_mode: Some(EnforcementMode::Test),
            ..mk_entity_labels(EntityKind::Pod, &web, &[("role", 1, "web")])
        }],
    };
    let stream = LabelingEvent::effective_stream(&c.cluster_id);
    h.append(stream, "labeling-1", &written).await;

    let by_role = InventoryFilter {
        cluster_id: Some(c.cluster_id.clone()),
        labels: vec![vec![LabelSelector::KeyValue {
            key: "role".into(),
            value: "web".into(),
        }]],
        ..Default::default()
    };
    // labeling's appends are not inventory's: no reply waits for them to be applied
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut matching = h.pods_where(by_role.clone()).await;
    while matching.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        matching = h.pods_where(by_role.clone()).await;
    }
    assert_eq!(names(&matching), ["web"]);
    let labeling = matching[0].labeling.clone().unwrap();
    assert_eq!(labeling.enforcement_mode, Some(EnforcementMode::Test));
    assert_eq!(labeling.labels[0].href, label_href(1));

    h.stop_inventory().await;
    h.start_inventory();
    assert_eq!(names(&h.pods_where(by_role).await), ["web"]);
    let all = h.pods(&c.cluster_id).await;
    assert_eq!(all[0].labeling, None, "db: not labeled");
    assert_eq!(all[1].labeling, Some(labeling));
    h.stop().await;
}
