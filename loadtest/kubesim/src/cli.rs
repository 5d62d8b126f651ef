//! `bulkhead kubesim`: the simulator as a command.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::{
    error::Error,
    sim::{SimConfig, Simulator},
};

/// Serve a simulated Kubernetes API (plain HTTP; keep it on loopback).
#[derive(Debug, Clone, clap::Args)]
pub struct KubesimArgs {
    /// Address to serve the API on.
    #[arg(long, default_value = "127.0.0.1:6443")]
    pub listen: SocketAddr,
    /// Nodes of the synthetic cluster.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Pods per node of the synthetic cluster (one host-network DaemonSet pod per node, the rest
    /// from Deployments with Services).
    #[arg(long, default_value_t = 0)]
    pub pods_per_node: usize,
    /// Write a kubeconfig for the simulator to this file.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig_out: Option<PathBuf>,
    /// Add the demo app (namespaces shop and payments).
    #[arg(long)]
    pub demo: bool,
    /// Watch events retained per kind; watches from further back get 410 Expired.
    #[arg(long, default_value_t = 10_000)]
    pub history: usize,
    /// Seconds between watch bookmarks.
    #[arg(long, default_value_t = 10)]
    pub bookmark_seconds: u64,
}

/// Runs the simulator until `shutdown` is cancelled.
pub async fn run(args: KubesimArgs, shutdown: CancellationToken) -> Result<(), Error> {
    let config = SimConfig {
        listen: args.listen,
        nodes: args.nodes,
        pods_per_node: args.pods_per_node,
        history: args.history,
        bookmark_interval: Duration::from_secs(args.bookmark_seconds.max(1)),
    };
    let sim = Simulator::start(config).await?;
    if args.demo {
        sim.seed_demo_app()?;
    }
    println!("kubesim: Kubernetes API on {}", sim.url());
    if let Some(path) = &args.kubeconfig_out {
        sim.write_kubeconfig(path)?;
        println!(
            "kubesim: kubeconfig written to {} (kubectl --kubeconfig {0} get pods -A)",
            path.display()
        );
    }
    shutdown.cancelled().await;
    sim.stop().await;
    Ok(())
}
