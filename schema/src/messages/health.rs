//! Liveness and readiness of services, gathered by `api` for `GET /api/v2/health`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireMessage;

/// What a service says of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ServiceState {
    /// Running but not ready to serve yet (replaying its projection, electing a leader...).
    Starting,
    /// Serving.
    Ready,
    /// Running, but something it needs is wrong; `detail` says what.
    Degraded,
    /// Shutting down.
    Stopping,
}

/// Published by every service instance on [`crate::Subject::service_heartbeats`] at a fixed
/// interval; a service not heard from for three intervals is reported as unreachable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ServiceHeartbeat {
    /// Service name, e.g. `eventlog`.
    pub service: String,
    /// Instance id, unique among the replicas of the service.
    pub instance: String,
    pub state: ServiceState,
    /// Why the service is not ready, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Version of the `bulkhead` build the instance runs.
    pub build_version: String,
    /// When the instance started, in milliseconds since the Unix epoch.
    pub started_at_ms: u64,
}

impl WireMessage for ServiceHeartbeat {
    const TYPE: &'static str = "health.ServiceHeartbeat";
    const VERSION: u16 = 1;
}
