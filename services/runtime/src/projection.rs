//! The projection runtime: how every service turns the event log into its state.
//!
//! ```text
//!   checkpoint (sled: last seq + state)      eventlog
//!          │ load                     read(from, limit) ▲      │ CommittedEvents (leader, in order)
//!          ▼                                  gap/idle  │      ▼
//!   state ◄── apply(event), exactly once, in seq order ─┴── follow loop ──► checkpoint every N events / T
//! ```
//!
//! A projection is a pure `apply(event)` over a serialisable state. The runner loads the last
//! checkpoint, replays the tail with `read`, then follows the live `committed` stream, filling
//! any gap (a message lost, a leader change) with `read`. State and sequence number are saved
//! together in one sled value, so a restart resumes exactly after the last applied event:
//! nothing is applied twice, nothing is skipped.

use std::path::Path;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::{CommittedEvents, ReadReply, ReadRequest, RecordedEvent};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::bus::TypedBus;
use crate::commit::APPLY_TIMEOUT;

/// How long to wait before asking an unavailable log again while catching up.
const CATCH_UP_RETRY: Duration = Duration::from_millis(200);

/// A service's state as a function of the log.
pub trait Projection: Serialize + DeserializeOwned + Default + Send + Sync + 'static {
    /// Applies one committed event. Deterministic and infallible: an event the projection does
    /// not understand is skipped (the log also carries other services' events).
    fn apply(&mut self, event: &RecordedEvent);
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("cannot open the checkpoint store in {path}: {source}")]
    Open {
        path: std::path::PathBuf,
        source: sled::Error,
    },
    #[error("checkpoint store: {0}")]
    Store(#[from] sled::Error),
    #[error("checkpoint {name} cannot be decoded: {reason}")]
    Corrupt { name: String, reason: String },
    #[error("checkpoint {name} cannot be encoded: {reason}")]
    Encode { name: String, reason: String },
    #[error("checkpoint {name} was not written: {reason}")]
    Unwritten { name: String, reason: String },
}

impl ProjectionError {
    pub fn kind(&self) -> &'static str {
        match self {
            ProjectionError::Open { .. } | ProjectionError::Store(_) => "store",
            ProjectionError::Corrupt { .. } => "corrupt",
            ProjectionError::Encode { .. } => "encode",
            ProjectionError::Unwritten { .. } => "unwritten",
        }
    }
}

/// Where one projection keeps its checkpoint: a key in the service's own sled tree.
#[derive(Clone)]
pub struct CheckpointStore {
    tree: sled::Tree,
    name: String,
}

/// The stored form: sequence number and state in one value, so they never disagree.
#[derive(Serialize, serde::Deserialize)]
struct Checkpoint<P> {
    applied_seq: u64,
    state: P,
}

/// sled's page cache for a checkpoint database. A checkpoint is written whole and read only
/// at start, so caching it would only keep a second copy of the state in memory (sled's
/// default cache is 1 GiB).
const CHECKPOINT_DB_CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// Opens (or creates) a service's own sled database for its checkpoints.
fn open_checkpoint_db(path: &Path) -> Result<sled::Db, sled::Error> {
    sled::Config::new()
        .path(path)
        .cache_capacity(CHECKPOINT_DB_CACHE_BYTES)
        .open()
}

impl CheckpointStore {
    /// The checkpoint of projection `name` in `db`'s `projections` tree.
    pub fn open(db: &sled::Db, name: &str) -> Result<Self, ProjectionError> {
        Ok(CheckpointStore {
            tree: db.open_tree("projections")?,
            name: name.to_owned(),
        })
    }

    fn load<P: Projection>(&self) -> Result<(u64, P), ProjectionError> {
        match self.tree.get(&self.name)? {
            None => Ok((0, P::default())),
            Some(bytes) => rmp_serde::from_slice::<Checkpoint<P>>(&bytes)
                .map(|c| (c.applied_seq, c.state))
                .map_err(|e| ProjectionError::Corrupt {
                    name: self.name.clone(),
                    reason: e.to_string(),
                }),
        }
    }

