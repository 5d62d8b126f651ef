//! The event log as its clients see it: replicas run in this process with real sled stores in
//! temporary directories, talking Raft over loopback HTTP, and clients talk to them through a
//! real nats-server.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_eventlog::testing::ask_until_served;
use bulkhead_eventlog::{EventlogConfig, EventlogError, Limits, Peers, run};
use bulkhead_runtime::bus::{BusError, TypedBus};
use bulkhead_runtime::health::Health;
use bulkhead_runtime::testing::{NatsServer, free_port};
use bulkhead_schema::messages::common::RequestRejected;
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, CommittedEvents, ExpectedVersion, LogStatus,
    MembershipReply, MembershipRequest, NewEvent, RaftRole, ReadReply, ReadRequest,
    ReadStreamRequest, RecordedEvent, StatusRequest,
};
use bulkhead_schema::{DEFAULT_MAX_MESSAGE_BYTES, Envelope, Subject, WireMessage};
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// One replica: `run` in a task, stopped by its token.
struct Replica {
    id: u64,
    stop: CancellationToken,
    task: JoinHandle<Result<(), EventlogError>>,
}

impl Replica {
    fn start(config: EventlogConfig, bus: &TypedBus) -> Self {
        let id = config.node_id;
        let stop = CancellationToken::new();
        let health = Health::new("eventlog", &format!("eventlog-{id}"));
        let task = tokio::spawn(run(config, bus.clone(), health, stop.clone()));
        Replica { id, stop, task }
    }

    async fn stop(self) {
        self.stop.cancel();
        let stopped = tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("a replica stops within 10 s");
        stopped.unwrap().expect("a replica stops cleanly");
    }
}

fn config(id: u64, dir: &TempDir, port: u16) -> EventlogConfig {
    EventlogConfig {
        node_id: id,
        data_dir: dir.path().join(format!("node-{id}")),
        raft_listen: ([127, 0, 0, 1], port).into(),
        limits: Limits {
            max_event_bytes: 1024,
            ..Limits::default()
        },
        ..EventlogConfig::default()
    }
}

async fn bus(nats: &NatsServer) -> TypedBus {
    TypedBus::new(Arc::new(nats.connect().await))
}

async fn ask<Q: WireMessage, R: WireMessage>(bus: &TypedBus, subject: &Subject, request: &Q) -> R {
    ask_until_served(bus, subject, request, REQUEST_TIMEOUT).await
}

/// Polls `probe` until it yields a value, at most `within`.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn node_status(bus: &TypedBus, id: u64) -> Option<LogStatus> {
    bus.request::<_, LogStatus>(
        &Subject::eventlog_node_status(id),
        &StatusRequest {},
        Duration::from_secs(2),
    )
    .await
    .ok()
    .map(|decoded| decoded.message)
}

/// Waits until every replica in `ids` knows the same leader; returns it.
async fn leader_of(bus: &TypedBus, ids: &[u64]) -> u64 {
    eventually(
        "a leader known to every replica",
        Duration::from_secs(20),
        || async move {
            let mut leaders = Vec::new();
            for id in ids {
                leaders.push(node_status(bus, *id).await?.leader?);
            }
            leaders.dedup();
            (leaders.len() == 1).then(|| leaders[0])
        },
    )
    .await
}

/// All events replica `id` has applied, read page by page from its own store.
async fn events_of(bus: &TypedBus, id: u64) -> Vec<RecordedEvent> {
    let mut all = Vec::new();
    loop {
        let request = ReadRequest {
            from_seq: all.len() as u64 + 1,
            limit: 100,
        };
        match ask(bus, &Subject::eventlog_node_read(id), &request).await {
            ReadReply::Events { events, .. } if events.is_empty() => return all,
            ReadReply::Events { events, .. } => all.extend(events),
            ReadReply::Unavailable { reason } => panic!("replica {id} cannot read: {reason}"),
        }
    }
}

