//! `GET /api/v2/health`: the health of every service, from the heartbeats they publish.
//!
//! [`HealthBoard`] is the pure core (heartbeats in, report out, time passed in); [`watch`] feeds
//! it from the bus.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use bulkhead_runtime::bus::TypedSubscription;
use bulkhead_runtime::health::HEARTBEAT_INTERVAL;
use bulkhead_schema::messages::health::{ServiceHeartbeat, ServiceState};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::AppState;
use crate::error::Shaped;

/// An instance not heard from for this long has gone away.
const SILENCE: Duration = HEARTBEAT_INTERVAL.saturating_mul(3);

/// What `GET /api/v2/health` answers, with 200 when `status` is `healthy` and 503 otherwise.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct HealthReport {
    pub(crate) status: HealthStatus,
    /// Every expected service, and any other heard from recently, by name.
    pub(crate) services: Vec<ServiceReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum HealthStatus {
    /// Every service is healthy.
    Healthy,
    Unhealthy,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ServiceReport {
    pub(crate) name: String,
    pub(crate) state: ServiceStatus,
    /// The instances heard from recently that are not stopping, by instance id.
    pub(crate) instances: Vec<InstanceReport>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ServiceStatus {
    /// At least one instance is ready.
    Healthy,
    /// Instances are running, but none is ready.
    Unhealthy,
    /// No instance was heard from recently.
    Unreachable,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct InstanceReport {
    pub(crate) instance: String,
    /// What the instance last said of itself: `starting`, `ready` or `degraded`.
    #[schema(value_type = String, example = "ready")]
    pub(crate) state: ServiceState,
    /// Why the instance is not ready, when it said.
    pub(crate) detail: Option<String>,
    pub(crate) build_version: String,
    /// Time since its last heartbeat arrived here (by this clock, so skew does not matter).
    pub(crate) last_seen_ms_ago: u64,
}

/// The last heartbeat of every live instance.
#[derive(Debug)]
pub(crate) struct HealthBoard {
    expected: Vec<String>,
    /// By (service, instance), so that reports come out sorted.
    instances: BTreeMap<(String, String), (ServiceHeartbeat, Instant)>,
    pruned_at: Instant,
}

impl HealthBoard {
    pub(crate) fn new(expected: Vec<String>, now: Instant) -> Self {
        HealthBoard {
            expected,
            instances: BTreeMap::new(),
            pruned_at: now,
        }
    }

    pub(crate) fn observe(&mut self, heartbeat: ServiceHeartbeat, at: Instant) {
        let key = (heartbeat.service.clone(), heartbeat.instance.clone());
        if heartbeat.state == ServiceState::Stopping {
            self.instances.remove(&key);
        } else {
            self.instances.insert(key, (heartbeat, at));
        }
        // Forget instances that vanished without saying so; not on every heartbeat, as
        // thousands of instances send one each interval.
        if at.saturating_duration_since(self.pruned_at) >= SILENCE {
            self.instances
                .retain(|_, (_, seen)| at.saturating_duration_since(*seen) <= SILENCE);
            self.pruned_at = at;
        }
    }

    pub(crate) fn report(&self, now: Instant) -> HealthReport {
        let mut services: BTreeMap<&str, Vec<InstanceReport>> = self
            .expected
            .iter()
            .map(|name| (name.as_str(), Vec::new()))
            .collect();
        for ((service, instance), (heartbeat, seen)) in &self.instances {
            let silent_for = now.saturating_duration_since(*seen);
            if silent_for > SILENCE {
                continue;
            }
            services.entry(service).or_default().push(InstanceReport {
                instance: instance.clone(),
                state: heartbeat.state,
                detail: heartbeat.detail.clone(),
                build_version: heartbeat.build_version.clone(),
                last_seen_ms_ago: u64::try_from(silent_for.as_millis()).unwrap_or(u64::MAX),
            });
        }
        let services: Vec<ServiceReport> = services
            .into_iter()
            .map(|(name, instances)| {
                let state = if instances.iter().any(|i| i.state == ServiceState::Ready) {
                    ServiceStatus::Healthy
                } else if instances.is_empty() {
                    ServiceStatus::Unreachable
                } else {
                    ServiceStatus::Unhealthy
                };
                ServiceReport {
                    name: name.to_owned(),
                    state,
                    instances,
                }
            })
            .collect();
        let status = if services.iter().all(|s| s.state == ServiceStatus::Healthy) {
            HealthStatus::Healthy
        } else {
            HealthStatus::Unhealthy
        };
        HealthReport { status, services }
    }
}

/// Feeds the board every heartbeat until `stop`.
pub(crate) async fn watch(
    mut heartbeats: TypedSubscription<ServiceHeartbeat>,
    state: AppState,
    stop: CancellationToken,
) {
    loop {
        let received = tokio::select! {
            () = stop.cancelled() => return,
            received = heartbeats.next() => received,
        };
        let Some(received) = received else {
            tracing::warn!(
                "the heartbeat subscription ended: services will be reported unreachable"
            );
            return;
        };
        state.board().observe(received.message, Instant::now());
    }
}

/// Health of every service
///
/// Unauthenticated, for load balancers and probes.
#[utoipa::path(
    get,
    path = "/health",
    tag = "health",
    security(()),
    responses(
        (status = OK, description = "Every service is healthy", body = HealthReport),
        (status = SERVICE_UNAVAILABLE, description = "Some service is not healthy", body = HealthReport),
    )
)]
pub(crate) async fn get_health(State(state): State<AppState>) -> Response {
    let report = state.board().report(Instant::now());
    let status = match report.status {
        HealthStatus::Healthy => StatusCode::OK,
        HealthStatus::Unhealthy => StatusCode::SERVICE_UNAVAILABLE,
    };
    let mut response = (status, Json(report)).into_response();
    response.extensions_mut().insert(Shaped);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_heartbeat(service: &str, instance: &str, state: ServiceState) -> ServiceHeartbeat {
        ServiceHeartbeat {
            service: service.into(),
            instance: instance.into(),
            state,
            detail: None,
            build_version: "0.1.0".into(),
            started_at_ms: 0,
        }
    }

    fn states(report: &HealthReport) -> Vec<(&str, ServiceStatus, usize)> {
        report
            .services
            .iter()
            .map(|s| (s.name.as_str(), s.state, s.instances.len()))
            .collect()
    }

    #[test]
    fn expected_services_never_heard_are_unreachable() {
        let t0 = Instant::now();
        let board = HealthBoard::new(vec!["eventlog".into(), "api".into()], t0);
        let report = board.report(t0);
        assert_eq!(report.status, HealthStatus::Unhealthy);
        assert_eq!(
            states(&report),
            [
                ("api", ServiceStatus::Unreachable, 0),
                ("eventlog", ServiceStatus::Unreachable, 0)
            ]
        );
    }

    #[test]
    fn one_ready_instance_makes_a_service_healthy() {
        let t0 = Instant::now();
        let mut board = HealthBoard::new(vec!["eventlog".into()], t0);
        board.observe(mk_heartbeat("eventlog", "a", ServiceState::Starting), t0);
        assert_eq!(
            states(&board.report(t0)),
            [("eventlog", ServiceStatus::Unhealthy, 1)]
        );
        board.observe(mk_heartbeat("eventlog", "b", ServiceState::Ready), t0);
        let report = board.report(t0);
        assert_eq!(report.status, HealthStatus::Healthy);
        assert_eq!(states(&report), [("eventlog", ServiceStatus::Healthy, 2)]);
    }

    #[test]
    fn degraded_is_not_ready() {
        let t0 = Instant::now();
        let mut board = HealthBoard::new(Vec::new(), t0);
        let mut degraded = mk_heartbeat("policy", "a", ServiceState::Degraded);
        degraded.detail = Some("no leader".into());
        board.observe(degraded, t0);
        let report = board.report(t0 + Duration::from_millis(1500));
        assert_eq!(report.status, HealthStatus::Unhealthy);
        let instance = &report.services[0].instances[0];
        assert_eq!(instance.detail.as_deref(), Some("no leader"));
        assert_eq!(instance.last_seen_ms_ago, 1500);
    }

    #[test]
    fn unexpected_services_appear_while_heard() {
        let t0 = Instant::now();
        let mut board = HealthBoard::new(Vec::new(), t0);
        board.observe(mk_heartbeat("labeling", "a", ServiceState::Ready), t0);
        assert_eq!(
            states(&board.report(t0)),
            [("labeling", ServiceStatus::Healthy, 1)]
        );
        assert_eq!(
            states(&board.report(t0 + SILENCE + Duration::from_millis(1))),
            []
        );
    }

    #[test]
    fn silent_instances_drop_out_after_three_intervals() {
        let t0 = Instant::now();
        let mut board = HealthBoard::new(vec!["eventlog".into()], t0);
        board.observe(mk_heartbeat("eventlog", "a", ServiceState::Ready), t0);
        assert_eq!(board.report(t0 + SILENCE).status, HealthStatus::Healthy);
        let later = t0 + SILENCE + Duration::from_millis(1);
        assert_eq!(
            states(&board.report(later)),
            [("eventlog", ServiceStatus::Unreachable, 0)]
        );
        // and are forgotten, not just hidden
        board.observe(mk_heartbeat("eventlog", "b", ServiceState::Ready), later);
        assert_eq!(board.instances.len(), 1);
    }

    #[test]
    fn stopping_instances_drop_out_at_once() {
        let t0 = Instant::now();
        let mut board = HealthBoard::new(vec!["eventlog".into()], t0);
        board.observe(mk_heartbeat("eventlog", "a", ServiceState::Ready), t0);
        board.observe(mk_heartbeat("eventlog", "b", ServiceState::Ready), t0);
        board.observe(mk_heartbeat("eventlog", "a", ServiceState::Stopping), t0);
        let report = board.report(t0);
        assert_eq!(report.services[0].instances[0].instance, "b");
        board.observe(mk_heartbeat("eventlog", "b", ServiceState::Stopping), t0);
        assert_eq!(
            states(&board.report(t0)),
            [("eventlog", ServiceStatus::Unreachable, 0)]
        );
    }
}
