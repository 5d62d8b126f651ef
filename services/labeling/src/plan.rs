//! Commands decided against the projection, purely: what to append, or why nothing. The shell
//! appends the events at the configuration version the plan saw, so a plan made on a stale
//! projection conflicts rather than applies.

use std::collections::BTreeSet;

use bulkhead_schema::messages::inventory::LabelMapItem;
use bulkhead_schema::messages::labeling::{
    Href, HrefTarget, LabelCreator, LabelGroupId, LabelId, LabelMapOrigin, LabelMapSpec, LabelRule,
    LabelingCommand, LabelingEvent, LabelingItem, LabelingRejection, LoggedSettings, ProfileOrigin,
    ProfileSettings, RestrictionMember,
};

use crate::catalog::{MAX_KEY_BYTES, valid_key};
use crate::index::Index;

/// At most this many label dimensions (built-in ones included): every entity's labels must fit
/// one event.
pub(crate) const MAX_KEYS: usize = 64;
/// The longest label value, label group name, profile name or label map name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 255;
/// A Kubernetes label key (prefix/name) is at most 253 + 1 + 63 bytes.
const MAX_KUBE_KEY_BYTES: usize = 317;

/// Why a command or query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub(crate) struct Refusal {
    pub(crate) rejection: LabelingRejection,
    pub(crate) reason: String,
}

impl Refusal {
    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Self::new(LabelingRejection::Invalid, reason)
    }

    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        Self::new(LabelingRejection::NotFound, reason)
    }

    pub(crate) fn conflict(reason: impl Into<String>) -> Self {
        Self::new(LabelingRejection::Conflict, reason)
    }

    pub(crate) fn in_use(reason: impl Into<String>) -> Self {
        Self::new(LabelingRejection::InUse, reason)
    }

    fn new(rejection: LabelingRejection, reason: impl Into<String>) -> Self {
        Refusal {
            rejection,
            reason: reason.into(),
        }
    }

    pub(crate) fn kind(&self) -> &'static str {
        rejection_kind(self.rejection)
    }
}

/// A stable label of a rejection, for metrics and logs.
pub(crate) fn rejection_kind(rejection: LabelingRejection) -> &'static str {
    match rejection {
        LabelingRejection::Invalid => "invalid",
        LabelingRejection::NotFound => "not_found",
        LabelingRejection::Conflict => "conflict",
        LabelingRejection::InUse => "in_use",
    }
}

/// What a command's reply shows once its events are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    LabelKey(String),
    Label(LabelId),
    LabelGroup(LabelGroupId),
    Profile {
        cluster_id: String,
        profile_id: String,
    },
    Template(String),
    LabelMap {
        cluster_id: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Look the item up once applied.
    Show(Target),
    /// The item as it was before a deletion.
    Gone(Box<LabelingItem>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    /// Empty when the command changes nothing.
    pub(crate) events: Vec<LabelingEvent>,
    pub(crate) answer: Answer,
}

/// What the shell draws for a command before planning it: a new profile's id and the hash of
/// its pairing key.
#[derive(Debug, Clone)]
pub(crate) struct Fresh {
    pub(crate) profile_id: String,
    pub(crate) pairing_key_sha256: String,
}

/// A label value, a label group name: trimmed, 1 to 255 characters, no control characters.
pub(crate) fn valid_value(value: &str) -> Result<String, Refusal> {
    valid_name("a label value", value)
}

fn valid_name(what: &str, name: &str) -> Result<String, Refusal> {
    let name = name.trim();
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(Refusal::invalid(format!(
            "{what} has 1 to {MAX_NAME_CHARS} characters, none of them control characters"
        )));
    }
    Ok(name.to_owned())
}

fn show(target: Target, events: Vec<LabelingEvent>) -> Result<Plan, Refusal> {
    Ok(Plan {
        events,
        answer: Answer::Show(target),
    })
}

fn gone(index: &Index, target: &Target, event: LabelingEvent) -> Result<Plan, Refusal> {
    let item = index
        .item(target)
        .ok_or_else(|| Refusal::not_found("gone"))?;
    Ok(Plan {
        events: vec![event],
        answer: Answer::Gone(Box::new(item)),
    })
}

