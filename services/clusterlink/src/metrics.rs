//! clusterlink's metrics, in the process-wide registry. Labels are bounded: kinds, request
//! types, error kinds.

use std::sync::LazyLock;
use std::time::Duration;

use bulkhead_runtime::metrics::{counter_vec, registry};
use bulkhead_schema::messages::inventory::{Observation, ResourceKind};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec};

use crate::convert::Dropped;
use crate::status::Request;

static OBSERVATIONS_SENT: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_clusterlink_observations_sent_total",
        "Observations inventory acknowledged, by kind and change (applied, deleted)",
        &["kind", "change"],
    )
});

static RETRIED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_clusterlink_requests_retried_total",
        "Requests to inventory sent again, by request (report, digest) and reason",
        &["request", "reason"],
    )
});

static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_clusterlink_rejections_total",
        "Requests inventory rejected, by request and the rejection's kind",
        &["request", "kind"],
    )
});

static WATCH_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_clusterlink_watch_errors_total",
        "Errors of the Kubernetes watches (each followed by a retry with back-off), by kind",
        &["kind"],
    )
});

static DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_clusterlink_dropped_parts_total",
        "Unusable parts of custom resources left out (LabelMap items, valuesMap entries), each \
         time an object holding them is observed, by kind and reason",
        &["kind", "reason"],
    )
});

static RESYNC_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    let histogram = HistogramVec::new(
        HistogramOpts::new(
            "bulkhead_clusterlink_resync_seconds",
            "From a watch's (re)list to inventory acknowledging the resync, by kind",
        )
        .buckets(vec![
            0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ]),
        &["kind"],
    )
    .expect("valid histogram");
    registry()
        .register(Box::new(histogram.clone()))
        .expect("metric registered once");
    histogram
});

fn kind_label(kind: ResourceKind) -> &'static str {
    kind.kube_kind()
}

pub fn sent(observations: &[Observation]) {
    for observation in observations {
        let (kind, change) = match observation {
            Observation::Applied(object) => (object.kind, "applied"),
            Observation::Deleted { kind, .. } => (*kind, "deleted"),
        };
        OBSERVATIONS_SENT
            .with_label_values(&[kind_label(kind), change])
            .inc();
    }
}

pub fn retried(request: Request, reason: &str) {
    RETRIED.with_label_values(&[request.label(), reason]).inc();
}

pub fn rejected(request: Request, kind: &str) {
    REJECTED.with_label_values(&[request.label(), kind]).inc();
}

pub fn watch_error(kind: ResourceKind) {
    WATCH_ERRORS.with_label_values(&[kind_label(kind)]).inc();
}

pub fn dropped(kind: ResourceKind, dropped: &Dropped) {
    DROPPED
        .with_label_values(&[kind_label(kind), dropped.reason()])
        .inc();
}

pub fn resynced(kind: ResourceKind, took: Duration) {
    RESYNC_SECONDS
        .with_label_values(&[kind_label(kind)])
        .observe(took.as_secs_f64());
}
