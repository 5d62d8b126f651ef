//! The async shell: requests from the bus, decisions from the index, appends to the log, and
//! replies only once the projection has applied what was appended (read-your-writes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bulkhead_runtime::bus::{self, TypedBus};
use bulkhead_runtime::commit::{self, Log};
use bulkhead_runtime::now_ms;
use bulkhead_runtime::projection::Projected;
use bulkhead_schema::Decoded;
use bulkhead_schema::messages::eventlog::{AppendRequest, ExpectedVersion, NewEvent};
use bulkhead_schema::messages::inventory::{
    ClusterCommand, ClusterCommandReply, ClusterCredentials, ClusterHeartbeat, ClusterReport,
    ClusterView, DigestReply, DigestRequest, InventoryEvent, InventoryItems, InventoryQuery,
    InventoryRejection, InventoryReply, ReportAck,
};

use crate::index::{AuthError, Index, token_sha256};
use crate::metrics::{self, AUTH_FAILURES, OBSERVATIONS, REPORTS};
use crate::presence::Presences;
use crate::report::{self, AppendLimits, new_event};
use crate::views::{Presence, Refusal};

/// Plans made again after finding the projection behind the log (a conflict, or a newer event).
const REPLANS: usize = 1;
/// Requests of one subject handled at once; more wait in the subscription.
pub(crate) const REQUESTS_IN_FLIGHT: usize = 1024;
/// Report ids become part of idempotency keys, which the log caps at 256 bytes.
const MAX_REPORT_ID_BYTES: usize = 128;
/// Longest cluster name, in characters.
const MAX_NAME_CHARS: usize = 255;
const MAX_DESCRIPTION_CHARS: usize = 4096;
/// At most one `ClusterAuthFailed` per claimed cluster id in this time: a caller retrying a
/// wrong token in a loop is counted and logged every time, but cannot grow the event log.
const AUDIT_INTERVAL: Duration = Duration::from_secs(60);
/// Claimed cluster ids remembered for audit throttling; beyond, failures are only counted.
const MAX_AUDITED: usize = 10_000;
/// The queue group of the requests one replica takes for all.
pub(crate) const QUEUE_GROUP: &str = "inventory";

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
    presences: Mutex<Presences>,
    /// When each claimed cluster id last got an audit event.
    audited: Mutex<HashMap<String, Instant>>,
    /// One command at a time on this replica, so that a name's uniqueness is checked against a
    /// projection that holds the previous command.
    commands: tokio::sync::Mutex<()>,
    limits: AppendLimits,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Plain data, consistent after every statement: usable even if a holder panicked.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Service {
    pub(crate) fn new(bus: TypedBus, projected: Projected<Index>, online_period: Duration) -> Self {
        Service {
            log: Log::new(bus, projected.clone(), REPLANS),
            projected,
            presences: Mutex::new(Presences::new(online_period)),
            audited: Mutex::new(HashMap::new()),
            commands: tokio::sync::Mutex::new(()),
            limits: AppendLimits::default(),
        }
    }

    // --- the event log ---------------------------------------------------------------------

    /// Appends to the cluster's stream what `plan` decides from the projection, at the stream
    /// version the plan saw, and waits until the projection has applied it (see
    /// [`Log::commit`]).
    async fn commit(
        &self,
        cluster_id: &str,
        key: &str,
        plan: impl FnMut(&Index) -> Result<Vec<NewEvent>, Refusal>,
    ) -> Result<(), CommitError> {
        let stream = InventoryEvent::stream(cluster_id);
        let version = |index: &Index| index.stream_version(cluster_id);
        self.log.commit(&stream, key, version, plan).await
    }

    fn presence(&self, cluster_id: &str) -> Presence {
        lock(&self.presences).presence(cluster_id, Instant::now())
    }

    fn cluster_view(&self, cluster_id: &str) -> Option<ClusterView> {
        let presence = self.presence(cluster_id);
        self.projected.read().cluster_view(cluster_id, presence)
    }

    // --- clusterlink -----------------------------------------------------------------------

    /// Checks a clusterlink's credentials; a failure is counted, logged and audited, and
    /// nothing else happens. The cluster id a request acts on is the verified one.
    async fn authenticate(
        &self,
        credentials: &ClusterCredentials,
        request_id: &str,
    ) -> Result<(), AuthError> {
        let verified = self.projected.read().verify(credentials);
        let Err(error) = verified else {
            return Ok(());
        };
        AUTH_FAILURES.with_label_values(&[error.kind()]).inc();
        tracing::warn!(cluster_id = %credentials.cluster_id, reason = error.kind(), "clusterlink credentials refused");
        if self.should_audit(&credentials.cluster_id) {
            let claimed: String = credentials.cluster_id.chars().take(64).collect();
            let event = InventoryEvent::ClusterAuthFailed {
                cluster_id: claimed,
                reason: error.kind().into(),
                at_ms: now_ms(),
            };
            let request = AppendRequest {
                stream: InventoryEvent::AUDIT_STREAM.into(),
                expected_version: ExpectedVersion::Any,
                idempotency_key: format!("auth/{request_id}"),
                events: vec![new_event(&event)],
            };
            if let Err(audit_error) = self.log.append::<Refusal>(&request).await {
                tracing::warn!(%audit_error, "cannot append the audit event");
            }
        }
        Err(error)
    }

    fn should_audit(&self, claimed: &str) -> bool {
        let now = Instant::now();
        let mut audited = lock(&self.audited);
        if audited.len() >= MAX_AUDITED {
            audited.retain(|_, at| now.duration_since(*at) < AUDIT_INTERVAL);
        }
        match audited.get(claimed) {
            Some(at) if now.duration_since(*at) < AUDIT_INTERVAL => false,
            _ if audited.len() >= MAX_AUDITED => false,
            _ => {
                audited.insert(claimed.to_owned(), now);
                true
            }
        }
    }

    pub(crate) async fn report(self: Arc<Self>, received: Decoded<ClusterReport>) -> ReportAck {
        let report = received.message;
        if let Err(error) = self
            .authenticate(&report.credentials, &received.envelope.id)
            .await
        {
            metrics::count(&REPORTS, "rejected", 1);
            return ReportAck::Rejected {
                kind: error.kind().into(),
                reason: error.to_string(),
            };
        }
        let cluster_id = &report.credentials.cluster_id;
        let ack = match self.take_report(cluster_id, &report).await {
            Ok(observations) => ReportAck::Accepted { observations },
            Err(CommitError::Refused(refusal)) => ReportAck::Rejected {
                kind: refusal.kind().into(),
                reason: refusal.reason,
            },
            Err(CommitError::Rejected { kind, reason }) => ReportAck::Rejected { kind, reason },
            Err(error) => {
                tracing::warn!(cluster_id, %error, kind = error.kind(), "report not committed");
                ReportAck::Unavailable {
                    reason: error.to_string(),
                }
            }
        };
        let outcome = match &ack {
            ReportAck::Accepted { .. } => "accepted",
            ReportAck::Rejected { .. } => "rejected",
            ReportAck::Unavailable { .. } => "unavailable",
        };
        metrics::count(&REPORTS, outcome, 1);
        lock(&self.presences).report(cluster_id, outcome == "accepted");
        ack
    }

    /// Commits a verified report, piece by piece; the number of observations now held.
    async fn take_report(
        &self,
        cluster_id: &str,
        report: &ClusterReport,
    ) -> Result<u32, CommitError> {
        if report.report_id.is_empty() || report.report_id.len() > MAX_REPORT_ID_BYTES {
            return Err(Refusal::invalid(format!(
                "a report id has 1 to {MAX_REPORT_ID_BYTES} bytes"
            ))
            .into());
        }
        let encoded = report::encode(cluster_id, &report.observations, &self.limits)
            .map_err(|reason| Refusal::invalid(format!("malformed report: {reason}")))?;
        metrics::count(&OBSERVATIONS, "too_large", encoded.too_large as u64);
        for (i, chunk) in report::chunks(&encoded.pending, &self.limits)
            .into_iter()
            .enumerate()
        {
            let key = format!("report/{cluster_id}/{}/{i}", report.report_id);
            let mut appended = 0;
            self.commit(cluster_id, &key, |index| {
                if index.stream_version(cluster_id) == 0 {
                    return Err(Refusal::not_found(cluster_id));
                }
                let events = report::changes(index, cluster_id, chunk);
                appended = events.len();
                Ok(events)
            })
            .await?;
            metrics::count(&OBSERVATIONS, "appended", appended as u64);
            metrics::count(&OBSERVATIONS, "unchanged", (chunk.len() - appended) as u64);
        }
        Ok(encoded.pending.len() as u32)
    }

    pub(crate) async fn heartbeat(
        self: Arc<Self>,
        received: Decoded<ClusterHeartbeat>,
    ) -> ReportAck {
        let heartbeat = received.message;
        if let Err(error) = self
            .authenticate(&heartbeat.credentials, &received.envelope.id)
            .await
        {
            return ReportAck::Rejected {
                kind: error.kind().into(),
                reason: error.to_string(),
            };
        }
        let cluster_id = &heartbeat.credentials.cluster_id;
        let reported = [
            heartbeat.clusterlink_version.as_str(),
            &heartbeat.kubernetes_version,
            &heartbeat.cluster_mode,
            &heartbeat.network_type,
        ];
        let came_online = lock(&self.presences).heartbeat(cluster_id, Instant::now());
        let changed = self.projected.read().connection(cluster_id) != Some(reported);
        if !came_online && !changed {
            return ReportAck::Accepted { observations: 0 };
        }
        let event = new_event(&InventoryEvent::ClusterConnected {
            cluster_id: cluster_id.clone(),
            clusterlink_version: heartbeat.clusterlink_version.clone(),
            kubernetes_version: heartbeat.kubernetes_version.clone(),
            cluster_mode: heartbeat.cluster_mode.clone(),
            network_type: heartbeat.network_type.clone(),
            at_ms: now_ms(),
        });
        let key = format!("connected/{cluster_id}/{}", received.envelope.id);
        match self
            .commit(cluster_id, &key, |_| Ok(vec![event.clone()]))
            .await
        {
            Ok(()) => {
                lock(&self.presences).connection_logged(cluster_id);
                ReportAck::Accepted { observations: 0 }
            }
            Err(error) => {
                tracing::warn!(cluster_id, %error, "cannot log the connection");
                ReportAck::Unavailable {
                    reason: error.to_string(),
                }
            }
        }
    }

    pub(crate) async fn digest(self: Arc<Self>, received: Decoded<DigestRequest>) -> DigestReply {
        let request = received.message;
        if let Err(error) = self
            .authenticate(&request.credentials, &received.envelope.id)
            .await
        {
            return DigestReply::Rejected {
                kind: error.kind().into(),
                reason: error.to_string(),
            };
        }
        if request.limit == 0 || request.limit > DigestRequest::MAX_LIMIT {
            return DigestReply::Rejected {
                kind: "invalid".into(),
                reason: format!("limit must be between 1 and {}", DigestRequest::MAX_LIMIT),
            };
        }
        // A digest behind the log is harmless: clusterlink re-sends what looks missing or stale,
        // and re-sent observations that change nothing are not appended.
        let entries = self.projected.read().digest(
            &request.credentials.cluster_id,
            request.kind,
            request.after_uid.as_deref(),
            request.limit as usize,
        );
        DigestReply::Page { entries }
    }

    // --- the api -----------------------------------------------------------------------------

    pub(crate) async fn command(
        self: Arc<Self>,
        received: Decoded<ClusterCommand>,
    ) -> ClusterCommandReply {
        let _one_at_a_time = self.commands.lock().await;
        let key = format!("command/{}", received.envelope.id);
        let done = match received.message {
            ClusterCommand::Create { name, description } => {
                self.create(&key, name, description).await
            }
            ClusterCommand::Update {
                cluster_id,
                name,
                description,
            } => self.update(&key, &cluster_id, name, description).await,
            ClusterCommand::Delete { cluster_id } => self.delete(&key, &cluster_id).await,
        };
        match done {
            Ok(reply) => reply,
            Err(CommitError::Refused(refusal)) => ClusterCommandReply::Rejected {
                kind: refusal.rejection,
                reason: refusal.reason,
            },
            Err(contended @ CommitError::Contended { .. }) => ClusterCommandReply::Rejected {
                kind: InventoryRejection::Conflict,
                reason: contended.to_string(),
            },
            Err(error) => {
                tracing::warn!(%error, kind = error.kind(), "cluster command not committed");
                ClusterCommandReply::Unavailable {
                    reason: error.to_string(),
                }
            }
        }
    }

    async fn create(
        &self,
        key: &str,
        name: String,
        description: String,
    ) -> Result<ClusterCommandReply, CommitError> {
        let name = valid_name(&name)?;
        valid_description(&description)?;
        let cluster_id = uuid::Uuid::new_v4().to_string();
        let token = format!("bct_{}", hex::encode(rand::random::<[u8; 32]>()));
        let event = new_event(&InventoryEvent::ClusterCreated {
            cluster_id: cluster_id.clone(),
            name: name.clone(),
            description,
            token_sha256: token_sha256(&token),
            created_at_ms: now_ms(),
        });
        self.commit(&cluster_id, key, |index| {
            if index.name_taken(&name, None) {
                return Err(name_taken(&name));
            }
            Ok(vec![event.clone()])
        })
        .await?;
        Ok(ClusterCommandReply::Done {
            cluster: self.committed_view(&cluster_id)?,
            token: Some(token),
        })
    }

    async fn update(
        &self,
        key: &str,
        cluster_id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<ClusterCommandReply, CommitError> {
        let name = name.as_deref().map(valid_name).transpose()?;
        if let Some(description) = &description {
            valid_description(description)?;
        }
        self.commit(cluster_id, key, |index| {
            let (current_name, current_description) = index
                .cluster_names(cluster_id)
                .ok_or_else(|| Refusal::not_found(cluster_id))?;
            let name = name.as_deref().unwrap_or(current_name);
            let description = description.as_deref().unwrap_or(current_description);
            if index.name_taken(name, Some(cluster_id)) {
                return Err(name_taken(name));
            }
            if (name, description) == (current_name, current_description) {
                return Ok(Vec::new());
            }
            Ok(vec![new_event(&InventoryEvent::ClusterUpdated {
                cluster_id: cluster_id.to_owned(),
                name: name.to_owned(),
                description: description.to_owned(),
            })])
        })
        .await?;
        Ok(ClusterCommandReply::Done {
            cluster: self.committed_view(cluster_id)?,
            token: None,
        })
    }

    async fn delete(
        &self,
        key: &str,
        cluster_id: &str,
    ) -> Result<ClusterCommandReply, CommitError> {
        let before = self
            .cluster_view(cluster_id)
            .ok_or_else(|| Refusal::not_found(cluster_id))?;
        self.commit(cluster_id, key, |index| {
            index
                .cluster_names(cluster_id)
                .ok_or_else(|| Refusal::not_found(cluster_id))?;
            Ok(vec![new_event(&InventoryEvent::ClusterDeleted {
                cluster_id: cluster_id.to_owned(),
            })])
        })
        .await?;
        lock(&self.presences).forget(cluster_id);
        Ok(ClusterCommandReply::Done {
            cluster: before,
            token: None,
        })
    }

    /// The view of a cluster a command just committed (deleted meanwhile: not found).
    fn committed_view(&self, cluster_id: &str) -> Result<ClusterView, Refusal> {
        self.cluster_view(cluster_id)
            .ok_or_else(|| Refusal::not_found(cluster_id))
    }

    pub(crate) async fn query(
        self: Arc<Self>,
        received: Decoded<InventoryQuery>,
    ) -> InventoryReply {
        let now = Instant::now();
        let answer = {
            let presences = lock(&self.presences);
            let index = self.projected.read();
            index.query(&received.message, &|id| presences.presence(id, now))
        };
        match answer {
            Ok(mut page) => {
                fit_page(&mut page.items);
                InventoryReply::Page(page)
            }
            Err(refusal) => InventoryReply::Rejected {
                kind: refusal.rejection,
                reason: refusal.reason,
            },
        }
    }
}

fn valid_name(name: &str) -> Result<String, Refusal> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Refusal::invalid(format!(
            "a cluster name has 1 to {MAX_NAME_CHARS} characters, none of them control characters"
        )));
    }
    Ok(name.to_owned())
}

fn valid_description(description: &str) -> Result<(), Refusal> {
    if description.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(Refusal::invalid(format!(
            "a description has at most {MAX_DESCRIPTION_CHARS} characters"
        )));
    }
    Ok(())
}

fn name_taken(name: &str) -> Refusal {
    Refusal::conflict(format!("a container cluster named {name:?} exists already"))
}

/// Cuts a page so that its reply fits one message; it keeps at least one entry.
fn fit_page(items: &mut InventoryItems) {
    match items {
        InventoryItems::Clusters(items) => bus::fit_page(items),
        InventoryItems::HostWorkloads(items) => bus::fit_page(items),
        InventoryItems::PodWorkloads(items) => bus::fit_page(items),
        InventoryItems::KubeWorkloads(items) => bus::fit_page(items),
        InventoryItems::VirtualServices(items) => bus::fit_page(items),
        InventoryItems::Namespaces(items) => bus::fit_page(items),
    }
}
