//! The event log's Prometheus metrics, in the process-wide registry of `bulkhead-runtime`.

use std::sync::LazyLock;

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
