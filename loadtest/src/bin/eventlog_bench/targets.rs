//! The systems the benchmark appends to, each acknowledging an append only once it is as
//! durable as that system makes it, and all under the same client policy: one attempt waits at
//! most [`ATTEMPT_TIMEOUT`], then the append is retried with the same key.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream::{self, context::PublishErrorKind, message::PublishMessage, stream};
use bulkhead_loadtest::cell::{AppendTarget, Bounds, Cell, Failure, run_cell};
use bulkhead_loadtest::control_plane::connect_bus;
use bulkhead_runtime::bus::{BusError, TypedBus};
use bulkhead_runtime::sled_sync::SledSync;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, ExpectedVersion, NewEvent,
};
use bytes::Bytes;
use futures::StreamExt as _;

pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// Bulkhead's event log, through the path every service uses: a typed request on the append
/// subject, answered by a replica once the append is committed (fsynced on a majority).
pub struct BulkheadLog {
    bus: TypedBus,
    subject: Subject,
    attempt_timeout: Duration,
}

impl BulkheadLog {
    /// `attempt_timeout` replaces [`ATTEMPT_TIMEOUT`] where the time to notice a lost attempt
    /// would hide what is measured.
    pub async fn connect(nats_url: &str, attempt_timeout: Duration) -> anyhow::Result<Self> {
        Ok(BulkheadLog {
            bus: connect_bus(nats_url, "eventlog-bench").await?,
            subject: Subject::eventlog_append(),
            attempt_timeout,
        })
    }
}

impl AppendTarget for BulkheadLog {
    async fn append(&self, client: usize, key: &str, payload: Bytes) -> Result<(), Failure> {
        let request = AppendRequest {
            // A stream per client, as each aggregate has its own.
            stream: format!("bench-{client}"),
            expected_version: ExpectedVersion::Any,
            idempotency_key: key.to_owned(),
            events: vec![NewEvent {
                event_type: "bench.Appended".into(),
                data: payload.to_vec(),
            }],
        };
        let reply = self
            .bus
            .request::<AppendRequest, AppendReply>(&self.subject, &request, self.attempt_timeout)
            .await;
        match reply {
            Ok(decoded) => match decoded.message {
                AppendReply::Decided(AppendOutcome::Appended { .. }) => Ok(()),
                AppendReply::Unavailable { reason } => Err(Failure::Retry(reason)),
                other => Err(Failure::Fatal(format!("unexpected reply {other:?}"))),
            },
            Err(
                e @ (BusError::Timeout { .. } | BusError::NoResponders(_) | BusError::Transport(_)),
            ) => Err(Failure::Retry(e.to_string())),
            Err(e) => Err(Failure::Fatal(e.to_string())),
        }
    }
}

/// A JetStream stream on file storage, published to with the ack awaited. The append's key is
/// the `Nats-Msg-Id`, so JetStream deduplicates retries as our log does idempotency keys.
pub struct JetStreamStream {
    context: jetstream::Context,
}

impl JetStreamStream {
    /// Creates the stream, retrying while the cluster elects its meta leader.
    pub async fn create(nats_url: &str, replicas: usize) -> anyhow::Result<Self> {
        let client = async_nats::connect(nats_url).await?;
        let context = jetstream::ContextBuilder::new()
            .timeout(ATTEMPT_TIMEOUT)
            .build(client);
        let config = stream::Config {
            name: "BENCH".into(),
            subjects: vec!["bench.>".into()],
            storage: stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match context.get_or_create_stream(config.clone()).await {
                Ok(_) => break,
                Err(_) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e).context("create the JetStream stream"),
            }
        }
        Ok(JetStreamStream { context })
    }
}

impl AppendTarget for JetStreamStream {
    async fn append(&self, client: usize, key: &str, payload: Bytes) -> Result<(), Failure> {
        let publish = PublishMessage::build().payload(payload).message_id(key);
        let acked = async {
            self.context
                .send_publish(format!("bench.{client}"), publish)
                .await?
                .await
        };
        match acked.await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                PublishErrorKind::TimedOut
                | PublishErrorKind::BrokenPipe
                | PublishErrorKind::StreamNotFound
                | PublishErrorKind::Other => Err(Failure::Retry(e.to_string())),
                _ => Err(Failure::Fatal(e.to_string())),
            },
        }
    }
}

/// Writers sharing flushes (group commit), as concurrent appends share a Raft entry: a writer
/// waits for the flush in progress, then either finds its write covered by one that started
/// after it or flushes itself. One flush at a time also keeps clear of sled 0.34's deadlock
/// under concurrent flushes (spacejam/sled#1308).
struct GroupCommit<D> {
    /// Writes made so far; a writer's ticket is the count including its own write.
    written: AtomicU64,
    /// Every write with a ticket up to this is durable, and what makes writes durable. Guarded
    /// so that one flush runs at once.
    durable: tokio::sync::Mutex<(u64, D)>,
}

impl<D> GroupCommit<D> {
    fn new(durability: D) -> Self {
        GroupCommit {
            written: AtomicU64::new(0),
            durable: tokio::sync::Mutex::new((0, durability)),
        }
    }

