//! The index with plain `#[test]`s over fixture builders (`mk_*`), in the manner of linkerd2's
//! policy-controller index tests: events go in as the log would record them, derived output
//! comes out through the same queue the service writes from.

use bulkhead_schema::messages::eventlog::ExpectedVersion;
use bulkhead_schema::messages::inventory::{InventoryEvent, ObservedObject, ResourceKind};
use bulkhead_schema::messages::labeling::{
    EnforcementMode, EntityKind, EntityLabels, Href, LabelId, LabelMapSpec, LabelRule, LabelSource,
    LabelingCommand, LabelingEvent, LoggedSettings, ProfileLabel, ProfileSettings,
    RestrictionMember,
};
use bulkhead_schema::testing::{
    Recorder, annotated, labeled, mk_label_map, mk_map_item, mk_namespace, mk_node, mk_pod,
    mk_service, mk_workload, placed, template_annotated, uid,
};
use sha2::{Digest, Sha256};

use super::*;
use crate::metrics;
use crate::output::{Item, OutputLimits};
use crate::plan::{Fresh, Plan, Refusal, plan, plan_created_labels};

pub(crate) const C1: &str = "c1";

// --- fixtures ----------------------------------------------------------------------------------

pub(crate) fn managed(labels: &[(&str, LabelRule)]) -> LoggedSettings {
    LoggedSettings {
        managed: true,
        enforcement_mode: EnforcementMode::Full,
        labels: labels
            .iter()
            .map(|(k, r)| ((*k).to_owned(), r.clone()))
            .collect(),
    }
}

/// The index, fed as the log would feed it: global sequence numbers and stream versions.
pub(crate) struct Feed {
    pub(crate) index: Index,
    recorder: Recorder,
}

impl Feed {
    /// An index with cluster `c1` paired.
    pub(crate) fn new() -> Self {
        let mut feed = Feed {
            index: Index::default(),
            recorder: Recorder::default(),
        };
        feed.cluster(C1);
        feed
    }

    fn record(&mut self, stream: &str, event_type: &str, data: Vec<u8>) {
        let event = self.recorder.record_encoded(stream, event_type, data);
        self.index.apply(&event);
    }

    pub(crate) fn inventory(&mut self, cluster_id: &str, event: InventoryEvent) {
        let data = rmp_serde::to_vec_named(&event).unwrap();
        self.record(
            &InventoryEvent::stream(cluster_id),
            InventoryEvent::EVENT_TYPE,
            data,
        );
    }

    pub(crate) fn cluster(&mut self, cluster_id: &str) {
        self.inventory(
            cluster_id,
            InventoryEvent::ClusterCreated {
                cluster_id: cluster_id.into(),
                name: cluster_id.into(),
                description: String::new(),
                token_sha256: String::new(),
                created_at_ms: 0,
            },
        );
    }

    pub(crate) fn observe(&mut self, object: &ObservedObject) {
        self.inventory(
            C1,
            InventoryEvent::ObjectApplied {
                cluster_id: C1.into(),
                object: object.clone(),
            },
        );
    }

    pub(crate) fn forget(&mut self, object: &ObservedObject) {
        self.inventory(
            C1,
            InventoryEvent::ObjectDeleted {
                cluster_id: C1.into(),
                kind: object.kind,
                uid: object.uid.clone(),
            },
        );
    }

    pub(crate) fn config(&mut self, event: &LabelingEvent) {
        let data = rmp_serde::to_vec_named(event).unwrap();
        self.record(
            LabelingEvent::CONFIG_STREAM,
            LabelingEvent::EVENT_TYPE,
            data,
        );
    }

    /// Plans a command as the service does and applies its events.
    pub(crate) fn command(&mut self, command: LabelingCommand) -> Result<Plan, Refusal> {
        self.command_with_key(command, "the-pairing-key")
    }

    pub(crate) fn command_with_key(
        &mut self,
        command: LabelingCommand,
        pairing_key: &str,
    ) -> Result<Plan, Refusal> {
        let fresh = Fresh {
            profile_id: format!("profile-{}", self.recorder.seq()),
            pairing_key_sha256: hex::encode(Sha256::digest(pairing_key.as_bytes())),
        };
        let planned = plan(&self.index, &command, &fresh)?;
        for event in &planned.events {
            self.config(event);
        }
        Ok(planned)
    }

    pub(crate) fn create_label(&mut self, key: &str, value: &str) -> LabelId {
        self.command(LabelingCommand::CreateLabel {
            key: key.into(),
            value: value.into(),
        })
        .unwrap();
        self.index.catalog.find(key, value).unwrap()
    }

    pub(crate) fn id(&self, key: &str, value: &str) -> LabelId {
        self.index.catalog.find(key, value).unwrap()
    }

