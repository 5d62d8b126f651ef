//! Calling an election as soon as the leader is known to be gone, not when openraft 0.9's own
//! timer gets to it.
//!
//! openraft's timer makes a follower wait the leader's lease plus its own election timeout since
//! it last heard from the leader, and twice the maximum timeout more once it has lost an election
//! to a longer log, a penalty it keeps until its next election even after its log has caught up
//! (`seen_greater_log`): a dead leader was replaced in 1.0-1.4 s, sometimes 2-2.5 s
//! (docs/eventlog.md, "Failure behaviour"). Here each follower asks the leader it knows, over the
//! Raft listener, whether it still leads; once it has had no "yes" for the lease and a heartbeat
//! (by then every other voter's lease has run out too, so the vote can be granted) and a random
//! pause, it calls an election itself. openraft's timer stays on behind it, and decides every
//! vote as before: this only calls elections earlier, never wins one that openraft would refuse.

use std::sync::Arc;
use std::time::Duration;

use openraft::{ServerState, Vote};
use rand::Rng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::NodeId;
use crate::node::{ELECTION_TIMEOUT_MS, HEARTBEAT_MS, Inner};

/// Where a replica answers whether it leads, with its vote when it does.
pub(crate) const LEADS_PATH: &str = "/raft/leads";

/// How often a follower asks; also how long it waits for the answer.
const ASK_EVERY: Duration = Duration::from_millis(50);
const ANSWER_WITHIN: Duration = Duration::from_millis(HEARTBEAT_MS);

/// Silence before an election: the leader's lease (openraft's is the maximum election
/// timeout), plus a heartbeat so that the other voters' leases have surely run out.
const SILENCE: Duration = Duration::from_millis(ELECTION_TIMEOUT_MS.1 + HEARTBEAT_MS);

/// The random pause on top, drawn anew for every election, so that two followers rarely call
/// theirs at once (and split the vote).
const PAUSE_MS: std::ops::Range<u64> = 0..(ELECTION_TIMEOUT_MS.1 - ELECTION_TIMEOUT_MS.0);

/// The leader's answer to [`LEADS_PATH`]: its vote while it leads, `None` otherwise.
pub(crate) fn leads(node: &Inner) -> Option<Vote<NodeId>> {
    let metrics = node.raft.server_metrics();
    let metrics = metrics.borrow();
    (metrics.state == ServerState::Leader).then_some(metrics.vote)
}

/// Calls elections on this replica when the leader stops saying it leads, until `stop`.
pub(crate) async fn call_elections(node: Arc<Inner>, stop: CancellationToken) {
    let mut heard_at = Instant::now();
    let mut pause = random_pause();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            () = tokio::time::sleep(ASK_EVERY) => {}
        }
        let (state, vote, leader) = {
            let metrics = node.raft.metrics();
            let metrics = metrics.borrow();
            let leader = metrics
                .current_leader
                .filter(|leader| *leader != node.id)
                .and_then(|leader| metrics.membership_config.membership().get_node(&leader))
                .map(|leader| leader.addr.clone());
            (metrics.state, metrics.vote, leader)
        };
        if state != ServerState::Follower && state != ServerState::Candidate {
            heard_at = Instant::now();
            continue;
        }
        if let Some(addr) = leader
            && leader_still_leads(&node, &addr, &vote).await
        {
            heard_at = Instant::now();
            continue;
        }
        if heard_at.elapsed() < SILENCE + pause {
            continue;
        }
        tracing::info!(
            silent_ms = heard_at.elapsed().as_millis() as u64,
            "no leader; calling an election"
        );
        if node.raft.trigger().elect().await.is_err() {
            return;
        }
        // The next one, if this one fails, after the silence and a new pause.
        heard_at = Instant::now();
        pause = random_pause();
    }
}

/// Whether the leader at `addr` answers that it leads, in a term at least this replica's.
async fn leader_still_leads(node: &Inner, addr: &str, vote: &Vote<NodeId>) -> bool {
    let answer: Result<Option<Vote<NodeId>>, _> =
        node.peers.call(addr, LEADS_PATH, &(), ANSWER_WITHIN).await;
    matches!(answer, Ok(Some(leader_vote)) if leader_vote >= *vote)
}

fn random_pause() -> Duration {
    Duration::from_millis(rand::rng().random_range(PAUSE_MS))
}
