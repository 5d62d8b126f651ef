//! The admin endpoints every service process serves for its operators and for Kubernetes
//! probes: `/metrics`, `/healthz` (alive) and `/readyz` (ready to serve).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use bulkhead_schema::messages::health::ServiceState;

use crate::health::Health;

/// The admin routes over the health of every service in the process.
pub fn router(services: Vec<Health>) -> Router {
    Router::new()
        .route("/metrics", get(|| async { crate::metrics::render() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(services)
}

async fn readyz(State(services): State<Vec<Health>>) -> (StatusCode, String) {
    let mut body = String::new();
    let mut ready = true;
    for health in &services {
        let (state, detail) = health.state();
        ready &= state == ServiceState::Ready;
        body.push_str(&format!(
            "{}: {:?}{}\n",
            health.service(),
            state,
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        ));
    }
    (
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        body,
    )
}
