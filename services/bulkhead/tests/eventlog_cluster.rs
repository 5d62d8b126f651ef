//! Three `bulkhead serve eventlog` processes on loopback and one nats-server, put through
//! leader kills, a network partition, a wiped replica and restarts.
//!
//! Each replica listens for Raft on its own loopback address (127.0.0.11, .12, .13), which its
//! outgoing Raft connections also leave from, and the replicas reach each other through a TCP
//! proxy per replica that this test runs. Knowing both ends of every connection, the proxies
//! can cut one replica off completely while NATS (which the test talks through) stays up.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bulkhead_runtime::bus::TypedBus;
use bulkhead_runtime::testing::NatsServer;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, ExpectedVersion, LogStatus, MembershipReply,
    MembershipRequest, NewEvent, ReadReply, ReadRequest, RecordedEvent, StatusRequest,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const BIN: &str = env!("CARGO_BIN_EXE_bulkhead");
const IDS: [u64; 3] = [1, 2, 3];
/// Low, so that the log is compacted often and a wiped replica must be sent a snapshot.
const SNAPSHOT_EVERY: &str = "20";
const KEEP_LOGS: &str = "5";

fn replica_ip(id: u64) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + id as u8))
}

/// A port free on `ip` right now.
fn free_port(ip: IpAddr) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The replicas' network: one proxy in front of each Raft listener, and the set of replicas
/// cut off from it.
struct Network {
    cut: watch::Sender<BTreeSet<IpAddr>>,
}

impl Network {
    fn new() -> Self {
        Network {
            cut: watch::Sender::new(BTreeSet::new()),
        }
    }

    /// Starts the proxy to `target`; returns its address.
    async fn proxy(&self, target: SocketAddr) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cut = self.cut.subscribe();
        tokio::spawn(async move {
            while let Ok((inbound, peer)) = listener.accept().await {
                tokio::spawn(relay(inbound, peer.ip(), target, cut.clone()));
            }
        });
        addr
    }

    /// Drops every connection to or from replica `id`, now and until healed.
    fn cut_off(&self, id: u64) {
        self.cut.send_modify(|cut| {
            cut.insert(replica_ip(id));
        });
    }

    /// Cuts replica `id` off and reconnects every other one, in one step.
    fn cut_off_only(&self, id: u64) {
        self.cut.send_replace(BTreeSet::from([replica_ip(id)]));
    }

    fn heal(&self) {
        self.cut.send_modify(BTreeSet::clear);
    }
}

async fn relay(
    mut inbound: TcpStream,
    source: IpAddr,
    target: SocketAddr,
    mut cut: watch::Receiver<BTreeSet<IpAddr>>,
) {
    let blocked = move |cut: &BTreeSet<IpAddr>| cut.contains(&source) || cut.contains(&target.ip());
    if blocked(&cut.borrow_and_update()) {
        return;
    }
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
        _ = cut.wait_for(blocked) => {}
    }
}

