//! Inventory's events: clusters, their objects, their namespaces and the pairing of namespaces
//! with pre-created profiles.

use std::collections::HashSet;

use bulkhead_schema::messages::inventory::{
    InventoryEvent, ObjectDetails, ObservedObject, ResourceKind,
};
use bulkhead_schema::messages::labeling::{LabelMapOrigin, LabelMapSpec, ProfileOrigin};

use super::{Cluster, Index, Profile, Work, link, unlink};
use crate::metrics;
use crate::objects::{Kind, MAX_OWNER_DEPTH, ObjId, Object, pairing_key_of};
use crate::output::{Item, Rejection};
use crate::rules::Rules;
use bulkhead_runtime::intern::Str;

impl Index {
    pub(super) fn apply_inventory(
        &mut self,
        stream: &str,
        event: &InventoryEvent,
        work: &mut Work,
    ) {
        use InventoryEvent as E;
        let cluster_id = match event {
            E::ClusterCreated { cluster_id, .. }
            | E::ClusterDeleted { cluster_id }
            | E::ObjectApplied { cluster_id, .. }
            | E::ObjectDeleted { cluster_id, .. } => cluster_id,
            E::ClusterUpdated { .. } | E::ClusterConnected { .. } | E::ClusterAuthFailed { .. } => {
                return;
            }
        };
        // The stream decides which cluster changes, as in inventory.
        if stream != InventoryEvent::stream(cluster_id) {
            return;
        }
        match event {
            E::ClusterCreated { .. } => {
                self.clusters.entry(cluster_id.clone()).or_default();
            }
            E::ClusterDeleted { .. } => self.drop_cluster(cluster_id),
            E::ObjectApplied { object, .. } if self.clusters.contains_key(cluster_id) => {
                self.apply_object(cluster_id, object, work)
            }
            E::ObjectDeleted { kind, uid, .. } if self.clusters.contains_key(cluster_id) => {
                self.delete_object(cluster_id, *kind, uid, work)
            }
            _ => {}
        }
        self.pools.sweep_if_grown();
    }

    /// Forgets a deleted cluster. Its entities are not reported one by one: the cluster's
    /// deletion says it all.
    fn drop_cluster(&mut self, cluster_id: &str) {
        let Some(cluster) = self.clusters.remove(cluster_id) else {
            return;
        };
        for id in cluster.objects.into_values() {
            if let Some(object) = self.objects.remove(id) {
                self.unindex(id, object.entity.as_ref());
            }
        }
    }

    fn apply_object(&mut self, cluster_id: &str, observed: &ObservedObject, work: &mut Work) {
        match (&observed.details, observed.kind) {
            (ObjectDetails::Namespace {}, ResourceKind::Namespace) => {
                self.apply_namespace(cluster_id, observed, work)
            }
            (
                ObjectDetails::LabelMap {
                    node_label_map,
                    workload_label_map,
                },
                ResourceKind::LabelMap,
            ) => {
                let name = if observed.namespace.is_empty() {
                    observed.name.clone()
                } else {
                    format!("{}/{}", observed.namespace, observed.name)
                };
                let uid = self.pools.str(&observed.uid);
                let cluster = self.cluster_mut(cluster_id);
                if let Some(old) = cluster.custom_maps.insert(uid, name.clone()) {
                    cluster
                        .label_maps
                        .remove(&(LabelMapOrigin::CustomResource, old));
                }
                cluster.label_maps.insert(
                    (LabelMapOrigin::CustomResource, name),
                    LabelMapSpec {
                        node_label_map: node_label_map.clone(),
                        workload_label_map: workload_label_map.clone(),
                    },
                );
                self.recompile_maps(cluster_id, work);
            }
            _ => {
                let cluster_key = self.pools.str(cluster_id);
                if let Some(object) = Object::from_observed(&cluster_key, observed, &mut self.pools)
                {
                    self.upsert(cluster_id, object, work);
                }
            }
        }
    }

    fn cluster_mut(&mut self, cluster_id: &str) -> &mut Cluster {
        self.clusters
            .get_mut(cluster_id)
            .expect("callers check that the cluster exists")
    }