pub(crate) fn plan(
    index: &Index,
    command: &LabelingCommand,
    fresh: &Fresh,
) -> Result<Plan, Refusal> {
    use LabelingCommand as C;
    use LabelingEvent as E;
    let catalog = &index.catalog;
    match command {
        C::CreateLabelKey { key, display_name } => {
            if !valid_key(key) {
                return Err(Refusal::invalid(format!(
                    "a label key has 1 to {MAX_KEY_BYTES} lowercase letters, digits, '_' or '-', \
                     starts with a letter, and is not pairing_key or service_uids; {key:?} is not"
                )));
            }
            if catalog.is_key(key) {
                return Err(Refusal::conflict(format!("label key {key} exists already")));
            }
            if catalog.keys().count() >= MAX_KEYS {
                return Err(Refusal::conflict(format!(
                    "there are {MAX_KEYS} label keys already, the most there may be"
                )));
            }
            let display_name = match display_name.trim() {
                "" => key.clone(),
                name => valid_name("a display name", name)?,
            };
            show(
                Target::LabelKey(key.clone()),
                vec![E::LabelKeyCreated {
                    key: key.clone(),
                    display_name,
                }],
            )
        }
        C::DeleteLabelKey { key } => {
            let def = catalog
                .key(key)
                .ok_or_else(|| Refusal::not_found(format!("label key {key} does not exist")))?;
            if def.builtin {
                return Err(Refusal::invalid(format!("{key} is a built-in label key")));
            }
            let labels = catalog.labels_of_key(key);
            let groups = catalog.groups().filter(|(_, g)| g.key == *key).count();
            let settings = index
                .settings()
                .filter(|s| s.labels.contains_key(key))
                .count();
            let maps = index
                .label_map_rules()
                .filter(|item| item.to_key == *key)
                .count();
            if labels + groups + settings + maps > 0 {
                return Err(Refusal::in_use(format!(
                    "label key {key} has {labels} labels and {groups} label groups, and {settings} \
                     profiles or templates and {maps} label map rules name it"
                )));
            }
            gone(
                index,
                &Target::LabelKey(key.clone()),
                E::LabelKeyDeleted { key: key.clone() },
            )
        }
        C::CreateLabel { key, value } => {
            if !catalog.is_key(key) {
                return Err(Refusal::not_found(format!(
                    "label key {key} does not exist"
                )));
            }
            let value = valid_value(value)?;
            if catalog.find_ignoring_case(key, &value).is_some() {
                return Err(Refusal::conflict(format!(
                    "label {key}={value} exists already"
                )));
            }
            let label_id = catalog.next_label_id();
            show(
                Target::Label(label_id),
                vec![E::LabelCreated {
                    label_id,
                    key: key.clone(),
                    value,
                    created_by: LabelCreator::Api,
                }],
            )
        }
        C::RenameLabel { label_id, value } => {
            let label = catalog
                .label(*label_id)
                .ok_or_else(|| label_not_found(*label_id))?;
            let value = valid_value(value)?;
            if value == label.value {
                return show(Target::Label(*label_id), Vec::new());
            }
            if catalog
                .find_ignoring_case(&label.key, &value)
                .is_some_and(|other| other != *label_id)
            {
                return Err(Refusal::conflict(format!(
                    "label {}={value} exists already",
                    label.key
                )));
            }
            show(
                Target::Label(*label_id),
                vec![E::LabelRenamed {
                    label_id: *label_id,
                    value,
                }],
            )
        }
        C::DeleteLabel { label_id } => {
            let label = catalog
                .label(*label_id)
                .ok_or_else(|| label_not_found(*label_id))?;
            let usage = index.label_usage(*label_id);
            if usage.profiles + usage.label_groups + usage.label_maps + usage.entities > 0 {
                return Err(Refusal::in_use(format!(
                    "label {}={} is used by {} profiles or templates, {} label groups, {} label \
                     map rules and {} workloads",
                    label.key,
                    label.value,
                    usage.profiles,
                    usage.label_groups,
                    usage.label_maps,
                    usage.entities
                )));
            }
            gone(
                index,
                &Target::Label(*label_id),
                E::LabelDeleted {
                    label_id: *label_id,
                },
            )
        }
        C::CreateLabelGroup {
            key,
            name,
            labels,
            sub_groups,
        } => {
            if !catalog.is_key(key) {
                return Err(Refusal::not_found(format!(
                    "label key {key} does not exist"
                )));
            }
            let name = valid_name("a label group name", name)?;
            check_group_name(index, key, &name, None)?;
            let labels = labels_of_key(index, key, labels)?;
            let sub_groups = groups_of_key(index, key, sub_groups)?;
            let group_id = catalog.next_group_id();
            show(
                Target::LabelGroup(group_id),
                vec![E::LabelGroupCreated {
                    group_id,
                    key: key.clone(),
                    name,
                    labels,
                    sub_groups,
                }],
            )
        }
        C::UpdateLabelGroup {
            group_id,
            name,
            labels,
            sub_groups,
        } => {
            let group = catalog
                .group(*group_id)
                .ok_or_else(|| group_not_found(*group_id))?;
            let name = match name {
                Some(name) => {
                    let name = valid_name("a label group name", name)?;
                    check_group_name(index, &group.key, &name, Some(*group_id))?;
                    name
                }
                None => group.name.clone(),
            };
            let labels = match labels {
                Some(labels) => labels_of_key(index, &group.key, labels)?,
                None => group.labels.clone(),
            };
            let sub_groups = match sub_groups {
                Some(subs) => groups_of_key(index, &group.key, subs)?,
                None => group.sub_groups.clone(),
            };
            if let Some(cycle) = sub_groups
                .iter()
                .find(|sub| catalog.group_reaches(**sub, *group_id))
            {
                return Err(Refusal::invalid(format!(
                    "label group {cycle} contains label group {group_id}: groups may not contain \
                     themselves"
                )));
            }
            let unchanged =
                (&name, &labels, &sub_groups) == (&group.name, &group.labels, &group.sub_groups);
            let events = if unchanged {
                Vec::new()
            } else {
                vec![E::LabelGroupUpdated {
                    group_id: *group_id,
                    name,
                    labels,
                    sub_groups,
                }]
            };
            show(Target::LabelGroup(*group_id), events)
        }
        C::DeleteLabelGroup { group_id } => {
            catalog
                .group(*group_id)
                .ok_or_else(|| group_not_found(*group_id))?;
            let (profiles, groups) = index.group_usage(*group_id);
            if profiles + groups > 0 {
                return Err(Refusal::in_use(format!(
                    "label group {group_id} is used by {profiles} profiles or templates and \
                     {groups} label groups"
                )));
            }
            gone(
                index,
                &Target::LabelGroup(*group_id),
                E::LabelGroupDeleted {
                    group_id: *group_id,
                },
            )
        }
        C::CreateProfile {
            cluster_id,
            name,
            settings,
        } => {
            cluster_known(index, cluster_id)?;
            let name = valid_name("a profile name", name)?;
            show(
                Target::Profile {
                    cluster_id: cluster_id.clone(),
                    profile_id: fresh.profile_id.clone(),
                },
                vec![E::ProfileCreated {
                    cluster_id: cluster_id.clone(),
                    profile_id: fresh.profile_id.clone(),
                    name,
                    settings: logged_settings(index, settings)?,
                    pairing_key_sha256: fresh.pairing_key_sha256.clone(),
                }],
            )
        }
        C::UpdateProfile {
            cluster_id,
            profile_id,
            name,
            managed,
            enforcement_mode,
            labels,
        } => {
            let profile = index
                .clusters
                .get(cluster_id)
                .and_then(|c| c.profiles.get(profile_id.as_str()))
                .ok_or_else(|| profile_not_found(cluster_id, profile_id))?;
            let name = match name {
                Some(name) => valid_name("a profile name", name)?,
                None => profile.name.clone(),
            };
            let mut settings = LoggedSettings {
                managed: managed.unwrap_or(profile.settings.managed),
                enforcement_mode: enforcement_mode.unwrap_or(profile.settings.enforcement_mode),
                labels: profile.settings.labels.clone(),
            };
            if let Some(labels) = labels {
                settings.labels = logged_settings(
                    index,
                    &ProfileSettings {
                        labels: labels.clone(),
                        ..ProfileSettings::default()
                    },
                )?
                .labels;
            }
            let target = Target::Profile {
                cluster_id: cluster_id.clone(),
                profile_id: profile_id.clone(),
            };
            if (&name, &settings) == (&profile.name, &profile.settings) {
                return show(target, Vec::new());
            }
            show(
                target,
                vec![E::ProfileUpdated {
                    cluster_id: cluster_id.clone(),
                    profile_id: profile_id.clone(),
                    name,
                    settings,
                }],
            )
        }
        C::DeleteProfile {
            cluster_id,
            profile_id,
        } => {
            let profile = index
                .clusters
                .get(cluster_id)
                .and_then(|c| c.profiles.get(profile_id.as_str()))
                .ok_or_else(|| profile_not_found(cluster_id, profile_id))?;
            if profile.origin == ProfileOrigin::Namespace {
                return Err(Refusal::invalid(
                    "a namespace's own profile goes away with its namespace only",
                ));
            }
            gone(
                index,
                &Target::Profile {
                    cluster_id: cluster_id.clone(),
                    profile_id: profile_id.clone(),
                },
                E::ProfileDeleted {
                    cluster_id: cluster_id.clone(),
                    profile_id: profile_id.clone(),
                },
            )
        }
        C::SetTemplate {
            cluster_id,
            settings,
        } => {
            let cluster = cluster_known(index, cluster_id)?;
            let settings = logged_settings(index, settings)?;
            let events = if settings == cluster.template {
                Vec::new()
            } else {
                vec![E::TemplateSet {
                    cluster_id: cluster_id.clone(),
                    settings,
                }]
            };
            show(Target::Template(cluster_id.clone()), events)
        }
        C::PutLabelMap {
            cluster_id,
            name,
            spec,
        } => {
            let cluster = cluster_known(index, cluster_id)?;
            let name = valid_name("a label map name", name)?;
            check_spec(index, spec)?;
            let target = Target::LabelMap {
                cluster_id: cluster_id.clone(),
                name: name.clone(),
            };
            if cluster.label_maps.get(&(LabelMapOrigin::Api, name.clone())) == Some(spec) {
                return show(target, Vec::new());
            }
            show(
                target,
                vec![E::LabelMapPut {
                    cluster_id: cluster_id.clone(),
                    name,
                    spec: spec.clone(),
                }],
            )
        }
        C::DeleteLabelMap { cluster_id, name } => {
            let cluster = cluster_known(index, cluster_id)?;
            if !cluster
                .label_maps
                .contains_key(&(LabelMapOrigin::Api, name.clone()))
            {
                return Err(Refusal::not_found(format!(
                    "cluster {cluster_id} has no label map {name:?} defined through the api"
                )));
            }
            gone(
                index,
                &Target::LabelMap {
                    cluster_id: cluster_id.clone(),
                    name: name.clone(),
                },
                E::LabelMapDeleted {
                    cluster_id: cluster_id.clone(),
                    name: name.clone(),
                },
            )
        }
    }
}

