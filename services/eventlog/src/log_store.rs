//! The Raft log on sled: entries by index, plus the vote and the committed and purged log ids.

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{
    Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftLogReader, StorageError,
    StorageIOError, Vote,
};

use crate::flush::Flusher;
use crate::keyspace::{self, KeySpace, key_space};
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
        let store = Self {
            tree: db.open_tree("raft_log")?,
            flusher,
        };
        if let Some(hole) = store.cut_at_a_hole()? {
            tracing::warn!(
                hole,
                "the log came back with entry {hole} missing and later ones present (a power \
                 cut before they were flushed); removed the entries from {hole} on"
            );
        }
        Ok(store)
    }

    /// After a power cut, sled 0.34 can bring back a log with a hole in it: when it recovers, it
    /// skips a write whose value was in a blob file that did not survive, and keeps the writes
    /// after it (`bulkhead_runtime::sled_sync`). Each flush syncs the blobs written before it, so
    /// a hole can only be in what no flush covered: past the committed index, which is written
    /// after the entries up to it, and past the purged one. Those entries were never reported
    /// durable, and Raft wants a log without holes, so they go from the hole on, as if the power
    /// had failed before they were written. Returns the hole's index.
    fn cut_at_a_hole(&self) -> Result<Option<u64>, StoreError> {
        let covered = Committed::get(&self.tree, ())?
            .map(|id| id.index)
            .max(Purged::get(&self.tree, ())?.map(|id| id.index));
        let mut next = covered.map(|index| index + 1);
        let start = covered.map_or(Bound::Unbounded, Bound::Excluded);
        for key in Entries::raw_range(&self.tree, start, Bound::Unbounded).keys() {
            let index = keyspace::number(&key?).ok_or(StoreError::CorruptKey {
                space: <Entries as KeySpace>::NAME,
            })?;
            match next {
                Some(hole) if index != hole => {
                    self.remove_since(hole)?;
                    return Ok(Some(hole));
                }
                _ => next = Some(index + 1),
            }
        }
        Ok(None)
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

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, EntryPayload};

    use super::*;

    fn mk_entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn open_log(dir: &std::path::Path) -> (sled::Db, LogStore) {
        let db = crate::open_quiet_database(dir);
        let store = LogStore::open(&db, Flusher::start(dir).unwrap()).unwrap();
        (db, store)
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        Entries::values(&store.tree, Bound::Unbounded, Bound::Unbounded)
            .map(|entry| entry.unwrap().log_id.index)
            .collect()
    }

    /// What sled's recovery leaves when the blob file of one entry's write did not survive.
    fn lose(store: &LogStore, index: u64) {
        store.tree.remove(Entries::key(index)).unwrap();
    }

    #[test]
    fn a_log_that_came_back_with_a_hole_past_the_committed_index_ends_before_the_hole() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = open_log(dir.path());
        store.write_entries((1..=10).map(mk_entry)).unwrap();
        Committed::insert(&store.tree, (), &mk_entry(3).log_id).unwrap();
        lose(&store, 6);

        let reopened = LogStore::open(&db, store.flusher.clone()).unwrap();
        assert_eq!(indexes(&reopened), vec![1, 2, 3, 4, 5]);
        let state = reopened.read_log_state().unwrap();
        assert_eq!(state.last_log_id.map(|id| id.index), Some(5));
    }

    #[test]
    fn after_a_purge_a_hole_is_found_from_the_purged_index_and_a_whole_log_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let (db, store) = open_log(dir.path());
        store.write_entries((1..=10).map(mk_entry)).unwrap();
        store.remove_upto(mk_entry(4).log_id).unwrap();

        let reopened = LogStore::open(&db, store.flusher.clone()).unwrap();
        assert_eq!(indexes(&reopened), (5..=10).collect::<Vec<_>>());

        lose(&store, 8);
        let reopened = LogStore::open(&db, store.flusher.clone()).unwrap();
        assert_eq!(indexes(&reopened), vec![5, 6, 7]);
        let state = reopened.read_log_state().unwrap();
        assert_eq!(state.last_purged_log_id.map(|id| id.index), Some(4));
        assert_eq!(state.last_log_id.map(|id| id.index), Some(7));
    }
}
