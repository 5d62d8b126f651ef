//! The event state machine on sled: applies committed appends, answers reads, and builds and
//! installs snapshots of its whole state. A snapshot built here is stored as its meta and its
//! cut, the last sequence number it covers; its bytes are dumped from the state as it was at the
//! cut when a follower needs them (`dump_at`, `SnapshotData`).

use std::collections::HashMap;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bulkhead_schema::messages::eventlog::{AppendOutcome, ExpectedVersion, RecordedEvent};
use openraft::storage::RaftStateMachine;
use openraft::{
    BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use crate::flush::Flusher;
use crate::keyspace::{KeySpace, key_space, name_and_number};
use crate::snapshot_data::SnapshotData;
use crate::{AppendCommand, LogRequest, LogResponse, NodeId, StoreError, TypeConfig};

key_space!(
    /// Last applied log id and membership: openraft's bookkeeping, set from the snapshot meta on
    /// install rather than carried in the snapshot data.
    Applied, 0x10, () => AppliedState
);
key_space!(
    /// The newest global sequence number (0 before the first event).
    LastSeq, 0x11, () => u64
);
key_space!(
    /// Stream name -> its version, i.e. its number of events.
    StreamHeads, 0x12, &'k str => u64
);
key_space!(
    /// (stream, version) -> global sequence number.
    StreamIndex, 0x13, (&'k str, u64) => u64
);
key_space!(Events, 0x14, u64 => RecordedEvent);
key_space!(
    /// Idempotency key -> the outcome of the first append that used it.
    Outcomes, 0x15, &'k str => AppendOutcome
);
key_space!(
    /// The snapshot this replica stands for.
    CurrentSnapshot, 0x18, () => SnapshotRecord
);

/// Where snapshots were kept before they were dumped on demand: the meta (0x16) and the whole
/// encoded state (0x17), removed when a store is opened.
const LEGACY_SNAPSHOT_SPACES: [u8; 2] = [0x16, 0x17];

/// The key spaces a snapshot carries: the application's state, nothing of openraft's.
const SNAPSHOT_SPACES: [u8; 5] = [
    LastSeq::PREFIX,
    StreamHeads::PREFIX,
    StreamIndex::PREFIX,
    Events::PREFIX,
    Outcomes::PREFIX,
];

const SNAPSHOT_FORMAT: u32 = 1;

/// Snapshot data: the raw sled entries of [`SNAPSHOT_SPACES`], keys with their prefix bytes.
#[derive(Serialize, Deserialize)]
struct SnapshotPayload {
    format: u32,
    entries: Vec<(ByteBuf, ByteBuf)>,
}

/// A snapshot as stored: what openraft knows it by, and the last sequence number it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SnapshotRecord {
    meta: SnapshotMeta<NodeId, BasicNode>,
    cut: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct AppliedState {
    last_applied: Option<LogId<NodeId>>,
    last_membership: StoredMembership<NodeId, BasicNode>,
}

/// The Raft state machine store. Owned by openraft once the node starts; keep an
/// [`EventReader`] (from [`Self::reader`]) to read.
pub struct StateMachineStore {
    tree: sled::Tree,
    flusher: Flusher,
    /// Told whenever the applied state changes, for readers waiting for it.
    changed: Arc<Notify>,
    // Cached because openraft asks for it often and only `apply` and `install_snapshot` change it.
    applied: AppliedState,
}

impl StateMachineStore {
    pub(crate) fn open(db: &sled::Db, flusher: Flusher) -> Result<Self, StoreError> {
        let tree = db.open_tree("state_machine")?;
        for prefix in LEGACY_SNAPSHOT_SPACES {
            // openraft rebuilds a missing snapshot at start-up when the log has been purged.
            for key in tree.scan_prefix([prefix]).keys() {
                tree.remove(key?)?;
            }
        }
        let applied = Applied::get(&tree, ())?.unwrap_or_default();
        Ok(Self {
            tree,
            flusher,
            changed: Arc::default(),
            applied,
        })
    }

    /// A cheap handle for reads, usable while openraft owns the store.
    pub fn reader(&self) -> EventReader {
        EventReader {
            tree: self.tree.clone(),
            changed: self.changed.clone(),
        }
    }
}

/// Replaces the whole state with the snapshot's in one atomic batch, and makes the snapshot
/// the current one.
fn replace_with(
    tree: &sled::Tree,
    meta: &SnapshotMeta<NodeId, BasicNode>,
    data: &[u8],
) -> Result<AppliedState, StoreError> {
    let payload: SnapshotPayload =
        rmp_serde::from_slice(data).map_err(|source| StoreError::Decode {
            space: "snapshot",
            source,
        })?;
    if payload.format != SNAPSHOT_FORMAT {
        return Err(StoreError::SnapshotFormat {
            found: payload.format,
            supported: SNAPSHOT_FORMAT,
        });
    }
    let mut batch = sled::Batch::default();
    for prefix in SNAPSHOT_SPACES {
        for key in tree.scan_prefix([prefix]).keys() {
            batch.remove(key?);
        }
    }
    let mut cut = 0;
    for (key, value) in payload.entries {
        if key[..] == LastSeq::key(())[..] {
            cut = LastSeq::decode(&value)?;
        }
        match key.first() {
            Some(prefix) if SNAPSHOT_SPACES.contains(prefix) => {
                batch.insert(key.into_vec(), value.into_vec())
            }
            other => {
                return Err(StoreError::ForeignSnapshotKey {
                    prefix: other.copied().unwrap_or_default(),
                });
            }
        }
    }
    let applied = AppliedState {
        last_applied: meta.last_log_id,
        last_membership: meta.last_membership.clone(),
    };
    Applied::put(&mut batch, (), &applied)?;
    let record = SnapshotRecord {
        meta: meta.clone(),
        cut,
    };
    CurrentSnapshot::put(&mut batch, (), &record)?;
    tree.apply_batch(batch)?;
    Ok(applied)
}

/// The snapshot `record` stands for, its bytes to be dumped when first read.
fn deferred_snapshot(tree: &sled::Tree, record: SnapshotRecord) -> Snapshot<TypeConfig> {
    let SnapshotRecord { meta, cut } = record;
    let tree = tree.clone();
    Snapshot {
        meta,
        snapshot: Box::new(SnapshotData::deferred(Box::new(move || {
            snapshot_bytes(&tree, cut)
        }))),
    }
}

/// The snapshot's bytes: the state at `cut`, encoded.
fn snapshot_bytes(tree: &sled::Tree, cut: u64) -> Result<Vec<u8>, StoreError> {
    let dumping = Instant::now();
    let bytes = rmp_serde::to_vec_named(&SnapshotPayload {
        format: SNAPSHOT_FORMAT,
        entries: dump_at(tree, cut)?,
    })
    .map_err(|source| StoreError::Encode {
        space: "snapshot",
        source,
    })?;
    tracing::info!(
        cut,
        bytes = bytes.len(),
        dump_ms = dumping.elapsed().as_millis(),
        "dumped snapshot"
    );
    Ok(bytes)
}

/// Runs sled work over the whole state (installing a snapshot) off the async workers: it takes
/// seconds for a big log, and a worker stuck in it stalled the Raft core's timers and RPCs with
/// it.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work).await?
}

/// The application's state as it was when `cut` was the last sequence number, read while
/// applying goes on, at any time after: sled has no point-in-time view, but events and stream
/// index entries
/// are never changed once written and carry their sequence number, stream heads follow from
/// the index, and an outcome is written once, at its key's first use. So the entries after
/// the cut are left out by their sequence numbers, except conflicts (they carry none). Such
/// a conflict is decided again, the same way, when the entries after the cut are applied on
/// top of the snapshot: its key is first used in one of them, so nothing before it reads it.
fn dump_at(tree: &sled::Tree, cut: u64) -> Result<Vec<(ByteBuf, ByteBuf)>, StoreError> {
    let raw = |key: &[u8], value: &[u8]| (ByteBuf::from(key), ByteBuf::from(value));
    let mut entries = vec![raw(&LastSeq::key(()), &LastSeq::encode(&cut)?)];
    for item in Events::raw_range(tree, Bound::Unbounded, Bound::Included(cut)) {
        let (key, value) = item?;
        entries.push(raw(&key, &value));
    }
    // Index keys are ordered by stream, then version: a stream's head is its last entry.
    let head_entry = |(stream, version): (String, u64)| {
        Ok::<_, StoreError>(raw(
            &StreamHeads::key(&stream),
            &StreamHeads::encode(&version)?,
        ))
    };
    let mut head: Option<(String, u64)> = None;
    for item in StreamIndex::raw_range(tree, Bound::Unbounded, Bound::Unbounded) {
        let (key, value) = item?;
        if StreamIndex::decode(&value)? > cut {
            continue;
        }
        entries.push(raw(&key, &value));
        let corrupt = || StoreError::CorruptKey {
            space: StreamIndex::NAME,
        };
        let (stream, version) = name_and_number(&key).ok_or_else(corrupt)?;
        let stream = std::str::from_utf8(stream).map_err(|_| corrupt())?;
        match &mut head {
            Some((current, newest)) if current == stream => *newest = version,
            _ => {
                if let Some(done) = head.replace((stream.to_owned(), version)) {
                    entries.push(head_entry(done)?);
                }
            }
        }
    }
    if let Some(last) = head {
        entries.push(head_entry(last)?);
    }
    for item in Outcomes::raw_range(tree, Bound::Unbounded, Bound::Unbounded) {
        let (key, value) = item?;
        let after_cut = matches!(
            Outcomes::decode(&value)?,
            AppendOutcome::Appended { last_seq, .. } if last_seq > cut
        );
        if !after_cut {
            entries.push(raw(&key, &value));
        }
    }
    Ok(entries)
}

/// The writes of one `apply` call, gathered into one atomic batch. Later commands in the call
/// must see what earlier ones did, so stream heads and outcomes written so far are kept here too.
struct Pending<'t> {
    tree: &'t sled::Tree,
    batch: sled::Batch,
    last_seq: u64,
    heads: HashMap<String, u64>,
    outcomes: HashMap<String, AppendOutcome>,
}

