//! The NATS shell around a replica: requests in, replies and committed events out, heartbeats.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_runtime::bus::{Subscription, TypedBus};
use bulkhead_runtime::health::{HEARTBEAT_INTERVAL, Health};
use bulkhead_schema::messages::eventlog::{
    AppendReply, AppendRequest, CommittedEvents, MembershipRequest, ReadRequest, ReadStreamRequest,
    StatusRequest,
};
use bulkhead_schema::messages::health::ServiceState;
use bulkhead_schema::{Subject, WireMessage};
use openraft::ServerState;
use tokio_util::sync::CancellationToken;

use crate::leader::{QUORUM_CHECK, QUORUM_SILENCE, acknowledged_by_quorum, quorum_silent};
use crate::node::{Inner, MAX_PAGE_BYTES, MAX_PAGE_EVENTS, fitting};
use crate::{EventlogConfig, EventlogError, LogNode};

/// Every replica serves the shared subjects in this queue group: one of them takes each request.
/// The shared append subject only the leader serves (`serve_appends_while_leading`).
const QUEUE_GROUP: &str = "eventlog";

/// How long a leader waits before it tries again to subscribe to the shared append subject.
const RESUBSCRIBE_AFTER: Duration = Duration::from_secs(1);

/// Requests of one subject being handled at once; more wait in the subscription (and NATS
/// drops them if they pile up, as it does for any slow consumer).
const REQUESTS_IN_FLIGHT: usize = 4096;

/// Runs one replica until `shutdown`: the Raft node and its listener, the NATS subjects, the
/// committed-event stream (while it leads) and heartbeats. Returns an error when the replica
/// cannot start or its Raft node dies.
pub async fn run(
    config: EventlogConfig,
    bus: TypedBus,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), EventlogError> {
    let node = LogNode::start(config).await?;
    let served = serve(&node, bus, health, shutdown).await;
    node.shutdown().await;
    served
}

async fn serve(
    node: &LogNode,
    bus: TypedBus,
    health: Health,
    shutdown: CancellationToken,
) -> Result<(), EventlogError> {
    let inner = node.inner();
    let id = inner.id;
    let raw = bus.raw();
    let shared = async |subject: Subject| raw.queue_subscribe(&subject, QUEUE_GROUP).await;
    let read = shared(Subject::eventlog_read()).await?;
    let read_stream = shared(Subject::eventlog_read_stream()).await?;
    let status = shared(Subject::eventlog_status()).await?;
    let membership = shared(Subject::eventlog_membership()).await?;
    let node_append = raw.subscribe(&Subject::eventlog_node_append(id)).await?;
    let node_read = raw.subscribe(&Subject::eventlog_node_read(id)).await?;
    let node_status = raw.subscribe(&Subject::eventlog_node_status(id)).await?;

    let stop = shutdown.child_token();
    let server = Server {
        bus: &bus,
        node: inner,
        stop: &stop,
    };
    let work = async {
        tokio::join!(
            serve_appends_while_leading(&server),
            server.answer(node_append, append),
            server.answer(read, |node: Arc<Inner>, request: ReadRequest| async move {
                node.via_leader(request).await
            }),
            server.answer(read_stream, |node: Arc<Inner>, request: ReadStreamRequest| async move {
                node.via_leader(request).await
            }),
            server.answer(status, |node: Arc<Inner>, request: StatusRequest| async move {
                node.via_leader(request).await
            }),
            server.answer(membership, |node: Arc<Inner>, request: MembershipRequest| async move {
                node.via_leader(request).await
            }),
            server.answer(node_read, |node: Arc<Inner>, request: ReadRequest| async move {
                node.read_local(&request)
            }),
            server.answer(node_status, |node: Arc<Inner>, _: StatusRequest| async move {
                node.local_status().await
            }),
            publish_committed(inner, &bus, &stop),
            watch_leadership(inner, &health, &stop),
            health
                .clone()
                .publish_heartbeats(bus.clone(), HEARTBEAT_INTERVAL, stop.clone()),
        )
    };
    tracing::info!(node_id = id, "eventlog serving on NATS");
    tokio::select! {
        _ = work => Ok(()),
        error = node.failed() => {
            tracing::error!(%error, "the replica failed");
            stop.cancel();
            Err(error)
        }
    }
}

async fn append(node: Arc<Inner>, request: AppendRequest) -> AppendReply {
    node.append(request).await
}

