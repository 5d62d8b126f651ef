//! The event log's Prometheus metrics, in the process-wide registry of `bulkhead-runtime`.

use std::sync::LazyLock;

use bulkhead_runtime::sled_sync::Synced;
use bulkhead_schema::messages::eventlog::{AppendOutcome, AppendReply};
use prometheus::IntCounterVec;

static APPENDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_eventlog_appends_total",
        "Appends this replica answered, by outcome",
        &["outcome"],
    )
});

static REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_eventlog_rejected_appends_total",
        "Appends refused before reaching the log, by the rule they broke",
        &["kind"],
    )
});

static ENTRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_eventlog_proposed_entries_total",
        "Raft entries this replica proposed as leader, each a batch of appends",
        &[],
    )
});

static ELECTIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_eventlog_elections_called_total",
        "Elections this replica called at once to end a split vote (see election.rs), by rule",
        &["rule"],
    )
});

static DURABLE_FLUSHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_eventlog_durable_flushes_total",
        "Flushes of this replica's database made durable, each covering every write before it \
         (appended entries per flush is the group-commit factor)",
        &[],
    )
});

static BLOBS_SYNCED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    bulkhead_runtime::metrics::counter_vec(
        "bulkhead_eventlog_blobs_synced_total",
        "sled blob files (items over a quarter of a segment) that durable flushes had to fsync, \
         each costing two more fsyncs",
        &[],
    )
});

pub(crate) fn flushed_durably(synced: Synced) {
    DURABLE_FLUSHES.with_label_values::<&str>(&[]).inc();
    BLOBS_SYNCED
        .with_label_values::<&str>(&[])
        .inc_by(synced.blobs as u64);
}

/// Durable flushes and blob files synced so far in this process.
#[cfg(test)]
pub(crate) fn durable_flush_counts() -> (u64, u64) {
    (
        DURABLE_FLUSHES.with_label_values::<&str>(&[]).get(),
        BLOBS_SYNCED.with_label_values::<&str>(&[]).get(),
    )
}

pub(crate) fn append_answered(reply: &AppendReply) {
    let outcome = match reply {
        AppendReply::Decided(AppendOutcome::Appended { .. }) => "appended",
        AppendReply::Decided(AppendOutcome::Conflict { .. }) => "conflict",
        AppendReply::Rejected { .. } => "rejected",
        AppendReply::Unavailable { .. } => "unavailable",
    };
    APPENDS.with_label_values(&[outcome]).inc();
}

pub(crate) fn append_rejected(kind: &str) {
    REJECTED.with_label_values(&[kind]).inc();
}

pub(crate) fn entry_proposed() {
    ENTRIES.with_label_values::<&str>(&[]).inc();
}

pub(crate) fn election_called(rule: &str) {
    ELECTIONS.with_label_values(&[rule]).inc();
}
