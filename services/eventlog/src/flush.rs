//! Making sled's writes durable: one flush at a time for the whole database, on the Raft core's
//! thread when nothing else is flushing, otherwise on one flusher thread, which gathers the
//! flushes asked for meanwhile into one (group commit). Each is sled's flush made durable
//! against a power cut ([`SledSync`]).

use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, mpsc};

use bulkhead_runtime::sled_sync::SledSync;
use openraft::storage::LogFlushed;
use tokio::sync::oneshot;

use crate::{TypeConfig, metrics};

/// Flushes (fsyncs) the sled database both stores live in; cheap to clone, clones share the
/// flusher thread, which ends with the last clone.
///
/// Never two flushes at once: sled 0.34 can deadlock when flushes overlap on one database
/// (spacejam/sled#1308), and several callers could otherwise overlap (the log store appending
/// or saving a vote, a snapshot being built or installed). A sled flush covers every write made
/// before it, in any tree of the database, so the thread's flush answers every request queued
/// before it began.
///
/// The log's flush, the one every append waits for, is made on the caller's thread when no
/// other flush is running: openraft 0.9's core waits for it before it goes on
/// (`RaftCore::append_to_log`; so the leader still replicates an entry only once it is durable
/// here), and has one append in flight at a time. Handing it to the thread and back cost two
/// thread wake-ups per append, 30-45 µs of one append's 0.4 ms inside a replica on 2 vCPUs
/// (`docs/performance.md`). The price is a tokio worker blocked for the fsync, while the core
/// would only have waited.
///
/// A request carries the tree to flush through, and the thread keeps no handle on the database
/// between requests, so that it never keeps the database open: sled releases a database's lock
/// file when the last handle on it is dropped, and a replica must let go of its directory when
/// it stops. (`SledSync`'s own handle on the data file holds no lock.)
#[derive(Clone)]
pub(crate) struct Flusher {
    requests: mpsc::Sender<Request>,
    /// Held while a flush runs, wherever it runs.
    flushing: Arc<Mutex<SledSync>>,
}

struct Request {
    tree: sled::Tree,
    waiter: Waiter,
}

/// Who is told once the flush is done.
enum Waiter {
    Log(LogFlushed<TypeConfig>),
    Task(oneshot::Sender<Result<(), String>>),
}

impl Flusher {
    /// Starts the flusher thread for the sled database open in `dir`.
    pub(crate) fn start(dir: &Path) -> io::Result<Self> {
        let (requests, queue) = mpsc::channel();
        let flushing = Arc::new(Mutex::new(SledSync::open(dir)?));
        let held = flushing.clone();
        std::thread::Builder::new()
            .name("eventlog-flush".into())
            .spawn(move || run(queue, &held))?;
        Ok(Flusher { requests, flushing })
    }

    /// Has openraft told once every write made to `tree`'s database before the call is on disk.
    pub(crate) fn flush_log(&self, tree: &sled::Tree, callback: LogFlushed<TypeConfig>) {
        if let Ok(mut sync) = self.flushing.try_lock() {
            Waiter::Log(callback).answer(flush(&mut sync, tree));
            return;
        }
        let request = Request {
            tree: tree.clone(),
            waiter: Waiter::Log(callback),
        };
        if let Err(mpsc::SendError(request)) = self.requests.send(request) {
            request.waiter.answer(Err(stopped().to_string()));
        }
    }

    /// Returns once every write made to `tree`'s database before the call is on disk.
    pub(crate) async fn flush(&self, tree: &sled::Tree) -> io::Result<()> {
        let (done, flushed) = oneshot::channel();
        let request = Request {
            tree: tree.clone(),
            waiter: Waiter::Task(done),
        };
        self.requests.send(request).map_err(|_| stopped())?;
        match flushed.await {
            Ok(result) => result.map_err(io::Error::other),
            Err(_) => Err(stopped()),
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the flusher thread has stopped")
}

impl Waiter {
    fn answer(self, result: Result<(), String>) {
        match self {
            Waiter::Log(callback) => callback.log_io_completed(result.map_err(io::Error::other)),
            Waiter::Task(done) => {
                let _ = done.send(result);
            }
        }
    }
}

/// Flushes until every [`Flusher`] is gone: each flush for all the requests queued before it.
fn run(queue: mpsc::Receiver<Request>, flushing: &Mutex<SledSync>) {
    while let Ok(first) = queue.recv() {
        let tree = first.tree;
        let mut waiters = vec![first.waiter];
        waiters.extend(queue.try_iter().map(|request| request.waiter));
        // Poisoned only if a flush panicked; the blobs it had synced are synced again.
        let mut sync = flushing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = flush(&mut sync, &tree);
        drop(sync);
        drop(tree);
        for waiter in waiters {
            waiter.answer(result.clone());
        }
    }
}

fn flush(sync: &mut SledSync, tree: &sled::Tree) -> Result<(), String> {
    sync.flush(tree)
        .map(metrics::flushed_durably)
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_durable_flush_is_counted_with_the_blob_files_it_synced() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::open_quiet_database(dir.path());
        let tree = db.open_tree("t").unwrap();
        let flusher = Flusher::start(dir.path()).unwrap();
        let (flushes, blobs) = metrics::durable_flush_counts();

        tree.insert("small", vec![1; 64]).unwrap();
        flusher.flush(&tree).await.unwrap();
        // Over a quarter of sled's default 512 KiB segment: sled writes it to a blob file.
        tree.insert("large", vec![2; 200 * 1024]).unwrap();
        flusher.flush(&tree).await.unwrap();

        // At least: the counters are the process's, and tests may run side by side.
        let (flushes_after, blobs_after) = metrics::durable_flush_counts();
        assert!(flushes_after >= flushes + 2, "{flushes} -> {flushes_after}");
        assert!(blobs_after > blobs, "{blobs} -> {blobs_after}");
    }
}
