//! The labeling state as a pure projection of the log: the catalog, each cluster's profiles,
//! template, label maps, namespaces and objects, every entity's resolution, and the queue of
//! derived output not yet in the log.
//!
//! Applying an event marks the entities it may affect, through reverse indexes, and resolves
//! only those again:
//!
//! | change                                    | entities resolved again                      |
//! |-------------------------------------------|----------------------------------------------|
//! | profile edit, namespace linked or deleted | the namespace's members                      |
//! | pod, service or controller observed       | itself; a controller's descendants           |
//! | node observed, node's labels changed      | itself; its host-network pods if it changed  |
//! | label created                             | entities that looked for its value           |
//! | label renamed                             | its users, and those that looked for the new value |
//! | label deleted                             | its users                                    |
//! | label group changed                       | members of profiles whose rules changed      |
//! | label map changed                         | the cluster's entities of the side that changed |
//!
//! An entity whose effective labels changed is queued for output ([`crate::output`]).
//! Inventory's events are applied in `index/inventory.rs`, labeling's own in `index/config.rs`;
//! resolution and the reverse indexes are here.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bulkhead_runtime::projection::Projection;
use bulkhead_schema::messages::eventlog::RecordedEvent;
use bulkhead_schema::messages::inventory::{InventoryEvent, ObservedObject};
use bulkhead_schema::messages::labeling::{
    EntityKind, LabelId, LabelMapOrigin, LabelMapSpec, LabelingEvent, LoggedSettings,
    OutputPosition, ProfileOrigin,
};

use crate::catalog::Catalog;
use crate::objects::{Kind, MAX_OWNER_DEPTH, ObjId, Object, Pools, Slab};
use crate::output::{Item, Output};
use crate::resolve::{Inputs, Layer, Resolution, inherit, resolve};
use crate::rules::{CompiledMaps, Rules};
use bulkhead_runtime::intern::Str;

/// A container workload profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Profile {
    pub(crate) name: String,
    pub(crate) origin: ProfileOrigin,
    /// The namespace it applies to; `None` while a pre-created profile is pending.
    pub(crate) namespace: Option<Str>,
    pub(crate) pairing_key: Option<[u8; 32]>,
    pub(crate) settings: LoggedSettings,
    pub(crate) rules: Rules,
}

/// A namespace: known from its own observation (`uid`) or only from its members'.
#[derive(Debug, Default)]
pub(crate) struct Namespace {
    pub(crate) uid: Option<Str>,
    /// The id of the profile that applies to it.
    pub(crate) profile: Option<Str>,
    /// The last pairing key it carried, hashed: linking is tried when it changes.
    pub(crate) pairing_key: Option<[u8; 32]>,
    /// Its pods, services and controllers.
    pub(crate) members: HashSet<ObjId>,
}

#[derive(Debug, Default)]
pub(crate) struct Cluster {
    pub(crate) template: LoggedSettings,
    pub(crate) profiles: BTreeMap<Str, Profile>,
    pub(crate) namespaces: HashMap<Str, Namespace>,
    /// Namespace uid -> name.
    pub(crate) namespace_names: HashMap<Str, Str>,
    /// Nodes, pods, services, controllers by uid.
    pub(crate) objects: HashMap<Str, ObjId>,
    pub(crate) nodes: HashMap<Str, ObjId>,
    /// Host-network pods by node name.
    pub(crate) host_pods: HashMap<Str, HashSet<ObjId>>,
    /// Pods and controllers by their owner's uid (the owner need not be observed yet).
    pub(crate) children: HashMap<Str, HashSet<ObjId>>,
    pub(crate) label_maps: BTreeMap<(LabelMapOrigin, String), LabelMapSpec>,
    /// LabelMap custom resources: uid -> the name their map is kept under.
    pub(crate) custom_maps: HashMap<Str, String>,
    pub(crate) maps: CompiledMaps,
    pub(crate) output: Output,
}

impl Cluster {
    pub(crate) fn profile_of(&self, namespace: &str) -> Option<(&Str, &Profile)> {
        let id = self.namespaces.get(namespace)?.profile.as_ref()?;
        self.profiles.get_key_value(id)
    }

    fn members(&self, namespace: &str) -> impl Iterator<Item = ObjId> + '_ {
        self.namespaces
            .get(namespace)
            .into_iter()
            .flat_map(|ns| ns.members.iter().copied())
    }
}

/// What one event asks of the finishing step.
#[derive(Debug, Default)]
struct Work {
    /// Entities to resolve again; nodes (rank 0) before pods, so that host-network pods read
    /// their node's new labels.
    dirty: BTreeSet<(u8, ObjId)>,
    /// Per cluster, output that no change of resolution shows: removals, pairing rejections,
    /// users of a renamed label.
    items: Vec<(Str, Item)>,
}

