//! The state machine's rules (optimistic concurrency, idempotency, gapless sequence numbers),
//! its reads and its snapshots, through the public API on a real sled in a temporary directory.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;

use bulkhead_eventlog::{
    AppendCommand, EventReader, LogRequest, LogResponse, LogStore, SnapshotData, StateMachineStore,
    TypeConfig, open_stores,
};
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendRequest, ExpectedVersion, NewEvent, RecordedEvent,
};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, CommittedLeaderId, Entry, EntryPayload, LogId, Membership, RaftSnapshotBuilder,
    SnapshotMeta, Vote,
};
use tempfile::TempDir;
use tokio::io::AsyncReadExt;

const AT_MS: u64 = 1_700_000_000_000;

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// All of a snapshot's bytes, read as openraft reads them to send.
fn read_all(mut data: Box<SnapshotData>) -> Vec<u8> {
    let mut bytes = Vec::new();
    block_on(data.read_to_end(&mut bytes)).unwrap();
    bytes
}

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn mk_append(
    stream: &str,
    expected_version: ExpectedVersion,
    key: &str,
    events: usize,
) -> AppendRequest {
    AppendRequest {
        stream: stream.into(),
        expected_version,
        idempotency_key: key.into(),
        events: (0..events)
            .map(|i| NewEvent {
                event_type: format!("test.Event{i}"),
                data: format!("{key}/{i}").into_bytes(),
            })
            .collect(),
    }
}

fn mk_membership(voters: &[u64]) -> EntryPayload<TypeConfig> {
    let nodes: BTreeMap<u64, BasicNode> = voters
        .iter()
        .map(|id| (*id, BasicNode::new(format!("127.0.0.1:{id}"))))
        .collect();
    EntryPayload::Membership(Membership::new(
        vec![voters.iter().copied().collect::<BTreeSet<_>>()],
        nodes,
    ))
}

/// One replica's stores in a temporary directory, fed entries with consecutive indexes.
struct Replica {
    // Field order matters: the stores close before the directory is removed.
    log: LogStore,
    sm: StateMachineStore,
    reader: EventReader,
    next_index: u64,
    dir: TempDir,
}

impl Replica {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (log, sm) = open_stores(dir.path()).unwrap();
        Self {
            reader: sm.reader(),
            log,
            sm,
            next_index: 1,
            dir,
        }
    }

    fn apply_payloads(&mut self, payloads: Vec<EntryPayload<TypeConfig>>) -> Vec<LogResponse> {
        let entries: Vec<_> = payloads
            .into_iter()
            .map(|payload| {
                self.next_index += 1;
                Entry {
                    log_id: log_id(self.next_index - 1),
                    payload,
                }
            })
            .collect();
        block_on(self.sm.apply(entries)).unwrap()
    }

    /// Applies the appends as one entry, as the shell batches concurrent appends.
    fn apply(&mut self, requests: Vec<AppendRequest>) -> Vec<AppendOutcome> {
        let commands = requests
            .into_iter()
            .map(|request| AppendCommand {
                request,
                proposed_at_ms: AT_MS,
            })
            .collect();
        let mut responses =
            self.apply_payloads(vec![EntryPayload::Normal(LogRequest { commands })]);
        responses.pop().unwrap().outcomes
    }

    fn apply_one(&mut self, request: AppendRequest) -> AppendOutcome {
        self.apply(vec![request])[0]
    }

    fn all_events(&self) -> Vec<RecordedEvent> {
        self.reader.read(0, usize::MAX).unwrap()
    }
}

fn appended(first_seq: u64, last_seq: u64, stream_version: u64) -> AppendOutcome {
    AppendOutcome::Appended {
        first_seq,
        last_seq,
        stream_version,
    }
}

#[test]
fn a_stale_expected_version_conflicts_with_the_current_version_and_appends_nothing() {
    let mut replica = Replica::new();
    assert_eq!(
        replica.apply_one(mk_append("s", ExpectedVersion::NoStream, "k1", 2)),
        appended(1, 2, 2)
    );

    let conflict = AppendOutcome::Conflict { current_version: 2 };
    assert_eq!(
        replica.apply_one(mk_append("s", ExpectedVersion::NoStream, "k2", 1)),
        conflict
    );
    assert_eq!(
        replica.apply_one(mk_append("s", ExpectedVersion::Exact(1), "k3", 1)),
        conflict
    );
    assert_eq!(
        replica.apply_one(mk_append("s", ExpectedVersion::Exact(3), "k4", 1)),
        conflict
    );
    assert_eq!(replica.reader.last_seq(), 2);
    assert_eq!(replica.reader.stream_version("s").unwrap(), 2);
    assert_eq!(replica.reader.read_stream("s", 1, 10).unwrap().len(), 2);

    assert_eq!(
        replica.apply_one(mk_append("s", ExpectedVersion::Exact(2), "k5", 1)),
        appended(3, 3, 3)
    );
    assert_eq!(
        replica.apply_one(mk_append("t", ExpectedVersion::Exact(1), "k6", 1)),
        AppendOutcome::Conflict { current_version: 0 }
    );
    assert_eq!(
        replica.apply_one(mk_append("t", ExpectedVersion::Exact(0), "k7", 1)),
        appended(4, 4, 1)
    );
}

