//! Bulkhead's event log: the Raft-replicated, append-only log every service's state is
//! projected from (DESIGN.md, principle 1; issue 3). One replica per process; three make a
//! cluster that survives the loss of one. Operations and the reasons behind the design are in
//! `docs/eventlog.md`.
//!
//! ```text
//!  NATS, queue group `eventlog`                    (service: decode, refuse bad input, reply)
//!   bulkhead.eventlog.{append (leader only),read,read_stream,status,membership},
//!   bulkhead.eventlog.node.<id>.{append,read,status}
//!        │ append                                  │ read, status, membership
//!        ▼                                         │
//!   validate(limits) ─► batcher (followers only)   │
//!                           │ AppendBatch          │
//!                           ▼                      ▼
//!                     leader::LeaderOp ── not leader ──► the leader's /client/* (HTTP)
//!                           │ leader
//!                           ▼
//!   proposer: batches ─► entries (batching)        │
//!                           ▼                      ▼
//!        raft.client_write(LogRequest) / ensure_linearizable / change_membership
//!                           │          Raft listener (server, network): HTTP + MessagePack,
//!                           │          /raft/{append,vote,snapshot} ◄──► other replicas
//!              ┌────────────┴───────────────────────────────────────┐
//!              ▼ RaftLogStorage                                      ▼ RaftStateMachine
//!   LogStore: tree `raft_log`                          StateMachineStore: tree `state_machine`
//!     entries by index, vote,                            applied (log id, membership, last seq),
//!     committed and purged ids                           (stream, version) -> seq, events by seq,
//!                                                        outcomes by idempotency key, snapshot
//!                                                        meta and cut (dumped when sent)
//!                                                                    │ clone
//!                                                                    ▼
//!   while leading: bulkhead.eventlog.committed ◄───── EventReader: read, read_stream, versions
//! ```
//!
//! What the Raft listener sees of votes and AppendEntries also feeds `election`, which ends split
//! votes at once and keeps a replica that is catching up from calling elections.
//!
//! Both stores live in one sled `Db` ([`open_stores`]), each in its own tree of typed key spaces,
//! and share one `flush::Flusher`, one flush at a time (sled 0.34 can deadlock on concurrent
//! flushes), each made durable against a power cut, which sled's own flush is not
//! (`bulkhead_runtime::sled_sync`). The log is fsynced before openraft is told an append is
//! durable. The state machine is not fsynced on apply: sled recovers a prefix of its writes,
//! the record of what is applied is written last, and openraft re-applies the committed entries
//! after it on a restart, which decides them again the same way (`state_machine::Pending`); the
//! next log flush covers them anyway. It is fsynced whenever a snapshot is built or installed,
//! before the log behind the snapshot may be purged.
//!
//! The binary needs [`run`] with an [`EventlogConfig`] (`bulkhead up`:
//! [`EventlogConfig::single_node`]); [`LogNode`] is the replica without NATS.

mod batching;
mod config;
mod election;
mod error;
mod flush;
mod keyspace;
mod leader;
mod limits;
mod log_store;
mod metrics;
mod network;
mod node;
mod server;
mod service;
mod snapshot_data;
mod state_machine;
#[cfg(feature = "testing")]
pub mod testing;

use std::path::Path;

use bulkhead_schema::messages::eventlog::{AppendOutcome, AppendRequest};
use serde::{Deserialize, Serialize};

pub use config::{EventlogConfig, Peers, PeersError, SnapshotConfig};
pub use error::{EventlogError, StoreError};
pub use limits::{AppendError, Limits, MAX_NAME_BYTES, validate};
pub use log_store::LogStore;
pub use node::LogNode;
pub use service::run;
pub use snapshot_data::SnapshotData;
pub use state_machine::{EventReader, SnapshotBuilder, StateMachineStore};

/// Identifies a replica.
pub type NodeId = u64;

openraft::declare_raft_types!(
    /// The openraft configuration of the event log.
    pub TypeConfig:
        D = LogRequest,
        R = LogResponse,
        NodeId = NodeId,
        Node = openraft::BasicNode,
        SnapshotData = SnapshotData,
);

/// The payload of one Raft entry: appends the shell batched together, applied in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRequest {
    pub commands: Vec<AppendCommand>,
}

