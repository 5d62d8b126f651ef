//! The server side of the replicas' HTTP transport, on the Raft listener: openraft's RPCs
//! under `/raft/`, and under `/client/` the requests other replicas hand to the leader.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bulkhead_schema::messages::eventlog::{
    MembershipRequest, ReadRequest, ReadStreamRequest, StatusRequest,
};
use openraft::raft::VoteRequest;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::NodeId;
use crate::leader::{AppendBatch, LeaderOp};
use crate::network::{APPEND_ENTRIES_PATH, SNAPSHOT_PATH, VOTE_PATH};
use crate::node::Inner;

pub(crate) const MSGPACK: &str = "application/msgpack";

/// Bodies are at most `max_payload_entries` batched entries or one snapshot chunk; the limit
/// only stops a runaway peer from exhausting memory.
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub(crate) fn router(node: Arc<Inner>) -> Router {
    Router::new()
        .route(
            APPEND_ENTRIES_PATH,
            post(|State(node): State<Arc<Inner>>, body: Bytes| {
                answer(body, move |rpc| async move {
                    node.elections.heard_from_leader();
                    let answer = node.raft.append_entries(rpc).await;
                    if let Ok(answer) = &answer {
                        node.elections.appended(answer);
                    }
                    answer
                })
            }),
        )
        .route(
            VOTE_PATH,
            post(|State(node): State<Arc<Inner>>, body: Bytes| {
                answer(body, move |rpc: VoteRequest<NodeId>| async move {
                    let answer = node.raft.vote(rpc.clone()).await;
                    if let Ok(answer) = &answer {
                        node.elections.answered(&rpc, answer);
                    }
                    answer
                })
            }),
        )
        .route(
            SNAPSHOT_PATH,
            post(|State(node): State<Arc<Inner>>, body: Bytes| {
                answer(body, move |rpc| async move {
                    let _installing = node.elections.installing();
                    node.raft.install_snapshot(rpc).await
                })
            }),
        )
        .route(AppendBatch::PATH, post(leader_op::<AppendBatch>))
        .route(ReadRequest::PATH, post(leader_op::<ReadRequest>))
        .route(
            ReadStreamRequest::PATH,
            post(leader_op::<ReadStreamRequest>),
        )
        .route(StatusRequest::PATH, post(leader_op::<StatusRequest>))
        .route(
            MembershipRequest::PATH,
            post(leader_op::<MembershipRequest>),
        )
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(node)
}

/// A request handed over by a replica that believes this one leads.
async fn leader_op<Op: LeaderOp>(State(node): State<Arc<Inner>>, body: Bytes) -> Response {
    answer(body, move |op: Op| async move { node.serve_here(op).await }).await
}

/// Decodes the MessagePack body as `Q`, handles it, and encodes the answer.
async fn answer<Q, R, F, Fut>(body: Bytes, handle: F) -> Response
where
    Q: DeserializeOwned,
    R: Serialize,
    F: FnOnce(Q) -> Fut,
    Fut: Future<Output = R>,
{
    let request = match rmp_serde::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("cannot decode the request: {error}"),
            )
                .into_response();
        }
    };
    match rmp_serde::to_vec_named(&handle(request).await) {
        Ok(bytes) => ([(header::CONTENT_TYPE, MSGPACK)], bytes).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode the answer: {error}"),
        )
            .into_response(),
    }
}
