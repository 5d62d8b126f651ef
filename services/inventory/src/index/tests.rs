//! The index and its views, with plain `#[test]`s over fixture builders (`mk_*`), in the manner
//! of linkerd2's policy-controller index tests.

use bulkhead_runtime::projection::Projection;
use bulkhead_schema::WireMessage;
use bulkhead_schema::messages::eventlog::RecordedEvent;
use bulkhead_schema::messages::inventory::{
    AssignedLabel, BackendView, ClusterCredentials, ClusterError, EffectiveLabeling,
    InventoryEvent, InventoryFilter, InventoryItems, InventoryPage, InventoryQuery,
    InventoryQueryKind, InventoryRejection, KubeWorkloadView, LabelSelector, ObjectDetails,
    ObservedObject, OwnerRef, PodRef, ResourceKind, SliceEndpoint, SlicePort, SyncState,
    WorkloadRef,
};
use bulkhead_schema::messages::labeling::{
    EnforcementMode, EntityKind, EntityLabels, LabelId, LabelMapOrigin, LabelSource, LabelingEvent,
    OutputPosition, label_group_href, label_href,
};

use bulkhead_schema::testing::{
    self, Recorder, mk_deployment, mk_entity_labels, mk_label_map, mk_map_item, mk_namespace,
    mk_node, mk_pod, mk_replica_set, mk_service, mk_slice, mk_workload, placed, uid,
};

use super::*;
use crate::views::{Presence, Refusal};

// --- fixtures -------------------------------------------------------------------------------

pub(crate) fn mk_cluster_created(cluster_id: &str, name: &str) -> InventoryEvent {
    InventoryEvent::ClusterCreated {
        cluster_id: cluster_id.into(),
        name: name.into(),
        description: format!("{name} cluster"),
        token_sha256: token_sha256(&format!("token-{cluster_id}")),
        created_at_ms: 1_700_000_000_000,
    }
}

/// The event as the log would record it on the cluster's stream.
pub(crate) fn recorded(
    cluster_id: &str,
    stream_version: u64,
    event: &InventoryEvent,
) -> RecordedEvent {
    testing::recorded(&InventoryEvent::stream(cluster_id), stream_version, event)
}

/// A LabelMap mapping `app.kubernetes.io/name` to `app` and node zones to `loc`.
fn mk_zone_and_app_map(name: &str) -> ObservedObject {
    let zone = mk_map_item(
        "topology.kubernetes.io/zone",
        "loc",
        &[("us-east-1a", "east")],
        true,
    );
    let app = mk_map_item("app.kubernetes.io/name", "app", &[], false);
    mk_label_map(name, vec![zone], vec![app])
}

/// What labeling writes of a pod of the front: `role=front` (id 1), `env=prod` (id 3).
fn front_labels(pod: &ObservedObject) -> EntityLabels {
    mk_entity_labels(
        EntityKind::Pod,
        pod,
        &[("role", 1, "front"), ("env", 3, "prod")],
    )
}

/// What labeling writes of an entity that went.
pub(crate) fn mk_removed(kind: EntityKind, object: &ObservedObject) -> EntityLabels {
    EntityLabels {
        managed: false,
        enforcement_mode: None,
        removed: true,
        ..mk_entity_labels(kind, object, &[])
    }
}

/// The same, with the label of `key` from `source`.
fn sourced(mut entity: EntityLabels, key: &str, source: LabelSource) -> EntityLabels {
    entity.labels.get_mut(key).unwrap().source = source;
    entity
}

/// An index fed as the log would feed it: one stream per cluster and one of labeling's per
/// cluster, versions counted.
#[derive(Default)]
struct Log {
    index: Index,
    recorder: Recorder,
}

const C1: &str = "c1";
const C2: &str = "c2";

impl Log {
    fn with_clusters(ids: &[&str]) -> Self {
        let mut log = Log::default();
        for id in ids {
            log.event(id, &mk_cluster_created(id, &format!("cluster-{id}")));
        }
        log
    }

    fn event(&mut self, cluster_id: &str, event: &InventoryEvent) {
        self.record(&InventoryEvent::stream(cluster_id), event);
    }

    fn record<E: WireMessage>(&mut self, stream: &str, event: &E) {
        self.index.apply(&self.recorder.record(stream, event));
    }

    /// Labeling's output for `cluster_id`.
    fn labeling(&mut self, cluster_id: &str, entities: &[EntityLabels]) {
        let event = LabelingEvent::EffectiveLabels {
            cluster_id: cluster_id.into(),
            through: OutputPosition::default(),
            entities: entities.to_vec(),
        };
        self.record(&LabelingEvent::effective_stream(cluster_id), &event);
    }

    /// Labeling's output of one entity of `C1`, with these labels (key, id, value).
    fn label(
        &mut self,
        kind: EntityKind,
        object: &ObservedObject,
        labels: &[(&str, LabelId, &str)],
    ) {
        self.labeling(C1, &[mk_entity_labels(kind, object, labels)]);
    }

    fn apply(&mut self, cluster_id: &str, objects: &[&ObservedObject]) {
        for object in objects {
            self.event(
                cluster_id,
                &InventoryEvent::ObjectApplied {
                    cluster_id: cluster_id.into(),
                    object: (*object).clone(),
                },
            );
        }
    }

    fn delete(&mut self, cluster_id: &str, kind: ResourceKind, name: &str) {
        self.event(
            cluster_id,
            &InventoryEvent::ObjectDeleted {
                cluster_id: cluster_id.into(),
                kind,
                uid: uid(name),
            },
        );
    }
}

const OFFLINE: Presence = Presence {
    online: false,
    sync_state: SyncState::OutOfSync,
};

fn ask(
    index: &Index,
    what: InventoryQueryKind,
    filter: InventoryFilter,
) -> Result<InventoryPage, Refusal> {
    index.query(
        &InventoryQuery {
            what,
            filter,
            offset: 0,
            limit: InventoryQuery::MAX_LIMIT,
        },
        &|_| OFFLINE,
    )
}

fn in_cluster(cluster_id: &str) -> InventoryFilter {
    InventoryFilter {
        cluster_id: Some(cluster_id.into()),
        ..Default::default()
    }
}

macro_rules! list {
    ($index:expr, $variant:ident, $filter:expr) => {
        match ask($index, InventoryQueryKind::$variant, $filter)
            .unwrap()
            .items
        {
            InventoryItems::$variant(items) => items,
            other => panic!("expected {}, got {other:?}", stringify!($variant)),
        }
    };
}

fn names<T>(items: &[T], name: impl Fn(&T) -> &str) -> Vec<String> {
    items.iter().map(|i| name(i).to_owned()).collect()
}

fn workload(kind: &str, name: &str) -> WorkloadRef {
    WorkloadRef {
        kind: kind.into(),
        name: name.into(),
        uid: uid(name),
    }
}

fn kube_workload<'a>(views: &'a [KubeWorkloadView], name: &str) -> &'a KubeWorkloadView {
    views
        .iter()
        .find(|w| w.workload.name == name)
        .unwrap_or_else(|| panic!("{name} in {views:#?}"))
}

// --- clusters ---------------------------------------------------------------------------------

#[test]
fn clusters_are_created_updated_and_deleted_with_their_objects() {
    let mut log = Log::with_clusters(&[C1, C2]);
    log.apply(C1, &[&mk_node("n1", "m1")]);
    assert_eq!(log.index.stream_version(C1), 2);
    assert_eq!(
        log.index.cluster_names(C1),
        Some(("cluster-c1", "cluster-c1 cluster"))
    );

    log.event(
        C1,
        &InventoryEvent::ClusterUpdated {
            cluster_id: C1.into(),
            name: "prod".into(),
            description: "the real one".into(),
        },
    );
    assert_eq!(log.index.cluster_names(C1), Some(("prod", "the real one")));
    assert!(
        log.index.name_taken("PROD", None),
        "names compare case-insensitively"
    );
    assert!(
        !log.index.name_taken("prod", Some(C1)),
        "a cluster may keep its own name"
    );

    log.event(
        C1,
        &InventoryEvent::ClusterDeleted {
            cluster_id: C1.into(),
        },
    );
    assert_eq!(log.index.cluster_names(C1), None);
    assert_eq!(log.index.stream_version(C1), 0);
    assert_eq!(
        log.index
            .resource_version(C1, ResourceKind::Node, &uid("n1")),
        None
    );
    assert!(log.index.cluster_names(C2).is_some());
}

