//! Derived output: the queue of changes each cluster's effective stream has yet to receive, and
//! how a run of it becomes one append.
//!
//! ```text
//!  apply(input seq S) ──► changed entities, rejections ──► queue at positions (S, 0), (S, 1), ...
//!                         (an entity already queued moves to its new position: one entry each)
//!  writer (any replica) ──► a prefix of the queue as EffectiveLabels events, `through` = the last
//!                           position each covers ──► append at the stream's version
//!  apply(derived event) ──► the queue drops everything up to `through`
//! ```
//!
//! The queue is part of the projection, so every replica holds the same one, a restart resumes
//! it from the checkpoint, and an entry leaves it only when the log has it. Appends go at the
//! version of `effective/<cluster>` the writer saw (a writer chains them through the queue,
//! each at the version the previous leads to, sending each as soon as it is cut), keyed by
//! that version and the last position covered: of several
//! replicas writing, one append per version gets in; the others are answered its outcome (same
//! cut) or a conflict (another cut), and find their entries gone once they apply it. Nothing is
//! written twice and order is kept. An entity's queued entry is materialised when written,
//! from the current state, which is the state at its position: a later change would have
//! moved it. Events carry their entities in the schema's compact form (`EffectiveTables`:
//! each distinct label and source once per event), and are cut to a size by what each entity
//! adds to that form.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound::{Excluded, Unbounded};

use bulkhead_schema::messages::eventlog::{AppendRequest, ExpectedVersion, NewEvent};
use bulkhead_schema::messages::labeling::{
    EffectiveLabel, EffectiveSize, EntityKind, EntityLabels, EntityRef, LabelSource, LabelingEvent,
    OutputPosition, label_href,
};
use serde::{Deserialize, Serialize};

use crate::index::{Cluster, Index};
use crate::objects::{BULKHEAD_PREFIX, ILLUMIO_PREFIX, Kind, Object};
use crate::resolve::Source;
use bulkhead_runtime::intern::Str;

/// One queued change; small, since a profile edit may queue one per pod of a namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// An entity's labels changed: written as they are when written.
    Labels {
        kind: EntityKind,
        uid: Str,
    },
    Removed(Box<EntityRef>),
    Rejected(Box<Rejection>),
}

/// A namespace's pairing key that linked nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Rejection {
    pub(crate) namespace: String,
    pub(crate) namespace_uid: String,
    pub(crate) reason: String,
}

impl Item {
    /// Rejections first, then entities by kind and uid: with the entity's namespace and name
    /// between the two (`Index::finish`), the order of an input event's changes in the queue,
    /// independent of how a replica found them.
    pub(crate) fn order_key(&self) -> (Option<EntityKind>, &str) {
        match self {
            Item::Rejected(r) => (None, &r.namespace_uid),
            Item::Labels { kind, uid } => (Some(*kind), uid),
            Item::Removed(e) => (Some(e.kind), &e.uid),
        }
    }

    fn entity_key(&self) -> Option<(EntityKind, Str)> {
        match self {
            Item::Rejected(_) => None,
            Item::Labels { kind, uid } => Some((*kind, uid.clone())),
            Item::Removed(e) => Some((e.kind, e.uid.as_str().into())),
        }
    }
}

/// A cluster's output not yet in the log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(from = "OutputRecord", into = "OutputRecord")]
pub(crate) struct Output {
    /// The version of the cluster's effective stream, as applied.
    pub(crate) version: u64,
    queue: BTreeMap<OutputPosition, Item>,
    /// Where each queued entity is.
    queued: HashMap<(EntityKind, Str), OutputPosition>,
}

/// The stored form of an [`Item`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ItemRecord {
    Labels { kind: EntityKind, uid: String },
    Removed(EntityRef),
    Rejected(Rejection),
}

#[derive(Serialize, Deserialize)]
pub(crate) struct OutputRecord {
    version: u64,
    queue: Vec<(OutputPosition, ItemRecord)>,
}