    /// The profile id of a namespace.
    pub(crate) fn profile_of(&self, namespace: &str) -> Option<String> {
        self.index.clusters[C1]
            .profile_of(namespace)
            .map(|(id, _)| id.to_string())
    }

    pub(crate) fn update_profile(&mut self, namespace: &str, settings: LoggedSettings) {
        let profile_id = self.profile_of(namespace).unwrap();
        self.config(&LabelingEvent::ProfileUpdated {
            cluster_id: C1.into(),
            profile_id,
            name: namespace.into(),
            settings,
        });
    }

    /// Writes the cluster's queued output as the service would, `limits` at a time, applying
    /// each append back; everything written, in order.
    pub(crate) fn written_with(&mut self, limits: OutputLimits) -> Vec<LabelingEvent> {
        let mut written = Vec::new();
        loop {
            let appends = self.index.next_outputs(C1, limits, 3);
            if appends.is_empty() {
                return written;
            }
            for append in appends {
                // as the log checks it: the chained appends meet the stream where it is
                let at = self.recorder.version(&append.stream);
                let expected = match at {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                };
                assert_eq!(append.expected_version, expected);
                for event in append.events {
                    written.push(rmp_serde::from_slice(&event.data).unwrap());
                    self.record(&append.stream, &event.event_type, event.data);
                }
            }
        }
    }

    /// The effective labels written since the last call, in order.
    pub(crate) fn written(&mut self) -> Vec<EntityLabels> {
        self.written_with(OutputLimits::default())
            .into_iter()
            .flat_map(|event| match event {
                LabelingEvent::EffectiveLabels { entities, .. } => entities,
                _ => Vec::new(),
            })
            .collect()
    }

    /// Written entities as `kind/name`, in order.
    pub(crate) fn written_names(&mut self) -> Vec<String> {
        self.written()
            .iter()
            .map(|e| format!("{:?}/{}", e.entity.kind, e.entity.name))
            .collect()
    }

    /// An entity's labels as the index holds them now: `key=value`.
    pub(crate) fn labels(&self, name: &str) -> Vec<String> {
        let cluster = &self.index.clusters[C1];
        let (_, object) = self.index.entity(cluster, &uid(name)).expect("an entity");
        self.index
            .materialize(cluster, object)
            .labels
            .iter()
            .map(|(k, l)| format!("{k}={}", l.value))
            .collect()
    }

    pub(crate) fn source(&self, name: &str, key: &str) -> LabelSource {
        let cluster = &self.index.clusters[C1];
        let (_, object) = self.index.entity(cluster, &uid(name)).expect("an entity");
        self.index.materialize(cluster, object).labels[key]
            .source
            .clone()
    }

    pub(crate) fn is_entity(&self, name: &str) -> bool {
        self.index
            .entity(&self.index.clusters[C1], &uid(name))
            .is_some()
    }
}

/// A cluster with the reference example's labels and namespace `shop`, its own profile managed
/// and free.
fn mk_shop() -> Feed {
    let mut feed = Feed::new();
    for (key, value) in [
        ("role", "role1"),
        ("role", "web"),
        ("role", "db"),
        ("app", "app1"),
        ("app", "shop"),
        ("env", "env1"),
        ("env", "env2"),
        ("env", "env3"),
        ("loc", "loc1"),
        ("loc", "loc3"),
        ("loc", "loc100"),
    ] {
        feed.create_label(key, value);
    }
    feed.observe(&mk_namespace("shop"));
    feed.update_profile("shop", managed(&[]));
    feed.written();
    feed
}

// --- profiles and namespaces ----------------------------------------------------------------

#[test]
fn a_namespace_gets_its_own_profile_from_the_template_and_loses_it_with_the_namespace() {
    let mut feed = mk_shop();
    let loc1 = feed.id("loc", "loc1");
    feed.config(&LabelingEvent::TemplateSet {
        cluster_id: C1.into(),
        settings: managed(&[("loc", LabelRule::Assignment(loc1))]),
    });
    feed.observe(&mk_namespace("payments"));
    let profile_id = feed.profile_of("payments").unwrap();
    assert_eq!(
        profile_id,
        uid("payments"),
        "a namespace's profile is named by its uid"
    );
    let profile = &feed.index.clusters[C1].profiles[profile_id.as_str()];
    assert_eq!(profile.origin, ProfileOrigin::Namespace);
    assert!(profile.settings.managed);
    feed.observe(&mk_pod("pay-1", "payments", None));
    assert_eq!(feed.labels("pay-1"), ["loc=loc1"]);

    // the template is for new namespaces: shop keeps its own settings
    assert!(
        feed.index.clusters[C1].profiles[uid("shop").as_str()]
            .settings
            .labels
            .is_empty()
    );

    feed.forget(&mk_namespace("payments"));
    assert_eq!(feed.profile_of("payments"), None);
    assert!(
        !feed.index.clusters[C1]
            .profiles
            .contains_key(uid("payments").as_str())
    );
    let written = feed.written();
    assert_eq!(written.len(), 1, "queued once, with its latest labels");
    assert!(
        !written[0].managed && written[0].labels.is_empty(),
        "its pods are unmanaged now: {written:?}"
    );
}

