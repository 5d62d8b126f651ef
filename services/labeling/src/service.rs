//! The async shell: commands and queries from the bus, plans from the index, appends to the log,
//! replies once the projection has applied what was appended (read-your-writes); and the
//! writer of derived output (effective labels, labels label maps create).

use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{BusError, TypedBus};
use bulkhead_runtime::projection::Projected;
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, ExpectedVersion, NewEvent, ReadReply, ReadRequest,
    ReadStreamRequest,
};
use bulkhead_schema::messages::labeling::{
    LabelingCommand, LabelingCommandReply, LabelingEvent, LabelingItems, LabelingQuery,
    LabelingRejection, LabelingReply,
};
use bulkhead_schema::{Decoded, Subject, WireMessage};
use serde::Serialize;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::index::Index;
use crate::metrics::{self, COMMANDS, OUTPUT_APPENDS, QUERIES};
use crate::output::OutputLimits;
use crate::plan::{Answer, Fresh, Refusal, plan, plan_created_labels, rejection_kind};

/// How long a request to the event log may take.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an append may take to reach the projection before the caller is told to retry.
const APPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Plans made again after finding the projection behind the log. The configuration is one
/// stream, shared with the labels label maps create, so a command may meet a few others.
const REPLANS: usize = 3;
/// Requests of one subject handled at once; more wait in the subscription.
pub(crate) const REQUESTS_IN_FLIGHT: usize = 256;
/// A query's page is cut to this many encoded bytes, to fit one message with room to spare.
const MAX_PAGE_BYTES: usize = 512 * 1024;
/// Appends of one cluster's output sent one after the other before waiting for the projection.
const PIPELINED_APPENDS: usize = 8;
/// Labels label maps create, per append.
const CREATED_PER_APPEND: usize = 500;
/// How long the output writer waits for the log before trying again.
const RETRY: Duration = Duration::from_millis(500);
/// The queue group of the requests one replica takes for all.
pub(crate) const QUEUE_GROUP: &str = "labeling";

/// Why an append did not go through.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CommitError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("the event log cannot commit now: {0}")]
    Unavailable(String),
    #[error("the event log refused the append ({kind}): {reason}")]
    Rejected { kind: String, reason: String },
    #[error("the configuration changed while the request was handled; send it again")]
    Contended,
}

impl From<BusError> for CommitError {
    fn from(error: BusError) -> Self {
        CommitError::Unavailable(format!("{error} ({})", error.kind()))
    }
}

pub(crate) struct Service {
    bus: TypedBus,
    projected: Projected<Index>,
    /// One command at a time on this replica, so that uniqueness is checked against a
    /// projection that holds the previous command.
    commands: tokio::sync::Mutex<()>,
    limits: OutputLimits,
}

/// The log's form of a labeling event.
pub(crate) fn new_event(event: &LabelingEvent) -> NewEvent {
    NewEvent {
        event_type: LabelingEvent::EVENT_TYPE.into(),
        data: rmp_serde::to_vec_named(event).expect("labeling events encode"),
    }
}

impl Service {
    pub(crate) fn new(bus: TypedBus, projected: Projected<Index>) -> Self {
        Service {
            bus,
            projected,
            commands: tokio::sync::Mutex::new(()),
            limits: OutputLimits::default(),
        }
    }

    // --- the event log ---------------------------------------------------------------------

    async fn ask<Q: WireMessage, R: WireMessage>(
        &self,
        subject: &Subject,
        request: &Q,
    ) -> Result<R, CommitError> {
        Ok(self
            .bus
            .request(subject, request, LOG_TIMEOUT)
            .await?
            .message)
    }

    async fn append(&self, request: &AppendRequest) -> Result<AppendOutcome, CommitError> {
        match self.ask(&Subject::eventlog_append(), request).await? {
            AppendReply::Decided(outcome) => Ok(outcome),
            AppendReply::Rejected { kind, reason } => Err(CommitError::Rejected { kind, reason }),
            AppendReply::Unavailable { reason } => Err(CommitError::Unavailable(reason)),
        }
    }