    fn encode<P: Projection>(
        &self,
        applied_seq: u64,
        state: &P,
    ) -> Result<Vec<u8>, ProjectionError> {
        rmp_serde::to_vec_named(&Checkpoint { applied_seq, state }).map_err(|e| {
            ProjectionError::Encode {
                name: self.name.clone(),
                reason: e.to_string(),
            }
        })
    }

    /// Writes an encoded checkpoint and flushes it. sled's flush survives the process's death,
    /// not always a power cut (`crate::sled_sync`), which is enough here: a lost checkpoint only
    /// means replaying more of the log, and the state and its sequence number are one value, so
    /// an earlier checkpoint is never mixed with a later state. Blocking: sled's insert copies
    /// the value and may write synchronously, so callers run it on a blocking thread.
    fn write(&self, bytes: Vec<u8>) -> Result<(), ProjectionError> {
        self.tree.insert(&self.name, bytes)?;
        self.tree.flush()?;
        Ok(())
    }
}

/// Tuning of the follow loop.
#[derive(Debug, Clone)]
pub struct ProjectionOptions {
    /// Checkpoint after this many applied events...
    pub checkpoint_every_events: u64,
    /// ...or this long after the last checkpoint, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Events per `read` while catching up.
    pub read_page: u32,
    /// With no live message for this long, ask the log whether anything was missed.
    pub idle_poll: Duration,
    /// How long one `read` may take.
    pub request_timeout: Duration,
}

impl Default for ProjectionOptions {
    fn default() -> Self {
        ProjectionOptions {
            checkpoint_every_events: 10_000,
            checkpoint_interval: Duration::from_secs(5),
            read_page: 1_000,
            idle_poll: Duration::from_secs(1),
            request_timeout: Duration::from_secs(5),
        }
    }
}

/// A running projection, as the rest of the service sees it.
pub struct Projected<P> {
    state: Arc<RwLock<P>>,
    applied: watch::Receiver<u64>,
    /// Whether the first catch-up after start has read everything the log had.
    caught_up: watch::Receiver<bool>,
}

impl<P> Clone for Projected<P> {
    fn clone(&self) -> Self {
        Projected {
            state: self.state.clone(),
            applied: self.applied.clone(),
            caught_up: self.caught_up.clone(),
        }
    }
}

impl<P: Projection> Projected<P> {
    pub fn read(&self) -> RwLockReadGuard<'_, P> {
        self.state.read().expect("projection lock")
    }

    /// The sequence number of the last applied event.
    pub fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Waits until the first catch-up after start is done (a service is ready only then);
    /// false on timeout.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let mut caught_up = self.caught_up.clone();
        tokio::time::timeout(timeout, caught_up.wait_for(|&done| done))
            .await
            .is_ok_and(|r| r.is_ok())
    }

    /// Waits until the projection has applied `seq` (read-your-writes after an append);
    /// false on timeout.
    pub async fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let mut applied = self.applied.clone();
        tokio::time::timeout(timeout, applied.wait_for(|&a| a >= seq))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

/// Runs a service that is projection `name` of the log until `shutdown`: opens its checkpoint
/// database in `data_dir`, follows the log, and once the projection holds what the log held
/// (serving before would answer from the past), runs `serve` with the projection's handle and
/// a stop token. Whichever ends first stops the other; following's error comes first.
pub async fn run_service<P: Projection, E: From<ProjectionError>>(
    bus: &TypedBus,
    data_dir: &Path,
    name: &str,
    shutdown: &CancellationToken,
    serve: impl AsyncFnOnce(Projected<P>, &CancellationToken) -> Result<(), E>,
) -> Result<(), E> {
    let db = open_checkpoint_db(data_dir).map_err(|source| ProjectionError::Open {
        path: data_dir.to_owned(),
        source,
    })?;
    let store = CheckpointStore::open(&db, name)?;
    let stop = shutdown.child_token();
    let (projected, follow) = start::<P>(
        bus.clone(),
        store,
        ProjectionOptions::default(),
        stop.clone(),
    )?;
    let following = async {
        let followed = follow.await;
        stop.cancel();
        followed.map_err(E::from)
    };
    let serving = async {
        let served = if catch_up(bus, &projected, &stop).await {
            serve(projected, &stop).await
        } else {
            Ok(())
        };
        stop.cancel();
        served
    };
    let (followed, served) = tokio::join!(following, serving);
    followed.and(served)
}

