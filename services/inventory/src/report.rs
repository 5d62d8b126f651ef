//! Turning a cluster's report into appends, purely: each observation becomes one event, the
//! events are cut into appends within the log's limits, and at append time the ones that would
//! change nothing are left out.
//!
//! The cut is made over all observations, before leaving any out, so that it depends on the
//! report alone: a re-sent report is cut the same way, and each piece keeps its idempotency key.

use std::collections::HashMap;

use bulkhead_schema::messages::eventlog::NewEvent;
use bulkhead_schema::messages::inventory::{InventoryEvent, Observation, ResourceKind};

use crate::index::{Index, validate_observation};

/// The event log's append limits (`bulkhead-eventlog`'s defaults; a service never depends on
/// another's crate). An event's size is its type plus its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AppendLimits {
    pub(crate) max_batch_events: usize,
    pub(crate) max_batch_bytes: usize,
    pub(crate) max_event_bytes: usize,
}

impl Default for AppendLimits {
    fn default() -> Self {
        AppendLimits {
            max_batch_events: 1_000,
            max_batch_bytes: 512 * 1024,
            max_event_bytes: 64 * 1024,
        }
    }
}

/// One observation, as the event it becomes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pending {
    kind: ResourceKind,
    uid: String,
    /// `None` for a deletion.
    resource_version: Option<String>,
    event: NewEvent,
}

impl Pending {
    fn size(&self) -> usize {
        self.event.event_type.len() + self.event.data.len()
    }
}

/// The log's form of an inventory event.
pub(crate) fn new_event(event: &InventoryEvent) -> NewEvent {
    NewEvent {
        event_type: InventoryEvent::EVENT_TYPE.into(),
        data: rmp_serde::to_vec_named(event).expect("inventory events encode"),
    }
}

/// What a report's observations become.
#[derive(Debug)]
pub(crate) struct Encoded {
    pub(crate) pending: Vec<Pending>,
    /// Observations too large for one event: left out (and counted), so that one oversized
    /// object cannot block the rest of its cluster.
    pub(crate) too_large: usize,
}

/// Encodes a report's observations as events of `cluster_id`. A malformed observation (no uid,
/// details of another kind) refuses the whole report.
pub(crate) fn encode(
    cluster_id: &str,
    observations: &[Observation],
    limits: &AppendLimits,
) -> Result<Encoded, String> {
    let mut encoded = Encoded {
        pending: Vec::with_capacity(observations.len()),
        too_large: 0,
    };
    for observation in observations {
        let pending = match observation {
            Observation::Applied(object) => {
                validate_observation(object)?;
                Pending {
                    kind: object.kind,
                    uid: object.uid.clone(),
                    resource_version: Some(object.resource_version.clone()),
                    event: new_event(&InventoryEvent::ObjectApplied {
                        cluster_id: cluster_id.to_owned(),
                        object: object.clone(),
                    }),
                }
            }
            Observation::Deleted { kind, uid } => {
                if uid.is_empty() {
                    return Err(format!("a deleted {} without uid", kind.kube_kind()));
                }
                Pending {
                    kind: *kind,
                    uid: uid.clone(),
                    resource_version: None,
                    event: new_event(&InventoryEvent::ObjectDeleted {
                        cluster_id: cluster_id.to_owned(),
                        kind: *kind,
                        uid: uid.clone(),
                    }),
                }
            }
        };
        if pending.size() > limits.max_event_bytes {
            tracing::warn!(
                cluster_id,
                kind = pending.kind.kube_kind(),
                uid = pending.uid,
                size = pending.size(),
                "observation too large for the event log; left out"
            );
            encoded.too_large += 1;
        } else {
            encoded.pending.push(pending);
        }
    }
    Ok(encoded)
}

