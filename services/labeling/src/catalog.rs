//! The label catalog: label dimensions (keys), labels and label groups, by id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bulkhead_schema::messages::labeling::{LabelCreator, LabelGroupId, LabelId};
use serde::{Deserialize, Serialize};

/// The label dimensions every installation has.
pub(crate) const BUILTIN_KEYS: [(&str, &str); 4] = [
    ("role", "Role"),
    ("app", "Application"),
    ("env", "Environment"),
    ("loc", "Location"),
];

/// Annotation names under the label prefixes that are not label keys.
const RESERVED_KEYS: [&str; 4] = ["pairing-key", "pairing_key", "service_uids", "service-uids"];

/// The longest label key: `bulkhead.io/<key>` must stay a valid annotation name (63 bytes).
pub(crate) const MAX_KEY_BYTES: usize = 32;

/// Whether `key` can name a label dimension: lowercase letters, digits, `_` and `-`, starting
/// with a letter, and not one of the annotation names Bulkhead reads for other purposes.
pub(crate) fn valid_key(key: &str) -> bool {
    key.len() <= MAX_KEY_BYTES
        && key.starts_with(|c: char| c.is_ascii_lowercase())
        && key
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        && !RESERVED_KEYS.contains(&key)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct KeyDef {
    pub(crate) key: String,
    pub(crate) display_name: String,
    pub(crate) builtin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LabelDef {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) created_by: LabelCreator,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GroupDef {
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) labels: Vec<LabelId>,
    pub(crate) sub_groups: Vec<LabelGroupId>,
}

/// The stored form: what the log said, without the lookup index.
#[derive(Serialize, Deserialize)]
pub(crate) struct CatalogRecord {
    keys: Vec<KeyDef>,
    labels: BTreeMap<LabelId, LabelDef>,
    groups: BTreeMap<LabelGroupId, GroupDef>,
}

/// Group nesting is followed at most this deep, so that a cycle (refused when written, but the
/// log is input) cannot hang an expansion.
const MAX_GROUP_DEPTH: usize = 16;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(from = "CatalogRecord", into = "CatalogRecord")]
pub(crate) struct Catalog {
    keys: BTreeMap<String, KeyDef>,
    labels: BTreeMap<LabelId, LabelDef>,
    /// key -> value -> label.
    by_value: HashMap<String, HashMap<String, LabelId>>,
    groups: BTreeMap<LabelGroupId, GroupDef>,
}

impl Default for Catalog {
    fn default() -> Self {
        let keys = BUILTIN_KEYS
            .iter()
            .map(|(key, display_name)| KeyDef {
                key: (*key).into(),
                display_name: (*display_name).into(),
                builtin: true,
            })
            .collect::<Vec<_>>();
        CatalogRecord {
            keys,
            labels: BTreeMap::new(),
            groups: BTreeMap::new(),
        }
        .into()
    }
}

impl From<CatalogRecord> for Catalog {
    fn from(record: CatalogRecord) -> Self {
        let mut by_value: HashMap<String, HashMap<String, LabelId>> = HashMap::new();
        for (id, label) in &record.labels {
            by_value
                .entry(label.key.clone())
                .or_default()
                .insert(label.value.clone(), *id);
        }
        Catalog {
            keys: record
                .keys
                .into_iter()
                .map(|k| (k.key.clone(), k))
                .collect(),
            labels: record.labels,
            by_value,
            groups: record.groups,
        }
    }
}

impl From<Catalog> for CatalogRecord {
    fn from(catalog: Catalog) -> Self {
        CatalogRecord {
            keys: catalog.keys.into_values().collect(),
            labels: catalog.labels,
            groups: catalog.groups,
        }
    }
}

impl Catalog {
    // --- reading ----------------------------------------------------------------------------

