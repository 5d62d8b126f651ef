//! The initial sync (every kind, with details) and live changes.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use bulkhead_kubesim::Kind;
use bulkhead_runtime::bus::TypedBus;
use bulkhead_runtime::testing::NatsServer;
use bulkhead_schema::messages::health::ServiceState;
use bulkhead_schema::messages::inventory::{
    LabelMapItem, ObjectDetails, Observation, ObservedObject, ResourceKind, ServicePort,
    ValueMapping,
};
use serde_json::{Value, json};

use crate::common::{Env, State, bounded, eventually, metric_line_with, uid};

fn find<'a>(
    state: &'a State,
    kind: ResourceKind,
    namespace: &str,
    name: &str,
) -> &'a ObservedObject {
    state
        .values()
        .find(|o| o.kind == kind && o.namespace == namespace && o.name == name)
        .unwrap_or_else(|| panic!("no {kind:?} {namespace}/{name} reported"))
}

fn pods_of<'a>(state: &'a State, app: &str) -> Vec<&'a ObservedObject> {
    state
        .values()
        .filter(|o| {
            o.kind == ResourceKind::Pod && o.labels.get("app").map(String::as_str) == Some(app)
        })
        .collect()
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Checks what was reported against the simulator's own JSON, not against clusterlink's
/// conversion.
fn check_details(env: &Env, state: &State) {
    for kind in ResourceKind::ALL {
        assert!(
            state.keys().any(|(k, _)| *k == kind),
            "no {kind:?} reported"
        );
    }
    let sim = &env.sim;

    let node: Value = sim.get(Kind::Node, "", "node-000").unwrap();
    let ObjectDetails::Node {
        machine_id,
        addresses,
        pod_cidrs,
        roles,
        kubelet_version,
    } = &find(state, ResourceKind::Node, "", "node-000").details
    else {
        panic!("node details")
    };
    assert_eq!(
        machine_id,
        node["status"]["nodeInfo"]["machineID"].as_str().unwrap()
    );
    assert_eq!(
        addresses,
        &vec![
            node["status"]["addresses"][0]["address"]
                .as_str()
                .unwrap()
                .to_owned()
        ]
    );
    assert_eq!(
        pod_cidrs,
        &vec![node["spec"]["podCIDR"].as_str().unwrap().to_owned()]
    );
    assert_eq!(roles, &vec!["control-plane".to_owned()]);
    assert!(kubelet_version.starts_with("v1.33"), "{kubelet_version}");

    // the owner chain: pod -> replica set -> deployment
    let deployment = sim.get(Kind::Deployment, "shop", "frontend").unwrap();
    let frontend = pods_of(state, "frontend");
    assert_eq!(frontend.len(), 3);
    let replica_set = frontend[0].owner.clone().unwrap();
    assert_eq!(replica_set.kind, "ReplicaSet");
    let rs = &state[&(ResourceKind::ReplicaSet, replica_set.uid.clone())];
    assert_eq!(rs.owner.as_ref().unwrap().uid, uid(&deployment));

    let raw_pod = sim.get(Kind::Pod, "shop", &frontend[0].name).unwrap();
    assert_eq!(
        frontend[0].details,
        ObjectDetails::Pod {
            node_name: raw_pod["spec"]["nodeName"].as_str().unwrap().into(),
            ips: vec![raw_pod["status"]["podIP"].as_str().unwrap().into()],
            host_network: false,
            phase: "Running".into(),
            containers: vec!["frontend".into()],
        }
    );
    for proxy in pods_of(state, "kube-proxy") {
        assert!(matches!(
            proxy.details,
            ObjectDetails::Pod {
                host_network: true,
                ..
            }
        ));
    }

    let service = sim.get(Kind::Service, "shop", "frontend").unwrap();
    assert_eq!(
        find(state, ResourceKind::Service, "shop", "frontend").details,
        ObjectDetails::Service {
            service_type: "ClusterIP".into(),
            cluster_ips: vec![service["spec"]["clusterIP"].as_str().unwrap().into()],
            ports: vec![ServicePort {
                name: "http".into(),
                port: 80,
                target_port: "http".into(),
                protocol: "TCP".into(),
                node_port: None,
            }],
            selector: labels(&[("app", "frontend")]),
        }
    );
    let ObjectDetails::Service { cluster_ips, .. } =
        &find(state, ResourceKind::Service, "shop", "db").details
    else {
        panic!("service details")
    };
    assert!(cluster_ips.is_empty(), "headless");

    let slice = state
        .values()
        .find(|o| {
            o.kind == ResourceKind::EndpointSlice
                && matches!(&o.details, ObjectDetails::EndpointSlice { service_name, .. } if service_name == "frontend")
        })
        .expect("the frontend service's slice");
    let ObjectDetails::EndpointSlice { endpoints, .. } = &slice.details else {
        unreachable!()
    };
    let backing: BTreeSet<_> = endpoints
        .iter()
        .map(|e| e.pod_uid.clone().unwrap())
        .collect();
    assert_eq!(backing, frontend.iter().map(|p| p.uid.clone()).collect());
    assert!(endpoints.iter().all(|e| e.ready && !e.node_name.is_empty()));

    let workload = |kind, namespace, name| match &find(state, kind, namespace, name).details {
        ObjectDetails::Workload {
            template_labels,
            template_annotations,
            replicas,
        } => (
            template_labels.clone(),
            template_annotations.clone(),
            *replicas,
        ),
        other => panic!("not a workload: {other:?}"),
    };
    assert_eq!(
        workload(ResourceKind::Deployment, "shop", "frontend"),
        (
            labels(&[("app", "frontend"), ("tier", "web")]),
            BTreeMap::new(),
            Some(3)
        )
    );
    assert_eq!(
        workload(ResourceKind::CronJob, "payments", "settlement"),
        (
            labels(&[("app", "settlement"), ("tier", "batch")]),
            BTreeMap::new(),
            None
        )
    );
    assert_eq!(
        workload(ResourceKind::ReplicationController, "shop", "legacy"),
        (
            labels(&[("app", "legacy")]),
            labels(&[("bulkhead.io/tier", "old")]),
            Some(1)
        )
    );
    assert_eq!(workload(ResourceKind::StatefulSet, "shop", "db").2, Some(1));
    assert_eq!(
        workload(ResourceKind::DaemonSet, "kube-system", "kube-proxy").2,
        None
    );

    // the second workload rule for app.kubernetes.io/name is left out, and counted
    assert_eq!(
        find(state, ResourceKind::LabelMap, "", "default").details,
        ObjectDetails::LabelMap {
            node_label_map: vec![LabelMapItem {
                from_key: "topology.kubernetes.io/zone".into(),
                to_key: "loc".into(),
                values_map: vec![ValueMapping {
                    from: "us-east-1a".into(),
                    to: "east".into(),
                }],
                allow_create: true,
            }],
            workload_label_map: vec![LabelMapItem {
                from_key: "app.kubernetes.io/name".into(),
                to_key: "app".into(),
                values_map: vec![],
                allow_create: false,
            }],
        }
    );
    assert!(metric_line_with(&[
        "bulkhead_clusterlink_dropped_parts_total",
        r#"kind="LabelMap""#,
        r#"reason="duplicate_from_key""#,
    ]));
}