/// Serves the shared append subject while this replica leads, and only then: a client's append
/// reaches the leader in one hop, as a JetStream publish reaches its stream's leader, where a
/// follower would hand it over (one more round trip, over HTTP). While leadership moves, nobody
/// serves it for a moment and NATS tells clients so at once (no responders); they retry, as
/// they do `Unavailable`.
///
/// A leader cut off from the other replicas but not from NATS is not told it is deposed
/// (openraft 0.9 keeps a leader leading without a quorum). It stops serving once no quorum has
/// acknowledged it for [`QUORUM_SILENCE`], and serves again when one does: otherwise it took,
/// alongside the new leader, a share of the appends it could never commit.
async fn serve_appends_while_leading(server: &Server<'_>) {
    let raft = &server.node.raft;
    let mut metrics = raft.server_metrics();
    loop {
        tokio::select! {
            _ = server.stop.cancelled() => return,
            leads = metrics.wait_for(|now| now.state == ServerState::Leader) => {
                if leads.is_err() {
                    return;
                }
            }
        }
        if !acknowledged_by_quorum(raft) {
            tokio::select! {
                _ = server.stop.cancelled() => return,
                () = tokio::time::sleep(QUORUM_CHECK) => continue,
            }
        }
        let subscribed = server
            .bus
            .raw()
            .queue_subscribe(&Subject::eventlog_append(), QUEUE_GROUP)
            .await;
        let appends = match subscribed {
            Ok(appends) => {
                tracing::info!("serving appends as the leader");
                appends
            }
            Err(error) => {
                tracing::warn!(%error, "cannot serve appends as the leader; trying again");
                tokio::select! {
                    _ = server.stop.cancelled() => return,
                    () = tokio::time::sleep(RESUBSCRIBE_AFTER) => continue,
                }
            }
        };
        // Dropping the subscription unsubscribes; appends being decided still get their answer.
        tokio::select! {
            () = server.answer(appends, append) => {}
            _ = metrics.wait_for(|now| now.state != ServerState::Leader) => {}
            () = quorum_silent(raft) => tracing::warn!(
                silent_for = ?QUORUM_SILENCE,
                "no quorum acknowledges this leader: not serving appends until one does"
            ),
        }
    }
}

struct Server<'a> {
    bus: &'a TypedBus,
    node: &'a Arc<Inner>,
    stop: &'a CancellationToken,
}

impl Server<'_> {
    /// Answers the requests of one subscription, each in its own task: appends must meet in
    /// the batcher.
    async fn answer<Q, R, F, Fut>(&self, requests: Subscription, handle: F)
    where
        Q: WireMessage,
        R: WireMessage,
        F: Fn(Arc<Inner>, Q) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        self.bus
            .answer_requests(requests, REQUESTS_IN_FLIGHT, self.stop, |request| {
                handle(self.node.clone(), request)
            })
            .await;
    }
}

/// Publishes committed events in log order while this replica leads. On becoming leader it
/// starts after what it has applied by then: events before that were the previous leader's to
/// publish, and a subscriber that missed some fills the gap with a read.
async fn publish_committed(node: &Inner, bus: &TypedBus, stop: &CancellationToken) {
    let subject = Subject::eventlog_committed();
    // Server metrics change with the role and the leader only, not with every entry.
    let mut server = node.raft.server_metrics();
    let mut published: Option<u64> = None;
    loop {
        let applied = node.reader().changed();
        let leads = server.borrow_and_update().state == ServerState::Leader;
        published = match published {
            _ if !leads => None,
            Some(after) => Some(publish_after(node, bus, &subject, after).await),
            None => Some(publish_after(node, bus, &subject, node.reader().last_seq()).await),
        };
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = applied => {}
            changed = server.changed() => if changed.is_err() { break },
        }
    }
}

/// Publishes every applied event after sequence number `after`; returns the last published.
async fn publish_after(node: &Inner, bus: &TypedBus, subject: &Subject, mut after: u64) -> u64 {
    loop {
        let mut events = match node.reader().read(after + 1, MAX_PAGE_EVENTS) {
            Ok(events) if events.is_empty() => return after,
            Ok(events) => events,
            Err(error) => {
                tracing::warn!(%error, after, "cannot read committed events");
                return after;
            }
        };
        events.truncate(fitting(&events, MAX_PAGE_BYTES));
        after = events.last().map_or(after, |event| event.seq);
        // At most once, as NATS core is: subscribers fill gaps from the log.
        if let Err(error) = bus.publish(subject, &CommittedEvents { events }).await {
            tracing::warn!(%error, "cannot publish committed events");
        }
    }
}

/// Ready while a leader is known, Degraded (saying why) otherwise.
async fn watch_leadership(node: &Inner, health: &Health, stop: &CancellationToken) {
    let mut metrics = node.raft.server_metrics();
    loop {
        let state = {
            let metrics = metrics.borrow_and_update();
            match metrics.current_leader {
                Some(_) => (ServiceState::Ready, None),
                None => (
                    ServiceState::Degraded,
                    Some(format!(
                        "no leader known (this replica: {:?}, term {})",
                        metrics.state,
                        metrics.vote.leader_id().term
                    )),
                ),
            }
        };
        // Every change of state is a heartbeat; server metrics change more often than that.
        if health.state() != state {
            health.set(state.0, state.1);
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            changed = metrics.changed() => if changed.is_err() { break },
        }
    }
}
