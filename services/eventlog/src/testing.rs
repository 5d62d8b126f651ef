//! The event log as services' tests run against it (feature `testing`): one replica on an
//! in-process bus, in a temp dir, as `bulkhead up` runs it. Stopped when dropped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{BusError, InProcessBus, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_schema::{Subject, WireMessage};
use tokio_util::sync::CancellationToken;

use crate::EventlogConfig;

/// A single-node log and the bus it serves on; services under test join the bus and keep
/// their data next to the log's, in [`SingleNodeLog::dir`].
pub struct SingleNodeLog {
    pub bus: TypedBus,
    dir: tempfile::TempDir,
    stop: CancellationToken,
}

impl SingleNodeLog {
    /// Starts the log (it elects itself meanwhile: [`SingleNodeLog::ask`] waits for it).
    pub fn start() -> Self {
        let bus = TypedBus::new(Arc::new(InProcessBus::default()));
        let dir = tempfile::tempdir().expect("a temp dir");
        let stop = CancellationToken::new();
        tokio::spawn(crate::run(
            EventlogConfig::single_node(dir.path().join("eventlog")),
            bus.clone(),
            Health::new("eventlog", "1"),
            stop.clone(),
        ));
        SingleNodeLog { bus, dir, stop }
    }

    /// Where services under test keep their data.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// [`ask_until_served`] on this log's bus.
    pub async fn ask<Q: WireMessage, R: WireMessage>(
        &self,
        subject: &Subject,
        request: &Q,
        wait: Duration,
    ) -> R {
        ask_until_served(&self.bus, subject, request, wait).await
    }
}

/// A request, retried while nobody serves `subject` yet (the log electing itself, a new leader
/// subscribing to appends, a service catching up), each attempt and the retries bounded by
/// `wait`; panics on any other error.
pub async fn ask_until_served<Q: WireMessage, R: WireMessage>(
    bus: &TypedBus,
    subject: &Subject,
    request: &Q,
    wait: Duration,
) -> R {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match bus.request::<Q, R>(subject, request, wait).await {
            Ok(reply) => return reply.message,
            Err(BusError::NoResponders(_)) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            Err(error) => panic!("{subject}: {error}"),
        }
    }
}

impl Drop for SingleNodeLog {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
