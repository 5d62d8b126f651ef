use std::fmt;

/// Every Bulkhead subject starts with this token, so one NATS account can carry other traffic.
const ROOT: &str = "bulkhead";

/// A NATS subject (or, for subscriptions, a pattern with `*` and `>` wildcards).
///
/// Subjects are built only by the constructors below, so the whole subject scheme is in this
/// file and documented in `docs/integration.md`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubjectError {
    #[error("subject is empty")]
    Empty,
    #[error("subject {0:?} has an empty token")]
    EmptyToken(String),
    #[error("subject {0:?} contains whitespace")]
    Whitespace(String),
    #[error("subject {0:?} uses a wildcard where a concrete subject is needed")]
    Wildcard(String),
}

impl Subject {
    fn join(tokens: &[&str]) -> Self {
        let subject = std::iter::once(ROOT)
            .chain(tokens.iter().copied())
            .collect::<Vec<_>>()
            .join(".");
        debug_assert!(
            Self::validate(&subject).is_ok(),
            "constructed an invalid subject {subject}"
        );
        Subject(subject)
    }

    /// Every service's periodic [`crate::messages::health::ServiceHeartbeat`].
    pub fn service_heartbeats() -> Self {
        Self::join(&["health", "heartbeat"])
    }

    /// Appends to the event log: `eventlog.AppendRequest` -> `eventlog.AppendReply`. Every
    /// replica serves the `eventlog.*` requests in queue group `eventlog` and hands writes and
    /// reads to the leader.
    pub fn eventlog_append() -> Self {
        Self::join(&["eventlog", "append"])
    }

    /// Linearizable reads in global order: `eventlog.ReadRequest` -> `eventlog.ReadReply`.
    pub fn eventlog_read() -> Self {
        Self::join(&["eventlog", "read"])
    }

    /// Linearizable reads of one stream: `eventlog.ReadStreamRequest` -> `eventlog.ReadReply`.
    pub fn eventlog_read_stream() -> Self {
        Self::join(&["eventlog", "read_stream"])
    }

    /// The log's status as the leader sees it: `eventlog.StatusRequest` -> `eventlog.LogStatus`.
    pub fn eventlog_status() -> Self {
        Self::join(&["eventlog", "status"])
    }

    /// Membership changes: `eventlog.MembershipRequest` -> `eventlog.MembershipReply`.
    pub fn eventlog_membership() -> Self {
        Self::join(&["eventlog", "membership"])
    }

    /// Committed events, published by the leader in log order as `eventlog.CommittedEvents`.
    pub fn eventlog_committed() -> Self {
        Self::join(&["eventlog", "committed"])
    }

    /// An append taken by replica `node_id` only (it hands it to the leader it knows), for
    /// tools and tests that must address one replica.
    pub fn eventlog_node_append(node_id: u64) -> Self {
        Self::join(&["eventlog", "node", &node_id.to_string(), "append"])
    }

    /// A read of replica `node_id`'s own applied events, not linearizable: for comparing
    /// replicas and for diagnosis. `eventlog.ReadRequest` -> `eventlog.ReadReply`.
    pub fn eventlog_node_read(node_id: u64) -> Self {
        Self::join(&["eventlog", "node", &node_id.to_string(), "read"])
    }

    /// Replica `node_id`'s own view: `eventlog.StatusRequest` -> `eventlog.LogStatus`.
    pub fn eventlog_node_status(node_id: u64) -> Self {
        Self::join(&["eventlog", "node", &node_id.to_string(), "status"])
    }

    /// clusterlink's observation reports ([`crate::messages::inventory::ClusterReport`]), one
    /// subject per cluster so that inventory replicas can shard by cluster.
    pub fn inventory_report(cluster_id: &str) -> Self {
        Self::join(&["inventory", "report", cluster_id])
    }

    /// clusterlink's heartbeats ([`crate::messages::inventory::ClusterHeartbeat`]).
    pub fn inventory_cluster_heartbeat(cluster_id: &str) -> Self {
        Self::join(&["inventory", "cluster_heartbeat", cluster_id])
    }

    /// What inventory holds of a cluster ([`crate::messages::inventory::DigestRequest`]).
    pub fn inventory_digest(cluster_id: &str) -> Self {
        Self::join(&["inventory", "digest", cluster_id])
    }

    /// Cluster pairing commands from the api: `inventory.ClusterCommand` ->
    /// `inventory.ClusterCommandReply`. Inventory replicas serve it in queue group `inventory`.
    pub fn inventory_command() -> Self {
        Self::join(&["inventory", "command"])
    }

    /// Listings for the api: `inventory.InventoryQuery` -> `inventory.InventoryReply`, queue
    /// group `inventory`.
    pub fn inventory_query() -> Self {
        Self::join(&["inventory", "query"])
    }

    /// Labels, label groups, profiles, templates and label maps, from the api:
    /// `labeling.LabelingCommand` -> `labeling.LabelingCommandReply`, queue group `labeling`.
    pub fn labeling_command() -> Self {
        Self::join(&["labeling", "command"])
    }

    /// Listings and effective labels for the api: `labeling.LabelingQuery` ->
    /// `labeling.LabelingReply`, queue group `labeling`.
    pub fn labeling_query() -> Self {
        Self::join(&["labeling", "query"])
    }

    /// All of one inventory area's per-cluster subjects, for the serving side.
    pub fn inventory_all_clusters(area: &str) -> Self {
        Self::join(&["inventory", area, "*"])
    }