/// One replica's process and how to start it again.
struct Replica {
    id: u64,
    data_dir: PathBuf,
    /// Where the other replicas reach it: its proxy.
    advertise: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Replica {
    fn spawn(&mut self) {
        assert!(self.child.is_none(), "replica {} already runs", self.id);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(BIN)
            .args(&self.args)
            .env("BULKHEAD_LOG", "warn,bulkhead_eventlog=info")
            .env(
                "BULKHEAD_EVENTLOG__SNAPSHOT__LOGS_SINCE_LAST",
                SNAPSHOT_EVERY,
            )
            .env("BULKHEAD_EVENTLOG__SNAPSHOT__KEEP_LOGS", KEEP_LOGS)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("bulkhead starts");
        self.child = Some(child);
    }

    fn kill(&mut self) {
        let mut child = self.child.take().expect("a running replica");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, and the exit status within `within`.
    fn terminate(&mut self, within: Duration) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("a running replica");
        bulkhead_runtime::testing::terminate(&mut child, within)
    }
}

struct Cluster {
    bus: TypedBus,
    network: Network,
    replicas: BTreeMap<u64, Replica>,
    _nats: NatsServer,
    _dir: tempfile::TempDir,
}

impl Cluster {
    async fn start() -> Self {
        let nats = NatsServer::start();
        let bus = TypedBus::new(Arc::new(nats.connect().await));
        let dir = tempfile::tempdir().unwrap();
        let network = Network::new();
        let mut listens = BTreeMap::new();
        let mut proxies = BTreeMap::new();
        for id in IDS {
            let listen = SocketAddr::new(replica_ip(id), free_port(replica_ip(id)));
            listens.insert(id, listen);
            proxies.insert(id, network.proxy(listen).await);
        }
        let peers = proxies
            .iter()
            .map(|(id, proxy)| format!("{id}={proxy}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut replicas = BTreeMap::new();
        for id in IDS {
            let data_dir = dir.path().join(format!("node-{id}"));
            let mut args: Vec<String> = [
                "serve",
                "eventlog",
                "--nats",
                &nats.url(),
                "--admin-listen",
                "127.0.0.1:0",
                "--instance",
                &format!("eventlog-{id}"),
                "--node-id",
                &id.to_string(),
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--raft-listen",
                &listens[&id].to_string(),
                "--advertise",
                &proxies[&id].to_string(),
                "--peers",
                &peers,
            ]
            .map(String::from)
            .to_vec();
            // Replica 1 always starts with --init: after the first start it must be ignored.
            if id == 1 {
                args.push("--init".into());
            }
            let mut replica = Replica {
                id,
                data_dir,
                advertise: proxies[&id].to_string(),
                args,
                log: dir.path().join(format!("node-{id}.log")),
                child: None,
            };
            replica.spawn();
            replicas.insert(id, replica);
        }
        Cluster {
            bus,
            network,
            replicas,
            _nats: nats,
            _dir: dir,
        }
    }

    fn replica(&mut self, id: u64) -> &mut Replica {
        self.replicas.get_mut(&id).unwrap()
    }

    async fn status(&self, id: u64) -> Option<LogStatus> {
        request(
            &self.bus,
            &Subject::eventlog_node_status(id),
            &StatusRequest {},
            Duration::from_secs(1),
        )
        .await
    }

    /// Waits until the replicas in `ids` agree on a leader among them; returns it.
    async fn leader(&self, ids: &[u64]) -> u64 {
        eventually(
            "a leader all agree on",
            Duration::from_secs(20),
            || async move {
                let mut leaders = BTreeSet::new();
                for id in ids {
                    leaders.insert(self.status(*id).await?.leader?);
                }
                let leader = *leaders.first()?;
                (leaders.len() == 1 && ids.contains(&leader)).then_some(leader)
            },
        )
        .await
    }

    /// Waits until every replica has applied exactly `last_seq` events; returns each one's
    /// events, read from its own store.
    async fn converged(&self, last_seq: u64) -> BTreeMap<u64, Vec<RecordedEvent>> {
        let mut all = BTreeMap::new();
        for id in IDS {
            eventually(
                &format!("replica {id} at seq {last_seq}"),
                Duration::from_secs(30),
                || async move { (self.status(id).await?.last_seq == last_seq).then_some(()) },
            )
            .await;
            all.insert(id, events_of(&self.bus, id).await);
        }
        all
    }

    /// Appends one event with `key` through `subject`, retrying while the log cannot decide,
    /// at most `within`; returns its sequence number and how long it took.
    async fn append_until_decided(
        &self,
        subject: &Subject,
        key: &str,
        within: Duration,
    ) -> (u64, Duration) {
        let started = Instant::now();
        let seq = eventually(&format!("append {key}"), within, || async move {
            match append(&self.bus, subject, key).await {
                Some(AppendReply::Decided(AppendOutcome::Appended { first_seq, .. })) => {
                    Some(first_seq)
                }
                Some(AppendReply::Decided(conflict)) => panic!("{key}: {conflict:?}"),
                Some(AppendReply::Rejected { kind, reason }) => panic!("{key}: {kind}: {reason}"),
                Some(AppendReply::Unavailable { .. }) | None => None,
            }
        })
        .await;
        (seq, started.elapsed())
    }

    /// Has `change` committed, asking again while no answer comes or the log cannot decide: a
    /// request may go to a replica killed a moment ago, before NATS has seen it go.
    async fn change_membership(&self, change: MembershipRequest) {
        let change = &change;
        eventually(
            &format!("{change:?}"),
            Duration::from_secs(20),
            || async move {
                let reply = request(
                    &self.bus,
                    &Subject::eventlog_membership(),
                    change,
                    Duration::from_secs(10),
                )
                .await;
                match reply {
                    Some(MembershipReply::Changed { .. }) => Some(()),
                    Some(MembershipReply::Rejected { kind, reason }) => {
                        panic!("{change:?}: {kind}: {reason}")
                    }
                    Some(MembershipReply::Unavailable { .. }) | None => None,
                }
            },
        )
        .await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for replica in self.replicas.values_mut() {
            if let Some(mut child) = replica.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if std::thread::panicking() {
                let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- replica {} (last lines) ---", replica.id);
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
    }
}

async fn request<Q, R>(
    bus: &TypedBus,
    subject: &Subject,
    message: &Q,
    timeout: Duration,
) -> Option<R>
where
    Q: bulkhead_schema::WireMessage,
    R: bulkhead_schema::WireMessage,
{
    bus.request::<Q, R>(subject, message, timeout)
        .await
        .ok()
        .map(|decoded| decoded.message)
}

/// One event on a stream of its own, under idempotency key `key`; None when no reply came.
async fn append(bus: &TypedBus, subject: &Subject, key: &str) -> Option<AppendReply> {
    let request = AppendRequest {
        stream: format!("stream/{key}"),
        expected_version: ExpectedVersion::Any,
        idempotency_key: key.into(),
        events: vec![NewEvent {
            event_type: "test.Appended".into(),
            data: key.as_bytes().to_vec(),
        }],
    };
    self::request(bus, subject, &request, Duration::from_secs(3)).await
}

async fn events_of(bus: &TypedBus, id: u64) -> Vec<RecordedEvent> {
    let mut all: Vec<RecordedEvent> = Vec::new();
    loop {
        let page = ReadRequest {
            from_seq: all.len() as u64 + 1,
            limit: 1000,
        };
        match request(
            bus,
            &Subject::eventlog_node_read(id),
            &page,
            Duration::from_secs(5),
        )
        .await
        {
            Some(ReadReply::Events { events, .. }) if events.is_empty() => return all,
            Some(ReadReply::Events { events, .. }) => all.extend(events),
            other => panic!("replica {id} cannot be read: {other:?}"),
        }
    }
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

/// Clients appending without pause, each retrying an undecided append with the same key.
struct Load {
    acknowledged: Arc<Mutex<Vec<(String, u64)>>>,
    stop: CancellationToken,
    clients: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(bus: &TypedBus, clients: usize) -> Self {
        let acknowledged = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let clients = (0..clients)
            .map(|client| {
                let (bus, acknowledged, stop) = (bus.clone(), acknowledged.clone(), stop.clone());
                tokio::spawn(async move {
                    let subject = Subject::eventlog_append();
                    for n in 0.. {
                        let key = format!("load-{client}-{n}");
                        loop {
                            if stop.is_cancelled() {
                                return;
                            }
                            match append(&bus, &subject, &key).await {
                                Some(AppendReply::Decided(AppendOutcome::Appended {
                                    first_seq,
                                    ..
                                })) => {
                                    acknowledged.lock().unwrap().push((key.clone(), first_seq));
                                    break;
                                }
                                Some(AppendReply::Unavailable { .. }) | None => {
                                    tokio::time::sleep(Duration::from_millis(20)).await;
                                }
                                Some(other) => panic!("{key}: {other:?}"),
                            }
                        }
                    }
                })
            })
            .collect();
        Load {
            acknowledged,
            stop,
            clients,
        }
    }

    fn count(&self) -> usize {
        self.acknowledged.lock().unwrap().len()
    }

    async fn stop(self) -> Vec<(String, u64)> {
        self.stop.cancel();
        for client in self.clients {
            client.await.expect("a client panicked");
        }
        Arc::try_unwrap(self.acknowledged)
            .unwrap()
            .into_inner()
            .unwrap()
    }
}

/// Every replica holds the same events, numbered 1..=n without gaps, each key once.
fn assert_identical(events: &BTreeMap<u64, Vec<RecordedEvent>>) -> Vec<RecordedEvent> {
    let reference = &events[&IDS[0]];
    for (id, theirs) in events {
        assert!(
            theirs == reference,
            "replica {id} differs from replica {}",
            IDS[0]
        );
    }
    let seqs: Vec<u64> = reference.iter().map(|event| event.seq).collect();
    assert_eq!(
        seqs,
        (1..=reference.len() as u64).collect::<Vec<_>>(),
        "sequence numbers have gaps"
    );
    let mut per_key: HashMap<&str, usize> = HashMap::new();
    for event in reference {
        *per_key.entry(&event.idempotency_key).or_default() += 1;
    }
    if let Some((key, times)) = per_key.iter().find(|(_, times)| **times > 1) {
        panic!("{key} appended {times} times");
    }
    reference.clone()
}

async fn last_seq_of_leader(cluster: &Cluster, ids: &[u64]) -> u64 {
    let leader = cluster.leader(ids).await;
    cluster
        .status(leader)
        .await
        .expect("the leader answers")
        .last_seq
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_survive_leader_kills_a_partition_a_wipe_and_restarts() {
    let started = Instant::now();
    let mut cluster = Cluster::start().await;
    cluster.leader(&IDS).await;

    // (a) Clients append without pause while the leader is SIGKILLed three times; each killed
    // replica restarts from its sled data before the next kill.
    let load = Load::start(&cluster.bus, 4);
    for round in 1..=3 {
        let leader = cluster.leader(&IDS).await;
        let before = load.count();
        let load = &load;
        eventually(
            "appends under load",
            Duration::from_secs(10),
            || async move { (load.count() >= before + 20).then_some(()) },
        )
        .await;
        cluster.replica(leader).kill();
        let (_, resumed) = cluster
            .append_until_decided(
                &Subject::eventlog_append(),
                &format!("probe-{round}"),
                Duration::from_secs(15),
            )
            .await;
        eprintln!("round {round}: killed leader {leader}; appends resumed after {resumed:?}");
        cluster.replica(leader).spawn();
        let survivors: Vec<u64> = IDS.iter().copied().filter(|id| *id != leader).collect();
        let target = last_seq_of_leader(&cluster, &survivors).await;
        let cluster = &cluster;
        eventually(
            &format!("replica {leader} rejoins"),
            Duration::from_secs(20),
            || async move {
                let status = cluster.status(leader).await?;
                (status.leader.is_some() && status.last_seq >= target).then_some(())
            },
        )
        .await;
    }
    let acknowledged = load.stop().await;
    let (last, _) = cluster
        .append_until_decided(
            &Subject::eventlog_append(),
            "after-kills",
            Duration::from_secs(10),
        )
        .await;
    let events = assert_identical(&cluster.converged(last).await);
    let by_seq: HashMap<u64, &str> = events
        .iter()
        .map(|e| (e.seq, e.idempotency_key.as_str()))
        .collect();
    for (key, seq) in &acknowledged {
        assert_eq!(
            by_seq.get(seq),
            Some(&key.as_str()),
            "acknowledged {key} is not at seq {seq}"
        );
    }
    eprintln!(
        "(a) {} acknowledged appends, {} events, all replicas identical",
        acknowledged.len(),
        events.len()
    );

    // (b) The leader is cut off: it cannot commit, the other two elect a leader and can;
    // healed, it converges on their log.
    let isolated = cluster.leader(&IDS).await;
    let majority: Vec<u64> = IDS.iter().copied().filter(|id| *id != isolated).collect();
    let frozen = cluster.status(isolated).await.unwrap();
    cluster.network.cut_off(isolated);
    let new_leader = cluster.leader(&majority).await;
    let (majority_seq, _) = cluster
        .append_until_decided(
            &Subject::eventlog_node_append(majority[0]),
            "majority-1",
            Duration::from_secs(10),
        )
        .await;
    let (majority_seq_2, _) = cluster
        .append_until_decided(
            &Subject::eventlog_node_append(majority[1]),
            "majority-2",
            Duration::from_secs(10),
        )
        .await;
    // The cut-off replica still believes it leads (openraft 0.9), but once no quorum has
    // acknowledged it for a second it leaves the shared append subject to the majority's
    // leader: no append sent there goes to it and waits out its commit timeout (5 s, beyond the
    // 3 s `append` waits). Half of them did, before.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    for i in 0..10 {
        let key = format!("shared-{i}");
        let reply = append(&cluster.bus, &Subject::eventlog_append(), &key).await;
        assert!(
            matches!(
                reply,
                Some(AppendReply::Decided(AppendOutcome::Appended { .. }))
            ),
            "{key}, sent to whoever serves appends, was not appended: {reply:?}"
        );
    }
    let minority = append(
        &cluster.bus,
        &Subject::eventlog_node_append(isolated),
        "minority-1",
    )
    .await;
    assert!(
        matches!(minority, Some(AppendReply::Unavailable { .. })),
        "the cut-off replica {isolated} did not refuse an append at once: {minority:?}"
    );
    let cut_status = cluster.status(isolated).await.unwrap();
    assert_eq!(
        (cut_status.commit_index, cut_status.last_seq),
        (frozen.commit_index, frozen.last_seq),
        "the cut-off replica committed something"
    );
    eprintln!(
        "(b) cut off {isolated}; {new_leader} leads the majority, which committed up to seq {}",
        majority_seq.max(majority_seq_2)
    );
    cluster.network.heal();
    cluster.leader(&IDS).await;
    let last = last_seq_of_leader(&cluster, &IDS).await;
    let events = assert_identical(&cluster.converged(last).await);
    let keys: BTreeSet<&str> = events.iter().map(|e| e.idempotency_key.as_str()).collect();
    assert!(keys.contains("majority-1") && keys.contains("majority-2"));
    assert!((0..10).all(|i| keys.contains(format!("shared-{i}").as_str())));
    assert!(
        !keys.contains("minority-1"),
        "the minority's append survived"
    );

    // (c) A replica whose data is lost rejoins as Raft requires, as a new member: removed,
    // started empty, added as a learner (which catches up by snapshot: the leader no longer has
    // the start of the log), then promoted.
    let leader = cluster.leader(&IDS).await;
    // Not replica 1, whose --init would make an empty replica found a cluster of its own.
    let wiped = IDS
        .iter()
        .copied()
        .find(|id| *id != leader && *id != 1)
        .unwrap();
    let purged = cluster
        .status(leader)
        .await
        .unwrap()
        .purged_index
        .expect("the leader compacted its log");
    cluster.replica(wiped).kill();
    cluster
        .change_membership(MembershipRequest::Remove { node_id: wiped })
        .await;
    std::fs::remove_dir_all(&cluster.replica(wiped).data_dir).unwrap();
    cluster
        .append_until_decided(
            &Subject::eventlog_append(),
            "while-wiped",
            Duration::from_secs(10),
        )
        .await;
    cluster.replica(wiped).spawn();
    let addr = cluster.replica(wiped).advertise.clone();
    for change in [
        MembershipRequest::AddLearner {
            node_id: wiped,
            addr,
        },
        MembershipRequest::Promote { node_id: wiped },
    ] {
        cluster.change_membership(change).await;
    }
    let last = last_seq_of_leader(&cluster, &IDS).await;
    let events = assert_identical(&cluster.converged(last).await);
    let snapshot = cluster.status(wiped).await.unwrap().snapshot_index;
    assert!(
        snapshot >= Some(purged),
        "replica {wiped} caught up without a snapshot: {snapshot:?}"
    );
    let voters = cluster.status(leader).await.unwrap().voters.len();
    assert_eq!(voters, 3);
    eprintln!(
        "(c) wiped {wiped} installed a snapshot at index {snapshot:?} and holds all {} events",
        events.len()
    );

    // (d) A replica stopped cleanly and restarted from its sled data rejoins and catches up
    // with what it missed.
    let leader = cluster.leader(&IDS).await;
    let restarted = IDS.iter().copied().find(|id| *id != leader).unwrap();
    let status = cluster
        .replica(restarted)
        .terminate(Duration::from_secs(10));
    assert!(
        status.success(),
        "replica {restarted} exited with {status:?}"
    );
    for n in 0..5 {
        cluster
            .append_until_decided(
                &Subject::eventlog_append(),
                &format!("while-down-{n}"),
                Duration::from_secs(10),
            )
            .await;
    }
    cluster.replica(restarted).spawn();
    let last = last_seq_of_leader(&cluster, &IDS).await;
    let events = assert_identical(&cluster.converged(last).await);
    assert_eq!(
        cluster.leader(&IDS).await,
        leader,
        "the restarted replica disturbed the leader"
    );
    eprintln!(
        "(d) restarted {restarted} rejoined with {} events; total {:?}",
        events.len(),
        started.elapsed()
    );
}

/// A killed leader restarts believing it still leads: openraft restores a committed vote for
/// itself as leadership. Cut off, it takes an append into its log that it can never commit.
/// Healed, it catches up by a snapshot that passes over that entry, and openraft 0.9 never
/// answers the write (it answers only entries it applies or truncates). The replica must still
/// decide appends when it leads again: CI once saw a new leader decide nothing for 15 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_a_snapshot_passed_over_does_not_stop_its_replica_deciding_when_leading_again() {
    let mut cluster = Cluster::start().await;
    let stale = cluster.leader(&IDS).await;
    let others: Vec<u64> = IDS.iter().copied().filter(|id| *id != stale).collect();
    cluster
        .append_until_decided(
            &Subject::eventlog_append(),
            "first",
            Duration::from_secs(10),
        )
        .await;

    cluster.replica(stale).kill();
    cluster.network.cut_off(stale);
    cluster.replica(stale).spawn();
    let cluster = &cluster;
    let restarted = eventually(
        &format!("replica {stale} restarted, claiming to lead"),
        Duration::from_secs(10),
        || async move {
            let status = cluster.status(stale).await?;
            (status.leader == Some(stale)).then_some(status)
        },
    )
    .await;
    let undecided = append(&cluster.bus, &Subject::eventlog_node_append(stale), "stale").await;
    assert!(
        !matches!(undecided, Some(AppendReply::Decided(_))),
        "the cut-off replica {stale} decided an append: {undecided:?}"
    );
    let stale_index = cluster.status(stale).await.unwrap().last_log_index.unwrap();
    assert!(
        Some(stale_index) > restarted.last_log_index,
        "the cut-off replica did not take the append into its log"
    );

    // The others go on until their leader has compacted its log past the stale entry: from
    // then on it can only send the cut-off replica a snapshot, never the entries that would
    // make it truncate its own.
    let leader = cluster.leader(&others).await;
    for n in 0..40 {
        cluster
            .append_until_decided(
                &Subject::eventlog_node_append(leader),
                &format!("majority-{n}"),
                Duration::from_secs(10),
            )
            .await;
    }
    // Snapshots are built, and the log purged behind them, in the background.
    let purged = eventually(
        &format!("replica {leader} purges its log past index {stale_index}"),
        Duration::from_secs(10),
        || async move {
            let purged = cluster.status(leader).await?.purged_index;
            (purged > Some(stale_index)).then_some(purged)
        },
    )
    .await;
    cluster.network.heal();
    eventually(
        &format!("replica {stale} catches up by snapshot"),
        Duration::from_secs(20),
        || async move {
            let status = cluster.status(stale).await?;
            (status.leader == Some(leader) && status.snapshot_index >= purged).then_some(())
        },
    )
    .await;

    // The third replica falls behind, then the leader is cut off: only the restarted replica,
    // holding more of the log, can win the election.
    let third = others.iter().copied().find(|id| *id != leader).unwrap();
    cluster.network.cut_off(third);
    let (behind, _) = cluster
        .append_until_decided(
            &Subject::eventlog_node_append(leader),
            "while-third-is-cut-off",
            Duration::from_secs(10),
        )
        .await;
    eventually(
        &format!("replica {stale} holds seq {behind}"),
        Duration::from_secs(10),
        || async move { (cluster.status(stale).await?.last_seq >= behind).then_some(()) },
    )
    .await;
    cluster.network.cut_off_only(leader);
    assert_eq!(cluster.leader(&[stale, third]).await, stale);
    let (last, _) = cluster
        .append_until_decided(
            &Subject::eventlog_node_append(stale),
            "leading-again",
            Duration::from_secs(15),
        )
        .await;

    cluster.network.heal();
    let events = assert_identical(&cluster.converged(last).await);
    assert!(
        events.iter().all(|event| event.idempotency_key != "stale"),
        "the append the cut-off replica never committed survived"
    );
}