#[test]
fn a_repeated_idempotency_key_returns_the_first_outcome_and_appends_nothing() {
    let mut replica = Replica::new();
    let first = replica.apply_one(mk_append("s", ExpectedVersion::NoStream, "k1", 2));
    assert_eq!(first, appended(1, 2, 2));

    // In a later entry, even with a different body, and within one batched entry.
    assert_eq!(
        replica.apply_one(mk_append("s", ExpectedVersion::NoStream, "k1", 2)),
        first
    );
    assert_eq!(
        replica.apply_one(mk_append("other", ExpectedVersion::Any, "k1", 5)),
        first
    );
    let batch = replica.apply(vec![
        mk_append("s", ExpectedVersion::Exact(2), "k2", 1),
        mk_append("s", ExpectedVersion::Exact(2), "k2", 1),
        mk_append("s", ExpectedVersion::Any, "k1", 1),
    ]);
    assert_eq!(batch, [appended(3, 3, 3), appended(3, 3, 3), first]);
    assert_eq!(replica.reader.last_seq(), 3);
    assert_eq!(replica.reader.stream_version("other").unwrap(), 0);

    // A conflict is an outcome too: the retry gets it even once the version would match.
    let conflict = replica.apply_one(mk_append("s", ExpectedVersion::Exact(4), "k3", 1));
    assert_eq!(conflict, AppendOutcome::Conflict { current_version: 3 });
    replica.apply_one(mk_append("s", ExpectedVersion::Any, "k4", 1));
    assert_eq!(
        replica.apply_one(mk_append("s", ExpectedVersion::Exact(4), "k3", 1)),
        conflict
    );
    assert_eq!(replica.reader.last_seq(), 4);
}

#[test]
fn sequence_numbers_are_gapless_across_batches_streams_and_other_entries() {
    let mut replica = Replica::new();
    let responses = replica.apply_payloads(vec![
        EntryPayload::Blank,
        mk_membership(&[1, 2, 3]),
        EntryPayload::Normal(LogRequest {
            commands: vec![
                AppendCommand {
                    request: mk_append("a", ExpectedVersion::Any, "k1", 3),
                    proposed_at_ms: 10,
                },
                AppendCommand {
                    request: mk_append("b", ExpectedVersion::Exact(9), "k2", 2),
                    proposed_at_ms: 10,
                },
                AppendCommand {
                    request: mk_append("b", ExpectedVersion::NoStream, "k3", 2),
                    proposed_at_ms: 10,
                },
            ],
        }),
        EntryPayload::Blank,
    ]);
    assert_eq!(
        responses
            .iter()
            .map(|r| r.outcomes.len())
            .collect::<Vec<_>>(),
        [0, 0, 3, 0]
    );
    replica.apply(vec![mk_append("a", ExpectedVersion::Exact(3), "k4", 1)]);
    replica.apply(vec![
        mk_append("c", ExpectedVersion::Any, "k5", 4),
        mk_append("b", ExpectedVersion::Any, "k6", 1),
    ]);

    let events = replica.all_events();
    assert_eq!(
        events.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=11).collect::<Vec<_>>()
    );
    for stream in ["a", "b", "c"] {
        let versions: Vec<_> = events
            .iter()
            .filter(|e| e.stream == stream)
            .map(|e| e.stream_version)
            .collect();
        assert_eq!(
            versions,
            (1..=versions.len() as u64).collect::<Vec<_>>(),
            "stream {stream}"
        );
    }
    assert_eq!(
        events[0].committed_at_ms, 10,
        "the proposer's clock, not the applier's"
    );
    assert_eq!(events[0].idempotency_key, "k1");
    assert_eq!(
        (events[0].event_type.as_str(), events[0].data.as_slice()),
        ("test.Event0", b"k1/0".as_slice())
    );
    assert_eq!(replica.reader.last_seq(), 11);

    let (last_applied, membership) = block_on(replica.sm.applied_state()).unwrap();
    assert_eq!(last_applied, Some(log_id(6)));
    assert_eq!(membership.log_id(), &Some(log_id(2)));
}

