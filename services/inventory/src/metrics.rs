//! Inventory's metrics, in the process-wide registry. Labels are bounded: outcomes and error
//! kinds, never cluster ids.

use std::sync::LazyLock;

use bulkhead_runtime::metrics::counter_vec;
use prometheus::IntCounterVec;

/// Clusterlink requests refused for their credentials, by reason (`unknown_cluster`,
/// `wrong_token`).
pub(crate) static AUTH_FAILURES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_inventory_auth_failures_total",
        "Clusterlink requests refused for wrong credentials, by reason",
        &["reason"],
    )
});

/// Reports by outcome (`accepted`, `rejected`, `unavailable`).
pub(crate) static REPORTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_inventory_reports_total",
        "Cluster reports handled, by outcome",
        &["outcome"],
    )
});

/// Observations by what became of them (`appended`, `unchanged`, `too_large`).
pub(crate) static OBSERVATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_inventory_observations_total",
        "Observations in accepted reports, by what became of them",
        &["outcome"],
    )
});

pub(crate) fn count(counter: &IntCounterVec, label: &str, by: u64) {
    counter.with_label_values(&[label]).inc_by(by);
}
