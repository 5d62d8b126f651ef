//! `nats-server` processes on loopback ports in a temp dir: a plain server to carry a bus, or
//! JetStream servers with file storage, single or clustered over loopback routes.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context as _, bail};

use crate::process::{Process, free_port};

/// How JetStream writes to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// `sync_interval: always`: fsync every message before acknowledging it (nats-server 2.10+).
    Always,
    /// The server's default: fsync on a timer (every 2 minutes), so an acknowledged message
    /// can be lost when every replica's machine loses power within the interval.
    Default,
}

/// The installed `nats-server`.
#[derive(Debug, Clone)]
pub struct Installed {
    pub binary: PathBuf,
    /// As `nats-server --version` prints it.
    pub version: String,
    /// The strongest durability the server accepts.
    pub strongest_sync: Sync,
}

impl Installed {
    pub fn probe() -> anyhow::Result<Self> {
        let binary = find_binary()?;
        let output = Command::new(&binary).arg("--version").output()?;
        let version = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        // Older servers refuse a config with a field they do not know, so testing one that asks
        // for per-message fsync tells whether it is supported.
        let dir = tempfile::tempdir()?;
        let config = dir.path().join("probe.conf");
        std::fs::write(
            &config,
            jetstream_block(&dir.path().join("js"), Sync::Always),
        )?;
        let accepted = Command::new(&binary)
            .arg("-t")
            .arg("-c")
            .arg(&config)
            .output()?
            .status
            .success();
        Ok(Installed {
            binary,
            version,
            strongest_sync: if accepted {
                Sync::Always
            } else {
                Sync::Default
            },
        })
    }
}

fn find_binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    ["/usr/sbin", "/usr/bin", "/usr/local/bin"]
        .iter()
        .map(PathBuf::from)
        .chain(std::env::split_paths(&path))
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
        .context("nats-server is not installed: `apt-get install nats-server`")
}

fn jetstream_block(store_dir: &Path, sync: Sync) -> String {
    let sync = match sync {
        Sync::Always => ", sync_interval: always",
        Sync::Default => "",
    };
    format!("jetstream {{ store_dir: {store_dir:?}{sync} }}\n")
}

/// One or more `nats-server`s, killed when dropped.
pub struct NatsServers {
    servers: Vec<Process>,
    client_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

impl NatsServers {
    /// Starts `count` servers (routed into one cluster when more than one), with JetStream on
    /// file storage when `jetstream` is set, and waits until each accepts clients.
    pub async fn start(
        installed: &Installed,
        count: usize,
        jetstream: Option<Sync>,
    ) -> anyhow::Result<Self> {
        if count == 0 {
            bail!("no nats-server to start");
        }
        let dir = tempfile::Builder::new().prefix("bench-nats-").tempdir()?;
        let client_ports = (0..count)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let route_ports = (0..count)
            .map(|_| free_port())
            .collect::<Result<Vec<_>, _>>()?;
        let mut servers = Vec::with_capacity(count);
        for i in 0..count {
            let mut config = format!(
                "server_name: \"bench-{i}\"\nlisten: \"127.0.0.1:{}\"\n",
                client_ports[i]
            );
            if let Some(sync) = jetstream {
                config.push_str(&jetstream_block(&dir.path().join(format!("js-{i}")), sync));
            }
            if count > 1 {
                let routes = route_ports
                    .iter()
                    .filter(|&&p| p != route_ports[i])
                    .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                writeln!(
                    config,
                    "cluster {{ name: \"bench\", listen: \"127.0.0.1:{}\", routes: [{routes}] }}",
                    route_ports[i]
                )?;
            }
            let path = dir.path().join(format!("server-{i}.conf"));
            std::fs::write(&path, config)?;
            let mut command = Command::new(&installed.binary);
            command.arg("-c").arg(&path);
            servers.push(Process::spawn(
                &format!("nats-server {i}"),
                command,
                &dir.path().join(format!("server-{i}.log")),
            )?);
        }
        for (server, &port) in servers.iter_mut().zip(&client_ports) {
            server.wait_for_port(port, Duration::from_secs(10)).await?;
        }
        Ok(NatsServers {
            servers,
            client_ports,
            _dir: dir,
        })
    }

    /// The URL of the first server, where clients connect.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.client_ports[0])
    }

    /// Fails, quoting its log, when a server has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        self.servers.iter_mut().try_for_each(Process::check_running)
    }
}
