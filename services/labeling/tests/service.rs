//! Labeling against a real single-node event log on the in-process bus, as `bulkhead up` runs
//! them: commands and queries, inventory's events appended to `cluster/<id>` as inventory
//! would, effective labels committed to `effective/<cluster>`, pairing, restarts from the
//! checkpoint, and two replicas writing one output. Every wait is bounded.

use std::time::Duration;

use bulkhead_eventlog::testing::SingleNodeLog;
use bulkhead_labeling::{LabelingConfig, run};
use bulkhead_runtime::health::Health;
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, ExpectedVersion, NewEvent, ReadReply,
    ReadStreamRequest,
};
use bulkhead_schema::messages::inventory::{InventoryEvent, ObservedObject};
use bulkhead_schema::messages::labeling::{
    EntityKind, EntityLabels, Href, LabelFilter, LabelSource, LabelingCommand,
    LabelingCommandReply, LabelingEvent, LabelingFilter, LabelingItem, LabelingItems,
    LabelingQuery, LabelingQueryKind, LabelingRejection, LabelingReply, ProfileLabel,
    ProfileOrigin, ProfileSettings, ProfileState, ProfileView,
};
use bulkhead_schema::testing::{
    annotated, mk_deployment, mk_namespace, mk_pod, pairs, template_annotated,
};
use bulkhead_schema::{Subject, WireMessage};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);
const CLUSTER: &str = "c0ffee00-0000-4000-8000-000000000001";

struct Harness {
    log: SingleNodeLog,
    replicas: Vec<(CancellationToken, JoinHandle<()>)>,
}

impl Harness {
    async fn start() -> Self {
        let mut harness = Harness {
            log: SingleNodeLog::start(),
            replicas: Vec::new(),
        };
        harness.start_labeling("1");
        harness
            .inventory(vec![InventoryEvent::ClusterCreated {
                cluster_id: CLUSTER.into(),
                name: "prod".into(),
                description: String::new(),
                token_sha256: String::new(),
                created_at_ms: 0,
            }])
            .await;
        harness
    }

    fn start_labeling(&mut self, instance: &str) {
        let stop = CancellationToken::new();
        let config = LabelingConfig::embedded(self.log.dir().join(format!("labeling-{instance}")));
        let task = tokio::spawn(run(
            config,
            self.log.bus.clone(),
            Health::new("labeling", instance),
            stop.clone(),
        ));
        let task = tokio::spawn(async move { task.await.unwrap().unwrap() });
        self.replicas.push((stop, task));
    }

    /// Stops labeling and waits for it (its last checkpoint written) before the test's runtime
    /// goes: sled must not be dropped while the runtime tears its tasks down.
    async fn stop(mut self) {
        self.stop_labeling().await;
    }

    /// Stops every replica and waits for them (their last checkpoints written).
    async fn stop_labeling(&mut self) {
        for (stop, task) in self.replicas.drain(..) {
            stop.cancel();
            tokio::time::timeout(WAIT, task)
                .await
                .expect("labeling stops")
                .unwrap();
        }
    }

    /// A request, retried while nobody serves the subject yet (the log electing itself,
    /// labeling catching up).
    async fn ask<Q: WireMessage, R: WireMessage>(&self, subject: &Subject, request: &Q) -> R {
        self.log.ask(subject, request, WAIT).await
    }