impl Work {
    fn mark(&mut self, id: ObjId, object: &Object) {
        let rank = u8::from(!matches!(object.kind, Kind::Node));
        self.dirty.insert((rank, id));
    }
}

/// The projection.
#[derive(Debug, Default)]
pub struct Index {
    /// The version of [`LabelingEvent::CONFIG_STREAM`] applied: commands append at it.
    pub(crate) config_version: u64,
    pub(crate) catalog: Catalog,
    pub(crate) clusters: BTreeMap<String, Cluster>,
    pub(crate) objects: Slab,
    /// Entities carrying each label.
    pub(crate) used_by: HashMap<LabelId, HashSet<ObjId>>,
    /// Entities that looked for a label `(key, value)` that did not exist.
    pub(crate) wanted: HashMap<(Str, Str), HashSet<ObjId>>,
    /// Labels label map rules with `allow_create` miss, with how many entities miss each.
    pub(crate) creatable: BTreeMap<(Str, Str), u32>,
    pub(crate) pools: Pools,
}

/// The streams of derived events: `effective/<cluster>`.
const DERIVED_STREAMS: &str = "effective/";

/// A derived [`LabelingEvent`] as the projection reads it: the rest of its fields are skipped.
#[derive(serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Derived {
    EffectiveLabels {
        cluster_id: String,
        through: OutputPosition,
    },
    PairingKeyRejected {
        cluster_id: String,
        through: OutputPosition,
    },
}

impl Projection for Index {
    fn apply(&mut self, event: &RecordedEvent) {
        let mut work = Work::default();
        match event.event_type.as_str() {
            InventoryEvent::EVENT_TYPE => match rmp_serde::from_slice(&event.data) {
                Ok(decoded) => self.apply_inventory(&event.stream, &decoded, &mut work),
                Err(error) => {
                    tracing::warn!(seq = event.seq, %error, "undecodable inventory event; skipped")
                }
            },
            // Of its own derived events the projection needs where they end, not their
            // entities (for inventory and others): it reads no more of them.
            LabelingEvent::EVENT_TYPE if event.stream.starts_with(DERIVED_STREAMS) => {
                match rmp_serde::from_slice::<Derived>(&event.data) {
                    Ok(Derived::EffectiveLabels {
                        cluster_id,
                        through,
                    })
                    | Ok(Derived::PairingKeyRejected {
                        cluster_id,
                        through,
                    }) => self.apply_derived(
                        &event.stream,
                        event.stream_version,
                        &cluster_id,
                        through,
                    ),
                    Err(error) => {
                        tracing::warn!(seq = event.seq, %error, "undecodable labeling event; skipped")
                    }
                }
            }
            LabelingEvent::EVENT_TYPE => match rmp_serde::from_slice(&event.data) {
                Ok(decoded) => {
                    self.apply_labeling(&event.stream, event.stream_version, &decoded, &mut work)
                }
                Err(error) => {
                    tracing::warn!(seq = event.seq, %error, "undecodable labeling event; skipped")
                }
            },
            _ => return,
        }
        self.finish(event.seq, work);
    }
}

impl Index {
    // --- resolution -----------------------------------------------------------------------------

    /// Resolves the marked entities again and queues those whose labels changed.
    fn finish(&mut self, seq: u64, work: Work) {
        let Work {
            mut dirty,
            mut items,
        } = work;
        while let Some((_, id)) = dirty.pop_first() {
            let Some((cluster, item, node)) = self.refresh(id) else {
                continue;
            };
            if let Some(node) = node {
                let cluster_id = cluster.to_string();
                let mut more = Work::default();
                self.mark_host_pods(&cluster_id, &node, &mut more);
                dirty.extend(more.dirty);
            }
            items.push((cluster, item));
        }
        let mut by_cluster: BTreeMap<Str, Vec<Item>> = BTreeMap::new();
        for (cluster, item) in items {
            by_cluster.entry(cluster).or_default().push(item);
        }
        for (cluster_id, mut items) in by_cluster {
            let Some(cluster) = self.clusters.get(&*cluster_id) else {
                continue;
            };
            // The order a replica finds changes in must not matter: every replica queues the
            // same items at the same positions. By namespace and name, so that the pods of a
            // controller are written side by side and share their labels' entries in an event.
            items.sort_by_cached_key(|item| {
                let (kind, uid) = item.order_key();
                let (namespace, name): (Str, Str) = match item {
                    Item::Labels { kind, uid } => self
                        .entity_of(cluster, *kind, uid)
                        .map(|o| (o.namespace.clone(), o.name.clone()))
                        .unwrap_or_default(),
                    Item::Removed(entity) => (
                        entity.namespace.as_str().into(),
                        entity.name.as_str().into(),
                    ),
                    Item::Rejected(_) => Default::default(),
                };
                (kind, namespace, name, Str::from(uid))
            });
            if let Some(cluster) = self.clusters.get_mut(&*cluster_id) {
                cluster.output.enqueue(seq, items);
            }
        }
    }

