//! kube-rs lists, watches, watchers and reflectors against the simulator.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use bulkhead_kubesim::{Kind, SimConfig, Simulator};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, ResourceExt,
    api::{
        ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams, WatchEvent,
        WatchParams,
    },
    discovery::{Discovery, Scope},
    runtime::{WatchStreamExt, reflector, reflector::Store, watcher},
};
use serde_json::json;

use crate::common::{self, eventually, pod};

/// Stops a spawned task when dropped: declared after the simulator, it drops first, so the
/// watcher never retries against a stopped server.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a reflector over all pods (with the backoff any real watcher needs); returns its store,
/// the log of watcher events and the task's guard.
fn reflect(
    api: Api<Pod>,
    config: watcher::Config,
) -> (Store<Pod>, Arc<Mutex<Vec<&'static str>>>, AbortOnDrop) {
    let (reader, writer) = reflector::store();
    let log = Arc::new(Mutex::new(Vec::new()));
    let events = log.clone();
    let stream = reflector(writer, watcher(api, config).default_backoff());
    let task = tokio::spawn(stream.for_each(move |event| {
        let label = match event {
            Ok(watcher::Event::Init) => "init",
            Ok(watcher::Event::InitApply(_)) => "init-apply",
            Ok(watcher::Event::InitDone) => "init-done",
            Ok(watcher::Event::Apply(_)) => "apply",
            Ok(watcher::Event::Delete(_)) => "delete",
            Err(_) => "error",
        };
        events.lock().unwrap().push(label);
        async {}
    }));
    (reader, log, AbortOnDrop(task))
}

fn keys_in_store(store: &Store<Pod>) -> BTreeSet<String> {
    store
        .state()
        .iter()
        .map(|p| format!("{}/{}", p.namespace().unwrap(), p.name_any()))
        .collect()
}

fn keys_in_sim(sim: &Simulator) -> BTreeSet<String> {
    sim.list(Kind::Pod, None)
        .iter()
        .map(|p| {
            format!(
                "{}/{}",
                p["metadata"]["namespace"].as_str().unwrap(),
                common::name(p)
            )
        })
        .collect()
}

fn count(log: &Mutex<Vec<&'static str>>, label: &str) -> usize {
    log.lock().unwrap().iter().filter(|l| **l == label).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reflector_lists_then_follows_adds_modifies_and_deletes() {
    let sim = common::start(2, 3).await;
    let (client, _dir) = common::client(&sim).await;
    let (store, log, _reflector) = reflect(Api::all(client), watcher::Config::default());
    store.wait_until_ready().await.unwrap();
    assert_eq!(
        store.len(),
        6,
        "two node-agent pods and four deployment pods"
    );
    assert_eq!(keys_in_store(&store), keys_in_sim(&sim));

    sim.apply(pod("default", "solo", json!({ "team": "a" })))
        .unwrap();
    let solo = || store.state().into_iter().find(|p| p.name_any() == "solo");
    eventually("the new pod", || solo().is_some()).await;
    let ip = solo().unwrap().status.clone().unwrap().pod_ip.unwrap();
    assert!(ip.starts_with("10.244."), "{ip}");

    sim.set_labels(
        Kind::Pod,
        "default",
        "solo",
        [("team".to_string(), "b".to_string())].into(),
    )
    .unwrap();
    eventually("the relabelled pod", || {
        solo().is_some_and(|p| p.labels()["team"] == "b")
    })
    .await;

    sim.delete(Kind::Pod, "default", "solo").unwrap();
    eventually("the deletion", || solo().is_none()).await;
    assert_eq!(keys_in_store(&store), keys_in_sim(&sim));
    assert_eq!((count(&log, "init"), count(&log, "init-done")), (1, 1));
    assert_eq!(
        (
            count(&log, "apply"),
            count(&log, "delete"),
            count(&log, "error")
        ),
        (2, 1, 0)
    );
}

async fn next<K, S: Stream<Item = kube::Result<WatchEvent<K>>> + Unpin>(
    stream: &mut S,
    skip_bookmarks: bool,
) -> WatchEvent<K> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .expect("an event within 5 s")
            .expect("the stream goes on")
            .expect("a decodable event");
        if !(skip_bookmarks && matches!(event, WatchEvent::Bookmark(_))) {
            return event;
        }
    }
}