/// Waits until every replica in `ids` has applied `last_seq` events; returns their events,
/// which must be the same everywhere.
async fn converged(bus: &TypedBus, ids: &[u64], last_seq: u64) -> Vec<RecordedEvent> {
    for id in ids {
        eventually(
            &format!("replica {id} at seq {last_seq}"),
            Duration::from_secs(20),
            || async move { (node_status(bus, *id).await?.last_seq == last_seq).then_some(()) },
        )
        .await;
    }
    let first = events_of(bus, ids[0]).await;
    for id in &ids[1..] {
        assert_eq!(
            events_of(bus, *id).await,
            first,
            "replica {id} differs from {}",
            ids[0]
        );
    }
    first
}

fn mk_append(stream: &str, expected: ExpectedVersion, key: &str, events: usize) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected_version: expected,
        idempotency_key: key.into(),
        events: (0..events)
            .map(|i| NewEvent {
                event_type: "test.Happened".into(),
                data: format!("{key}/{i}").into_bytes(),
            })
            .collect(),
    }
}

fn appended(first_seq: u64, last_seq: u64, stream_version: u64) -> AppendReply {
    AppendReply::Decided(AppendOutcome::Appended {
        first_seq,
        last_seq,
        stream_version,
    })
}

async fn append(bus: &TypedBus, request: &AppendRequest) -> AppendReply {
    ask(bus, &Subject::eventlog_append(), request).await
}

fn seqs(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|event| event.seq).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_replica_appends_reads_and_keeps_its_log_across_restarts() {
    let nats = NatsServer::start();
    let bus = bus(&nats).await;
    let dir = tempfile::tempdir().unwrap();
    let single = EventlogConfig::single_node(dir.path().join("log"));
    let mut committed = bus
        .subscribe::<CommittedEvents>(&Subject::eventlog_committed())
        .await
        .unwrap();
    bus.raw().flush().await.unwrap();
    let replica = Replica::start(single.clone(), &bus);
    assert_eq!(leader_of(&bus, &[1]).await, 1);

    let first = mk_append("cluster/1", ExpectedVersion::NoStream, "k1", 2);
    assert_eq!(append(&bus, &first).await, appended(1, 2, 2));
    assert_eq!(
        append(&bus, &first).await,
        appended(1, 2, 2),
        "a repeated key gets the first outcome"
    );
    let stale = mk_append("cluster/1", ExpectedVersion::Exact(1), "k2", 1);
    assert_eq!(
        append(&bus, &stale).await,
        AppendReply::Decided(AppendOutcome::Conflict { current_version: 2 })
    );
    let next = mk_append("cluster/1", ExpectedVersion::Exact(2), "k3", 1);
    assert_eq!(append(&bus, &next).await, appended(3, 3, 3));
    let other = mk_append("cluster/2", ExpectedVersion::Any, "k4", 1);
    assert_eq!(append(&bus, &other).await, appended(4, 4, 1));

    let read: ReadReply = ask(
        &bus,
        &Subject::eventlog_read(),
        &ReadRequest {
            from_seq: 2,
            limit: 2,
        },
    )
    .await;
    let ReadReply::Events { events, last_seq } = read else {
        panic!("{read:?}")
    };
    assert_eq!((seqs(&events), last_seq), (vec![2, 3], 4));
    assert_eq!(events[1].data, b"k3/0");
    assert_eq!(
        (events[1].stream.as_str(), events[1].stream_version),
        ("cluster/1", 3)
    );

    let request = ReadStreamRequest {
        stream: "cluster/1".into(),
        from_version: 2,
        limit: 100,
    };
    let read: ReadReply = ask(&bus, &Subject::eventlog_read_stream(), &request).await;
    let ReadReply::Events { events, .. } = read else {
        panic!("{read:?}")
    };
    assert_eq!(seqs(&events), [2, 3]);

    let mut published = Vec::new();
    while published.len() < 4 {
        let batch = tokio::time::timeout(REQUEST_TIMEOUT, committed.next())
            .await
            .expect("committed events are published")
            .unwrap();
        published.extend(seqs(&batch.message.events));
    }
    assert_eq!(published, [1, 2, 3, 4], "published once each, in log order");

    // `bulkhead up` restarts with the same configuration: the log is still there and the
    // initialisation is not repeated.
    replica.stop().await;
    let replica = Replica::start(single, &bus);
    leader_of(&bus, &[1]).await;
    let again = converged(&bus, &[1], 4).await;
    assert_eq!(seqs(&again), [1, 2, 3, 4]);
    assert_eq!(
        append(&bus, &first).await,
        appended(1, 2, 2),
        "keys survive restarts"
    );
    assert_eq!(
        append(
            &bus,
            &mk_append("cluster/2", ExpectedVersion::Exact(1), "k5", 1)
        )
        .await,
        appended(5, 5, 2)
    );
    replica.stop().await;
}

