//! What the api sees: items in the reference product's shapes (hrefs for labels and groups),
//! and the listings of [`LabelingQuery`].

use bulkhead_schema::messages::labeling::{
    EffectiveLabelsView, EntityKind, Href, LabelGroupId, LabelGroupView, LabelId, LabelKeyView,
    LabelMapOrigin, LabelMapView, LabelRule, LabelUsage, LabelView, LabelingFilter, LabelingItem,
    LabelingItems, LabelingPage, LabelingQuery, LabelingQueryKind, LoggedSettings, ProfileLabel,
    ProfileSettings, ProfileState, ProfileView, RestrictionMember, TemplateView, label_group_href,
    label_href, profile_href,
};

use crate::index::{Cluster, Index, Profile};
use crate::objects::{ObjId, Object};
use crate::plan::{Refusal, Target};

/// The api form of logged settings.
fn settings_view(settings: &LoggedSettings) -> ProfileSettings {
    ProfileSettings {
        managed: settings.managed,
        enforcement_mode: settings.enforcement_mode,
        labels: settings
            .labels
            .iter()
            .map(|(key, rule)| match rule {
                LabelRule::Assignment(id) => ProfileLabel {
                    key: key.clone(),
                    assignment: Some(Href::label(*id)),
                    restriction: None,
                },
                LabelRule::Restriction(members) => ProfileLabel {
                    key: key.clone(),
                    assignment: None,
                    restriction: Some(
                        members
                            .iter()
                            .map(|m| match m {
                                RestrictionMember::Label(id) => Href::label(*id),
                                RestrictionMember::LabelGroup(id) => Href::label_group(*id),
                            })
                            .collect(),
                    ),
                },
            })
            .collect(),
    }
}

fn names_label(settings: &LoggedSettings, label: LabelId) -> bool {
    settings.labels.values().any(|rule| match rule {
        LabelRule::Assignment(id) => *id == label,
        LabelRule::Restriction(members) => members.contains(&RestrictionMember::Label(label)),
    })
}

fn names_group(settings: &LoggedSettings, group: LabelGroupId) -> bool {
    settings.labels.values().any(|rule| {
        matches!(rule, LabelRule::Restriction(members)
            if members.contains(&RestrictionMember::LabelGroup(group)))
    })
}

/// The filters a listing takes; any other one given is refused.
fn only(filter: &LabelingFilter, allowed: &[&str]) -> Result<(), Refusal> {
    let given = [
        ("cluster_id", filter.cluster_id.is_some()),
        ("namespace", filter.namespace.is_some()),
        ("key", filter.key.is_some()),
        ("value", filter.value.is_some()),
        ("entity_kind", filter.entity_kind.is_some()),
        ("label", filter.label.is_some()),
        ("uids", !filter.uids.is_empty()),
    ];
    match given
        .iter()
        .find(|(name, set)| *set && !allowed.contains(name))
    {
        Some((name, _)) => Err(Refusal::invalid(format!(
            "the {name} filter does not apply to this listing"
        ))),
        None => Ok(()),
    }
}

/// ASCII-case-insensitive substring test.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// One page of `items` (all that match, in the listing's order), built into views.
fn page<T, V>(
    items: Vec<T>,
    query: &LabelingQuery,
    build: impl FnMut(T) -> V,
    wrap: fn(Vec<V>) -> LabelingItems,
) -> LabelingPage {
    let total = items.len() as u64;
    let views = items
        .into_iter()
        .skip(query.offset as usize)
        .take(query.limit as usize)
        .map(build)
        .collect();
    LabelingPage {
        total,
        offset: query.offset,
        items: wrap(views),
    }
}

fn same<T>(item: T) -> T {
    item
}