/// Cuts events into consecutive runs that each fit one append.
pub(crate) fn chunks<'a>(pending: &'a [Pending], limits: &AppendLimits) -> Vec<&'a [Pending]> {
    let mut chunks = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, p) in pending.iter().enumerate() {
        if i > start
            && (i - start == limits.max_batch_events || bytes + p.size() > limits.max_batch_bytes)
        {
            chunks.push(&pending[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += p.size();
    }
    if start < pending.len() {
        chunks.push(&pending[start..]);
    }
    chunks
}

/// The events of `chunk` that change the cluster as the index holds it: an object applied at
/// the resource version already held, or the deletion of an object not held, changes nothing.
/// Earlier observations of the chunk count, as if applied.
pub(crate) fn changes(index: &Index, cluster_id: &str, chunk: &[Pending]) -> Vec<NewEvent> {
    let mut overlay: HashMap<(ResourceKind, &str), Option<&str>> = HashMap::new();
    let mut events = Vec::new();
    for p in chunk {
        let key = (p.kind, p.uid.as_str());
        let held = overlay
            .get(&key)
            .copied()
            .unwrap_or_else(|| index.resource_version(cluster_id, p.kind, &p.uid));
        let wanted = p.resource_version.as_deref();
        let unchanged = match wanted {
            Some(version) => held == Some(version),
            None => held.is_none(),
        };
        if !unchanged {
            overlay.insert(key, wanted);
            events.push(p.event.clone());
        }
    }
    events
}

#[cfg(test)]
mod tests {
    use bulkhead_runtime::projection::Projection;
    use bulkhead_schema::messages::eventlog::RecordedEvent;
    use bulkhead_schema::testing::{mk_pod, uid};

    use super::*;
    use crate::index::tests::{mk_cluster_created, recorded};

    const C1: &str = "c1";

    fn applied(name: &str, version: &str) -> Observation {
        let mut pod = mk_pod(name, "shop", None);
        pod.resource_version = version.into();
        Observation::Applied(pod)
    }

    fn deleted(name: &str) -> Observation {
        Observation::Deleted {
            kind: ResourceKind::Pod,
            uid: uid(name),
        }
    }

    fn index_with(observations: &[Observation]) -> Index {
        let mut index = Index::default();
        let mut events: Vec<RecordedEvent> = vec![recorded(C1, 1, &mk_cluster_created(C1, "one"))];
        let encoded = encode(C1, observations, &AppendLimits::default()).unwrap();
        for (i, p) in encoded.pending.iter().enumerate() {
            let mut event = events[0].clone();
            event.stream_version = i as u64 + 2;
            event.data = p.event.data.clone();
            events.push(event);
        }
        for event in &events {
            index.apply(event);
        }
        index
    }

    fn decoded(events: &[NewEvent]) -> Vec<InventoryEvent> {
        events
            .iter()
            .map(|e| rmp_serde::from_slice(&e.data).unwrap())
            .collect()
    }

    #[test]
    fn unchanged_objects_and_unknown_deletions_append_nothing() {
        let index = index_with(&[applied("p1", "5")]);
        let report = [applied("p1", "5"), deleted("p-unknown")];
        let encoded = encode(C1, &report, &AppendLimits::default()).unwrap();
        assert!(changes(&index, C1, &encoded.pending).is_empty());

        let report = [applied("p1", "6"), deleted("p1"), applied("p2", "1")];
        let encoded = encode(C1, &report, &AppendLimits::default()).unwrap();
        let events = decoded(&changes(&index, C1, &encoded.pending));
        assert_eq!(
            events.len(),
            3,
            "a new version, a known deletion, a new object"
        );
    }

    #[test]
    fn earlier_observations_of_a_chunk_count() {
        let index = index_with(&[]);
        // created then deleted within one report: both matter
        let report = [
            applied("p1", "1"),
            deleted("p1"),
            deleted("p1"),
            applied("p2", "1"),
            applied("p2", "1"),
        ];
        let encoded = encode(C1, &report, &AppendLimits::default()).unwrap();
        let events = decoded(&changes(&index, C1, &encoded.pending));
        assert!(
            matches!(&events[0], InventoryEvent::ObjectApplied { object, .. } if object.uid == uid("p1"))
        );
        assert!(
            matches!(&events[1], InventoryEvent::ObjectDeleted { uid: deleted, .. } if *deleted == uid("p1"))
        );
        assert!(
            matches!(&events[2], InventoryEvent::ObjectApplied { object, .. } if object.uid == uid("p2"))
        );
        assert_eq!(
            events.len(),
            3,
            "the repeated deletion and application are no-ops"
        );
    }

    #[test]
    fn events_name_the_reporting_cluster() {
        let encoded = encode(
            "mine",
            &[applied("p1", "1"), deleted("p2")],
            &AppendLimits::default(),
        )
        .unwrap();
        for event in decoded(
            &encoded
                .pending
                .iter()
                .map(|p| p.event.clone())
                .collect::<Vec<_>>(),
        ) {
            match event {
                InventoryEvent::ObjectApplied { cluster_id, .. }
                | InventoryEvent::ObjectDeleted { cluster_id, .. } => {
                    assert_eq!(cluster_id, "mine")
                }
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_observations_refuse_the_report() {
        let mut pod = mk_pod("p1", "shop", None);
        pod.kind = ResourceKind::Node;
        let err = encode(
            C1,
            &[applied("p0", "1"), Observation::Applied(pod)],
            &AppendLimits::default(),
        )
        .unwrap_err();
        assert!(err.contains("details of another kind"), "{err}");
        let no_uid = Observation::Deleted {
            kind: ResourceKind::Pod,
            uid: String::new(),
        };
        assert!(encode(C1, &[no_uid], &AppendLimits::default()).is_err());
        let mut nameless = mk_pod("p1", "shop", None);
        nameless.name.clear();
        assert!(
            encode(
                C1,
                &[Observation::Applied(nameless)],
                &AppendLimits::default()
            )
            .is_err()
        );
    }

    #[test]
    fn oversized_observations_are_left_out() {
        let mut big = mk_pod("big", "shop", None);
        big.annotations
            .insert("bulkhead.io/x".into(), "x".repeat(70 * 1024));
        let encoded = encode(
            C1,
            &[applied("p1", "1"), Observation::Applied(big), deleted("p2")],
            &AppendLimits::default(),
        )
        .unwrap();
        assert_eq!(encoded.too_large, 1);
        assert_eq!(encoded.pending.len(), 2);
    }

    #[test]
    fn chunks_respect_event_and_byte_limits_and_depend_on_the_report_only() {
        let report: Vec<Observation> = (0..25).map(|i| applied(&format!("p{i:02}"), "1")).collect();
        let encoded = encode(C1, &report, &AppendLimits::default()).unwrap();
        let size = encoded.pending[0].size();
        let limits = AppendLimits {
            max_batch_events: 10,
            max_batch_bytes: size * 4 + size / 2,
            max_event_bytes: size * 2,
        };
        let cut = chunks(&encoded.pending, &limits);
        assert_eq!(
            cut.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![4, 4, 4, 4, 4, 4, 1],
            "bytes bind first"
        );
        let by_count = AppendLimits {
            max_batch_bytes: usize::MAX,
            ..limits
        };
        assert_eq!(
            chunks(&encoded.pending, &by_count)
                .iter()
                .map(|c| c.len())
                .collect::<Vec<_>>(),
            vec![10, 10, 5]
        );
        assert!(chunks(&[], &limits).is_empty());
        // the same cut whatever the index holds: cutting happens before leaving anything out
        let all: Vec<&Pending> = cut.iter().flat_map(|c| c.iter()).collect();
        assert_eq!(all.len(), 25);
    }
}