#[test]
fn credentials_are_checked_against_the_token_hash() {
    let log = Log::with_clusters(&[C1, C2]);
    let creds = |cluster: &str, token: &str| ClusterCredentials {
        cluster_id: cluster.into(),
        token: token.into(),
    };
    assert_eq!(log.index.verify(&creds(C1, "token-c1")), Ok(()));
    let wrong = log.index.verify(&creds(C1, "token-c2")).unwrap_err();
    assert_eq!(wrong.kind(), "wrong_token");
    assert_eq!(wrong, AuthError::WrongToken(C1.into()));
    let unknown = log.index.verify(&creds("c9", "token-c9")).unwrap_err();
    assert_eq!(unknown.kind(), "unknown_cluster");
    assert_eq!(
        log.index.verify(&creds(C1, "")).unwrap_err().kind(),
        "wrong_token"
    );
}

#[test]
fn a_cluster_view_shows_connection_presence_counts_and_errors() {
    let mut log = Log::with_clusters(&[C1]);
    let view = log.index.cluster_view(C1, OFFLINE).unwrap();
    assert_eq!(
        (view.online, view.sync_state, view.last_connected_ms),
        (false, SyncState::OutOfSync, None)
    );
    assert_eq!(view.clusterlink_version, "");

    log.event(
        C1,
        &InventoryEvent::ClusterConnected {
            cluster_id: C1.into(),
            clusterlink_version: "0.1.0".into(),
            kubernetes_version: "v1.33.1".into(),
            cluster_mode: "clas".into(),
            network_type: "flat".into(),
            at_ms: 42,
        },
    );
    log.apply(
        C1,
        &[
            &mk_node("n1", "m1"),
            &mk_node("n2", "m1"),
            &mk_node("n3", "m3"),
            &mk_pod("p", "ns", None),
        ],
    );
    let online = Presence {
        online: true,
        sync_state: SyncState::InSync,
    };
    let view = log.index.cluster_view(C1, online).unwrap();
    assert_eq!((view.online, view.sync_state), (true, SyncState::InSync));
    assert_eq!(view.last_connected_ms, Some(42));
    assert_eq!(
        [
            view.clusterlink_version.as_str(),
            &view.kubernetes_version,
            &view.cluster_mode,
            &view.network_type
        ],
        ["0.1.0", "v1.33.1", "clas", "flat"]
    );
    assert_eq!(
        log.index.connection(C1),
        Some(["0.1.0", "v1.33.1", "clas", "flat"])
    );
    assert_eq!((view.nodes, view.pods), (3, 1));
    assert_eq!(
        view.errors,
        vec![ClusterError::DuplicateMachineId {
            machine_id: "m1".into(),
            nodes: vec!["n1".into(), "n2".into()]
        }]
    );
}

#[test]
fn the_clusters_listing_is_sorted_filtered_and_paged() {
    let log = Log::with_clusters(&["c3", C1, C2]);
    let all = list!(&log.index, Clusters, InventoryFilter::default());
    assert_eq!(
        names(&all, |c| &c.name),
        ["cluster-c1", "cluster-c2", "cluster-c3"]
    );
    let named = list!(
        &log.index,
        Clusters,
        InventoryFilter {
            name: Some("C2".into()),
            ..Default::default()
        }
    );
    assert_eq!(names(&named, |c| &c.cluster_id), [C2]);
    let page = log
        .index
        .query(
            &InventoryQuery {
                what: InventoryQueryKind::Clusters,
                filter: Default::default(),
                offset: 1,
                limit: 1,
            },
            &|_| OFFLINE,
        )
        .unwrap();
    assert_eq!((page.total, page.offset), (3, 1));
    assert!(
        matches!(&page.items, InventoryItems::Clusters(c) if c.len() == 1 && c[0].name == "cluster-c2")
    );

    let one = ask(
        &log.index,
        InventoryQueryKind::Cluster {
            cluster_id: C2.into(),
        },
        Default::default(),
    )
    .unwrap();
    assert!(matches!(&one.items, InventoryItems::Clusters(c) if c[0].cluster_id == C2));
    let missing = ask(
        &log.index,
        InventoryQueryKind::Cluster {
            cluster_id: "nope".into(),
        },
        Default::default(),
    )
    .unwrap_err();
    assert_eq!(missing.rejection, InventoryRejection::NotFound);
}

// --- applying events ----------------------------------------------------------------------------

#[test]
fn applying_is_idempotent() {
    let mut log = Log::with_clusters(&[C1]);
    let pod = mk_pod("p1", "shop", None);
    log.apply(C1, &[&pod]);
    let once = log.index.cluster(C1).unwrap().objects.clone();
    log.apply(C1, &[&pod]);
    log.delete(C1, ResourceKind::Pod, "never-seen");
    log.event(C1, &mk_cluster_created(C1, "renamed by a replayed create"));
    let cluster = log.index.cluster(C1).unwrap();
    assert_eq!(
        cluster.objects, once,
        "the same object twice, or an unknown deletion, change nothing"
    );
    assert_eq!(
        cluster.meta.name, "cluster-c1",
        "a repeated creation does not reset the cluster"
    );

    log.delete(C1, ResourceKind::Pod, "p1");
    log.delete(C1, ResourceKind::Pod, "p1");
    assert_eq!(log.index.cluster(C1).unwrap().count(ResourceKind::Pod), 0);
}

#[test]
fn events_apply_to_their_streams_cluster_only() {
    let mut log = Log::with_clusters(&[C1, C2]);
    // C2's stream carrying an event that names C1: ignored
    let sneaky = InventoryEvent::ObjectApplied {
        cluster_id: C1.into(),
        object: mk_pod("p", "ns", None),
    };
    log.index.apply(&recorded(C2, 2, &sneaky));
    let mut wrong_stream = recorded(C1, 2, &sneaky);
    wrong_stream.stream = "somewhere/else".into();
    log.index.apply(&wrong_stream);
    assert_eq!(log.index.cluster(C1).unwrap().count(ResourceKind::Pod), 0);
    assert_eq!(log.index.cluster(C2).unwrap().count(ResourceKind::Pod), 0);

    // the same uid in two clusters: two objects
    log.apply(C1, &[&mk_pod("p", "ns", None)]);
    log.apply(C2, &[&mk_pod("p", "ns", None)]);
    log.delete(C1, ResourceKind::Pod, "p");
    assert_eq!(log.index.cluster(C1).unwrap().count(ResourceKind::Pod), 0);
    assert_eq!(log.index.cluster(C2).unwrap().count(ResourceKind::Pod), 1);
}

#[test]
fn foreign_undecodable_and_audit_events_are_skipped() {
    let mut log = Log::with_clusters(&[C1]);
    let before = log.index.cluster(C1).unwrap().clone();
    let mut foreign = recorded(C1, 2, &mk_cluster_created(C1, "x"));
    foreign.event_type = "labeling.Event".into();
    foreign.data = vec![1, 2, 3];
    log.index.apply(&foreign);
    let mut garbage = recorded(C1, 2, &mk_cluster_created(C1, "x"));
    garbage.data = vec![0xc1];
    log.index.apply(&garbage);
    let mut audit = recorded(
        C1,
        1,
        &InventoryEvent::ClusterAuthFailed {
            cluster_id: C1.into(),
            reason: "wrong_token".into(),
            at_ms: 1,
        },
    );
    audit.stream = InventoryEvent::AUDIT_STREAM.into();
    log.index.apply(&audit);
    assert_eq!(log.index.cluster(C1).unwrap(), &before);
}

