//! The event log's contract: appending events to a stream, reading them back, and the batches of
//! committed events the log publishes in log order.
//!
//! A stream is the history of one aggregate (its owner names it, e.g. `cluster/<id>`). Its
//! version counts its events from 1, so a stream that does not exist yet is at version 0. Every
//! committed event also gets a global sequence number, from 1 and without gaps, which is the
//! order every replica and every subscriber sees.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireMessage;

/// What the stream's version must be for an append to go through (optimistic concurrency).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExpectedVersion {
    /// Append whatever the version is.
    Any,
    /// The stream must not exist yet (version 0).
    NoStream,
    /// The stream must be at exactly this version.
    Exact(u64),
}

/// One event to append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NewEvent {
    /// What happened, e.g. `inventory.PodWorkloadCreated`; readers dispatch on it.
    pub event_type: String,
    /// The event body, opaque to the log (the owner's MessagePack, as a rule).
    #[serde(with = "serde_bytes")]
    #[schemars(with = "Vec<u8>")]
    pub data: Vec<u8>,
}

/// Appends events to one stream, all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AppendRequest {
    pub stream: String,
    pub expected_version: ExpectedVersion,
    /// Names the command: a repeat of a key the log has seen returns the first outcome unchanged
    /// and appends nothing, so a retry after a lost reply is safe. Keys are global, not per
    /// stream; the envelope id of the command is a good one.
    pub idempotency_key: String,
    pub events: Vec<NewEvent>,
}

/// What the log decided for an append, once it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppendOutcome {
    /// The events got the global sequence numbers `first_seq..=last_seq`; the stream is now at
    /// `stream_version`.
    Appended {
        first_seq: u64,
        last_seq: u64,
        stream_version: u64,
    },
    /// The stream was not at the expected version; nothing was appended.
    Conflict { current_version: u64 },
}

/// The answer to an [`AppendRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AppendReply {
    /// The log ordered the append and decided it.
    Decided(AppendOutcome),
    /// The request breaks a rule of the log (a limit, an empty name); nothing was appended and a
    /// retry gets the same answer.
    Rejected {
        /// A stable label of the rule, e.g. `event_too_large`.
        kind: String,
        /// What was wrong, for people.
        reason: String,
    },
    /// The log could not decide now (no leader, shutting down); retrying with the same
    /// idempotency key is safe.
    Unavailable { reason: String },
}

/// An event as the log recorded it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct RecordedEvent {
    /// Global position, from 1 and without gaps.
    pub seq: u64,
    pub stream: String,
    /// Position in the stream, from 1.
    pub stream_version: u64,
    pub event_type: String,
    #[serde(with = "serde_bytes")]
    #[schemars(with = "Vec<u8>")]
    pub data: Vec<u8>,
    /// The key of the append that wrote the event.
    pub idempotency_key: String,
    /// When the leader proposed the append, in milliseconds since the Unix epoch; the same on
    /// every replica.
    pub committed_at_ms: u64,
}

/// Reads committed events in global order from `from_seq` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReadRequest {
    pub from_seq: u64,
    /// At most this many events; the log may return fewer (it caps the page size).
    pub limit: u32,
}

/// Reads one stream's events from `from_version` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReadStreamRequest {
    pub stream: String,
    pub from_version: u64,
    /// At most this many events; the log may return fewer (it caps the page size).
    pub limit: u32,
}

/// The answer to a [`ReadRequest`] or a [`ReadStreamRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadReply {
    /// A page of events in order; fewer than `limit` means the reader is at the end.
    Events {
        events: Vec<RecordedEvent>,
        /// The newest global sequence number when the page was read, so that a reader knows how
        /// far behind it is.
        last_seq: u64,
    },
    /// The log cannot serve a linearizable read now (no leader); retry.
    Unavailable { reason: String },
}

/// Committed events as the log publishes them: in log order, consecutive sequence numbers. A
/// subscriber that sees a gap fills it with a [`ReadRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommittedEvents {
    pub events: Vec<RecordedEvent>,
}

impl WireMessage for AppendRequest {
    const TYPE: &'static str = "eventlog.AppendRequest";
    const VERSION: u16 = 1;
}

