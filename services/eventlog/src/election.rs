//! Ending a split vote at once, rather than an election timeout (or two) later.
//!
//! openraft 0.9 has no pre-vote, and a replica that refuses a vote does not take the
//! candidate's term. When the leader dies, the survivor with the shorter log may call the first
//! election. The survivor with the longer log refuses it for its log, and later calls the same
//! term itself, which the first refuses, having voted for itself. Nobody can win that term, and
//! the next try waits an election timeout, longer still for a replica that openraft makes wait
//! for having once met a longer log (`seen_greater_log`). Such kills took 1.9-2.4 s where the
//! others took 1.0-1.3 s (docs/eventlog.md, "Failure behaviour").
//!
//! Two rules act on what a vote exchange has just shown, and only call `trigger().elect()`;
//! every vote is still decided by openraft:
//!
//! ```text
//!   A, shorter log, calls term T+1       B, longer log, its leader silent for a lease
//!      vote T+1 ───────────────────────▶ refuses for A's log
//!                                        rule 1: B runs now (in T+1: it kept term T)
//!      refuses, voted for itself ◀────── vote T+1
//!                                        rule 2: B's log is the better: B runs again
//!      grants ◀───────────────────────── vote T+2
//! ```
//!
//! Rule 1 never acts while the replica's leader may still be alive for it (it heard from it
//! within the lease), nor on a replica that voted for another candidate (which may just have
//! won). Rule 2 only ends the replica's own candidacy in a term its rival cannot win without it,
//! and of two rivals only the one with the better (last log id, node id) runs again, so two
//! replicas never keep splitting terms the way the election driver tried before did.
//!
//! Two openraft behaviours are turned off, since the rules do their work better:
//! - A candidate refused by a longer log waits twice the maximum election timeout more before
//!   its next election, and keeps that penalty until its next election, however long after: a
//!   refusal in one leader's loss made a later loss take 2.3 s. The rules already let the longer
//!   log win, so the refusals openraft sees carry no longer log ([`Elections::was_answered`]).
//!   That penalty did keep a replica catching up from calling elections too often, which the
//!   gate below now does instead.
//! - A replica catching up hears nothing from the leader while the leader reads the snapshot to
//!   send it, and until it has installed it (the leader waits for its answer to the last
//!   chunk). It called elections meanwhile, and its higher term deposed the leader as soon as
//!   replication resumed, which started the snapshot over: in one run a restarted replica never
//!   caught up. The gate keeps openraft's elections off while a replica lags or installs
//!   ([`quiet`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use openraft::raft::{AppendEntriesResponse, VoteRequest, VoteResponse};
use openraft::{Raft, ServerState};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::node::ELECTION_TIMEOUT_MS;
use crate::{NodeId, TypeConfig, metrics};

/// openraft 0.9's leader lease: a follower refuses votes for this long after it last heard
/// from its leader.
const LEADER_LEASE: Duration = Duration::from_millis(ELECTION_TIMEOUT_MS.1);

/// A lagging replica calls no election while its leader was heard from within this: longer
/// than the leader takes to read a big snapshot before it sends the first chunk.
const LAGGING_QUIET_AT_MOST: Duration = Duration::from_secs(5);
/// Elections stay off this much longer once the replica is no longer quiet.
const AFTER_QUIET: Duration = Duration::from_millis(ELECTION_TIMEOUT_MS.0);
const RECHECK_QUIET: Duration = Duration::from_millis(250);

/// Why a replica runs at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// Rule 1: it refused a candidate with a shorter log, its leader silent.
    LongerLog,
    /// Rule 2: its rival in the same term refused it, and its log is the better.
    SplitTerm,
}

impl Reason {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Reason::LongerLog => "longer_log",
            Reason::SplitTerm => "split_term",
        }
    }
}

/// An election to call, unless the replica has left `term` meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) term: u64,
    pub(crate) reason: Reason,
}

