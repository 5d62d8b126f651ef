//! Runs a process's service tasks together: all stop on SIGTERM/SIGINT, and if one fails the
//! others are stopped and the process exits non-zero.

use std::future::Future;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bulkhead_runtime::health::Health;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// How long tasks get to finish after shutdown is requested, before the process exits anyway.
const GRACE: Duration = Duration::from_secs(4);

pub struct Supervisor {
    tasks: JoinSet<(&'static str, anyhow::Result<()>)>,
    shutdown: CancellationToken,
    healths: Vec<Health>,
}

impl Supervisor {
    pub fn new(shutdown: CancellationToken) -> Self {
        Supervisor {
            tasks: JoinSet::new(),
            shutdown,
            healths: Vec::new(),
        }
    }

    pub fn shutdown(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Adds a service whose health the admin endpoint reports.
    pub fn watch_health(&mut self, health: Health) {
        self.healths.push(health);
    }

    pub fn spawn(
        &mut self,
        name: &'static str,
        task: impl Future<Output = anyhow::Result<()>> + Send + 'static,
    ) {
        self.tasks.spawn(async move { (name, task.await) });
    }

    /// Runs a service whose `start` takes its health and the shutdown token, watching its health.
    pub fn spawn_service<F, Fut, E>(&mut self, name: &'static str, instance: &str, start: F)
    where
        F: FnOnce(Health, CancellationToken) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::error::Error + Send + Sync + 'static,
    {
        let health = Health::new(name, instance);
        self.watch_health(health.clone());
        let service = start(health, self.shutdown());
        self.spawn(name, async move { service.await.map_err(Into::into) });
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` on `listen`; returns the bound address.
    pub async fn serve_admin(&mut self, listen: SocketAddr) -> anyhow::Result<SocketAddr> {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {listen} for /metrics: {e}"))?;
        let addr = listener.local_addr()?;
        let router = bulkhead_runtime::admin::router(self.healths.clone());
        let shutdown = self.shutdown.clone();
        self.spawn("admin", async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown.cancelled_owned())
                .await
                .map_err(Into::into)
        });
        Ok(addr)
    }

    /// Waits for shutdown or the first failure, then gives every task `GRACE` to finish.
    pub async fn run(mut self) -> ExitCode {
        let mut code = ExitCode::SUCCESS;
        tokio::select! {
            _ = self.shutdown.cancelled() => {}
            Some(joined) = self.tasks.join_next() => {
                code = report(joined);
                self.shutdown.cancel();
            }
        }
        let drained = tokio::time::timeout(GRACE, async {
            let mut code = code;
            while let Some(joined) = self.tasks.join_next().await {
                if report(joined) != ExitCode::SUCCESS {
                    code = ExitCode::FAILURE;
                }
            }
            code
        })
        .await;
        match drained {
            Ok(code) => code,
            Err(_) => {
                tracing::warn!("tasks did not stop within {GRACE:?}; exiting anyway");
                code
            }
        }
    }
}

fn report(joined: Result<(&'static str, anyhow::Result<()>), tokio::task::JoinError>) -> ExitCode {
    match joined {
        Ok((_, Ok(()))) => ExitCode::SUCCESS,
        Ok((name, Err(e))) => {
            tracing::error!("{name} failed: {e:#}");
            ExitCode::FAILURE
        }
        Err(e) => {
            tracing::error!("a task panicked: {e}");
            ExitCode::FAILURE
        }
    }
}
