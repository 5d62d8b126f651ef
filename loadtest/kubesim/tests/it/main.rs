//! The simulator against real clients: kube-rs (watcher, reflector, list/get/patch) and kubectl.

mod common;
mod controllers;
mod kubectl;
mod watch;

#[tokio::test(flavor = "multi_thread")]
#[ignore]
async fn scratch_serve() {
    let nodes = std::env::var("NODES").map_or(3, |n| n.parse().unwrap());
    let ppn = std::env::var("PPN").map_or(5, |n| n.parse().unwrap());
    let t = std::time::Instant::now();
    let sim = bulkhead_kubesim::Simulator::start(bulkhead_kubesim::SimConfig {
        listen: "127.0.0.1:16443".parse().unwrap(),
        nodes,
        pods_per_node: ppn,
        bookmark_interval: std::time::Duration::from_secs(2),
        ..Default::default()
    })
    .await
    .unwrap();
    println!("seeded in {:?}", t.elapsed());
    sim.seed_demo_app().unwrap();
    sim.write_kubeconfig(std::path::Path::new("/tmp/kubesim.kubeconfig"))
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_secs(120)).await;
}