#[test]
fn read_and_read_stream_page_through_every_event_in_order() {
    let mut replica = Replica::new();
    for i in 0..5 {
        replica.apply(vec![
            mk_append("a", ExpectedVersion::Any, &format!("a{i}"), 2),
            mk_append("b", ExpectedVersion::Any, &format!("b{i}"), 1),
        ]);
    }
    let all = replica.all_events();
    assert_eq!(all.len(), 15);

    let mut paged = Vec::new();
    let mut from = 1;
    loop {
        let page = replica.reader.read(from, 4).unwrap();
        assert!(page.len() <= 4);
        let Some(last) = page.last() else { break };
        from = last.seq + 1;
        paged.extend(page);
    }
    assert_eq!(paged, all);
    assert_eq!(
        replica.reader.read(0, 2).unwrap(),
        all[..2],
        "sequence numbers start at 1"
    );
    assert!(replica.reader.read(16, 10).unwrap().is_empty());
    assert!(replica.reader.read(1, 0).unwrap().is_empty());

    let of_a: Vec<_> = all.iter().filter(|e| e.stream == "a").cloned().collect();
    let mut paged = replica.reader.read_stream("a", 1, 3).unwrap();
    paged.extend(replica.reader.read_stream("a", 4, 3).unwrap());
    paged.extend(replica.reader.read_stream("a", 7, 3).unwrap());
    paged.extend(replica.reader.read_stream("a", 10, 3).unwrap());
    assert_eq!(paged, of_a);
    assert_eq!(replica.reader.read_stream("a", 0, 1).unwrap(), of_a[..1]);
    assert!(replica.reader.read_stream("a", 11, 10).unwrap().is_empty());
    assert!(
        replica
            .reader
            .read_stream("nope", 1, 10)
            .unwrap()
            .is_empty()
    );
    // A stream whose name extends another's is a different stream.
    replica.apply_one(mk_append("ab", ExpectedVersion::Any, "ab0", 1));
    assert_eq!(replica.reader.read_stream("a", 1, 100).unwrap(), of_a);
}

/// Everything a reader can observe of a replica.
fn observe(replica: &mut Replica, streams: &[&str]) -> impl PartialEq + std::fmt::Debug + use<> {
    let per_stream: Vec<_> = streams
        .iter()
        .map(|s| {
            (
                replica.reader.stream_version(s).unwrap(),
                replica.reader.read_stream(s, 1, usize::MAX).unwrap(),
            )
        })
        .collect();
    (
        replica.all_events(),
        replica.reader.last_seq(),
        per_stream,
        block_on(replica.sm.applied_state()).unwrap(),
    )
}

fn populated() -> Replica {
    let mut replica = Replica::new();
    replica.apply_payloads(vec![mk_membership(&[1, 2])]);
    replica.apply(vec![
        mk_append("a", ExpectedVersion::NoStream, "k1", 3),
        mk_append("b", ExpectedVersion::Any, "k2", 1),
    ]);
    replica.apply_one(mk_append("a", ExpectedVersion::Exact(1), "k3", 1));
    replica.apply_one(mk_append("b", ExpectedVersion::Exact(1), "k4", 2));
    replica
}

#[test]
fn a_snapshot_installed_into_an_empty_store_reproduces_identical_reads() {
    let mut leader = populated();
    let snapshot = block_on(async {
        leader
            .sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
    })
    .unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(4)));
    // The leader keeps applying before the snapshot is read; it stands for the state it was
    // built from.
    let expected = observe(&mut leader, &["a", "b"]);
    leader.apply_one(mk_append("a", ExpectedVersion::Any, "k5", 1));
    let sent = read_all(snapshot.snapshot);

    let mut follower = Replica::new();
    let data = Box::new(SnapshotData::from(sent.clone()));
    block_on(follower.sm.install_snapshot(&snapshot.meta, data)).unwrap();
    assert_eq!(observe(&mut follower, &["a", "b"]), expected);
    let current = block_on(follower.sm.get_current_snapshot())
        .unwrap()
        .unwrap();
    assert_eq!(
        (current.meta, read_all(current.snapshot)),
        (snapshot.meta.clone(), sent)
    );

    // Idempotency outcomes and counters travel with it.
    follower.next_index = 5;
    assert_eq!(
        follower.apply_one(mk_append("a", ExpectedVersion::Any, "k1", 1)),
        appended(1, 3, 3)
    );
    assert_eq!(
        follower.apply_one(mk_append("a", ExpectedVersion::Any, "k5", 1)),
        appended(7, 7, 4)
    );
    assert_eq!(follower.all_events(), leader.all_events());
}