    async fn wait_applied(&self, seq: u64) -> Result<(), CommitError> {
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
    async fn wait_for_stream(&self, stream: &str, version: u64) -> Result<bool, CommitError> {
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

    /// Waits until the projection has applied everything the log held when this was called;
    /// false on shutdown.
    pub(crate) async fn catch_up(&self, stop: &CancellationToken) -> bool {
        while !stop.is_cancelled() {
            let request = ReadRequest {
                from_seq: self.projected.applied_seq() + 1,
                limit: 1,
            };
            let head = match self.ask(&Subject::eventlog_read(), &request).await {
                Ok(ReadReply::Events { last_seq, .. }) => Some(last_seq),
                Ok(ReadReply::Unavailable { .. }) | Err(_) => None,
            };
            if let Some(head) = head
                && self.projected.wait_for(head, APPLY_TIMEOUT).await
            {
                return true;
            }
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
        false
    }

    /// Appends to the configuration stream what `plan` decides from the projection, at the
    /// version the plan saw, and waits until the projection has applied it. When the plan
    /// appends nothing, the log is asked whether the stream moved on meanwhile. Finding the
    /// projection behind (that, or a conflict), it waits for it and plans again.
    ///
    /// The idempotency key is `key@version`: a re-sent request planned on the same version is
    /// the same append, one planned on a newer version a new one.
    async fn commit(
        &self,
        key: &str,
        mut plan: impl FnMut(&Index) -> Result<Vec<LabelingEvent>, Refusal>,
    ) -> Result<(), CommitError> {
        let stream = LabelingEvent::CONFIG_STREAM;
        for _ in 0..=REPLANS {
            let (version, events) = {
                let index = self.projected.read();
                (index.config_version, plan(&index)?)
            };
            if events.is_empty() {
                if self.wait_for_stream(stream, version + 1).await? {
                    continue;
                }
                return Ok(());
            }
            let request = AppendRequest {
                stream: stream.into(),
                expected_version: match version {
                    0 => ExpectedVersion::NoStream,
                    v => ExpectedVersion::Exact(v),
                },
                idempotency_key: format!("{key}@{version}"),
                events: events.iter().map(new_event).collect(),
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
        Err(CommitError::Contended)
    }

    // --- the api -----------------------------------------------------------------------------

    pub(crate) async fn command(
        self: Arc<Self>,
        received: Decoded<LabelingCommand>,
    ) -> LabelingCommandReply {
        let _one_at_a_time = self.commands.lock().await;
        let command = received.message;
        let key = format!("labeling/command/{}", received.envelope.id);
        // Drawn here, not in the planner: the planner is pure, and a retried command gets the
        // projection's answer (the profile exists) rather than a second key.
        let pairing_key = hex::encode(rand::random::<[u8; 32]>());
        let fresh = Fresh {
            profile_id: uuid::Uuid::new_v4().to_string(),
            pairing_key_sha256: hex::encode(Sha256::digest(pairing_key.as_bytes())),
        };
        let mut answer = None;
        let committed = self
            .commit(&key, |index| {
                let planned = plan(index, &command, &fresh)?;
                answer = Some(planned.answer);
                Ok(planned.events)
            })
            .await;
        let reply = match committed {
            Ok(()) => {
                let item = match answer.expect("a committed plan has an answer") {
                    Answer::Gone(item) => Some(*item),
                    Answer::Show(target) => self.projected.read().item(&target),
                };
                match item {
                    Some(item) => LabelingCommandReply::Done {
                        item,
                        pairing_key: matches!(command, LabelingCommand::CreateProfile { .. })
                            .then_some(pairing_key),
                    },
                    None => LabelingCommandReply::Rejected {
                        kind: LabelingRejection::NotFound,
                        reason: "it was deleted meanwhile".into(),
                    },
                }
            }
            Err(CommitError::Refused(refusal)) => LabelingCommandReply::Rejected {
                kind: refusal.rejection,
                reason: refusal.reason,
            },
            Err(CommitError::Contended) => LabelingCommandReply::Rejected {
                kind: LabelingRejection::Conflict,
                reason: CommitError::Contended.to_string(),
            },
            Err(error) => {
                tracing::warn!(%error, "labeling command not committed");
                LabelingCommandReply::Unavailable {
                    reason: error.to_string(),
                }
            }
        };
        let outcome = match &reply {
            LabelingCommandReply::Done { .. } => "done",
            LabelingCommandReply::Rejected { kind, reason } => {
                let kind = rejection_kind(*kind);
                tracing::info!(kind, reason, "labeling command rejected");
                kind
            }
            LabelingCommandReply::Unavailable { .. } => "unavailable",
        };
        metrics::count(&COMMANDS, &[outcome]);
        reply
    }

    pub(crate) async fn query(self: Arc<Self>, received: Decoded<LabelingQuery>) -> LabelingReply {
        let answer = self.projected.read().query(&received.message);
        match answer {
            Ok(mut page) => {
                metrics::count(&QUERIES, &["page"]);
                fit_page(&mut page.items);
                LabelingReply::Page(page)
            }
            Err(refusal) => {
                metrics::count(&QUERIES, &[refusal.kind()]);
                tracing::debug!(
                    kind = refusal.kind(),
                    reason = refusal.reason,
                    "labeling query rejected"
                );
                LabelingReply::Rejected {
                    kind: refusal.rejection,
                    reason: refusal.reason,
                }
            }
        }
    }

    // --- derived output ------------------------------------------------------------------------

    /// Writes the projection's derived output to the log until `stop`: labels label maps
    /// create, then each cluster's queued effective labels, one append at a time per cluster.
    /// Every replica runs this; the log takes each version of a stream once.
    pub(crate) async fn write_output(&self, stop: &CancellationToken) {
        while !stop.is_cancelled() {
            let seen = self.projected.applied_seq();
            let progressed = match self.write_once().await {
                Ok(progressed) => progressed,
                Err(error) => {
                    tracing::warn!(%error, "cannot write labeling output; retrying");
                    false
                }
            };
            if progressed {
                continue;
            }
            let wait = if self.has_output() {
                RETRY
            } else {
                Duration::from_secs(1)
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = self.projected.wait_for(seen + 1, wait) => {}
            }
        }
    }

    fn has_output(&self) -> bool {
        let index = self.projected.read();
        !index.clusters_with_output().is_empty() || !index.labels_to_create(1).is_empty()
    }

    /// One round: true when something was appended.
    async fn write_once(&self) -> Result<bool, CommitError> {
        let mut progressed = false;
        if !self.projected.read().labels_to_create(1).is_empty() {
            let created = self
                .commit("labeling/created", |index| {
                    Ok(plan_created_labels(index, CREATED_PER_APPEND))
                })
                .await;
            let outcome = if created.is_ok() {
                "appended"
            } else {
                "failed"
            };
            metrics::count(&OUTPUT_APPENDS, &["created_labels", outcome]);
            created?;
            progressed = true;
        }
        let clusters: Vec<Vec<AppendRequest>> = {
            let index = self.projected.read();
            index
                .clusters_with_output()
                .iter()
                .map(|cluster| index.next_outputs(cluster, self.limits, PIPELINED_APPENDS))
                .collect()
        };
        for appends in clusters {
            let mut last_seq = None;
            for request in appends {
                match self.append(&request).await {
                    Ok(AppendOutcome::Appended { last_seq: seq, .. }) => {
                        metrics::count(&OUTPUT_APPENDS, &["effective_labels", "appended"]);
                        last_seq = Some(seq);
                    }
                    Ok(AppendOutcome::Conflict { current_version }) => {
                        // Another replica wrote this version: once applied, its entries are
                        // gone; what this one chained after it is void.
                        metrics::count(&OUTPUT_APPENDS, &["effective_labels", "conflict"]);
                        self.wait_for_stream(&request.stream, current_version)
                            .await?;
                        progressed = true;
                        break;
                    }
                    Err(error) => {
                        metrics::count(&OUTPUT_APPENDS, &["effective_labels", "failed"]);
                        return Err(error);
                    }
                }
            }
            if let Some(seq) = last_seq {
                self.wait_applied(seq).await?;
                progressed = true;
            }
        }
        Ok(progressed)
    }
}

/// Cuts a page so that its reply fits one message; it keeps at least one entry.
fn fit_page(items: &mut LabelingItems) {
    fn fit<T: Serialize>(items: &mut Vec<T>) {
        let mut bytes = 0;
        let fitting = items
            .iter()
            .take_while(|item| {
                bytes += rmp_serde::to_vec_named(item).map_or(MAX_PAGE_BYTES, |b| b.len());
                bytes <= MAX_PAGE_BYTES
            })
            .count();
        items.truncate(fitting.max(1));
    }
    match items {
        LabelingItems::LabelKeys(items) => fit(items),
        LabelingItems::Labels(items) => fit(items),
        LabelingItems::LabelGroups(items) => fit(items),
        LabelingItems::Profiles(items) => fit(items),
        LabelingItems::Templates(items) => fit(items),
        LabelingItems::LabelMaps(items) => fit(items),
        LabelingItems::EffectiveLabels(items) => fit(items),
    }
}
