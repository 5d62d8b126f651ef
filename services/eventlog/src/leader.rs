//! Requests only the leader can decide: appends, linearizable reads, membership changes, and
//! the cluster's status. A replica serves one itself when it leads, and otherwise hands it to
//! the leader it knows over the Raft listener (`/client/...`); one hop only, so that a request
//! never circles while leadership moves.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Duration;

use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendRequest, LogStatus, MembershipReply, MembershipRequest, ReadReply,
    ReadRequest, ReadStreamRequest, StatusRequest,
};
use openraft::error::{ChangeMembershipError, CheckIsLeaderError, ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers, Raft};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::batching::{self, BatchLimits, Batchable};
use crate::node::{ELECTION_TIMEOUT_MS, Inner, members, request_size};
use crate::{AppendCommand, LogRequest, NodeId, TypeConfig, metrics};

/// How long the leader waits for a write to commit before answering that it could not decide;
/// the caller retries (with the same idempotency key for appends).
pub(crate) const COMMIT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the leader may take to confirm it still leads before a linearizable read.
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a leader may go without a quorum acknowledging it before it takes no more appends
/// (it stops serving the shared subject, refuses what it is handed, and gives up on the entry it
/// is deciding): as long as a follower waits before it calls an election (the leader's lease,
/// then an election timeout), so that by then the others may well have a leader of their own.
pub(crate) const QUORUM_SILENCE: Duration =
    Duration::from_millis(ELECTION_TIMEOUT_MS.1 + ELECTION_TIMEOUT_MS.0);

/// How often a leader checks when a quorum last acknowledged it.
pub(crate) const QUORUM_CHECK: Duration = Duration::from_millis(100);

/// This replica turned out not to lead (any more) when it tried to decide.
pub(crate) struct NotLeader;

/// A request the leader decides.
pub(crate) trait LeaderOp: Serialize + DeserializeOwned + Send + 'static {
    type Reply: Serialize + DeserializeOwned + Send + 'static;
    /// Where a replica hands it to the leader.
    const PATH: &'static str;

    /// Decides the request on this replica, which believes it leads.
    fn on_leader(self, node: &Inner)
    -> impl Future<Output = Result<Self::Reply, NotLeader>> + Send;

    /// The answer when the leader cannot be reached or does not know.
    fn unavailable(node: &Inner, reason: String) -> impl Future<Output = Self::Reply> + Send;
}

/// Appends batched by one replica, decided together, one outcome per append.
#[derive(Serialize, Deserialize)]
pub(crate) struct AppendBatch(pub(crate) Vec<AppendRequest>);

impl LeaderOp for AppendBatch {
    /// The outcomes, or why none was decided.
    type Reply = Result<Vec<AppendOutcome>, String>;
    const PATH: &'static str = "/client/append";

    async fn on_leader(self, node: &Inner) -> Result<Self::Reply, NotLeader> {
        // It could not commit them, and may be deposed already: the caller retries elsewhere.
        if !acknowledged_by_quorum(&node.raft) {
            return Ok(Err(no_quorum()));
        }
        let (decided, decision) = oneshot::channel();
        let proposal = Proposal {
            requests: self.0,
            decided,
        };
        let decided = tokio::time::timeout(COMMIT_TIMEOUT, async {
            node.proposals.send(proposal).await.ok()?;
            decision.await.ok()
        })
        .await;
        match decided {
            Ok(Some(decision)) => decision,
            Ok(None) => Ok(Err("the replica is stopping; retry".into())),
            Err(_) => Ok(Err(not_committed())),
        }
    }

    async fn unavailable(_: &Inner, reason: String) -> Self::Reply {
        Err(reason)
    }
}

/// Batches waiting for the leader to gather them into an entry.
pub(crate) const PROPOSAL_QUEUE: usize = 1024;

/// How the leader gathers batches into entries (see `batching`): one entry at a time, so that
/// every batch that arrives while it is decided goes into the next one, whichever replica it
/// came from. openraft 0.9 handles entries one after the other anyway (its core waits for an
/// entry's fsync before it takes the next, and keeps one AppendEntries in flight per follower):
/// a second entry in flight mostly waits, and is smaller than it would have been. Measured on
/// the benchmark's machine, two in flight gave no more throughput and longer p99 latencies. An
/// entry may pass `max_bytes` by one batch (under 1 MiB), so that an AppendEntries of
/// `max_payload_entries` entries stays well within the Raft listener's body limit.
const ENTRIES: BatchLimits = BatchLimits {
    in_flight: 1,
    max_appends: 1024,
    max_bytes: 512 * 1024,
};

/// One replica's batch (this one's or one handed over), waiting to be decided in an entry.
pub(crate) struct Proposal {
    requests: Vec<AppendRequest>,
    decided: oneshot::Sender<Result<Result<Vec<AppendOutcome>, String>, NotLeader>>,
}