#[test]
fn objects_of_a_kind_with_mismatched_details_are_not_taken() {
    let mut pod = mk_pod("p", "ns", None);
    pod.kind = ResourceKind::Service;
    assert!(validate_observation(&pod).is_err());
    let mut log = Log::with_clusters(&[C1]);
    log.apply(C1, &[&pod]);
    assert_eq!(
        log.index.cluster(C1).unwrap().count(ResourceKind::Service),
        0
    );
    assert!(validate_observation(&mk_pod("p", "ns", None)).is_ok());
    let mut no_uid = mk_node("n", "m");
    no_uid.uid.clear();
    assert!(validate_observation(&no_uid).is_err());
    let mut label_map_as_namespace = mk_zone_and_app_map("default");
    label_map_as_namespace.kind = ResourceKind::Namespace;
    assert!(validate_observation(&label_map_as_namespace).is_err());
}

#[test]
fn label_maps_are_held_as_observed_and_appear_in_no_view() {
    let mut log = Log::with_clusters(&[C1]);
    let map = mk_zone_and_app_map("default");
    log.apply(C1, &[&map, &mk_node("n1", "m1")]);
    let cluster = log.index.cluster(C1).unwrap();
    let held = cluster.object(ResourceKind::LabelMap, &map.uid).unwrap();
    assert_eq!(held.to_observed(ResourceKind::LabelMap, &map.uid), map);
    assert_eq!(
        log.index.digest(C1, ResourceKind::LabelMap, None, 10).len(),
        1,
        "resyncs compare them like any kind"
    );
    let hosts = ask(
        &log.index,
        InventoryQueryKind::HostWorkloads,
        Default::default(),
    );
    assert_eq!(hosts.unwrap().total, 1, "only the node");

    log.delete(C1, ResourceKind::LabelMap, "default");
    assert_eq!(
        log.index
            .resource_version(C1, ResourceKind::LabelMap, &map.uid),
        None
    );
}

// --- host workloads -------------------------------------------------------------------------------

#[test]
fn nodes_are_host_workloads_with_duplicate_machine_ids_flagged() {
    let mut log = Log::with_clusters(&[C1, C2]);
    log.apply(
        C1,
        &[
            &mk_node("n1", "m1"),
            &mk_node("n2", "m2"),
            &mk_node("n3", "m1"),
            &mk_node("n4", ""),
        ],
    );
    log.apply(C2, &[&mk_node("other", "m1")]);
    let hosts = list!(&log.index, HostWorkloads, in_cluster(C1));
    assert_eq!(names(&hosts, |h| &h.name), ["n1", "n2", "n3", "n4"]);
    let flagged: Vec<_> = hosts
        .iter()
        .filter(|h| h.duplicate_machine_id)
        .map(|h| h.name.as_str())
        .collect();
    assert_eq!(
        flagged,
        ["n1", "n3"],
        "machine ids are unique per cluster; empty ones are not compared"
    );
    let n1 = &hosts[0];
    assert_eq!(n1.machine_id, "m1");
    assert_eq!(n1.addresses, ["192.168.0.2"]);
    assert_eq!(n1.pod_cidrs, ["10.244.1.0/24"]);
    assert_eq!(n1.roles, ["worker"]);
    assert_eq!(n1.kubelet_version, "v1.33.1");
    assert_eq!(n1.cluster.name, "cluster-c1");
    assert!(
        list!(&log.index, HostWorkloads, in_cluster(C2))
            .iter()
            .all(|h| !h.duplicate_machine_id)
    );

    let by_node = list!(
        &log.index,
        HostWorkloads,
        InventoryFilter {
            node: Some("n2".into()),
            ..Default::default()
        }
    );
    assert_eq!(names(&by_node, |h| &h.name), ["n2"]);
    assert_eq!(
        list!(&log.index, HostWorkloads, InventoryFilter::default()).len(),
        5
    );
}

#[test]
fn host_network_pods_belong_to_their_node_not_to_pod_workloads() {
    let mut log = Log::with_clusters(&[C1]);
    let ds = mk_workload(ResourceKind::DaemonSet, "kube-proxy", "kube-system", None);
    let proxy = placed(
        mk_pod("kube-proxy-a", "kube-system", Some(&ds)),
        "n1",
        "192.168.0.2",
        true,
    );
    let app = placed(mk_pod("app", "shop", None), "n1", "10.244.1.9", false);
    log.apply(C1, &[&mk_node("n1", "m1"), &ds, &proxy, &app]);

    let hosts = list!(&log.index, HostWorkloads, in_cluster(C1));
    assert_eq!(
        hosts[0].host_network_pods,
        vec![PodRef {
            uid: uid("kube-proxy-a"),
            namespace: "kube-system".into(),
            name: "kube-proxy-a".into()
        }]
    );
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    assert_eq!(names(&pods, |p| &p.name), ["app"]);
    let workloads = list!(&log.index, KubeWorkloads, in_cluster(C1));
    let proxy_workload = kube_workload(&workloads, "kube-proxy");
    assert_eq!(
        (proxy_workload.pods, proxy_workload.ips.len()),
        (0, 0),
        "node addresses are not pod IPs"
    );
}

// --- pod workloads ---------------------------------------------------------------------------------

#[test]
fn pod_workloads_carry_ips_node_containers_and_their_owner_chain() {
    let mut log = Log::with_clusters(&[C1]);
    let deploy = mk_deployment("web", "shop");
    let rs = mk_replica_set("web-7c9f", "shop", Some(&deploy));
    let pod = placed(
        mk_pod("web-7c9f-a", "shop", Some(&rs)),
        "n2",
        "10.244.2.7",
        false,
    );
    log.apply(C1, &[&deploy, &rs, &pod]);
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    let view = &pods[0];
    assert_eq!(
        (
            view.uid.as_str(),
            view.namespace.as_str(),
            view.name.as_str()
        ),
        (uid("web-7c9f-a").as_str(), "shop", "web-7c9f-a")
    );
    assert_eq!(
        (
            view.node_name.as_str(),
            view.ips.clone(),
            view.phase.as_str()
        ),
        ("n2", vec!["10.244.2.7".to_owned()], "Running")
    );
    assert_eq!(view.containers, ["app"]);
    assert_eq!(view.labels["app"], "web");
    assert_eq!(
        view.owners,
        [
            workload("ReplicaSet", "web-7c9f"),
            workload("Deployment", "web")
        ]
    );

    // the ReplicaSet's owner not observed yet: the chain ends at the reference
    log.delete(C1, ResourceKind::Deployment, "web");
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    assert_eq!(
        pods[0].owners,
        [
            workload("ReplicaSet", "web-7c9f"),
            workload("Deployment", "web")
        ]
    );
    log.delete(C1, ResourceKind::ReplicaSet, "web-7c9f");
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    assert_eq!(pods[0].owners, [workload("ReplicaSet", "web-7c9f")]);
}