impl Index {
    pub(crate) fn item(&self, target: &Target) -> Option<LabelingItem> {
        Some(match target {
            Target::LabelKey(key) => LabelingItem::LabelKey(self.key_view(key)?),
            Target::Label(id) => LabelingItem::Label(self.label_view(*id)?),
            Target::LabelGroup(id) => LabelingItem::LabelGroup(self.group_view(*id)?),
            Target::Profile {
                cluster_id,
                profile_id,
            } => {
                let cluster = self.clusters.get(cluster_id)?;
                let (id, profile) = cluster.profiles.get_key_value(profile_id.as_str())?;
                LabelingItem::Profile(profile_view(cluster_id, id, profile))
            }
            Target::Template(cluster_id) => {
                LabelingItem::Template(template_view(cluster_id, self.clusters.get(cluster_id)?))
            }
            Target::LabelMap { cluster_id, name } => {
                let cluster = self.clusters.get(cluster_id)?;
                let key = (LabelMapOrigin::Api, name.clone());
                let spec = cluster.label_maps.get(&key)?;
                LabelingItem::LabelMap(LabelMapView {
                    cluster_id: cluster_id.clone(),
                    name: name.clone(),
                    origin: LabelMapOrigin::Api,
                    spec: spec.clone(),
                })
            }
        })
    }

    fn key_view(&self, key: &str) -> Option<LabelKeyView> {
        let def = self.catalog.key(key)?;
        Some(LabelKeyView {
            key: def.key.clone(),
            display_name: def.display_name.clone(),
            builtin: def.builtin,
        })
    }

    fn label_view(&self, id: LabelId) -> Option<LabelView> {
        let label = self.catalog.label(id)?;
        Some(LabelView {
            href: label_href(id),
            id,
            key: label.key.clone(),
            value: label.value.clone(),
            created_by: label.created_by,
            usage: self.label_usage(id),
        })
    }

    fn group_view(&self, id: LabelGroupId) -> Option<LabelGroupView> {
        let group = self.catalog.group(id)?;
        Some(LabelGroupView {
            href: label_group_href(id),
            id,
            key: group.key.clone(),
            name: group.name.clone(),
            labels: group.labels.iter().map(|l| Href::label(*l)).collect(),
            sub_groups: group
                .sub_groups
                .iter()
                .map(|g| Href::label_group(*g))
                .collect(),
        })
    }

    /// What uses a label: profiles and templates naming it, groups containing it, label map
    /// rules translating a value to it, entities carrying it.
    pub(crate) fn label_usage(&self, id: LabelId) -> LabelUsage {
        let Some(label) = self.catalog.label(id) else {
            return LabelUsage::default();
        };
        let count = |n: usize| n as u32;
        LabelUsage {
            profiles: count(self.settings().filter(|s| names_label(s, id)).count()),
            label_groups: count(
                self.catalog
                    .groups()
                    .filter(|(_, g)| g.labels.contains(&id))
                    .count(),
            ),
            label_maps: count(
                self.label_map_rules()
                    .filter(|item| {
                        item.to_key == label.key
                            && item.values_map.iter().any(|m| m.to == label.value)
                    })
                    .count(),
            ),
            entities: count(self.used_by.get(&id).map_or(0, |users| users.len())),
        }
    }

    /// Profiles and templates naming a group, and groups containing it.
    pub(crate) fn group_usage(&self, id: LabelGroupId) -> (usize, usize) {
        let profiles = self.settings().filter(|s| names_group(s, id)).count();
        let groups = self
            .catalog
            .groups()
            .filter(|(_, g)| g.sub_groups.contains(&id))
            .count();
        (profiles, groups)
    }

