//! Everything clusterlink asks inventory, over the bus: reports and digest pages are sent until
//! inventory answers them (at-least-once; a report keeps its id across retries, so inventory
//! applies it once), heartbeats are sent once per interval.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{BusError, TypedBus};
use bulkhead_schema::messages::inventory::{
    ClusterCredentials, ClusterHeartbeat, ClusterReport, DigestReply, DigestRequest, Observation,
    ReportAck, ResourceKind,
};
use bulkhead_schema::{Decoded, Subject, WireMessage};
use tokio::time::MissedTickBehavior;

use crate::config::{ClusterMode, ClusterlinkConfig, NetworkType};
use crate::metrics;
use crate::status::{Request, Status};

/// The first pause before a retry; it doubles up to the configured maximum.
const RETRY_MIN: Duration = Duration::from_millis(50);

/// What an answer from inventory means for the request.
enum Verdict<T> {
    Done(T),
    /// Wrong credentials, or a request inventory cannot read: nothing was applied, and the
    /// same request gets the same answer until someone fixes something.
    Rejected {
        kind: String,
        reason: String,
    },
    /// No answer, or inventory cannot serve it now: worth sending again soon.
    Retry {
        label: &'static str,
        reason: String,
    },
}

trait Answer: WireMessage {
    type Output;

    fn verdict(self) -> Verdict<Self::Output>;
}

impl Answer for ReportAck {
    type Output = u32;

    fn verdict(self) -> Verdict<u32> {
        match self {
            ReportAck::Accepted { observations } => Verdict::Done(observations),
            ReportAck::Rejected { kind, reason } => Verdict::Rejected { kind, reason },
            ReportAck::Unavailable { reason } => Verdict::Retry {
                label: "unavailable",
                reason,
            },
        }
    }
}

impl Answer for DigestReply {
    type Output = Vec<(String, String)>;

    fn verdict(self) -> Verdict<Self::Output> {
        match self {
            DigestReply::Page { entries } => Verdict::Done(entries),
            DigestReply::Rejected { kind, reason } => Verdict::Rejected { kind, reason },
        }
    }
}

fn judge<A: Answer>(answer: Result<Decoded<A>, BusError>) -> Verdict<A::Output> {
    match answer {
        Ok(reply) => reply.message.verdict(),
        // an answer this build cannot read: a refusal of the request as unreadable, or a newer
        // inventory's version; asking again soon would only get it again
        Err(error @ BusError::RequestRejected { .. }) => Verdict::Rejected {
            kind: error.kind().into(),
            reason: error.to_string(),
        },
        Err(BusError::Decode(error)) => Verdict::Rejected {
            kind: error.kind().into(),
            reason: format!("unreadable answer: {error}"),
        },
        Err(error) => Verdict::Retry {
            label: error.kind(),
            reason: error.to_string(),
        },
    }
}

pub struct Uplink {
    bus: TypedBus,
    credentials: ClusterCredentials,
    report_subject: Subject,
    digest_subject: Subject,
    heartbeat_subject: Subject,
    timeout: Duration,
    retry_max: Duration,
    status: Status,
    verbosity: u8,
}

impl Uplink {
    pub fn new(
        bus: TypedBus,
        credentials: ClusterCredentials,
        config: &ClusterlinkConfig,
        status: Status,
    ) -> Self {
        let id = &credentials.cluster_id;
        Uplink {
            report_subject: Subject::inventory_report(id),
            digest_subject: Subject::inventory_digest(id),
            heartbeat_subject: Subject::inventory_cluster_heartbeat(id),
            bus,
            credentials,
            timeout: config.request_timeout(),
            retry_max: config.retry_max(),
            status,
            verbosity: config.verbosity,
        }
    }

    /// Sends `message` until inventory answers it; a rejection is retried slowly, as the
    /// cluster's credentials may be fixed on inventory's side.
    async fn call<Q: WireMessage, A: Answer>(
        &self,
        request: Request,
        subject: &Subject,
        message: &Q,
    ) -> A::Output {
        let mut backoff = RETRY_MIN;
        loop {
            let answer = self
                .bus
                .request::<Q, A>(subject, message, self.timeout)
                .await;
            let pause = match judge(answer) {
                Verdict::Done(output) => {
                    self.status.accepted(request);
                    return output;
                }
                Verdict::Rejected { kind, reason } => {
                    self.rejected(request, &kind, &reason);
                    self.retry_max
                }
                Verdict::Retry { label, reason } => {
                    metrics::retried(request, label);
                    tracing::warn!(%request, %reason, "inventory did not take it; sending again");
                    backoff
                }
            };
            tokio::time::sleep(pause).await;
            backoff = (backoff * 2).min(self.retry_max);
        }
    }

