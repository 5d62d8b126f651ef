//! One replica: the Raft node on its sled stores, its HTTP listener, and the batching of
//! concurrent appends into Raft entries.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_schema::messages::eventlog::{
    AppendReply, AppendRequest, LogMember, LogStatus, RaftRole, ReadReply, ReadRequest,
    ReadStreamRequest, RecordedEvent, ReplicationProgress,
};
use openraft::error::{InitializeError, RaftError};
use openraft::{BasicNode, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::batching::{self, BatchLimits, Batchable};
use crate::election::{self, Elections};
use crate::leader::{self, AppendBatch, COMMIT_TIMEOUT, LeaderOp, NotLeader, Proposal};
use crate::network::{Network, PeerClient};
use crate::{
    EventReader, EventlogConfig, EventlogError, Limits, NodeId, StoreError, TypeConfig, metrics,
    open_stores, server, validate,
};

/// Raft timing: a heartbeat is also the time budget of one AppendEntries round trip (fsync on
/// the follower included). openraft 0.9 makes a follower wait the leader's lease (the maximum
/// election timeout) plus its own election timeout, checked every 1.5 heartbeats, before it
/// calls an election: 1.0-1.4 s of silence here; `election` ends split votes at once.
const HEARTBEAT_MS: u64 = 150;
pub(crate) const ELECTION_TIMEOUT_MS: (u64, u64) = (400, 600);
/// The last chunk of a snapshot is answered once the follower has installed it.
const INSTALL_SNAPSHOT_TIMEOUT_MS: u64 = 5_000;
const SNAPSHOT_CHUNK_BYTES: u64 = 1024 * 1024;
/// Entries per AppendEntries: each holds a batch of appends, so this bounds a request's size.
const MAX_PAYLOAD_ENTRIES: u64 = 32;

/// How a follower batches its clients' appends for the leader (see `batching`). Enough batches in
/// flight that appends reach the leader while its entry is being written, to be gathered into
/// the next one (which is where batching pays: per entry); a bound, because each batch a
/// follower hands over costs a request to the leader.
const APPEND_BATCHES: BatchLimits = BatchLimits {
    in_flight: 8,
    max_appends: 256,
    max_bytes: 256 * 1024,
};
const APPEND_QUEUE: usize = 4096;

/// A handed-over request waits for the leader's own commit timeout, plus the hop.
const FORWARD_TIMEOUT: Duration = COMMIT_TIMEOUT.saturating_add(Duration::from_secs(1));

/// A page of events is at most this many events and, roughly, bytes, so that a reply fits
/// NATS's default 1 MiB `max_payload` in its envelope.
pub(crate) const MAX_PAGE_EVENTS: usize = 1_000;
pub(crate) const MAX_PAGE_BYTES: usize = 512 * 1024;

/// A running replica. Stop it with [`LogNode::shutdown`].
pub struct LogNode {
    inner: Arc<Inner>,
    raft_addr: SocketAddr,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

/// What the replica's tasks share.
pub(crate) struct Inner {
    pub(crate) id: NodeId,
    pub(crate) raft: Raft<TypeConfig>,
    reader: EventReader,
    peers: PeerClient,
    limits: Limits,
    appends: mpsc::Sender<QueuedAppend>,
    /// The leader's entries being gathered (`leader::propose_entries`).
    pub(crate) proposals: mpsc::Sender<Proposal>,
    pub(crate) elections: Arc<Elections>,
}

struct QueuedAppend {
    request: AppendRequest,
    reply: oneshot::Sender<AppendReply>,
}

impl Batchable for QueuedAppend {
    fn appends(&self) -> usize {
        1
    }

    fn bytes(&self) -> usize {
        request_size(&self.request)
    }
}

impl LogNode {
    /// Opens the stores in `data_dir`, starts Raft and its listener, and initialises the
    /// cluster when told to and never done before.
    pub async fn start(config: EventlogConfig) -> Result<LogNode, EventlogError> {
        let (log_store, state_machine) =
            open_stores(&config.data_dir).map_err(|source| EventlogError::Open {
                dir: config.data_dir.clone(),
                source,
            })?;
        let reader = state_machine.reader();
        let bind_error = |source| EventlogError::Bind {
            addr: config.raft_listen,
            source,
        };
        let listener = TcpListener::bind(config.raft_listen)
            .await
            .map_err(bind_error)?;
        let raft_addr = listener.local_addr().map_err(bind_error)?;
        let local_ip = Some(raft_addr.ip()).filter(|ip| !ip.is_unspecified());
        let peers = PeerClient::new(local_ip).map_err(EventlogError::HttpClient)?;

        let raft_config = openraft::Config {
            cluster_name: "bulkhead-eventlog".into(),
            heartbeat_interval: HEARTBEAT_MS,
            election_timeout_min: ELECTION_TIMEOUT_MS.0,
            election_timeout_max: ELECTION_TIMEOUT_MS.1,
            install_snapshot_timeout: INSTALL_SNAPSHOT_TIMEOUT_MS,
            max_payload_entries: MAX_PAYLOAD_ENTRIES,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(config.snapshot.logs_since_last),
            max_in_snapshot_log_to_keep: config.snapshot.keep_logs,
            snapshot_max_chunk_size: SNAPSHOT_CHUNK_BYTES,
            ..openraft::Config::default()
        }
        .validate()?;
        let (elections, election_runs) = Elections::new(config.node_id);
        let network = Network {
            client: peers.clone(),
            elections: elections.clone(),
        };
        let raft = Raft::new(
            config.node_id,
            Arc::new(raft_config),
            network,
            log_store,
            state_machine,
        )
        .await?;

        let advertise = config
            .advertise
            .clone()
            .unwrap_or_else(|| raft_addr.to_string());
        if config.init
            && let Err(error) = initialize(&raft, &config, advertise).await
        {
            let _ = raft.shutdown().await;
            return Err(error);
        }

        let (appends, queue) = mpsc::channel(APPEND_QUEUE);
        let (proposals, proposal_queue) = mpsc::channel(leader::PROPOSAL_QUEUE);
        let inner = Arc::new(Inner {
            id: config.node_id,
            raft,
            reader,
            peers,
            limits: config.limits,
            appends,
            proposals,
            elections,
        });
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let router = server::router(inner.clone());
        let serving = stop.clone();
        tasks.spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(serving.cancelled_owned())
                .await;
            if let Err(error) = served {
                tracing::error!(%error, "the Raft listener failed");
            }
        });
        let deciding = inner.clone();
        tasks.spawn(batching::run(
            queue,
            APPEND_BATCHES,
            stop.clone(),
            move |batch| {
                let node = deciding.clone();
                async move { decide(&node, batch).await }
            },
        ));
        tasks.spawn(election::call(
            inner.raft.clone(),
            election_runs,
            stop.clone(),
        ));
        let raft = inner.raft.clone();
        tasks.spawn(election::gate(
            move |on| raft.runtime_config().elect(on),
            inner.elections.clone(),
            stop.clone(),
        ));
        tasks.spawn(leader::propose_entries(
            inner.raft.clone(),
            proposal_queue,
            stop.clone(),
        ));
        tracing::info!(node_id = config.node_id, %raft_addr, "eventlog replica started");
        Ok(LogNode {
            inner,
            raft_addr,
            stop,
            tasks,
        })
    }

    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// Where the Raft listener is bound.
    pub fn raft_addr(&self) -> SocketAddr {
        self.raft_addr
    }

    /// Validates the append, then has the leader decide it in a batch with others.
    pub async fn append(&self, request: AppendRequest) -> AppendReply {
        self.inner.append(request).await
    }

    /// This replica's view of the log, the leader's replication included when it leads.
    pub async fn status(&self) -> LogStatus {
        self.inner.local_status().await
    }

    pub(crate) fn inner(&self) -> &Arc<Inner> {
        &self.inner
    }

    /// Resolves when the Raft node stops on its own (a storage failure): the replica is dead.
    pub async fn failed(&self) -> EventlogError {
        // The server metrics' sender goes with the Raft core, and they change with the role
        // only (the full metrics change with every entry): waiting for them to close costs
        // nothing meanwhile. The core's last full metrics say why it stopped.
        let mut server = self.inner.raft.server_metrics();
        while server.changed().await.is_ok() {}
        match &self.inner.raft.metrics().borrow().running_state {
            Err(fatal) => EventlogError::Raft(fatal.clone()),
            Ok(()) => EventlogError::Raft(openraft::error::Fatal::Stopped),
        }
    }

    /// Stops Raft first, so that requests in flight fail fast, then the listener and batching.
    pub async fn shutdown(mut self) {
        if let Err(error) = self.inner.raft.shutdown().await {
            tracing::warn!(%error, "Raft did not stop cleanly");
        }
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        tracing::info!(node_id = self.inner.id, "eventlog replica stopped");
    }
}

