//! The demo cluster of `bulkhead up --demo`: a simulated Kubernetes API serving a small
//! multi-tier app, paired to the embedded control plane and watched by an embedded clusterlink,
//! so that a newcomer sees a live inventory within seconds and can change it with kubectl.
//! Its namespaces are managed, and a label map turns the app's Kubernetes labels `app` and
//! `tier` into Bulkhead labels `app` and `role`, so every pod shows effective labels too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use bulkhead_clusterlink::ClusterlinkConfig;
use bulkhead_kubesim::{SimConfig, Simulator};
use bulkhead_runtime::bus::{BusError, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_schema::messages::inventory::{
    ClusterCommand, ClusterCommandReply, InventoryRejection, LabelMapItem,
};
use bulkhead_schema::messages::labeling::{
    LabelMapSpec, LabelingCommand, LabelingCommandReply, LabelingRejection, ProfileSettings,
};
use bulkhead_schema::{Subject, WireMessage};
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
    let create = ClusterCommand::Create {
        name: "demo".into(),
        description: "bulkhead up --demo".into(),
    };
    let gave_up = "inventory did not answer within a minute; the demo cluster is not paired";
    let pairing = ask_until(bus, &Subject::inventory_command(), create, gave_up, paired).await?;
    // Before clusterlink starts, so that its namespaces get profiles from the managed template.
    seed_labeling(bus, &pairing.cluster_id).await?;
    save_private(file, &serde_json::to_vec_pretty(&pairing)?)?;
    Ok(pairing)
}

/// Manages the demo cluster's namespaces and maps the app's Kubernetes labels to Bulkhead
/// labels (retried while labeling catches up with the log after a start).
async fn seed_labeling(bus: &TypedBus, cluster_id: &str) -> anyhow::Result<()> {
    let map = |from: &str, to: &str| LabelMapItem {
        from_key: from.into(),
        to_key: to.into(),
        values_map: Vec::new(),
        allow_create: true,
    };
    let commands = [
        LabelingCommand::SetTemplate {
            cluster_id: cluster_id.into(),
            settings: ProfileSettings {
                managed: true,
                ..ProfileSettings::default()
            },
        },
        LabelingCommand::PutLabelMap {
            cluster_id: cluster_id.into(),
            name: "demo".into(),
            spec: LabelMapSpec {
                node_label_map: Vec::new(),
                workload_label_map: vec![map("app", "app"), map("tier", "role")],
            },
        },
    ];
    let gave_up = "labeling did not answer within a minute; the demo cluster has no labels";
    for command in commands {
        ask_until(bus, &Subject::labeling_command(), command, gave_up, seeded).await?;
    }
    Ok(())
}

/// Inventory's answer to the demo cluster's creation: the pairing, or `None` to ask again (under
/// another name when "demo" is taken).
fn paired(
    create: &mut ClusterCommand,
    reply: Result<ClusterCommandReply, BusError>,
) -> anyhow::Result<Option<Pairing>> {
    match reply {
        Ok(ClusterCommandReply::Done {
            cluster,
            token: Some(token),
        }) => {
            return Ok(Some(Pairing {
                cluster_id: cluster.cluster_id,
                token,
            }));
        }
        Ok(ClusterCommandReply::Rejected {
            kind: InventoryRejection::Conflict,
            ..
        }) => {
            // A cluster called "demo" exists whose token is lost with an older data dir copy.
            if let ClusterCommand::Create { name, .. } = create {
                *name = format!("demo-{}", &uuid::Uuid::new_v4().simple().to_string()[..6]);
            }
        }
        Ok(ClusterCommandReply::Rejected { reason, .. }) => {
            bail!("cannot pair the demo cluster: {reason}")
        }
        Ok(other) => tracing::debug!(?other, "demo pairing: retrying"),
        Err(error) => tracing::debug!(%error, "demo pairing: inventory not ready yet"),
    }
    Ok(None)
}

/// Labeling's answer to a command of [`seed_labeling`]: `None` to ask again.
fn seeded(
    _: &mut LabelingCommand,
    reply: Result<LabelingCommandReply, BusError>,
) -> anyhow::Result<Option<()>> {
    match reply {
        Ok(LabelingCommandReply::Done { .. }) => return Ok(Some(())),
        // Labeling learns of the new cluster when it applies inventory's event.
        Ok(LabelingCommandReply::Rejected {
            kind: LabelingRejection::NotFound,
            reason,
        }) => tracing::debug!(reason, "demo labels: the cluster is not known yet"),
        Ok(LabelingCommandReply::Rejected { reason, .. }) => {
            bail!("cannot set up the demo cluster's labels: {reason}")
        }
        Ok(LabelingCommandReply::Unavailable { reason }) => {
            tracing::debug!(reason, "demo labels: retrying")
        }
        Err(error) => tracing::debug!(%error, "demo labels: labeling not ready yet"),
    }
    Ok(None)
}

/// Sends `command` until `answer` makes something of the reply, every 100 ms for a minute (a
/// service answers only once it has caught up with the log after a start): `answer` says
/// `Ok(None)` to send it again, and may change it first.
async fn ask_until<C: WireMessage, R: WireMessage, T>(
    bus: &TypedBus,
    subject: &Subject,
    mut command: C,
    gave_up: &str,
    mut answer: impl FnMut(&mut C, Result<R, BusError>) -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    for _ in 0..600 {
        let reply = bus
            .request::<_, R>(subject, &command, Duration::from_secs(5))
            .await;
        if let Some(done) = answer(&mut command, reply.map(|r| r.message))? {
            return Ok(done);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{gave_up}")
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
