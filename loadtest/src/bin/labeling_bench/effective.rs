//! What labeling has committed to a cluster's effective stream, as the benchmark follows it:
//! each entity's latest labels as far as the benchmark reads them, when they arrived, and the
//! appends that carried them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bulkhead_loadtest::eventlog::follow_stream;
use bulkhead_runtime::bus::TypedBus;
use bulkhead_schema::messages::eventlog::{NewEvent, RecordedEvent};
use bulkhead_schema::messages::labeling::{EntityKind, LabelingEvent};
use tokio::task::JoinHandle;

/// The label key the benchmark's profile assigns, and its edits change.
pub const EDITED_KEY: &str = "loc";

/// An entity's labels as last committed.
pub struct Entity {
    pub kind: EntityKind,
    pub managed: bool,
    /// The value of its [`EDITED_KEY`] label.
    pub edited: Option<String>,
    /// How many label keys it has.
    pub keys: usize,
    pub committed: Instant,
}

/// One append of labeling's output: its events as the log recorded them.
struct Append {
    key: String,
    events: Vec<NewEvent>,
}

#[derive(Default)]
pub struct Effective {
    /// The entities labelled now (not removed since), by uid.
    pub entities: HashMap<String, Entity>,
    /// Entities' labels committed, all told: an entity written twice counts twice.
    pub writes: u64,
    /// Encoded bytes per entity of each `EffectiveLabels` event.
    pub bytes_per_entity: Vec<usize>,
    /// The appends since [`Effective::take_appends`] last took them.
    appends: Vec<Append>,
    /// Why following the stream stopped, if it did.
    pub stopped: Option<String>,
}

impl Effective {
    fn record(&mut self, events: Vec<RecordedEvent>, arrived: Instant) {
        for event in events {
            if let Ok(LabelingEvent::EffectiveLabels { entities, .. }) =
                rmp_serde::from_slice::<LabelingEvent>(&event.data)
            {
                if !entities.is_empty() {
                    self.bytes_per_entity
                        .push(event.data.len() / entities.len());
                }
                for labels in entities {
                    self.writes += 1;
                    // Gone, or no longer at the top of its owner chain (a replica set reported
                    // before its deployment): labelled no more.
                    if labels.removed {
                        self.entities.remove(&labels.entity.uid);
                        continue;
                    }
                    let entity = Entity {
                        kind: labels.entity.kind,
                        managed: labels.managed,
                        edited: labels.labels.get(EDITED_KEY).map(|l| l.value.clone()),
                        keys: labels.labels.len(),
                        committed: arrived,
                    };
                    self.entities.insert(labels.entity.uid, entity);
                }
            }
            // Events of one append are consecutive and share its idempotency key.
            let new_event = NewEvent {
                event_type: event.event_type,
                data: event.data,
            };
            match self.appends.last_mut() {
                Some(append) if append.key == event.idempotency_key => {
                    append.events.push(new_event);
                }
                _ => self.appends.push(Append {
                    key: event.idempotency_key,
                    events: vec![new_event],
                }),
            }
        }
    }

    /// The events of each append recorded since the last call, in order.
    pub fn take_appends(&mut self) -> Vec<Vec<NewEvent>> {
        std::mem::take(&mut self.appends)
            .into_iter()
            .map(|append| append.events)
            .collect()
    }

    /// When the first and the last of `uids` had their labels committed with `edited` as the
    /// value of [`EDITED_KEY`] and `keys` label keys in all, no earlier than `since`; none while
    /// one has not.
    pub fn all_committed(
        &self,
        uids: &[String],
        edited: &str,
        keys: usize,
        since: Instant,
    ) -> Option<Span> {
        let mut span: Option<Span> = None;
        for uid in uids {
            let entity = self.entities.get(uid)?;
            let labelled = entity.managed
                && entity.edited.as_deref() == Some(edited)
                && entity.keys == keys
                && entity.committed >= since;
            if !labelled {
                return None;
            }
            let at = entity.committed;
            span = Some(span.map_or(
                Span {
                    first: at,
                    last: at,
                },
                |s| Span {
                    first: s.first.min(at),
                    last: s.last.max(at),
                },
            ));
        }
        span
    }
}

/// When the first and the last of a set of entities' labels arrived committed.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    pub first: Instant,
    pub last: Instant,
}

/// Follows `cluster_id`'s effective stream into an [`Effective`] until the task is aborted;
/// should it stop, [`Effective::stopped`] says why.
pub fn follow(bus: TypedBus, cluster_id: &str) -> (Arc<Mutex<Effective>>, JoinHandle<()>) {
    let effective = Arc::new(Mutex::new(Effective::default()));
    let recorded = effective.clone();
    let stopped = effective.clone();
    let stream = LabelingEvent::effective_stream(cluster_id);
    let task = tokio::spawn(async move {
        let followed = follow_stream(bus, stream, move |events, arrived| {
            recorded.lock().unwrap().record(events, arrived);
        })
        .await;
        stopped.lock().unwrap().stopped = Some(match followed {
            Ok(()) => "the subscription to committed events ended".into(),
            Err(error) => format!("{error:#}"),
        });
    });
    (effective, task)
}
