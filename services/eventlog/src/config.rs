//! How a replica is configured: by `bulkhead serve eventlog` (file, `BULKHEAD_EVENTLOG__*`,
//! flags) or by `bulkhead up` ([`EventlogConfig::single_node`]).

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Limits, NodeId};

/// One replica's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EventlogConfig {
    pub node_id: NodeId,
    /// Where the sled database lives; created when missing.
    pub data_dir: PathBuf,
    /// The Raft listener: replication, votes, snapshots and requests other replicas hand to the
    /// leader. Outgoing Raft connections leave from its IP address too, unless it is a wildcard.
    pub raft_listen: SocketAddr,
    /// The address other replicas reach this one at (`host:port`), when it is not
    /// `raft_listen` (behind NAT, a proxy, or with a wildcard listen address).
    pub advertise: Option<String>,
    /// The initial members, used by `init`: `1=10.0.0.1:7000,2=10.0.0.2:7000,...`.
    pub peers: Peers,
    /// Initialise the cluster with `peers` (plus this replica) if this replica has never been
    /// part of one; ignored once it has, so it is safe to leave on.
    pub init: bool,
    pub snapshot: SnapshotConfig,
    pub limits: Limits,
}

impl Default for EventlogConfig {
    fn default() -> Self {
        Self {
            node_id: 1,
            data_dir: "/var/lib/bulkhead/eventlog".into(),
            raft_listen: ([0, 0, 0, 0], 7000).into(),
            advertise: None,
            peers: Peers::default(),
            init: false,
            snapshot: SnapshotConfig::default(),
            limits: Limits::default(),
        }
    }
}

impl EventlogConfig {
    /// The log of `bulkhead up`: replica 1 alone, its Raft listener on a loopback port nobody
    /// needs to know, initialised on the first start and reopened from `data_dir` after that.
    pub fn single_node(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            raft_listen: ([127, 0, 0, 1], 0).into(),
            init: true,
            ..Self::default()
        }
    }
}

/// When snapshots are taken, which bounds how much log a restarted replica replays and when a
/// lagging one is sent a snapshot instead of entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SnapshotConfig {
    /// Take a snapshot after this many log entries since the last one.
    pub logs_since_last: u64,
    /// Log entries kept behind the snapshot, so that a follower a little behind still gets
    /// entries rather than the whole snapshot.
    pub keep_logs: u64,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self {
            logs_since_last: 10_000,
            keep_logs: 1_000,
        }
    }
}

/// Replicas by id, written `1=host:port,2=host:port` (one string, so that a flag or an
/// environment variable can carry it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Peers(pub BTreeMap<NodeId, String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("peer {entry:?} is not ID=HOST:PORT: {problem}")]
pub struct PeersError {
    entry: String,
    problem: &'static str,
}

impl FromStr for Peers {
    type Err = PeersError;

    fn from_str(list: &str) -> Result<Self, PeersError> {
        let mut peers = BTreeMap::new();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let error = |problem| PeersError {
                entry: entry.into(),
                problem,
            };
            let (id, addr) = entry.split_once('=').ok_or_else(|| error("no `=`"))?;
            let id = id
                .trim()
                .parse()
                .map_err(|_| error("the id is not a number"))?;
            let addr = addr.trim();
            if addr.is_empty() {
                return Err(error("the address is empty"));
            }
            if peers.insert(id, addr.to_owned()).is_some() {
                return Err(error("the id appears twice"));
            }
        }
        Ok(Peers(peers))
    }
}

impl TryFrom<String> for Peers {
    type Error = PeersError;

    fn try_from(list: String) -> Result<Self, PeersError> {
        list.parse()
    }
}

impl From<Peers> for String {
    fn from(peers: Peers) -> String {
        peers.to_string()
    }
}

impl fmt::Display for Peers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut separator = "";
        for (id, addr) in &self.0 {
            write!(f, "{separator}{id}={addr}")?;
            separator = ",";
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_print_round_trip() {
        let peers: Peers = " 1=10.0.0.1:7000, 2=node-2:7000,".parse().unwrap();
        assert_eq!(
            peers.0,
            BTreeMap::from([(1, "10.0.0.1:7000".into()), (2, "node-2:7000".into())])
        );
        assert_eq!(peers.to_string(), "1=10.0.0.1:7000,2=node-2:7000");
        assert_eq!("".parse::<Peers>().unwrap(), Peers::default());
    }

    #[test]
    fn bad_peers_say_what_is_wrong() {
        for (list, problem) in [
            ("1:7000", "no `=`"),
            ("x=a:1", "the id is not a number"),
            ("1=", "the address is empty"),
            ("1=a:1,1=b:1", "the id appears twice"),
        ] {
            let err = list.parse::<Peers>().unwrap_err().to_string();
            assert!(err.contains(problem), "{list}: {err}");
        }
    }

    #[test]
    fn config_reads_peers_as_one_string() {
        let config: EventlogConfig =
            serde_json::from_value(serde_json::json!({"node_id": 2, "peers": "1=a:1,2=b:2"}))
                .unwrap();
        assert_eq!(config.node_id, 2);
        assert_eq!(config.peers.0.len(), 2);
        assert_eq!(config.snapshot, SnapshotConfig::default());
    }
}
