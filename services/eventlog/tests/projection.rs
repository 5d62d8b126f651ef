//! The projection runtime (`bulkhead_runtime::projection`) against a real single-node event log
//! on the in-process bus, as `bulkhead up` runs them: catch-up, live follow, gap filling, and
//! restarts that never apply an event twice.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bulkhead_eventlog::{EventlogConfig, run};
use bulkhead_runtime::bus::{Bus, BusError, BusMessage, InProcessBus, Subscription, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_runtime::projection::{
    self, CheckpointStore, Projected, Projection, ProjectionOptions,
};
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, CommittedEvents, ExpectedVersion, NewEvent,
    RecordedEvent,
};
use bulkhead_schema::{Envelope, Subject};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(10);

/// Remembers every sequence number it applied, so a double apply or a gap shows.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SeenEvents {
    seqs: Vec<u64>,
    per_stream: BTreeMap<String, u64>,
}

impl Projection for SeenEvents {
    fn apply(&mut self, event: &RecordedEvent) {
        self.seqs.push(event.seq);
        *self.per_stream.entry(event.stream.clone()).or_default() += 1;
    }
}

struct Log {
    bus: TypedBus,
    stop: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn start_log() -> Log {
    start_log_on(TypedBus::new(Arc::new(InProcessBus::default()))).await
}

async fn start_log_on(bus: TypedBus) -> Log {
    let dir = tempfile::tempdir().unwrap();
    let stop = CancellationToken::new();
    let config = EventlogConfig::single_node(dir.path().join("eventlog"));
    tokio::spawn(run(
        config,
        bus.clone(),
        Health::new("eventlog", "1"),
        stop.clone(),
    ));
    Log {
        bus,
        stop,
        _dir: dir,
    }
}

/// Idempotency keys, unique across the test binary.
static NEXT_KEY: AtomicU64 = AtomicU64::new(0);

/// Appends `count` one-event appends to `stream`, retrying while the log elects itself.
async fn append(bus: &TypedBus, stream: &str, count: usize) {
    for i in 0..count {
        let request = AppendRequest {
            stream: stream.into(),
            expected_version: ExpectedVersion::Any,
            idempotency_key: format!("key-{}", NEXT_KEY.fetch_add(1, Ordering::Relaxed)),
            events: vec![NewEvent {
                event_type: "test.Happened".into(),
                data: vec![i as u8],
            }],
        };
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let reply = bus
                .request::<_, AppendReply>(&Subject::eventlog_append(), &request, WAIT)
                .await;
            match reply.map(|r| r.message) {
                Ok(AppendReply::Decided(AppendOutcome::Appended { .. })) => break,
                other => assert!(
                    tokio::time::Instant::now() < deadline,
                    "append failed: {other:?}"
                ),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

struct Running {
    projected: Projected<SeenEvents>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), projection::ProjectionError>>,
}

/// A projection loaded from its checkpoint whose task has not started, so what it loaded can be
/// looked at before it catches up.
struct Loaded {
    projected: Projected<SeenEvents>,
    stop: CancellationToken,
    task: Pin<Box<dyn Future<Output = Result<(), projection::ProjectionError>> + Send>>,
}

fn load_projection(bus: &TypedBus, db: &sled::Db, idle_poll: Duration) -> Loaded {
    let store = CheckpointStore::open(db, "seen").unwrap();
    let stop = CancellationToken::new();
    let options = ProjectionOptions {
        idle_poll,
        read_page: 7,
        ..Default::default()
    };
    let (projected, task) =
        projection::start::<SeenEvents>(bus.clone(), store, options, stop.clone()).unwrap();
    Loaded {
        projected,
        stop,
        task: Box::pin(task),
    }
}

impl Loaded {
    fn run(self) -> Running {
        Running {
            projected: self.projected,
            stop: self.stop,
            task: tokio::spawn(self.task),
        }
    }
}

fn start_projection(bus: &TypedBus, db: &sled::Db, idle_poll: Duration) -> Running {
    load_projection(bus, db, idle_poll).run()
}

impl Running {
    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap().unwrap();
    }
}

fn assert_exactly_once(seen: &SeenEvents, last: u64) {
    assert_eq!(
        seen.seqs,
        (1..=last).collect::<Vec<_>>(),
        "every event once, in order"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catches_up_follows_and_resumes_after_restart_without_double_apply() {
    let log = start_log().await;
    append(&log.bus, "before", 20).await;

    let state_dir = tempfile::tempdir().unwrap();
    let db = sled::open(state_dir.path()).unwrap();
    let running = start_projection(&log.bus, &db, Duration::from_millis(100));
    assert!(
        running.projected.wait_for(20, WAIT).await,
        "caught up by reading pages"
    );
    append(&log.bus, "live", 10).await;
    assert!(
        running.projected.wait_for(30, WAIT).await,
        "followed the live stream"
    );
    assert_exactly_once(&running.projected.read(), 30);
    running.stop().await;

    // Down while the log moves on; restarted from its checkpoint in the same sled tree.
    append(&log.bus, "while-down", 15).await;
    let loaded = load_projection(&log.bus, &db, Duration::from_millis(100));
    assert_eq!(
        loaded.projected.applied_seq(),
        30,
        "resumes from the checkpoint, not from zero"
    );
    let running = loaded.run();
    assert!(running.projected.wait_for(45, WAIT).await);
    {
        let seen = running.projected.read();
        assert_exactly_once(&seen, 45);
        assert_eq!(seen.per_stream["before"], 20);
        assert_eq!(seen.per_stream["while-down"], 15);
    }
    running.stop().await;
    log.stop.cancel();
}

/// The in-process bus, losing the committed events whose sequence numbers are at least `lose_from`
/// (and below `lose_until`, when set), whenever the log gets round to publishing them: the log
/// publishes them, nobody receives them, as when NATS drops messages for a slow consumer.
struct LossyBus {
    inner: InProcessBus,
    lose_from: AtomicU64,
    lose_until: AtomicU64,
}

#[async_trait::async_trait]
impl Bus for LossyBus {
    async fn publish(&self, subject: &Subject, payload: Bytes) -> Result<(), BusError> {
        if *subject != Subject::eventlog_committed() {
            return self.inner.publish(subject, payload).await;
        }
        let (from, until) = (
            self.lose_from.load(Ordering::SeqCst),
            self.lose_until.load(Ordering::SeqCst),
        );
        let mut batch = Envelope::decode::<CommittedEvents>(&payload, usize::MAX)
            .unwrap()
            .message;
        batch.events.retain(|e| e.seq < from || e.seq >= until);
        if batch.events.is_empty() {
            return Ok(());
        }
        self.inner
            .publish(subject, Envelope::encode(&batch).unwrap().into())
            .await
    }
    async fn subscribe(&self, subject: &Subject) -> Result<Subscription, BusError> {
        self.inner.subscribe(subject).await
    }
    async fn queue_subscribe(
        &self,
        subject: &Subject,
        group: &str,
    ) -> Result<Subscription, BusError> {
        self.inner.queue_subscribe(subject, group).await
    }
    async fn request(
        &self,
        subject: &Subject,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError> {
        self.inner.request(subject, payload, timeout).await
    }
    async fn flush(&self) -> Result<(), BusError> {
        self.inner.flush().await
    }
    fn max_payload(&self) -> usize {
        self.inner.max_payload()
    }
}

async fn start_lossy_log() -> (Log, Arc<LossyBus>) {
    let lossy = Arc::new(LossyBus {
        inner: InProcessBus::default(),
        lose_from: AtomicU64::new(u64::MAX),
        lose_until: AtomicU64::new(u64::MAX),
    });
    let log = start_log_on(TypedBus::new(lossy.clone())).await;
    (log, lossy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gap_in_the_live_stream_is_filled_from_the_log() {
    let (log, lossy) = start_lossy_log().await;
    let state_dir = tempfile::tempdir().unwrap();
    let db = sled::open(state_dir.path()).unwrap();
    append(&log.bus, "s", 1).await;
    // No idle polling within the test's time: only the gap can make it read.
    let running = start_projection(&log.bus, &db, Duration::from_secs(600));
    assert!(running.projected.wait_for(1, WAIT).await);
    // The start-up read is over: from here on, only the live stream or a gap can bring events.
    assert!(running.projected.wait_caught_up(WAIT).await);

    lossy.lose_until.store(7, Ordering::SeqCst);
    lossy.lose_from.store(2, Ordering::SeqCst);
    append(&log.bus, "s", 5).await; // 2..=6, never delivered
    assert!(
        !running
            .projected
            .wait_for(2, Duration::from_millis(300))
            .await,
        "lost batches were lost"
    );
    append(&log.bus, "s", 1).await; // 7 arrives, after a gap
    assert!(
        running.projected.wait_for(7, WAIT).await,
        "the gap 2..=6 was read"
    );
    assert_exactly_once(&running.projected.read(), 7);
    running.stop().await;
    log.stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_tail_is_found_by_polling_when_idle() {
    let (log, lossy) = start_lossy_log().await;
    let state_dir = tempfile::tempdir().unwrap();
    let db = sled::open(state_dir.path()).unwrap();
    let running = start_projection(&log.bus, &db, Duration::from_millis(100));
    lossy.lose_from.store(1, Ordering::SeqCst);
    append(&log.bus, "s", 3).await; // the last events there are: no later batch shows the gap
    assert!(
        running.projected.wait_for(3, WAIT).await,
        "idle polling read the tail"
    );
    assert_exactly_once(&running.projected.read(), 3);
    running.stop().await;
    log.stop.cancel();
}