impl WireMessage for AppendReply {
    const TYPE: &'static str = "eventlog.AppendReply";
    const VERSION: u16 = 1;
}

impl WireMessage for ReadRequest {
    const TYPE: &'static str = "eventlog.ReadRequest";
    const VERSION: u16 = 1;
}

impl WireMessage for ReadStreamRequest {
    const TYPE: &'static str = "eventlog.ReadStreamRequest";
    const VERSION: u16 = 1;
}

impl WireMessage for ReadReply {
    const TYPE: &'static str = "eventlog.ReadReply";
    const VERSION: u16 = 1;
}

impl WireMessage for CommittedEvents {
    const TYPE: &'static str = "eventlog.CommittedEvents";
    const VERSION: u16 = 1;
}

/// Asks for the log's status. On `bulkhead.eventlog.status` any replica takes it and answers
/// with the leader's view (its own when no leader is reachable); on
/// `bulkhead.eventlog.node.<id>.status` replica `<id>` answers with its own view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct StatusRequest {}

/// What a replica is doing in the Raft cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RaftRole {
    Leader,
    Follower,
    Candidate,
    /// Receives the log but does not vote (new replicas, before they are promoted).
    Learner,
    ShuttingDown,
}

/// A replica in the log's membership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogMember {
    pub node_id: u64,
    /// Where the other replicas reach its Raft listener (`host:port`).
    pub addr: String,
}

/// How far the leader has replicated its log to one other replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReplicationProgress {
    pub node_id: u64,
    /// The last log index the replica is known to hold, if any.
    pub matched_index: Option<u64>,
    /// Log entries the replica is behind the leader's last log index.
    pub lag: u64,
}

/// One replica's view of the log, the answer to a [`StatusRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LogStatus {
    /// The replica that answered.
    pub node_id: u64,
    pub role: RaftRole,
    /// The leader this replica knows of.
    pub leader: Option<u64>,
    pub term: u64,
    /// Raft log indexes (entries, not events: one entry holds a batch of appends).
    pub last_log_index: Option<u64>,
    pub commit_index: Option<u64>,
    pub last_applied: Option<u64>,
    /// The last log index covered by this replica's snapshot.
    pub snapshot_index: Option<u64>,
    /// The last log index removed from this replica's log (covered by the snapshot).
    pub purged_index: Option<u64>,
    /// The newest event sequence number this replica has applied.
    pub last_seq: u64,
    pub voters: Vec<LogMember>,
    pub learners: Vec<LogMember>,
    /// Replication to every other member; filled in by the leader only.
    pub replication: Vec<ReplicationProgress>,
}

/// Changes the log's membership, one step at a time: a new replica joins as a learner, catches
/// up, then is promoted to voter. Any replica takes it and hands it to the leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MembershipRequest {
    /// Adds a replica that receives the log without voting.
    AddLearner { node_id: u64, addr: String },
    /// Makes a learner a voter.
    Promote { node_id: u64 },
    /// Removes a voter or a learner.
    Remove { node_id: u64 },
}

/// The answer to a [`MembershipRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MembershipReply {
    /// The change is committed; the membership is now this.
    Changed {
        voters: Vec<LogMember>,
        learners: Vec<LogMember>,
    },
    /// The change is not possible (unknown replica, no voter left...); nothing changed.
    Rejected { kind: String, reason: String },
    /// The log could not decide now (no leader, another change in progress); retry.
    Unavailable { reason: String },
}

impl WireMessage for StatusRequest {
    const TYPE: &'static str = "eventlog.StatusRequest";
    const VERSION: u16 = 1;
}

impl WireMessage for LogStatus {
    const TYPE: &'static str = "eventlog.LogStatus";
    const VERSION: u16 = 1;
}

impl WireMessage for MembershipRequest {
    const TYPE: &'static str = "eventlog.MembershipRequest";
    const VERSION: u16 = 1;
}

impl WireMessage for MembershipReply {
    const TYPE: &'static str = "eventlog.MembershipReply";
    const VERSION: u16 = 1;
}