#[test]
fn unmanaged_namespaces_give_their_workloads_no_labels() {
    let mut feed = mk_shop();
    let app1 = feed.id("app", "app1");
    feed.observe(&mk_namespace("legacy"));
    feed.observe(&annotated(
        mk_pod("old-1", "legacy", None),
        &[("bulkhead.io/app", "app1")],
    ));
    feed.observe(&annotated(
        mk_service("old-svc", "legacy"),
        &[("bulkhead.io/app", "app1")],
    ));
    let written = feed.written();
    assert_eq!(written.len(), 2);
    assert!(
        written
            .iter()
            .all(|e| !e.managed && e.labels.is_empty() && e.enforcement_mode.is_none())
    );

    feed.update_profile("legacy", managed(&[]));
    assert_eq!(feed.labels("old-1"), ["app=app1"]);
    assert_eq!(feed.labels("old-svc"), ["app=app1"]);
    let written = feed.written();
    assert!(
        written
            .iter()
            .all(|e| e.managed && e.enforcement_mode == Some(EnforcementMode::Full))
    );
    assert_eq!(
        written[0].labels["app"].href,
        format!("/orgs/1/labels/{app1}")
    );
}

#[test]
fn pods_of_namespaces_not_observed_yet_are_unmanaged_until_their_namespace_comes() {
    let mut feed = mk_shop();
    feed.config(&LabelingEvent::TemplateSet {
        cluster_id: C1.into(),
        settings: managed(&[]),
    });
    feed.observe(&annotated(
        mk_pod("early-1", "later", None),
        &[("bulkhead.io/app", "shop")],
    ));
    assert!(feed.labels("early-1").is_empty());
    feed.observe(&mk_namespace("later"));
    assert_eq!(feed.labels("early-1"), ["app=shop"]);
}

// --- resolution through the index -----------------------------------------------------------------

#[test]
fn the_reference_example_holds_through_the_index() {
    let mut feed = mk_shop();
    let (env1, env2, loc1) = (
        feed.id("env", "env1"),
        feed.id("env", "env2"),
        feed.id("loc", "loc1"),
    );
    feed.update_profile(
        "shop",
        managed(&[
            ("role", LabelRule::Restriction(vec![])),
            (
                "env",
                LabelRule::Restriction(vec![
                    RestrictionMember::Label(env1),
                    RestrictionMember::Label(env2),
                ]),
            ),
            ("loc", LabelRule::Assignment(loc1)),
        ]),
    );
    let notes = |env: &str| {
        vec![
            ("com.illumio.role".to_owned(), "role1".to_owned()),
            ("com.illumio.app".to_owned(), "app1".to_owned()),
            ("com.illumio.env".to_owned(), env.to_owned()),
            ("com.illumio.loc".to_owned(), "loc100".to_owned()),
        ]
    };
    let list = notes("env1");
    let list: Vec<(&str, &str)> = list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    feed.observe(&annotated(mk_pod("web-1", "shop", None), &list));
    assert_eq!(feed.labels("web-1"), ["app=app1", "env=env1", "loc=loc1"]);
    assert_eq!(feed.source("web-1", "loc"), LabelSource::Profile);
    assert_eq!(
        feed.source("web-1", "app"),
        LabelSource::Annotation {
            kind: "Pod".into(),
            name: "web-1".into(),
            key: "com.illumio.app".into(),
            template: false
        }
    );
    let list = notes("env100");
    let list: Vec<(&str, &str)> = list.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    feed.observe(&annotated(mk_pod("web-1", "shop", None), &list));
    assert_eq!(feed.labels("web-1"), ["app=app1", "loc=loc1"]);
}