/// Waits until `projected` has applied everything the log held when this was called; false
/// on `stop`.
async fn catch_up<P: Projection>(
    bus: &TypedBus,
    projected: &Projected<P>,
    stop: &CancellationToken,
) -> bool {
    let options = ProjectionOptions::default();
    while !stop.is_cancelled() {
        let request = ReadRequest {
            from_seq: projected.applied_seq() + 1,
            limit: 1,
        };
        let read = bus
            .request::<_, ReadReply>(&Subject::eventlog_read(), &request, options.request_timeout)
            .await;
        if let Ok(ReadReply::Events { last_seq, .. }) = read.map(|reply| reply.message)
            && projected.wait_for(last_seq, APPLY_TIMEOUT).await
        {
            return true;
        }
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = tokio::time::sleep(CATCH_UP_RETRY) => {}
        }
    }
    false
}

/// Loads the checkpoint and returns the projection's handle and the task that keeps it
/// current until `shutdown` (then checkpoints once more).
pub fn start<P: Projection>(
    bus: TypedBus,
    store: CheckpointStore,
    options: ProjectionOptions,
    shutdown: CancellationToken,
) -> Result<
    (
        Projected<P>,
        impl Future<Output = Result<(), ProjectionError>>,
    ),
    ProjectionError,
> {
    let (applied_seq, state) = store.load::<P>()?;
    let state = Arc::new(RwLock::new(state));
    let (applied, applied_rx) = watch::channel(applied_seq);
    let (caught_up, caught_up_rx) = watch::channel(false);
    let runner = Runner {
        bus,
        store,
        options,
        state: state.clone(),
        applied,
        caught_up,
        unsaved: 0,
        writing: None,
        next_checkpoint: Instant::now(),
    };
    Ok((
        Projected {
            state,
            applied: applied_rx,
            caught_up: caught_up_rx,
        },
        runner.run(shutdown),
    ))
}

struct Runner<P> {
    bus: TypedBus,
    store: CheckpointStore,
    options: ProjectionOptions,
    state: Arc<RwLock<P>>,
    applied: watch::Sender<u64>,
    caught_up: watch::Sender<bool>,
    /// Events applied since the last checkpoint.
    unsaved: u64,
    /// The checkpoint being written, in the background: writing a large state takes as long
    /// as encoding it, and applying must not wait for the disk.
    writing: Option<JoinHandle<Result<(), ProjectionError>>>,
    /// No checkpoint before this: encoding holds the state's read lock, which stalls applying,
    /// so checkpoints of a large state are spaced to keep that stall under
    /// 1/[`CHECKPOINT_STALL_BUDGET`] of the time.
    next_checkpoint: Instant,
}

/// Checkpoints are spaced at least this many times their encoding time apart, so that the
/// follow loop spends at most 0.1% of its time encoding. Every event that arrives during an
/// encode waits for it; at 1% that share would be exactly the p99 of a service's latency,
/// at 0.1% it stays out of it.
const CHECKPOINT_STALL_BUDGET: u32 = 1000;

