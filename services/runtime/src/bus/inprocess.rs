use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bulkhead_schema::{DEFAULT_MAX_MESSAGE_BYTES, Subject};
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::{Bus, BusError, BusMessage, Subscription};
use crate::metrics;

/// Messages a subscriber may have waiting before new ones are dropped, as NATS drops messages
/// for a slow consumer.
const DEFAULT_PENDING_LIMIT: usize = 65_536;

/// The bus of `bulkhead up`: every service in one process, NATS core semantics without NATS.
#[derive(Clone)]
pub struct InProcessBus {
    router: Arc<Router>,
}

struct Router {
    subscriptions: RwLock<Vec<Member>>,
    next_id: AtomicU64,
    /// Rotates queue-group deliveries over the members of a group.
    round_robin: AtomicU64,
    pending_limit: usize,
    max_payload: usize,
}

struct Member {
    pattern: Subject,
    group: Option<String>,
    sender: mpsc::Sender<BusMessage>,
}

impl Default for InProcessBus {
    fn default() -> Self {
        Self::new(DEFAULT_PENDING_LIMIT, DEFAULT_MAX_MESSAGE_BYTES)
    }
}

impl InProcessBus {
    pub fn new(pending_limit: usize, max_payload: usize) -> Self {
        InProcessBus {
            router: Arc::new(Router {
                subscriptions: RwLock::new(Vec::new()),
                next_id: AtomicU64::new(0),
                round_robin: AtomicU64::new(0),
                pending_limit,
                max_payload,
            }),
        }
    }

    fn add(&self, pattern: &Subject, group: Option<&str>) -> Subscription {
        let (sender, receiver) = mpsc::channel(self.router.pending_limit);
        self.router
            .subscriptions
            .write()
            .expect("bus lock")
            .push(Member {
                pattern: pattern.clone(),
                group: group.map(str::to_owned),
                sender,
            });
        ReceiverStream::new(receiver).boxed()
    }

    /// Delivers to every plain subscriber and one member of each queue group; returns how many
    /// subscriptions matched, so a request can tell that nobody listens.
    fn deliver(&self, message: BusMessage) -> usize {
        let router = &self.router;
        let members = router.subscriptions.read().expect("bus lock");
        let matching: Vec<&Member> = members
            .iter()
            .filter(|m| m.pattern.matches(&message.subject))
            .collect();
        let mut groups: Vec<&str> = matching.iter().filter_map(|m| m.group.as_deref()).collect();
        groups.sort_unstable();
        groups.dedup();
        let mut any_closed = false;
        for member in matching.iter().filter(|m| m.group.is_none()) {
            any_closed |= offer(&member.sender, message.clone());
        }
        for group in groups {
            let live: Vec<&&Member> = matching
                .iter()
                .filter(|m| m.group.as_deref() == Some(group) && !m.sender.is_closed())
                .collect();
            if live.is_empty() {
                any_closed = true;
                continue;
            }
            let start = router.round_robin.fetch_add(1, Ordering::Relaxed) as usize;
            any_closed |= offer(&live[start % live.len()].sender, message.clone());
        }
        let matched = matching.iter().filter(|m| !m.sender.is_closed()).count();
        drop(members);
        if any_closed {
            router
                .subscriptions
                .write()
                .expect("bus lock")
                .retain(|m| !m.sender.is_closed());
        }
        matched
    }
}

/// Hands a message to one subscriber without waiting; returns whether the subscriber is gone.
fn offer(sender: &mpsc::Sender<BusMessage>, message: BusMessage) -> bool {
    match sender.try_send(message) {
        Ok(()) => false,
        Err(mpsc::error::TrySendError::Full(_)) => {
            metrics::bus_dropped("inprocess", "slow_consumer");
            tracing::warn!("in-process bus: a subscriber is too slow; message dropped");
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => true,
    }
}

#[async_trait::async_trait]
impl Bus for InProcessBus {
    async fn publish(&self, subject: &Subject, payload: Bytes) -> Result<(), BusError> {
        if payload.len() > self.router.max_payload {
            return Err(BusError::TooLarge {
                size: payload.len(),
                limit: self.router.max_payload,
            });
        }
        self.deliver(BusMessage {
            subject: subject.to_string(),
            payload,
            reply: None,
        });
        Ok(())
    }

    async fn subscribe(&self, subject: &Subject) -> Result<Subscription, BusError> {
        Ok(self.add(subject, None))
    }

    async fn queue_subscribe(
        &self,
        subject: &Subject,
        group: &str,
    ) -> Result<Subscription, BusError> {
        Ok(self.add(subject, Some(group)))
    }

    async fn request(
        &self,
        subject: &Subject,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError> {
        if payload.len() > self.router.max_payload {
            return Err(BusError::TooLarge {
                size: payload.len(),
                limit: self.router.max_payload,
            });
        }
        let id = self.router.next_id.fetch_add(1, Ordering::Relaxed);
        let inbox = Subject::inbox(&format!("inprocess.{id}"));
        let mut replies = self.add(&inbox, None);
        let request = BusMessage {
            subject: subject.to_string(),
            payload,
            reply: Some(inbox),
        };
        if self.deliver(request) == 0 {
            return Err(BusError::NoResponders(subject.to_string()));
        }
        match tokio::time::timeout(timeout, replies.next()).await {
            Ok(Some(reply)) => Ok(reply),
            Ok(None) => Err(BusError::Transport("reply subscription closed".into())),
            Err(_) => Err(BusError::Timeout {
                subject: subject.to_string(),
                timeout,
            }),
        }
    }

    async fn flush(&self) -> Result<(), BusError> {
        Ok(())
    }

    fn max_payload(&self) -> usize {
        self.router.max_payload
    }
}