#[test]
fn annotating_a_deployment_relabels_its_running_pods() {
    let mut feed = mk_shop();
    let deployment = template_annotated(
        mk_workload(ResourceKind::Deployment, "front", "shop", None),
        &[("bulkhead.io/role", "db")],
    );
    let replica_set = mk_workload(
        ResourceKind::ReplicaSet,
        "front-7c9f",
        "shop",
        Some(&deployment),
    );
    let pod = annotated(
        mk_pod("front-7c9f-a", "shop", Some(&replica_set)),
        &[("bulkhead.io/role", "role1"), ("bulkhead.io/app", "shop")],
    );
    feed.observe(&deployment);
    feed.observe(&replica_set);
    feed.observe(&pod);
    assert_eq!(
        feed.labels("front-7c9f-a"),
        ["app=shop", "role=db"],
        "the template beats the pod"
    );
    assert_eq!(
        feed.labels("front"),
        ["role=db"],
        "the kube workload has no pod annotations"
    );
    assert!(
        !feed.is_entity("front-7c9f"),
        "a replica set under a deployment is no kube workload"
    );
    feed.written();

    // kubectl annotate deployment/front bulkhead.io/role=web
    feed.observe(&annotated(
        deployment.clone(),
        &[("bulkhead.io/role", "web")],
    ));
    assert_eq!(feed.labels("front-7c9f-a"), ["app=shop", "role=web"]);
    assert_eq!(
        feed.source("front-7c9f-a", "role"),
        LabelSource::Annotation {
            kind: "Deployment".into(),
            name: "front".into(),
            key: "bulkhead.io/role".into(),
            template: false
        }
    );
    assert_eq!(
        feed.written_names(),
        ["Pod/front-7c9f-a", "KubeWorkload/front"]
    );
}

#[test]
fn a_controller_is_a_kube_workload_only_at_the_top_of_its_chain() {
    let mut feed = mk_shop();
    let deployment = mk_workload(ResourceKind::Deployment, "api", "shop", None);
    let replica_set = mk_workload(
        ResourceKind::ReplicaSet,
        "api-5d4",
        "shop",
        Some(&deployment),
    );
    feed.observe(&replica_set);
    assert!(feed.is_entity("api-5d4"), "its owner is not observed yet");
    feed.written();
    feed.observe(&deployment);
    assert!(!feed.is_entity("api-5d4") && feed.is_entity("api"));
    let written = feed.written();
    let mut shown: Vec<(String, bool)> = written
        .iter()
        .map(|e| (e.entity.name.clone(), e.removed))
        .collect();
    shown.sort();
    assert_eq!(
        shown,
        [("api".to_owned(), false), ("api-5d4".to_owned(), true)]
    );
    feed.forget(&deployment);
    assert!(feed.is_entity("api-5d4"));
}

#[test]
fn host_network_pods_take_their_nodes_labels_and_follow_them() {
    let mut feed = mk_shop();
    feed.config(&LabelingEvent::LabelMapPut {
        cluster_id: C1.into(),
        name: "zones".into(),
        spec: LabelMapSpec {
            node_label_map: vec![mk_map_item(
                "topology.kubernetes.io/zone",
                "loc",
                &[],
                false,
            )],
            workload_label_map: vec![],
        },
    });
    let node = labeled(
        mk_node("node-1", "m1"),
        &[("topology.kubernetes.io/zone", "loc1")],
    );
    feed.observe(&node);
    let proxy = annotated(
        placed(
            mk_pod("proxy-1", "shop", None),
            "node-1",
            "192.168.0.6",
            true,
        ),
        &[("bulkhead.io/app", "shop")],
    );
    feed.observe(&proxy);
    assert_eq!(feed.labels("node-1"), ["loc=loc1"]);
    assert_eq!(
        feed.labels("proxy-1"),
        ["loc=loc1"],
        "the node's, not its annotations'"
    );
    assert_eq!(
        feed.source("proxy-1", "loc"),
        LabelSource::Node {
            name: "node-1".into()
        }
    );
    feed.written();
    feed.observe(&labeled(node, &[("topology.kubernetes.io/zone", "loc3")]));
    assert_eq!(feed.labels("proxy-1"), ["loc=loc3"]);
    assert_eq!(feed.written_names(), ["Node/node-1", "Pod/proxy-1"]);
    // moved onto the pod network: its own labels
    feed.observe(&placed(proxy, "node-1", "10.244.1.7", false));
    assert_eq!(feed.labels("proxy-1"), ["app=shop"]);
}

#[test]
fn custom_resource_maps_apply_first_api_maps_after_and_the_later_wins() {
    let mut feed = mk_shop();
    let custom = mk_label_map(
        "a-crd",
        vec![],
        vec![
            mk_map_item("tier", "role", &[("frontend", "web")], false),
            mk_map_item("team", "app", &[], false),
        ],
    );
    feed.observe(&custom);
    let pod = labeled(
        mk_pod("p-1", "shop", None),
        &[("tier", "frontend"), ("team", "shop")],
    );
    feed.observe(&pod);
    assert_eq!(feed.labels("p-1"), ["app=shop", "role=web"]);
    assert!(matches!(
        feed.source("p-1", "role"),
        LabelSource::LabelMap { origin: LabelMapOrigin::CustomResource, ref map, ref from_key }
            if map == "a-crd" && from_key == "tier"
    ));
    // an api map named before the custom resource still applies after it
    feed.config(&LabelingEvent::LabelMapPut {
        cluster_id: C1.into(),
        name: "0-api".into(),
        spec: LabelMapSpec {
            node_label_map: vec![],
            workload_label_map: vec![mk_map_item("tier", "role", &[("frontend", "db")], false)],
        },
    });
    assert_eq!(feed.labels("p-1"), ["app=shop", "role=db"]);
    assert!(matches!(
        feed.source("p-1", "role"),
        LabelSource::LabelMap {
            origin: LabelMapOrigin::Api,
            ..
        }
    ));
    feed.forget(&custom);
    assert_eq!(feed.labels("p-1"), ["role=db"]);
    let maps = &feed.index.clusters[C1].label_maps;
    assert_eq!(maps.len(), 1);
}