    /// Returns once `write` is durable; `write` is made at once, `flush` when needed.
    async fn commit(
        &self,
        write: impl FnOnce() -> std::io::Result<()>,
        flush: impl FnOnce(&mut D) -> std::io::Result<()>,
    ) -> Result<(), Failure> {
        let fatal = |e: std::io::Error| Failure::Fatal(e.to_string());
        write().map_err(fatal)?;
        let ticket = self.written.fetch_add(1, Ordering::SeqCst) + 1;
        let mut durable = self.durable.lock().await;
        let (durable_up_to, durability) = &mut *durable;
        if *durable_up_to < ticket {
            let covered = self.written.load(Ordering::SeqCst);
            // A replica flushes on its Raft core's thread the same way.
            tokio::task::block_in_place(|| flush(durability)).map_err(fatal)?;
            *durable_up_to = covered;
        }
        Ok(())
    }
}

/// The disk floor under our log store: sled as the log store uses it, every write flushed and
/// made durable (`SledSync`: fsynced, as JetStream's `sync_interval: always` does) before it
/// counts, writers sharing flushes.
pub struct RawSled {
    db: sled::Db,
    commits: GroupCommit<SledSync>,
    _dir: tempfile::TempDir,
}

impl RawSled {
    pub fn open() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bench-sled-").tempdir()?;
        let db = sled::open(dir.path())?;
        Ok(RawSled {
            db,
            commits: GroupCommit::new(SledSync::open(dir.path())?),
            _dir: dir,
        })
    }
}

impl AppendTarget for RawSled {
    async fn append(&self, _client: usize, key: &str, payload: Bytes) -> Result<(), Failure> {
        let write = || {
            self.db
                .insert(key.as_bytes(), payload.as_ref())
                .map(drop)
                .map_err(std::io::Error::other)
        };
        self.commits
            .commit(write, |sync| sync.flush(&self.db).map(drop))
            .await
    }
}

/// The disk's own floor: each event appended to a plain file, made durable by `fdatasync`,
/// writers sharing flushes. What no store on this disk can beat; the gap to the sled floor is
/// what sled's flush costs on top.
pub struct RawFile {
    file: std::fs::File,
    commits: GroupCommit<()>,
    _dir: tempfile::TempDir,
}

impl RawFile {
    pub fn open() -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("bench-file-").tempdir()?;
        let file = std::fs::File::options()
            .create_new(true)
            .append(true)
            .open(dir.path().join("log"))?;
        std::fs::File::open(dir.path())?.sync_all()?;
        Ok(RawFile {
            file,
            commits: GroupCommit::new(()),
            _dir: dir,
        })
    }
}

impl AppendTarget for RawFile {
    async fn append(&self, _client: usize, _key: &str, payload: Bytes) -> Result<(), Failure> {
        // One `write` per event on an append-only file: each lands whole after the others.
        let write = || (&self.file).write_all(&payload);
        self.commits.commit(write, |()| self.file.sync_data()).await
    }
}

/// The messaging floor: a NATS core request to a responder that echoes it, on one server.
pub struct NatsRoundTrip {
    client: async_nats::Client,
    responder: tokio::task::JoinHandle<()>,
}

const ECHO_SUBJECT: &str = "bench.echo";

impl NatsRoundTrip {
    pub async fn start(nats_url: &str) -> anyhow::Result<Self> {
        let responder_client = async_nats::connect(nats_url).await?;
        let mut requests = responder_client.subscribe(ECHO_SUBJECT).await?;
        responder_client.flush().await?;
        // Lives as long as the subscription, which ends when the task is aborted on drop.
        let responder = tokio::spawn(async move {
            while let Some(request) = requests.next().await {
                if let Some(reply) = request.reply {
                    let _ = responder_client.publish(reply, request.payload).await;
                }
            }
        });
        Ok(NatsRoundTrip {
            client: async_nats::connect(nats_url).await?,
            responder,
        })
    }
}

impl Drop for NatsRoundTrip {
    fn drop(&mut self) {
        self.responder.abort();
    }
}

impl AppendTarget for NatsRoundTrip {
    async fn append(&self, _client: usize, _key: &str, payload: Bytes) -> Result<(), Failure> {
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(ATTEMPT_TIMEOUT));
        match self.client.send_request(ECHO_SUBJECT, request).await {
            Ok(_) => Ok(()),
            Err(e) => match e.kind() {
                async_nats::client::RequestErrorKind::TimedOut
                | async_nats::client::RequestErrorKind::NoResponders => {
                    Err(Failure::Retry(e.to_string()))
                }
                _ => Err(Failure::Fatal(e.to_string())),
            },
        }
    }
}

/// Waits until `target` acknowledges an append: one append, retried for up to `within`.
pub async fn wait_until_appending<T: AppendTarget>(
    target: &Arc<T>,
    within: Duration,
) -> anyhow::Result<()> {
    // Each probe is a new append, not a retry of an earlier probe's.
    static PROBES: AtomicU64 = AtomicU64::new(0);
    let probe = run_cell(
        target,
        Cell {
            event_bytes: 16,
            clients: 1,
        },
        Bounds {
            warmup: Duration::ZERO,
            window: within,
            max_appends: 1,
            give_up_after: within,
        },
        &format!("ready-{}", PROBES.fetch_add(1, Ordering::Relaxed)),
    )
    .await?;
    match probe.last_failure {
        Some(reason) if probe.acks.is_empty() => {
            anyhow::bail!("no append acknowledged within {within:?}: {reason}")
        }
        _ => Ok(()),
    }
}
