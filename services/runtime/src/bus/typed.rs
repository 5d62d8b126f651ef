use std::marker::PhantomData;
use std::sync::Arc;
use std::time::Duration;

use bulkhead_schema::messages::common::RequestRejected;
use bulkhead_schema::{
    DEFAULT_MAX_MESSAGE_BYTES, DecodeError, Decoded, Envelope, Subject, WireMessage,
};
use futures::StreamExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{Bus, BusError, Subscription};
use crate::{metrics, telemetry};

/// The bus as services use it: messages in `schema` envelopes, trace context carried across,
/// bad input counted and skipped.
#[derive(Clone)]
pub struct TypedBus {
    bus: Arc<dyn Bus>,
    decode_limit: usize,
}

/// A message received on a typed subscription.
#[derive(Debug, Clone)]
pub struct Received<M> {
    pub subject: String,
    pub envelope: Envelope,
    pub message: M,
    /// Where to send the reply, when this was a request.
    pub reply: Option<Subject>,
}

/// Yields the well-formed `M`s arriving on a subscription. Anything else (oversized,
/// malformed, of another type or a newer version) is logged, counted in
/// `bulkhead_bus_rejected_messages_total` and skipped: a bad publisher cannot stop a subscriber.
pub struct TypedSubscription<M> {
    inner: Subscription,
    decode_limit: usize,
    _message: PhantomData<fn() -> M>,
}

impl TypedBus {
    pub fn new(bus: Arc<dyn Bus>) -> Self {
        Self::with_decode_limit(bus, DEFAULT_MAX_MESSAGE_BYTES)
    }

    /// A typed bus that refuses received messages longer than `decode_limit` bytes.
    pub fn with_decode_limit(bus: Arc<dyn Bus>, decode_limit: usize) -> Self {
        TypedBus { bus, decode_limit }
    }

    /// The untyped transport underneath, for tools that relay raw bytes.
    pub fn raw(&self) -> &Arc<dyn Bus> {
        &self.bus
    }

    fn seal<M: WireMessage>(message: &M) -> Result<bytes::Bytes, BusError> {
        let mut envelope = Envelope::wrap(message)?;
        telemetry::inject_trace_context(&mut envelope);
        Ok(envelope.to_bytes().into())
    }

    pub async fn publish<M: WireMessage>(
        &self,
        subject: &Subject,
        message: &M,
    ) -> Result<(), BusError> {
        self.bus.publish(subject, Self::seal(message)?).await
    }

    pub async fn subscribe<M: WireMessage>(
        &self,
        subject: &Subject,
    ) -> Result<TypedSubscription<M>, BusError> {
        Ok(self.typed(self.bus.subscribe(subject).await?))
    }

    pub async fn queue_subscribe<M: WireMessage>(
        &self,
        subject: &Subject,
        group: &str,
    ) -> Result<TypedSubscription<M>, BusError> {
        Ok(self.typed(self.bus.queue_subscribe(subject, group).await?))
    }

    fn typed<M>(&self, inner: Subscription) -> TypedSubscription<M> {
        TypedSubscription {
            inner,
            decode_limit: self.decode_limit,
            _message: PhantomData,
        }
    }

    /// Sends `request` and decodes the first reply as `R`; a refusal of the request as
    /// unreadable is [`BusError::RequestRejected`].
    pub async fn request<Q: WireMessage, R: WireMessage>(
        &self,
        subject: &Subject,
        request: &Q,
        timeout: Duration,
    ) -> Result<Decoded<R>, BusError> {
        let reply = self
            .bus
            .request(subject, Self::seal(request)?, timeout)
            .await?;
        let envelope = Envelope::from_bytes(&reply.payload, self.decode_limit)?;
        if envelope.message_type == RequestRejected::TYPE {
            let refusal = envelope.open::<RequestRejected>()?;
            return Err(BusError::RequestRejected {
                kind: refusal.kind,
                reason: refusal.reason,
            });
        }
        let message = envelope.open()?;
        Ok(Decoded { envelope, message })
    }

