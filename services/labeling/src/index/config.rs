//! Labeling's own events: the catalog, profiles, templates and label maps from the
//! configuration stream, and the derived events that empty the output queue.

use bulkhead_schema::messages::labeling::{
    LabelGroupId, LabelId, LabelMapOrigin, LabelRule, LabelingEvent, LoggedSettings,
    OutputPosition, ProfileOrigin, RestrictionMember,
};

use super::{Index, Profile, Work};
use crate::catalog::GroupDef;
use crate::objects::{Kind, ObjId};
use crate::output::Item;
use crate::rules::{CompiledMaps, Rules};
use bulkhead_runtime::intern::Str;

impl Index {
    /// A derived event ending at `through` is in the log: what it covers is out of the queue.
    pub(super) fn apply_derived(
        &mut self,
        stream: &str,
        stream_version: u64,
        cluster_id: &str,
        through: OutputPosition,
    ) {
        if stream == LabelingEvent::effective_stream(cluster_id)
            && let Some(cluster) = self.clusters.get_mut(cluster_id)
        {
            cluster.output.written(through, stream_version);
        }
    }

    pub(super) fn apply_labeling(
        &mut self,
        stream: &str,
        stream_version: u64,
        event: &LabelingEvent,
        work: &mut Work,
    ) {
        use LabelingEvent as E;
        if let E::EffectiveLabels {
            cluster_id,
            through,
            ..
        }
        | E::PairingKeyRejected {
            cluster_id,
            through,
            ..
        } = event
        {
            self.apply_derived(stream, stream_version, cluster_id, *through);
            return;
        }
        if stream != LabelingEvent::CONFIG_STREAM {
            return;
        }
        self.config_version = self.config_version.max(stream_version);
        match event {
            E::LabelKeyCreated { key, display_name } => self.catalog.create_key(key, display_name),
            E::LabelKeyDeleted { key } => self.catalog.delete_key(key),
            E::LabelCreated {
                label_id,
                key,
                value,
                created_by,
            } => {
                if self
                    .catalog
                    .create_label(*label_id, key, value, *created_by)
                {
                    self.mark_wanted(key, value, work);
                }
            }
            E::LabelRenamed { label_id, value } => {
                if let Some((key, _old)) = self.catalog.rename_label(*label_id, value) {
                    // Users that keep the label (a profile's assignment, a label map) resolve to
                    // the same ids, yet carry a new value: they are written whatever resolution
                    // says. Those whose annotation named the old value resolve again.
                    let users = self.users_of(*label_id);
                    for object in users.iter().filter_map(|id| self.objects.get(*id)) {
                        let item = Item::Labels {
                            kind: object.entity_kind(),
                            uid: object.uid.clone(),
                        };
                        work.items.push((object.cluster.clone(), item));
                    }
                    self.mark_all(users, work);
                    self.mark_wanted(&key, value, work);
                }
            }
            E::LabelDeleted { label_id } => {
                self.catalog.delete_label(*label_id);
                self.mark_all(self.users_of(*label_id), work);
            }
            E::LabelGroupCreated {
                group_id,
                key,
                name,
                labels,
                sub_groups,
            } => self.put_group(*group_id, key, name, labels, sub_groups, work),
            E::LabelGroupUpdated {
                group_id,
                name,
                labels,
                sub_groups,
            } => {
                if let Some(key) = self.catalog.group(*group_id).map(|g| g.key.clone()) {
                    self.put_group(*group_id, &key, name, labels, sub_groups, work)
                }
            }
            E::LabelGroupDeleted { group_id } => {
                self.catalog.delete_group(*group_id);
                self.recompile_profiles(work);
            }
            E::ProfileCreated {
                cluster_id,
                profile_id,
                name,
                settings,
                pairing_key_sha256,
            } => {
                let id = self.pools.str(profile_id);
                let rules = Rules::compile(settings, &self.catalog);
                let Some(cluster) = self.clusters.get_mut(cluster_id) else {
                    return;
                };
                cluster.profiles.entry(id).or_insert_with(|| Profile {
                    name: name.clone(),
                    origin: ProfileOrigin::PreCreated,
                    namespace: None,
                    pairing_key: hex::decode(pairing_key_sha256)
                        .ok()
                        .and_then(|h| h.try_into().ok()),
                    settings: settings.clone(),
                    rules,
                });
            }
            E::ProfileUpdated {
                cluster_id,
                profile_id,
                name,
                settings,
            } => {
                let rules = Rules::compile(settings, &self.catalog);
                let Some(profile) = self
                    .clusters
                    .get_mut(cluster_id)
                    .and_then(|c| c.profiles.get_mut(profile_id.as_str()))
                else {
                    return;
                };
                profile.name.clone_from(name);
                profile.settings = settings.clone();
                if profile.rules != rules {
                    profile.rules = rules;
                    if let Some(namespace) = profile.namespace.clone() {
                        self.mark_members(cluster_id, &namespace, work);
                    }
                }
            }
            E::ProfileDeleted {
                cluster_id,
                profile_id,
            } => {
                let Some(cluster) = self.clusters.get_mut(cluster_id) else {
                    return;
                };
                if !cluster
                    .profiles
                    .get(profile_id.as_str())
                    .is_some_and(|p| p.origin == ProfileOrigin::PreCreated)
                {
                    return;
                }
                let profile = cluster
                    .profiles
                    .remove(profile_id.as_str())
                    .expect("checked");
                if let Some(namespace) = profile.namespace {
                    if let Some(ns) = cluster.namespaces.get_mut(&namespace) {
                        ns.profile = None;
                    }
                    self.give_own_profile(cluster_id, &namespace);
                    self.mark_members(cluster_id, &namespace, work);
                }
            }
            E::TemplateSet {
                cluster_id,
                settings,
            } => {
                if let Some(cluster) = self.clusters.get_mut(cluster_id) {
                    cluster.template = settings.clone();
                }
            }
            E::LabelMapPut {
                cluster_id,
                name,
                spec,
            } => {
                if let Some(cluster) = self.clusters.get_mut(cluster_id) {
                    cluster
                        .label_maps
                        .insert((LabelMapOrigin::Api, name.clone()), spec.clone());
                    self.recompile_maps(cluster_id, work);
                }
            }
            E::LabelMapDeleted { cluster_id, name } => {
                if let Some(cluster) = self.clusters.get_mut(cluster_id)
                    && cluster
                        .label_maps
                        .remove(&(LabelMapOrigin::Api, name.clone()))
                        .is_some()
                {
                    self.recompile_maps(cluster_id, work);
                }
            }
            E::EffectiveLabels { .. } | E::PairingKeyRejected { .. } => {}
        }
    }

