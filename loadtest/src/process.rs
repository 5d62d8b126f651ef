//! Child processes of a benchmark. Each is SIGKILLed when dropped, so an aborted run leaves
//! nothing behind, and writes its output to a log file, so a failed run can be diagnosed.

use std::fs::OpenOptions;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `command` with stdout and stderr appended to `log`, so that a restarted process
    /// keeps the output of its earlier life next to its new one.
    pub fn spawn(name: &str, mut command: Command, log: &Path) -> anyhow::Result<Self> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("open {}", log.display()))?;
        let child = command
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start {name}: {command:?}"))?;
        Ok(Process {
            name: name.to_owned(),
            child,
            log: log.to_owned(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILLs the process, as a crash would, and returns when the signal was sent (taken just
    /// before sending, so a gap measured from it is never too short).
    pub fn kill(mut self) -> Instant {
        let at = Instant::now();
        let _ = self.child.kill();
        let _ = self.child.wait();
        at
    }

    /// Fails, quoting the end of the log, when the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited ({status}); end of {}:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// The last lines of the log, for error messages.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Waits until the process accepts TCP connections on `port` of loopback.
    pub async fn wait_for_port(&mut self, port: u16, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            self.check_running()?;
            if Instant::now() >= deadline {
                bail!(
                    "{} did not listen on port {port} within {timeout:?}",
                    self.name
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Returns on Ctrl-C or SIGTERM. A benchmark races its run against it, so that the run is
/// dropped, and with it every process it started and every temp dir, instead of the signal
/// killing the benchmark alone and leaving its children running.
async fn interrupted() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        ctrl_c = tokio::signal::ctrl_c() => Ok(ctrl_c?),
        _ = terminate.recv() => Ok(()),
    }
}

/// A benchmark's `main`: runs `run` until it ends or Ctrl-C/SIGTERM, which drops the run and with
/// it every process it started and every temp dir. An error is printed prefixed by `name`, with
/// a failing exit code; an interruption exits with 130.
pub async fn bench_main<T: std::process::Termination>(
    name: &str,
    run: impl Future<Output = anyhow::Result<T>>,
) -> std::process::ExitCode {
    let failed = |error: anyhow::Error| {
        eprintln!("{name}: {error:#}");
        std::process::ExitCode::FAILURE
    };
    tokio::select! {
        outcome = run => outcome.map_or_else(failed, |done| done.report()),
        signal = interrupted() => match signal {
            Ok(()) => {
                eprintln!("{name}: interrupted: stopped every process of the run");
                std::process::ExitCode::from(130)
            }
            Err(error) => failed(error),
        },
    }
}
