//! `/api/v2/log/...`: the event log for operators. Status, membership changes, and a read-only
//! view of the events: nothing is appended through REST, writes go through the services that
//! own the data.

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use base64::Engine;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::{
    LogMember, LogStatus, MembershipReply, MembershipRequest, ReadReply, ReadRequest,
    RecordedEvent, StatusRequest,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use crate::error::HttpError;
use crate::{ApiRouter, AppState};

/// How long the api waits for the event log.
const LOG_TIMEOUT: Duration = Duration::from_secs(5);
/// The most events one page returns.
const MAX_PAGE: u32 = 1000;

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::default()
        .routes(routes!(get_status))
        .routes(routes!(list_events))
        .routes(routes!(add_learner))
        .routes(routes!(promote_member))
        .routes(routes!(remove_member))
}

/// The log's status as its leader sees it (the `eventlog.LogStatus` JSON Schema in `schema/json/`).
#[utoipa::path(get, path = "/status", tag = "log",
    responses((status = 200, description = "Leader, term, commit index, last sequence number, members, replication lag", body = Object)))]
async fn get_status(State(state): State<AppState>) -> Result<Json<LogStatus>, HttpError> {
    state
        .ask(
            "event log",
            LOG_TIMEOUT,
            &Subject::eventlog_status(),
            &StatusRequest {},
        )
        .await
        .map(Json)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct EventsQuery {
    /// First global sequence number to return (default 1).
    from: Option<u64>,
    /// At most this many events (default 100, at most 1000).
    limit: Option<u32>,
}

/// One committed event, for people: the body as base64 and, when it is MessagePack (as every
/// Bulkhead event is), decoded to JSON.
#[derive(Debug, Serialize, ToSchema)]
struct EventView {
    seq: u64,
    stream: String,
    stream_version: u64,
    event_type: String,
    idempotency_key: String,
    committed_at_ms: u64,
    data_base64: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<serde_json::Value>,
}

impl From<RecordedEvent> for EventView {
    fn from(event: RecordedEvent) -> Self {
        EventView {
            data: rmp_serde::from_slice(&event.data).ok(),
            data_base64: base64::engine::general_purpose::STANDARD.encode(&event.data),
            seq: event.seq,
            stream: event.stream,
            stream_version: event.stream_version,
            event_type: event.event_type,
            idempotency_key: event.idempotency_key,
            committed_at_ms: event.committed_at_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
struct EventPage {
    events: Vec<EventView>,
    /// The newest sequence number in the log when the page was read.
    last_seq: u64,
    /// Where the next page starts, when there may be one.
    next_from: Option<u64>,
}

/// A page of committed events in log order.
#[utoipa::path(get, path = "/events", tag = "log", params(EventsQuery),
    responses((status = 200, body = EventPage)))]
async fn list_events(
    State(state): State<AppState>,
    Query(query): Query<EventsQuery>,
) -> Result<Json<EventPage>, HttpError> {
    let from_seq = query.from.unwrap_or(1).max(1);
    let limit = query.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            format!("limit must be between 1 and {MAX_PAGE}"),
        ));
    }
    match state
        .ask(
            "event log",
            LOG_TIMEOUT,
            &Subject::eventlog_read(),
            &ReadRequest { from_seq, limit },
        )
        .await?
    {
        ReadReply::Events { events, last_seq } => {
            let next_from = events
                .last()
                .map(|e| e.seq + 1)
                .filter(|&next| next <= last_seq);
            Ok(Json(EventPage {
                events: events.into_iter().map(Into::into).collect(),
                last_seq,
                next_from,
            }))
        }
        ReadReply::Unavailable { reason } => {
            Err(HttpError::new(StatusCode::SERVICE_UNAVAILABLE, reason))
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewLearner {
    node_id: u64,
    /// Where the replicas reach the new replica's Raft listener, `host:port`.
    addr: String,
}

#[derive(Debug, Serialize, ToSchema)]
struct Membership {
    voters: Vec<Member>,
    learners: Vec<Member>,
}

#[derive(Debug, Serialize, ToSchema)]
struct Member {
    node_id: u64,
    addr: String,
}

fn members(list: Vec<LogMember>) -> Vec<Member> {
    list.into_iter()
        .map(|m| Member {
            node_id: m.node_id,
            addr: m.addr,
        })
        .collect()
}

async fn change(
    state: &AppState,
    request: MembershipRequest,
) -> Result<Json<Membership>, HttpError> {
    match state
        .ask(
            "event log",
            LOG_TIMEOUT,
            &Subject::eventlog_membership(),
            &request,
        )
        .await?
    {
        MembershipReply::Changed { voters, learners } => Ok(Json(Membership {
            voters: members(voters),
            learners: members(learners),
        })),
        MembershipReply::Rejected { kind, reason } => Err(HttpError::new(
            StatusCode::CONFLICT,
            format!("{reason} ({kind})"),
        )),
        MembershipReply::Unavailable { reason } => {
            Err(HttpError::new(StatusCode::SERVICE_UNAVAILABLE, reason))
        }
    }
}

/// Adds a replica as a learner: it receives the log (by snapshot, when behind) without voting.
#[utoipa::path(post, path = "/members", tag = "log", request_body = NewLearner,
    responses((status = 200, body = Membership)))]
async fn add_learner(
    State(state): State<AppState>,
    Json(learner): Json<NewLearner>,
) -> Result<Json<Membership>, HttpError> {
    change(
        &state,
        MembershipRequest::AddLearner {
            node_id: learner.node_id,
            addr: learner.addr,
        },
    )
    .await
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct MemberPath {
    /// The replica's node id.
    node_id: u64,
}

/// Makes a learner a voter.
#[utoipa::path(post, path = "/members/{node_id}/promote", tag = "log", params(MemberPath),
    responses((status = 200, body = Membership)))]
async fn promote_member(
    State(state): State<AppState>,
    Path(member): Path<MemberPath>,
) -> Result<Json<Membership>, HttpError> {
    change(
        &state,
        MembershipRequest::Promote {
            node_id: member.node_id,
        },
    )
    .await
}

/// Removes a voter or a learner from the log.
#[utoipa::path(delete, path = "/members/{node_id}", tag = "log", params(MemberPath),
    responses((status = 200, body = Membership)))]
async fn remove_member(
    State(state): State<AppState>,
    Path(member): Path<MemberPath>,
) -> Result<Json<Membership>, HttpError> {
    change(
        &state,
        MembershipRequest::Remove {
            node_id: member.node_id,
        },
    )
    .await
}
