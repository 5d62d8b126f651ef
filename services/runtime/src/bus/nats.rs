use std::path::PathBuf;
use std::time::Duration;

use async_nats::client::{PublishErrorKind, RequestErrorKind};
use bulkhead_schema::{DEFAULT_MAX_MESSAGE_BYTES, Subject};
use bytes::Bytes;
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Bus, BusError, BusMessage, Subscription};
use crate::metrics;

/// How to reach NATS. Every field can come from the config file, `BULKHEAD_NATS_*` variables
/// or flags (see [`crate::config`]).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct NatsOptions {
    /// Server URL(s), comma separated: `nats://host:4222,nats://other:4222`.
    pub url: String,
    /// A `.creds` file (JWT + nkey seed) for decentralised auth.
    pub credentials_file: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<String>,
    pub token: Option<String>,
    /// Root CA certificates (PEM) to verify the server with.
    pub tls_ca_file: Option<PathBuf>,
    /// Client certificate and key (PEM) for mutual TLS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Refuse to talk to a server without TLS.
    pub require_tls: bool,
    /// Name shown in NATS's connection list.
    pub client_name: String,
}

impl Default for NatsOptions {
    fn default() -> Self {
        NatsOptions {
            url: "nats://127.0.0.1:4222".into(),
            credentials_file: None,
            user: None,
            password: None,
            token: None,
            tls_ca_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            require_tls: false,
            client_name: "bulkhead".into(),
        }
    }
}

/// The bus over a NATS server, as run by `bulkhead serve` and the compose stack. Reconnects
/// forever with back-off; subscriptions survive reconnects (async-nats re-subscribes).
#[derive(Clone)]
pub struct NatsBus {
    client: async_nats::Client,
}

impl NatsBus {
    pub async fn connect(options: &NatsOptions) -> Result<Self, BusError> {
        let mut connect = async_nats::ConnectOptions::new()
            .name(&options.client_name)
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(5))
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting")
                    }
                    async_nats::Event::SlowConsumer(sid) => {
                        metrics::bus_dropped("nats", "slow_consumer");
                        tracing::warn!(sid, "NATS: slow consumer; messages dropped");
                    }
                    other => tracing::info!(event = %other, "NATS event"),
                }
            });
        if let Some(path) = &options.credentials_file {
            connect = connect.credentials_file(path).await.map_err(|e| {
                BusError::Connect(format!("credentials file {}: {e}", path.display()))
            })?;
        }
        if let (Some(user), Some(password)) = (&options.user, &options.password) {
            connect = connect.user_and_password(user.clone(), password.clone());
        }
        if let Some(token) = &options.token {
            connect = connect.token(token.clone());
        }
        if let Some(ca) = &options.tls_ca_file {
            connect = connect.add_root_certificates(ca.clone());
        }
        match (&options.tls_cert_file, &options.tls_key_file) {
            (Some(cert), Some(key)) => {
                connect = connect.add_client_certificate(cert.clone(), key.clone())
            }
            (None, None) => {}
            _ => {
                return Err(BusError::Connect(
                    "TLS client certificate and key go together".into(),
                ));
            }
        }
        connect = connect.require_tls(options.require_tls);
        let servers: Vec<async_nats::ServerAddr> = options
            .url
            .split(',')
            .map(|u| {
                u.trim()
                    .parse()
                    .map_err(|e| BusError::Connect(format!("bad NATS URL {u:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let client = connect
            .connect(servers)
            .await
            .map_err(|e| BusError::Connect(e.to_string()))?;
        Ok(NatsBus { client })
    }

    /// Refuses a payload the server would answer by closing the connection.
    fn check_size(&self, size: usize) -> Result<(), BusError> {
        let limit = self.max_payload();
        if size > limit {
            Err(BusError::TooLarge { size, limit })
        } else {
            Ok(())
        }
    }

    fn stream(subscriber: async_nats::Subscriber) -> Subscription {
        subscriber
            .map(|m| BusMessage {
                subject: m.subject.to_string(),
                payload: m.payload,
                reply: m.reply.and_then(|r| Subject::received(r.as_str()).ok()),
            })
            .boxed()
    }
}

#[async_trait::async_trait]
impl Bus for NatsBus {
    async fn publish(&self, subject: &Subject, payload: Bytes) -> Result<(), BusError> {
        let size = payload.len();
        self.check_size(size)?;
        self.client
            .publish(subject.to_string(), payload)
            .await
            .map_err(|e| match e.kind() {
                PublishErrorKind::MaxPayloadExceeded => BusError::TooLarge {
                    size,
                    limit: self.max_payload(),
                },
                _ => BusError::Transport(e.to_string()),
            })
    }

    async fn subscribe(&self, subject: &Subject) -> Result<Subscription, BusError> {
        let subscriber = self
            .client
            .subscribe(subject.to_string())
            .await
            .map_err(|e| BusError::Transport(e.to_string()))?;
        Ok(Self::stream(subscriber))
    }

    async fn queue_subscribe(
        &self,
        subject: &Subject,
        group: &str,
    ) -> Result<Subscription, BusError> {
        let subscriber = self
            .client
            .queue_subscribe(subject.to_string(), group.to_owned())
            .await
            .map_err(|e| BusError::Transport(e.to_string()))?;
        Ok(Self::stream(subscriber))
    }

    async fn request(
        &self,
        subject: &Subject,
        payload: Bytes,
        timeout: Duration,
    ) -> Result<BusMessage, BusError> {
        let size = payload.len();
        self.check_size(size)?;
        let request = async_nats::Request::new()
            .payload(payload)
            .timeout(Some(timeout));
        match self.client.send_request(subject.to_string(), request).await {
            Ok(m) => Ok(BusMessage {
                subject: m.subject.to_string(),
                payload: m.payload,
                reply: None,
            }),
            Err(e) => Err(match e.kind() {
                RequestErrorKind::NoResponders => BusError::NoResponders(subject.to_string()),
                RequestErrorKind::TimedOut => BusError::Timeout {
                    subject: subject.to_string(),
                    timeout,
                },
                RequestErrorKind::MaxPayloadExceeded => BusError::TooLarge {
                    size,
                    limit: self.max_payload(),
                },
                _ => BusError::Transport(e.to_string()),
            }),
        }
    }

    async fn flush(&self) -> Result<(), BusError> {
        self.client
            .flush()
            .await
            .map_err(|e| BusError::Transport(e.to_string()))
    }

    fn max_payload(&self) -> usize {
        // Before the first connection (connect retries in the background) the server has not
        // said its limit yet: assume NATS's default rather than refusing everything.
        match self.client.server_info().max_payload {
            0 => DEFAULT_MAX_MESSAGE_BYTES,
            limit => limit,
        }
    }
}
