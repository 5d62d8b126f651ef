//! The configuration compiled for resolution: a profile's rule per key (restriction lists with
//! their groups expanded), and a cluster's label maps merged into one ordered list per side.

use std::collections::BTreeMap;
use std::sync::Arc;

use bulkhead_schema::messages::labeling::{
    EnforcementMode, LabelId, LabelMapOrigin, LabelMapSpec, LabelRule, LoggedSettings,
    RestrictionMember,
};

use crate::catalog::Catalog;
use bulkhead_runtime::intern::Str;

/// What a profile decides for one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeyRule {
    /// Fixed to this label.
    Assign(LabelId),
    /// Annotations may choose one of these (sorted); none when empty.
    Restrict(Box<[LabelId]>),
}

/// A profile as resolution reads it. Keys without a rule are free.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rules {
    pub(crate) managed: bool,
    /// `None` for nodes, which have no profile.
    pub(crate) mode: Option<EnforcementMode>,
    pub(crate) keys: BTreeMap<String, KeyRule>,
}

impl Rules {
    pub(crate) fn compile(settings: &LoggedSettings, catalog: &Catalog) -> Self {
        let keys = settings
            .labels
            .iter()
            .map(|(key, rule)| {
                let rule = match rule {
                    LabelRule::Assignment(id) => KeyRule::Assign(*id),
                    LabelRule::Restriction(members) => {
                        let (mut labels, mut groups) = (Vec::new(), Vec::new());
                        for member in members {
                            match member {
                                RestrictionMember::Label(id) => labels.push(*id),
                                RestrictionMember::LabelGroup(id) => groups.push(*id),
                            }
                        }
                        KeyRule::Restrict(catalog.expand(&labels, &groups).into())
                    }
                };
                (key.clone(), rule)
            })
            .collect();
        Rules {
            managed: settings.managed,
            mode: Some(settings.enforcement_mode),
            keys,
        }
    }

    /// Nodes: always managed, every key free (only label maps label them).
    pub(crate) fn node() -> Self {
        Rules {
            managed: true,
            mode: None,
            keys: BTreeMap::new(),
        }
    }

    pub(crate) fn rule(&self, key: &str) -> Option<&KeyRule> {
        self.keys.get(key)
    }
}

/// Which label map rule a label came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapOrigin {
    pub(crate) origin: LabelMapOrigin,
    pub(crate) map: String,
    pub(crate) from_key: String,
}

/// One label map rule, ready to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MapRule {
    pub(crate) from_key: Str,
    pub(crate) to_key: Str,
    /// `(from, to)`, sorted by `from`; empty: values are taken as they are.
    pub(crate) values: Box<[(Str, Str)]>,
    pub(crate) allow_create: bool,
    pub(crate) origin: Arc<MapOrigin>,
}

/// A cluster's label maps in the order they apply: custom resources, then api maps, each in
/// name order, each map's rules in their order. For each key, the last rule yielding a label
/// wins, so a later map overrides an earlier one where both apply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CompiledMaps {
    pub(crate) node: Box<[MapRule]>,
    pub(crate) workload: Box<[MapRule]>,
}

impl CompiledMaps {
    pub(crate) fn compile(
        maps: &BTreeMap<(LabelMapOrigin, String), LabelMapSpec>,
        intern: &mut impl FnMut(&str) -> Str,
    ) -> Self {
        let mut compiled = CompiledMaps::default();
        let (mut node, mut workload) = (Vec::new(), Vec::new());
        for ((origin, name), spec) in maps {
            for (items, out) in [
                (&spec.node_label_map, &mut node),
                (&spec.workload_label_map, &mut workload),
            ] {
                out.extend(items.iter().map(|item| {
                    let mut values: Vec<(Str, Str)> = item
                        .values_map
                        .iter()
                        .map(|m| (intern(&m.from), intern(&m.to)))
                        .collect();
                    values.sort();
                    values.dedup_by(|a, b| a.0 == b.0);
                    MapRule {
                        from_key: intern(&item.from_key),
                        to_key: intern(&item.to_key),
                        values: values.into(),
                        allow_create: item.allow_create,
                        origin: Arc::new(MapOrigin {
                            origin: *origin,
                            map: name.clone(),
                            from_key: item.from_key.clone(),
                        }),
                    }
                }));
            }
        }
        compiled.node = node.into();
        compiled.workload = workload.into();
        compiled
    }
}