async fn initialize(
    raft: &Raft<TypeConfig>,
    config: &EventlogConfig,
    advertise: String,
) -> Result<(), EventlogError> {
    if raft.is_initialized().await? {
        tracing::info!("already part of a cluster; --init ignored");
        return Ok(());
    }
    let mut members: BTreeMap<NodeId, BasicNode> = config
        .peers
        .0
        .iter()
        .map(|(id, addr)| (*id, BasicNode::new(addr)))
        .collect();
    members
        .entry(config.node_id)
        .or_insert_with(|| BasicNode::new(advertise));
    tracing::info!(?members, "initialising the cluster");
    match raft.initialize(members).await {
        // Another replica's vote or log got here first: the cluster exists.
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => Ok(()),
        other => Ok(other?),
    }
}

/// Which way a leader-only request goes from here.
enum Route {
    Here,
    Forward { leader: NodeId, addr: String },
    NoLeader,
}

impl Inner {
    pub(crate) async fn append(&self, request: AppendRequest) -> AppendReply {
        let reply = match validate(&request, &self.limits) {
            Err(error) => {
                metrics::append_rejected(error.kind());
                AppendReply::Rejected {
                    kind: error.kind().into(),
                    reason: error.to_string(),
                }
            }
            // On the leader an append goes straight to the entries being gathered there: the
            // replica's own batches only save requests to the leader, which it need not make.
            Ok(()) if matches!(self.route(), Route::Here) => {
                let decided = self.serve_here(AppendBatch(vec![request])).await;
                match decided.map(|outcomes| outcomes.into_iter().next()) {
                    Ok(Some(outcome)) => AppendReply::Decided(outcome),
                    Ok(None) => AppendReply::Unavailable {
                        reason: "the append was not decided; retry".into(),
                    },
                    Err(reason) => AppendReply::Unavailable { reason },
                }
            }
            Ok(()) => {
                let (reply, answer) = oneshot::channel();
                match self.appends.send(QueuedAppend { request, reply }).await {
                    Ok(()) => answer.await.unwrap_or_else(|_| stopped()),
                    Err(_) => stopped(),
                }
            }
        };
        metrics::append_answered(&reply);
        reply
    }