async fn sync_and_follow(bus: TypedBus) {
    let env = Env::start_on(bus).await;
    let link = env.link();
    link.state_is(ServiceState::Ready).await;
    let state = env.recorder.objects();
    assert_eq!(
        state,
        env.expected(),
        "Ready: everything reported and acknowledged"
    );
    check_details(&env, &state);

    let recorder = env.recorder.clone();
    eventually("a heartbeat", || !recorder.lock().heartbeats.is_empty()).await;
    let heartbeat = recorder.lock().heartbeats[0].clone();
    assert!(
        heartbeat.kubernetes_version.starts_with("v1.33"),
        "from /version: {heartbeat:?}"
    );
    assert_eq!(heartbeat.clusterlink_version, env!("CARGO_PKG_VERSION"));
    assert_eq!(
        (
            heartbeat.cluster_mode.as_str(),
            heartbeat.network_type.as_str()
        ),
        ("legacy", "overlay")
    );

    // scale up: the deployment, its replica set, two new pods, the endpoints
    let mark = recorder.applied().len();
    env.sim
        .scale(Kind::Deployment, "shop", "frontend", 5)
        .unwrap();
    env.converged("the scale-up").await;
    assert_eq!(pods_of(&recorder.objects(), "frontend").len(), 5);
    let deployment_replicas: Vec<_> = recorder.applied()[mark..]
        .iter()
        .filter_map(|o| match o {
            Observation::Applied(ObservedObject {
                kind: ResourceKind::Deployment,
                details: ObjectDetails::Workload { replicas, .. },
                ..
            }) => *replicas,
            _ => None,
        })
        .collect();
    assert_eq!(deployment_replicas.last(), Some(&5));

    // delete a pod: Deleted by uid (and the replica set replaces it)
    let victim = pods_of(&recorder.objects(), "frontend")[0].clone();
    let mark = recorder.applied().len();
    env.sim.delete(Kind::Pod, "shop", &victim.name).unwrap();
    env.converged("the pod deletion").await;
    assert!(recorder.applied()[mark..].contains(&Observation::Deleted {
        kind: ResourceKind::Pod,
        uid: victim.uid.clone()
    }));

    // annotate a pod: only Bulkhead's annotations travel
    let name = pods_of(&recorder.objects(), "frontend")[0].name.clone();
    let mut raw = env.sim.get(Kind::Pod, "shop", &name).unwrap();
    raw["metadata"]["annotations"] = json!({
        "bulkhead.io/role": "web", "com.illumio.env": "prod", "example.com/note": "private",
    });
    env.sim.apply(raw).unwrap();
    env.converged("the annotation").await;
    assert_eq!(
        find(&recorder.objects(), ResourceKind::Pod, "shop", &name).annotations,
        labels(&[("bulkhead.io/role", "web"), ("com.illumio.env", "prod")])
    );

    // a LabelMap changed, another added, then deleted
    let mut default = env.sim.get(Kind::LabelMap, "", "default").unwrap();
    default["spec"]["workloadLabelMap"] = json!([{ "fromKey": "team", "toKey": "env" }]);
    env.sim.apply(default).unwrap();
    env.sim.apply(crate::common::label_map("extra")).unwrap();
    env.converged("the LabelMap changes").await;
    let objects = recorder.objects();
    let ObjectDetails::LabelMap {
        workload_label_map, ..
    } = &find(&objects, ResourceKind::LabelMap, "", "default").details
    else {
        panic!("label map details")
    };
    assert_eq!(workload_label_map[0].from_key, "team");
    env.sim.delete(Kind::LabelMap, "", "extra").unwrap();
    env.converged("the LabelMap deletion").await;
    link.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_and_live_changes_in_process() {
    bounded(sync_and_follow(TypedBus::new(Arc::new(
        bulkhead_runtime::bus::InProcessBus::default(),
    ))))
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_and_live_changes_over_nats() {
    let nats = NatsServer::start();
    let bus = TypedBus::new(Arc::new(nats.connect().await));
    bounded(sync_and_follow(bus)).await;
}
