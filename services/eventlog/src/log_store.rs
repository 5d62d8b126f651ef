//! The Raft log on sled: entries by index, plus the vote and the committed and purged log ids.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};

use crate::flush::Flusher;
use crate::keyspace::{KeySpace, key_space};
use crate::{NodeId, StoreError, TypeConfig};

key_space!(
    /// Log entries by index.
    Entries, 0x01, u64 => Entry<TypeConfig>
);
key_space!(SavedVote, 0x02, () => Vote<NodeId>);
key_space!(Committed, 0x03, () => LogId<NodeId>);
key_space!(
    /// The last purged log id, kept because it may be the last log id once every entry is gone.
    Purged, 0x04, () => LogId<NodeId>
);

/// The Raft log store; a clone shares the same tree and serves as the log reader.
#[derive(Clone)]
pub struct LogStore {
    tree: sled::Tree,
    flusher: Flusher,
}

impl LogStore {
    pub(crate) fn open(db: &sled::Db, flusher: Flusher) -> Result<Self, StoreError> {
        Ok(Self {
            tree: db.open_tree("raft_log")?,
            flusher,
        })
    }

    fn read_log_state(&self) -> Result<LogState<TypeConfig>, StoreError> {
        let last_purged_log_id = Purged::get(&self.tree, ())?;
        let last_entry = Entries::values(&self.tree, Bound::Unbounded, Bound::Unbounded)
            .next_back()
            .transpose()?;
        Ok(LogState {
            last_purged_log_id,
            last_log_id: last_entry.map(|entry| entry.log_id).or(last_purged_log_id),
        })
    }

    fn write_entries(
        &self,
        entries: impl IntoIterator<Item = Entry<TypeConfig>>,
    ) -> Result<(), StoreError> {
        // Entry by entry, not in one sled batch: a batch makes sled 0.34 seal and write its IO
        // buffer twice (before and after the batch's marker), each write a `sync_file_range`
        // on sled's IO pool, whose queue wakes all seven idle pool threads. That cost one append
        // more than the rest of its storage (docs/performance.md). No atomicity is lost that
        // matters: sled recovers a prefix of its writes, a prefix of the entries is a shorter
        // log, and openraft counts none of them before the flush that follows.
        for entry in entries {
            Entries::insert(&self.tree, entry.log_id.index, &entry)?;
        }
        Ok(())
    }

    fn remove_since(&self, index: u64) -> Result<(), StoreError> {
        let mut batch = sled::Batch::default();
        Entries::remove_range(
            &self.tree,
            &mut batch,
            Bound::Included(index),
            Bound::Unbounded,
        )?;
        Ok(self.tree.apply_batch(batch)?)
    }

    fn remove_upto(&self, log_id: LogId<NodeId>) -> Result<(), StoreError> {
        // One batch: the purged id and the removal land together, so the log never looks empty
        // without a purged id to stand for its end.
        let mut batch = sled::Batch::default();
        Purged::put(&mut batch, (), &log_id)?;
        Entries::remove_range(
            &self.tree,
            &mut batch,
            Bound::Unbounded,
            Bound::Included(log_id.index),
        )?;
        Ok(self.tree.apply_batch(batch)?)
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        Entries::values(
            &self.tree,
            range.start_bound().cloned(),
            range.end_bound().cloned(),
        )
        .collect::<Result<_, _>>()
        .map_err(|e| StorageIOError::read_logs(&e).into())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.read_log_state()
            .map_err(|e| StorageIOError::read_logs(&e).into())
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        SavedVote::insert(&self.tree, (), vote).map_err(|e| StorageIOError::write_vote(&e))?;
        // A vote must survive a crash, or this replica could vote twice in one term.
        self.flusher
            .flush(&self.tree)
            .await
            .map_err(|e| StorageIOError::write_vote(&e))?;
        Ok(())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        SavedVote::get(&self.tree, ()).map_err(|e| StorageIOError::read_vote(&e).into())
    }

    // Not flushed: losing it only means re-applying fewer entries at start-up; the next log
    // flush makes it durable anyway.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let saved = match committed {
            Some(log_id) => Committed::insert(&self.tree, (), &log_id),
            None => self
                .tree
                .remove(Committed::key(()))
                .map(drop)
                .map_err(StoreError::from),
        };
        saved.map_err(|e| StorageIOError::new(ErrorSubject::Store, ErrorVerb::Write, &e).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        Committed::get(&self.tree, ())
            .map_err(|e| StorageIOError::new(ErrorSubject::Store, ErrorVerb::Read, &e).into())
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.write_entries(entries)
            .map_err(|e| StorageIOError::write_logs(&e))?;
        // openraft counts an entry towards a quorum once the callback fires: only after fsync.
        self.flusher.flush_log(&self.tree, callback);
        Ok(())
    }

    // Neither truncate nor purge flushes: sled recovers a prefix of its writes, so any later
    // flushed append makes them durable too, and until then the entries they remove are harmless.
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_since(log_id.index)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.remove_upto(log_id)
            .map_err(|e| StorageIOError::write_logs(&e).into())
    }
}
