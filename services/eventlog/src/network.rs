//! The client side of the replicas' HTTP transport: openraft's RPCs, and requests a replica
//! hands to the leader. The server side is in `server`; `docs/eventlog.md` says why it is HTTP
//! on its own listener rather than NATS.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::BasicNode;
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{Backoff, RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::election::Elections;
use crate::{NodeId, TypeConfig};

pub(crate) const APPEND_ENTRIES_PATH: &str = "/raft/append";
pub(crate) const VOTE_PATH: &str = "/raft/vote";
pub(crate) const SNAPSHOT_PATH: &str = "/raft/snapshot";

/// How long a leader leaves an unreachable replica alone before trying it again: short, so
/// that a restarted replica is back in the cluster within a few heartbeats.
const UNREACHABLE_BACKOFF: Duration = Duration::from_millis(250);

/// A dead peer must not hold a request for long: the Raft RPCs have a budget of a heartbeat.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);

/// Why a call to another replica failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: reqwest::Error,
    },
    #[error("request to {addr} failed: {source}")]
    Transport {
        addr: String,
        source: reqwest::Error,
    },
    #[error("{addr} answered {status}: {body}")]
    Status {
        addr: String,
        status: reqwest::StatusCode,
        body: String,
    },
    #[error("cannot encode the request to {addr}: {source}")]
    Encode {
        addr: String,
        source: rmp_serde::encode::Error,
    },
    #[error("cannot decode the answer of {addr}: {source}")]
    Decode {
        addr: String,
        source: rmp_serde::decode::Error,
    },
}

/// HTTP to the other replicas, MessagePack both ways; one connection pool, cheap to clone.
#[derive(Clone)]
pub(crate) struct PeerClient {
    http: reqwest::Client,
}

impl PeerClient {
    /// Connections leave from `local_ip` when given, so that a replica's traffic can be told
    /// apart (and firewalled) by its address on a shared host.
    pub(crate) fn new(local_ip: Option<IpAddr>) -> Result<Self, reqwest::Error> {
        // reqwest builds its TLS configuration even for plain HTTP, and panics without a
        // process-wide provider; installing one is a no-op when the binary did already.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .no_proxy()
            .http1_only()
            .tcp_nodelay(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .local_address(local_ip)
            .build()?;
        Ok(Self { http })
    }

    /// POSTs `request` to `http://{addr}{path}` and decodes the answer, within `timeout`.
    pub(crate) async fn call<Q: Serialize, R: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
        request: &Q,
        timeout: Duration,
    ) -> Result<R, CallError> {
        let addr_owned = || addr.to_owned();
        let body = rmp_serde::to_vec_named(request).map_err(|source| CallError::Encode {
            addr: addr_owned(),
            source,
        })?;
        let response = self
            .http
            .post(format!("http://{addr}{path}"))
            .header(reqwest::header::CONTENT_TYPE, crate::server::MSGPACK)
            .body(body)
            .timeout(timeout)
            .send()
            .await
            .map_err(|source| {
                if source.is_connect() {
                    CallError::Connect {
                        addr: addr_owned(),
                        source,
                    }
                } else {
                    CallError::Transport {
                        addr: addr_owned(),
                        source,
                    }
                }
            })?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|source| CallError::Transport {
                addr: addr_owned(),
                source,
            })?;
        if !status.is_success() {
            return Err(CallError::Status {
                addr: addr_owned(),
                status,
                body: String::from_utf8_lossy(&bytes).into_owned(),
            });
        }
        rmp_serde::from_slice(&bytes).map_err(|source| CallError::Decode {
            addr: addr_owned(),
            source,
        })
    }
}

/// openraft's view of the transport: one [`Peer`] per replica it replicates to or asks for
/// votes.
pub(crate) struct Network {
    pub(crate) client: PeerClient,
    pub(crate) elections: Arc<Elections>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Peer;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Peer {
        Peer {
            client: self.client.clone(),
            elections: self.elections.clone(),
            target,
            addr: node.addr.clone(),
        }
    }
}

pub(crate) struct Peer {
    client: PeerClient,
    elections: Arc<Elections>,
    target: NodeId,
    addr: String,
}

type RpcResult<R, E> = Result<R, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Peer {
    async fn rpc<Q, R, E>(&self, path: &str, request: &Q, option: &RPCOption) -> RpcResult<R, E>
    where
        Q: Serialize,
        R: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let answer: Result<R, RaftError<NodeId, E>> = self
            .client
            .call(&self.addr, path, request, option.hard_ttl())
            .await
            .map_err(|error| match &error {
                // A peer that refuses or drops connections is down or cut off: Unreachable
                // makes openraft back off instead of retrying in a tight loop.
                CallError::Connect { .. } => RPCError::Unreachable(Unreachable::new(&error)),
                CallError::Transport { source, .. } if !source.is_timeout() => {
                    RPCError::Unreachable(Unreachable::new(&error))
                }
                _ => RPCError::Network(NetworkError::new(&error)),
            })?;
        answer.map_err(|error| RPCError::RemoteError(RemoteError::new(self.target, error)))
    }
}

impl RaftNetwork<TypeConfig> for Peer {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>, openraft::error::Infallible> {
        self.rpc(APPEND_ENTRIES_PATH, &rpc, &option).await
    }

    // Snapshots go in chunks of `snapshot_max_chunk_size` through openraft's default
    // `full_snapshot`, which calls this once per chunk.
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        self.rpc(SNAPSHOT_PATH, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>, openraft::error::Infallible> {
        let answer = self.rpc(VOTE_PATH, &rpc, &option).await?;
        Ok(self.elections.was_answered(self.target, &rpc, answer))
    }

    fn backoff(&self) -> Backoff {
        Backoff::new(std::iter::repeat(UNREACHABLE_BACKOFF))
    }
}