    /// Serves a leader-only request here or hands it to the leader.
    pub(crate) async fn via_leader<Op: LeaderOp>(&self, op: Op) -> Op::Reply {
        match self.route() {
            Route::Here => self.serve_here(op).await,
            Route::Forward { leader, addr } => {
                match self.peers.call(&addr, Op::PATH, &op, FORWARD_TIMEOUT).await {
                    Ok(reply) => reply,
                    Err(error) => {
                        let reason = format!("cannot reach the leader (replica {leader}): {error}");
                        Op::unavailable(self, reason).await
                    }
                }
            }
            Route::NoLeader => Op::unavailable(self, "no leader is known; retry".into()).await,
        }
    }

    /// Serves a leader-only request on this replica, which believes it leads.
    pub(crate) async fn serve_here<Op: LeaderOp>(&self, op: Op) -> Op::Reply {
        match op.on_leader(self).await {
            Ok(reply) => reply,
            Err(NotLeader) => {
                let reason = format!("replica {} no longer leads; retry", self.id);
                Op::unavailable(self, reason).await
            }
        }
    }

    fn route(&self) -> Route {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        match metrics.current_leader {
            Some(leader) if leader == self.id => Route::Here,
            Some(leader) => match metrics.membership_config.membership().get_node(&leader) {
                Some(node) => Route::Forward {
                    leader,
                    addr: node.addr.clone(),
                },
                None => Route::NoLeader,
            },
            None => Route::NoLeader,
        }
    }

    /// Events from this replica's applied state, linearizable or not as the caller made sure.
    pub(crate) fn read_local(&self, request: &ReadRequest) -> ReadReply {
        self.page(
            |limit| self.reader.read(request.from_seq, limit),
            request.limit,
        )
    }

    pub(crate) fn read_stream_local(&self, request: &ReadStreamRequest) -> ReadReply {
        self.page(
            |limit| {
                self.reader
                    .read_stream(&request.stream, request.from_version, limit)
            },
            request.limit,
        )
    }

    fn page(
        &self,
        read: impl FnOnce(usize) -> Result<Vec<RecordedEvent>, StoreError>,
        limit: u32,
    ) -> ReadReply {
        let limit = (limit as usize).min(MAX_PAGE_EVENTS);
        let read = read(limit).map(|mut events| {
            events.truncate(fitting(&events, MAX_PAGE_BYTES));
            ReadReply::Events {
                events,
                last_seq: self.reader.last_seq(),
            }
        });
        read.unwrap_or_else(|error| ReadReply::Unavailable {
            reason: format!("this replica cannot read its store: {error}"),
        })
    }

    pub(crate) fn reader(&self) -> &EventReader {
        &self.reader
    }