    /// Resolves one entity again. When its labels changed: its cluster, what to output, and,
    /// for a node, its name (its host-network pods follow it).
    fn refresh(&mut self, id: ObjId) -> Option<(Str, Item, Option<Str>)> {
        let object = self.objects.get(id)?;
        let new = self.resolve_object(object);
        if object.entity == new {
            return None;
        }
        let object = self.objects.get_mut(id).expect("checked");
        let old = std::mem::replace(&mut object.entity, new.clone());
        let labels_changed =
            old.as_ref().map(|r| &r.effective) != new.as_ref().map(|r| &r.effective);
        let (kind, uid) = (object.entity_kind(), object.uid.clone());
        let removed = new.is_none().then(|| Box::new(object.entity_ref()));
        let cluster = object.cluster.clone();
        let node = matches!(object.kind, Kind::Node).then(|| object.name.clone());
        self.unindex(id, old.as_ref());
        self.index(id, new.as_ref());
        if !labels_changed {
            return None;
        }
        let item = match removed {
            Some(entity) => Item::Removed(entity),
            None => Item::Labels { kind, uid },
        };
        Some((cluster, item, node))
    }

    /// The entity's resolution from what the index holds; `None` if it is not an entity.
    pub(crate) fn resolve_object(&self, object: &Object) -> Option<Resolution> {
        let cluster = self.clusters.get(&*object.cluster)?;
        let maps = &cluster.maps;
        let (rules, maps) = match &object.kind {
            Kind::Node => {
                let rules = Rules::node();
                let inputs = Inputs {
                    rules: Some(&rules),
                    layers: &[],
                    kube_labels: &object.labels,
                    maps: &maps.node,
                };
                return Some(resolve(&inputs, &self.catalog));
            }
            Kind::Pod {
                node,
                host_network: true,
            } => {
                let node = cluster
                    .nodes
                    .get(node)
                    .and_then(|id| self.objects.get(*id)?.entity.as_ref());
                return Some(node.map_or_else(Resolution::default, |n| inherit(&n.effective)));
            }
            Kind::Controller { .. }
                if self.chain(cluster, object.owner.as_ref()).next().is_some() =>
            {
                return None;
            }
            _ => (
                cluster.profile_of(&object.namespace).map(|(_, p)| &p.rules),
                &maps.workload,
            ),
        };
        let mut layers = vec![
            Layer {
                depth: 0,
                template: true,
                annotations: object.template_annotations(),
            },
            Layer {
                depth: 0,
                template: false,
                annotations: &object.annotations,
            },
        ];
        if let Kind::Pod { .. } = object.kind {
            for (depth, controller) in self.chain(cluster, object.owner.as_ref()).enumerate() {
                let depth = depth as u8 + 1;
                layers.push(Layer {
                    depth,
                    template: true,
                    annotations: controller.template_annotations(),
                });
                layers.push(Layer {
                    depth,
                    template: false,
                    annotations: &controller.annotations,
                });
            }
        }
        let inputs = Inputs {
            rules,
            layers: &layers,
            kube_labels: &object.labels,
            maps,
        };
        Some(resolve(&inputs, &self.catalog))
    }