/// Rule 1, on this replica's answer to another's vote request: run if the candidate's log is
/// shorter and this replica is a candidate itself, or follows a leader silent for its lease.
pub(crate) fn after_refusing(
    me: NodeId,
    request: &VoteRequest<NodeId>,
    answer: &VoteResponse<NodeId>,
    leader_silent_for: Duration,
) -> Option<Run> {
    let mine = &answer.vote;
    let runs = !answer.vote_granted
        && answer.last_log_id > request.last_log_id
        && request.vote.leader_id().term >= mine.leader_id().term
        && match (
            mine.is_committed(),
            mine.leader_id().voted_for() == Some(me),
        ) {
            // It leads.
            (true, true) => false,
            (true, false) => leader_silent_for >= LEADER_LEASE,
            // It is a candidate.
            (false, true) => true,
            // It voted for another candidate, which may have won already.
            (false, false) => false,
        };
    runs.then_some(Run {
        term: mine.leader_id().term,
        reason: Reason::LongerLog,
    })
}

/// Rule 2, on the answer to this replica's own vote request from `voter`: run again if the
/// voter is its rival in the same term (it voted for itself) and this replica's log is the
/// better, node ids breaking ties, so that of two rivals exactly one runs again.
pub(crate) fn after_refused(
    me: NodeId,
    voter: NodeId,
    request: &VoteRequest<NodeId>,
    answer: &VoteResponse<NodeId>,
) -> Option<Run> {
    let theirs = &answer.vote;
    let term = request.vote.leader_id().term;
    let runs = !answer.vote_granted
        && !theirs.is_committed()
        && theirs.leader_id().term == term
        && theirs.leader_id().voted_for() == Some(voter)
        && (request.last_log_id, me) > (answer.last_log_id, voter);
    runs.then_some(Run {
        term,
        reason: Reason::SplitTerm,
    })
}

/// Whether openraft's own elections stay off: while a snapshot chunk is being handled, and
/// while the replica lags (its last answer to AppendEntries was a conflict) and the leader has
/// been heard from lately. A lagging replica cannot win an election against the replicas the
/// leader kept up to date, so it loses nothing by not calling one; the limit lets it call one
/// after all once its leader is surely gone.
fn quiet(installing: bool, lagging: bool, silent_for: Duration) -> bool {
    installing || (lagging && silent_for < LAGGING_QUIET_AT_MOST)
}

/// What the transport tells this replica's election caller and gate.
pub(crate) struct Elections {
    me: NodeId,
    started: Instant,
    /// When an AppendEntries or snapshot chunk last came, in ms since `started`.
    leader_heard_ms: AtomicU64,
    /// Snapshot chunks being handled.
    installing: AtomicUsize,
    /// The last AppendEntries answered a conflict: the leader is finding, or sending, what this
    /// replica misses.
    lagging: AtomicBool,
    /// Told when `installing` or `lagging` changes.
    changed: Notify,
    runs: mpsc::UnboundedSender<Run>,
}

impl Elections {
    pub(crate) fn new(me: NodeId) -> (Arc<Self>, mpsc::UnboundedReceiver<Run>) {
        let (runs, queue) = mpsc::unbounded_channel();
        let elections = Elections {
            me,
            started: Instant::now(),
            leader_heard_ms: AtomicU64::new(0),
            installing: AtomicUsize::new(0),
            lagging: AtomicBool::new(false),
            changed: Notify::new(),
            runs,
        };
        (Arc::new(elections), queue)
    }

    /// A leader sent entries, a heartbeat or a snapshot chunk.
    pub(crate) fn heard_from_leader(&self) {
        let now = self.started.elapsed().as_millis() as u64;
        self.leader_heard_ms.fetch_max(now, Ordering::Relaxed);
    }

    /// This replica answered an AppendEntries (`heard_from_leader` was told when it came).
    pub(crate) fn appended(&self, answer: &AppendEntriesResponse<NodeId>) {
        let lagging = matches!(answer, AppendEntriesResponse::Conflict);
        if self.lagging.swap(lagging, Ordering::SeqCst) != lagging {
            self.changed.notify_waiters();
        }
    }

    /// A snapshot chunk from the leader is being handled until the guard drops.
    pub(crate) fn installing(self: &Arc<Self>) -> Installing {
        self.heard_from_leader();
        self.installing.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
        Installing(self.clone())
    }

