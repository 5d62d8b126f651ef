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