#[test]
fn pod_workloads_are_filtered_sorted_and_paged() {
    let mut log = Log::with_clusters(&[C1, C2]);
    log.apply(
        C1,
        &[
            &placed(mk_pod("web-b", "shop", None), "n1", "10.0.0.1", false),
            &placed(mk_pod("web-a", "shop", None), "n2", "10.0.0.2", false),
            &placed(mk_pod("db-a", "data", None), "n1", "10.0.0.3", false),
        ],
    );
    log.apply(C2, &[&mk_pod("web-a", "shop", None)]);

    let all = list!(&log.index, PodWorkloads, InventoryFilter::default());
    assert_eq!(
        all.iter()
            .map(|p| format!("{}/{}/{}", p.cluster.cluster_id, p.namespace, p.name))
            .collect::<Vec<_>>(),
        [
            "c1/data/db-a",
            "c1/shop/web-a",
            "c1/shop/web-b",
            "c2/shop/web-a"
        ],
        "by cluster name, namespace, name"
    );
    let filter =
        |namespace: Option<&str>, node: Option<&str>, name: Option<&str>| InventoryFilter {
            cluster_id: Some(C1.into()),
            namespace: namespace.map(Into::into),
            node: node.map(Into::into),
            name: name.map(Into::into),
            ..InventoryFilter::default()
        };
    assert_eq!(
        names(
            &list!(&log.index, PodWorkloads, filter(Some("shop"), None, None)),
            |p| &p.name
        ),
        ["web-a", "web-b"]
    );
    assert_eq!(
        names(
            &list!(&log.index, PodWorkloads, filter(None, Some("n1"), None)),
            |p| &p.name
        ),
        ["db-a", "web-b"]
    );
    assert_eq!(
        names(
            &list!(&log.index, PodWorkloads, filter(None, None, Some("WEB-"))),
            |p| &p.name
        ),
        ["web-a", "web-b"]
    );
    assert_eq!(
        names(
            &list!(
                &log.index,
                PodWorkloads,
                filter(Some("shop"), Some("n1"), Some("b"))
            ),
            |p| &p.name
        ),
        ["web-b"]
    );

    let page = |offset, limit| {
        log.index
            .query(
                &InventoryQuery {
                    what: InventoryQueryKind::PodWorkloads,
                    filter: Default::default(),
                    offset,
                    limit,
                },
                &|_| OFFLINE,
            )
            .unwrap()
    };
    let second = page(1, 2);
    assert_eq!(second.total, 4);
    assert!(
        matches!(&second.items, InventoryItems::PodWorkloads(p) if names(p, |p| &p.name) == ["web-a", "web-b"])
    );
    let beyond = page(10, 2);
    assert_eq!((beyond.total, beyond.items.len()), (4, 0));
}

#[test]
fn queries_refuse_filters_that_do_not_apply_and_bad_limits() {
    let log = Log::with_clusters(&[C1]);
    let invalid = |what: InventoryQueryKind, filter: InventoryFilter| {
        ask(&log.index, what, filter).unwrap_err().rejection
    };
    let namespace = InventoryFilter {
        namespace: Some("x".into()),
        ..Default::default()
    };
    let node = InventoryFilter {
        node: Some("x".into()),
        ..Default::default()
    };
    assert_eq!(
        invalid(InventoryQueryKind::HostWorkloads, namespace.clone()),
        InventoryRejection::Invalid
    );
    assert_eq!(
        invalid(InventoryQueryKind::VirtualServices, node.clone()),
        InventoryRejection::Invalid
    );
    assert_eq!(
        invalid(InventoryQueryKind::Clusters, node),
        InventoryRejection::Invalid
    );
    assert_eq!(
        invalid(InventoryQueryKind::Namespaces, Default::default()),
        InventoryRejection::Invalid
    );
    assert_eq!(
        invalid(
            InventoryQueryKind::Cluster {
                cluster_id: C1.into()
            },
            in_cluster(C1)
        ),
        InventoryRejection::Invalid
    );
    assert_eq!(
        invalid(InventoryQueryKind::PodWorkloads, in_cluster("c9")),
        InventoryRejection::NotFound
    );
    for limit in [0, InventoryQuery::MAX_LIMIT + 1] {
        let refused = log
            .index
            .query(
                &InventoryQuery {
                    what: InventoryQueryKind::Clusters,
                    filter: Default::default(),
                    offset: 0,
                    limit,
                },
                &|_| OFFLINE,
            )
            .unwrap_err();
        assert_eq!(
            (refused.rejection, refused.kind()),
            (InventoryRejection::Invalid, "invalid")
        );
    }
}

// --- kube workloads -------------------------------------------------------------------------------

#[test]
fn kube_workloads_are_the_tops_of_owner_chains_with_their_pods_ips() {
    use ResourceKind as K;
    let mut log = Log::with_clusters(&[C1]);
    let deploy = mk_deployment("web", "shop");
    let rs = mk_replica_set("web-7c9f", "shop", Some(&deploy));
    let old_rs = mk_replica_set("web-55aa", "shop", Some(&deploy));
    let web_a = placed(
        mk_pod("web-7c9f-a", "shop", Some(&rs)),
        "n1",
        "10.0.1.1",
        false,
    );
    let web_b = placed(
        mk_pod("web-7c9f-b", "shop", Some(&rs)),
        "n2",
        "10.0.2.1",
        false,
    );
    let sts = mk_workload(K::StatefulSet, "db", "shop", None);
    let db0 = placed(mk_pod("db-0", "shop", Some(&sts)), "n1", "10.0.1.2", false);
    let ds = mk_workload(K::DaemonSet, "agent", "ops", None);
    let agent = placed(mk_pod("agent-x", "ops", Some(&ds)), "n2", "10.0.2.2", false);
    let cron = mk_workload(K::CronJob, "backup", "ops", None);
    let job = mk_workload(K::Job, "backup-123", "ops", Some(&cron));
    let backup = placed(
        mk_pod("backup-123-q", "ops", Some(&job)),
        "n1",
        "10.0.1.3",
        false,
    );
    let lone_job = mk_workload(K::Job, "migrate", "ops", None);
    let rc = mk_workload(K::ReplicationController, "legacy", "old", None);
    let legacy = placed(
        mk_pod("legacy-z", "old", Some(&rc)),
        "n1",
        "10.0.1.4",
        false,
    );
    let bare = placed(mk_pod("debug", "shop", None), "n2", "10.0.2.3", false);
    let node = mk_node("n1", "m1");
    // static pods: their mirror pods are owned by their Node
    let static_pod = placed(
        mk_pod("etcd-n1", "kube-system", Some(&node)),
        "n1",
        "10.0.1.5",
        false,
    );
    let scaled_to_zero = mk_deployment("idle", "shop");
    log.apply(
        C1,
        &[
            &deploy,
            &rs,
            &old_rs,
            &web_a,
            &web_b,
            &sts,
            &db0,
            &ds,
            &agent,
            &cron,
            &job,
            &backup,
            &lone_job,
            &rc,
            &legacy,
            &bare,
            &node,
            &static_pod,
            &scaled_to_zero,
        ],
    );

    let views = list!(&log.index, KubeWorkloads, in_cluster(C1));
    let listed: Vec<(String, String)> = views
        .iter()
        .map(|w| (w.workload.kind.clone(), w.workload.name.clone()))
        .collect();
    let expected: Vec<(String, String)> = [
        ("Pod", "etcd-n1"),
        ("ReplicationController", "legacy"),
        ("DaemonSet", "agent"),
        ("CronJob", "backup"),
        ("Job", "migrate"),
        ("StatefulSet", "db"),
        ("Pod", "debug"),
        ("Deployment", "idle"),
        ("Deployment", "web"),
    ]
    .iter()
    .map(|(k, n)| (k.to_string(), n.to_string()))
    .collect();
    assert_eq!(
        listed, expected,
        "sorted by namespace then name; ReplicaSets and Jobs under their owners are not listed"
    );

    let web = kube_workload(&views, "web");
    assert_eq!(web.workload, workload("Deployment", "web"));
    assert_eq!((web.pods, web.replicas), (2, Some(2)));
    assert_eq!(web.ips, ["10.0.1.1", "10.0.2.1"]);
    assert_eq!(web.nodes, ["n1", "n2"]);
    assert_eq!(web.labels["app"], "web");
    assert_eq!(
        kube_workload(&views, "backup").ips,
        ["10.0.1.3"],
        "job pods count for the cron job"
    );
    assert_eq!(kube_workload(&views, "migrate").pods, 0);
    assert_eq!(
        kube_workload(&views, "idle").pods,
        0,
        "a deployment scaled to zero is still a workload"
    );
    let debug = kube_workload(&views, "debug");
    assert_eq!(
        (
            debug.workload.kind.as_str(),
            debug.workload.uid.clone(),
            debug.pods
        ),
        ("Pod", uid("debug"), 1)
    );
    assert_eq!(
        kube_workload(&views, "etcd-n1").workload.kind,
        "Pod",
        "static pods stand alone"
    );

    let on_n2 = list!(
        &log.index,
        KubeWorkloads,
        InventoryFilter {
            node: Some("n2".into()),
            ..in_cluster(C1)
        }
    );
    assert_eq!(
        names(&on_n2, |w| &w.workload.name),
        ["agent", "debug", "web"]
    );
    let in_ops = list!(
        &log.index,
        KubeWorkloads,
        InventoryFilter {
            namespace: Some("ops".into()),
            name: Some("a".into()),
            ..in_cluster(C1)
        }
    );
    assert_eq!(
        names(&in_ops, |w| &w.workload.name),
        ["agent", "backup", "migrate"]
    );
    let backup = list!(
        &log.index,
        KubeWorkloads,
        InventoryFilter {
            name: Some("ACK".into()),
            ..in_cluster(C1)
        }
    );
    assert_eq!(names(&backup, |w| &w.workload.name), ["backup"]);
}

