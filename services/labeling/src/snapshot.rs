//! The checkpoint form of the [`Index`]: what the log decided (catalog, profiles with their
//! links, templates, label maps, namespaces, objects as observations, the output queue), never
//! what follows from it. Resolutions and reverse indexes are rebuilt on load, so that a
//! checkpoint does not depend on the in-memory layout and a restart starts with fresh pools.

use bulkhead_schema::messages::inventory::ObservedObject;
use bulkhead_schema::messages::labeling::{
    LabelMapOrigin, LabelMapSpec, LoggedSettings, ProfileOrigin,
};
use serde::de::Deserializer;
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::index::{Cluster, Index, Namespace, Profile};
use crate::output::Output;
use crate::rules::{CompiledMaps, Rules};

#[derive(Serialize, Deserialize)]
struct Snapshot<K, C> {
    config_version: u64,
    catalog: K,
    clusters: Vec<C>,
}

#[derive(Serialize, Deserialize)]
struct ClusterRecord<O> {
    cluster_id: String,
    template: LoggedSettings,
    profiles: Vec<ProfileRecord>,
    namespaces: Vec<NamespaceRecord>,
    label_maps: Vec<LabelMapRecord>,
    objects: O,
    output: Output,
}

#[derive(Serialize, Deserialize)]
struct ProfileRecord {
    id: String,
    name: String,
    origin: ProfileOrigin,
    namespace: Option<String>,
    pairing_key_sha256: Option<String>,
    settings: LoggedSettings,
}

#[derive(Serialize, Deserialize)]
struct NamespaceRecord {
    name: String,
    uid: String,
    profile: Option<String>,
    pairing_key_sha256: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct LabelMapRecord {
    origin: LabelMapOrigin,
    name: String,
    /// The custom resource's uid.
    uid: Option<String>,
    spec: LabelMapSpec,
}

fn unhex(hash: Option<String>) -> Option<[u8; 32]> {
    hex::decode(hash?).ok()?.try_into().ok()
}

/// A cluster's objects, serialised one observation at a time (never all copied at once).
struct ObjectsOf<'a>(&'a Index, &'a Cluster);

impl Serialize for ObjectsOf<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.1.objects.len()))?;
        for id in self.1.objects.values() {
            if let Some(object) = self.0.objects.get(*id) {
                seq.serialize_element(&object.to_observed())?;
            }
        }
        seq.end()
    }
}

fn record<'a>(
    index: &'a Index,
    cluster_id: &str,
    cluster: &'a Cluster,
) -> ClusterRecord<ObjectsOf<'a>> {
    let custom_uids: std::collections::HashMap<&str, &str> = cluster
        .custom_maps
        .iter()
        .map(|(uid, name)| (name.as_str(), &**uid))
        .collect();
    ClusterRecord {
        cluster_id: cluster_id.to_owned(),
        template: cluster.template.clone(),
        profiles: cluster
            .profiles
            .iter()
            .map(|(id, p)| ProfileRecord {
                id: id.to_string(),
                name: p.name.clone(),
                origin: p.origin,
                namespace: p.namespace.as_ref().map(ToString::to_string),
                pairing_key_sha256: p.pairing_key.map(hex::encode),
                settings: p.settings.clone(),
            })
            .collect(),
        namespaces: cluster
            .namespaces
            .iter()
            .filter_map(|(name, ns)| {
                Some(NamespaceRecord {
                    name: name.to_string(),
                    uid: ns.uid.as_ref()?.to_string(),
                    profile: ns.profile.as_ref().map(ToString::to_string),
                    pairing_key_sha256: ns.pairing_key.map(hex::encode),
                })
            })
            .collect(),
        label_maps: cluster
            .label_maps
            .iter()
            .map(|((origin, name), spec)| LabelMapRecord {
                origin: *origin,
                name: name.clone(),
                uid: match origin {
                    LabelMapOrigin::CustomResource => {
                        custom_uids.get(name.as_str()).map(|u| (*u).to_owned())
                    }
                    LabelMapOrigin::Api => None,
                },
                spec: spec.clone(),
            })
            .collect(),
        objects: ObjectsOf(index, cluster),
        output: cluster.output.clone(),
    }
}

impl Serialize for Index {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Snapshot {
            config_version: self.config_version,
            catalog: &self.catalog,
            clusters: self
                .clusters
                .iter()
                .map(|(id, cluster)| record(self, id, cluster))
                .collect(),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Index {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let snapshot =
            Snapshot::<Catalog, ClusterRecord<Vec<ObservedObject>>>::deserialize(deserializer)?;
        let mut index = Index {
            config_version: snapshot.config_version,
            catalog: snapshot.catalog,
            ..Index::default()
        };
        for record in snapshot.clusters {
            let mut cluster = Cluster {
                template: record.template,
                output: record.output,
                ..Cluster::default()
            };
            for map in record.label_maps {
                if let Some(uid) = map.uid {
                    cluster
                        .custom_maps
                        .insert(index.pools.str(&uid), map.name.clone());
                }
                cluster.label_maps.insert((map.origin, map.name), map.spec);
            }
            let pools = &mut index.pools;
            cluster.maps = CompiledMaps::compile(&cluster.label_maps, &mut |s| pools.str(s));
            for p in record.profiles {
                let profile = Profile {
                    name: p.name,
                    origin: p.origin,
                    namespace: p.namespace.map(|n| index.pools.str(&n)),
                    pairing_key: unhex(p.pairing_key_sha256),
                    rules: Rules::compile(&p.settings, &index.catalog),
                    settings: p.settings,
                };
                cluster.profiles.insert(index.pools.str(&p.id), profile);
            }
            for ns in record.namespaces {
                let name = index.pools.str(&ns.name);
                let uid = index.pools.str(&ns.uid);
                cluster.namespace_names.insert(uid.clone(), name.clone());
                cluster.namespaces.insert(
                    name,
                    Namespace {
                        uid: Some(uid),
                        profile: ns.profile.map(|p| index.pools.str(&p)),
                        pairing_key: unhex(ns.pairing_key_sha256),
                        members: Default::default(),
                    },
                );
            }
            index.clusters.insert(record.cluster_id.clone(), cluster);
            for observed in &record.objects {
                index.restore_object(&record.cluster_id, observed);
            }
        }
        index.resolve_all();
        Ok(index)
    }
}