#[test]
fn allow_create_asks_for_labels_and_they_apply_once_created() {
    let mut feed = mk_shop();
    feed.config(&LabelingEvent::LabelMapPut {
        cluster_id: C1.into(),
        name: "teams".into(),
        spec: LabelMapSpec {
            node_label_map: vec![],
            workload_label_map: vec![
                mk_map_item("team", "app", &[], true),
                mk_map_item("stage", "env", &[], false),
            ],
        },
    });
    let pod = labeled(
        mk_pod("p-1", "shop", None),
        &[("team", "payments"), ("stage", "qa")],
    );
    feed.observe(&pod);
    // a value only the case of an existing label's: not created, so values stay unique
    feed.observe(&labeled(mk_pod("p-2", "shop", None), &[("team", "Shop")]));
    assert!(feed.labels("p-1").is_empty());
    assert_eq!(
        feed.index.labels_to_create(10),
        [("app".to_owned(), "payments".to_owned())],
        "env=qa is missing too, but its rule may not create it"
    );
    for event in plan_created_labels(&feed.index, 10) {
        feed.config(&event);
    }
    assert_eq!(feed.labels("p-1"), ["app=payments"]);
    assert!(feed.index.labels_to_create(10).is_empty());
    assert_eq!(
        feed.index
            .catalog
            .label(feed.id("app", "payments"))
            .unwrap()
            .created_by,
        bulkhead_schema::messages::labeling::LabelCreator::LabelMap
    );
    // an administrator creates env=qa: the pod that looked for it gets it
    feed.create_label("env", "qa");
    assert_eq!(feed.labels("p-1"), ["app=payments", "env=qa"]);
}

// --- incremental recomputation --------------------------------------------------------------------

#[test]
fn a_profile_edit_recomputes_its_namespace_only_and_writes_only_changes() {
    let mut feed = mk_shop();
    let loc1 = feed.id("loc", "loc1");
    feed.observe(&mk_namespace("other"));
    feed.update_profile("other", managed(&[]));
    for (pod, namespace) in [("s-1", "shop"), ("s-2", "shop"), ("o-1", "other")] {
        feed.observe(&mk_pod(pod, namespace, None));
    }
    feed.observe(&mk_service("s-svc", "shop"));
    feed.written();

    feed.update_profile("shop", managed(&[("loc", LabelRule::Assignment(loc1))]));
    assert_eq!(
        feed.written_names(),
        ["Pod/s-1", "Pod/s-2", "Service/s-svc"]
    );

    // the same settings again, a pod re-observed unchanged: nothing to write
    feed.update_profile("shop", managed(&[("loc", LabelRule::Assignment(loc1))]));
    let mut pod = mk_pod("s-1", "shop", None);
    pod.resource_version = "2".into();
    feed.observe(&pod);
    assert!(feed.written().is_empty());
}

#[test]
fn renames_reach_users_and_new_labels_reach_those_that_looked_for_them() {
    let mut feed = mk_shop();
    feed.observe(&annotated(
        mk_pod("p-1", "shop", None),
        &[("bulkhead.io/app", "shop")],
    ));
    feed.observe(&annotated(
        mk_pod("p-2", "shop", None),
        &[("bulkhead.io/app", "store")],
    ));
    feed.observe(&mk_pod("p-3", "shop", None));
    assert!(
        feed.labels("p-2").is_empty(),
        "annotations never create labels"
    );
    feed.written();

    let shop = feed.id("app", "shop");
    feed.command(LabelingCommand::RenameLabel {
        label_id: shop,
        value: "store".into(),
    })
    .unwrap();
    // p-1 names "shop", which is no label any more; p-2 names "store", which is one now
    assert!(feed.labels("p-1").is_empty());
    assert_eq!(feed.labels("p-2"), ["app=store"]);
    assert_eq!(feed.written_names(), ["Pod/p-1", "Pod/p-2"]);

    feed.create_label("app", "shop");
    assert_eq!(feed.labels("p-1"), ["app=shop"]);
    assert_eq!(feed.written_names(), ["Pod/p-1"]);
}

