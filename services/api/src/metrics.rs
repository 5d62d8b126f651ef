//! The api's Prometheus metrics, in the process-wide registry of `bulkhead_runtime::metrics`.

use std::sync::LazyLock;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use prometheus::IntCounterVec;

pub(crate) static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_api_requests_total",
        "HTTP requests the api answered, by status code",
        &["status"],
    )
});

pub(crate) static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_api_auth_failures_total",
        "Requests refused for want of a valid API key, by reason: missing, malformed, wrong",
        &["reason"],
    )
});

/// Counts every answer, errors included, by its final status.
pub(crate) async fn count_requests(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    REQUESTS
        .with_label_values(&[response.status().as_str()])
        .inc();
    response
}
