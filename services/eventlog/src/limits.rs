//! What the log accepts, checked before an append is proposed so that a bad request costs no
//! Raft round and changes nothing (DESIGN.md, principle 10).

use bulkhead_schema::messages::eventlog::AppendRequest;
use serde::{Deserialize, Serialize};

/// Longest stream name, event type or idempotency key, in bytes. They become sled keys and are
/// repeated in every recorded event, so they stay short.
pub const MAX_NAME_BYTES: usize = 256;

/// Size limits of appends. An event's size is its `event_type` plus its `data`; an append's size
/// is the sum of its events' sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_batch_events: usize,
    pub max_batch_bytes: usize,
}

impl Default for Limits {
    /// A whole append, in its envelope, must fit NATS's default 1 MiB `max_payload`.
    fn default() -> Self {
        Self {
            max_event_bytes: 64 * 1024,
            max_batch_events: 1_000,
            max_batch_bytes: 512 * 1024,
        }
    }
}

/// Why an append was refused before it reached the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("{field} is empty")]
    EmptyName { field: &'static str },
    #[error("{field} is {len} bytes, more than the {limit} allowed")]
    NameTooLong {
        field: &'static str,
        len: usize,
        limit: usize,
    },
    #[error("the append has no events")]
    NoEvents,
    #[error("the append has {count} events, more than the {limit} allowed")]
    TooManyEvents { count: usize, limit: usize },
    #[error("event {index} is {size} bytes, more than the {limit} allowed")]
    EventTooLarge {
        index: usize,
        size: usize,
        limit: usize,
    },
    #[error("the append is {size} bytes, more than the {limit} allowed")]
    BatchTooLarge { size: usize, limit: usize },
}

impl AppendError {
    /// A stable label for metrics and for `AppendReply::Rejected::kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::EmptyName { .. } => "empty_name",
            Self::NameTooLong { .. } => "name_too_long",
            Self::NoEvents => "no_events",
            Self::TooManyEvents { .. } => "too_many_events",
            Self::EventTooLarge { .. } => "event_too_large",
            Self::BatchTooLarge { .. } => "batch_too_large",
        }
    }
}

/// Checks an append against the limits; the first broken rule wins.
pub fn validate(request: &AppendRequest, limits: &Limits) -> Result<(), AppendError> {
    check_name("stream", &request.stream)?;
    check_name("idempotency_key", &request.idempotency_key)?;
    if request.events.is_empty() {
        return Err(AppendError::NoEvents);
    }
    if request.events.len() > limits.max_batch_events {
        return Err(AppendError::TooManyEvents {
            count: request.events.len(),
            limit: limits.max_batch_events,
        });
    }
    let mut total = 0usize;
    for (index, event) in request.events.iter().enumerate() {
        check_name("event_type", &event.event_type)?;
        let size = event.event_type.len() + event.data.len();
        if size > limits.max_event_bytes {
            return Err(AppendError::EventTooLarge {
                index,
                size,
                limit: limits.max_event_bytes,
            });
        }
        total += size;
    }
    if total > limits.max_batch_bytes {
        return Err(AppendError::BatchTooLarge {
            size: total,
            limit: limits.max_batch_bytes,
        });
    }
    Ok(())
}

fn check_name(field: &'static str, value: &str) -> Result<(), AppendError> {
    if value.is_empty() {
        return Err(AppendError::EmptyName { field });
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(AppendError::NameTooLong {
            field,
            len: value.len(),
            limit: MAX_NAME_BYTES,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use bulkhead_schema::messages::eventlog::{ExpectedVersion, NewEvent};

    use super::*;

    fn mk_event(size: usize) -> NewEvent {
        NewEvent {
            event_type: "t".into(),
            data: vec![0; size - 1],
        }
    }

    fn mk_append(events: Vec<NewEvent>) -> AppendRequest {
        AppendRequest {
            stream: "cluster/1".into(),
            expected_version: ExpectedVersion::Any,
            idempotency_key: "k1".into(),
            events,
        }
    }

    fn limits() -> Limits {
        Limits {
            max_event_bytes: 10,
            max_batch_events: 3,
            max_batch_bytes: 25,
        }
    }

    #[test]
    fn accepts_an_append_within_the_limits() {
        assert_eq!(
            validate(
                &mk_append(vec![mk_event(10), mk_event(10), mk_event(5)]),
                &limits()
            ),
            Ok(())
        );
    }

    #[test]
    fn rejects_an_oversized_event() {
        let err = validate(&mk_append(vec![mk_event(1), mk_event(11)]), &limits()).unwrap_err();
        assert_eq!(
            err,
            AppendError::EventTooLarge {
                index: 1,
                size: 11,
                limit: 10
            }
        );
        assert_eq!(err.kind(), "event_too_large");
        assert_eq!(
            err.to_string(),
            "event 1 is 11 bytes, more than the 10 allowed"
        );
    }

    #[test]
    fn rejects_too_many_events() {
        let err = validate(&mk_append(vec![mk_event(1); 4]), &limits()).unwrap_err();
        assert_eq!(err, AppendError::TooManyEvents { count: 4, limit: 3 });
        assert_eq!(err.kind(), "too_many_events");
    }

    #[test]
    fn rejects_a_batch_over_its_byte_limit() {
        let err = validate(
            &mk_append(vec![mk_event(10), mk_event(10), mk_event(6)]),
            &limits(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            AppendError::BatchTooLarge {
                size: 26,
                limit: 25
            }
        );
        assert_eq!(err.kind(), "batch_too_large");
    }

    #[test]
    fn rejects_an_empty_append() {
        let err = validate(&mk_append(vec![]), &limits()).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            ("no_events", "the append has no events")
        );
    }

    #[test]
    fn rejects_empty_and_overlong_names() {
        let mut request = mk_append(vec![mk_event(1)]);
        request.idempotency_key.clear();
        let err = validate(&request, &limits()).unwrap_err();
        assert_eq!(
            (err.kind(), err.to_string().as_str()),
            ("empty_name", "idempotency_key is empty")
        );

        let mut request = mk_append(vec![mk_event(1)]);
        request.stream = "s".repeat(MAX_NAME_BYTES + 1);
        let err = validate(&request, &limits()).unwrap_err();
        assert_eq!(
            err,
            AppendError::NameTooLong {
                field: "stream",
                len: MAX_NAME_BYTES + 1,
                limit: MAX_NAME_BYTES
            }
        );
        assert_eq!(err.kind(), "name_too_long");

        let mut request = mk_append(vec![mk_event(1)]);
        request.events[0].event_type.clear();
        assert_eq!(
            validate(&request, &limits()),
            Err(AppendError::EmptyName {
                field: "event_type"
            })
        );
    }
}
