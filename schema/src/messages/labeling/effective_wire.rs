//! The wire form of `LabelingEvent::EffectiveLabels`' entities: [`EffectiveTables`].
//!
//! An event holds a few hundred entities whose labels and sources repeat: a namespace's
//! profile assignment is every entity's, and the annotation labels of one controller's pods
//! share their holder. Each distinct label and source is written once per event, and entities
//! name them by index. An annotation source leaves out its key when that is the label's key
//! after `bulkhead.io/` (or `com.illumio.`), so that one entry serves every annotation label
//! of one holder. Decoding gives the entities back as [`EntityLabels`], hrefs and keys
//! restored.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{
    EffectiveLabel, EnforcementMode, EntityLabels, EntityRef, HrefTarget, LabelId, LabelMapOrigin,
    LabelSource, label_href,
};

/// The annotation key prefixes a [`TabledSource::Annotation`] may leave out.
const BULKHEAD_PREFIX: &str = "bulkhead.io/";
const ILLUMIO_PREFIX: &str = "com.illumio.";

/// Entities' effective labels as `LabelingEvent::EffectiveLabels` carries them (its field
/// `effective`): every distinct label and source once, entities naming them by index.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveTables {
    /// The labels the entities carry, each once.
    #[serde(default)]
    pub labels: Vec<TabledLabel>,
    /// Where the entities' labels came from, each once.
    #[serde(default)]
    pub sources: Vec<TabledSource>,
    /// In the order of the changes.
    pub entities: Vec<TabledEntity>,
}

/// A label; its href is `/orgs/1/labels/<id>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TabledLabel {
    pub id: LabelId,
    pub key: String,
    pub value: String,
}

/// A [`LabelSource`]. An annotation's key is the label's key after `bulkhead.io/`, or after
/// `com.illumio.` when `illumio`, unless `key` gives it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TabledSource {
    LabelMap {
        origin: LabelMapOrigin,
        map: String,
        from_key: String,
    },
    Profile,
    Annotation {
        kind: String,
        name: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        template: bool,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        illumio: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    Node {
        name: String,
    },
}

/// An entity's labels, as indexes into the tables.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TabledEntity {
    pub entity: EntityRef,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub managed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement_mode: Option<EnforcementMode>,
    /// `[label, source]` pairs: indexes into `labels` and `sources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<(u32, u32)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

impl TabledSource {
    fn to_source(&self, label_key: &str) -> LabelSource {
        match self {
            TabledSource::LabelMap {
                origin,
                map,
                from_key,
            } => LabelSource::LabelMap {
                origin: *origin,
                map: map.clone(),
                from_key: from_key.clone(),
            },
            TabledSource::Profile => LabelSource::Profile,
            TabledSource::Annotation {
                kind,
                name,
                template,
                illumio,
                key,
            } => LabelSource::Annotation {
                kind: kind.clone(),
                name: name.clone(),
                key: match key {
                    Some(key) => key.clone(),
                    None if *illumio => format!("{ILLUMIO_PREFIX}{label_key}"),
                    None => format!("{BULKHEAD_PREFIX}{label_key}"),
                },
                template: *template,
            },
            TabledSource::Node { name } => LabelSource::Node { name: name.clone() },
        }
    }
}

impl EffectiveTables {
    /// The entities, their labels looked up; an error names an index out of the tables.
    pub fn into_entities(self) -> Result<Vec<EntityLabels>, String> {
        let EffectiveTables {
            labels,
            sources,
            entities,
        } = self;
        entities
            .into_iter()
            .map(|tabled| {
                let mut map = BTreeMap::new();
                for (l, s) in tabled.labels {
                    let label = labels
                        .get(l as usize)
                        .ok_or_else(|| format!("label {l} is not in the event's table"))?;
                    let source = sources
                        .get(s as usize)
                        .ok_or_else(|| format!("source {s} is not in the event's table"))?;
                    let effective = EffectiveLabel {
                        href: label_href(label.id),
                        value: label.value.clone(),
                        source: source.to_source(&label.key),
                    };
                    map.insert(label.key.clone(), effective);
                }
                Ok(EntityLabels {
                    entity: tabled.entity,
                    managed: tabled.managed,
                    enforcement_mode: tabled.enforcement_mode,
                    labels: map,
                    removed: tabled.removed,
                })
            })
            .collect()
    }
}

// --- encoding, from borrowed entities (the same shapes as the types above) -------------------

#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
struct LabelRef<'a> {
    id: LabelId,
    key: &'a str,
    value: &'a str,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
