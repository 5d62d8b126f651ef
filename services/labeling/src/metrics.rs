//! Labeling's metrics, in the process-wide registry. Labels are bounded: outcomes and error
//! kinds, never ids.

use std::sync::LazyLock;

use bulkhead_runtime::metrics::counter_vec;
use prometheus::IntCounterVec;

/// Commands by outcome (`done`, a rejection kind such as `in_use`, or `unavailable`).
pub(crate) static COMMANDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_labeling_commands_total",
        "Labeling commands handled, by outcome",
        &["outcome"],
    )
});

/// Queries by outcome (`page` or a rejection kind).
pub(crate) static QUERIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_labeling_queries_total",
        "Labeling queries answered, by outcome",
        &["outcome"],
    )
});

/// Namespaces whose pairing key linked nothing, by reason (`unknown_key`, `already_linked`),
/// as this replica's projection applied them.
pub(crate) static PAIRING_REJECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_labeling_pairing_rejections_total",
        "Namespace pairing keys that linked no profile, by reason",
        &["reason"],
    )
});

/// Appends of derived output (effective labels, rejections) and of labels that label maps
/// create, by what and outcome (`appended`, `conflict`, `failed`).
pub(crate) static OUTPUT_APPENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_labeling_output_appends_total",
        "Appends of derived labeling output, by kind and outcome",
        &["kind", "outcome"],
    )
});

pub(crate) fn count(counter: &IntCounterVec, labels: &[&str]) {
    counter.with_label_values(labels).inc();
}
