use schemars::JsonSchema;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// The largest message a decoder accepts unless told otherwise: NATS's default `max_payload`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1024 * 1024;

/// A message type that may travel on the bus.
///
/// `TYPE` names it on the wire; `VERSION` is the newest payload version this build writes and
/// reads. A change that older readers cannot ignore bumps `VERSION`.
pub trait WireMessage: Serialize + DeserializeOwned + JsonSchema + Send + Sync + 'static {
    const TYPE: &'static str;
    const VERSION: u16;
}

/// The versioned envelope around every message on the bus.
///
/// The payload is itself MessagePack, kept as opaque bytes so that a reader can check the type
/// and version (and route, count or drop the message) before decoding the body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Envelope {
    /// Message type, e.g. `health.ServiceHeartbeat`.
    #[serde(rename = "type")]
    pub message_type: String,
    /// Payload schema version.
    pub version: u16,
    /// Unique message id (a UUID). Commands use it as their idempotency key: a retry re-sends the
    /// same id.
    pub id: String,
    /// W3C trace context `traceparent` header of the sender's span.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
    /// W3C trace context `tracestate` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
    /// When the sender built the message, in milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// The message itself, MessagePack-encoded (maps with field names).
    #[serde(with = "serde_bytes")]
    #[schemars(with = "Vec<u8>")]
    pub payload: Vec<u8>,
}

/// An envelope together with the message decoded from it.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded<M> {
    pub envelope: Envelope,
    pub message: M,
}

#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("cannot encode {message_type}: {source}")]
    Serialize {
        message_type: &'static str,
        source: rmp_serde::encode::Error,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("malformed envelope: {0}")]
    MalformedEnvelope(rmp_serde::decode::Error),
    #[error("malformed {message_type} payload: {source}")]
    MalformedPayload {
        message_type: String,
        source: rmp_serde::decode::Error,
    },
    #[error("expected a {expected} message, got {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },
    #[error(
        "{message_type} version {found} is newer than the newest this build reads ({supported})"
    )]
    UnsupportedVersion {
        message_type: &'static str,
        found: u16,
        supported: u16,
    },
}

impl DecodeError {
    /// A short, stable label for metrics (`reason="..."`).
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooLarge { .. } => "too_large",
            DecodeError::MalformedEnvelope(_) => "malformed_envelope",
            DecodeError::MalformedPayload { .. } => "malformed_payload",
            DecodeError::WrongType { .. } => "wrong_type",
            DecodeError::UnsupportedVersion { .. } => "unsupported_version",
        }
    }
}

impl Envelope {
    /// Wraps `message` in a new envelope with a fresh id and the current time.
    pub fn wrap<M: WireMessage>(message: &M) -> Result<Self, EncodeError> {
        let sent_at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        Self::wrap_with(message, uuid::Uuid::now_v7().to_string(), sent_at_ms)
    }