/// The labels label maps asked for, as label creations (ids from the catalog's next on).
pub(crate) fn plan_created_labels(index: &Index, limit: usize) -> Vec<LabelingEvent> {
    let first = index.catalog.next_label_id();
    index
        .labels_to_create(limit)
        .into_iter()
        .zip(first..)
        .map(|((key, value), label_id)| LabelingEvent::LabelCreated {
            label_id,
            key,
            value,
            created_by: LabelCreator::LabelMap,
        })
        .collect()
}

fn label_not_found(id: LabelId) -> Refusal {
    Refusal::not_found(format!("label {id} does not exist"))
}

fn group_not_found(id: LabelGroupId) -> Refusal {
    Refusal::not_found(format!("label group {id} does not exist"))
}

fn profile_not_found(cluster_id: &str, profile_id: &str) -> Refusal {
    Refusal::not_found(format!(
        "container cluster {cluster_id} has no profile {profile_id}"
    ))
}

fn cluster_known<'a>(
    index: &'a Index,
    cluster_id: &str,
) -> Result<&'a crate::index::Cluster, Refusal> {
    index
        .clusters
        .get(cluster_id)
        .ok_or_else(|| Refusal::not_found(format!("container cluster {cluster_id} does not exist")))
}

fn check_group_name(
    index: &Index,
    key: &str,
    name: &str,
    except: Option<LabelGroupId>,
) -> Result<(), Refusal> {
    let taken = index
        .catalog
        .groups()
        .any(|(id, g)| Some(id) != except && g.key == key && g.name.eq_ignore_ascii_case(name));
    if taken {
        return Err(Refusal::conflict(format!(
            "a {key} label group named {name:?} exists already"
        )));
    }
    Ok(())
}