fn describe(event: &WatchEvent<Pod>) -> String {
    match event {
        WatchEvent::Added(p) => format!("ADDED {} {:?}", p.name_any(), p.labels().get("team")),
        WatchEvent::Modified(p) => {
            format!("MODIFIED {} {:?}", p.name_any(), p.labels().get("team"))
        }
        WatchEvent::Deleted(p) => format!("DELETED {} {:?}", p.name_any(), p.labels().get("team")),
        WatchEvent::Bookmark(b) => format!("BOOKMARK {}", b.metadata.resource_version),
        WatchEvent::Error(e) => format!("ERROR {} {}", e.code, e.reason),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_replays_from_a_version_turns_selector_moves_into_adds_and_deletes_and_bookmarks() {
    let sim = common::start(1, 0).await;
    let (client, _dir) = common::client(&sim).await;
    let api: Api<Pod> = Api::namespaced(client, "default");
    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();

    // the changes happen before the watches start: they are replayed from `rv`
    sim.apply(pod("default", "p", json!({ "team": "a" })))
        .unwrap();
    sim.set_labels(
        Kind::Pod,
        "default",
        "p",
        [("team".to_string(), "b".to_string())].into(),
    )
    .unwrap();
    sim.delete(Kind::Pod, "default", "p").unwrap();
    let deleted_at = sim.resource_version();

    let mut all = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut team_a = api
        .watch(&WatchParams::default().labels("team=a"), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(&next(&mut all, true).await));
    }
    assert_eq!(
        seen,
        [
            r#"ADDED p Some("a")"#,
            r#"MODIFIED p Some("b")"#,
            r#"DELETED p Some("b")"#
        ]
    );
    let seen = [
        describe(&next(&mut team_a, true).await),
        describe(&next(&mut team_a, true).await),
    ];
    assert_eq!(
        seen,
        [r#"ADDED p Some("a")"#, r#"DELETED p Some("b")"#],
        "leaving the selection is a deletion"
    );

    let WatchEvent::Bookmark(bookmark) = next(&mut all, false).await else {
        panic!("a bookmark")
    };
    assert!(bookmark.metadata.resource_version.parse::<u64>().unwrap() >= deleted_at);

    // and live: a change after the watch started
    sim.apply(pod("default", "q", json!({ "team": "a" })))
        .unwrap();
    assert_eq!(
        describe(&next(&mut all, true).await),
        r#"ADDED q Some("a")"#
    );
    assert_eq!(
        describe(&next(&mut team_a, true).await),
        r#"ADDED q Some("a")"#
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_versions_get_410_and_the_watcher_relists_to_the_right_state() {
    let sim = common::start_with(SimConfig {
        nodes: 2,
        pods_per_node: 2,
        history: 8,
        ..common::config()
    })
    .await;
    let (client, _dir) = common::client(&sim).await;
    let api: Api<Pod> = Api::all(client);

    // a watch from further back than the retained history
    let old = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    for i in 0..10 {
        sim.apply(pod("default", &format!("churn-{i}"), json!({})))
            .unwrap();
    }
    let mut stream = api
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        describe(&next(&mut stream, true).await),
        "ERROR 410 Expired"
    );

    // a continued list after a compaction
    let page = api.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(page.items.len(), 3);
    sim.expire_history();
    let token = page.metadata.continue_.unwrap();
    match api
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected 410, got {other:?}"),
    }

    // a reflector whose open watch is expired re-lists and converges, changes included
    let (store, log, _reflector) = reflect(api, watcher::Config::default());
    store.wait_until_ready().await.unwrap();
    sim.expire_history();
    sim.delete(Kind::Pod, "default", "churn-0").unwrap();
    sim.apply(pod("default", "after", json!({}))).unwrap();
    eventually("a second initial list", || count(&log, "init-done") >= 2).await;
    eventually("the reflector to converge", || {
        keys_in_store(&store) == keys_in_sim(&sim)
    })
    .await;
    assert!(keys_in_store(&store).contains("default/after"));
    assert!(!keys_in_store(&store).contains("default/churn-0"));
    assert!(
        count(&log, "error") >= 1,
        "the 410 surfaces as a watcher error"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_paginate_and_select_by_label_and_field() {
    let sim = common::start(3, 4).await;
    let (client, _dir) = common::client(&sim).await;
    let api: Api<Pod> = Api::all(client.clone());

    let first = api.list(&ListParams::default().limit(5)).await.unwrap();
    let list_rv = first.metadata.resource_version.clone().unwrap();
    let mut names: Vec<String> = first.items.iter().map(|p| p.name_any()).collect();
    let mut token = first.metadata.continue_;
    while let Some(t) = token {
        let page = api
            .list(&ListParams::default().limit(5).continue_token(&t))
            .await
            .unwrap();
        assert_eq!(
            page.metadata.resource_version.unwrap(),
            list_rv,
            "pages share the list's version"
        );
        names.extend(page.items.iter().map(|p| p.name_any()));
        token = page.metadata.continue_;
    }
    assert_eq!(names.len(), 12);
    assert_eq!(names.iter().collect::<BTreeSet<_>>().len(), 12);

    let agents = api
        .list(&ListParams::default().labels("app=node-agent"))
        .await
        .unwrap();
    assert_eq!(agents.items.len(), 3);
    let on_node = api
        .list(&ListParams::default().fields("spec.nodeName=node-001"))
        .await
        .unwrap();
    assert_eq!(on_node.items.len(), 4);
    assert!(
        on_node
            .items
            .iter()
            .all(|p| p.spec.as_ref().unwrap().node_name.as_deref() == Some("node-001"))
    );
    let one = &on_node.items[0].name_any();
    let by_name = api
        .list(&ListParams::default().fields(&format!("metadata.name={one}")))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 1);
    let not_agents = api
        .list(&ListParams::default().labels("app notin (node-agent),tier"))
        .await
        .unwrap();
    assert_eq!(not_agents.items.len(), 9);

    let in_ns: Api<Pod> = Api::namespaced(client, "team-000");
    let web = in_ns.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(web.len(), 9);
    assert_eq!(
        in_ns.get(&web[0].name_any()).await.unwrap().uid(),
        web[0].uid()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_lists_end_their_initial_events_with_a_bookmark() {
    let sim = common::start(2, 5).await;
    let (client, _dir) = common::client(&sim).await;
    let (store, log, _reflector) = reflect(
        Api::all(client),
        watcher::Config::default().streaming_lists(),
    );
    store.wait_until_ready().await.unwrap();
    assert_eq!(keys_in_store(&store), keys_in_sim(&sim));
    assert_eq!(count(&log, "init-apply"), 10);
    sim.delete(Kind::Deployment, "team-000", "web").unwrap();
    eventually("the cascade to reach the reflector", || store.len() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_resource_is_discovered_listed_and_watched_while_its_crd_is_installed() {
    let sim = common::start(0, 0).await;
    let (client, _dir) = common::client(&sim).await;
    let gvk = GroupVersionKind::gvk("bulkhead.io", "v1", "LabelMap");
    let api: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(&gvk, "labelmaps"),
    );
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected 404 before the CRD, got {other:?}"),
    }
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    assert!(!discovery.has_group("bulkhead.io"));

    sim.apply(common::label_map_crd()).unwrap();
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (resource, capabilities) = discovery.resolve_gvk(&gvk).expect("labelmaps discovered");
    assert_eq!(
        (resource.plural.as_str(), capabilities.scope),
        ("labelmaps", Scope::Cluster)
    );

    let rv = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut map = DynamicObject::new("a", &resource);
    map.data = json!({ "spec": { "workloadLabelMap": [{ "fromKey": "app.kubernetes.io/name", "toKey": "app" }] } });
    api.create(&PostParams::default(), &map).await.unwrap();
    let mut watch = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let WatchEvent::Added(added) = next(&mut watch, true).await else {
        panic!("the creation, replayed")
    };
    assert_eq!(
        (
            added.name_any(),
            &added.data["spec"]["workloadLabelMap"][0]["toKey"]
        ),
        ("a".to_string(), &json!("app"))
    );
    assert!(matches!(
        next(&mut watch, false).await,
        WatchEvent::Bookmark(_)
    ));

    // uninstalling the CRD deletes its objects, which watchers see
    sim.delete(Kind::CustomResourceDefinition, "", "labelmaps.bulkhead.io")
        .unwrap();
    let WatchEvent::Deleted(deleted) = next(&mut watch, true).await else {
        panic!("the cascade's deletion")
    };
    assert_eq!(deleted.name_any(), "a");
    assert!(api.list(&ListParams::default()).await.is_err());

    // reinstalled, it starts empty, and an old version is as expired as for any kind
    sim.apply(common::label_map_crd()).unwrap();
    assert!(
        api.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    sim.expire_history();
    let mut stale = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    assert!(matches!(
        next(&mut stale, true).await,
        WatchEvent::Error(status) if status.code == 410
    ));
}