    /// Appends inventory's events to the cluster's stream, as inventory would.
    async fn inventory(&self, events: Vec<InventoryEvent>) {
        let request = AppendRequest {
            stream: InventoryEvent::stream(CLUSTER),
            expected_version: ExpectedVersion::Any,
            idempotency_key: uuid::Uuid::new_v4().to_string(),
            events: events
                .iter()
                .map(|e| NewEvent {
                    event_type: InventoryEvent::EVENT_TYPE.into(),
                    data: rmp_serde::to_vec_named(e).unwrap(),
                })
                .collect(),
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.ask(&Subject::eventlog_append(), &request).await {
                AppendReply::Decided(AppendOutcome::Appended { .. }) => return,
                AppendReply::Unavailable { .. } if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await
                }
                other => panic!("{other:?}"),
            }
        }
    }

    async fn observe(&self, objects: &[ObservedObject]) {
        for chunk in objects.chunks(1000) {
            self.inventory(
                chunk
                    .iter()
                    .map(|o| InventoryEvent::ObjectApplied {
                        cluster_id: CLUSTER.into(),
                        object: o.clone(),
                    })
                    .collect(),
            )
            .await;
        }
    }

    async fn command(&self, command: LabelingCommand) -> LabelingCommandReply {
        self.ask(&Subject::labeling_command(), &command).await
    }

    async fn done(&self, command: LabelingCommand) -> LabelingItem {
        match self.command(command.clone()).await {
            LabelingCommandReply::Done { item, .. } => item,
            other => panic!("{command:?}: {other:?}"),
        }
    }

    async fn create_label(&self, key: &str, value: &str) -> Href {
        let item = self
            .done(LabelingCommand::CreateLabel {
                key: key.into(),
                value: value.into(),
            })
            .await;
        match item {
            LabelingItem::Label(label) => Href { href: label.href },
            other => panic!("{other:?}"),
        }
    }

    async fn query(&self, what: LabelingQueryKind, filter: LabelingFilter) -> LabelingItems {
        let query = LabelingQuery {
            what,
            filter,
            offset: 0,
            limit: 1000,
        };
        match self.ask(&Subject::labeling_query(), &query).await {
            LabelingReply::Page(page) => page.items,
            other => panic!("{other:?}"),
        }
    }

    async fn profiles(&self) -> Vec<ProfileView> {
        let filter = LabelingFilter {
            cluster_id: Some(CLUSTER.into()),
            ..LabelingFilter::default()
        };
        match self.query(LabelingQueryKind::Profiles, filter).await {
            LabelingItems::Profiles(profiles) => profiles,
            other => panic!("{other:?}"),
        }
    }

    async fn profile_of(&self, namespace: &str) -> Option<ProfileView> {
        self.profiles()
            .await
            .into_iter()
            .find(|p| p.namespace.as_deref() == Some(namespace))
    }

    /// Every event of the cluster's effective stream, in order.
    async fn effective_events(&self) -> Vec<LabelingEvent> {
        self.effective_events_after(0).await
    }

    /// The events of the cluster's effective stream after `version`, in order.
    async fn effective_events_after(&self, version: u64) -> Vec<LabelingEvent> {
        let mut events = Vec::new();
        loop {
            let request = ReadStreamRequest {
                stream: LabelingEvent::effective_stream(CLUSTER),
                from_version: version + events.len() as u64 + 1,
                limit: 1000,
            };
            match self.ask(&Subject::eventlog_read_stream(), &request).await {
                ReadReply::Events { events: page, .. } if page.is_empty() => return events,
                ReadReply::Events { events: page, .. } => events.extend(
                    page.iter()
                        .map(|e| rmp_serde::from_slice::<LabelingEvent>(&e.data).unwrap()),
                ),
                ReadReply::Unavailable { reason } => panic!("{reason}"),
            }
        }
    }

    async fn effective(&self) -> Vec<EntityLabels> {
        self.effective_events()
            .await
            .into_iter()
            .flat_map(|e| match e {
                LabelingEvent::EffectiveLabels { entities, .. } => entities,
                _ => Vec::new(),
            })
            .collect()
    }

    /// Waits until the effective stream satisfies `done`; its entities then.
    async fn effective_until(&self, done: impl Fn(&[EntityLabels]) -> bool) -> Vec<EntityLabels> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let written = self.effective().await;
            if done(&written) {
                return written;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "effective labels never got there: {written:#?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for (stop, _) in &self.replicas {
            stop.cancel();
        }
    }
}

fn names(written: &[EntityLabels]) -> Vec<String> {
    written.iter().map(|e| e.entity.name.clone()).collect()
}

fn value(entity: &EntityLabels, key: &str) -> Option<String> {
    entity.labels.get(key).map(|l| l.value.clone())
}