/// What an href names, if it names a label or group of `key`.
fn target_of_key(index: &Index, key: &str, href: &Href) -> Result<HrefTarget, Refusal> {
    let target = HrefTarget::parse(&href.href).ok_or_else(|| {
        Refusal::invalid(format!("{} is not a label or label group href", href.href))
    })?;
    let found_key = match target {
        HrefTarget::Label(id) => index.catalog.label(id).map(|l| &l.key),
        HrefTarget::LabelGroup(id) => index.catalog.group(id).map(|g| &g.key),
    }
    .ok_or_else(|| Refusal::not_found(format!("{} does not exist", href.href)))?;
    if found_key != key {
        return Err(Refusal::invalid(format!(
            "{} is of label key {found_key}, not {key}",
            href.href
        )));
    }
    Ok(target)
}

fn labels_of_key(index: &Index, key: &str, hrefs: &[Href]) -> Result<Vec<LabelId>, Refusal> {
    let mut ids = BTreeSet::new();
    for href in hrefs {
        match target_of_key(index, key, href)? {
            HrefTarget::Label(id) => ids.insert(id),
            HrefTarget::LabelGroup(_) => {
                return Err(Refusal::invalid(format!("{} is not a label", href.href)));
            }
        };
    }
    Ok(ids.into_iter().collect())
}

