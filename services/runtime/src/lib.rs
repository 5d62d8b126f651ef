//! The chassis every Bulkhead service stands on, so that services share contracts and
//! machinery but never each other's code (DESIGN.md, principle 3).
//!
//! ```text
//!  service core (pure)  <-  service shell  ->  runtime::bus::TypedBus  ->  Bus (NATS | in-process)
//!                                  |
//!                                  +-> health (heartbeats, /readyz), metrics (/metrics),
//!                                      telemetry (tracing + OpenTelemetry), config, shutdown
//! ```

pub mod admin;
pub mod bus;
pub mod commit;
pub mod config;
pub mod health;
pub mod intern;
pub mod metrics;
pub mod projection;
pub mod shutdown;
pub mod sled_sync;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

/// Milliseconds since the Unix epoch, as the wire carries time.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