/// Sends raw bytes to `subject` and decodes the refusal.
async fn refusal(bus: &TypedBus, subject: &Subject, payload: Vec<u8>) -> RequestRejected {
    let reply = bus
        .raw()
        .request(subject, payload.into(), REQUEST_TIMEOUT)
        .await
        .unwrap();
    Envelope::decode::<RequestRejected>(&reply.payload, DEFAULT_MAX_MESSAGE_BYTES)
        .unwrap()
        .message
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_replicate_forward_refuse_bad_input_and_change_membership() {
    let nats = NatsServer::start();
    let bus = bus(&nats).await;
    let dir = tempfile::tempdir().unwrap();
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let peers = Peers(
        (1..=3)
            .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
            .collect(),
    );
    let mut replicas = Vec::new();
    for id in 1..=3u64 {
        let mut config = config(id, &dir, ports[id as usize - 1]);
        config.peers = peers.clone();
        config.init = id == 1;
        replicas.push(Replica::start(config, &bus));
    }
    let voters = [1, 2, 3];
    let leader = leader_of(&bus, &voters).await;
    let follower = voters.iter().copied().find(|id| *id != leader).unwrap();

    // Through the queue group, and through a follower, which hands its appends to the leader.
    for key in 0..10 {
        let request = mk_append(
            &format!("s/{}", key % 3),
            ExpectedVersion::Any,
            &format!("q{key}"),
            1,
        );
        assert!(matches!(
            append(&bus, &request).await,
            AppendReply::Decided(AppendOutcome::Appended { .. })
        ));
    }
    let via_follower = mk_append("s/f", ExpectedVersion::NoStream, "f1", 2);
    assert_eq!(
        ask::<_, AppendReply>(
            &bus,
            &Subject::eventlog_node_append(follower),
            &via_follower
        )
        .await,
        appended(11, 12, 2)
    );
    let events = converged(&bus, &voters, 12).await;
    assert_eq!(seqs(&events), (1..=12).collect::<Vec<_>>());

    // Bad input: a clear refusal, counted, and nothing changes.
    let garbage = refusal(
        &bus,
        &Subject::eventlog_append(),
        b"\xc1 not msgpack".to_vec(),
    )
    .await;
    assert_eq!(garbage.kind, "malformed_envelope", "{garbage:?}");
    let read_as_append = Envelope::encode(&ReadRequest {
        from_seq: 1,
        limit: 1,
    })
    .unwrap();
    let wrong = refusal(&bus, &Subject::eventlog_append(), read_as_append).await;
    assert_eq!(wrong.kind, "wrong_type");
    assert!(
        wrong.reason.contains("expected a eventlog.AppendRequest"),
        "{}",
        wrong.reason
    );
    let mut newer = Envelope::wrap(&StatusRequest {}).unwrap();
    newer.version = StatusRequest::VERSION + 1;
    let newer = refusal(&bus, &Subject::eventlog_status(), newer.to_bytes()).await;
    assert_eq!(newer.kind, "unsupported_version");
    let mut truncated = Envelope::encode(&ReadRequest {
        from_seq: 1,
        limit: 1,
    })
    .unwrap();
    truncated.truncate(truncated.len() - 3);
    assert_eq!(
        refusal(&bus, &Subject::eventlog_node_read(follower), truncated)
            .await
            .kind,
        "malformed_envelope"
    );
    let mut oversized = mk_append("s/big", ExpectedVersion::Any, "big", 1);
    oversized.events[0].data = vec![0; 2048];
    let AppendReply::Rejected { kind, reason } = append(&bus, &oversized).await else {
        panic!("accepted")
    };
    assert_eq!(kind, "event_too_large");
    assert!(reason.contains("more than the 1024 allowed"), "{reason}");
    let AppendReply::Rejected { kind, .. } =
        append(&bus, &mk_append("s/none", ExpectedVersion::Any, "none", 0)).await
    else {
        panic!("accepted")
    };
    assert_eq!(kind, "no_events");
    assert_eq!(
        bulkhead_runtime::metrics::bus_rejected_count(AppendRequest::TYPE, "wrong_type"),
        1
    );
    assert!(
        bulkhead_runtime::metrics::render()
            .contains("bulkhead_eventlog_rejected_appends_total{kind=\"event_too_large\"} 1")
    );
    assert_eq!(
        converged(&bus, &voters, 12).await,
        events,
        "bad input changed the log"
    );

    // Membership: a fourth replica joins as a learner, catches up, votes, and leaves.
    let mut fourth = config(4, &dir, ports[3]);
    fourth.peers = peers.clone();
    let learner = Replica::start(fourth, &bus);
    let add = MembershipRequest::AddLearner {
        node_id: 4,
        addr: format!("127.0.0.1:{}", ports[3]),
    };
    let MembershipReply::Changed { learners, .. } =
        ask(&bus, &Subject::eventlog_membership(), &add).await
    else {
        panic!("learner not added")
    };
    assert_eq!(learners.iter().map(|m| m.node_id).collect::<Vec<_>>(), [4]);
    assert_eq!(converged(&bus, &[1, 2, 3, 4], 12).await, events);
    let promote = MembershipRequest::Promote { node_id: 4 };
    let MembershipReply::Changed {
        voters: now,
        learners,
    } = ask(&bus, &Subject::eventlog_membership(), &promote).await
    else {
        panic!("not promoted")
    };
    assert_eq!((now.len(), learners.len()), (4, 0));
    let status: LogStatus = ask(&bus, &Subject::eventlog_status(), &StatusRequest {}).await;
    assert_eq!(
        (status.role, status.leader),
        (RaftRole::Leader, Some(status.node_id))
    );
    let mut followed: Vec<u64> = status.replication.iter().map(|p| p.node_id).collect();
    followed.sort_unstable();
    assert_eq!(followed.len(), 3, "{status:?}");
    assert!(
        status.commit_index.is_some() && status.last_seq == 12,
        "{status:?}"
    );

    for (request, kind) in [
        (
            MembershipRequest::Promote { node_id: 9 },
            "learner_not_found",
        ),
        (MembershipRequest::Remove { node_id: 9 }, "unknown_node"),
    ] {
        let reply: MembershipReply = ask(&bus, &Subject::eventlog_membership(), &request).await;
        assert!(
            matches!(&reply, MembershipReply::Rejected { kind: k, .. } if k == kind),
            "{reply:?}"
        );
    }
    let remove = MembershipRequest::Remove { node_id: 4 };
    let MembershipReply::Changed {
        voters: now,
        learners,
    } = ask(&bus, &Subject::eventlog_membership(), &remove).await
    else {
        panic!("not removed")
    };
    assert_eq!(now.iter().map(|m| m.node_id).collect::<Vec<_>>(), voters);
    assert!(learners.is_empty());
    learner.stop().await;

    assert_eq!(
        append(
            &bus,
            &mk_append("s/after", ExpectedVersion::Any, "after", 1)
        )
        .await,
        appended(13, 13, 1)
    );
    converged(&bus, &voters, 13).await;

    // Only the leader serves the shared append subject: stopped, nobody answers it until the
    // other two have elected one (a second or so), which then does.
    let leader = leader_of(&bus, &voters).await;
    let (stopped, survivors): (Vec<_>, Vec<_>) = replicas
        .into_iter()
        .partition(|replica| replica.id == leader);
    for replica in stopped {
        replica.stop().await;
    }
    let while_electing = mk_append("s/elected", ExpectedVersion::Any, "elected", 1);
    let unserved = bus
        .request::<_, AppendReply>(
            &Subject::eventlog_append(),
            &while_electing,
            REQUEST_TIMEOUT,
        )
        .await;
    assert!(
        matches!(unserved, Err(BusError::NoResponders(_))),
        "a follower served an append: {unserved:?}"
    );
    assert_eq!(append(&bus, &while_electing).await, appended(14, 14, 1));
    for replica in survivors {
        assert!(voters.contains(&replica.id));
        replica.stop().await;
    }
}
