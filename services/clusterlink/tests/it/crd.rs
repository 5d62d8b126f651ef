//! The LabelMap custom resource on a cluster whose CRD is missing, installed late, or
//! uninstalled: the other kinds never wait for it, and inventory ends up holding what exists.

use std::time::Duration;

use bulkhead_clusterlink::ClusterlinkConfig;
use bulkhead_schema::messages::health::ServiceState;
use bulkhead_schema::messages::inventory::ResourceKind;

use crate::common::{
    Env, Link, Recorder, bounded, install_label_map_crd, label_map, pod, uninstall_label_map_crd,
};

fn label_maps(recorder: &Recorder) -> usize {
    recorder
        .objects()
        .keys()
        .filter(|(kind, _)| *kind == ResourceKind::LabelMap)
        .count()
}

fn label_map_digests(recorder: &Recorder) -> usize {
    recorder
        .lock()
        .digests
        .iter()
        .filter(|d| d.kind == ResourceKind::LabelMap)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_crd_holds_nothing_up_and_label_maps_follow_its_installation() {
    bounded(async {
        let env = Env::start().await;
        uninstall_label_map_crd(&env.sim);
        let config = ClusterlinkConfig {
            absent_kind_retry_ms: 200,
            ..env.config()
        };
        let link = Link::start(config.clone(), env.bus.clone());
        link.state_is(ServiceState::Ready).await;
        assert_eq!(env.recorder.objects(), env.expected());
        assert_eq!(label_maps(&env.recorder), 0);

        // the other kinds are followed meanwhile
        env.sim.apply(pod("shop", "meanwhile")).unwrap();
        env.converged("a pod created while LabelMaps are not served")
            .await;
        // inventory heard once that there are none, not at every look for the CRD
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        assert_eq!(label_map_digests(&env.recorder), 1);

        install_label_map_crd(&env.sim);
        env.sim.apply(label_map("default")).unwrap();
        env.converged("the LabelMap once its CRD is installed")
            .await;
        assert_eq!(label_maps(&env.recorder), 1);

        // uninstalled live: its objects' deletions are watched like any
        uninstall_label_map_crd(&env.sim);
        env.converged("the LabelMap gone with its CRD").await;
        assert_eq!(label_maps(&env.recorder), 0);

        // uninstalled while clusterlink is away: the restart tells inventory
        install_label_map_crd(&env.sim);
        env.sim.apply(label_map("default")).unwrap();
        env.converged("the LabelMap reinstalled").await;
        link.stop().await;
        uninstall_label_map_crd(&env.sim);
        let link = Link::start(config, env.bus.clone());
        link.state_is(ServiceState::Ready).await;
        env.converged("the LabelMap gone while clusterlink was away")
            .await;
        assert_eq!(label_maps(&env.recorder), 0);
        link.stop().await;
    })
    .await;
}