    /// The controllers above an object, nearest first, as far as they are observed.
    pub(crate) fn chain<'a>(
        &'a self,
        cluster: &'a Cluster,
        mut owner: Option<&'a Str>,
    ) -> impl Iterator<Item = &'a Object> + 'a {
        std::iter::from_fn(move || {
            let id = cluster.objects.get(owner?)?;
            let controller = self.objects.get(*id)?;
            if !matches!(controller.kind, Kind::Controller { .. }) {
                return None;
            }
            owner = controller.owner.as_ref();
            Some(controller)
        })
        .take(MAX_OWNER_DEPTH)
    }

    fn index(&mut self, id: ObjId, resolution: Option<&Resolution>) {
        let Some(resolution) = resolution else {
            return;
        };
        for (label, _) in &resolution.effective.labels {
            self.used_by.entry(*label).or_default().insert(id);
        }
        for miss in &resolution.misses {
            let key = (miss.key.clone(), miss.value.clone());
            if miss.create {
                *self.creatable.entry(key.clone()).or_default() += 1;
            }
            self.wanted.entry(key).or_default().insert(id);
        }
    }

    fn unindex(&mut self, id: ObjId, resolution: Option<&Resolution>) {
        let Some(resolution) = resolution else {
            return;
        };
        for (label, _) in &resolution.effective.labels {
            if let Some(users) = self.used_by.get_mut(label) {
                users.remove(&id);
                if users.is_empty() {
                    self.used_by.remove(label);
                }
            }
        }
        for miss in &resolution.misses {
            let key = (miss.key.clone(), miss.value.clone());
            if miss.create
                && let Some(count) = self.creatable.get_mut(&key)
            {
                *count -= 1;
                if *count == 0 {
                    self.creatable.remove(&key);
                }
            }
            if let Some(ids) = self.wanted.get_mut(&key) {
                ids.remove(&id);
                if ids.is_empty() {
                    self.wanted.remove(&key);
                }
            }
        }
    }

    /// Resolves every entity, nodes first, without queueing output: after a checkpoint is
    /// loaded, resolution is a function of what it holds.
    pub(crate) fn resolve_all(&mut self) {
        let mut work = Work::default();
        for (id, object) in self.objects.iter() {
            work.mark(id, object);
        }
        for (_, id) in work.dirty {
            if let Some(object) = self.objects.get(id) {
                let resolution = self.resolve_object(object);
                self.index(id, resolution.as_ref());
                self.objects.get_mut(id).expect("checked").entity = resolution;
            }
        }
    }

    /// Stores an object read from a checkpoint, unresolved.
    pub(crate) fn restore_object(&mut self, cluster_id: &str, observed: &ObservedObject) {
        let cluster_key = self.pools.str(cluster_id);
        if let Some(object) = Object::from_observed(&cluster_key, observed, &mut self.pools) {
            let uid = object.uid.clone();
            let id = self.objects.insert(object);
            let cluster = self.clusters.get_mut(cluster_id).expect("restored first");
            cluster.objects.insert(uid, id);
            link(cluster, id, self.objects.get(id).expect("just stored"));
        }
    }

    // --- reading --------------------------------------------------------------------------------

    /// Labels label maps would create: `(key, value)` pairs of existing keys and valid values,
    /// with no label of that value yet, ignoring case (values stay unique so; a map yielding
    /// `Shop` where `shop` exists labels nothing).
    pub(crate) fn labels_to_create(&self, limit: usize) -> Vec<(String, String)> {
        self.creatable
            .keys()
            .filter(|(key, value)| {
                self.catalog.is_key(key)
                    && crate::plan::valid_value(value).is_ok_and(|v| v == **value)
                    && self.catalog.find_ignoring_case(key, value).is_none()
            })
            .take(limit)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    pub(crate) fn entity(&self, cluster: &Cluster, uid: &str) -> Option<(ObjId, &Object)> {
        let id = *cluster.objects.get(uid)?;
        let object = self.objects.get(id)?;
        object.entity.as_ref().map(|_| (id, object))
    }

    /// The entity of that kind and uid, if it is one.
    pub(crate) fn entity_of(
        &self,
        cluster: &Cluster,
        kind: EntityKind,
        uid: &str,
    ) -> Option<&Object> {
        self.entity(cluster, uid)
            .map(|(_, o)| o)
            .filter(|o| o.entity_kind() == kind)
    }
}

/// Adds an object to its cluster's indexes by namespace, owner, node and name.
fn link(cluster: &mut Cluster, id: ObjId, object: &Object) {
    if !object.namespace.is_empty() {
        cluster
            .namespaces
            .entry(object.namespace.clone())
            .or_default()
            .members
            .insert(id);
    }
    if let Some(owner) = &object.owner {
        cluster
            .children
            .entry(owner.clone())
            .or_default()
            .insert(id);
    }
    match &object.kind {
        Kind::Node => {
            cluster.nodes.insert(object.name.clone(), id);
        }
        Kind::Pod {
            node,
            host_network: true,
        } => {
            cluster
                .host_pods
                .entry(node.clone())
                .or_default()
                .insert(id);
        }
        _ => {}
    }
}

/// Undoes [`link`].
fn unlink(cluster: &mut Cluster, id: ObjId, object: &Object) {
    fn remove(map: &mut HashMap<Str, HashSet<ObjId>>, key: &Str, id: ObjId) {
        if let Some(ids) = map.get_mut(key) {
            ids.remove(&id);
            if ids.is_empty() {
                map.remove(key);
            }
        }
    }
    if let Some(namespace) = cluster.namespaces.get_mut(&object.namespace) {
        namespace.members.remove(&id);
        if namespace.members.is_empty() && namespace.uid.is_none() {
            cluster.namespaces.remove(&object.namespace);
        }
    }
    if let Some(owner) = &object.owner {
        remove(&mut cluster.children, owner, id);
    }
    match &object.kind {
        Kind::Node if cluster.nodes.get(&object.name) == Some(&id) => {
            cluster.nodes.remove(&object.name);
        }
        Kind::Pod {
            node,
            host_network: true,
        } => remove(&mut cluster.host_pods, node, id),
        _ => {}
    }
}

mod config;
mod inventory;
#[cfg(test)]
pub(crate) mod tests;