    /// A private reply subject (NATS's `_INBOX.` convention) for one request.
    pub fn inbox(token: &str) -> Self {
        let subject = format!("_INBOX.{token}");
        debug_assert!(Self::validate(&subject).is_ok());
        Subject(subject)
    }

    /// A subject in the `scratch` area, which no service uses: for conformance tests and tools.
    pub fn scratch(tokens: &[&str]) -> Self {
        let mut all = vec!["scratch"];
        all.extend_from_slice(tokens);
        Self::join(&all)
    }

    /// Takes a subject that arrived on the wire (a reply-to address), refusing anything that
    /// could not be published to.
    pub fn received(raw: &str) -> Result<Self, SubjectError> {
        Self::validate(raw)?;
        if raw.split('.').any(|t| t == "*" || t == ">") {
            return Err(SubjectError::Wildcard(raw.to_owned()));
        }
        Ok(Subject(raw.to_owned()))
    }

    fn validate(raw: &str) -> Result<(), SubjectError> {
        if raw.is_empty() {
            return Err(SubjectError::Empty);
        }
        if raw.chars().any(char::is_whitespace) {
            return Err(SubjectError::Whitespace(raw.to_owned()));
        }
        if raw.split('.').any(str::is_empty) {
            return Err(SubjectError::EmptyToken(raw.to_owned()));
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this subject, read as a pattern, matches the concrete subject `subject`, with
    /// NATS's rules: `*` matches one token, a final `>` one or more.
    pub fn matches(&self, subject: &str) -> bool {
        let mut pattern = self.0.split('.');
        let mut tokens = subject.split('.');
        loop {
            match (pattern.next(), tokens.next()) {
                (Some(">"), Some(_)) => return true,
                (Some("*"), Some(_)) => {}
                (Some(p), Some(t)) if p == t => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inventory_subjects_are_per_cluster() {
        let all = Subject::inventory_all_clusters("report");
        assert!(all.matches(Subject::inventory_report("c1").as_str()));
        assert!(!all.matches(Subject::inventory_digest("c1").as_str()));
    }

    #[test]
    fn inventory_api_subjects_are_apart_from_cluster_ones() {
        assert_eq!(
            Subject::inventory_command().as_str(),
            "bulkhead.inventory.command"
        );
        assert_eq!(
            Subject::inventory_query().as_str(),
            "bulkhead.inventory.query"
        );
        for area in ["report", "cluster_heartbeat", "digest"] {
            let all = Subject::inventory_all_clusters(area);
            assert!(!all.matches(Subject::inventory_command().as_str()));
            assert!(!all.matches(Subject::inventory_query().as_str()));
        }
    }

    #[test]
    fn labeling_subjects() {
        assert_eq!(
            Subject::labeling_command().as_str(),
            "bulkhead.labeling.command"
        );
        assert_eq!(
            Subject::labeling_query().as_str(),
            "bulkhead.labeling.query"
        );
    }

    #[test]
    fn constructed_subjects_are_rooted() {
        assert_eq!(
            Subject::service_heartbeats().as_str(),
            "bulkhead.health.heartbeat"
        );
        assert_eq!(
            Subject::scratch(&["a", "b"]).as_str(),
            "bulkhead.scratch.a.b"
        );
        assert_eq!(
            Subject::eventlog_append().as_str(),
            "bulkhead.eventlog.append"
        );
        assert_eq!(Subject::eventlog_read().as_str(), "bulkhead.eventlog.read");
        assert_eq!(
            Subject::eventlog_read_stream().as_str(),
            "bulkhead.eventlog.read_stream"
        );
        assert_eq!(
            Subject::eventlog_status().as_str(),
            "bulkhead.eventlog.status"
        );
        assert_eq!(
            Subject::eventlog_membership().as_str(),
            "bulkhead.eventlog.membership"
        );
        assert_eq!(
            Subject::eventlog_committed().as_str(),
            "bulkhead.eventlog.committed"
        );
        assert_eq!(
            Subject::eventlog_node_append(2).as_str(),
            "bulkhead.eventlog.node.2.append"
        );
        assert_eq!(
            Subject::eventlog_node_read(2).as_str(),
            "bulkhead.eventlog.node.2.read"
        );
        assert_eq!(
            Subject::eventlog_node_status(3).as_str(),
            "bulkhead.eventlog.node.3.status"
        );
    }

    #[test]
    fn wildcards_follow_nats_rules() {
        let star = Subject::scratch(&["*", "x"]);
        assert!(star.matches("bulkhead.scratch.a.x"));
        assert!(!star.matches("bulkhead.scratch.a.b.x"));
        let tail = Subject::scratch(&[">"]);
        assert!(tail.matches("bulkhead.scratch.a"));
        assert!(tail.matches("bulkhead.scratch.a.b.c"));
        assert!(!tail.matches("bulkhead.scratch"));
        assert!(Subject::scratch(&["a"]).matches("bulkhead.scratch.a"));
        assert!(!Subject::scratch(&["a"]).matches("bulkhead.scratch.a.b"));
    }

    #[test]
    fn received_subjects_are_validated() {
        assert_eq!(
            Subject::received("_INBOX.abc").unwrap().as_str(),
            "_INBOX.abc"
        );
        assert_eq!(Subject::received(""), Err(SubjectError::Empty));
        assert!(matches!(
            Subject::received("a..b"),
            Err(SubjectError::EmptyToken(_))
        ));
        assert!(matches!(
            Subject::received("a b"),
            Err(SubjectError::Whitespace(_))
        ));
        assert!(matches!(
            Subject::received("a.*"),
            Err(SubjectError::Wildcard(_))
        ));
    }
}