#[test]
fn an_owner_not_observed_yet_is_the_workload_by_reference() {
    let mut log = Log::with_clusters(&[C1]);
    let deploy = mk_deployment("api", "shop");
    let rs = mk_replica_set("api-1", "shop", Some(&deploy));
    let pod = mk_pod("api-1-a", "shop", Some(&rs));
    log.apply(C1, &[&rs, &pod]);
    let views = list!(&log.index, KubeWorkloads, in_cluster(C1));
    assert_eq!(views.len(), 1);
    assert_eq!(views[0].workload, workload("Deployment", "api"));
    assert!(
        views[0].labels.is_empty(),
        "not observed: nothing known but its reference"
    );
    assert_eq!(views[0].pods, 1);

    // an owner of a kind Bulkhead does not watch (a custom controller) is a workload too
    let mut custom = mk_pod("rollout-x", "shop", None);
    custom.owner = Some(OwnerRef {
        kind: "Rollout".into(),
        name: "canary".into(),
        uid: "r-uid".into(),
    });
    log.apply(C1, &[&custom]);
    let views = list!(
        &log.index,
        KubeWorkloads,
        InventoryFilter {
            name: Some("canary".into()),
            ..in_cluster(C1)
        }
    );
    assert_eq!(
        views[0].workload,
        WorkloadRef {
            kind: "Rollout".into(),
            name: "canary".into(),
            uid: "r-uid".into()
        }
    );
}

#[test]
fn owner_cycles_end() {
    let mut log = Log::with_clusters(&[C1]);
    let mut a = mk_replica_set("a", "ns", None);
    let b = mk_replica_set("b", "ns", Some(&a));
    a.owner = Some(OwnerRef {
        kind: "ReplicaSet".into(),
        name: "b".into(),
        uid: uid("b"),
    });
    let pod = mk_pod("p", "ns", Some(&a));
    log.apply(C1, &[&a, &b, &pod]);
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    assert_eq!(pods[0].owners.len(), MAX_OWNER_DEPTH);
    assert!(!list!(&log.index, KubeWorkloads, in_cluster(C1)).is_empty());
}

// --- virtual services -------------------------------------------------------------------------------

#[test]
fn services_bind_to_backends_through_endpoint_slices_whatever_made_the_pods() {
    use ResourceKind as K;
    let mut log = Log::with_clusters(&[C1]);
    // DaemonSet pods, a ReplicaSet without a Deployment, and a static pod: selectors matching
    // `pod-template-hash` would miss all three
    let ds = mk_workload(K::DaemonSet, "agent", "ops", None);
    let agent = placed(mk_pod("agent-x", "ops", Some(&ds)), "n1", "10.0.1.1", false);
    let rs = mk_replica_set("cache-5d", "ops", None);
    let cache = placed(
        mk_pod("cache-5d-a", "ops", Some(&rs)),
        "n2",
        "10.0.2.1",
        false,
    );
    let node = mk_node("n1", "m1");
    let etcd = placed(
        mk_pod("etcd-n1", "ops", Some(&node)),
        "n1",
        "10.0.1.2",
        false,
    );
    let service = mk_service("mixed", "ops");
    let slice_a = mk_slice("mixed-abc", "ops", "mixed", &[&agent, &cache]);
    let mut slice_b = mk_slice("mixed-def", "ops", "mixed", &[&etcd]);
    if let ObjectDetails::EndpointSlice { endpoints, .. } = &mut slice_b.details {
        endpoints.push(SliceEndpoint {
            addresses: vec!["172.16.0.9".into()],
            ready: false,
            pod_uid: None,
            node_name: String::new(),
        });
    }
    let other_ns_slice = mk_slice("mixed-zzz", "elsewhere", "mixed", &[&agent]);
    let lonely = mk_service("lonely", "ops");
    log.apply(
        C1,
        &[
            &ds,
            &agent,
            &rs,
            &cache,
            &node,
            &etcd,
            &service,
            &slice_a,
            &slice_b,
            &other_ns_slice,
            &lonely,
        ],
    );

    let views = list!(&log.index, VirtualServices, in_cluster(C1));
    assert_eq!(names(&views, |s| &s.name), ["lonely", "mixed"]);
    assert!(views[0].backends.is_empty() && views[0].workloads.is_empty());
    let mixed = &views[1];
    assert_eq!(
        (mixed.service_type.as_str(), mixed.cluster_ips.clone()),
        ("ClusterIP", vec!["10.96.0.10".to_owned()])
    );
    assert_eq!(mixed.ports[0].port, 80);
    assert_eq!(mixed.ports[0].target_port, "http");
    assert_eq!(
        mixed.backend_ports,
        [SlicePort {
            name: "http".into(),
            port: 8080,
            protocol: "TCP".into()
        }]
    );
    assert_eq!(mixed.selector["app"], "mixed");
    let backend = |name: &str| -> &BackendView {
        mixed
            .backends
            .iter()
            .find(|b| b.pod.as_ref().is_some_and(|p| p.name == name))
            .unwrap()
    };
    assert_eq!(
        backend("agent-x").workload,
        Some(workload("DaemonSet", "agent"))
    );
    assert_eq!(backend("agent-x").addresses, ["10.0.1.1"]);
    assert_eq!(backend("agent-x").node_name, "n1");
    assert_eq!(
        backend("cache-5d-a").workload,
        Some(workload("ReplicaSet", "cache-5d"))
    );
    assert_eq!(
        backend("etcd-n1").workload,
        Some(workload("Pod", "etcd-n1"))
    );
    let external = mixed.backends.iter().find(|b| b.pod.is_none()).unwrap();
    assert_eq!(
        (
            external.addresses.clone(),
            external.ready,
            external.workload.clone()
        ),
        (vec!["172.16.0.9".to_owned()], false, None)
    );
    assert_eq!(
        mixed.backends.len(),
        4,
        "slices of the same service name in another namespace do not count"
    );
    assert_eq!(
        mixed.workloads,
        [
            workload("DaemonSet", "agent"),
            workload("Pod", "etcd-n1"),
            workload("ReplicaSet", "cache-5d")
        ]
    );

    // a backend pod that goes away leaves the endpoint unbound until the slice changes
    log.delete(C1, ResourceKind::Pod, "cache-5d-a");
    let views = list!(
        &log.index,
        VirtualServices,
        InventoryFilter {
            name: Some("mixed".into()),
            namespace: Some("ops".into()),
            ..in_cluster(C1)
        }
    );
    assert_eq!(
        views[0].backends.iter().filter(|b| b.pod.is_some()).count(),
        2
    );
}

// --- namespaces -------------------------------------------------------------------------------------

#[test]
fn namespaces_are_listed_per_cluster() {
    let mut log = Log::with_clusters(&[C1, C2]);
    log.apply(C1, &[&mk_namespace("shop"), &mk_namespace("data")]);
    log.apply(C2, &[&mk_namespace("other")]);
    let listed = list!(&log.index, Namespaces, in_cluster(C1));
    assert_eq!(names(&listed, |n| &n.name), ["data", "shop"]);
    assert_eq!(listed[0].uid, uid("data"));
    assert_eq!(listed[0].labels["app"], "data");
    let named = list!(
        &log.index,
        Namespaces,
        InventoryFilter {
            name: Some("HO".into()),
            ..in_cluster(C1)
        }
    );
    assert_eq!(names(&named, |n| &n.name), ["shop"]);
}