    fn rejected(&self, request: Request, kind: &str, reason: &str) {
        metrics::rejected(request, kind);
        tracing::error!(
            cluster_id = %self.credentials.cluster_id, %request, kind, reason,
            "inventory rejected clusterlink's credentials or request"
        );
        self.status.rejected(
            request,
            format!("inventory rejected the {request} ({kind}): {reason}"),
        );
    }

    /// Sends one report of `observations` until inventory accepts it.
    pub async fn report(&self, observations: Vec<Observation>) {
        let report = ClusterReport {
            credentials: self.credentials.clone(),
            // time-ordered, so that inventory's idempotency keys sort in sending order
            report_id: uuid::Uuid::now_v7().to_string(),
            observations,
        };
        let accepted = self
            .call::<_, ReportAck>(Request::Report, &self.report_subject, &report)
            .await;
        metrics::sent(&report.observations);
        verbose!(
            self.verbosity >= 1,
            report_id = %report.report_id,
            observations = report.observations.len(),
            accepted,
            "report acknowledged"
        );
    }

    /// One page of what inventory holds of `kind`: `(uid, resource_version)` after `after_uid`.
    pub async fn digest(
        &self,
        kind: ResourceKind,
        after_uid: Option<String>,
        limit: u32,
    ) -> Vec<(String, String)> {
        let request = DigestRequest {
            credentials: self.credentials.clone(),
            kind,
            after_uid,
            limit,
        };
        self.call::<_, DigestReply>(Request::Digest, &self.digest_subject, &request)
            .await
    }

    /// A heartbeat every `interval`, with the Kubernetes version the API server reports now.
    /// Only a rejection matters: a lost heartbeat is made up by the next.
    pub async fn heartbeats(
        self: Arc<Self>,
        client: kube::Client,
        interval: Duration,
        cluster_mode: ClusterMode,
        network_type: NetworkType,
    ) {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut heartbeat = ClusterHeartbeat {
            credentials: self.credentials.clone(),
            clusterlink_version: env!("CARGO_PKG_VERSION").into(),
            kubernetes_version: String::new(),
            cluster_mode: cluster_mode.as_str().into(),
            network_type: network_type.as_str().into(),
        };
        loop {
            ticker.tick().await;
            match client.apiserver_version().await {
                Ok(info) => heartbeat.kubernetes_version = info.git_version,
                Err(error) => tracing::warn!(%error, "cannot read the Kubernetes version"),
            }
            let answer = self
                .bus
                .request::<_, ReportAck>(&self.heartbeat_subject, &heartbeat, self.timeout)
                .await;
            match judge(answer) {
                Verdict::Done(_) => self.status.accepted(Request::Heartbeat),
                Verdict::Rejected { kind, reason } => {
                    self.rejected(Request::Heartbeat, &kind, &reason)
                }
                Verdict::Retry { reason, .. } => {
                    tracing::debug!(%reason, "heartbeat not acknowledged")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use bulkhead_schema::{DecodeError, Envelope};

    use super::*;

    fn answered<A: Answer>(message: A) -> Verdict<A::Output> {
        judge(Ok(Decoded {
            envelope: Envelope::wrap(&message).unwrap(),
            message,
        }))
    }

    #[test]
    fn answers_and_failures_are_judged() {
        assert!(matches!(
            answered(ReportAck::Accepted { observations: 3 }),
            Verdict::Done(3)
        ));
        assert!(matches!(
            answered(ReportAck::Unavailable {
                reason: "no leader".into()
            }),
            Verdict::Retry {
                label: "unavailable",
                ..
            }
        ));
        assert!(matches!(
            answered(DigestReply::Rejected { kind: "unauthorized".into(), reason: "token".into() }),
            Verdict::Rejected { kind, .. } if kind == "unauthorized"
        ));
        let timeout = judge::<ReportAck>(Err(BusError::Timeout {
            subject: "s".into(),
            timeout: Duration::from_secs(1),
        }));
        assert!(matches!(
            timeout,
            Verdict::Retry {
                label: "timeout",
                ..
            }
        ));
        let refused = judge::<ReportAck>(Err(BusError::RequestRejected {
            kind: "wrong_type".into(),
            reason: "expected an inventory.ClusterReport".into(),
        }));
        assert!(matches!(&refused, Verdict::Rejected { kind, .. } if kind == "request_rejected"));
        let refused = judge::<ReportAck>(Err(BusError::Decode(DecodeError::WrongType {
            expected: ReportAck::TYPE,
            found: "common.RequestRejected".into(),
        })));
        assert!(
            matches!(&refused, Verdict::Rejected { kind, reason } if kind == "wrong_type" && reason.contains("RequestRejected")),
            "an answer that cannot be read is not worth a quick retry"
        );
    }
}
