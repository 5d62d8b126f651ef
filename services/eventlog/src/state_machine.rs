//! The event state machine on sled: applies committed appends, answers reads, and builds and
//! installs snapshots of its whole state. A snapshot built here is stored as its meta and its
//! cut, the last sequence number it covers; its bytes are dumped from the state as it was at the
//! cut when a follower needs them (`dump_at`, `SnapshotData`).

use std::collections::HashMap;
use std::ops::Bound;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Last applied log id, membership and sequence number, written last by every apply: what
    /// is written past its sequence number is not applied yet (`Pending`).
    Applied, 0x10, () => AppliedState
);
key_space!(
    /// The newest global sequence number (0 before the first event). A snapshot's cut; in the
    /// state itself only before it moved into `Applied` (moved when a store is opened).
    LastSeq, 0x11, () => u64
);
key_space!(
    /// Stream name -> its version, i.e. its number of events. In snapshots only: the state
    /// derives a stream's version from its index (`version_at`). An earlier version kept them
    /// in the state too; they are removed when a store is opened.
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
    /// The newest global sequence number applied (0 before the first event; absent from the
    /// records of an earlier version, which kept it in `LastSeq`).
    #[serde(default)]
    last_seq: u64,
}

/// The Raft state machine store. Owned by openraft once the node starts; keep an
/// [`EventReader`] (from [`Self::reader`]) to read.
pub struct StateMachineStore {
    tree: sled::Tree,
    flusher: Flusher,
    /// Told whenever the applied state changes, for readers waiting for it.
    changed: Arc<Notify>,
    /// `applied.last_seq`, for readers: they read nothing past it.
    applied_seq: Arc<AtomicU64>,
    // Cached because openraft asks for it often and only `apply` and `install_snapshot` change it.
    applied: AppliedState,
}

impl StateMachineStore {
    pub(crate) fn open(db: &sled::Db, flusher: Flusher) -> Result<Self, StoreError> {
        let tree = db.open_tree("state_machine")?;
        let applied = migrate_earlier_format(&tree)?;
        Ok(Self {
            tree,
            flusher,
            changed: Arc::default(),
            applied_seq: Arc::new(AtomicU64::new(applied.last_seq)),
            applied,
        })
    }

    /// Takes `applied` as the applied state, already stored, and tells readers.
    fn set_applied(&mut self, applied: AppliedState) {
        self.applied_seq.store(applied.last_seq, Ordering::Release);
        self.applied = applied;
        self.changed.notify_waiters();
    }

    /// A cheap handle for reads, usable while openraft owns the store.
    pub fn reader(&self) -> EventReader {
        EventReader {
            tree: self.tree.clone(),
            changed: self.changed.clone(),
            applied_seq: self.applied_seq.clone(),
        }
    }
}