    /// Wraps `message` with a given id and time (retries keep the id; golden vectors fix both).
    pub fn wrap_with<M: WireMessage>(
        message: &M,
        id: String,
        sent_at_ms: u64,
    ) -> Result<Self, EncodeError> {
        let payload =
            rmp_serde::to_vec_named(message).map_err(|source| EncodeError::Serialize {
                message_type: M::TYPE,
                source,
            })?;
        Ok(Envelope {
            message_type: M::TYPE.to_owned(),
            version: M::VERSION,
            id,
            traceparent: None,
            tracestate: None,
            sent_at_ms,
            payload,
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        // An envelope holds only strings, integers and bytes: encoding cannot fail.
        rmp_serde::to_vec_named(self).expect("an envelope always encodes")
    }

    /// Decodes an envelope, refusing anything longer than `limit` bytes before parsing it.
    pub fn from_bytes(bytes: &[u8], limit: usize) -> Result<Self, DecodeError> {
        if bytes.len() > limit {
            return Err(DecodeError::TooLarge {
                size: bytes.len(),
                limit,
            });
        }
        rmp_serde::from_slice(bytes).map_err(DecodeError::MalformedEnvelope)
    }

    /// Decodes the payload as `M`, checking the type name and version first.
    pub fn open<M: WireMessage>(&self) -> Result<M, DecodeError> {
        if self.message_type != M::TYPE {
            return Err(DecodeError::WrongType {
                expected: M::TYPE,
                found: self.message_type.clone(),
            });
        }
        if self.version > M::VERSION {
            return Err(DecodeError::UnsupportedVersion {
                message_type: M::TYPE,
                found: self.version,
                supported: M::VERSION,
            });
        }
        rmp_serde::from_slice(&self.payload).map_err(|source| DecodeError::MalformedPayload {
            message_type: self.message_type.clone(),
            source,
        })
    }

    /// Encodes `message` in a fresh envelope, ready to publish.
    pub fn encode<M: WireMessage>(message: &M) -> Result<Vec<u8>, EncodeError> {
        Ok(Self::wrap(message)?.to_bytes())
    }

    /// Decodes bytes that must hold an `M`.
    pub fn decode<M: WireMessage>(bytes: &[u8], limit: usize) -> Result<Decoded<M>, DecodeError> {
        let envelope = Self::from_bytes(bytes, limit)?;
        let message = envelope.open()?;
        Ok(Decoded { envelope, message })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::health::{ServiceHeartbeat, ServiceState};

    fn mk_heartbeat() -> ServiceHeartbeat {
        ServiceHeartbeat {
            service: "api".into(),
            instance: "api-0".into(),
            state: ServiceState::Ready,
            detail: None,
            build_version: "0.1.0".into(),
            started_at_ms: 1,
        }
    }

    #[test]
    fn round_trip_keeps_message_and_metadata() {
        let hb = mk_heartbeat();
        let env = Envelope::wrap(&hb).unwrap();
        let decoded =
            Envelope::decode::<ServiceHeartbeat>(&env.to_bytes(), DEFAULT_MAX_MESSAGE_BYTES)
                .unwrap();
        assert_eq!(decoded.message, hb);
        assert_eq!(decoded.envelope, env);
        assert!(uuid::Uuid::parse_str(&env.id).is_ok());
    }

    #[test]
    fn oversized_input_is_refused_before_parsing() {
        let bytes = Envelope::encode(&mk_heartbeat()).unwrap();
        let err = Envelope::from_bytes(&bytes, bytes.len() - 1).unwrap_err();
        assert!(
            matches!(err, DecodeError::TooLarge { size, limit } if size == bytes.len() && limit == size - 1)
        );
        assert_eq!(err.kind(), "too_large");
    }

    #[test]
    fn garbage_is_a_malformed_envelope() {
        let err = Envelope::from_bytes(b"\xc1not msgpack", DEFAULT_MAX_MESSAGE_BYTES).unwrap_err();
        assert_eq!(err.kind(), "malformed_envelope");
    }

    #[test]
    fn wrong_type_and_newer_version_are_refused() {
        let mut env = Envelope::wrap(&mk_heartbeat()).unwrap();
        env.message_type = "something.Else".into();
        assert_eq!(
            env.open::<ServiceHeartbeat>().unwrap_err().kind(),
            "wrong_type"
        );

        let mut env = Envelope::wrap(&mk_heartbeat()).unwrap();
        env.version = ServiceHeartbeat::VERSION + 1;
        assert_eq!(
            env.open::<ServiceHeartbeat>().unwrap_err().kind(),
            "unsupported_version"
        );
    }

    #[test]
    fn payload_of_the_wrong_shape_is_malformed() {
        let mut env = Envelope::wrap(&mk_heartbeat()).unwrap();
        env.payload = rmp_serde::to_vec_named(&42u32).unwrap();
        assert_eq!(
            env.open::<ServiceHeartbeat>().unwrap_err().kind(),
            "malformed_payload"
        );
    }
}