impl From<OutputRecord> for Output {
    fn from(record: OutputRecord) -> Self {
        let mut output = Output {
            version: record.version,
            ..Output::default()
        };
        for (position, item) in record.queue {
            let item = match item {
                ItemRecord::Labels { kind, uid } => Item::Labels {
                    kind,
                    uid: uid.into(),
                },
                ItemRecord::Removed(entity) => Item::Removed(Box::new(entity)),
                ItemRecord::Rejected(rejection) => Item::Rejected(Box::new(rejection)),
            };
            output.put(position, item);
        }
        output
    }
}

impl From<Output> for OutputRecord {
    fn from(output: Output) -> Self {
        let queue = output.queue.into_iter().map(|(position, item)| {
            let item = match item {
                Item::Labels { kind, uid } => ItemRecord::Labels {
                    kind,
                    uid: uid.to_string(),
                },
                Item::Removed(entity) => ItemRecord::Removed(*entity),
                Item::Rejected(rejection) => ItemRecord::Rejected(*rejection),
            };
            (position, item)
        });
        OutputRecord {
            version: output.version,
            queue: queue.collect(),
        }
    }
}

impl Output {
    /// Queues what input event `seq` changed, in order.
    pub(crate) fn enqueue(&mut self, seq: u64, items: Vec<Item>) {
        for (index, item) in items.into_iter().enumerate() {
            self.put(
                OutputPosition {
                    seq,
                    index: index as u32,
                },
                item,
            );
        }
    }

    fn put(&mut self, position: OutputPosition, item: Item) {
        if let Some(key) = item.entity_key()
            && let Some(older) = self.queued.insert(key, position)
        {
            self.queue.remove(&older);
        }
        self.queue.insert(position, item);
    }

    /// A derived event was applied: what it covers is out.
    pub(crate) fn written(&mut self, through: OutputPosition, stream_version: u64) {
        self.version = self.version.max(stream_version);
        while let Some(entry) = self.queue.first_entry() {
            if *entry.key() > through {
                break;
            }
            let (position, item) = entry.remove_entry();
            if let Some(key) = item.entity_key()
                && self.queued.get(&key) == Some(&position)
            {
                self.queued.remove(&key);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.queue.len()
    }
}

/// How output is cut into events and appends (the log takes at most 64 KiB per event, 1,000
/// events and 512 KiB per append; these leave room for the envelope and the estimate).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutputLimits {
    pub(crate) event_bytes: usize,
    pub(crate) append_bytes: usize,
    pub(crate) append_events: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        OutputLimits {
            event_bytes: 32 * 1024,
            append_bytes: 448 * 1024,
            append_events: 1_000,
        }
    }
}

/// Where a writer's chain of appends stands: the last position they cover and the version of
/// the stream they lead to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chain {
    pub(crate) through: OutputPosition,
    pub(crate) version: u64,
}

/// What an event's encoding adds to its entities' (tag, cluster id, `through`, the tables'
/// headers), at most.
const EVENT_OVERHEAD: usize = 192;

/// Builds the events of one append.
struct Batch<'a> {
    cluster_id: &'a str,
    limits: OutputLimits,
    events: Vec<NewEvent>,
    bytes: usize,
    entities: Vec<EntityLabels>,
    /// What the current event's entities add to its encoding (they share table entries).
    entity_bytes: usize,
    entity_size: EffectiveSize,
    through: OutputPosition,
    /// Whether entries up to `through` are covered by no event yet.
    uncovered: bool,
}