impl Batchable for Proposal {
    fn appends(&self) -> usize {
        self.requests.len()
    }

    fn bytes(&self) -> usize {
        self.requests.iter().map(request_size).sum()
    }
}

/// Gathers proposals into Raft entries and writes them, until `stop`. Runs on every replica;
/// only the leader is handed proposals.
pub(crate) async fn propose_entries(
    raft: Raft<TypeConfig>,
    queue: mpsc::Receiver<Proposal>,
    stop: CancellationToken,
) {
    batching::run(queue, ENTRIES, stop, move |proposals| {
        write_entry(raft.clone(), proposals)
    })
    .await;
}

async fn write_entry(raft: Raft<TypeConfig>, proposals: Vec<Proposal>) {
    let proposed_at_ms = bulkhead_runtime::now_ms();
    let mut commands = Vec::new();
    let mut waiting = Vec::with_capacity(proposals.len());
    for Proposal { requests, decided } in proposals {
        waiting.push((requests.len(), decided));
        commands.extend(requests.into_iter().map(|request| AppendCommand {
            request,
            proposed_at_ms,
        }));
    }
    metrics::entry_proposed();
    match decide_entry(&raft, LogRequest { commands }).await {
        Ok(outcomes) => {
            let mut outcomes = outcomes.into_iter();
            for (count, decided) in waiting {
                let _ = decided.send(Ok(Ok(outcomes.by_ref().take(count).collect())));
            }
        }
        Err(Undecided::NotLeader) => {
            for (_, decided) in waiting {
                let _ = decided.send(Err(NotLeader));
            }
        }
        Err(Undecided::Failed(reason)) => {
            for (_, decided) in waiting {
                let _ = decided.send(Ok(Err(reason.clone())));
            }
        }
    }
}

/// Why an entry's appends were not decided.
enum Undecided {
    NotLeader,
    Failed(String),
}

/// Writes one entry and waits for its outcomes, but never past the vote it was written under,
/// nor past [`QUORUM_SILENCE`] without a quorum's acknowledgement (a leader cut off from the
/// others cannot commit it), nor past [`COMMIT_TIMEOUT`]: the proposer writes one entry at a
/// time, and openraft 0.9 may never answer a write. It answers an entry when it applies it or truncates it, but not when
/// a snapshot passes over it, which is what happens to an entry a deposed leader wrote and
/// could not replicate (a killed leader restarts believing it still leads). An entry left
/// undecided here may still be committed by the next leader; its appends' callers retry with
/// the same idempotency keys, and get the recorded outcome.
async fn decide_entry(
    raft: &Raft<TypeConfig>,
    entry: LogRequest,
) -> Result<Vec<AppendOutcome>, Undecided> {
    let mut server = raft.server_metrics();
    let written_under = server.borrow_and_update().vote;
    tokio::select! {
        written = raft.client_write(entry) => match written {
            Ok(response) => Ok(response.data.outcomes),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_))) => {
                Err(Undecided::NotLeader)
            }
            Err(error) => Err(Undecided::Failed(error.to_string())),
        },
        // Closed with the Raft core: the write fails on its own then.
        Ok(_) = server.wait_for(|now| now.vote != written_under) => Err(Undecided::NotLeader),
        () = quorum_silent(raft) => Err(Undecided::Failed(no_quorum())),
        () = tokio::time::sleep(COMMIT_TIMEOUT) => Err(Undecided::Failed(not_committed())),
    }
}

fn no_quorum() -> String {
    format!("no quorum has acknowledged this leader for {QUORUM_SILENCE:?}; retry")
}

fn not_committed() -> String {
    format!("not committed within {COMMIT_TIMEOUT:?}; retry")
}

/// Whether a quorum acknowledged this leader within [`QUORUM_SILENCE`]; also before the first
/// acknowledgement of its term, which a new leader awaits for a heartbeat.
pub(crate) fn acknowledged_by_quorum(raft: &Raft<TypeConfig>) -> bool {
    raft.metrics()
        .borrow()
        .millis_since_quorum_ack
        .is_none_or(|silent_ms| u128::from(silent_ms) < QUORUM_SILENCE.as_millis())
}

/// Returns once no quorum has acknowledged this leader for [`QUORUM_SILENCE`].
pub(crate) async fn quorum_silent(raft: &Raft<TypeConfig>) {
    while acknowledged_by_quorum(raft) {
        tokio::time::sleep(QUORUM_CHECK).await;
    }
}

impl LeaderOp for ReadRequest {
    type Reply = ReadReply;
    const PATH: &'static str = "/client/read";

    async fn on_leader(self, node: &Inner) -> Result<ReadReply, NotLeader> {
        Ok(match confirm_leadership(&node.raft).await? {
            Ok(()) => node.read_local(&self),
            Err(reason) => ReadReply::Unavailable { reason },
        })
    }