// --- effective labels ------------------------------------------------------------------------------

/// A label from the `bulkhead.io/role` annotation of a controller's pod template.
fn annotation(kind: &str, name: &str) -> LabelSource {
    LabelSource::Annotation {
        kind: kind.into(),
        name: name.into(),
        key: "bulkhead.io/role".into(),
        template: true,
    }
}

/// `key=value` of each label, in the order shown.
fn shown(labeling: &Option<EffectiveLabeling>) -> Vec<String> {
    labeling
        .iter()
        .flat_map(|l| &l.labels)
        .map(|l| format!("{}={}", l.key, l.value))
        .collect()
}

fn unclaimed(log: &Log, cluster_id: &str) -> usize {
    log.index.cluster(cluster_id).unwrap().unclaimed.len()
}

#[test]
fn effective_labels_show_in_every_labeled_view_with_their_provenance() {
    let mut log = Log::with_clusters(&[C1]);
    let node = mk_node("n1", "m1");
    let deploy = mk_deployment("web", "shop");
    let rs = mk_replica_set("web-1", "shop", Some(&deploy));
    let pod = mk_pod("web-1-a", "shop", Some(&rs));
    let bare = mk_pod("debug", "shop", None);
    let unobserved_job = mk_workload(ResourceKind::Job, "batch", "shop", None);
    let job_pod = mk_pod("batch-x", "shop", Some(&unobserved_job));
    let unmanaged = mk_pod("legacy", "old", None);
    let service = mk_service("web", "shop");
    log.apply(
        C1,
        &[
            &node, &deploy, &rs, &pod, &bare, &job_pod, &unmanaged, &service,
        ],
    );
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    assert!(
        pods.iter().all(|p| p.labeling.is_none()),
        "nothing before labeling writes"
    );

    let zone = LabelSource::LabelMap {
        origin: LabelMapOrigin::CustomResource,
        map: "default".into(),
        from_key: "topology.kubernetes.io/zone".into(),
    };
    let front = front_labels(&pod);
    log.labeling(
        C1,
        &[
            sourced(
                mk_entity_labels(EntityKind::Node, &node, &[("loc", 4, "eu")]),
                "loc",
                zone.clone(),
            ),
            sourced(front, "role", annotation("Deployment", "web")),
            mk_entity_labels(
                EntityKind::KubeWorkload,
                &deploy,
                &[("role", 1, "front"), ("env", 3, "prod")],
            ),
            mk_entity_labels(EntityKind::Pod, &bare, &[("role", 2, "debug")]),
            EntityLabels {
                managed: false,
                enforcement_mode: None,
                ..mk_entity_labels(EntityKind::Pod, &unmanaged, &[])
            },
            mk_entity_labels(EntityKind::Service, &service, &[("app", 5, "shop")]),
        ],
    );

    let hosts = list!(&log.index, HostWorkloads, in_cluster(C1));
    assert_eq!(
        hosts[0].labeling,
        Some(EffectiveLabeling {
            managed: true,
            enforcement_mode: Some(EnforcementMode::Full),
            labels: vec![AssignedLabel {
                href: label_href(4),
                key: "loc".into(),
                value: "eu".into(),
                source: zone,
            }],
        })
    );

    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    let pod_view = |name: &str| pods.iter().find(|p| p.name == name).unwrap();
    let front = pod_view("web-1-a").labeling.as_ref().unwrap();
    assert_eq!(
        front.labels,
        [
            AssignedLabel {
                href: label_href(3),
                key: "env".into(),
                value: "prod".into(),
                source: LabelSource::Profile,
            },
            AssignedLabel {
                href: label_href(1),
                key: "role".into(),
                value: "front".into(),
                source: annotation("Deployment", "web"),
            },
        ],
        "by key, each with its source"
    );
    assert_eq!(
        (front.managed, front.enforcement_mode),
        (true, Some(EnforcementMode::Full))
    );
    assert_eq!(
        pod_view("web-1-a").labels["app"],
        "web",
        "Kubernetes labels stay"
    );
    assert_eq!(
        pod_view("legacy").labeling,
        Some(EffectiveLabeling::default()),
        "unmanaged: known, without labels"
    );
    assert_eq!(pod_view("batch-x").labeling, None, "not written yet");

    let workloads = list!(&log.index, KubeWorkloads, in_cluster(C1));
    assert_eq!(
        shown(&kube_workload(&workloads, "web").labeling),
        ["env=prod", "role=front"],
        "the controller's own"
    );
    assert_eq!(
        shown(&kube_workload(&workloads, "debug").labeling),
        ["role=debug"],
        "a bare pod's are its pod's"
    );
    assert_eq!(
        kube_workload(&workloads, "batch").labeling,
        None,
        "known by reference only: labeling has no such entity"
    );

    let services = list!(&log.index, VirtualServices, in_cluster(C1));
    assert_eq!(shown(&services[0].labeling), ["app=shop"]);
}

#[test]
fn labels_follow_their_entity_through_changes_removal_and_deletion() {
    let mut log = Log::with_clusters(&[C1]);
    let pod = mk_pod("p", "shop", None);
    let labels_of_p = |log: &Log| {
        let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
        pods.into_iter().find(|p| p.name == "p").unwrap().labeling
    };
    log.apply(C1, &[&pod]);
    log.label(EntityKind::Pod, &pod, &[("role", 1, "web")]);

    // labeling writes labels when they change, not when the pod does
    let mut changed = pod.clone();
    changed.resource_version = "2".into();
    changed.labels.insert("tier".into(), "front".into());
    log.apply(C1, &[&changed]);
    assert_eq!(shown(&labels_of_p(&log)), ["role=web"]);

    log.label(EntityKind::Pod, &pod, &[("env", 3, "prod")]);
    assert_eq!(shown(&labels_of_p(&log)), ["env=prod"], "replaced whole");

    log.labeling(C1, &[mk_removed(EntityKind::Pod, &pod)]);
    assert_eq!(labels_of_p(&log), None);

    log.label(EntityKind::Pod, &pod, &[("role", 1, "web")]);
    log.delete(C1, ResourceKind::Pod, "p");
    log.apply(C1, &[&pod]);
    assert_eq!(labels_of_p(&log), None, "they went with the pod");

    // a controller that is no longer at the top of its chain: labeling removes it
    let rs = mk_replica_set("web-1", "shop", None);
    log.apply(C1, &[&rs]);
    log.label(EntityKind::KubeWorkload, &rs, &[("role", 1, "web")]);
    let workloads = list!(&log.index, KubeWorkloads, in_cluster(C1));
    assert_eq!(
        shown(&kube_workload(&workloads, "web-1").labeling),
        ["role=web"]
    );
    let deploy = mk_deployment("web", "shop");
    let mut owned = mk_replica_set("web-1", "shop", Some(&deploy));
    owned.resource_version = "2".into();
    log.apply(C1, &[&deploy, &owned]);
    log.labeling(
        C1,
        &[
            mk_removed(EntityKind::KubeWorkload, &rs),
            mk_entity_labels(EntityKind::KubeWorkload, &deploy, &[("role", 1, "web")]),
        ],
    );
    let workloads = list!(&log.index, KubeWorkloads, in_cluster(C1));
    assert_eq!(
        shown(&kube_workload(&workloads, "web").labeling),
        ["role=web"]
    );
    let held = log.index.cluster(C1).unwrap();
    let held_rs = held
        .object(ResourceKind::ReplicaSet, &uid("web-1"))
        .unwrap();
    assert_eq!(held_rs.labeling, None);
}

