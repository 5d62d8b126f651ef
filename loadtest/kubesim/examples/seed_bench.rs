#[tokio::main]
async fn main() {
    let t = std::time::Instant::now();
    let sim = bulkhead_kubesim::Simulator::start(bulkhead_kubesim::SimConfig { listen: "127.0.0.1:16443".parse().unwrap(), nodes: 200, pods_per_node: 110, ..Default::default() }).await.unwrap();
    println!("seeded 200x110 in {:?}", t.elapsed());
    sim.write_kubeconfig(std::path::Path::new("/tmp/kubesim.kubeconfig")).unwrap();
    let t = std::time::Instant::now();
    for i in 0..100 { sim.scale(bulkhead_kubesim::Kind::Deployment, &format!("team-{:03}", i), "web", 11).unwrap(); }
    println!("100 scale-ups in {:?}", t.elapsed());
    tokio::time::sleep(std::time::Duration::from_secs(90)).await;
}