impl Batch<'_> {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.entities.is_empty()
    }

    /// Whether `size` more bytes (and maybe one more event) fit the append.
    fn fits(&self, size: usize) -> bool {
        self.events.len() + 2 <= self.limits.append_events
            && self.bytes + self.entity_bytes + size + 2 * EVENT_OVERHEAD
                <= self.limits.append_bytes
    }

    fn push(&mut self, event: &LabelingEvent) {
        let data = rmp_serde::to_vec_named(event).expect("labeling events encode");
        self.bytes += LabelingEvent::EVENT_TYPE.len() + data.len();
        self.events.push(NewEvent {
            event_type: LabelingEvent::EVENT_TYPE.into(),
            data,
        });
    }

    /// Ends the current event; one without entities still carries `through`, so that entries
    /// with nothing to say leave the queue too.
    fn flush(&mut self) {
        if !self.uncovered {
            return;
        }
        self.uncovered = false;
        let event = LabelingEvent::EffectiveLabels {
            cluster_id: self.cluster_id.to_owned(),
            through: self.through,
            entities: std::mem::take(&mut self.entities),
        };
        self.entity_bytes = 0;
        self.entity_size.clear();
        self.push(&event);
    }
}

fn removed(entity: &EntityRef) -> EntityLabels {
    EntityLabels {
        entity: entity.clone(),
        managed: false,
        enforcement_mode: None,
        labels: BTreeMap::new(),
        removed: true,
    }
}