    pub(crate) fn is_key(&self, key: &str) -> bool {
        self.keys.contains_key(key)
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &KeyDef> {
        self.keys.values()
    }

    pub(crate) fn key(&self, key: &str) -> Option<&KeyDef> {
        self.keys.get(key)
    }

    /// The label `key`=`value`, exactly.
    pub(crate) fn find(&self, key: &str, value: &str) -> Option<LabelId> {
        self.by_value.get(key)?.get(value).copied()
    }

    /// A label of `key` whose value equals `value` ignoring ASCII case (values are unique so).
    pub(crate) fn find_ignoring_case(&self, key: &str, value: &str) -> Option<LabelId> {
        self.by_value
            .get(key)?
            .iter()
            .find(|(v, _)| v.eq_ignore_ascii_case(value))
            .map(|(_, id)| *id)
    }

    pub(crate) fn label(&self, id: LabelId) -> Option<&LabelDef> {
        self.labels.get(&id)
    }

    pub(crate) fn labels(&self) -> impl Iterator<Item = (LabelId, &LabelDef)> {
        self.labels.iter().map(|(id, l)| (*id, l))
    }

    pub(crate) fn labels_of_key(&self, key: &str) -> usize {
        self.by_value.get(key).map_or(0, HashMap::len)
    }

    pub(crate) fn group(&self, id: LabelGroupId) -> Option<&GroupDef> {
        self.groups.get(&id)
    }

    pub(crate) fn groups(&self) -> impl Iterator<Item = (LabelGroupId, &GroupDef)> {
        self.groups.iter().map(|(id, g)| (*id, g))
    }

    pub(crate) fn next_label_id(&self) -> LabelId {
        self.labels.last_key_value().map_or(1, |(id, _)| id + 1)
    }

    pub(crate) fn next_group_id(&self) -> LabelGroupId {
        self.groups.last_key_value().map_or(1, |(id, _)| id + 1)
    }

    /// The labels of `labels` and of `groups`, groups expanded through their sub-groups:
    /// sorted, without duplicates.
    pub(crate) fn expand(&self, labels: &[LabelId], groups: &[LabelGroupId]) -> Vec<LabelId> {
        let mut out: BTreeSet<LabelId> = labels.iter().copied().collect();
        let mut seen = BTreeSet::new();
        let mut frontier: Vec<(LabelGroupId, usize)> = groups.iter().map(|g| (*g, 0)).collect();
        while let Some((id, depth)) = frontier.pop() {
            if depth > MAX_GROUP_DEPTH || !seen.insert(id) {
                continue;
            }
            if let Some(group) = self.groups.get(&id) {
                out.extend(&group.labels);
                frontier.extend(group.sub_groups.iter().map(|g| (*g, depth + 1)));
            }
        }
        out.into_iter().collect()
    }

    /// Whether `from` is `target` or contains it, directly or through sub-groups.
    pub(crate) fn group_reaches(&self, from: LabelGroupId, target: LabelGroupId) -> bool {
        let mut seen = BTreeSet::new();
        let mut frontier = vec![(from, 0)];
        while let Some((id, depth)) = frontier.pop() {
            if id == target {
                return true;
            }
            if depth > MAX_GROUP_DEPTH || !seen.insert(id) {
                continue;
            }
            if let Some(group) = self.groups.get(&id) {
                frontier.extend(group.sub_groups.iter().map(|g| (*g, depth + 1)));
            }
        }
        false
    }

    // --- changing (as the log says; validation is the planner's) ------------------------------

    pub(crate) fn create_key(&mut self, key: &str, display_name: &str) {
        self.keys.entry(key.to_owned()).or_insert_with(|| KeyDef {
            key: key.to_owned(),
            display_name: display_name.to_owned(),
            builtin: false,
        });
    }

    pub(crate) fn delete_key(&mut self, key: &str) {
        if self.keys.get(key).is_some_and(|k| !k.builtin) && self.labels_of_key(key) == 0 {
            self.keys.remove(key);
        }
    }

    /// False when the id or the value is taken (the event is then ignored).
    pub(crate) fn create_label(
        &mut self,
        id: LabelId,
        key: &str,
        value: &str,
        created_by: LabelCreator,
    ) -> bool {
        if self.labels.contains_key(&id) || self.find(key, value).is_some() || !self.is_key(key) {
            return false;
        }
        self.labels.insert(
            id,
            LabelDef {
                key: key.to_owned(),
                value: value.to_owned(),
                created_by,
            },
        );
        self.by_value
            .entry(key.to_owned())
            .or_default()
            .insert(value.to_owned(), id);
        true
    }

    /// The label's key and former value, when it was renamed.
    pub(crate) fn rename_label(&mut self, id: LabelId, value: &str) -> Option<(String, String)> {
        let label = self.labels.get_mut(&id)?;
        let values = self.by_value.entry(label.key.clone()).or_default();
        if values.contains_key(value) {
            return None;
        }
        values.remove(&label.value);
        values.insert(value.to_owned(), id);
        let old = std::mem::replace(&mut label.value, value.to_owned());
        Some((label.key.clone(), old))
    }

    pub(crate) fn delete_label(&mut self, id: LabelId) -> Option<LabelDef> {
        let label = self.labels.remove(&id)?;
        if let Some(values) = self.by_value.get_mut(&label.key) {
            values.remove(&label.value);
            if values.is_empty() {
                self.by_value.remove(&label.key);
            }
        }
        Some(label)
    }

    pub(crate) fn put_group(&mut self, id: LabelGroupId, group: GroupDef) {
        self.groups.insert(id, group);
    }

    pub(crate) fn delete_group(&mut self, id: LabelGroupId) {
        self.groups.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mk_group(key: &str, labels: &[LabelId], sub_groups: &[LabelGroupId]) -> GroupDef {
        GroupDef {
            key: key.into(),
            name: format!("g{labels:?}{sub_groups:?}"),
            labels: labels.to_vec(),
            sub_groups: sub_groups.to_vec(),
        }
    }

    #[test]
    fn keys_are_lowercase_words_and_not_reserved() {
        for good in ["role", "bu", "cost-center", "tier_2"] {
            assert!(valid_key(good), "{good}");
        }
        for bad in [
            "",
            "Role",
            "2tier",
            "a.b",
            "a/b",
            "pairing_key",
            "pairing-key",
        ] {
            assert!(!valid_key(bad), "{bad}");
        }
        assert!(!valid_key(&"k".repeat(MAX_KEY_BYTES + 1)));
    }

    #[test]
    fn labels_are_found_by_key_and_value_and_renamed_in_place() {
        let mut catalog = Catalog::default();
        assert!(catalog.create_label(1, "role", "web", LabelCreator::Api));
        assert!(
            !catalog.create_label(2, "role", "web", LabelCreator::Api),
            "taken value"
        );
        assert!(
            !catalog.create_label(1, "app", "x", LabelCreator::Api),
            "taken id"
        );
        assert!(
            !catalog.create_label(3, "nokey", "x", LabelCreator::Api),
            "no such key"
        );
        assert_eq!(catalog.find("role", "web"), Some(1));
        assert_eq!(catalog.find("role", "Web"), None);
        assert_eq!(catalog.find_ignoring_case("role", "WEB"), Some(1));
        assert_eq!(
            catalog.rename_label(1, "frontend"),
            Some(("role".into(), "web".into()))
        );
        assert_eq!(catalog.find("role", "web"), None);
        assert_eq!(catalog.find("role", "frontend"), Some(1));
        assert_eq!(catalog.next_label_id(), 2);
        catalog.delete_label(1);
        assert_eq!(catalog.find("role", "frontend"), None);
        assert_eq!(catalog.labels_of_key("role"), 0);
    }

    #[test]
    fn groups_expand_through_sub_groups_and_survive_cycles() {
        let mut catalog = Catalog::default();
        catalog.put_group(1, mk_group("env", &[1, 2], &[2]));
        catalog.put_group(2, mk_group("env", &[3], &[3]));
        catalog.put_group(3, mk_group("env", &[4, 1], &[1]));
        assert_eq!(catalog.expand(&[9], &[2]), vec![1, 2, 3, 4, 9]);
        assert!(catalog.group_reaches(1, 3));
        assert!(catalog.group_reaches(3, 2), "through 1");
        catalog.put_group(3, mk_group("env", &[4], &[]));
        assert!(!catalog.group_reaches(3, 1));
    }

    #[test]
    fn builtin_keys_stay_and_custom_keys_go_only_without_labels() {
        let mut catalog = Catalog::default();
        catalog.delete_key("role");
        assert!(catalog.is_key("role"));
        catalog.create_key("bu", "Business unit");
        catalog.create_label(1, "bu", "finance", LabelCreator::Api);
        catalog.delete_key("bu");
        assert!(catalog.is_key("bu"));
        catalog.delete_label(1);
        catalog.delete_key("bu");
        assert!(!catalog.is_key("bu"));
    }

    #[test]
    fn the_stored_form_rebuilds_the_lookup() {
        let mut catalog = Catalog::default();
        catalog.create_label(5, "loc", "eu", LabelCreator::LabelMap);
        let bytes = rmp_serde::to_vec_named(&catalog).unwrap();
        let again: Catalog = rmp_serde::from_slice(&bytes).unwrap();
        assert_eq!(again.find("loc", "eu"), Some(5));
        assert!(again.is_key("role"));
    }
}
