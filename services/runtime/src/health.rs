//! A service's own health: what it reports in heartbeats on the bus and on `/readyz`.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_schema::Subject;
use bulkhead_schema::messages::health::{ServiceHeartbeat, ServiceState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::bus::TypedBus;

/// How often services publish heartbeats; `api` reports a service silent for three of these.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(2);

/// The state of one service instance, shared by its tasks.
#[derive(Clone)]
pub struct Health {
    service: Arc<str>,
    instance: Arc<str>,
    started_at_ms: u64,
    state: Arc<watch::Sender<(ServiceState, Option<String>)>>,
}

impl Health {
    /// A new instance of `service`, `Starting`.
    pub fn new(service: &str, instance: &str) -> Self {
        Health {
            service: service.into(),
            instance: instance.into(),
            started_at_ms: crate::now_ms(),
            state: Arc::new(watch::Sender::new((ServiceState::Starting, None))),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn set(&self, state: ServiceState, detail: Option<String>) {
        self.state.send_replace((state, detail));
    }

    pub fn ready(&self) {
        self.set(ServiceState::Ready, None);
    }

    pub fn state(&self) -> (ServiceState, Option<String>) {
        self.state.borrow().clone()
    }

    pub fn heartbeat(&self) -> ServiceHeartbeat {
        let (state, detail) = self.state();
        ServiceHeartbeat {
            service: self.service.to_string(),
            instance: self.instance.to_string(),
            state,
            detail,
            build_version: env!("CARGO_PKG_VERSION").into(),
            started_at_ms: self.started_at_ms,
        }
    }

    /// Publishes a heartbeat every `interval` and whenever the state changes, until `shutdown`;
    /// then one last `Stopping` heartbeat.
    pub async fn publish_heartbeats(
        self,
        bus: TypedBus,
        interval: Duration,
        shutdown: CancellationToken,
    ) {
        let subject = Subject::service_heartbeats();
        let mut changes = self.state.subscribe();
        let mut ticker = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
                changed = changes.changed() => if changed.is_err() { break },
            }
            if let Err(error) = bus.publish(&subject, &self.heartbeat()).await {
                tracing::warn!(service = %self.service, %error, "cannot publish heartbeat");
            }
        }
        self.set(ServiceState::Stopping, None);
        let _ = bus.publish(&subject, &self.heartbeat()).await;
    }
}
