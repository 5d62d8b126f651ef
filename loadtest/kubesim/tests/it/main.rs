use bulkhead_kubesim::{SimConfig, Simulator};

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn scratch_serve() {
    let sim = Simulator::start(SimConfig { listen: "127.0.0.1:16443".parse().unwrap(), nodes: 3, pods_per_node: 5, bookmark_interval: std::time::Duration::from_secs(2), ..Default::default() }).await.unwrap();
    sim.seed_demo_app().unwrap();
    sim.write_kubeconfig(std::path::Path::new("/tmp/kubesim.kubeconfig")).unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(3000)).await;
}