    fn put_group(
        &mut self,
        id: LabelGroupId,
        key: &str,
        name: &str,
        labels: &[LabelId],
        sub_groups: &[LabelGroupId],
        work: &mut Work,
    ) {
        self.catalog.put_group(
            id,
            GroupDef {
                key: key.to_owned(),
                name: name.to_owned(),
                labels: labels.to_vec(),
                sub_groups: sub_groups.to_vec(),
            },
        );
        self.recompile_profiles(work);
    }

    /// After a group changed: compiles again the profiles whose restrictions name groups, and
    /// resolves again the members of those whose rules changed.
    fn recompile_profiles(&mut self, work: &mut Work) {
        let names_groups = |settings: &LoggedSettings| {
            settings.labels.values().any(|rule| {
                matches!(rule, LabelRule::Restriction(members)
                    if members.iter().any(|m| matches!(m, RestrictionMember::LabelGroup(_))))
            })
        };
        let mut changed = Vec::new();
        for (cluster_id, cluster) in &mut self.clusters {
            for profile in cluster.profiles.values_mut() {
                if !names_groups(&profile.settings) {
                    continue;
                }
                let rules = Rules::compile(&profile.settings, &self.catalog);
                if rules != profile.rules {
                    profile.rules = rules;
                    if let Some(namespace) = &profile.namespace {
                        changed.push((cluster_id.clone(), namespace.clone()));
                    }
                }
            }
        }
        for (cluster_id, namespace) in changed {
            self.mark_members(&cluster_id, &namespace, work);
        }
    }

    pub(super) fn recompile_maps(&mut self, cluster_id: &str, work: &mut Work) {
        let pools = &mut self.pools;
        let cluster = self.clusters.get_mut(cluster_id).expect("checked");
        let maps = CompiledMaps::compile(&cluster.label_maps, &mut |s| pools.str(s));
        let node_changed = maps.node != cluster.maps.node;
        let workload_changed = maps.workload != cluster.maps.workload;
        cluster.maps = maps;
        let cluster = &self.clusters[cluster_id];
        let affected = cluster.objects.values().copied().filter(|id| {
            let is_node = matches!(self.objects.get(*id).map(|o| &o.kind), Some(Kind::Node));
            if is_node {
                node_changed
            } else {
                workload_changed
            }
        });
        self.mark_all(affected.collect::<Vec<_>>(), work);
    }

    fn users_of(&self, label: LabelId) -> Vec<ObjId> {
        self.used_by
            .get(&label)
            .map(|ids| ids.iter().copied().collect())
            .unwrap_or_default()
    }

    fn mark_wanted(&self, key: &str, value: &str, work: &mut Work) {
        let wanted = self
            .wanted
            .get(&(Str::from(key), Str::from(value)))
            .into_iter()
            .flatten()
            .copied();
        self.mark_all(wanted.collect::<Vec<_>>(), work);
    }
}