/// The appends applied after a snapshot's builder was taken, in entries: new events on old and
/// new streams, a conflict and a repeat, and an append that needs the conflict's key unused.
fn tail() -> Vec<Vec<AppendRequest>> {
    vec![
        vec![
            mk_append("a", ExpectedVersion::Any, "k5", 2),
            mk_append("c", ExpectedVersion::NoStream, "k6", 1),
        ],
        vec![mk_append("b", ExpectedVersion::Exact(1), "k7", 1)],
        vec![mk_append("a", ExpectedVersion::Any, "k1", 1)],
        vec![mk_append("c", ExpectedVersion::Exact(1), "k8", 1)],
    ]
}

#[test]
fn a_snapshot_stands_for_the_state_when_its_builder_was_taken_though_applying_goes_on() {
    let streams = ["a", "b", "c"];
    let mut leader = populated();
    let at_cut = observe(&mut leader, &streams);
    let mut builder = block_on(leader.sm.get_snapshot_builder());
    let decided: Vec<_> = tail().into_iter().map(|e| leader.apply(e)).collect();
    assert!(
        matches!(
            decided[1][0],
            AppendOutcome::Conflict { current_version: 3 }
        ),
        "{decided:?}"
    );
    let snapshot = block_on(builder.build_snapshot()).unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(4)));

    let mut follower = Replica::new();
    block_on(
        follower
            .sm
            .install_snapshot(&snapshot.meta, snapshot.snapshot),
    )
    .unwrap();
    assert_eq!(observe(&mut follower, &streams), at_cut);

    // The entries after the cut, applied on top, decide what they decided on the leader.
    follower.next_index = 5;
    let replayed: Vec<_> = tail().into_iter().map(|e| follower.apply(e)).collect();
    assert_eq!(replayed, decided);
    assert_eq!(
        observe(&mut follower, &streams),
        observe(&mut leader, &streams)
    );
}

#[test]
fn installing_a_snapshot_replaces_divergent_state() {
    let mut leader = populated();
    let snapshot = block_on(async {
        leader
            .sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
    })
    .unwrap();
    let expected = observe(&mut leader, &["a", "b", "stale"]);

    let mut follower = Replica::new();
    follower.apply_one(mk_append("stale", ExpectedVersion::Any, "k1", 9));
    block_on(
        follower
            .sm
            .install_snapshot(&snapshot.meta, snapshot.snapshot),
    )
    .unwrap();
    assert_eq!(observe(&mut follower, &["a", "b", "stale"]), expected);
}

#[test]
fn a_malformed_snapshot_is_refused_and_changes_nothing() {
    let mut replica = populated();
    let before = observe(&mut replica, &["a", "b"]);
    let meta = SnapshotMeta {
        last_log_id: Some(log_id(50)),
        ..SnapshotMeta::default()
    };
    for garbage in [b"not a snapshot".to_vec(), vec![]] {
        assert!(
            block_on(
                replica
                    .sm
                    .install_snapshot(&meta, Box::new(SnapshotData::from(garbage)))
            )
            .is_err()
        );
    }
    assert_eq!(observe(&mut replica, &["a", "b"]), before);
    assert!(
        block_on(replica.sm.get_current_snapshot())
            .unwrap()
            .is_none()
    );
}

#[test]
fn state_survives_reopening_the_database() {
    let mut replica = populated();
    let vote = Vote::new(3, 2);
    block_on(async {
        replica.log.save_vote(&vote).await.unwrap();
        replica.log.save_committed(Some(log_id(4))).await.unwrap();
        replica.log.purge(log_id(2)).await.unwrap();
    });
    // Only the meta is kept: a snapshot's bytes are read from the database, open until they go.
    let snapshot_meta = block_on(async {
        replica
            .sm
            .get_snapshot_builder()
            .await
            .build_snapshot()
            .await
    })
    .unwrap()
    .meta;
    let before = observe(&mut replica, &["a", "b"]);

    let Replica {
        log,
        sm,
        reader,
        dir,
        ..
    } = replica;
    drop((log, sm, reader));
    let (log, sm) = open_stores(dir.path()).unwrap();
    let mut reopened = Replica {
        reader: sm.reader(),
        log,
        sm,
        next_index: 5,
        dir,
    };

    assert_eq!(observe(&mut reopened, &["a", "b"]), before);
    block_on(async {
        let log = &mut reopened.log;
        assert_eq!(log.read_vote().await.unwrap(), Some(vote));
        assert_eq!(log.read_committed().await.unwrap(), Some(log_id(4)));
        let state = log.get_log_state().await.unwrap();
        assert_eq!(
            (state.last_purged_log_id, state.last_log_id),
            (Some(log_id(2)), Some(log_id(2)))
        );
        assert_eq!(
            reopened
                .sm
                .get_current_snapshot()
                .await
                .unwrap()
                .unwrap()
                .meta,
            snapshot_meta
        );
    });
}