impl Index {
    /// Clusters with output to write.
    pub(crate) fn clusters_with_output(&self) -> Vec<String> {
        self.clusters
            .iter()
            .filter(|(_, c)| c.output.len() > 0)
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// The next appends of a cluster's output, at most `appends`: consecutive runs of its
    /// queue, each at the stream version the ones before it lead to, so that they can be sent
    /// one after the other without waiting for the projection to apply each.
    #[cfg(test)]
    pub(crate) fn next_outputs(
        &self,
        cluster_id: &str,
        limits: OutputLimits,
        appends: usize,
    ) -> Vec<AppendRequest> {
        let mut requests = Vec::new();
        let mut chain = None;
        while requests.len() < appends {
            let Some((request, next)) = self.next_output(cluster_id, limits, chain) else {
                break;
            };
            chain = Some(next);
            requests.push(request);
        }
        requests
    }

    /// The next append of a cluster's output: the queue's first run, or with `chain`, the
    /// run after the appends that chain made, at the version they lead to. A writer sends
    /// each as soon as it is cut, without waiting for the projection to apply the ones before.
    pub(crate) fn next_output(
        &self,
        cluster_id: &str,
        limits: OutputLimits,
        chain: Option<Chain>,
    ) -> Option<(AppendRequest, Chain)> {
        let cluster = self.clusters.get(cluster_id)?;
        let (after, version) = match chain {
            Some(chain) => (Some(chain.through), chain.version),
            None => (None, cluster.output.version),
        };
        let (request, through) = self.append_after(cluster_id, cluster, after, version, limits)?;
        let version = version + request.events.len() as u64;
        Some((request, Chain { through, version }))
    }

    /// One append of the queue's entries after `after`, at `version`; and the last position it
    /// covers.
    ///
    /// Its idempotency key names the version and that position: a replica that cut the queue
    /// the same way gets the first outcome (its entries are in), one that cut it otherwise a
    /// conflict, so that it never chains an append onto a cut it did not make.
    fn append_after(
        &self,
        cluster_id: &str,
        cluster: &Cluster,
        after: Option<OutputPosition>,
        version: u64,
        limits: OutputLimits,
    ) -> Option<(AppendRequest, OutputPosition)> {
        let mut batch = Batch {
            cluster_id,
            limits,
            events: Vec::new(),
            bytes: 0,
            entities: Vec::new(),
            entity_bytes: 0,
            entity_size: EffectiveSize::default(),
            through: OutputPosition::default(),
            uncovered: false,
        };
        let start = after.map_or(Unbounded, Excluded);
        for (position, item) in cluster.output.queue.range((start, Unbounded)) {
            let labels = match item {
                Item::Rejected(rejection) => {
                    batch.flush();
                    if !batch.is_empty() && !batch.fits(EVENT_OVERHEAD) {
                        break;
                    }
                    batch.push(&LabelingEvent::PairingKeyRejected {
                        cluster_id: cluster_id.to_owned(),
                        through: *position,
                        namespace: rejection.namespace.clone(),
                        namespace_uid: rejection.namespace_uid.clone(),
                        reason: rejection.reason.clone(),
                    });
                    batch.through = *position;
                    continue;
                }
                Item::Removed(entity) => Some(removed(entity)),
                // An entity that went is queued as removed in its place, so this finds it;
                // were it gone, its entry would only be covered.
                Item::Labels { kind, uid } => self
                    .entity_of(cluster, *kind, uid)
                    .map(|object| self.materialize(cluster, object)),
            };
            if let Some(labels) = labels {
                let mut size = batch.entity_size.add(&labels);
                if !batch.entities.is_empty()
                    && batch.entity_bytes + size + EVENT_OVERHEAD > limits.event_bytes
                {
                    batch.flush();
                    // Alone in the next event, it brings all its table entries.
                    size = batch.entity_size.add(&labels);
                }
                if !batch.is_empty() && !batch.fits(size) {
                    break;
                }
                batch.entities.push(labels);
                batch.entity_bytes += size;
            }
            batch.through = *position;
            batch.uncovered = true;
        }
        batch.flush();
        if batch.events.is_empty() {
            return None;
        }
        let through = batch.through;
        let request = AppendRequest {
            stream: LabelingEvent::effective_stream(cluster_id),
            expected_version: match version {
                0 => ExpectedVersion::NoStream,
                v => ExpectedVersion::Exact(v),
            },
            idempotency_key: format!(
                "labeling/effective/{cluster_id}@{version}/{}.{}",
                through.seq, through.index
            ),
            events: batch.events,
        };
        Some((request, through))
    }

    /// An entity's effective labels, in the wire form.
    pub(crate) fn materialize(&self, cluster: &Cluster, object: &Object) -> EntityLabels {
        let resolution = object.entity.as_ref();
        let effective = resolution.map(|r| &r.effective);
        let labels = effective
            .into_iter()
            .flat_map(|e| e.labels.iter())
            .filter_map(|(id, source)| {
                let label = self.catalog.label(*id)?;
                let label_view = EffectiveLabel {
                    href: label_href(*id),
                    value: label.value.clone(),
                    source: self.source_view(cluster, object, &label.key, source),
                };
                Some((label.key.clone(), label_view))
            })
            .collect();
        EntityLabels {
            entity: object.entity_ref(),
            managed: effective.is_some_and(|e| e.managed),
            enforcement_mode: effective.and_then(|e| e.mode),
            labels,
            removed: false,
        }
    }

    fn source_view(
        &self,
        cluster: &Cluster,
        object: &Object,
        key: &str,
        source: &Source,
    ) -> LabelSource {
        match source {
            Source::LabelMap(origin) => LabelSource::LabelMap {
                origin: origin.origin,
                map: origin.map.clone(),
                from_key: origin.from_key.clone(),
            },
            Source::Profile => LabelSource::Profile,
            Source::Node => LabelSource::Node {
                name: match &object.kind {
                    Kind::Pod { node, .. } => node.to_string(),
                    _ => String::new(),
                },
            },
            Source::Annotation {
                depth,
                template,
                illumio,
            } => {
                let holder = match depth {
                    0 => Some(object),
                    d => self
                        .chain(cluster, object.owner.as_ref())
                        .nth(usize::from(*d) - 1),
                };
                let prefix = if *illumio {
                    ILLUMIO_PREFIX
                } else {
                    BULKHEAD_PREFIX
                };
                LabelSource::Annotation {
                    kind: holder.map_or("", Object::kube_kind).into(),
                    name: holder.map_or_else(String::new, |h| h.name.to_string()),
                    key: format!("{prefix}{key}"),
                    template: *template,
                }
            }
        }
    }
}