impl<'t> Pending<'t> {
    fn begin(tree: &'t sled::Tree) -> Result<Self, StoreError> {
        Ok(Self {
            tree,
            batch: sled::Batch::default(),
            last_seq: LastSeq::get(tree, ())?.unwrap_or(0),
            heads: HashMap::new(),
            outcomes: HashMap::new(),
        })
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        match self.heads.get(stream) {
            Some(version) => Ok(*version),
            None => Ok(StreamHeads::get(self.tree, stream)?.unwrap_or(0)),
        }
    }

    fn outcome(&self, key: &str) -> Result<Option<AppendOutcome>, StoreError> {
        match self.outcomes.get(key) {
            Some(outcome) => Ok(Some(*outcome)),
            None => Outcomes::get(self.tree, key),
        }
    }

    /// Decides one append. Requests are not validated again here: applying must be
    /// deterministic whatever limits the replicas run with, so anything committed is applied.
    fn append(&mut self, command: AppendCommand) -> Result<AppendOutcome, StoreError> {
        let AppendCommand {
            request,
            proposed_at_ms,
        } = command;
        if let Some(first) = self.outcome(&request.idempotency_key)? {
            return Ok(first);
        }
        let current = self.stream_version(&request.stream)?;
        let expected = match request.expected_version {
            ExpectedVersion::Any => current,
            ExpectedVersion::NoStream => 0,
            ExpectedVersion::Exact(version) => version,
        };
        let outcome = if expected != current {
            AppendOutcome::Conflict {
                current_version: current,
            }
        } else {
            let first_seq = self.last_seq + 1;
            let mut version = current;
            for event in request.events {
                self.last_seq += 1;
                version += 1;
                StreamIndex::put(&mut self.batch, (&request.stream, version), &self.last_seq)?;
                let recorded = RecordedEvent {
                    seq: self.last_seq,
                    stream: request.stream.clone(),
                    stream_version: version,
                    event_type: event.event_type,
                    data: event.data,
                    idempotency_key: request.idempotency_key.clone(),
                    committed_at_ms: proposed_at_ms,
                };
                Events::put(&mut self.batch, self.last_seq, &recorded)?;
            }
            StreamHeads::put(&mut self.batch, &request.stream, &version)?;
            self.heads.insert(request.stream, version);
            AppendOutcome::Appended {
                first_seq,
                last_seq: self.last_seq,
                stream_version: version,
            }
        };
        // Conflicts are remembered too: a retry of the command gets the answer the lost reply
        // carried, not a different one decided against a newer stream.
        Outcomes::put(&mut self.batch, &request.idempotency_key, &outcome)?;
        self.outcomes.insert(request.idempotency_key, outcome);
        Ok(outcome)
    }

