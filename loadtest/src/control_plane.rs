//! Bulkhead's own processes in a benchmark: the release `bulkhead` binary, `bulkhead serve
//! <service>` children on loopback ports, and a bus connection to talk to them as services do.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use bulkhead_runtime::bus::{Bus as _, NatsBus, NatsOptions, TypedBus};

use crate::process::{Process, free_port};

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
}