#[test]
fn labels_written_before_or_after_inventory_holds_the_entity_end_up_right() {
    let mut log = Log::with_clusters(&[C1]);
    let pod = mk_pod("p", "shop", None);

    // ahead of inventory: kept apart, listed nowhere, taken by the pod when it arrives
    log.label(EntityKind::Pod, &pod, &[("role", 1, "web")]);
    assert!(list!(&log.index, PodWorkloads, in_cluster(C1)).is_empty());
    assert_eq!(unclaimed(&log, C1), 1);
    log.apply(C1, &[&pod]);
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    assert_eq!(shown(&pods[0].labeling), ["role=web"]);
    assert_eq!(unclaimed(&log, C1), 0);

    // behind it (written from labeling's state before the deletion): apart until removed...
    log.delete(C1, ResourceKind::Pod, "p");
    log.label(EntityKind::Pod, &pod, &[("env", 3, "prod")]);
    assert!(list!(&log.index, PodWorkloads, in_cluster(C1)).is_empty());
    assert_eq!(unclaimed(&log, C1), 1);
    log.labeling(C1, &[mk_removed(EntityKind::Pod, &pod)]);
    assert_eq!(unclaimed(&log, C1), 0);

    // ... or deleted
    log.label(EntityKind::Pod, &pod, &[("env", 3, "prod")]);
    log.delete(C1, ResourceKind::Pod, "p");
    assert_eq!(unclaimed(&log, C1), 0);

    // a kube workload is found whatever its controller's kind
    let agent = mk_workload(ResourceKind::DaemonSet, "agent", "ops", None);
    log.label(EntityKind::KubeWorkload, &agent, &[("role", 6, "agent")]);
    log.apply(C1, &[&agent]);
    let workloads = list!(&log.index, KubeWorkloads, in_cluster(C1));
    assert_eq!(
        shown(&kube_workload(&workloads, "agent").labeling),
        ["role=agent"]
    );
}

#[test]
fn labels_on_another_clusters_stream_of_unknown_clusters_and_other_labeling_events_are_ignored() {
    let mut log = Log::with_clusters(&[C1, C2]);
    let pod = mk_pod("p", "shop", None);
    log.apply(C1, &[&pod]);
    let entities = vec![mk_entity_labels(
        EntityKind::Pod,
        &pod,
        &[("role", 1, "web")],
    )];
    let sneaky = LabelingEvent::EffectiveLabels {
        cluster_id: C1.into(),
        through: OutputPosition::default(),
        entities: entities.clone(),
    };
    log.record(&LabelingEvent::effective_stream(C2), &sneaky);
    log.labeling("deleted-cluster", &entities);
    log.record(
        LabelingEvent::CONFIG_STREAM,
        &LabelingEvent::LabelDeleted { label_id: 1 },
    );
    log.record(
        &LabelingEvent::effective_stream(C1),
        &LabelingEvent::PairingKeyRejected {
            cluster_id: C1.into(),
            through: OutputPosition::default(),
            namespace: "shop".into(),
            namespace_uid: uid("shop"),
            reason: "no profile has this key".into(),
        },
    );
    let pods = list!(&log.index, PodWorkloads, in_cluster(C1));
    assert_eq!(pods[0].labeling, None);
    assert_eq!((unclaimed(&log, C1), unclaimed(&log, C2)), (0, 0));
    assert_eq!(log.index.clusters.len(), 2);
}

#[test]
fn label_filters_match_entities_carrying_every_label_of_any_list() {
    let mut log = Log::with_clusters(&[C1]);
    let node = mk_node("n1", "m1");
    let [web, db, cache, fresh] = ["web", "db", "cache", "fresh"].map(|n| mk_pod(n, "shop", None));
    let service = mk_service("web", "shop");
    log.apply(C1, &[&node, &web, &db, &cache, &fresh, &service]);
    log.labeling(
        C1,
        &[
            mk_entity_labels(
                EntityKind::Pod,
                &web,
                &[("role", 1, "web"), ("env", 3, "prod")],
            ),
            mk_entity_labels(
                EntityKind::Pod,
                &db,
                &[("role", 2, "db"), ("env", 3, "prod")],
            ),
            mk_entity_labels(
                EntityKind::Pod,
                &cache,
                &[("role", 7, "cache"), ("env", 8, "dev")],
            ),
            mk_entity_labels(EntityKind::Node, &node, &[("loc", 4, "eu")]),
            mk_entity_labels(EntityKind::Service, &service, &[("role", 1, "web")]),
        ],
    );
    let href = |id: LabelId| LabelSelector::Href(label_href(id));
    let key_value = |key: &str, value: &str| LabelSelector::KeyValue {
        key: key.into(),
        value: value.into(),
    };
    let with = |labels: Vec<Vec<LabelSelector>>| InventoryFilter {
        labels,
        ..in_cluster(C1)
    };
    let pods = |labels| names(&list!(&log.index, PodWorkloads, with(labels)), |p| &p.name);
    assert_eq!(pods(vec![vec![href(3)]]), ["db", "web"]);
    assert_eq!(pods(vec![vec![href(3), href(1)]]), ["web"], "all of a list");
    assert_eq!(
        pods(vec![vec![href(1)], vec![href(7)]]),
        ["cache", "web"],
        "any list"
    );
    assert_eq!(
        pods(vec![vec![key_value("role", "DB")]]),
        ["db"],
        "values ignoring case"
    );
    assert!(
        pods(vec![vec![key_value("Role", "db")]]).is_empty(),
        "keys exactly"
    );
    assert!(pods(vec![vec![href(99)]]).is_empty());
    assert_eq!(
        names(
            &list!(&log.index, KubeWorkloads, with(vec![vec![href(1)]])),
            |w| &w.workload.name
        ),
        ["web"]
    );
    assert_eq!(
        names(
            &list!(&log.index, HostWorkloads, with(vec![vec![href(4)]])),
            |h| &h.name
        ),
        ["n1"]
    );
    assert!(list!(&log.index, HostWorkloads, with(vec![vec![href(1)]])).is_empty());
    assert_eq!(
        list!(
            &log.index,
            VirtualServices,
            with(vec![vec![key_value("role", "web")]])
        )
        .len(),
        1
    );
    let page = ask(
        &log.index,
        InventoryQueryKind::PodWorkloads,
        with(vec![vec![href(3)]]),
    );
    assert_eq!(page.unwrap().total, 2, "the total counts what matches");

    for (what, labels, reason) in [
        (InventoryQueryKind::PodWorkloads, vec![vec![]], "is empty"),
        (
            InventoryQueryKind::PodWorkloads,
            vec![vec![LabelSelector::Href(label_group_href(2))]],
            "is a label group",
        ),
        (
            InventoryQueryKind::KubeWorkloads,
            vec![vec![LabelSelector::Href("/orgs/1/workloads/7".into())]],
            "is not a label href",
        ),
        (
            InventoryQueryKind::VirtualServices,
            vec![vec![key_value("role", "")]],
            "needs a key and a value",
        ),
        (
            InventoryQueryKind::Clusters,
            vec![vec![href(1)]],
            "clusters cannot be filtered by labels",
        ),
        (
            InventoryQueryKind::Namespaces,
            vec![vec![href(1)]],
            "namespaces cannot be filtered by labels",
        ),
    ] {
        let refusal = ask(&log.index, what, with(labels)).unwrap_err();
        assert_eq!(refusal.rejection, InventoryRejection::Invalid);
        assert!(refusal.reason.contains(reason), "{}", refusal.reason);
    }
}

#[test]
fn entities_labeled_alike_share_their_labels_and_forget_them_together() {
    let mut log = Log::with_clusters(&[C1]);
    let pods = ["a", "b", "c"].map(|n| mk_pod(n, "shop", None));
    log.apply(C1, &[&pods[0], &pods[1], &pods[2]]);
    let web = [("role", 1, "web"), ("env", 3, "prod")];
    log.labeling(
        C1,
        &[
            mk_entity_labels(EntityKind::Pod, &pods[0], &web),
            mk_entity_labels(EntityKind::Pod, &pods[1], &web),
            mk_entity_labels(
                EntityKind::Pod,
                &pods[2],
                &[("role", 2, "db"), ("env", 3, "prod")],
            ),
        ],
    );
    let cluster = log.index.cluster(C1).unwrap();
    let labeling = |name: &str| {
        let pod = cluster.object(ResourceKind::Pod, &uid(name)).unwrap();
        pod.labeling.clone().unwrap()
    };
    assert!(Arc::ptr_eq(&labeling("a"), &labeling("b")), "one set");
    assert!(!Arc::ptr_eq(&labeling("a"), &labeling("c")));
    assert!(
        Arc::ptr_eq(&labeling("a").labels[0], &labeling("c").labels[0]),
        "env=prod, once"
    );
    let [_, labels, sets] = log.index.pooled();
    assert_eq!((labels, sets), (3, 2));

    let removals: Vec<EntityLabels> = pods
        .iter()
        .map(|pod| mk_removed(EntityKind::Pod, pod))
        .collect();
    log.labeling(C1, &removals);
    log.index.sweep_pools();
    let [_, labels, sets] = log.index.pooled();
    assert_eq!((labels, sets), (0, 0));
}