/// The applied state, once what an earlier version stored differently is moved: its snapshot
/// is dropped (openraft rebuilds a missing snapshot at start-up when the log has been purged),
/// its last sequence number moves from `LastSeq` (written in one batch with `Applied`) into
/// `Applied`, and its stream heads are dropped. Idempotent: a crash half-way leaves `LastSeq`,
/// and the next open moves it again.
fn migrate_earlier_format(tree: &sled::Tree) -> Result<AppliedState, StoreError> {
    for prefix in LEGACY_SNAPSHOT_SPACES {
        for key in tree.scan_prefix([prefix]).keys() {
            tree.remove(key?)?;
        }
    }
    let applied = Applied::get(tree, ())?.unwrap_or_default();
    let Some(last_seq) = LastSeq::get(tree, ())? else {
        return Ok(applied);
    };
    let applied = AppliedState {
        last_seq,
        ..applied
    };
    Applied::insert(tree, (), &applied)?;
    for key in tree.scan_prefix([StreamHeads::PREFIX]).keys() {
        tree.remove(key?)?;
    }
    tree.remove(LastSeq::key(()))?;
    Ok(applied)
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
        match key.first() {
            // Kept in `Applied`, and derived from the index.
            Some(&LastSeq::PREFIX) => cut = LastSeq::decode(&value)?,
            Some(&StreamHeads::PREFIX) => {}
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
        last_seq: cut,
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

/// A stream index key's stream and version.
fn split_index_key(key: &[u8]) -> Result<(&str, u64), StoreError> {
    let corrupt = || StoreError::CorruptKey {
        space: StreamIndex::NAME,
    };
    let (stream, version) = name_and_number(key).ok_or_else(corrupt)?;
    Ok((std::str::from_utf8(stream).map_err(|_| corrupt())?, version))
}

/// The application's state as it was when `cut` was the last sequence number, read while
/// applying goes on, at any time after: sled has no point-in-time view, but events and stream
/// index entries are never changed once written and carry their sequence number, stream heads
/// follow from the index, and an outcome is written once, at its key's first use. So the entries after
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
        let (stream, version) = split_index_key(&key)?;
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

/// The version of `stream` once sequence number `last_seq` was applied: the version of its last
/// index entry up to there (index keys are ordered by stream, then version).
fn version_at(tree: &sled::Tree, stream: &str, last_seq: u64) -> Result<u64, StoreError> {
    let entries = StreamIndex::raw_range(
        tree,
        Bound::Included((stream, 0)),
        Bound::Included((stream, u64::MAX)),
    );
    for item in entries.rev() {
        let (key, seq) = item?;
        if StreamIndex::decode(&seq)? <= last_seq {
            return Ok(split_index_key(&key)?.1);
        }
    }
    Ok(0)
}

/// One `apply` call. Its writes go to the tree one by one, not in a sled batch: a batch made
/// sled 0.34 write its IO buffer twice, each write waking its I/O pool's seven threads, and that
/// cost an append more than the rest of its apply (`docs/eventlog.md`, "Storage"). So a crash may
/// leave part of an apply written; `Applied`, written last, says where the applied state ends.
/// Decisions read nothing past it: a stream's version comes from its index entries up to it,
/// an append's outcome counts only if its events are up to it. Conflicts' outcomes carry no
/// sequence number and count even if left over, which changes nothing: openraft applies the
/// entries after `Applied` again, and the one that decided such a conflict decides it again,
/// the same way (nothing before it used its key). Events and index entries left over are
/// written again, the same.
///
/// Later commands in the call must see what earlier ones did, so the stream versions and
/// outcomes it decided are kept here too.
struct Pending<'t> {
    tree: &'t sled::Tree,
    /// The newest sequence number applied before the call.
    applied_seq: u64,
    last_seq: u64,
    heads: HashMap<String, u64>,
    outcomes: HashMap<String, AppendOutcome>,
}

impl<'t> Pending<'t> {
    fn begin(tree: &'t sled::Tree, applied_seq: u64) -> Self {
        Self {
            tree,
            applied_seq,
            last_seq: applied_seq,
            heads: HashMap::new(),
            outcomes: HashMap::new(),
        }
    }

    fn stream_version(&self, stream: &str) -> Result<u64, StoreError> {
        match self.heads.get(stream) {
            Some(version) => Ok(*version),
            None => version_at(self.tree, stream, self.applied_seq),
        }
    }

    fn outcome(&self, key: &str) -> Result<Option<AppendOutcome>, StoreError> {
        if let Some(outcome) = self.outcomes.get(key) {
            return Ok(Some(*outcome));
        }
        Ok(Outcomes::get(self.tree, key)?.filter(|outcome| {
            !matches!(outcome, AppendOutcome::Appended { last_seq, .. } if *last_seq > self.applied_seq)
        }))
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
                StreamIndex::insert(self.tree, (&request.stream, version), &self.last_seq)?;
                let recorded = RecordedEvent {
                    seq: self.last_seq,
                    stream: request.stream.clone(),
                    stream_version: version,
                    event_type: event.event_type,
                    data: event.data,
                    idempotency_key: request.idempotency_key.clone(),
                    committed_at_ms: proposed_at_ms,
                };
                Events::insert(self.tree, self.last_seq, &recorded)?;
            }
            self.heads.insert(request.stream, version);
            AppendOutcome::Appended {
                first_seq,
                last_seq: self.last_seq,
                stream_version: version,
            }
        };
        // Conflicts are remembered too: a retry of the command gets the answer the lost reply
        // carried, not a different one decided against a newer stream.
        Outcomes::insert(self.tree, &request.idempotency_key, &outcome)?;
        self.outcomes.insert(request.idempotency_key, outcome);
        Ok(outcome)
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
        let mut pending = Pending::begin(&self.tree, self.applied.last_seq);
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
        applied.last_seq = pending.last_seq;
        Applied::insert(&self.tree, (), &applied)
            .map_err(|e| StorageIOError::write_state_machine(&e))?;
        self.set_applied(applied);
        Ok(responses)
    }

    // Only the applied state is taken here, on the state machine's task, between two applies;
    // the state at its cut is read when a follower needs it, while applying goes on (`dump_at`).
    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        SnapshotBuilder {
            tree: self.tree.clone(),
            flusher: self.flusher.clone(),
            applied: self.applied.clone(),
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
        self.set_applied(applied);
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
    /// The snapshot's last applied log id, membership and sequence number (its cut).
    applied: AppliedState,
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
        let cut = self.applied.last_seq;
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
    applied_seq: Arc<AtomicU64>,
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
        let last_seq = self.last_seq();
        if from_seq > last_seq {
            return Ok(Vec::new());
        }
        Events::values(
            &self.tree,
            Bound::Included(from_seq),
            Bound::Included(last_seq),
        )
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
        let last_seq = self.last_seq();
        StreamIndex::values(
            &self.tree,
            Bound::Included((stream, from_version)),
            Bound::Included((stream, u64::MAX)),
        )
        // A stream's sequence numbers grow with its versions.
        .take_while(|seq| !matches!(seq, Ok(seq) if *seq > last_seq))
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
        version_at(&self.tree, stream, self.last_seq())
    }

    /// The newest global sequence number applied, 0 before the first event. Reads see the
    /// state up to it only: an apply under way, or cut short by a crash, is not there yet.
    pub fn last_seq(&self) -> u64 {
        self.applied_seq.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_schema::messages::eventlog::{AppendRequest, NewEvent};

    use super::*;

    fn install(sm: &mut StateMachineStore, payload: &SnapshotPayload) -> Result<(), String> {
        let data = rmp_serde::to_vec_named(payload).unwrap();
        let meta = SnapshotMeta::default();
        block_on(sm.install_snapshot(&meta, Box::new(SnapshotData::from(data))))
            .map_err(|e| e.to_string())
    }

    fn block_on<F: std::future::Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(future)
    }

    /// `Applied` as an earlier version wrote it, without the last sequence number.
    #[derive(Serialize)]
    struct EarlierApplied {
        last_applied: Option<LogId<NodeId>>,
        last_membership: StoredMembership<NodeId, BasicNode>,
    }

    #[test]
    fn a_state_stored_by_an_earlier_version_is_moved_on_open_and_its_snapshot_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let last_applied = Some(LogId::new(openraft::CommittedLeaderId::new(1, 1), 4));
        {
            let db = crate::open_quiet_database(dir.path());
            let tree = db.open_tree("state_machine").unwrap();
            for prefix in LEGACY_SNAPSHOT_SPACES {
                tree.insert([prefix], vec![0xc0; 64]).unwrap();
            }
            let earlier = EarlierApplied {
                last_applied,
                last_membership: StoredMembership::default(),
            };
            tree.insert(Applied::key(()), rmp_serde::to_vec_named(&earlier).unwrap())
                .unwrap();
            tree.insert(LastSeq::key(()), LastSeq::encode(&3).unwrap())
                .unwrap();
            tree.insert(StreamHeads::key("a"), StreamHeads::encode(&3).unwrap())
                .unwrap();
            db.flush().unwrap();
        }
        let (_log, mut sm) = crate::open_stores(dir.path()).unwrap();
        for prefix in LEGACY_SNAPSHOT_SPACES
            .into_iter()
            .chain([LastSeq::PREFIX, StreamHeads::PREFIX])
        {
            assert_eq!(sm.tree.scan_prefix([prefix]).count(), 0, "{prefix:#04x}");
        }
        let applied = Applied::get(&sm.tree, ()).unwrap().unwrap();
        assert_eq!((applied.last_applied, applied.last_seq), (last_applied, 3));
        let current = block_on(sm.get_current_snapshot()).unwrap();
        assert!(current.is_none(), "openraft rebuilds it at start-up");
        assert_eq!(sm.reader().last_seq(), 3);
    }

    #[test]
    fn a_snapshot_with_a_foreign_key_or_format_is_refused_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (_log, mut sm) = crate::open_stores(dir.path()).unwrap();
        let applied = AppliedState {
            last_seq: 7,
            ..AppliedState::default()
        };
        Applied::insert(&sm.tree, (), &applied).unwrap();
        sm.set_applied(applied);

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

        assert_eq!(sm.reader().last_seq(), 7);
    }

    fn mk_entry(index: u64, appends: &[(&str, ExpectedVersion, &str)]) -> Entry<TypeConfig> {
        let commands = appends
            .iter()
            .map(|(stream, expected_version, key)| AppendCommand {
                request: AppendRequest {
                    stream: (*stream).into(),
                    expected_version: *expected_version,
                    idempotency_key: (*key).into(),
                    events: vec![NewEvent {
                        event_type: "test.Event".into(),
                        data: key.as_bytes().to_vec(),
                    }],
                },
                proposed_at_ms: 1_700_000_000_000,
            })
            .collect();
        Entry {
            log_id: LogId::new(openraft::CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Normal(LogRequest { commands }),
        }
    }

    /// Everything a reader sees.
    fn reads(sm: &StateMachineStore) -> (u64, Vec<RecordedEvent>, Vec<RecordedEvent>, [u64; 2]) {
        let reader = sm.reader();
        (
            reader.last_seq(),
            reader.read(1, 100).unwrap(),
            reader.read_stream("a", 1, 100).unwrap(),
            ["a", "b"].map(|stream| reader.stream_version(stream).unwrap()),
        )
    }

    #[test]
    fn an_apply_a_crash_cut_short_is_invisible_and_applied_again_the_same_way() {
        use ExpectedVersion::{Exact, NoStream};
        let first = || mk_entry(1, &[("a", NoStream, "k1"), ("a", Exact(1), "k2")]);
        // New events on an old and a new stream, a conflict, a repeat within the entry and one
        // of the entry before.
        let second = || {
            mk_entry(
                2,
                &[
                    ("b", NoStream, "k3"),
                    ("a", Exact(2), "k4"),
                    ("a", Exact(0), "k5"),
                    ("a", Exact(3), "k4"),
                    ("a", NoStream, "k1"),
                ],
            )
        };
        // The writes of `second` that land, the rest lost: all of them but `Applied`, or those
        // up to event 4 (its outcome and the conflict's lost).
        let lost_in_crash: [&[&str]; 2] = [&[], &["k4", "k5"]];
        for lost in lost_in_crash {
            let dir = tempfile::tempdir().unwrap();
            let (log, mut sm) = crate::open_stores(dir.path()).unwrap();
            block_on(sm.apply([first()])).unwrap();
            let before = (Applied::get(&sm.tree, ()).unwrap(), reads(&sm));
            let decided = block_on(sm.apply([second()])).unwrap();
            let after = reads(&sm);
            assert_eq!(after.0, 4, "{decided:?}");

            Applied::insert(&sm.tree, (), before.0.as_ref().unwrap()).unwrap();
            for key in lost {
                sm.tree.remove(Outcomes::key(key)).unwrap();
            }
            drop((log, sm));
            let (_log, mut sm) = crate::open_stores(dir.path()).unwrap();
            assert_eq!(
                (Applied::get(&sm.tree, ()).unwrap(), reads(&sm)),
                before,
                "lost {lost:?}"
            );
            assert_eq!(block_on(sm.apply([second()])).unwrap(), decided);
            assert_eq!(reads(&sm), after, "lost {lost:?}");
        }
    }
}