    async fn unavailable(_: &Inner, reason: String) -> ReadReply {
        ReadReply::Unavailable { reason }
    }
}

impl LeaderOp for ReadStreamRequest {
    type Reply = ReadReply;
    const PATH: &'static str = "/client/read_stream";

    async fn on_leader(self, node: &Inner) -> Result<ReadReply, NotLeader> {
        Ok(match confirm_leadership(&node.raft).await? {
            Ok(()) => node.read_stream_local(&self),
            Err(reason) => ReadReply::Unavailable { reason },
        })
    }

    async fn unavailable(_: &Inner, reason: String) -> ReadReply {
        ReadReply::Unavailable { reason }
    }
}

/// Waits until this replica has applied everything committed before now, having checked with
/// a quorum that it still leads: then a read of its state is linearizable.
async fn confirm_leadership(raft: &Raft<TypeConfig>) -> Result<Result<(), String>, NotLeader> {
    match tokio::time::timeout(READ_TIMEOUT, raft.ensure_linearizable()).await {
        Ok(Ok(_)) => Ok(Ok(())),
        Ok(Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(_)))) => Err(NotLeader),
        Ok(Err(error)) => Ok(Err(error.to_string())),
        Err(_) => Ok(Err(format!(
            "the leader could not confirm its leadership within {READ_TIMEOUT:?}; retry"
        ))),
    }
}

impl LeaderOp for StatusRequest {
    type Reply = LogStatus;
    const PATH: &'static str = "/client/status";

    async fn on_leader(self, node: &Inner) -> Result<LogStatus, NotLeader> {
        Ok(node.local_status().await)
    }

    /// Without a leader, this replica's own view is the best answer there is.
    async fn unavailable(node: &Inner, _: String) -> LogStatus {
        node.local_status().await
    }
}

impl LeaderOp for MembershipRequest {
    type Reply = MembershipReply;
    const PATH: &'static str = "/client/membership";

    async fn on_leader(self, node: &Inner) -> Result<MembershipReply, NotLeader> {
        let raft = &node.raft;
        let change = async {
            match self {
                MembershipRequest::AddLearner { node_id, addr } => {
                    // Not blocking: the learner's progress shows in the status.
                    raft.add_learner(node_id, BasicNode::new(addr), false).await
                }
                MembershipRequest::Promote { node_id } => {
                    raft.change_membership(
                        ChangeMembers::AddVoterIds(BTreeSet::from([node_id])),
                        false,
                    )
                    .await
                }
                MembershipRequest::Remove { node_id } => {
                    let change = match removal(raft, node_id) {
                        Some(change) => change,
                        None => return Ok(None),
                    };
                    raft.change_membership(change, false).await
                }
            }
            .map(Some)
        };
        let reply = match tokio::time::timeout(COMMIT_TIMEOUT, change).await {
            Err(_) => unavailable(not_committed()),
            Ok(Ok(Some(_))) => {
                let (voters, learners) = members(&raft.metrics().borrow());
                MembershipReply::Changed { voters, learners }
            }
            Ok(Ok(None)) => rejected("unknown_node", "no such replica in the membership"),
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                return Err(NotLeader);
            }
            Ok(Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(error)))) => {
                match &error {
                    ChangeMembershipError::InProgress(_) => unavailable(error.to_string()),
                    ChangeMembershipError::EmptyMembership(_) => {
                        rejected("empty_membership", &error.to_string())
                    }
                    ChangeMembershipError::LearnerNotFound(_) => {
                        rejected("learner_not_found", &error.to_string())
                    }
                }
            }
            Ok(Err(error)) => unavailable(error.to_string()),
        };
        Ok(reply)
    }

    async fn unavailable(_: &Inner, reason: String) -> MembershipReply {
        unavailable(reason)
    }
}

/// How to remove `node_id`: as a voter (which also forgets its address) or as a learner.
fn removal(raft: &Raft<TypeConfig>, node_id: NodeId) -> Option<ChangeMembers<NodeId, BasicNode>> {
    let metrics = raft.metrics();
    let metrics = metrics.borrow();
    let membership = metrics.membership_config.membership();
    let ids = BTreeSet::from([node_id]);
    if membership.voter_ids().any(|id| id == node_id) {
        Some(ChangeMembers::RemoveVoters(ids))
    } else if membership.get_node(&node_id).is_some() {
        Some(ChangeMembers::RemoveNodes(ids))
    } else {
        None
    }
}

fn rejected(kind: &str, reason: &str) -> MembershipReply {
    MembershipReply::Rejected {
        kind: kind.into(),
        reason: reason.into(),
    }
}

fn unavailable(reason: String) -> MembershipReply {
    MembershipReply::Unavailable { reason }
}