    fn commit(mut self, applied: &AppliedState) -> Result<(), StoreError> {
        LastSeq::put(&mut self.batch, (), &self.last_seq)?;
        Applied::put(&mut self.batch, (), applied)?;
        Ok(self.tree.apply_batch(self.batch)?)
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>>
    {
        Ok((
            self.applied.last_applied,
            self.applied.last_membership.clone(),
        ))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<LogResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut pending =
            Pending::begin(&self.tree).map_err(|e| StorageIOError::read_state_machine(&e))?;
        let mut applied = self.applied.clone();
        let mut responses = Vec::new();
        for entry in entries {
            let response = match entry.payload {
                EntryPayload::Blank => LogResponse::default(),
                EntryPayload::Normal(LogRequest { commands }) => LogResponse {
                    outcomes: commands
                        .into_iter()
                        .map(|command| pending.append(command))
                        .collect::<Result<_, _>>()
                        .map_err(|e| StorageIOError::apply(entry.log_id, &e))?,
                },
                EntryPayload::Membership(membership) => {
                    applied.last_membership = StoredMembership::new(Some(entry.log_id), membership);
                    LogResponse::default()
                }
            };
            applied.last_applied = Some(entry.log_id);
            responses.push(response);
        }
        pending
            .commit(&applied)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.applied = applied;
        self.changed.notify_waiters();
        Ok(responses)
    }

    // Only the cut is taken here, on the state machine's task, between two applies; the state
    // at the cut is read when a follower needs it, while applying goes on (`dump_at`).
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            tree: self.tree.clone(),
            flusher: self.flusher.clone(),
            applied: self.applied.clone(),
            cut: LastSeq::get(&self.tree, ()),
        }
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<SnapshotData>, StorageError<NodeId>> {
        Ok(Box::new(SnapshotData::from(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<SnapshotData>,
    ) -> Result<(), StorageError<NodeId>> {
        let failed = |e: &StoreError| StorageIOError::write_snapshot(Some(meta.signature()), e);
        let data = snapshot.into_bytes().await.map_err(|e| failed(&e))?;
        let (tree, owned_meta) = (self.tree.clone(), meta.clone());
        let applied = blocking(move || replace_with(&tree, &owned_meta, &data))
            .await
            .map_err(|e| failed(&e))?;
        self.flusher
            .flush(&self.tree)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        self.applied = applied;
        self.changed.notify_waiters();
        tracing::info!(snapshot = %meta, "installed snapshot");
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let record = CurrentSnapshot::get(&self.tree, ())
            .map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        Ok(record.map(|record| deferred_snapshot(&self.tree, record)))
    }
}

/// Builds a snapshot of the state as it was when it was created.
pub struct SnapshotBuilder {
    tree: sled::Tree,
    flusher: Flusher,
    /// The snapshot's last applied log id and membership.
    applied: AppliedState,
    /// The last sequence number then (`get_snapshot_builder` cannot fail, so a failed read is
    /// reported by `build_snapshot`).
    cut: Result<Option<u64>, StoreError>,
}

/// Makes `record` the current snapshot, unless an install has meanwhile made a newer one current.
fn store_record(tree: &sled::Tree, record: &SnapshotRecord) -> Result<(), StoreError> {
    let record_bytes = CurrentSnapshot::encode(record)?;
    tree.transaction(|tx| {
        let newer = match tx.get(CurrentSnapshot::key(()))? {
            Some(bytes) => {
                CurrentSnapshot::decode(&bytes)
                    .map_err(sled::transaction::ConflictableTransactionError::Abort)?
                    .meta
                    .last_log_id
                    > record.meta.last_log_id
            }
            None => false,
        };
        if !newer {
            tx.insert(CurrentSnapshot::key(()), record_bytes.as_slice())?;
        }
        Ok(())
    })
    .map_err(|e| match e {
        sled::transaction::TransactionError::Abort(e) => e,
        sled::transaction::TransactionError::Storage(e) => StoreError::Sled(e),
    })
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let last = self.applied.last_applied;
        let built_at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let snapshot_id = match last {
            Some(log_id) => format!("{}-{}-{built_at_ms}", log_id.leader_id, log_id.index),
            None => format!("empty-{built_at_ms}"),
        };
        let meta = SnapshotMeta {
            last_log_id: last,
            last_membership: self.applied.last_membership.clone(),
            snapshot_id,
        };
        let failed = |e: &StoreError| StorageIOError::write_snapshot(Some(meta.signature()), e);
        let cut = std::mem::replace(&mut self.cut, Ok(None))
            .map_err(|e| failed(&e))?
            .unwrap_or(0);
        let record = SnapshotRecord {
            meta: meta.clone(),
            cut,
        };
        store_record(&self.tree, &record).map_err(|e| failed(&e))?;
        // Durable before openraft purges the log the snapshot stands for: this also flushes the
        // state machine up to the cut, which `apply` leaves to the log's flushes.
        let flushing = Instant::now();
        self.flusher
            .flush(&self.tree)
            .await
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), &e))?;
        tracing::info!(
            snapshot = %meta,
            cut,
            flush_ms = flushing.elapsed().as_millis(),
            "built snapshot"
        );
        Ok(deferred_snapshot(&self.tree, record))
    }
}

