//! Prometheus metrics shared by every service, and the `/metrics` endpoint.
//!
//! One process-wide registry: `bulkhead up` runs all services in one process and they share it,
//! so metric names carry the area (`bulkhead_bus_*`, `bulkhead_api_*`) and labels are bounded
//! (message types, error kinds: never ids).

use std::sync::LazyLock;

use prometheus::{Encoder, IntCounterVec, Registry, TextEncoder};

static REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| Registry::new_custom(None, None).expect("valid registry"));

/// The registry services register their own metrics in.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// Creates and registers a counter family.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let counter =
        IntCounterVec::new(prometheus::Opts::new(name, help), labels).expect("valid counter");
    REGISTRY
        .register(Box::new(counter.clone()))
        .expect("metric registered once");
    counter
}

static BUS_REJECTED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_bus_rejected_messages_total",
        "Messages received on the bus and rejected undecoded, by expected type and reason",
        &["message_type", "reason"],
    )
});

static BUS_DROPPED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    counter_vec(
        "bulkhead_bus_dropped_messages_total",
        "Messages the bus dropped before delivery, by transport and reason",
        &["transport", "reason"],
    )
});

pub fn bus_rejected(message_type: &str, reason: &str) {
    BUS_REJECTED
        .with_label_values(&[message_type, reason])
        .inc();
}

/// How many messages of `message_type` were rejected for `reason` so far.
pub fn bus_rejected_count(message_type: &str, reason: &str) -> u64 {
    BUS_REJECTED
        .with_label_values(&[message_type, reason])
        .get()
}

pub fn bus_dropped(transport: &str, reason: &str) {
    BUS_DROPPED.with_label_values(&[transport, reason]).inc();
}

/// The text exposition of every registered metric.
pub fn render() -> String {
    let mut buffer = Vec::new();
    TextEncoder::new()
        .encode(&REGISTRY.gather(), &mut buffer)
        .expect("text encoding to memory succeeds");
    String::from_utf8(buffer).expect("the text format is UTF-8")
}
