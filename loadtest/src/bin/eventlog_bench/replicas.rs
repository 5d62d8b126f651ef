//! Bulkhead event log replicas as `bulkhead serve eventlog` processes on loopback ports, with
//! the nats-server they serve on, their data in one temp dir.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bulkhead_loadtest::control_plane::connect_bus;
use bulkhead_loadtest::nats::{Installed, NatsServers};
use bulkhead_loadtest::process::{Process, free_port};
use bulkhead_runtime::bus::TypedBus;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::{LogStatus, RaftRole, StatusRequest};

const STATUS_TIMEOUT: Duration = Duration::from_millis(500);
const POLL_PAUSE: Duration = Duration::from_millis(50);

pub struct Replicas {
    binary: PathBuf,
    members: Vec<Member>,
    bus: TypedBus,
    // Declared after the replicas so that they are killed before their NATS server goes.
    nats: NatsServers,
    dir: tempfile::TempDir,
}

struct Member {
    id: u64,
    raft_port: u16,
    admin_port: u16,
    process: Option<Process>,
}

impl Replicas {
    /// Starts `count` replicas, replica 1 initialising the cluster, and waits until each serves
    /// its admin endpoint. It does not wait for a leader: appending tells when the log is up.
    pub async fn start(binary: &Path, installed: &Installed, count: u64) -> anyhow::Result<Self> {
        let nats = NatsServers::start(installed, 1, None).await?;
        let dir = tempfile::Builder::new()
            .prefix("bench-eventlog-")
            .tempdir()?;
        let members = (1..=count)
            .map(|id| {
                Ok(Member {
                    id,
                    raft_port: free_port()?,
                    admin_port: free_port()?,
                    process: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let bus = connect_bus(&nats.url(), "eventlog-bench-status").await?;
        let mut replicas = Replicas {
            binary: binary.to_owned(),
            members,
            bus,
            nats,
            dir,
        };
        for id in 1..=count {
            replicas.spawn(id, id == 1).await?;
        }
        Ok(replicas)
    }

    pub fn nats_url(&self) -> String {
        self.nats.url()
    }

    async fn spawn(&mut self, id: u64, init: bool) -> anyhow::Result<()> {
        let peers = self
            .members
            .iter()
            .map(|m| format!("{}=127.0.0.1:{}", m.id, m.raft_port))
            .collect::<Vec<_>>()
            .join(",");
        let data_dir = self.dir.path().join(format!("replica-{id}"));
        let log = self.dir.path().join(format!("replica-{id}.log"));
        let nats_url = self.nats.url();
        let (raft_port, admin_port) = {
            let member = self.member(id)?;
            (member.raft_port, member.admin_port)
        };
        let mut command = Command::new(&self.binary);
        command
            .args(["serve", "eventlog", "--node-id", &id.to_string()])
            .args(["--instance", &format!("eventlog-{id}")])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--raft-listen", &format!("127.0.0.1:{}", raft_port)])
            .args(["--peers", &peers])
            .args(["--nats", &nats_url])
            .args(["--admin-listen", &format!("127.0.0.1:{}", admin_port)]);
        if init {
            command.arg("--init");
        }
        let mut process = Process::spawn(&format!("eventlog replica {id}"), command, &log)?;
        process
            .wait_for_port(admin_port, Duration::from_secs(30))
            .await?;
        self.member(id)?.process = Some(process);
        Ok(())
    }

    fn member(&mut self, id: u64) -> anyhow::Result<&mut Member> {
        self.members
            .iter_mut()
            .find(|m| m.id == id)
            .with_context(|| format!("no replica {id}"))
    }

    /// Replica `id`'s own view of the log.
    async fn status(&self, id: u64) -> anyhow::Result<LogStatus> {
        let reply = self
            .bus
            .request::<StatusRequest, LogStatus>(
                &Subject::eventlog_node_status(id),
                &StatusRequest {},
                STATUS_TIMEOUT,
            )
            .await?;
        Ok(reply.message)
    }

    /// The replica that says it is the leader, waiting up to `within` for one.
    pub async fn leader(&self, within: Duration) -> anyhow::Result<u64> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            for member in self.members.iter().filter(|m| m.process.is_some()) {
                if let Ok(status) = self.status(member.id).await
                    && status.role == RaftRole::Leader
                {
                    return Ok(member.id);
                }
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        bail!("no replica was leader within {within:?}")
    }

    /// Waits until every running replica knows the same leader: until then, appends sent to a
    /// replica that knows none are refused (and retried), which is the cluster starting, not
    /// the throughput of the log.
    pub async fn settled(&self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            let mut leaders = Vec::new();
            for member in self.members.iter().filter(|m| m.process.is_some()) {
                leaders.push(self.status(member.id).await.ok().and_then(|s| s.leader));
            }
            leaders.dedup();
            if let [Some(_)] = leaders[..] {
                return Ok(());
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        bail!("the replicas did not agree on a leader within {within:?}")
    }

    /// SIGKILLs replica `id`; returns when the signal was sent.
    pub fn kill(&mut self, id: u64) -> anyhow::Result<Instant> {
        let process = self
            .member(id)?
            .process
            .take()
            .with_context(|| format!("replica {id} is not running"))?;
        Ok(process.kill())
    }

    /// Restarts replica `id` from its data and waits until the leader has replicated its whole
    /// log to it, so that the cluster can lose another replica.
    pub async fn restart(&mut self, id: u64, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        self.spawn(id, false).await?;
        while Instant::now() < deadline {
            let leader = self.leader(deadline - Instant::now()).await?;
            if let Ok(status) = self.status(leader).await
                && status
                    .replication
                    .iter()
                    .any(|p| p.node_id == id && p.matched_index.is_some() && p.lag == 0)
            {
                return Ok(());
            }
            tokio::time::sleep(POLL_PAUSE).await;
        }
        bail!("replica {id} did not catch up within {within:?} of its restart")
    }

    /// Fails, quoting its log, when a replica that should run has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.members
            .iter_mut()
            .filter_map(|m| m.process.as_mut())
            .try_for_each(Process::check_running)
    }
}