/// Reads the applied state; cheap to clone. Reads see whatever is applied on this replica: for
/// a linearizable read, call `raft.ensure_linearizable()` first.
#[derive(Clone)]
pub struct EventReader {
    tree: sled::Tree,
    changed: Arc<Notify>,
}

impl EventReader {
    /// Resolves once the applied state changes after this call: take it before reading, and a
    /// change made while reading is not missed.
    pub fn changed(&self) -> Pin<Box<Notified<'_>>> {
        let mut changed = Box::pin(self.changed.notified());
        changed.as_mut().enable();
        changed
    }

    /// Up to `limit` events in global order, from sequence number `from_seq` on.
    pub fn read(&self, from_seq: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        Events::values(&self.tree, Bound::Included(from_seq), Bound::Unbounded)
            .take(limit)
            .collect()
    }

    /// Up to `limit` events of `stream`, from its version `from_version` on.
    pub fn read_stream(
        &self,
        stream: &str,
        from_version: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        StreamIndex::values(
            &self.tree,
            Bound::Included((stream, from_version)),
            Bound::Included((stream, u64::MAX)),
        )
        .take(limit)
        .map(|seq| {
            let seq = seq?;
            Events::get(&self.tree, seq)?.ok_or_else(|| StoreError::DanglingStreamIndex {
                stream: stream.into(),
                seq,
            })
        })
        .collect()
    }

    /// The stream's version: its number of events, 0 if it has none.
    pub fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        Ok(StreamHeads::get(&self.tree, stream)?.unwrap_or(0))
    }

    /// The newest global sequence number, 0 before the first event.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        Ok(LastSeq::get(&self.tree, ())?.unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn install(sm: &mut StateMachineStore, payload: &SnapshotPayload) -> Result<(), String> {
        let data = rmp_serde::to_vec_named(payload).unwrap();
        let meta = SnapshotMeta::default();
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sm.install_snapshot(&meta, Box::new(SnapshotData::from(data))))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_snapshot_stored_by_an_earlier_version_is_dropped_on_open_and_the_state_kept() {
        let dir = tempfile::tempdir().unwrap();
        {
            let db = sled::open(dir.path()).unwrap();
            let tree = db.open_tree("state_machine").unwrap();
            for prefix in LEGACY_SNAPSHOT_SPACES {
                tree.insert([prefix], vec![0xc0; 64]).unwrap();
            }
            tree.insert(LastSeq::key(()), LastSeq::encode(&3).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let (_log, mut sm) = crate::open_stores(dir.path()).unwrap();
        for prefix in LEGACY_SNAPSHOT_SPACES {
            assert_eq!(sm.tree.scan_prefix([prefix]).count(), 0, "{prefix:#04x}");
        }
        let current = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sm.get_current_snapshot())
            .unwrap();
        assert!(current.is_none(), "openraft rebuilds it at start-up");
        assert_eq!(sm.reader().last_seq().unwrap(), 3);
    }

    #[test]
    fn a_snapshot_with_a_foreign_key_or_format_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = crate::open_stores(dir.path()).unwrap();
        let mut batch = sled::Batch::default();
        LastSeq::put(&mut batch, (), &7).unwrap();
        sm.tree.apply_batch(batch).unwrap();

        let entry = |key: Vec<u8>| {
            (
                ByteBuf::from(key),
                ByteBuf::from(rmp_serde::to_vec_named(&1u64).unwrap()),
            )
        };
        let foreign = SnapshotPayload {
            format: SNAPSHOT_FORMAT,
            entries: vec![entry(LastSeq::key(())), entry(Applied::key(()))],
        };
        let err = install(&mut sm, &foreign).unwrap_err();
        assert!(err.contains("prefix 0x10"), "{err}");

        let future = SnapshotPayload {
            format: SNAPSHOT_FORMAT + 1,
            entries: vec![],
        };
        let err = install(&mut sm, &future).unwrap_err();
        assert!(err.contains("snapshot format 2"), "{err}");

        assert_eq!(sm.reader().last_seq().unwrap(), 7);
    }
}