    fn upsert(&mut self, cluster_id: &str, mut object: Object, work: &mut Work) {
        let existing = self.clusters[cluster_id].objects.get(&object.uid).copied();
        let id = match existing {
            Some(id) => {
                let old = self.objects.get_mut(id).expect("indexed objects exist");
                object.entity = old.entity.take();
                let old = std::mem::replace(old, object);
                let cluster = self.clusters.get_mut(cluster_id).expect("checked");
                unlink(cluster, id, &old);
                id
            }
            None => {
                let uid = object.uid.clone();
                let id = self.objects.insert(object);
                self.cluster_mut(cluster_id).objects.insert(uid, id);
                id
            }
        };
        let object = self.objects.get(id).expect("just stored");
        link(
            self.clusters.get_mut(cluster_id).expect("checked"),
            id,
            object,
        );
        work.mark(id, object);
        if let Kind::Controller { .. } = object.kind {
            self.mark_descendants(cluster_id, &object.uid.clone(), work);
        }
    }

    fn delete_object(&mut self, cluster_id: &str, kind: ResourceKind, uid: &str, work: &mut Work) {
        match kind {
            ResourceKind::Namespace => return self.delete_namespace(cluster_id, uid, work),
            ResourceKind::LabelMap => {
                let cluster = self.cluster_mut(cluster_id);
                if let Some(name) = cluster.custom_maps.remove(uid) {
                    cluster
                        .label_maps
                        .remove(&(LabelMapOrigin::CustomResource, name));
                    self.recompile_maps(cluster_id, work);
                }
                return;
            }
            _ => {}
        }
        let cluster = self.cluster_mut(cluster_id);
        let Some(id) = cluster.objects.remove(uid) else {
            return;
        };
        let object = self.objects.remove(id).expect("indexed objects exist");
        unlink(self.cluster_mut(cluster_id), id, &object);
        if object.entity.is_some() {
            let removed = Item::Removed(Box::new(object.entity_ref()));
            work.items.push((object.cluster.clone(), removed));
        }
        self.unindex(id, object.entity.as_ref());
        match object.kind {
            Kind::Controller { .. } => self.mark_descendants(cluster_id, &object.uid, work),
            Kind::Node => self.mark_host_pods(cluster_id, &object.name, work),
            _ => {}
        }
    }

    fn mark_descendants(&self, cluster_id: &str, uid: &Str, work: &mut Work) {
        let cluster = &self.clusters[cluster_id];
        let mut frontier = vec![(uid.clone(), 0)];
        let mut seen = HashSet::new();
        while let Some((owner, depth)) = frontier.pop() {
            if depth >= MAX_OWNER_DEPTH || !seen.insert(owner.clone()) {
                continue;
            }
            for &child in cluster.children.get(&owner).into_iter().flatten() {
                let object = self.objects.get(child).expect("indexed objects exist");
                work.mark(child, object);
                if let Kind::Controller { .. } = object.kind {
                    frontier.push((object.uid.clone(), depth + 1));
                }
            }
        }
    }

    pub(super) fn mark_host_pods(&self, cluster_id: &str, node: &str, work: &mut Work) {
        let cluster = &self.clusters[cluster_id];
        for &pod in cluster.host_pods.get(node).into_iter().flatten() {
            work.mark(pod, self.objects.get(pod).expect("indexed objects exist"));
        }
    }

    pub(super) fn mark_members(&self, cluster_id: &str, namespace: &str, work: &mut Work) {
        let cluster = &self.clusters[cluster_id];
        for id in cluster.members(namespace) {
            work.mark(id, self.objects.get(id).expect("indexed objects exist"));
        }
    }

    pub(super) fn mark_all(&self, ids: impl IntoIterator<Item = ObjId>, work: &mut Work) {
        for id in ids {
            if let Some(object) = self.objects.get(id) {
                work.mark(id, object);
            }
        }
    }

    // --- namespaces and profiles ----------------------------------------------------------------

