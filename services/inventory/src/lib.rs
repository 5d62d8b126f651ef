//! Bulkhead's inventory: the paired clusters and what their clusterlinks observe in them (nodes,
//! pods, services, EndpointSlices, controllers, namespaces), kept as a projection of the event
//! log, and the views derived from it: host workloads, pod workloads, kube workloads, virtual
//! services, namespaces (issue 4; DESIGN.md, "Services"). The projection also follows the
//! labeling service's output in the same log (`effective/<cluster>`), so that the views carry
//! each entity's effective labels and their provenance, and queries filter by them (issue 5).
//!
//! ```text
//!  api ──ClusterCommand──────────►┐                        ┌──► ClusterCommandReply (after the
//!  api ──InventoryQuery──────────►│   service (shell)      │    projection applied the append)
//!  clusterlink ──ClusterReport───►│  verify token (sha256, ├──► ReportAck
//!  clusterlink ──ClusterHeartbeat►│  constant time), plan  │
//!  clusterlink ──DigestRequest───►│  from the index        ├──► DigestReply
//!                                 └───────┬────────────────┘
//!               AppendRequest (stream cluster/<id>,│ expected version, idempotency key)
//!                                                  ▼
//!                                              eventlog ──committed──► projection::start
//!                                     (cluster/<id>: inventory's own;      │ apply
//!                                      effective/<id>: labeling's labels)  ▼
//!                              index (pure: clusters, objects by kind/uid, their labels, pools)
//!                                     │ views (derived per query)   checkpoint: sled in data_dir
//!  presence (in memory: heartbeats, last report outcome) ──► online / sync state
//! ```
//!
//! Owners validate (principle 2): a command is planned against the projection and appended at
//! the stream version the plan saw, so a stale plan conflicts instead of overwriting; the reply
//! waits until the projection applied the append, so the api reads its own writes. A report's
//! cluster is the one its credentials prove, never one named in its objects, and observations
//! that would change nothing (same resource version, deletion of an unknown object) are not
//! appended, so re-sent reports and full resyncs cost the log nothing.
//!
//! Subjects: [`Subject::inventory_command`], [`Subject::inventory_query`] and the per-cluster
//! `report` and `digest` subjects in queue group `inventory`; `cluster_heartbeat` without a
//! queue group, so that every replica knows which clusters are online.
//!
//! [`Subject::inventory_command`]: bulkhead_schema::Subject::inventory_command
//! [`Subject::inventory_query`]: bulkhead_schema::Subject::inventory_query

mod index;
mod metrics;
mod presence;
mod report;
mod service;
mod views;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{BusError, TypedBus};
use bulkhead_runtime::health::{HEARTBEAT_INTERVAL, Health};
use bulkhead_runtime::projection::{self, ProjectionError};
use bulkhead_schema::Subject;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use index::{AuthError, token_sha256};
pub use views::{Presence, Refusal};

use service::{QUEUE_GROUP, REQUESTS_IN_FLIGHT, Service};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct InventoryConfig {
    /// Where the projection's checkpoint is kept (a sled database of its own).
    pub data_dir: PathBuf,
    /// A cluster is online while its last heartbeat is at most this old.
    pub online_period_secs: u64,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            data_dir: "/var/lib/bulkhead/inventory".into(),
            online_period_secs: 60,
        }
    }
}

impl InventoryConfig {
    /// The defaults, with the checkpoint in `data_dir` (`bulkhead up`: `<data-dir>/inventory`).
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        InventoryConfig {
            data_dir: data_dir.into(),
            ..Self::default()
        }
    }
}

/// Why inventory could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("cannot subscribe on the bus: {0}")]
    Bus(#[from] BusError),
}

impl InventoryError {
    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            InventoryError::Projection(e) => e.kind(),
            InventoryError::Bus(e) => e.kind(),
        }
    }
}

/// Runs inventory until `shutdown`: follows the log, catches up with it, then serves its
/// subjects and heartbeats as `health`. Several replicas may run on one bus.
pub async fn run(
    config: InventoryConfig,
    bus: TypedBus,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), InventoryError> {
    let online_period = Duration::from_secs(config.online_period_secs);
    projection::run_service(
        &bus,
        &config.data_dir,
        "inventory",
        &shutdown,
        async |projected, stop| {
            let service = Arc::new(Service::new(bus.clone(), projected, online_period));
            serve(&service, &bus, &health, stop).await
        },
    )
    .await
}

async fn serve(
    service: &Arc<Service>,
    bus: &TypedBus,
    health: &Health,
    stop: &CancellationToken,
) -> Result<(), InventoryError> {
    let raw = bus.raw();
    let shared = async |subject: Subject| raw.queue_subscribe(&subject, QUEUE_GROUP).await;
    let commands = shared(Subject::inventory_command()).await?;
    let queries = shared(Subject::inventory_query()).await?;
    let reports = shared(Subject::inventory_all_clusters("report")).await?;
    let digests = shared(Subject::inventory_all_clusters("digest")).await?;
    let heartbeats = raw
        .subscribe(&Subject::inventory_all_clusters("cluster_heartbeat"))
        .await?;
    health.ready();
    tracing::info!("inventory serving");
    tokio::join!(
        bus.answer_enveloped_requests(commands, REQUESTS_IN_FLIGHT, stop, |r| Service::command(
            service.clone(),
            r
        )),
        bus.answer_enveloped_requests(queries, REQUESTS_IN_FLIGHT, stop, |r| Service::query(
            service.clone(),
            r
        )),
        bus.answer_enveloped_requests(reports, REQUESTS_IN_FLIGHT, stop, |r| Service::report(
            service.clone(),
            r
        )),
        bus.answer_enveloped_requests(digests, REQUESTS_IN_FLIGHT, stop, |r| Service::digest(
            service.clone(),
            r
        )),
        bus.answer_enveloped_requests(
            heartbeats,
            REQUESTS_IN_FLIGHT,
            stop,
            |r| Service::heartbeat(service.clone(), r)
        ),
        health
            .clone()
            .publish_heartbeats(bus.clone(), HEARTBEAT_INTERVAL, stop.clone()),
    );
    Ok(())
}