/// Makes namespace `shop` managed with loc fixed to `loc`, through the api.
async fn manage_shop(h: &Harness, loc: &Href) {
    let profile = h.profile_of("shop").await.expect("shop's own profile");
    h.done(LabelingCommand::UpdateProfile {
        cluster_id: CLUSTER.into(),
        profile_id: profile.id,
        name: None,
        managed: Some(true),
        enforcement_mode: None,
        labels: Some(vec![ProfileLabel {
            key: "loc".into(),
            assignment: Some(loc.clone()),
            restriction: None,
        }]),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_profiles_and_annotations_become_committed_effective_labels() {
    let h = Harness::start().await;
    let web = h.create_label("role", "web").await;
    let eu = h.create_label("loc", "eu").await;
    h.create_label("app", "shop").await;

    let deployment = template_annotated(
        mk_deployment("front", "shop"),
        &[("bulkhead.io/role", "web")],
    );
    let pods: Vec<ObservedObject> = (0..3)
        .map(|i| mk_pod(&format!("front-{i}"), "shop", Some(&deployment)))
        .collect();
    let mut objects = vec![mk_namespace("shop"), deployment.clone()];
    objects.extend(pods.iter().cloned());
    h.observe(&objects).await;
    let written = h.effective_until(|w| w.len() == 4).await;
    assert!(
        written.iter().all(|e| !e.managed),
        "shop starts unmanaged: {written:?}"
    );

    manage_shop(&h, &eu).await;
    let written = h.effective_until(|w| w.len() == 8).await;
    let pod = written
        .iter()
        .rev()
        .find(|e| e.entity.name == "front-0")
        .unwrap();
    assert!(pod.managed);
    assert_eq!(value(pod, "role").as_deref(), Some("web"));
    assert_eq!(value(pod, "loc").as_deref(), Some("eu"));
    assert_eq!(pod.labels["role"].href, web.href);
    assert_eq!(
        pod.labels["role"].source,
        LabelSource::Annotation {
            kind: "Deployment".into(),
            name: "front".into(),
            key: "bulkhead.io/role".into(),
            template: true
        }
    );

    // the api's view: effective labels by label, with provenance
    let filter = LabelingFilter {
        cluster_id: Some(CLUSTER.into()),
        entity_kind: Some(EntityKind::Pod),
        label: Some(LabelFilter {
            key: "role".into(),
            value: "web".into(),
        }),
        ..LabelingFilter::default()
    };
    match h.query(LabelingQueryKind::EffectiveLabels, filter).await {
        LabelingItems::EffectiveLabels(items) => {
            let names: Vec<&str> = items
                .iter()
                .map(|i| i.labels.entity.name.as_str())
                .collect();
            assert_eq!(names, ["front-0", "front-1", "front-2"]);
            assert!(items.iter().all(|i| i.cluster_id == CLUSTER));
        }
        other => panic!("{other:?}"),
    }

    // a label in use stays
    let web_id = web.href.rsplit('/').next().unwrap().parse().unwrap();
    match h
        .command(LabelingCommand::DeleteLabel { label_id: web_id })
        .await
    {
        LabelingCommandReply::Rejected { kind, reason } => {
            assert_eq!(kind, LabelingRejection::InUse, "{reason}")
        }
        other => panic!("{other:?}"),
    }

    // renaming the profile's label reaches the pods and the kube workload, once each, with the
    // new value (an annotation naming the old value would name nothing any more)
    let eu_id = eu.href.rsplit('/').next().unwrap().parse().unwrap();
    h.done(LabelingCommand::RenameLabel {
        label_id: eu_id,
        value: "europe".into(),
    })
    .await;
    let written = h.effective_until(|w| w.len() == 12).await;
    assert_eq!(
        names(&written[8..]),
        ["front-0", "front-1", "front-2", "front"]
    );
    assert!(
        written[8..].iter().all(
            |e| value(e, "loc").as_deref() == Some("europe") && e.labels["loc"].href == eu.href
        )
    );
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_created_profiles_link_by_pairing_key_and_wrong_keys_are_logged() {
    let h = Harness::start().await;
    let eu = h.create_label("loc", "eu").await;
    let reply = h
        .command(LabelingCommand::CreateProfile {
            cluster_id: CLUSTER.into(),
            name: "payments".into(),
            settings: ProfileSettings {
                managed: true,
                labels: vec![ProfileLabel {
                    key: "loc".into(),
                    assignment: Some(eu.clone()),
                    restriction: None,
                }],
                ..ProfileSettings::default()
            },
        })
        .await;
    let (profile, key) = match reply {
        LabelingCommandReply::Done {
            item: LabelingItem::Profile(profile),
            pairing_key: Some(key),
        } => (profile, key),
        other => panic!("{other:?}"),
    };
    assert_eq!(key.len(), 64);
    assert_eq!(profile.state, ProfileState::Pending);
    let profiles = h.profiles().await;
    assert_eq!(profiles.len(), 1, "pending profiles are listed");
    assert_eq!(profiles[0].namespace, None);

    h.observe(&[
        annotated(
            mk_namespace("intruder"),
            &[("com.illumio.pairing_key", "not-the-key")],
        ),
        annotated(
            mk_namespace("payments"),
            &[("com.illumio.pairing_key", &key)],
        ),
        mk_pod("pay-0", "payments", None),
    ])
    .await;
    let written = h.effective_until(|w| !w.is_empty()).await;
    assert_eq!(value(&written[0], "loc").as_deref(), Some("eu"));
    let linked = h.profile_of("payments").await.unwrap();
    assert_eq!(
        (linked.id, linked.state),
        (profile.id, ProfileState::Linked)
    );
    let rejected: Vec<String> = h
        .effective_events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            LabelingEvent::PairingKeyRejected { namespace, .. } => Some(namespace),
            _ => None,
        })
        .collect();
    assert_eq!(rejected, ["intruder"]);
    let intruder = h.profile_of("intruder").await.unwrap();
    assert_eq!(
        intruder.origin,
        ProfileOrigin::Namespace,
        "its own profile, nothing else"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_checkpoint_and_writes_nothing_twice() {
    let mut h = Harness::start().await;
    let eu = h.create_label("loc", "eu").await;
    h.create_label("role", "db").await;
    let pods: Vec<ObservedObject> = (0..20)
        .map(|i| mk_pod(&format!("db-{i:02}"), "shop", None))
        .collect();
    let mut objects = vec![mk_namespace("shop")];
    objects.extend(pods.iter().cloned());
    h.observe(&objects).await;
    // written before the edit, or the edit's entries would replace them in the queue
    h.effective_until(|w| w.len() == 20).await;
    manage_shop(&h, &eu).await;
    h.effective_until(|w| w.len() == 40).await;
    let events_before = h.effective_events().await;
    let profiles_before = h.profiles().await;

    h.stop_labeling().await;
    // while it is down: a change it must pick up once, after the restart
    h.observe(&[{
        let mut pod = mk_pod("db-00", "shop", None);
        pod.annotations = pairs(&[("bulkhead.io/role", "db")]);
        pod.resource_version = "2".into();
        pod
    }])
    .await;
    h.start_labeling("1");
    let written = h.effective_until(|w| w.len() == 41).await;
    assert_eq!(value(&written[40], "role").as_deref(), Some("db"));
    assert_eq!(h.profiles().await, profiles_before);
    // nothing written twice: the stream grew by that one change only, and stays so
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let events_after = h.effective_events().await;
    assert_eq!(events_after[..events_before.len()], events_before[..]);
    assert_eq!(h.effective().await.len(), 41);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_write_each_change_once() {
    let mut h = Harness::start().await;
    h.start_labeling("2");
    let eu = h.create_label("loc", "eu").await;
    let mut objects = vec![mk_namespace("shop")];
    objects.extend((0..50).map(|i| mk_pod(&format!("p-{i:02}"), "shop", None)));
    h.observe(&objects).await;
    h.effective_until(|w| w.len() == 50).await;
    manage_shop(&h, &eu).await;
    let written = h.effective_until(|w| w.len() >= 100).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written_later = h.effective().await;
    assert_eq!(
        written_later.len(),
        100,
        "each pod twice: unmanaged, then managed"
    );
    assert_eq!(written[..100], written_later[..]);
    h.stop().await;
}

/// A profile edit reaches every pod and kube workload of its namespace, each written once with
/// the new label. (How long it takes at the 10,000 pods is `loadtest`'s
/// `labeling-bench`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_edit_relabels_every_pod_and_workload_once() {
    const DEPLOYMENTS: usize = 20;
    const PODS_PER_DEPLOYMENT: usize = 10;
    let h = Harness::start().await;
    let eu = h.create_label("loc", "eu").await;
    let us = h.create_label("loc", "us").await;
    h.create_label("role", "web").await;
    let mut objects = vec![mk_namespace("shop")];
    let deployments: Vec<ObservedObject> = (0..DEPLOYMENTS)
        .map(|d| {
            template_annotated(
                mk_deployment(&format!("app-{d:02}"), "shop"),
                &[("bulkhead.io/role", "web")],
            )
        })
        .collect();
    objects.extend(deployments.iter().cloned());
    for (d, deployment) in deployments.iter().enumerate() {
        objects.extend(
            (0..PODS_PER_DEPLOYMENT)
                .map(|p| mk_pod(&format!("app-{d:02}-{p}"), "shop", Some(deployment))),
        );
    }
    h.observe(&objects).await;
    let entities = DEPLOYMENTS * (PODS_PER_DEPLOYMENT + 1);
    // written before the edits, or their entries would replace these in the queue
    h.effective_until(|w| w.len() == entities).await;
    manage_shop(&h, &eu).await;
    h.effective_until(|w| w.len() == 2 * entities).await;
    let before = h.effective_events().await.len() as u64;

    manage_shop(&h, &us).await;
    let relabelled = |events: Vec<LabelingEvent>| -> Vec<EntityLabels> {
        events
            .into_iter()
            .flat_map(|event| match event {
                LabelingEvent::EffectiveLabels { entities, .. } => entities,
                _ => Vec::new(),
            })
            .collect()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while relabelled(h.effective_events_after(before).await).len() < entities {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every entity relabelled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // nothing written twice, now or a little later
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let written = relabelled(h.effective_events_after(before).await);
    assert_eq!(written.len(), entities, "each entity once");
    let mut uids: Vec<&str> = written.iter().map(|e| e.entity.uid.as_str()).collect();
    uids.sort_unstable();
    uids.dedup();
    assert_eq!(uids.len(), entities, "each entity once");
    assert!(
        written.iter().all(|e| e.managed
            && value(e, "loc").as_deref() == Some("us")
            && value(e, "role").as_deref() == Some("web")),
        "{written:#?}"
    );
    h.stop().await;
}