enum SourceRef<'a> {
    LabelMap {
        origin: LabelMapOrigin,
        map: &'a str,
        from_key: &'a str,
    },
    Profile,
    Annotation {
        kind: &'a str,
        name: &'a str,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        template: bool,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        illumio: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        key: Option<&'a str>,
    },
    Node {
        name: &'a str,
    },
}

#[derive(Serialize)]
struct EntityOut<'a> {
    entity: &'a EntityRef,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    managed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    enforcement_mode: Option<EnforcementMode>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<(u32, u32)>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    removed: bool,
}

#[derive(Serialize)]
struct TablesOut<'a> {
    labels: Vec<LabelRef<'a>>,
    sources: Vec<SourceRef<'a>>,
    entities: Vec<EntityOut<'a>>,
}

fn label_ref<'a>(key: &'a str, label: &'a EffectiveLabel) -> Result<LabelRef<'a>, String> {
    match HrefTarget::parse(&label.href) {
        Some(HrefTarget::Label(id)) => Ok(LabelRef {
            id,
            key,
            value: &label.value,
        }),
        _ => Err(format!(
            "the effective label {key} has href {:?}, not a label's",
            label.href
        )),
    }
}

fn source_ref<'a>(label_key: &str, source: &'a LabelSource) -> SourceRef<'a> {
    match source {
        LabelSource::LabelMap {
            origin,
            map,
            from_key,
        } => SourceRef::LabelMap {
            origin: *origin,
            map,
            from_key,
        },
        LabelSource::Profile => SourceRef::Profile,
        LabelSource::Annotation {
            kind,
            name,
            key,
            template,
        } => {
            let (illumio, key) = match key.strip_suffix(label_key) {
                Some(BULKHEAD_PREFIX) => (false, None),
                Some(ILLUMIO_PREFIX) => (true, None),
                _ => (false, Some(key.as_str())),
            };
            SourceRef::Annotation {
                kind,
                name,
                template: *template,
                illumio,
                key,
            }
        }
        LabelSource::Node { name } => SourceRef::Node { name },
    }
}

/// Distinct items, numbered in the order first met.
struct Table<K> {
    index: HashMap<K, u32>,
    items: Vec<K>,
}

impl<K: Copy + Eq + Hash> Table<K> {
    fn new() -> Self {
        Table {
            index: HashMap::new(),
            items: Vec::new(),
        }
    }

    fn index_of(&mut self, item: K) -> u32 {
        match self.index.entry(item) {
            Entry::Occupied(entry) => *entry.get(),
            Entry::Vacant(entry) => {
                let index = self.items.len() as u32;
                entry.insert(index);
                self.items.push(item);
                index
            }
        }
    }
}

pub(super) fn serialize<S: Serializer>(
    entities: &[EntityLabels],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    let mut labels = Table::new();
    let mut sources = Table::new();
    let mut out = Vec::with_capacity(entities.len());
    for entity in entities {
        let mut pairs = Vec::with_capacity(entity.labels.len());
        for (key, label) in &entity.labels {
            let tabled = label_ref(key, label).map_err(serde::ser::Error::custom)?;
            pairs.push((
                labels.index_of(tabled),
                sources.index_of(source_ref(key, &label.source)),
            ));
        }
        out.push(EntityOut {
            entity: &entity.entity,
            managed: entity.managed,
            enforcement_mode: entity.enforcement_mode,
            labels: pairs,
            removed: entity.removed,
        });
    }
    TablesOut {
        labels: labels.items,
        sources: sources.items,
        entities: out,
    }
    .serialize(serializer)
}

pub(super) fn deserialize<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<EntityLabels>, D::Error> {
    EffectiveTables::deserialize(deserializer)?
        .into_entities()
        .map_err(serde::de::Error::custom)
}

/// What entities add to one `EffectiveLabels` event's encoding (MessagePack, named), counted
/// as they are added: the table entries they bring and their own entry (the tables' headers,
/// under 48 bytes, are the event's overhead). For cutting output
/// into events of a size; `clear` starts the next event.
#[derive(Default)]
pub struct EffectiveSize {
    /// Hashes of the labels and sources already in the event. A collision undercounts one
    /// entry; the index widths counted at their largest make up for more than that.
    labels: HashSet<u64>,
    sources: HashSet<u64>,
    hasher: RandomState,
    buffer: Vec<u8>,
}

impl EffectiveSize {
    pub fn clear(&mut self) {
        self.labels.clear();
        self.sources.clear();
    }