fn groups_of_key(index: &Index, key: &str, hrefs: &[Href]) -> Result<Vec<LabelGroupId>, Refusal> {
    let mut ids = BTreeSet::new();
    for href in hrefs {
        match target_of_key(index, key, href)? {
            HrefTarget::LabelGroup(id) => ids.insert(id),
            HrefTarget::Label(_) => {
                return Err(Refusal::invalid(format!(
                    "{} is not a label group",
                    href.href
                )));
            }
        };
    }
    Ok(ids.into_iter().collect())
}

/// A profile's or template's settings, checked, with hrefs turned into ids.
fn logged_settings(index: &Index, settings: &ProfileSettings) -> Result<LoggedSettings, Refusal> {
    let mut logged = LoggedSettings {
        managed: settings.managed,
        enforcement_mode: settings.enforcement_mode,
        labels: Default::default(),
    };
    for label in &settings.labels {
        let key = &label.key;
        if !index.catalog.is_key(key) {
            return Err(Refusal::not_found(format!(
                "label key {key} does not exist"
            )));
        }
        let rule = match (&label.assignment, &label.restriction) {
            (Some(href), None) => match target_of_key(index, key, href)? {
                HrefTarget::Label(id) => LabelRule::Assignment(id),
                HrefTarget::LabelGroup(_) => {
                    return Err(Refusal::invalid(format!(
                        "{key}: an assignment is a label, not a label group"
                    )));
                }
            },
            (None, Some(hrefs)) => {
                let members: BTreeSet<RestrictionMember> = hrefs
                    .iter()
                    .map(|href| {
                        Ok(match target_of_key(index, key, href)? {
                            HrefTarget::Label(id) => RestrictionMember::Label(id),
                            HrefTarget::LabelGroup(id) => RestrictionMember::LabelGroup(id),
                        })
                    })
                    .collect::<Result<_, Refusal>>()?;
                LabelRule::Restriction(members.into_iter().collect())
            }
            _ => {
                return Err(Refusal::invalid(format!(
                    "{key}: give exactly one of assignment and restriction (leave the key out to \
                     let annotations choose)"
                )));
            }
        };
        if logged.labels.insert(key.clone(), rule).is_some() {
            return Err(Refusal::invalid(format!("{key} is given twice")));
        }
    }
    Ok(logged)
}

fn check_spec(index: &Index, spec: &LabelMapSpec) -> Result<(), Refusal> {
    for (side, items) in [
        ("node_label_map", &spec.node_label_map),
        ("workload_label_map", &spec.workload_label_map),
    ] {
        let mut from_keys = BTreeSet::new();
        for item in items {
            let from = &item.from_key;
            if from.is_empty() || from.len() > MAX_KUBE_KEY_BYTES {
                return Err(Refusal::invalid(format!(
                    "{side}: a from_key is a Kubernetes label key (1 to {MAX_KUBE_KEY_BYTES} bytes)"
                )));
            }
            if !from_keys.insert(from) {
                return Err(Refusal::invalid(format!(
                    "{side}: from_key {from} is given twice"
                )));
            }
            if !index.catalog.is_key(&item.to_key) {
                return Err(Refusal::not_found(format!(
                    "{side}: label key {} does not exist",
                    item.to_key
                )));
            }
            let mut froms = BTreeSet::new();
            for mapping in &item.values_map {
                if mapping.from.is_empty() || !froms.insert(&mapping.from) {
                    return Err(Refusal::invalid(format!(
                        "{side}: {from}: values_map has an empty or repeated from"
                    )));
                }
                valid_value(&mapping.to)?;
            }
        }
    }
    Ok(())
}

impl Index {
    /// Every profile's and template's settings.
    pub(crate) fn settings(&self) -> impl Iterator<Item = &LoggedSettings> {
        self.clusters.values().flat_map(|c| {
            std::iter::once(&c.template).chain(c.profiles.values().map(|p| &p.settings))
        })
    }

    /// Every label map rule of every cluster.
    pub(crate) fn label_map_rules(&self) -> impl Iterator<Item = &LabelMapItem> {
        self.clusters.values().flat_map(|c| {
            c.label_maps
                .values()
                .flat_map(|spec| spec.node_label_map.iter().chain(&spec.workload_label_map))
        })
    }
}

#[cfg(test)]
mod tests;
