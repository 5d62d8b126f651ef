//! `clusterlink`: Bulkhead's eyes in one Kubernetes cluster. It watches the cluster's API with
//! kube-rs and reports what it observes to `inventory`, at least once and in order per object;
//! after every (re)list it reconciles with what inventory holds, so that changes made while it
//! was away or disconnected are not missed.
//!
//! ```text
//!  Kubernetes API ──watch (13 kinds)──► watch.rs: one task per kind (generic over Observe);
//!   (12 built-in, and LabelMap: crd.rs)    │ a kind not served (CRD missing) holds no objects
//!                                          │ convert.rs: object ─► ObservedObject (pure)
//!                                          │ on (re)list: resync.rs diff vs digest (pure)
//!                                          ▼
//!                                  report.rs: one queue ─► batch.rs (count + bytes + linger)
//!                                          │  one report at a time, same id until acked
//!                                          ▼
//!  uplink.rs ──ClusterReport──────────► inventory.report.<cluster>     ──ReportAck──┐
//!            ──DigestRequest (paged)──► inventory.digest.<cluster>     ──DigestReply┤
//!            ──ClusterHeartbeat───────► inventory.cluster_heartbeat.<cluster>       │
//!                                                                                   ▼
//!                     status.rs: Health (Ready once every kind's first sync is acked,
//!                                Degraded while inventory rejects the credentials)
//! ```
//!
//! Pure core (`convert`, `resync`, `batch`), thin async shell (`watch`, `report`, `uplink`).
//! Nothing is persisted: a restarted clusterlink lists everything and sends only what its
//! digest comparison finds different.

/// Logs at info when `$loud` (the configured verbosity asks for it), else at debug.
macro_rules! verbose {
    ($loud:expr, $($arg:tt)+) => {
        if $loud {
            tracing::info!($($arg)+)
        } else {
            tracing::debug!($($arg)+)
        }
    };
}

mod batch;
mod config;
pub mod convert;
pub mod crd;
mod error;
mod metrics;
mod report;
mod resync;
mod status;
mod uplink;
mod watch;

use std::sync::Arc;

use bulkhead_runtime::bus::TypedBus;
use bulkhead_runtime::health::Health;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ReplicationController, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::{ClusterMode, ClusterlinkArgs, ClusterlinkConfig, NetworkType};
pub use error::ClusterlinkError;

use crate::crd::LabelMap;
use crate::report::Limits;
use crate::status::Status;
use crate::uplink::Uplink;
use crate::watch::{Shared, watch};

/// The most bytes of observations in one report: a quarter of NATS's default 1 MiB, leaving
/// room for the envelope and within what one event-log append takes.
const MAX_REPORT_BYTES: usize = 256 * 1024;

/// Runs clusterlink until `shutdown`. Fails only at start (invalid settings, no Kubernetes
/// configuration); afterwards every failure (API server, bus, inventory) is retried.
pub async fn run(
    config: ClusterlinkConfig,
    bus: TypedBus,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), ClusterlinkError> {
    let credentials = config.validate()?;
    let client = config.kube_client().await?;
    let status = Status::new(health);
    tracing::info!(
        cluster_id = %credentials.cluster_id,
        cluster_mode = config.cluster_mode.as_str(),
        network_type = config.network_type.as_str(),
        "clusterlink starting"
    );
    let limits = Limits {
        count: config.report_batch_size,
        bytes: MAX_REPORT_BYTES.min(bus.raw().max_payload() / 2),
        linger: config.report_linger(),
    };
    let uplink = Arc::new(Uplink::new(bus, credentials, &config, status.clone()));
    let (reports, queue) = report::queue();
    let shared = Arc::new(Shared {
        uplink: uplink.clone(),
        reports,
        status,
        verbosity: config.verbosity,
        absent_retry: config.absent_kind_retry(),
    });

    let mut tasks = JoinSet::new();
    tasks.spawn(report::deliver(queue, uplink.clone(), limits));
    tasks.spawn(uplink.heartbeats(
        client.clone(),
        config.heartbeat_interval(),
        config.cluster_mode,
        config.network_type,
    ));
    tasks.spawn(watch::<Namespace>(client.clone(), shared.clone()));
    tasks.spawn(watch::<Node>(client.clone(), shared.clone()));
    tasks.spawn(watch::<Pod>(client.clone(), shared.clone()));
    tasks.spawn(watch::<Service>(client.clone(), shared.clone()));
    tasks.spawn(watch::<EndpointSlice>(client.clone(), shared.clone()));
    tasks.spawn(watch::<Deployment>(client.clone(), shared.clone()));
    tasks.spawn(watch::<ReplicaSet>(client.clone(), shared.clone()));
    tasks.spawn(watch::<StatefulSet>(client.clone(), shared.clone()));
    tasks.spawn(watch::<DaemonSet>(client.clone(), shared.clone()));
    tasks.spawn(watch::<ReplicationController>(
        client.clone(),
        shared.clone(),
    ));
    tasks.spawn(watch::<Job>(client.clone(), shared.clone()));
    tasks.spawn(watch::<CronJob>(client.clone(), shared.clone()));
    tasks.spawn(watch::<LabelMap>(client, shared));

    // the tasks run until aborted: one that ends first has panicked
    let outcome = tokio::select! {
        () = shutdown.cancelled() => Ok(()),
        Some(ended) = tasks.join_next() => Err(ClusterlinkError::Task(match ended {
            Ok(()) => "ended without error".into(),
            Err(error) => error.to_string(),
        })),
    };
    // nothing to flush: what was not acknowledged is found again by the next start's resync
    tasks.shutdown().await;
    tracing::info!("clusterlink stopped");
    outcome
}