impl<P: Projection> Runner<P> {
    async fn run(mut self, shutdown: CancellationToken) -> Result<(), ProjectionError> {
        // Subscribe before catching up, so nothing committed in between is missed.
        let mut live = loop {
            match self
                .bus
                .subscribe::<CommittedEvents>(&Subject::eventlog_committed())
                .await
            {
                Ok(sub) => break sub,
                Err(error) => {
                    tracing::warn!(projection = %self.store.name, %error, "cannot subscribe to committed events; retrying");
                    tokio::select! {
                        _ = shutdown.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(self.options.idle_poll) => {}
                    }
                }
            }
        };
        self.catch_up(&shutdown).await;
        self.caught_up.send_replace(true);
        let mut checkpoint_timer = tokio::time::interval(self.options.checkpoint_interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = checkpoint_timer.tick() => self.checkpoint().await?,
                received = tokio::time::timeout(self.options.idle_poll, live.next()) => match received {
                    Ok(Some(batch)) => self.apply_live(batch.message.events, &shutdown).await,
                    Ok(None) => {
                        tracing::warn!(projection = %self.store.name, "committed-events subscription ended");
                        break;
                    }
                    Err(_idle) => self.catch_up(&shutdown).await,
                },
            }
            if self.unsaved >= self.options.checkpoint_every_events {
                self.checkpoint().await?;
            }
        }
        // The last checkpoint waits for the one in flight, then is written before returning.
        self.finish_writing().await?;
        self.next_checkpoint = Instant::now();
        self.checkpoint().await?;
        self.finish_writing().await
    }

    fn applied_seq(&self) -> u64 {
        *self.applied.borrow()
    }

    /// Applies events in order, skipping those already applied; returns false at a gap.
    fn apply_in_order(&mut self, events: &[RecordedEvent]) -> bool {
        let mut next = self.applied_seq() + 1;
        let fresh: Vec<&RecordedEvent> = events.iter().filter(|e| e.seq >= next).collect();
        if fresh.is_empty() {
            return true;
        }
        let mut state = self.state.write().expect("projection lock");
        for event in fresh {
            if event.seq != next {
                drop(state);
                self.advance(next - 1);
                return false;
            }
            state.apply(event);
            next += 1;
        }
        drop(state);
        self.advance(next - 1);
        true
    }

    fn advance(&mut self, seq: u64) {
        let before = self.applied_seq();
        if seq > before {
            self.unsaved += seq - before;
            self.applied.send_replace(seq);
        }
    }

    async fn apply_live(&mut self, events: Vec<RecordedEvent>, shutdown: &CancellationToken) {
        if !self.apply_in_order(&events) {
            self.catch_up(shutdown).await;
            self.apply_in_order(&events);
        }
    }

    /// Reads and applies everything after the applied sequence number, page by page, until
    /// the log has no more (or shutdown). Retries while the log is unavailable.
    async fn catch_up(&mut self, shutdown: &CancellationToken) {
        loop {
            let request = ReadRequest {
                from_seq: self.applied_seq() + 1,
                limit: self.options.read_page,
            };
            let reply = self
                .bus
                .request::<_, ReadReply>(
                    &Subject::eventlog_read(),
                    &request,
                    self.options.request_timeout,
                )
                .await;
            match reply.map(|d| d.message) {
                Ok(ReadReply::Events { events, .. }) => {
                    let complete = (events.len() as u32) < self.options.read_page;
                    self.apply_in_order(&events);
                    if complete {
                        return;
                    }
                }
                Ok(ReadReply::Unavailable { reason }) => {
                    self.wait_before_retry(shutdown, &reason).await
                }
                Err(error) => {
                    self.wait_before_retry(shutdown, &format!("{error} ({})", error.kind()))
                        .await
                }
            }
            if shutdown.is_cancelled() {
                return;
            }
        }
    }

    async fn wait_before_retry(&self, shutdown: &CancellationToken, reason: &str) {
        tracing::debug!(projection = %self.store.name, reason, "event log not readable; retrying");
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(self.options.idle_poll) => {}
        }
    }

    /// Encodes the state and starts writing it, unless nothing changed, the last write is
    /// still going, or the stall budget says not yet.
    async fn checkpoint(&mut self) -> Result<(), ProjectionError> {
        if self.unsaved == 0 || Instant::now() < self.next_checkpoint {
            return Ok(());
        }
        if self.writing.as_ref().is_some_and(|w| !w.is_finished()) {
            return Ok(());
        }
        self.finish_writing().await?;
        // Encode under the read lock, write without it: readers are never blocked on I/O.
        let started = Instant::now();
        let bytes = {
            let state = self.state.read().expect("projection lock");
            self.store.encode(self.applied_seq(), &*state)?
        };
        self.next_checkpoint = Instant::now() + started.elapsed() * CHECKPOINT_STALL_BUDGET;
        let store = self.store.clone();
        self.writing = Some(tokio::task::spawn_blocking(move || store.write(bytes)));
        self.unsaved = 0;
        Ok(())
    }

    /// Waits for the checkpoint being written, and reports how its write went.
    async fn finish_writing(&mut self) -> Result<(), ProjectionError> {
        match self.writing.take() {
            None => Ok(()),
            Some(write) => write.await.unwrap_or_else(|join| {
                Err(ProjectionError::Unwritten {
                    name: self.store.name.clone(),
                    reason: join.to_string(),
                })
            }),
        }
    }
}
