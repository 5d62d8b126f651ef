//! The message bus: one trait, two transports (NATS and in-process), and a typed layer that
//! speaks the `schema` envelope on top of either.

mod inprocess;
mod nats;
mod typed;

use std::time::Duration;

use bulkhead_schema::Subject;
use bytes::Bytes;
use futures::stream::BoxStream;

pub use inprocess::InProcessBus;
pub use nats::{NatsBus, NatsOptions};
pub use typed::{Received, TypedBus, TypedSubscription};

/// One message as the bus delivers it: raw bytes, not yet decoded.
#[derive(Debug, Clone)]
pub struct BusMessage {
    pub subject: String,
    pub payload: Bytes,
    /// Where a request wants its reply, when the sender made a request.
    pub reply: Option<Subject>,
}

/// The messages matching one subscription, in the order the bus delivered them. Dropping it
/// unsubscribes.
pub type Subscription = BoxStream<'static, BusMessage>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("no service is listening on {0}")]
    NoResponders(String),
    #[error("no reply on {subject} within {timeout:?}")]
    Timeout { subject: String, timeout: Duration },
    #[error("payload of {size} bytes exceeds the bus limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("cannot connect to the bus: {0}")]
    Connect(String),
    #[error("bus transport failed: {0}")]
    Transport(String),
    /// The service could not read the request and said so (`common.RequestRejected`).
    #[error("the request was refused as unreadable ({kind}): {reason}")]
    RequestRejected { kind: String, reason: String },
    #[error(transparent)]
    Encode(#[from] bulkhead_schema::EncodeError),
    #[error(transparent)]
    Decode(#[from] bulkhead_schema::DecodeError),
}

impl BusError {
    /// A short, stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            BusError::NoResponders(_) => "no_responders",
            BusError::Timeout { .. } => "timeout",
            BusError::TooLarge { .. } => "too_large",
            BusError::Connect(_) => "connect",
            BusError::Transport(_) => "transport",
            BusError::RequestRejected { .. } => "request_rejected",
            BusError::Encode(_) => "encode",
            BusError::Decode(e) => e.kind(),
        }
    }
}

/// What a reply's page of items is cut to, encoded: one message with room to spare for the
/// envelope and the rest of the reply.
pub const MAX_PAGE_BYTES: usize = 512 * 1024;

/// Cuts `items` to the longest prefix that encodes in [`MAX_PAGE_BYTES`], keeping at least
/// one item, so that a page fits one message.
pub fn fit_page<T: serde::Serialize>(items: &mut Vec<T>) {
    let mut bytes = 0;
    let fitting = items
        .iter()
        .take_while(|item| {
            bytes += rmp_serde::to_vec_named(item).map_or(MAX_PAGE_BYTES, |b| b.len());
            bytes <= MAX_PAGE_BYTES
        })
        .count();
    items.truncate(fitting.max(1));
}

/// Publish/subscribe with queue groups and request/reply: the subset of NATS core that
/// Bulkhead's services use. Delivery is at most once, as in NATS core; anything that must not
/// be lost goes through the event log, whose readers fill gaps by reading it.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, subject: &Subject, payload: Bytes) -> Result<(), BusError>;

    /// Every message on subjects matching `subject` (wildcards allowed).
    async fn subscribe(&self, subject: &Subject) -> Result<Subscription, BusError>;

    /// Like `subscribe`, but each message goes to only one member of `group`.
    async fn queue_subscribe(
        &self,
        subject: &Subject,
        group: &str,
    ) -> Result<Subscription, BusError>;

    /// Publishes `payload` with a private reply subject and waits for the first reply.
    async fn request(
        &self,
        subject: &Subject,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError>;

    /// Waits until everything published so far has left this process.
    async fn flush(&self) -> Result<(), BusError>;

    /// The largest payload the transport carries.
    fn max_payload(&self) -> usize;
}