// --- digest, checkpoint, memory -----------------------------------------------------------------------

#[test]
fn digests_page_through_uids_in_order() {
    let mut log = Log::with_clusters(&[C1, C2]);
    for name in ["p3", "p1", "p2", "p5", "p4"] {
        let mut pod = mk_pod(name, "ns", None);
        pod.resource_version = format!("v-{name}");
        log.apply(C1, &[&pod]);
    }
    log.apply(C1, &[&mk_node("n1", "m")]);
    log.apply(C2, &[&mk_pod("p9", "ns", None)]);
    let page1 = log.index.digest(C1, ResourceKind::Pod, None, 2);
    assert_eq!(
        page1,
        [
            (uid("p1"), "v-p1".to_owned()),
            (uid("p2"), "v-p2".to_owned())
        ]
    );
    let page2 = log
        .index
        .digest(C1, ResourceKind::Pod, Some(&page1[1].0), 2);
    assert_eq!(
        page2.iter().map(|e| e.0.clone()).collect::<Vec<_>>(),
        [uid("p3"), uid("p4")]
    );
    let last = log
        .index
        .digest(C1, ResourceKind::Pod, Some(&page2[1].0), 2);
    assert_eq!(last.len(), 1, "fewer than the limit: the end");
    assert!(
        log.index
            .digest(C1, ResourceKind::Pod, Some(&last[0].0), 2)
            .is_empty()
    );
    assert_eq!(log.index.digest(C1, ResourceKind::Node, None, 10).len(), 1);
    assert!(
        log.index
            .digest(C1, ResourceKind::Service, None, 10)
            .is_empty()
    );
    assert!(
        log.index
            .digest("c9", ResourceKind::Pod, None, 10)
            .is_empty()
    );
}

#[test]
fn a_checkpoint_restores_the_same_state() {
    let mut log = Log::with_clusters(&[C1, C2]);
    let deploy = mk_deployment("web", "shop");
    let rs = mk_replica_set("web-1", "shop", Some(&deploy));
    let pod = mk_pod("web-1-a", "shop", Some(&rs));
    let mut annotated = mk_pod("web-1-b", "shop", Some(&rs));
    annotated
        .annotations
        .insert("bulkhead.io/role".into(), "front".into());
    log.apply(
        C1,
        &[
            &mk_namespace("shop"),
            &mk_node("n1", "m1"),
            &deploy,
            &rs,
            &pod,
            &annotated,
            &mk_service("web", "shop"),
            &mk_slice("web-x", "shop", "web", &[&pod]),
            &mk_zone_and_app_map("default"),
        ],
    );
    log.event(
        C1,
        &InventoryEvent::ClusterConnected {
            cluster_id: C1.into(),
            clusterlink_version: "1".into(),
            kubernetes_version: "2".into(),
            cluster_mode: "legacy".into(),
            network_type: "overlay".into(),
            at_ms: 7,
        },
    );
    log.apply(C2, &[&mk_pod("lonely", "x", None)]);
    let early = mk_pod("early", "shop", None);
    let front = front_labels(&pod);
    log.labeling(
        C1,
        &[
            sourced(front.clone(), "role", annotation("Deployment", "web")),
            mk_entity_labels(EntityKind::Pod, &annotated, &[("role", 1, "front")]),
            mk_entity_labels(EntityKind::KubeWorkload, &deploy, &[("role", 1, "front")]),
            mk_entity_labels(EntityKind::Node, &mk_node("n1", "m1"), &[("loc", 4, "eu")]),
            mk_entity_labels(EntityKind::Pod, &early, &[("env", 3, "prod")]),
        ],
    );
    assert_eq!(log.index.cluster(C1).unwrap().unclaimed.len(), 1);

    let bytes = rmp_serde::to_vec_named(&log.index).unwrap();
    let restored: Index = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(restored.clusters, log.index.clusters);
    for what in [
        InventoryQueryKind::PodWorkloads,
        InventoryQueryKind::KubeWorkloads,
        InventoryQueryKind::VirtualServices,
        InventoryQueryKind::HostWorkloads,
    ] {
        assert_eq!(
            ask(&restored, what.clone(), Default::default()),
            ask(&log.index, what, Default::default())
        );
    }
    let creds = ClusterCredentials {
        cluster_id: C1.into(),
        token: "token-c1".into(),
    };
    assert_eq!(restored.verify(&creds), Ok(()));
    assert_eq!(
        restored.pooled(),
        log.index.pooled(),
        "re-interned, nothing duplicated"
    );

    // what the unclaimed labels wait for still claims them
    let mut restored = Log {
        index: restored,
        recorder: log.recorder.clone(),
    };
    restored.apply(C1, &[&early]);
    let pods = list!(&restored.index, PodWorkloads, in_cluster(C1));
    let early = pods.iter().find(|p| p.name == "early").unwrap();
    assert_eq!(shown(&early.labeling), ["env=prod"]);
}

#[test]
fn a_checkpoint_written_before_labels_were_kept_loads() {
    #[derive(serde::Serialize)]
    struct ClusterRecordBeforeLabels {
        cluster_id: String,
        meta: ClusterMeta,
        stream_version: u64,
        objects: Vec<ObservedObject>,
    }
    let mut log = Log::with_clusters(&[C1]);
    let pod = mk_pod("p", "shop", None);
    log.apply(C1, &[&pod]);
    let cluster = log.index.cluster(C1).unwrap();
    let old = vec![ClusterRecordBeforeLabels {
        cluster_id: C1.into(),
        meta: cluster.meta.clone(),
        stream_version: cluster.stream_version,
        objects: vec![pod],
    }];
    let restored: Index = rmp_serde::from_slice(&rmp_serde::to_vec_named(&old).unwrap()).unwrap();
    assert_eq!(restored.clusters, log.index.clusters);
}

#[test]
fn strings_nobody_uses_leave_the_pool() {
    let mut log = Log::with_clusters(&[C1]);
    let pods: Vec<ObservedObject> = (0..50)
        .map(|i| {
            let mut pod = mk_pod(&format!("p{i}"), &format!("ns-{i}"), None);
            pod.labels
                .insert("pod-template-hash".into(), format!("hash-{i}"));
            pod
        })
        .collect();
    for pod in &pods {
        log.apply(C1, &[pod]);
    }
    let [full, ..] = log.index.pooled();
    for i in 0..50 {
        log.delete(C1, ResourceKind::Pod, &format!("p{i}"));
    }
    log.index.sweep_pools();
    let [left, ..] = log.index.pooled();
    assert!(left + 100 <= full, "{left} of {full} left");

    // shared strings are shared: one allocation for the namespace of many pods
    let mut log = Log::with_clusters(&[C1]);
    log.apply(
        C1,
        &[&mk_pod("a", "shop", None), &mk_pod("b", "shop", None)],
    );
    let cluster = log.index.cluster(C1).unwrap();
    let a = cluster.object(ResourceKind::Pod, &uid("a")).unwrap();
    let b = cluster.object(ResourceKind::Pod, &uid("b")).unwrap();
    assert!(Arc::ptr_eq(&a.namespace, &b.namespace));
    assert!(Arc::ptr_eq(&a.labels[0].0, &b.labels[0].0));
}