#[test]
fn a_renamed_label_is_written_again_where_it_stays() {
    let mut feed = mk_shop();
    let loc1 = feed.id("loc", "loc1");
    feed.update_profile("shop", managed(&[("loc", LabelRule::Assignment(loc1))]));
    feed.observe(&mk_pod("p-1", "shop", None));
    feed.observe(&mk_service("svc", "shop"));
    feed.written();
    feed.command(LabelingCommand::RenameLabel {
        label_id: loc1,
        value: "zurich".into(),
    })
    .unwrap();
    let written = feed.written();
    let shown: Vec<String> = written
        .iter()
        .map(|e| format!("{}: {}", e.entity.name, e.labels["loc"].value))
        .collect();
    assert_eq!(shown, ["p-1: zurich", "svc: zurich"], "same id, new value");
}

#[test]
fn a_deleted_label_leaves_its_users() {
    let mut feed = mk_shop();
    feed.observe(&annotated(
        mk_pod("p-1", "shop", None),
        &[("bulkhead.io/role", "web")],
    ));
    feed.written();
    let web = feed.id("role", "web");
    // the planner refuses this while p-1 carries it; the log is input all the same
    feed.config(&LabelingEvent::LabelDeleted { label_id: web });
    assert!(feed.labels("p-1").is_empty());
    assert!(!feed.index.used_by.contains_key(&web));
    assert_eq!(feed.written_names(), ["Pod/p-1"]);
}

#[test]
fn group_changes_reach_the_members_of_profiles_restricted_by_them() {
    let mut feed = mk_shop();
    let (env1, env2) = (feed.id("env", "env1"), feed.id("env", "env2"));
    feed.config(&LabelingEvent::LabelGroupCreated {
        group_id: 1,
        key: "env".into(),
        name: "lower".into(),
        labels: vec![env1],
        sub_groups: vec![],
    });
    feed.update_profile(
        "shop",
        managed(&[(
            "env",
            LabelRule::Restriction(vec![RestrictionMember::LabelGroup(1)]),
        )]),
    );
    feed.observe(&annotated(
        mk_pod("p-1", "shop", None),
        &[("bulkhead.io/env", "env2")],
    ));
    assert!(feed.labels("p-1").is_empty());
    feed.written();
    feed.config(&LabelingEvent::LabelGroupUpdated {
        group_id: 1,
        name: "lower".into(),
        labels: vec![env1, env2],
        sub_groups: vec![],
    });
    assert_eq!(feed.labels("p-1"), ["env=env2"]);
    assert_eq!(feed.written_names(), ["Pod/p-1"]);
}

// --- pairing ----------------------------------------------------------------------------------

fn pre_create(feed: &mut Feed, key: &str) -> String {
    let loc1 = feed.id("loc", "loc1");
    let plan = feed
        .command_with_key(
            LabelingCommand::CreateProfile {
                cluster_id: C1.into(),
                name: "payments".into(),
                settings: ProfileSettings {
                    managed: true,
                    enforcement_mode: EnforcementMode::Test,
                    labels: vec![ProfileLabel {
                        key: "loc".into(),
                        assignment: Some(Href::label(loc1)),
                        restriction: None,
                    }],
                },
            },
            key,
        )
        .unwrap();
    match plan.events.as_slice() {
        [LabelingEvent::ProfileCreated { profile_id, .. }] => profile_id.clone(),
        other => panic!("{other:?}"),
    }
}

fn written_rejections(feed: &mut Feed) -> Vec<String> {
    feed.written_with(OutputLimits::default())
        .into_iter()
        .filter_map(|e| match e {
            LabelingEvent::PairingKeyRejected {
                namespace, reason, ..
            } => Some(format!("{namespace}: {reason}")),
            _ => None,
        })
        .collect()
}

#[test]
fn a_pre_created_profile_waits_for_its_pairing_key_then_links() {
    let mut feed = mk_shop();
    let profile_id = pre_create(&mut feed, "k-payments");
    assert_eq!(
        feed.index.clusters[C1].profiles[profile_id.as_str()].namespace,
        None
    );

    // a namespace without the key gets its own profile; adding the key later links it
    feed.observe(&mk_namespace("payments"));
    feed.observe(&mk_pod("pay-1", "payments", None));
    assert_eq!(feed.profile_of("payments"), Some(uid("payments")));
    assert!(feed.labels("pay-1").is_empty());
    feed.observe(&annotated(
        mk_namespace("payments"),
        &[("com.illumio.pairing_key", "k-payments")],
    ));
    assert_eq!(feed.profile_of("payments"), Some(profile_id.clone()));
    assert!(
        !feed.index.clusters[C1]
            .profiles
            .contains_key(uid("payments").as_str()),
        "the namespace's own profile went"
    );
    assert_eq!(feed.labels("pay-1"), ["loc=loc1"]);
    assert!(written_rejections(&mut feed).is_empty());

    // deleted: pending again; re-created from the same manifest: linked again
    feed.forget(&mk_namespace("payments"));
    assert_eq!(
        feed.index.clusters[C1].profiles[profile_id.as_str()].namespace,
        None
    );
    let mut again = annotated(
        mk_namespace("payments"),
        &[("bulkhead.io/pairing-key", "k-payments")],
    );
    again.uid = "payments-uid-2".into();
    feed.observe(&again);
    assert_eq!(feed.profile_of("payments"), Some(profile_id.clone()));

    // its profile deleted: the namespace falls back to one of its own
    feed.command(LabelingCommand::DeleteProfile {
        cluster_id: C1.into(),
        profile_id,
    })
    .unwrap();
    assert_eq!(feed.profile_of("payments"), Some("payments-uid-2".into()));
    assert!(feed.labels("pay-1").is_empty());
}

