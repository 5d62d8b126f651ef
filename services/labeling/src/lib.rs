//! Bulkhead's labeling: label dimensions, labels, label groups, container workload profiles
//! (one per namespace, a template per cluster, pairing keys), label maps, and the effective
//! labels of every node, pod, service and kube workload, kept as a projection of the event log
//! (issue 5; DESIGN.md, "Services").
//!
//! ```text
//!  api ──LabelingCommand──►┐  service (shell): plan     ┌──► LabelingCommandReply (after the
//!  api ──LabelingQuery────►│  against the index, append ├──► LabelingReply   projection applied)
//!                          └────────────┬───────────────┘
//!          AppendRequest (stream `labeling`, expected version, key)
//!                                       ▼
//!   inventory ──cluster/<id>──► eventlog ──committed──► projection::start ──apply──► index (pure)
//!                                  ▲                      catalog, profiles, label maps, objects,
//!                                  │                      resolutions, reverse indexes, output queue
//!                                  └──EffectiveLabels (stream effective/<cluster>, at its version)──
//!                                       output writer (every replica; one append per version wins)
//! ```
//!
//! - Labels: keys `role`, `app`, `env`, `loc` and up to 60 more; values unique per key
//!   (ignoring case); hrefs `/orgs/1/labels/<id>`, groups `/orgs/1/label_groups/<id>`. A
//!   label, group or key is not deleted while anything uses it (profiles, templates, groups,
//!   label map rules translating to it, entities carrying it).
//! - Profiles: a namespace gets its own profile, from the cluster's template, when inventory
//!   first shows it; it goes away with the namespace. A pre-created profile is pending until a
//!   namespace of its cluster carries its pairing key (`bulkhead.io/pairing-key` or
//!   `com.illumio.pairing_key`): the namespace is then linked to it (its own profile goes); a
//!   key that links nothing is logged as `PairingKeyRejected` and counted. When a linked
//!   namespace is deleted, its pre-created profile is pending again, so that re-creating the
//!   namespace from the same manifest links it again.
//! - Resolution (module `resolve`): label map > profile assignment > annotation (allowed by the
//!   profile's restriction, naming an existing label); host-network pods take their node's
//!   labels; unmanaged namespaces' workloads get none.
//! - Label maps: LabelMap custom resources (from inventory) first, then api-defined ones, each
//!   in name order; per key, the last rule that yields a label wins.
//! - Output: entities whose labels changed are queued in the projection and written as
//!   `LabelingEvent::EffectiveLabels` to `effective/<cluster>` (module `output`), each
//!   distinct label and source once per event; the writer sends each append as soon as it is
//!   cut and cuts the next meanwhile. The projection reads of these events only where they end.
//!
//! Subjects: [`Subject::labeling_command`] and [`Subject::labeling_query`], queue group
//! `labeling`.
//!
//! [`Subject::labeling_command`]: bulkhead_schema::Subject::labeling_command
//! [`Subject::labeling_query`]: bulkhead_schema::Subject::labeling_query

mod catalog;
mod index;
mod metrics;
mod objects;
mod output;
mod plan;
mod resolve;
mod rules;
mod service;
mod snapshot;
mod views;

use std::path::PathBuf;
use std::sync::Arc;

use bulkhead_runtime::bus::{BusError, TypedBus};
use bulkhead_runtime::health::{HEARTBEAT_INTERVAL, Health};
use bulkhead_runtime::projection::{self, ProjectionError};
use bulkhead_schema::Subject;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use service::{QUEUE_GROUP, REQUESTS_IN_FLIGHT, Service};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct LabelingConfig {
    /// Where the projection's checkpoint is kept (a sled database of its own).
    pub data_dir: PathBuf,
}

impl Default for LabelingConfig {
    fn default() -> Self {
        LabelingConfig {
            data_dir: "/var/lib/bulkhead/labeling".into(),
        }
    }
}

impl LabelingConfig {
    /// The defaults, with the checkpoint in `data_dir` (`bulkhead up`: `<data-dir>/labeling`).
    pub fn embedded(data_dir: impl Into<PathBuf>) -> Self {
        LabelingConfig {
            data_dir: data_dir.into(),
        }
    }
}

/// Why labeling could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum LabelingError {
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("cannot subscribe on the bus: {0}")]
    Bus(#[from] BusError),
}

impl LabelingError {
    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            LabelingError::Projection(e) => e.kind(),
            LabelingError::Bus(e) => e.kind(),
        }
    }
}

/// Runs labeling until `shutdown`: follows the log, catches up with it, then serves its
/// subjects, writes derived output and heartbeats as `health`. Several replicas may run on
/// one bus.
pub async fn run(
    config: LabelingConfig,
    bus: TypedBus,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), LabelingError> {
    projection::run_service(
        &bus,
        &config.data_dir,
        "labeling",
        &shutdown,
        // only once caught up: output written before would repeat what replicas wrote long ago
        async |projected, stop| {
            let service = Arc::new(Service::new(bus.clone(), projected));
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
) -> Result<(), LabelingError> {
    let raw = bus.raw();
    let commands = raw
        .queue_subscribe(&Subject::labeling_command(), QUEUE_GROUP)
        .await?;
    let queries = raw
        .queue_subscribe(&Subject::labeling_query(), QUEUE_GROUP)
        .await?;
    health.ready();
    tracing::info!("labeling serving");
    tokio::join!(
        bus.answer_enveloped_requests(commands, REQUESTS_IN_FLIGHT, stop, |r| Service::command(
            service.clone(),
            r
        )),
        bus.answer_enveloped_requests(queries, REQUESTS_IN_FLIGHT, stop, |r| Service::query(
            service.clone(),
            r
        )),
        service.write_output(stop),
        health
            .clone()
            .publish_heartbeats(bus.clone(), HEARTBEAT_INTERVAL, stop.clone()),
    );
    Ok(())
}