    /// The bytes `entity` adds to the event, at most.
    pub fn add(&mut self, entity: &EntityLabels) -> usize {
        let mut size = 0;
        for (key, label) in &entity.labels {
            if let Ok(tabled) = label_ref(key, label)
                && self.labels.insert(self.hasher.hash_one(tabled))
            {
                size += self.encoded(&tabled);
            }
            let source = source_ref(key, &label.source);
            if self.sources.insert(self.hasher.hash_one(source)) {
                size += self.encoded(&source);
            }
        }
        let widest = (self.labels.len() as u32, self.sources.len() as u32);
        let entry = EntityOut {
            entity: &entity.entity,
            managed: entity.managed,
            enforcement_mode: entity.enforcement_mode,
            labels: vec![widest; entity.labels.len()],
            removed: entity.removed,
        };
        size + self.encoded(&entry)
    }

    fn encoded<T: Serialize>(&mut self, value: &T) -> usize {
        self.buffer.clear();
        rmp_serde::encode::write_named(&mut self.buffer, value).expect("effective labels encode");
        self.buffer.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::labeling::{EntityKind, LabelingEvent, OutputPosition};

    fn entity(uid: &str, labels: &[(&str, u32, &str, LabelSource)]) -> EntityLabels {
        EntityLabels {
            entity: EntityRef {
                kind: EntityKind::Pod,
                uid: uid.into(),
                namespace: "shop".into(),
                name: format!("pod-{uid}"),
            },
            managed: true,
            enforcement_mode: Some(EnforcementMode::Full),
            labels: labels
                .iter()
                .map(|(key, id, value, source)| {
                    let label = EffectiveLabel {
                        href: label_href(*id),
                        value: (*value).into(),
                        source: source.clone(),
                    };
                    ((*key).to_owned(), label)
                })
                .collect(),
            removed: false,
        }
    }

    fn annotation(name: &str, key: &str) -> LabelSource {
        LabelSource::Annotation {
            kind: "Deployment".into(),
            name: name.into(),
            key: key.into(),
            template: true,
        }
    }

    #[test]
    fn entities_round_trip_and_share_table_entries() {
        let entities = vec![
            entity(
                "a",
                &[
                    ("app", 1, "shop", annotation("web", "bulkhead.io/app")),
                    ("loc", 2, "eu", LabelSource::Profile),
                    ("role", 3, "web", annotation("web", "bulkhead.io/role")),
                ],
            ),
            entity(
                "b",
                &[
                    ("app", 1, "shop", annotation("web", "com.illumio.app")),
                    ("env", 5, "prod", annotation("web", "elsewhere/env")),
                    ("loc", 2, "eu", LabelSource::Profile),
                    (
                        "role",
                        4,
                        "db",
                        LabelSource::LabelMap {
                            origin: LabelMapOrigin::Api,
                            map: "m".into(),
                            from_key: "tier".into(),
                        },
                    ),
                ],
            ),
            entity(
                "c",
                &[("role", 3, "web", LabelSource::Node { name: "n1".into() })],
            ),
            EntityLabels {
                removed: true,
                managed: false,
                enforcement_mode: None,
                ..entity("d", &[])
            },
        ];
        let event = LabelingEvent::EffectiveLabels {
            cluster_id: "c1".into(),
            through: OutputPosition { seq: 9, index: 2 },
            entities: entities.clone(),
        };
        let bytes = rmp_serde::to_vec_named(&event).unwrap();
        let back: LabelingEvent = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(back, event);

        // The owned form reads what the borrowed one wrote.
        let value: serde_json::Value = serde_json::to_value(&event).unwrap();
        let tables: EffectiveTables =
            serde_json::from_value(value["effective_labels"]["effective"].clone()).unwrap();
        assert_eq!(tables.labels.len(), 5, "{tables:?}");
        // web's bulkhead.io annotations, its illumio one, elsewhere/env, profile, map, node.
        assert_eq!(tables.sources.len(), 6, "{tables:?}");
        assert_eq!(tables.clone().into_entities().unwrap(), entities);

        // The size counted covers the encoding, but for the tables' headers.
        let mut size = EffectiveSize::default();
        let counted: usize = entities.iter().map(|e| size.add(e)).sum();
        let effective = rmp_serde::to_vec_named(&tables).unwrap().len();
        assert!(counted + 48 >= effective, "{counted} + 48 < {effective}");
    }

    #[test]
    fn indexes_out_of_the_tables_are_refused() {
        let tables = EffectiveTables {
            labels: vec![],
            sources: vec![TabledSource::Profile],
            entities: vec![TabledEntity {
                labels: vec![(0, 0)],
                ..entity_of("a")
            }],
        };
        assert!(tables.into_entities().is_err());
    }

    fn entity_of(uid: &str) -> TabledEntity {
        TabledEntity {
            entity: entity(uid, &[]).entity,
            managed: true,
            enforcement_mode: None,
            labels: vec![],
            removed: false,
        }
    }
}
