//! clusterlink's health, from what its tasks report: Ready once inventory acknowledged the first
//! sync of every kind; Degraded while inventory rejects it (wrong id or token).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use bulkhead_runtime::health::Health;
use bulkhead_schema::messages::health::ServiceState;
use bulkhead_schema::messages::inventory::ResourceKind;

/// What clusterlink asks inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Request {
    Report,
    Digest,
    Heartbeat,
}

impl Request {
    pub fn label(self) -> &'static str {
        match self {
            Request::Report => "report",
            Request::Digest => "digest",
            Request::Heartbeat => "heartbeat",
        }
    }
}

impl fmt::Display for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug)]
struct Progress {
    unsynced: BTreeSet<ResourceKind>,
    /// The last rejection of each request, until one is accepted: reports and heartbeats carry
    /// the same credentials but are answered apart.
    rejections: BTreeMap<Request, String>,
}

impl Progress {
    fn health(&self) -> (ServiceState, Option<String>) {
        if !self.rejections.is_empty() {
            let reasons: Vec<&str> = self.rejections.values().map(String::as_str).collect();
            return (ServiceState::Degraded, Some(reasons.join("; ")));
        }
        if self.unsynced.is_empty() {
            return (ServiceState::Ready, None);
        }
        let kinds: Vec<&str> = self.unsynced.iter().map(|k| k.kube_kind()).collect();
        let detail = format!("first sync not acknowledged yet: {}", kinds.join(", "));
        (ServiceState::Starting, Some(detail))
    }
}

#[derive(Clone)]
pub struct Status {
    health: Health,
    progress: Arc<Mutex<Progress>>,
}

impl Status {
    pub fn new(health: Health) -> Self {
        let status = Status {
            health,
            progress: Arc::new(Mutex::new(Progress {
                unsynced: ResourceKind::ALL.into_iter().collect(),
                rejections: BTreeMap::new(),
            })),
        };
        status.update(|_| {});
        status
    }

    fn update(&self, change: impl FnOnce(&mut Progress)) {
        let mut progress = self.progress.lock().expect("status lock");
        change(&mut progress);
        let next = progress.health();
        // every change is published at once as a service heartbeat: only real changes count
        if self.health.state() != next {
            self.health.set(next.0, next.1);
        }
    }

    pub fn synced(&self, kind: ResourceKind) {
        self.update(|p| {
            p.unsynced.remove(&kind);
        });
    }

    pub fn rejected(&self, request: Request, reason: String) {
        self.update(|p| {
            p.rejections.insert(request, reason);
        });
    }

    pub fn accepted(&self, request: Request) {
        self.update(|p| {
            p.rejections.remove(&request);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_after_every_kind_synced_degraded_while_rejected() {
        let health = Health::new("clusterlink", "test");
        let status = Status::new(health.clone());
        let (state, detail) = health.state();
        assert_eq!(state, ServiceState::Starting);
        assert!(detail.unwrap().contains("Namespace"));

        for kind in &ResourceKind::ALL[..12] {
            status.synced(*kind);
        }
        assert_eq!(
            health.state(),
            (
                ServiceState::Starting,
                Some("first sync not acknowledged yet: LabelMap".into())
            )
        );
        status.synced(ResourceKind::LabelMap);
        assert_eq!(health.state(), (ServiceState::Ready, None));

        status.rejected(Request::Report, "wrong token".into());
        status.rejected(Request::Heartbeat, "wrong token too".into());
        assert_eq!(
            health.state(),
            (
                ServiceState::Degraded,
                Some("wrong token; wrong token too".into())
            )
        );
        status.accepted(Request::Report);
        assert_eq!(
            health.state().0,
            ServiceState::Degraded,
            "heartbeats still rejected"
        );
        status.accepted(Request::Heartbeat);
        assert_eq!(health.state(), (ServiceState::Ready, None));
    }
}