    /// A namespace observed: it is linked to the pending profile whose pairing key it carries
    /// (when that key is new to it), and otherwise gets its own profile from the template.
    fn apply_namespace(&mut self, cluster_id: &str, observed: &ObservedObject, work: &mut Work) {
        let name = self.pools.str(&observed.name);
        let uid = self.pools.str(&observed.uid);
        let key = pairing_key_of(&observed.annotations);
        let cluster = self.cluster_mut(cluster_id);
        cluster.namespace_names.insert(uid.clone(), name.clone());
        let namespace = cluster.namespaces.entry(name.clone()).or_default();
        namespace.uid = Some(uid.clone());
        let key_is_new = key.is_some() && namespace.pairing_key != key;
        namespace.pairing_key = key;
        let linked_to_pre_created = namespace
            .profile
            .as_ref()
            .and_then(|id| cluster.profiles.get(id))
            .is_some_and(|p| p.origin == ProfileOrigin::PreCreated);
        let mut changed = false;
        if let (true, false, Some(key)) = (key_is_new, linked_to_pre_created, key) {
            match pairing_target(cluster, &key) {
                Ok(profile_id) => {
                    link_profile(cluster, &name, profile_id);
                    changed = true;
                }
                Err((kind, reason)) => {
                    metrics::count(&metrics::PAIRING_REJECTIONS, &[kind]);
                    tracing::warn!(cluster_id, namespace = %name, reason, "pairing key rejected");
                    let rejection = Rejection {
                        namespace: name.to_string(),
                        namespace_uid: uid.to_string(),
                        reason: reason.into(),
                    };
                    work.items.push((
                        self.pools.str(cluster_id),
                        Item::Rejected(Box::new(rejection)),
                    ));
                }
            }
        }
        if self.clusters[cluster_id].namespaces[&name]
            .profile
            .is_none()
        {
            self.give_own_profile(cluster_id, &name);
            changed = true;
        }
        if changed {
            self.mark_members(cluster_id, &name, work);
        }
    }

    /// A deleted namespace's own profile goes with it; a pre-created profile linked to it
    /// becomes pending again, so that the namespace re-created from the same manifest links it
    /// again.
    fn delete_namespace(&mut self, cluster_id: &str, uid: &str, work: &mut Work) {
        let cluster = self.cluster_mut(cluster_id);
        let Some(name) = cluster.namespace_names.remove(uid) else {
            return;
        };
        let Some(namespace) = cluster.namespaces.get_mut(&name) else {
            return;
        };
        namespace.uid = None;
        namespace.pairing_key = None;
        if let Some(profile_id) = namespace.profile.take() {
            match cluster.profiles.get_mut(&profile_id) {
                Some(p) if p.origin == ProfileOrigin::PreCreated => p.namespace = None,
                _ => {
                    cluster.profiles.remove(&profile_id);
                }
            }
        }
        if namespace.members.is_empty() {
            cluster.namespaces.remove(&name);
        } else {
            self.mark_members(cluster_id, &name, work);
        }
    }

    /// Gives an observed namespace its own profile, from the cluster's template; its id is the
    /// namespace's uid.
    pub(super) fn give_own_profile(&mut self, cluster_id: &str, namespace: &Str) {
        let cluster = self.clusters.get_mut(cluster_id).expect("checked");
        let Some(uid) = cluster
            .namespaces
            .get(namespace)
            .and_then(|n| n.uid.clone())
        else {
            return;
        };
        let profile = Profile {
            name: namespace.to_string(),
            origin: ProfileOrigin::Namespace,
            namespace: Some(namespace.clone()),
            pairing_key: None,
            settings: cluster.template.clone(),
            rules: Rules::compile(&cluster.template, &self.catalog),
        };
        cluster.profiles.insert(uid.clone(), profile);
        cluster
            .namespaces
            .get_mut(namespace)
            .expect("checked")
            .profile = Some(uid);
    }
}

/// Which pending profile of the cluster `key` pairs with, or why none (a metric label and a
/// reason).
fn pairing_target(cluster: &Cluster, key: &[u8; 32]) -> Result<Str, (&'static str, &'static str)> {
    let (id, profile) = cluster
        .profiles
        .iter()
        .find(|(_, p)| p.pairing_key.as_ref() == Some(key))
        .ok_or((
            "unknown_key",
            "no profile of this cluster has this pairing key",
        ))?;
    if profile.namespace.is_some() {
        return Err((
            "already_linked",
            "the pairing key's profile is linked to another namespace already",
        ));
    }
    Ok(id.clone())
}

/// Links `namespace` to the pre-created profile `profile_id`; its own profile goes.
fn link_profile(cluster: &mut Cluster, namespace: &Str, profile_id: Str) {
    let ns = cluster
        .namespaces
        .get_mut(namespace)
        .expect("caller made it");
    if let Some(own) = ns.profile.replace(profile_id.clone()) {
        cluster.profiles.remove(&own);
    }
    if let Some(profile) = cluster.profiles.get_mut(&profile_id) {
        profile.namespace = Some(namespace.clone());
    }
}
