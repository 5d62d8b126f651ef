//! Bulkhead's benchmarks and load generators (`loadtest/`). Every benchmark prints Bulkhead's
//! figures next to the floors measured in the same run (raw NATS, raw sled, JetStream), so a
//! figure is always read against what the machine can do, not against another machine's.
//!
//! This library owns what the benchmarks share: child processes killed with the run ([`process`]),
//! Bulkhead's own services among them ([`control_plane`]), `nats-server`s single or clustered
//! ([`nats`]), the loop that drives N clients against any system and measures it the same way
//! ([`cell`]), a stream of the log followed as it commits and appends straight to the log
//! ([`eventlog`]), and the printed tables ([`report`]). The benchmarks themselves are the binaries
//! in `src/bin/`.

pub mod cell;
pub mod control_plane;
pub mod eventlog;
pub mod nats;
pub mod process;
pub mod report;
