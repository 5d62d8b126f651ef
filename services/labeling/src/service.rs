//! The async shell: commands and queries from the bus, plans from the index, appends to the log,
//! replies once the projection has applied what was appended (read-your-writes); and the
//! writer of derived output (effective labels, labels label maps create).

use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{self, TypedBus};
use bulkhead_runtime::commit::{self, Log};
use bulkhead_runtime::projection::Projected;
use bulkhead_schema::Decoded;
use bulkhead_schema::messages::eventlog::{AppendOutcome, NewEvent};
use bulkhead_schema::messages::labeling::{
    LabelingCommand, LabelingCommandReply, LabelingEvent, LabelingItems, LabelingQuery,
    LabelingRejection, LabelingReply,
};
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use crate::index::Index;
use crate::metrics::{self, COMMANDS, OUTPUT_APPENDS, QUERIES};
use crate::output::OutputLimits;
use crate::plan::{Answer, Fresh, Refusal, plan, plan_created_labels, rejection_kind};

/// Plans made again after finding the projection behind the log. The configuration is one
/// stream, shared with the labels label maps create, so a command may meet a few others.
const REPLANS: usize = 3;
/// Requests of one subject handled at once; more wait in the subscription.
pub(crate) const REQUESTS_IN_FLIGHT: usize = 256;
/// The size of the first append of a cluster's output; each next one may be 4 times the one
/// before, up to the log's limit.
const FIRST_APPEND_BYTES: usize = 64 * 1024;
/// Labels label maps create, per append.
const CREATED_PER_APPEND: usize = 500;
/// How long the output writer waits for the log before trying again.
const RETRY: Duration = Duration::from_millis(500);
/// The queue group of the requests one replica takes for all.
pub(crate) const QUEUE_GROUP: &str = "labeling";

/// Why an append did not go through.
pub(crate) type CommitError = commit::CommitError<Refusal>;

impl From<Refusal> for CommitError {
    fn from(refusal: Refusal) -> Self {
        CommitError::Refused(refusal)
    }
}

pub(crate) struct Service {
    log: Log<Index>,
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
            log: Log::new(bus, projected.clone(), REPLANS),
            projected,
            commands: tokio::sync::Mutex::new(()),
            limits: OutputLimits::default(),
        }
    }

    // --- the event log ---------------------------------------------------------------------

    async fn wait_applied(&self, seq: u64) -> Result<(), CommitError> {
        self.log.wait_applied(seq).await
    }

    async fn wait_for_stream(&self, stream: &str, version: u64) -> Result<bool, CommitError> {
        self.log.wait_for_stream(stream, version).await
    }

    /// Appends to the configuration stream what `plan` decides from the projection, at the
    /// version the plan saw, and waits until the projection has applied it (see
    /// [`Log::commit`]).
    async fn commit(
        &self,
        key: &str,
        mut plan: impl FnMut(&Index) -> Result<Vec<LabelingEvent>, Refusal>,
    ) -> Result<(), CommitError> {
        let version = |index: &Index| index.config_version;
        let plan = |index: &Index| Ok(plan(index)?.iter().map(new_event).collect());
        self.log
            .commit(LabelingEvent::CONFIG_STREAM, key, version, plan)
            .await
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
            Err(contended @ CommitError::Contended { .. }) => LabelingCommandReply::Rejected {
                kind: LabelingRejection::Conflict,
                reason: contended.to_string(),
            },
            Err(error) => {
                tracing::warn!(%error, kind = error.kind(), "labeling command not committed");
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
        let clusters = self.projected.read().clusters_with_output();
        for cluster_id in clusters {
            progressed |= self.write_cluster(&cluster_id).await?;
        }
        Ok(progressed)
    }

    /// Writes what a cluster's queue holds, one append after the other: each is sent as soon
    /// as it is cut, and the next is cut while it is in flight. Then it waits for the
    /// projection to apply the last, so that the next round starts from what the log has.
    ///
    /// Not waiting for the projection between appends is safe: each goes at the stream version
    /// the one before it leads to, keyed by that version and the last position it covers, and
    /// covers the queue's entries after the one before it. An entry changed meanwhile moves to
    /// a later position (an input event's entries come after every earlier one's), so it is
    /// written again with its new labels; one written before the change is not lost. Of
    /// several replicas writing, one append per version gets in: a replica that cut the same
    /// run gets that outcome (the same key), one that cut another a conflict, and then stops
    /// its chain and starts again from the projection once it holds the other's append.
    async fn write_cluster(&self, cluster_id: &str) -> Result<bool, CommitError> {
        // The first appends are small, so that the first entities are out soon and the next
        // append is cut while they are in flight; later ones take the log's size.
        let limits = |sent: u32| OutputLimits {
            append_bytes: FIRST_APPEND_BYTES
                .saturating_mul(4usize.saturating_pow(sent))
                .min(self.limits.append_bytes),
            ..self.limits
        };
        let mut next = self
            .projected
            .read()
            .next_output(cluster_id, limits(0), None);
        let mut last_seq = None;
        let mut progressed = false;
        let mut sent = 0;
        while let Some((request, chain)) = next.take() {
            let log = self.log.clone();
            let stream = request.stream.clone();
            let sending = tokio::spawn(async move { log.append(&request).await });
            sent += 1;
            // The next is cut while this one is in flight.
            let following =
                self.projected
                    .read()
                    .next_output(cluster_id, limits(sent), Some(chain));
            let outcome = sending.await.unwrap_or_else(|error| {
                Err(CommitError::Unavailable(format!(
                    "the append failed: {error}"
                )))
            });
            match outcome {
                Ok(AppendOutcome::Appended { last_seq: seq, .. }) => {
                    metrics::count(&OUTPUT_APPENDS, &["effective_labels", "appended"]);
                    last_seq = Some(seq);
                    next = following;
                }
                Ok(AppendOutcome::Conflict { current_version }) => {
                    // Another replica wrote this version: once applied, its entries are
                    // gone; what this one cut after it is void.
                    metrics::count(&OUTPUT_APPENDS, &["effective_labels", "conflict"]);
                    self.wait_for_stream(&stream, current_version).await?;
                    progressed = true;
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
        Ok(progressed)
    }
}

/// Cuts a page so that its reply fits one message; it keeps at least one entry.
fn fit_page(items: &mut LabelingItems) {
    match items {
        LabelingItems::LabelKeys(items) => bus::fit_page(items),
        LabelingItems::Labels(items) => bus::fit_page(items),
        LabelingItems::LabelGroups(items) => bus::fit_page(items),
        LabelingItems::Profiles(items) => bus::fit_page(items),
        LabelingItems::Templates(items) => bus::fit_page(items),
        LabelingItems::LabelMaps(items) => bus::fit_page(items),
        LabelingItems::EffectiveLabels(items) => bus::fit_page(items),
    }
}