/// One client append as it travels through the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppendCommand {
    pub request: AppendRequest,
    /// The leader's clock when it proposed the entry, recorded as each event's
    /// `committed_at_ms`. It travels in the entry because applying must give every replica the
    /// same state, and replicas' clocks differ.
    pub proposed_at_ms: u64,
}

/// What applying one entry decided: one outcome per command, in order (none for openraft's own
/// blank and membership entries).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogResponse {
    pub outcomes: Vec<AppendOutcome>,
}

/// Opens (or creates) the sled database at `path` and the two stores in it, which share its
/// flushes (`flush::Flusher`).
pub fn open_stores(path: impl AsRef<Path>) -> Result<(LogStore, StateMachineStore), StoreError> {
    let db = open_database(path.as_ref())?;
    let flusher = flush::Flusher::start(path.as_ref()).map_err(StoreError::Flusher)?;
    Ok((
        LogStore::open(&db, flusher.clone())?,
        StateMachineStore::open(&db, flusher)?,
    ))
}

/// sled's log segments for a database this version creates: 8 MiB rather than sled's 512 KiB.
/// sled writes an item over a quarter of a segment (a Raft entry of many appends, a leaf of
/// large entries) to a blob file of its own, and each new blob costs two more fsyncs per flush
/// (the file and its directory, `bulkhead_runtime::sled_sync`): with 512 KiB segments, leaves
/// of 2 KiB appends from 16 clients became blobs, and such appends went 12-55% faster with
/// 8 MiB (docs/performance.md). The price is sled's IO buffer, one segment, in memory.
const SEGMENT_BYTES: usize = 8 << 20;

/// Opens the database at `path`, with [`SEGMENT_BYTES`] segments if it creates it. sled never
/// changes a database's segment size and refuses to open one with another (before it touches
/// the data file), so a database an earlier version created keeps sled's default.
fn open_database(path: &Path) -> Result<sled::Db, StoreError> {
    match sled::Config::new()
        .path(path)
        .segment_size(SEGMENT_BYTES)
        .open()
    {
        Err(sled::Error::Unsupported(_)) => Ok(sled::open(path)?),
        opened => Ok(opened?),
    }
}

/// A database as an earlier version or a test writes it, without sled's background flusher
/// thread: that thread could still hold the database's lock when the stores open it after the
/// handle is dropped, and nothing but the test writes to it.
#[cfg(test)]
pub(crate) fn open_quiet_database(dir: &Path) -> sled::Db {
    sled::Config::new()
        .path(dir)
        .flush_every_ms(None)
        .open()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keyspace::KeySpace as _;

    /// The segment size sled recorded for the database in `dir` (text lines, then a checksum).
    fn recorded_segment_size(dir: &Path) -> String {
        String::from_utf8_lossy(&std::fs::read(dir.join("conf")).unwrap())
            .lines()
            .find_map(|line| line.strip_prefix("segment_size: ").map(str::to_owned))
            .unwrap()
    }

    #[tokio::test]
    async fn a_new_database_gets_large_segments_and_one_made_with_the_default_opens_as_it_was() {
        let new = tempfile::tempdir().unwrap();
        drop(open_stores(new.path()).unwrap());
        assert_eq!(recorded_segment_size(new.path()), SEGMENT_BYTES.to_string());

        let earlier = tempfile::tempdir().unwrap();
        let entry = openraft::Entry::<TypeConfig> {
            log_id: openraft::LogId::new(openraft::CommittedLeaderId::new(1, 1), 1),
            payload: openraft::EntryPayload::Blank,
        };
        {
            let db = open_quiet_database(earlier.path());
            let log = db.open_tree("raft_log").unwrap();
            log_store::Entries::insert(&log, 1, &entry).unwrap();
            db.flush().unwrap();
        }
        let (mut log, _state_machine) = open_stores(earlier.path()).unwrap();
        assert_eq!(
            recorded_segment_size(earlier.path()),
            (512 * 1024).to_string()
        );
        let state = openraft::storage::RaftLogStorage::get_log_state(&mut log)
            .await
            .unwrap();
        assert_eq!(state.last_log_id, Some(entry.log_id));
    }
}
