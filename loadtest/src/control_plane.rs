//! Bulkhead's own processes in a benchmark: the release `bulkhead` binary, `bulkhead serve
//! <service>` children on loopback ports, a bus connection to talk to them as services do, and
//! the control plane a cluster's path starts from ([`ControlPlane`]: a nats-server, a
//! single-replica event log and inventory, a paired cluster, clusterlink watching a simulator).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use bulkhead_kubesim::RunningSim;
use bulkhead_runtime::bus::{Bus as _, NatsBus, NatsOptions, TypedBus};
use bulkhead_schema::messages::inventory::{ClusterCommand, ClusterCommandReply};
use bulkhead_schema::{Subject, WireMessage};

use crate::nats::{Installed, NatsServers};
use crate::process::{Process, free_port};

/// How long one request to a service may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The `bulkhead` binary to benchmark: `given`, or a fresh `cargo build --release -p
/// bulkhead` (a no-op when current) found next to the running benchmark.
pub fn bulkhead_binary(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = given {
        ensure!(path.is_file(), "no bulkhead binary at {}", path.display());
        return Ok(path);
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "bulkhead"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .context("run cargo to build bulkhead (or pass --bulkhead PATH)")?;
    ensure!(status.success(), "building bulkhead failed: {status}");
    // Cargo puts both binaries of the workspace in the same profile directory.
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .context("the benchmark binary has no directory")?
        .join("bulkhead");
    ensure!(path.is_file(), "no bulkhead binary at {}", path.display());
    Ok(path)
}

/// A bus connection to `nats_url`, returned once the server's info (its `max_payload`) is
/// known, so that the first large publish is not refused.
pub async fn connect_bus(nats_url: &str, name: &str) -> anyhow::Result<TypedBus> {
    let bus = NatsBus::connect(&NatsOptions {
        url: nats_url.to_owned(),
        client_name: name.to_owned(),
        ..NatsOptions::default()
    })
    .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while bus.max_payload() == 0 {
        ensure!(
            Instant::now() < deadline,
            "no connection to NATS at {nats_url} within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(TypedBus::new(Arc::new(bus)))
}

/// One `bulkhead serve <service>` child: its process and its admin port (/metrics, /healthz).
pub struct Service {
    pub process: Process,
    pub admin_port: u16,
}

impl Service {
    /// Starts `bulkhead serve <args...> --nats <url> --admin-listen <free port>`, logging to
    /// `<dir>/<name>.log`, and waits until its admin endpoint listens.
    pub async fn start(
        binary: &Path,
        name: &str,
        args: &[&str],
        nats_url: &str,
        dir: &Path,
    ) -> anyhow::Result<Self> {
        let admin_port = free_port()?;
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .args(args)
            .args(["--nats", nats_url, "--instance", name])
            .args(["--admin-listen", &format!("127.0.0.1:{admin_port}")]);
        let mut process = Process::spawn(name, command, &dir.join(format!("{name}.log")))?;
        process
            .wait_for_port(admin_port, Duration::from_secs(30))
            .await?;
        Ok(Service {
            process,
            admin_port,
        })
    }

    /// The process's resident memory, from `/proc/<pid>/statm`.
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        let statm = std::fs::read_to_string(format!("/proc/{}/statm", self.process.pid()))?;
        let pages: u64 = statm
            .split_whitespace()
            .nth(1)
            .context("statm has no resident field")?
            .parse()?;
        Ok(pages * 4096)
    }

    /// Resident memory once it stops moving (the projection applying, the allocator settling).
    pub async fn settled_resident_bytes(&self) -> anyhow::Result<u64> {
        let mut last = self.resident_bytes()?;
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.resident_bytes()?;
            if now.abs_diff(last) < 64 * 1024 {
                return Ok(now);
            }
            last = now;
        }
        Ok(last)
    }
}

/// `request` on `subject`, sent again while nobody answers (a service starting, or catching up
/// with the log before it serves), for at most `within`.
pub async fn request_when_served<Q: WireMessage, R: WireMessage>(
    bus: &TypedBus,
    subject: &Subject,
    request: &Q,
    within: Duration,
) -> anyhow::Result<R> {
    let deadline = Instant::now() + within;
    loop {
        match bus.request::<Q, R>(subject, request, REQUEST_TIMEOUT).await {
            Ok(reply) => return Ok(reply.message),
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(error) => return Err(error).with_context(|| format!("request on {subject}")),
        }
    }
}

/// A cluster paired with inventory: its id, and the token its clusterlink presents.
pub struct PairedCluster {
    pub id: String,
    pub token: String,
}

/// One nats-server and, each its own `bulkhead serve` process, a single-replica event log and
/// inventory, with their data and logs in one temp dir: where a benchmark of a cluster's path
/// through the control plane starts. Dropping it kills every process it started.
pub struct ControlPlane {
    pub bus: TypedBus,
    pub inventory: Service,
    binary: PathBuf,
    nats: NatsServers,
    _eventlog: Service,
    dir: tempfile::TempDir,
}

impl ControlPlane {
    /// Starts the processes; `purpose` names the temp dir and the bus connection.
    pub async fn start(
        binary: &Path,
        installed: &Installed,
        purpose: &str,
    ) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("bench-{purpose}-"))
            .tempdir()?;
        let nats = NatsServers::start(installed, 1, None).await?;
        let raft = format!("127.0.0.1:{}", free_port()?);
        let eventlog_dir = dir.path().join("eventlog").to_string_lossy().into_owned();
        let eventlog = Service::start(
            binary,
            "eventlog",
            &[
                "eventlog",
                "--node-id",
                "1",
                "--data-dir",
                &eventlog_dir,
                "--raft-listen",
                &raft,
                "--peers",
                &format!("1={raft}"),
                "--init",
            ],
            &nats.url(),
            dir.path(),
        )
        .await?;
        let inventory_dir = dir.path().join("inventory").to_string_lossy().into_owned();
        let inventory = Service::start(
            binary,
            "inventory",
            &["inventory", "--data-dir", &inventory_dir],
            &nats.url(),
            dir.path(),
        )
        .await?;
        let bus = connect_bus(&nats.url(), purpose).await?;
        Ok(ControlPlane {
            bus,
            inventory,
            binary: binary.to_owned(),
            nats,
            _eventlog: eventlog,
            dir,
        })
    }

    /// A directory of its own for service `name`'s data.
    pub fn data_dir(&self, name: &str) -> String {
        self.dir.path().join(name).to_string_lossy().into_owned()
    }

    /// Starts `bulkhead serve <args...>` on this control plane's bus, logging next to the
    /// others.
    pub async fn start_service(&self, name: &str, args: &[&str]) -> anyhow::Result<Service> {
        Service::start(&self.binary, name, args, &self.nats.url(), self.dir.path()).await
    }

    /// Pairs a cluster named `name`, once inventory answers (it first catches up with the log).
    pub async fn create_cluster(&self, name: &str) -> anyhow::Result<PairedCluster> {
        let command = ClusterCommand::Create {
            name: name.into(),
            description: "benchmark".into(),
        };
        let reply = request_when_served(
            &self.bus,
            &Subject::inventory_command(),
            &command,
            Duration::from_secs(30),
        )
        .await
        .context("create the cluster")?;
        match reply {
            ClusterCommandReply::Done {
                cluster,
                token: Some(token),
            } => Ok(PairedCluster {
                id: cluster.cluster_id,
                token,
            }),
            other => bail!("creating the cluster: {other:?}"),
        }
    }

    /// Starts the cluster's clusterlink, watching the simulator `sim`.
    pub async fn start_clusterlink(
        &self,
        cluster: &PairedCluster,
        sim: &RunningSim,
    ) -> anyhow::Result<Service> {
        let kubeconfig = self.dir.path().join("kubeconfig");
        sim.write_kubeconfig(&kubeconfig)?;
        self.start_service(
            "clusterlink",
            &[
                "clusterlink",
                "--cluster-id",
                &cluster.id,
                "--cluster-token",
                &cluster.token,
                "--kubeconfig",
                &kubeconfig.to_string_lossy(),
            ],
        )
        .await
    }
}