    /// This replica's view, from openraft's metrics and its own store.
    pub(crate) async fn local_status(&self) -> LogStatus {
        let commit_index = self
            .raft
            .with_raft_state(|state| state.committed.map(|log_id| log_id.index))
            .await
            .unwrap_or(None);
        let last_seq = self.reader.last_seq();
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let (voters, learners) = members(&metrics);
        let last_log_index = metrics.last_log_index;
        let replication = metrics
            .replication
            .iter()
            .flatten()
            .filter(|(id, _)| **id != self.id)
            .map(|(id, matched)| {
                let matched_index = matched.map(|log_id| log_id.index);
                let next = matched_index.map_or(0, |index| index + 1);
                ReplicationProgress {
                    node_id: *id,
                    matched_index,
                    lag: last_log_index.map_or(0, |last| (last + 1).saturating_sub(next)),
                }
            })
            .collect();
        LogStatus {
            node_id: self.id,
            role: match metrics.state {
                ServerState::Leader => RaftRole::Leader,
                ServerState::Follower => RaftRole::Follower,
                ServerState::Candidate => RaftRole::Candidate,
                ServerState::Learner => RaftRole::Learner,
                ServerState::Shutdown => RaftRole::ShuttingDown,
            },
            leader: metrics.current_leader,
            term: metrics.current_term,
            last_log_index,
            commit_index,
            last_applied: metrics.last_applied.map(|log_id| log_id.index),
            snapshot_index: metrics.snapshot.map(|log_id| log_id.index),
            purged_index: metrics.purged.map(|log_id| log_id.index),
            last_seq,
            voters,
            learners,
            replication,
        }
    }
}

fn stopped() -> AppendReply {
    AppendReply::Unavailable {
        reason: "the replica is stopping; retry".into(),
    }
}

/// The voters and learners of the membership in `metrics`.
pub(crate) fn members(
    metrics: &RaftMetrics<NodeId, BasicNode>,
) -> (Vec<LogMember>, Vec<LogMember>) {
    let membership = metrics.membership_config.membership();
    let member = |node_id: NodeId| LogMember {
        node_id,
        addr: membership
            .get_node(&node_id)
            .map(|node| node.addr.clone())
            .unwrap_or_default(),
    };
    (
        membership.voter_ids().map(member).collect(),
        membership.learner_ids().map(member).collect(),
    )
}

/// How many of `events`, from the first, fit in `budget` bytes; at least one, so that a
/// reader always makes progress.
pub(crate) fn fitting(events: &[RecordedEvent], budget: usize) -> usize {
    let mut used = 0;
    let count = events
        .iter()
        .take_while(|event| {
            used += wire_size(event);
            used <= budget
        })
        .count();
    count.max(1).min(events.len())
}

/// An event's size on the wire, roughly: its strings and data plus the field names and numbers.
fn wire_size(event: &RecordedEvent) -> usize {
    event.data.len()
        + event.event_type.len()
        + event.stream.len()
        + event.idempotency_key.len()
        + 128
}

pub(crate) fn request_size(request: &AppendRequest) -> usize {
    request
        .events
        .iter()
        .map(|event| event.event_type.len() + event.data.len())
        .sum()
}

async fn decide(node: &Inner, batch: Vec<QueuedAppend>) {
    let (requests, replies): (Vec<_>, Vec<_>) = batch
        .into_iter()
        .map(|queued| (queued.request, queued.reply))
        .unzip();
    match node.via_leader(AppendBatch(requests)).await {
        // A reply whose outcome is missing is dropped, and its caller told to retry.
        Ok(outcomes) => {
            for (reply, outcome) in replies.into_iter().zip(outcomes) {
                let _ = reply.send(AppendReply::Decided(outcome));
            }
        }
        Err(reason) => {
            for reply in replies {
                let _ = reply.send(AppendReply::Unavailable {
                    reason: reason.clone(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_event(seq: u64, bytes: usize) -> RecordedEvent {
        RecordedEvent {
            seq,
            stream: String::new(),
            stream_version: seq,
            event_type: String::new(),
            data: vec![0; bytes - 128],
            idempotency_key: String::new(),
            committed_at_ms: 0,
        }
    }

    #[test]
    fn a_page_fits_its_budget_but_holds_at_least_one_event() {
        let events: Vec<_> = (1..=4).map(|seq| mk_event(seq, 1_000)).collect();
        assert_eq!(fitting(&events, 2_500), 2);
        assert_eq!(fitting(&events, 10_000), 4);
        assert_eq!(fitting(&events, 10), 1);
        assert_eq!(fitting(&[], 10), 0);
    }
}
