//! Making sled's writes durable: one flush at a time for the whole database.

use std::sync::Arc;

/// Takes turns flushing (fsyncing) the sled database both stores live in; cheap to clone,
/// clones share the turns.
///
/// A sled flush covers every write made before it, in any tree of the database, so the stores
/// need no flush of their own beyond this. Flushes take turns because sled 0.34 can deadlock
/// when `flush_async` runs concurrently on one database (spacejam/sled#1308: each flush occupies
/// a thread of sled's small I/O pool while waiting for writes queued on that same pool), and
/// three callers could otherwise overlap: the log store appending or saving a vote (on
/// openraft's core task), a snapshot being built (on its own task) and one being installed (on
/// the state machine's task).
///
/// It holds no handle on the database: each store flushes through its own tree, so that no
/// store keeps the other's tree open (sled flushes a tree and releases the database's lock
/// file when the last handle on it is dropped; a replica must let go of its directory when it
/// stops).
#[derive(Clone, Default)]
pub(crate) struct Flusher {
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl Flusher {
    /// Returns once every write made to `tree`'s database before the call is on disk.
    pub(crate) async fn flush(&self, tree: &sled::Tree) -> sled::Result<()> {
        let _turn = self.turn.lock().await;
        tree.flush_async().await.map(drop)
    }
}