#[test]
fn a_wrong_or_used_pairing_key_links_nothing_and_is_reported() {
    let mut feed = mk_shop();
    let profile_id = pre_create(&mut feed, "k-right");
    let before = metrics::PAIRING_REJECTIONS
        .with_label_values(&["unknown_key"])
        .get();
    feed.observe(&annotated(
        mk_namespace("intruder"),
        &[("bulkhead.io/pairing-key", "k-wrong")],
    ));
    assert_eq!(feed.profile_of("intruder"), Some(uid("intruder")));
    assert_eq!(
        feed.index.clusters[C1].profiles[profile_id.as_str()].namespace,
        None
    );
    assert_eq!(
        written_rejections(&mut feed),
        ["intruder: no profile of this cluster has this pairing key"]
    );
    assert!(
        metrics::PAIRING_REJECTIONS
            .with_label_values(&["unknown_key"])
            .get()
            > before
    );
    // re-observed with the same wrong key: reported once
    let mut same = annotated(
        mk_namespace("intruder"),
        &[("bulkhead.io/pairing-key", "k-wrong")],
    );
    same.resource_version = "9".into();
    feed.observe(&same);
    assert!(written_rejections(&mut feed).is_empty());

    feed.observe(&annotated(
        mk_namespace("payments"),
        &[("bulkhead.io/pairing-key", "k-right")],
    ));
    feed.observe(&annotated(
        mk_namespace("copycat"),
        &[("bulkhead.io/pairing-key", "k-right")],
    ));
    assert_eq!(feed.profile_of("payments"), Some(profile_id));
    assert_eq!(feed.profile_of("copycat"), Some(uid("copycat")));
    assert_eq!(
        written_rejections(&mut feed),
        ["copycat: the pairing key's profile is linked to another namespace already"]
    );
}

// --- output ---------------------------------------------------------------------------------------