    pub(crate) fn query(&self, query: &LabelingQuery) -> Result<LabelingPage, Refusal> {
        if query.limit == 0 || query.limit > LabelingQuery::MAX_LIMIT {
            return Err(Refusal::invalid(format!(
                "limit must be between 1 and {}",
                LabelingQuery::MAX_LIMIT
            )));
        }
        let filter = &query.filter;
        let not_found = |what: String| Refusal::not_found(format!("{what} does not exist"));
        match &query.what {
            LabelingQueryKind::LabelKeys => {
                only(filter, &[])?;
                let keys = self
                    .catalog
                    .keys()
                    .filter_map(|k| self.key_view(&k.key))
                    .collect();
                Ok(page(keys, query, same, LabelingItems::LabelKeys))
            }
            LabelingQueryKind::Labels => {
                only(filter, &["key", "value"])?;
                let mut labels: Vec<(&str, &str, LabelId)> = self
                    .catalog
                    .labels()
                    .filter(|(_, l)| filter.key.as_ref().is_none_or(|k| *k == l.key))
                    .filter(|(_, l)| {
                        filter
                            .value
                            .as_ref()
                            .is_none_or(|v| contains_ignoring_case(&l.value, v))
                    })
                    .map(|(id, l)| (l.key.as_str(), l.value.as_str(), id))
                    .collect();
                labels.sort_unstable();
                let view = |(_, _, id)| self.label_view(id).expect("listed labels exist");
                Ok(page(labels, query, view, LabelingItems::Labels))
            }
            LabelingQueryKind::Label { label_id } => {
                only(filter, &[])?;
                let view = self
                    .label_view(*label_id)
                    .ok_or_else(|| not_found(format!("label {label_id}")))?;
                Ok(page(vec![view], query, same, LabelingItems::Labels))
            }
            LabelingQueryKind::LabelGroups => {
                only(filter, &["key"])?;
                let groups = self
                    .catalog
                    .groups()
                    .filter(|(_, g)| filter.key.as_ref().is_none_or(|k| *k == g.key))
                    .filter_map(|(id, _)| self.group_view(id))
                    .collect();
                Ok(page(groups, query, same, LabelingItems::LabelGroups))
            }
            LabelingQueryKind::LabelGroup { group_id } => {
                only(filter, &[])?;
                let view = self
                    .group_view(*group_id)
                    .ok_or_else(|| not_found(format!("label group {group_id}")))?;
                Ok(page(vec![view], query, same, LabelingItems::LabelGroups))
            }
            LabelingQueryKind::Profiles => {
                only(filter, &["cluster_id", "namespace"])?;
                let cluster_id = filter
                    .cluster_id
                    .as_ref()
                    .ok_or_else(|| Refusal::invalid("profiles are listed per cluster_id"))?;
                let cluster = self.cluster(cluster_id)?;
                let mut profiles: Vec<ProfileView> = cluster
                    .profiles
                    .iter()
                    .filter(|(_, p)| {
                        filter
                            .namespace
                            .as_ref()
                            .is_none_or(|ns| p.namespace.as_deref() == Some(ns.as_str()))
                    })
                    .map(|(id, p)| profile_view(cluster_id, id, p))
                    .collect();
                profiles.sort_by(|a, b| {
                    (&a.namespace, &a.name, &a.id).cmp(&(&b.namespace, &b.name, &b.id))
                });
                Ok(page(profiles, query, same, LabelingItems::Profiles))
            }
            LabelingQueryKind::Profile {
                cluster_id,
                profile_id,
            } => {
                only(filter, &[])?;
                let target = Target::Profile {
                    cluster_id: cluster_id.clone(),
                    profile_id: profile_id.clone(),
                };
                match self.item(&target) {
                    Some(LabelingItem::Profile(view)) => {
                        Ok(page(vec![view], query, same, LabelingItems::Profiles))
                    }
                    _ => Err(not_found(format!(
                        "profile {profile_id} of container cluster {cluster_id}"
                    ))),
                }
            }
            LabelingQueryKind::Template { cluster_id } => {
                only(filter, &[])?;
                let view = template_view(cluster_id, self.cluster(cluster_id)?);
                Ok(page(vec![view], query, same, LabelingItems::Templates))
            }
            LabelingQueryKind::LabelMaps => {
                only(filter, &["cluster_id"])?;
                let cluster_id = filter
                    .cluster_id
                    .as_ref()
                    .ok_or_else(|| Refusal::invalid("label maps are listed per cluster_id"))?;
                let maps = self
                    .cluster(cluster_id)?
                    .label_maps
                    .iter()
                    .map(|((origin, name), spec)| LabelMapView {
                        cluster_id: cluster_id.clone(),
                        name: name.clone(),
                        origin: *origin,
                        spec: spec.clone(),
                    })
                    .collect();
                Ok(page(maps, query, same, LabelingItems::LabelMaps))
            }
            LabelingQueryKind::EffectiveLabels => {
                only(
                    filter,
                    &["cluster_id", "namespace", "entity_kind", "label", "uids"],
                )?;
                self.effective_labels(query)
            }
        }
    }