    pub async fn reply<M: WireMessage>(&self, to: &Subject, message: &M) -> Result<(), BusError> {
        self.publish(to, message).await
    }

    /// Answers the requests arriving on `requests` until `stop` or the subscription ends: each
    /// request is handled in its own task (at most `in_flight` at once, so that slow ones do not
    /// hold up the rest), in a span that continues the sender's trace, and its answer is sent to
    /// the reply subject. A request that cannot be read (undecodable, of another type, a newer
    /// version, too large) is answered with [`RequestRejected`], counted and logged; nothing
    /// else happens and the loop goes on.
    pub async fn answer_requests<Q, R, F, Fut>(
        &self,
        requests: Subscription,
        in_flight: usize,
        stop: &CancellationToken,
        handle: F,
    ) where
        Q: WireMessage,
        R: WireMessage,
        F: Fn(Q) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        self.answer_enveloped_requests(requests, in_flight, stop, |decoded: Decoded<Q>| {
            handle(decoded.message)
        })
        .await
    }

    /// Like [`TypedBus::answer_requests`], for handlers that need the envelope too (its id is
    /// a command's idempotency key).
    pub async fn answer_enveloped_requests<Q, R, F, Fut>(
        &self,
        mut requests: Subscription,
        in_flight: usize,
        stop: &CancellationToken,
        handle: F,
    ) where
        Q: WireMessage,
        R: WireMessage,
        F: Fn(Decoded<Q>) -> Fut,
        Fut: Future<Output = R> + Send + 'static,
    {
        let slots = Arc::new(Semaphore::new(in_flight));
        loop {
            let message = tokio::select! {
                _ = stop.cancelled() => break,
                message = requests.next() => match message {
                    Some(message) => message,
                    None => break,
                },
            };
            let decoded = match Envelope::decode::<Q>(&message.payload, self.decode_limit) {
                Ok(decoded) => decoded,
                Err(error) => {
                    self.refuse::<Q>(&message.subject, message.reply.as_ref(), error)
                        .await;
                    continue;
                }
            };
            let slot = slots
                .clone()
                .acquire_owned()
                .await
                .expect("the semaphore is never closed");
            let span =
                tracing::debug_span!("request", subject = %message.subject, r#type = Q::TYPE);
            telemetry::follow_trace_context(&decoded.envelope, &span);
            let answer = handle(decoded);
            let bus = self.clone();
            tokio::spawn(
                async move {
                    let reply = answer.await;
                    if let Some(to) = message.reply
                        && let Err(error) = bus.reply(&to, &reply).await
                    {
                        tracing::warn!(%error, "cannot send a reply");
                    }
                    drop(slot);
                }
                .instrument(span),
            );
        }
    }

    async fn refuse<Q: WireMessage>(
        &self,
        subject: &str,
        reply: Option<&Subject>,
        error: DecodeError,
    ) {
        metrics::bus_rejected(Q::TYPE, error.kind());
        tracing::warn!(subject, expected = Q::TYPE, %error, "refused a request");
        if let Some(to) = reply {
            let refusal = RequestRejected {
                kind: error.kind().into(),
                reason: error.to_string(),
            };
            if let Err(error) = self.reply(to, &refusal).await {
                tracing::warn!(%error, "cannot send a refusal");
            }
        }
    }
}

impl<M: WireMessage> TypedSubscription<M> {
    /// The next well-formed message; `None` when the subscription ends.
    pub async fn next(&mut self) -> Option<Received<M>> {
        loop {
            let raw = self.inner.next().await?;
            match Envelope::decode::<M>(&raw.payload, self.decode_limit) {
                Ok(Decoded { envelope, message }) => {
                    return Some(Received {
                        subject: raw.subject,
                        envelope,
                        message,
                        reply: raw.reply,
                    });
                }
                Err(error) => {
                    metrics::bus_rejected(M::TYPE, error.kind());
                    tracing::warn!(subject = %raw.subject, expected = M::TYPE, %error, "rejected a message");
                }
            }
        }
    }
}