#[test]
fn output_is_cut_within_limits_and_each_entity_is_written_once_per_change() {
    let mut feed = mk_shop();
    let loc1 = feed.id("loc", "loc1");
    for i in 0..50 {
        feed.observe(&mk_pod(&format!("p-{i:02}"), "shop", None));
    }
    assert_eq!(feed.index.clusters[C1].output.len(), 50);
    // changed twice before being written: queued once, with the later labels
    feed.update_profile("shop", managed(&[("loc", LabelRule::Assignment(loc1))]));
    assert_eq!(feed.index.clusters[C1].output.len(), 50);

    let limits = OutputLimits {
        event_bytes: 1024,
        append_bytes: 4 * 1024,
        append_events: 1_000,
    };
    let appends_before = feed.recorder.version("effective/c1");
    let events = feed.written_with(limits);
    let entities: Vec<&EntityLabels> = events
        .iter()
        .flat_map(|e| match e {
            LabelingEvent::EffectiveLabels { entities, .. } => entities.iter(),
            _ => [].iter(),
        })
        .collect();
    assert_eq!(entities.len(), 50);
    assert!(
        entities
            .iter()
            .all(|e| e.labels.keys().collect::<Vec<_>>() == ["loc"])
    );
    assert!(events.len() > 4, "several events");
    for event in &events {
        assert!(rmp_serde::to_vec_named(event).unwrap().len() <= 1024);
    }
    let through: Vec<_> = events
        .iter()
        .map(|e| match e {
            LabelingEvent::EffectiveLabels { through, .. } => *through,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(through.windows(2).all(|w| w[0] < w[1]), "in queue order");
    assert_eq!(feed.index.clusters[C1].output.len(), 0);
    assert_eq!(
        feed.index.clusters[C1].output.version,
        appends_before + events.len() as u64
    );
}

#[test]
fn a_queue_entry_with_nothing_to_say_still_leaves_the_queue() {
    let mut feed = mk_shop();
    let ghost = Item::Labels {
        kind: EntityKind::Pod,
        uid: "ghost".into(),
    };
    feed.index
        .clusters
        .get_mut(C1)
        .unwrap()
        .output
        .enqueue(999, vec![ghost]);
    let events = feed.written_with(OutputLimits::default());
    assert!(
        matches!(events.as_slice(), [LabelingEvent::EffectiveLabels { entities, .. }] if entities.is_empty()),
        "{events:?}"
    );
    assert_eq!(feed.index.clusters[C1].output.len(), 0);
}

#[test]
fn replicas_fed_the_same_log_write_the_same_appends() {
    let build = || {
        let mut feed = mk_shop();
        for i in 0..10 {
            let pod = mk_pod(&format!("p-{i}"), "shop", None);
            feed.observe(&annotated(pod, &[("bulkhead.io/app", "shop")]));
        }
        feed.observe(&mk_service("svc", "shop"));
        feed.observe(&annotated(
            mk_namespace("x"),
            &[("bulkhead.io/pairing-key", "nope")],
        ));
        feed
    };
    let (a, b) = (build(), build());
    let small = OutputLimits {
        event_bytes: 512,
        append_bytes: 1024,
        append_events: 1_000,
    };
    let appends = a.index.next_outputs(C1, small, 8);
    assert_eq!(appends, b.index.next_outputs(C1, small, 8));
    assert!(appends.len() > 1, "chained");
}

#[test]
fn a_checkpoint_restores_the_same_state() {
    let mut feed = mk_shop();
    pre_create(&mut feed, "k1");
    feed.observe(&annotated(
        mk_namespace("payments"),
        &[("com.illumio.pairing_key", "k1")],
    ));
    feed.observe(&mk_label_map(
        "zones",
        vec![mk_map_item("zone", "loc", &[], false)],
        vec![mk_map_item("team", "app", &[], true)],
    ));
    let deployment = template_annotated(
        mk_workload(ResourceKind::Deployment, "front", "shop", None),
        &[("bulkhead.io/role", "web")],
    );
    let replica_set = mk_workload(
        ResourceKind::ReplicaSet,
        "front-1",
        "shop",
        Some(&deployment),
    );
    feed.observe(&deployment);
    feed.observe(&replica_set);
    feed.observe(&labeled(
        mk_pod("front-1-a", "shop", Some(&replica_set)),
        &[("team", "blue")],
    ));
    feed.observe(&labeled(mk_node("node-1", "m1"), &[("zone", "loc3")]));
    feed.observe(&placed(
        mk_pod("proxy", "payments", None),
        "node-1",
        "192.168.0.6",
        true,
    ));

    let bytes = rmp_serde::to_vec_named(&feed.index).unwrap();
    let restored: Index = rmp_serde::from_slice(&bytes).unwrap();
    for name in ["front-1-a", "front", "node-1", "proxy"] {
        let original = &feed.index.clusters[C1];
        let again = &restored.clusters[C1];
        let (_, a) = feed.index.entity(original, &uid(name)).unwrap();
        let (_, b) = restored.entity(again, &uid(name)).unwrap();
        assert_eq!(
            feed.index.materialize(original, a),
            restored.materialize(again, b),
            "{name}"
        );
        assert_eq!(a.entity, b.entity, "{name}: misses too");
    }
    assert_eq!(
        feed.index.next_outputs(C1, OutputLimits::default(), 8),
        restored.next_outputs(C1, OutputLimits::default(), 8),
        "the same queue"
    );
    assert_eq!(
        restored.labels_to_create(10),
        feed.index.labels_to_create(10)
    );
    assert_eq!(restored.config_version, feed.index.config_version);
    assert_eq!(
        restored.clusters[C1]
            .profile_of("payments")
            .map(|(id, _)| id.to_string()),
        feed.profile_of("payments")
    );
    assert_eq!(
        restored
            .used_by
            .get(&feed.id("role", "web"))
            .map(|u| u.len()),
        Some(2),
        "the pod and its kube workload"
    );
}

#[test]
fn events_of_other_streams_and_unknown_clusters_change_nothing() {
    let mut feed = mk_shop();
    let stray = InventoryEvent::ObjectApplied {
        cluster_id: "c2".into(),
        object: mk_pod("stray", "shop", None),
    };
    feed.inventory("c2", stray.clone());
    let data = rmp_serde::to_vec_named(&stray).unwrap();
    feed.record("cluster/c1", InventoryEvent::EVENT_TYPE, data);
    assert!(feed.index.objects.iter().next().is_none());
    feed.record(
        LabelingEvent::CONFIG_STREAM,
        LabelingEvent::EVENT_TYPE,
        vec![0xc1],
    );
    assert!(feed.written().is_empty());
}
