//! How a service that owns a stream changes it (DESIGN.md, principle 2, "owners validate"): a
//! command is planned against the service's projection, appended at the stream version the
//! plan saw, and answered once the projection has applied the append (read-your-writes).
//!
//! ```text
//!   plan(projection) ──events──► append(stream, expected version, key@version) ──► eventlog
//!        ▲                                │ Conflict: wait until the projection        │
//!        └──── plan again (≤ replans) ◄───┘ holds the version that won                 │
//!   reply ◄── wait until the projection applied the append's last seq ◄── committed ───┘
//! ```

use std::time::Duration;

use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, ExpectedVersion, NewEvent, ReadReply,
    ReadStreamRequest,
};
use bulkhead_schema::{Subject, WireMessage};

use crate::bus::{BusError, TypedBus};
use crate::projection::{Projected, Projection};

/// How long a request to the event log may take.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an append may take to reach the projection before the caller is told to retry.
pub(crate) const APPLY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an append did not go through; `R` is the owner's refusal of a command (a service
/// implements `From<R>` for its `CommitError<R>`, so that `?` refuses).
#[derive(Debug, thiserror::Error)]
pub enum CommitError<R> {
    #[error(transparent)]
    Refused(R),
    #[error("the event log cannot commit now: {0}")]
    Unavailable(String),
    #[error("the event log refused the append ({kind}): {reason}")]
    Rejected { kind: String, reason: String },
    #[error("stream {stream} changed while the request was handled; send it again")]
    Contended { stream: String },
}

impl<R> CommitError<R> {
    /// A short, stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            CommitError::Refused(_) => "refused",
            CommitError::Unavailable(_) => "unavailable",
            CommitError::Rejected { .. } => "rejected",
            CommitError::Contended { .. } => "contended",
        }
    }
}

impl<R> From<BusError> for CommitError<R> {
    fn from(error: BusError) -> Self {
        CommitError::Unavailable(format!("{error} ({})", error.kind()))
    }
}

/// The event log as the owner of projection `P` uses it.
pub struct Log<P> {
    bus: TypedBus,
    projected: Projected<P>,
    replans: usize,
}

impl<P> Clone for Log<P> {
    fn clone(&self) -> Self {
        Log {
            bus: self.bus.clone(),
            projected: self.projected.clone(),
            replans: self.replans,
        }
    }
}

impl<P: Projection> Log<P> {
    /// `replans`: how many times [`Log::commit`] plans again after finding the projection
    /// behind the log (a conflict, or a newer event) before it gives up as contended.
    pub fn new(bus: TypedBus, projected: Projected<P>, replans: usize) -> Self {
        Log {
            bus,
            projected,
            replans,
        }
    }

    async fn ask<Q: WireMessage, R: WireMessage, E>(
        &self,
        subject: &Subject,
        request: &Q,
    ) -> Result<R, CommitError<E>> {
        Ok(self
            .bus
            .request(subject, request, LOG_TIMEOUT)
            .await?
            .message)
    }

    /// Appends as it is: what the log decided, or why it decided nothing.
    pub async fn append<E>(
        &self,
        request: &AppendRequest,
    ) -> Result<AppendOutcome, CommitError<E>> {
        match self.ask(&Subject::eventlog_append(), request).await? {
            AppendReply::Decided(outcome) => Ok(outcome),
            AppendReply::Rejected { kind, reason } => Err(CommitError::Rejected { kind, reason }),
            AppendReply::Unavailable { reason } => Err(CommitError::Unavailable(reason)),
        }
    }

    /// Waits until the projection has applied event `seq`.
    pub async fn wait_applied<E>(&self, seq: u64) -> Result<(), CommitError<E>> {
        if self.projected.wait_for(seq, APPLY_TIMEOUT).await {
            Ok(())
        } else {
            Err(CommitError::Unavailable(format!(
                "the projection did not apply event {seq} within {APPLY_TIMEOUT:?}"
            )))
        }
    }

    /// Waits until the projection holds version `version` of `stream`; false when the log has
    /// no such version (the projection is current).
    pub async fn wait_for_stream<E>(
        &self,
        stream: &str,
        version: u64,
    ) -> Result<bool, CommitError<E>> {
        let request = ReadStreamRequest {
            stream: stream.to_owned(),
            from_version: version,
            limit: 1,
        };
        match self.ask(&Subject::eventlog_read_stream(), &request).await? {
            ReadReply::Events { events, .. } => match events.first() {
                Some(event) => self.wait_applied(event.seq).await.map(|()| true),
                None => Ok(false),
            },
            ReadReply::Unavailable { reason } => Err(CommitError::Unavailable(reason)),
        }
    }

    /// Appends to `stream` what `plan` decides from the projection, at the stream version
    /// (`version` of the projection) the plan saw, and waits until the projection has applied
    /// it. When the plan appends nothing, the log is asked whether the stream moved on
    /// meanwhile. Finding the projection behind (that, or a conflict), it waits for it and
    /// plans again.
    ///
    /// The idempotency key is `key@version`: a re-sent request planned on the same version is
    /// the same append (the log answers the first outcome), one planned on a newer version is
    /// a new one, as it must be after a conflict (the log remembers conflicts too).
    pub async fn commit<R>(
        &self,
        stream: &str,
        key: &str,
        version: impl Fn(&P) -> u64,
        mut plan: impl FnMut(&P) -> Result<Vec<NewEvent>, R>,
    ) -> Result<(), CommitError<R>> {
        for _ in 0..=self.replans {
            let (version, events) = {
                let state = self.projected.read();
                (version(&state), plan(&state).map_err(CommitError::Refused)?)
            };
            if events.is_empty() {
                if self.wait_for_stream(stream, version + 1).await? {
                    continue;
                }
                return Ok(());
            }
            let request = AppendRequest {
                stream: stream.to_owned(),
                expected_version: match version {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                },
                idempotency_key: format!("{key}@{version}"),
                events,
            };
            match self.append(&request).await? {
                AppendOutcome::Appended { last_seq, .. } => {
                    return self.wait_applied(last_seq).await;
                }
                AppendOutcome::Conflict { current_version } => {
                    self.wait_for_stream(stream, current_version).await?;
                }
            }
        }
        Err(CommitError::Contended {
            stream: stream.to_owned(),
        })
    }
}