    fn silent_for(&self) -> Duration {
        let heard = Duration::from_millis(self.leader_heard_ms.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(heard)
    }

    fn quiet_for(&self, silent_for: Duration) -> bool {
        quiet(
            self.installing.load(Ordering::SeqCst) > 0,
            self.lagging.load(Ordering::SeqCst),
            silent_for,
        )
    }

    fn quiet(&self) -> bool {
        self.quiet_for(self.silent_for())
    }

    /// This replica answered another's vote request.
    pub(crate) fn answered(&self, request: &VoteRequest<NodeId>, answer: &VoteResponse<NodeId>) {
        let silent_for = self.silent_for();
        if !self.quiet_for(silent_for) {
            self.run(after_refusing(self.me, request, answer, silent_for));
        }
    }

    /// `voter` answered this replica's vote request; returns the answer openraft is to see,
    /// without a longer log in a refusal (the module doc says why).
    pub(crate) fn was_answered(
        &self,
        voter: NodeId,
        request: &VoteRequest<NodeId>,
        mut answer: VoteResponse<NodeId>,
    ) -> VoteResponse<NodeId> {
        self.run(after_refused(self.me, voter, request, &answer));
        if !answer.vote_granted && answer.last_log_id > request.last_log_id {
            answer.last_log_id = request.last_log_id;
        }
        answer
    }

    fn run(&self, run: Option<Run>) {
        if let Some(run) = run {
            // Only fails once the caller has stopped with the replica.
            let _ = self.runs.send(run);
        }
    }
}

/// Held while a snapshot chunk is being handled.
pub(crate) struct Installing(Arc<Elections>);

impl Drop for Installing {
    fn drop(&mut self) {
        self.0.heard_from_leader();
        self.0.installing.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Turns openraft's elections off while the replica is [`quiet`], and on again after, until
/// `stop`: `elect` is the switch (`raft.runtime_config().elect`).
pub(crate) async fn gate(elect: impl Fn(bool), elections: Arc<Elections>, stop: CancellationToken) {
    let mut on = true;
    loop {
        let changed = elections.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let quiet = elections.quiet();
        if quiet && on {
            elect(false);
            on = false;
            tracing::debug!("catching up with the leader: calling no elections meanwhile");
        } else if !quiet && !on {
            // openraft last heard from the leader when the conflict or the chunk came, maybe
            // seconds ago: the leader's next AppendEntries, sent at once, must land first.
            tokio::select! {
                _ = stop.cancelled() => return,
                () = tokio::time::sleep(AFTER_QUIET) => {}
            }
            if !elections.quiet() {
                elect(true);
                on = true;
                tracing::debug!("caught up with the leader: elections on again");
            }
            continue;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            () = &mut changed => {}
            // `quiet` also ends with time.
            () = tokio::time::sleep(RECHECK_QUIET) => {}
        }
    }
}

/// Calls the elections the rules ask for, once per term, until `stop`.
pub(crate) async fn call(
    raft: Raft<TypeConfig>,
    mut runs: mpsc::UnboundedReceiver<Run>,
    stop: CancellationToken,
) {
    let mut last_called_from = None;
    loop {
        let run = tokio::select! {
            _ = stop.cancelled() => return,
            run = runs.recv() => match run {
                Some(run) => run,
                None => return,
            },
        };
        let (term, state) = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            (metrics.vote.leader_id().term, metrics.state)
        };
        // Moved on since (a new term, or it leads): the exchange no longer says anything.
        if term != run.term || state == ServerState::Leader || last_called_from == Some(term) {
            continue;
        }
        last_called_from = Some(term);
        tracing::info!(
            term,
            reason = run.reason.label(),
            "calling an election at once"
        );
        metrics::election_called(run.reason.label());
        if raft.trigger().elect().await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use openraft::{CommittedLeaderId, LogId, Vote};

    use super::*;

    const A: NodeId = 1;
    const B: NodeId = 2;
    const LEADER: NodeId = 3;

    fn log(index: u64) -> Option<LogId<NodeId>> {
        Some(LogId::new(CommittedLeaderId::new(4, LEADER), index))
    }

    fn request(term: u64, candidate: NodeId, last_log: u64) -> VoteRequest<NodeId> {
        VoteRequest::new(Vote::new(term, candidate), log(last_log))
    }

    fn refusal(vote: Vote<NodeId>, last_log: u64) -> VoteResponse<NodeId> {
        VoteResponse::new(vote, log(last_log), false)
    }

    const SILENT: Duration = LEADER_LEASE;
    const HEARD: Duration = Duration::from_millis(ELECTION_TIMEOUT_MS.1 / 2);

    /// The gate over a switch that records what it was set to.
    fn start_gate(
        elections: &Arc<Elections>,
    ) -> (
        Arc<std::sync::Mutex<Vec<bool>>>,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let switched = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let record = switched.clone();
        let elect = move |on| record.lock().unwrap().push(on);
        let gate = tokio::spawn(gate(elect, elections.clone(), stop.clone()));
        (switched, stop, gate)
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_turns_elections_off_while_a_replica_lags_or_installs_and_on_after() {
        let (elections, _runs) = Elections::new(A);
        let (switched, stop, gate) = start_gate(&elections);
        let switches = || switched.lock().unwrap().clone();
        tokio::time::sleep(RECHECK_QUIET).await;
        assert_eq!(switches(), Vec::<bool>::new(), "nothing to switch off");

        elections.heard_from_leader();
        elections.appended(&AppendEntriesResponse::Conflict);
        tokio::time::sleep(Duration::from_millis(1)).await;
        assert_eq!(switches(), [false], "off at once when the replica lags");

        elections.heard_from_leader();
        elections.appended(&AppendEntriesResponse::Success);
        tokio::time::sleep(AFTER_QUIET / 2).await;
        assert_eq!(
            switches(),
            [false],
            "the leader's next AppendEntries lands first"
        );
        tokio::time::sleep(AFTER_QUIET).await;
        assert_eq!(switches(), [false, true]);

        let installing = elections.installing();
        tokio::time::sleep(LAGGING_QUIET_AT_MOST * 2).await;
        assert_eq!(
            switches(),
            [false, true, false],
            "off for as long as a chunk takes"
        );
        drop(installing);
        tokio::time::sleep(AFTER_QUIET + Duration::from_millis(1)).await;
        assert_eq!(switches(), [false, true, false, true]);

        stop.cancel();
        gate.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_gate_turns_elections_on_again_once_a_lagging_replicas_leader_is_long_silent() {
        let (elections, _runs) = Elections::new(A);
        let (switched, stop, gate) = start_gate(&elections);
        elections.heard_from_leader();
        elections.appended(&AppendEntriesResponse::Conflict);
        tokio::time::sleep(LAGGING_QUIET_AT_MOST / 2).await;
        assert_eq!(*switched.lock().unwrap(), [false]);
        tokio::time::sleep(LAGGING_QUIET_AT_MOST / 2 + RECHECK_QUIET + AFTER_QUIET).await;
        assert_eq!(*switched.lock().unwrap(), [false, true]);
        stop.cancel();
        gate.await.unwrap();
    }

    #[test]
    fn a_replica_is_quiet_while_it_installs_or_lags_behind_a_leader_it_hears() {
        let lately = Duration::from_millis(100);
        assert!(quiet(true, false, lately));
        assert!(quiet(true, false, LAGGING_QUIET_AT_MOST));
        assert!(quiet(false, true, lately));
        assert!(!quiet(false, true, LAGGING_QUIET_AT_MOST));
        assert!(!quiet(false, false, lately));
    }

    #[test]
    fn a_conflict_makes_a_replica_quiet_until_it_appends_and_so_does_a_snapshot_chunk() {
        let (elections, _runs) = Elections::new(B);
        elections.heard_from_leader();
        assert!(!elections.quiet());
        elections.appended(&AppendEntriesResponse::Conflict);
        assert!(elections.quiet());
        elections.appended(&AppendEntriesResponse::Success);
        assert!(!elections.quiet());
        let installing = elections.installing();
        assert!(elections.quiet());
        drop(installing);
        assert!(!elections.quiet());
    }

    #[test]
    fn openraft_sees_no_longer_log_in_a_refusal_but_the_rules_do() {
        let (elections, mut runs) = Elections::new(B);
        let mine = request(5, B, 11);
        let shorter_rival = refusal(Vote::new(5, A), 10);
        assert_eq!(
            elections.was_answered(A, &mine, shorter_rival.clone()),
            shorter_rival
        );
        assert_eq!(runs.try_recv().map(|run| run.reason), Ok(Reason::SplitTerm));

        let mine = request(5, A, 10);
        let longer = refusal(Vote::new_committed(4, LEADER), 11);
        let seen = Elections::new(A).0.was_answered(B, &mine, longer);
        assert_eq!(seen.last_log_id, mine.last_log_id);
        assert!(!seen.vote_granted);
    }

    #[test]
    fn a_follower_with_the_longer_log_runs_once_its_leader_is_silent_for_the_lease() {
        let following = Vote::new_committed(4, LEADER);
        let answer = refusal(following, 11);
        assert_eq!(
            after_refusing(B, &request(5, A, 10), &answer, SILENT),
            Some(Run {
                term: 4,
                reason: Reason::LongerLog
            })
        );
        assert_eq!(after_refusing(B, &request(5, A, 10), &answer, HEARD), None);
    }

    #[test]
    fn a_replica_does_not_run_for_a_candidate_whose_log_is_not_shorter() {
        let following = Vote::new_committed(4, LEADER);
        for candidate_log in [11, 12] {
            let answer = refusal(following, 11);
            assert_eq!(
                after_refusing(B, &request(5, A, candidate_log), &answer, SILENT),
                None
            );
        }
    }

    #[test]
    fn a_leader_and_a_replica_that_voted_for_another_candidate_do_not_run() {
        let leading = Vote::new_committed(4, B);
        let voted_for_other = Vote::new(5, LEADER);
        for mine in [leading, voted_for_other] {
            let answer = refusal(mine, 11);
            assert_eq!(
                after_refusing(B, &request(5, A, 10), &answer, SILENT),
                None,
                "{mine}"
            );
        }
    }

    #[test]
    fn a_candidate_with_the_longer_log_runs_again_when_a_shorter_one_asks() {
        let candidate = refusal(Vote::new(5, B), 11);
        assert_eq!(
            after_refusing(B, &request(5, A, 10), &candidate, HEARD),
            Some(Run {
                term: 5,
                reason: Reason::LongerLog
            })
        );
        // An older candidate says nothing about this replica's leader.
        assert_eq!(
            after_refusing(B, &request(4, A, 10), &candidate, SILENT),
            None
        );
    }

    #[test]
    fn of_two_rivals_in_a_term_only_the_better_log_runs_again() {
        // B has the longer log: B runs again, A does not.
        let b_refused_by_a = refusal(Vote::new(5, A), 10);
        assert_eq!(
            after_refused(B, A, &request(5, B, 11), &b_refused_by_a),
            Some(Run {
                term: 5,
                reason: Reason::SplitTerm
            })
        );
        let a_refused_by_b = refusal(Vote::new(5, B), 11);
        assert_eq!(
            after_refused(A, B, &request(5, A, 10), &a_refused_by_b),
            None
        );
    }

    #[test]
    fn of_two_rivals_with_equal_logs_only_the_higher_node_id_runs_again() {
        let b_refused_by_a = refusal(Vote::new(5, A), 10);
        let a_refused_by_b = refusal(Vote::new(5, B), 10);
        assert!(after_refused(B, A, &request(5, B, 10), &b_refused_by_a).is_some());
        assert_eq!(
            after_refused(A, B, &request(5, A, 10), &a_refused_by_b),
            None
        );
    }

    #[test]
    fn a_refusal_that_is_not_a_split_term_is_left_to_openraft() {
        let mine = request(5, B, 11);
        for answer in [
            // The voter follows a leader whose lease holds.
            refusal(Vote::new_committed(4, LEADER), 10),
            // It voted for a third candidate, which may win.
            refusal(Vote::new(5, LEADER), 10),
            // It is in a later term: openraft makes B follow it.
            refusal(Vote::new(6, A), 10),
            // Granted.
            VoteResponse::new(Vote::new(5, B), log(10), true),
        ] {
            assert_eq!(after_refused(B, A, &mine, &answer), None, "{answer:?}");
        }
    }
}
