//! The demo cluster of `bulkhead up --demo`: a simulated Kubernetes API serving a small
//! multi-tier app, paired to the embedded control plane and watched by an embedded clusterlink,
//! so that a newcomer sees a live inventory within seconds and can change it with kubectl.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use bulkhead_clusterlink::ClusterlinkConfig;
use bulkhead_kubesim::{SimConfig, Simulator};
use bulkhead_runtime::bus::TypedBus;
use bulkhead_runtime::health::Health;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::inventory::{
    ClusterCommand, ClusterCommandReply, InventoryRejection,
};
use serde::{Deserialize, Serialize};

use crate::supervisor::Supervisor;

/// Where the demo cluster's kubeconfig is written.
pub fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("demo.kubeconfig")
}

/// The pairing of the demo cluster, kept so that a restart keeps the same cluster.
#[derive(Serialize, Deserialize)]
struct Pairing {
    cluster_id: String,
    token: String,
}

/// Starts the simulated cluster and, in the background, pairs it and runs its clusterlink.
pub async fn start(
    supervisor: &mut Supervisor,
    bus: TypedBus,
    data_dir: &Path,
) -> anyhow::Result<()> {
    let sim = Simulator::start(SimConfig {
        listen: ([127, 0, 0, 1], 0).into(),
        nodes: 3,
        ..SimConfig::default()
    })
    .await
    .context("cannot start the demo cluster")?;
    sim.seed_demo_app().context("cannot seed the demo app")?;
    let kubeconfig = kubeconfig_path(data_dir);
    sim.write_kubeconfig(&kubeconfig)?;

    let shutdown = supervisor.shutdown();
    supervisor.spawn("kubesim", async move {
        shutdown.cancelled().await;
        sim.stop().await;
        Ok(())
    });

    let health = Health::new("clusterlink", "demo");
    supervisor.watch_health(health.clone());
    let shutdown = supervisor.shutdown();
    let pairing_file = data_dir.join("demo-cluster.json");
    supervisor.spawn("clusterlink", async move {
        let pairing = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            pairing = pair(&bus, &pairing_file) => pairing?,
        };
        let config = ClusterlinkConfig {
            cluster_id: pairing.cluster_id,
            cluster_token: Some(pairing.token),
            kubeconfig: Some(kubeconfig),
            ..ClusterlinkConfig::default()
        };
        bulkhead_clusterlink::run(config, bus, health, shutdown).await?;
        Ok(())
    });
    Ok(())
}

/// The saved pairing, or a new cluster created through inventory (retried while inventory
/// catches up with the log after a start).
async fn pair(bus: &TypedBus, file: &Path) -> anyhow::Result<Pairing> {
    if let Ok(saved) = std::fs::read(file) {
        return serde_json::from_slice(&saved)
            .with_context(|| format!("{} is damaged", file.display()));
    }
    let mut name = "demo".to_owned();
    for _ in 0..600 {
        let command = ClusterCommand::Create {
            name: name.clone(),
            description: "bulkhead up --demo".into(),
        };
        let reply = bus
            .request::<_, ClusterCommandReply>(
                &Subject::inventory_command(),
                &command,
                Duration::from_secs(5),
            )
            .await;
        match reply.map(|r| r.message) {
            Ok(ClusterCommandReply::Done {
                cluster,
                token: Some(token),
            }) => {
                let pairing = Pairing {
                    cluster_id: cluster.cluster_id,
                    token,
                };
                save_private(file, &serde_json::to_vec_pretty(&pairing)?)?;
                return Ok(pairing);
            }
            Ok(ClusterCommandReply::Rejected {
                kind: InventoryRejection::Conflict,
                ..
            }) => {
                // A cluster called "demo" exists whose token is lost with an older data dir copy.
                name = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
            }
            Ok(ClusterCommandReply::Rejected { reason, .. }) => {
                bail!("cannot pair the demo cluster: {reason}")
            }
            Ok(other) => tracing::debug!(?other, "demo pairing: retrying"),
            Err(error) => tracing::debug!(%error, "demo pairing: inventory not ready yet"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(anyhow!(
        "inventory did not answer within a minute; the demo cluster is not paired"
    ))
}

fn save_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    Ok(())
}