    fn cluster(&self, cluster_id: &str) -> Result<&Cluster, Refusal> {
        self.clusters.get(cluster_id).ok_or_else(|| {
            Refusal::not_found(format!("container cluster {cluster_id} does not exist"))
        })
    }

    fn effective_labels(&self, query: &LabelingQuery) -> Result<LabelingPage, Refusal> {
        let filter = &query.filter;
        if filter.uids.len() > LabelingQuery::MAX_LIMIT as usize {
            return Err(Refusal::invalid(format!(
                "at most {} uids at once",
                LabelingQuery::MAX_LIMIT
            )));
        }
        if let Some(cluster_id) = &filter.cluster_id {
            self.cluster(cluster_id)?;
        }
        let candidates: Vec<ObjId> = match (&filter.label, filter.uids.is_empty()) {
            (Some(label), _) => match self.catalog.find(&label.key, &label.value) {
                Some(id) => self
                    .used_by
                    .get(&id)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect(),
                None => Vec::new(),
            },
            (None, false) => self
                .clusters
                .values()
                .flat_map(|c| {
                    filter
                        .uids
                        .iter()
                        .filter_map(|uid| c.objects.get(uid.as_str()))
                })
                .copied()
                .collect(),
            (None, true) => self.objects.iter().map(|(id, _)| id).collect(),
        };
        let uids: std::collections::HashSet<&str> =
            filter.uids.iter().map(String::as_str).collect();
        let mut entities: Vec<&Object> = candidates
            .into_iter()
            .filter_map(|id| self.objects.get(id))
            .filter(|o| o.entity.is_some())
            .filter(|o| {
                filter
                    .cluster_id
                    .as_deref()
                    .is_none_or(|c| *c == *o.cluster)
            })
            .filter(|o| {
                filter
                    .namespace
                    .as_deref()
                    .is_none_or(|n| *n == *o.namespace)
            })
            .filter(|o| filter.entity_kind.is_none_or(|k| k == o.entity_kind()))
            .filter(|o| uids.is_empty() || uids.contains(&*o.uid))
            .collect();
        fn sort_key(o: &Object) -> (&str, EntityKind, &str, &str, &str) {
            (&o.cluster, o.entity_kind(), &o.namespace, &o.name, &o.uid)
        }
        entities.sort_unstable_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        let view = |o: &Object| EffectiveLabelsView {
            cluster_id: o.cluster.to_string(),
            labels: self.materialize(&self.clusters[&*o.cluster], o),
        };
        Ok(page(entities, query, view, LabelingItems::EffectiveLabels))
    }
}

fn profile_view(cluster_id: &str, id: &str, profile: &Profile) -> ProfileView {
    ProfileView {
        href: profile_href(cluster_id, id),
        id: id.to_owned(),
        cluster_id: cluster_id.to_owned(),
        name: profile.name.clone(),
        namespace: profile.namespace.as_ref().map(ToString::to_string),
        origin: profile.origin,
        state: match profile.namespace {
            Some(_) => ProfileState::Linked,
            None => ProfileState::Pending,
        },
        settings: settings_view(&profile.settings),
    }
}

fn template_view(cluster_id: &str, cluster: &Cluster) -> TemplateView {
    TemplateView {
        cluster_id: cluster_id.to_owned(),
        settings: settings_view(&cluster.template),
    }
}
