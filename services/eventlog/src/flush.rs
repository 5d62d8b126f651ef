//! Making sled's writes durable: one flusher thread for the whole database, which gathers the
//! flushes asked for meanwhile into one (group commit).

use std::io;
use std::sync::mpsc;

use openraft::storage::LogFlushed;
use tokio::sync::oneshot;

use crate::TypeConfig;

/// Hands flushes (fsyncs) of the sled database both stores live in to one thread; cheap to
/// clone, clones share the thread, which ends with the last clone.
///
/// A sled flush covers every write made before it, in any tree of the database, so one flush
/// answers every request queued before it began: appends that arrive while a flush runs share
/// the next one. One thread, never two flushes at once: sled 0.34 can deadlock when flushes
/// overlap on one database (spacejam/sled#1308), and several callers could otherwise overlap
/// (the log store appending or saving a vote, a snapshot being built or installed).
///
/// The log store hands openraft's callback over and returns; the callback fires, in the order
/// the appends were made, once the flush is done. openraft 0.9's core waits for it before it goes
/// on (`RaftCore::append_to_log`), so the leader still replicates an entry only once it is
/// durable here.
///
/// A request carries the tree to flush through, and the thread keeps no handle between
/// requests, so that it never keeps the database open: sled releases a database's lock file
/// when the last handle on it is dropped, and a replica must let go of its directory when it
/// stops.
#[derive(Clone)]
pub(crate) struct Flusher {
    requests: mpsc::Sender<Request>,
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
    /// Starts the flusher thread.
    pub(crate) fn start() -> io::Result<Self> {
        let (requests, queue) = mpsc::channel();
        std::thread::Builder::new()
            .name("eventlog-flush".into())
            .spawn(move || run(queue))?;
        Ok(Flusher { requests })
    }

    /// Has openraft told once every write made to `tree`'s database before the call is on disk.
    pub(crate) fn flush_log(&self, tree: &sled::Tree, callback: LogFlushed<TypeConfig>) {
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
fn run(queue: mpsc::Receiver<Request>) {
    while let Ok(first) = queue.recv() {
        let tree = first.tree;
        let mut waiters = vec![first.waiter];
        waiters.extend(queue.try_iter().map(|request| request.waiter));
        let result = tree.flush().map(drop).map_err(|e| e.to_string());
        drop(tree);
        for waiter in waiters {
            waiter.answer(result.clone());
        }
    }
}
