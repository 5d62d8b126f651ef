//! Labels and how workloads get them: label dimensions, labels, label groups, container workload
//! profiles (one per namespace, with a template per cluster and pairing keys), label maps, and
//! the effective labels of every pod, node, service and kube workload.
//!
//! ```text
//!  api ──LabelingCommand / LabelingQuery──► labeling ──LabelingEvent (stream `labeling`)──► eventlog
//!  inventory's events (stream cluster/<id>) ──► labeling projection ──► effective labels
//!        ──LabelingEvent::EffectiveLabels (stream effective/<cluster>)──► eventlog ──► policy, api
//! ```
//!
//! Commands and views name labels and label groups by href (`/orgs/1/labels/7`,
//! `/orgs/1/label_groups/3`), in the reference product's JSON shapes; events name them by id.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::WireMessage;
use crate::messages::inventory::LabelMapItem;

mod effective_wire;

pub use effective_wire::{EffectiveSize, EffectiveTables, TabledEntity, TabledLabel, TabledSource};

/// A label's id; its href is [`label_href`].
pub type LabelId = u32;
/// A label group's id; its href is [`label_group_href`].
pub type LabelGroupId = u32;

const LABELS_HREF: &str = "/orgs/1/labels/";
const LABEL_GROUPS_HREF: &str = "/orgs/1/label_groups/";

pub fn label_href(id: LabelId) -> String {
    format!("{LABELS_HREF}{id}")
}

pub fn label_group_href(id: LabelGroupId) -> String {
    format!("{LABEL_GROUPS_HREF}{id}")
}

/// The href of a container workload profile.
pub fn profile_href(cluster_id: &str, profile_id: &str) -> String {
    format!("/orgs/1/container_clusters/{cluster_id}/container_workload_profiles/{profile_id}")
}

/// What an href in a command names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HrefTarget {
    Label(LabelId),
    LabelGroup(LabelGroupId),
}

impl HrefTarget {
    /// Parses `/orgs/1/labels/<id>` or `/orgs/1/label_groups/<id>`; `None` for anything else.
    pub fn parse(href: &str) -> Option<Self> {
        let id = |rest: &str| {
            rest.parse()
                .ok()
                .filter(|_| rest.bytes().all(|b| b.is_ascii_digit()))
        };
        if let Some(rest) = href.strip_prefix(LABELS_HREF) {
            return id(rest).map(HrefTarget::Label);
        }
        href.strip_prefix(LABEL_GROUPS_HREF)
            .and_then(id)
            .map(HrefTarget::LabelGroup)
    }
}

/// `{"href": ...}`: a reference to a label or a label group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
pub struct Href {
    pub href: String,
}

impl Href {
    pub fn label(id: LabelId) -> Self {
        Href {
            href: label_href(id),
        }
    }

    pub fn label_group(id: LabelGroupId) -> Self {
        Href {
            href: label_group_href(id),
        }
    }
}

/// How a profile's pods are enforced (reference: Build / Test / Enforced).
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EnforcementMode {
    /// No policy programmed.
    Idle,
    /// Traffic is observed, nothing blocked ("Build").
    #[default]
    VisibilityOnly,
    /// Traffic that would be blocked is flagged, nothing blocked ("Test").
    Test,
    /// Policy is enforced ("Enforced").
    Full,
}

/// How one label key is assigned in a profile, in the reference JSON shape: exactly one of
/// `assignment` (the key is fixed to that label) and `restriction` (annotations may choose one
/// of these labels, or labels of these groups; `[]`: no label at all). A key left out of a
/// profile's list is free: annotations may name any existing label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileLabel {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment: Option<Href>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restriction: Option<Vec<Href>>,
}

/// What a profile (or a cluster's profile template) decides for its namespace's workloads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileSettings {
    /// Unmanaged namespaces' pods and services get no labels and no policy.
    #[serde(default)]
    pub managed: bool,
    #[serde(default)]
    pub enforcement_mode: EnforcementMode,
    #[serde(default)]
    pub labels: Vec<ProfileLabel>,
}

/// A member of a restriction list, by id (the logged form of an href).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum RestrictionMember {
    Label(LabelId),
    LabelGroup(LabelGroupId),
}

/// The logged form of a [`ProfileLabel`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelRule {
    Assignment(LabelId),
    Restriction(Vec<RestrictionMember>),
}

/// The logged form of [`ProfileSettings`]: labels by id, rules by key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LoggedSettings {
    pub managed: bool,
    pub enforcement_mode: EnforcementMode,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, LabelRule>,
}

/// A label map, as a LabelMap custom resource has it ([`ObjectDetails::LabelMap`]) or as the
/// api defines it: rules for nodes (host workloads), and rules for pods, kube workloads and
/// services. A rule's Kubernetes label `from_key` gives the Bulkhead label of key `to_key`; with
/// a non-empty `values_map` only the values listed are mapped (translated), otherwise the value
/// is taken as it is; the label must exist, unless `allow_create`. Within a list, `from_key`s
/// are unique.
///
/// [`ObjectDetails::LabelMap`]: crate::messages::inventory::ObjectDetails::LabelMap
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelMapSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub node_label_map: Vec<LabelMapItem>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub workload_label_map: Vec<LabelMapItem>,
}

/// Where a label map was defined. A cluster's maps apply in this order (custom resources
/// first), each origin's maps in name order; for each label key, the last rule that yields a
/// label wins.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LabelMapOrigin {
    /// A LabelMap custom resource in the cluster, as clusterlink reports it.
    CustomResource,
    /// Defined through the api.
    Api,
}

/// Who created a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelCreator {
    Api,
    /// A label map rule with `allow_create` met a value no label had.
    LabelMap,
}

/// The kinds of entity that get effective labels.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EntityKind {
    /// A node (host workload): labels from node label maps.
    Node,
    /// A pod (pod workload); host-network pods carry their node's labels.
    Pod,
    /// A controller at the top of its owner chain (Deployment, StatefulSet, ...): labeled as
    /// its pods are, without the pods' own annotations. A bare pod's labels are its pod's.
    KubeWorkload,
    /// A Kubernetes service (virtual service).
    Service,
}

/// An entity of a cluster (the cluster is named by the event or view that holds it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EntityRef {
    pub kind: EntityKind,
    pub uid: String,
    /// Empty for nodes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    pub name: String,
}

/// Where an effective label came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelSource {
    /// A label map rule, from the entity's Kubernetes label `from_key`.
    LabelMap {
        origin: LabelMapOrigin,
        map: String,
        from_key: String,
    },
    /// The profile's assignment for the key.
    Profile,
    /// An annotation (`key`, e.g. `bulkhead.io/role`) of the entity itself or of a controller
    /// above it; `template`: in the controller's pod template.
    Annotation {
        kind: String,
        name: String,
        key: String,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        template: bool,
    },
    /// A host-network pod's label: its node's.
    Node { name: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveLabel {
    pub href: String,
    pub value: String,
    pub source: LabelSource,
}

/// An entity's labels as resolved now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EntityLabels {
    pub entity: EntityRef,
    /// False for pods, services and kube workloads of unmanaged namespaces (no labels then).
    pub managed: bool,
    /// The namespace profile's mode, for managed pods, services and kube workloads.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforcement_mode: Option<EnforcementMode>,
    /// By label key.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, EffectiveLabel>,
    /// The entity is gone (deleted, or a controller that is no longer at the top of its chain).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// Where a run of derived events ends in the labeling projection's queue of pending output:
/// after applying an event, everything queued up to and including this position is out.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
pub struct OutputPosition {
    /// The sequence number of the input event that queued the last entry.
    pub seq: u64,
    /// The entry's index among those that event queued.
    pub index: u32,
}

/// Everything labeling writes to the log, in `RecordedEvent.data` with `event_type`
/// [`LabelingEvent::EVENT_TYPE`]. The configuration (labels, groups, profiles, templates, label
/// maps) is on the one stream [`LabelingEvent::CONFIG_STREAM`], so that every command is
/// validated against all the configuration before it (a label is not deleted while a profile
/// being written refers to it). Derived facts are on [`LabelingEvent::effective_stream`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingEvent {
    /// A label dimension beyond the built-in `role`, `app`, `env` and `loc`.
    LabelKeyCreated {
        key: String,
        display_name: String,
    },
    LabelKeyDeleted {
        key: String,
    },
    LabelCreated {
        label_id: LabelId,
        key: String,
        value: String,
        created_by: LabelCreator,
    },
    /// A new value for the label: what used it now carries the new value.
    LabelRenamed {
        label_id: LabelId,
        value: String,
    },
    LabelDeleted {
        label_id: LabelId,
    },
    LabelGroupCreated {
        group_id: LabelGroupId,
        key: String,
        name: String,
        labels: Vec<LabelId>,
        sub_groups: Vec<LabelGroupId>,
    },
    LabelGroupUpdated {
        group_id: LabelGroupId,
        name: String,
        labels: Vec<LabelId>,
        sub_groups: Vec<LabelGroupId>,
    },
    LabelGroupDeleted {
        group_id: LabelGroupId,
    },
    /// A profile pre-created by an administrator, pending until a namespace of its cluster
    /// carries its pairing key.
    ProfileCreated {
        cluster_id: String,
        profile_id: String,
        name: String,
        settings: LoggedSettings,
        /// SHA-256 of the pairing key, hex; the key itself is never stored.
        pairing_key_sha256: String,
    },
    /// Any profile's new name and settings. A namespace's own profile has the namespace's uid
    /// as its id.
    ProfileUpdated {
        cluster_id: String,
        profile_id: String,
        name: String,
        settings: LoggedSettings,
    },
    ProfileDeleted {
        cluster_id: String,
        profile_id: String,
    },
    /// The settings new namespaces' profiles start with.
    TemplateSet {
        cluster_id: String,
        settings: LoggedSettings,
    },
    LabelMapPut {
        cluster_id: String,
        name: String,
        spec: LabelMapSpec,
    },
    LabelMapDeleted {
        cluster_id: String,
        name: String,
    },
    /// Derived: entities whose effective labels changed, in the order of the changes.
    ///
    /// On the wire the entities are in [`EffectiveTables`] form, under `effective`: each
    /// distinct label and source once, entities naming them by index.
    EffectiveLabels {
        cluster_id: String,
        through: OutputPosition,
        #[serde(rename = "effective", with = "effective_wire")]
        #[schemars(with = "EffectiveTables")]
        entities: Vec<EntityLabels>,
    },
    /// Derived: a namespace carried a pairing key that links it to no profile.
    PairingKeyRejected {
        cluster_id: String,
        through: OutputPosition,
        namespace: String,
        namespace_uid: String,
        reason: String,
    },
}

impl LabelingEvent {
    pub const EVENT_TYPE: &'static str = "labeling.Event";

    /// The stream of every configuration event.
    pub const CONFIG_STREAM: &'static str = "labeling";

    /// The stream of a cluster's derived events.
    pub fn effective_stream(cluster_id: &str) -> String {
        format!("effective/{cluster_id}")
    }
}

/// Why labeling refused a command or a query; the api maps it to an HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingRejection {
    /// The request itself is wrong (a malformed value, an href of the wrong key, a cycle).
    Invalid,
    /// What it names does not exist.
    NotFound,
    /// It clashes with the current state (a duplicate value or name), or the state changed
    /// meanwhile.
    Conflict,
    /// It would delete what something still uses.
    InUse,
}

/// Changes labels, groups, profiles, templates and label maps; answered with a
/// [`LabelingCommandReply`]. The command's envelope id is its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingCommand {
    /// A new label dimension: lowercase letters, digits, `_` and `-`, starting with a letter.
    CreateLabelKey {
        key: String,
        #[serde(default)]
        display_name: String,
    },
    DeleteLabelKey {
        key: String,
    },
    CreateLabel {
        key: String,
        value: String,
    },
    /// Changes the label's value (everything using it follows).
    RenameLabel {
        label_id: LabelId,
        value: String,
    },
    DeleteLabel {
        label_id: LabelId,
    },
    CreateLabelGroup {
        key: String,
        name: String,
        #[serde(default)]
        labels: Vec<Href>,
        #[serde(default)]
        sub_groups: Vec<Href>,
    },
    /// Changes what is given, keeps the rest.
    UpdateLabelGroup {
        group_id: LabelGroupId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<Href>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sub_groups: Option<Vec<Href>>,
    },
    DeleteLabelGroup {
        group_id: LabelGroupId,
    },
    /// Pre-creates a profile: the reply carries its pairing key, once.
    CreateProfile {
        cluster_id: String,
        name: String,
        #[serde(default)]
        settings: ProfileSettings,
    },
    /// Changes what is given, keeps the rest.
    UpdateProfile {
        cluster_id: String,
        profile_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        managed: Option<bool>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        enforcement_mode: Option<EnforcementMode>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        labels: Option<Vec<ProfileLabel>>,
    },
    /// Deletes a pre-created profile; its namespace, if linked, falls back to a profile from
    /// the template. A namespace's own profile goes with its namespace only.
    DeleteProfile {
        cluster_id: String,
        profile_id: String,
    },
    SetTemplate {
        cluster_id: String,
        settings: ProfileSettings,
    },
    /// Creates or replaces the api-defined label map `name` of the cluster.
    PutLabelMap {
        cluster_id: String,
        name: String,
        spec: LabelMapSpec,
    },
    DeleteLabelMap {
        cluster_id: String,
        name: String,
    },
}

/// How often a label is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelUsage {
    /// Profiles and profile templates naming it.
    pub profiles: u32,
    pub label_groups: u32,
    /// Label map rules translating a value to it.
    pub label_maps: u32,
    /// Entities carrying it.
    pub entities: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelKeyView {
    pub key: String,
    pub display_name: String,
    /// `role`, `app`, `env` and `loc`: always there.
    pub builtin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelView {
    pub href: String,
    pub id: LabelId,
    pub key: String,
    pub value: String,
    pub created_by: LabelCreator,
    pub usage: LabelUsage,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelGroupView {
    pub href: String,
    pub id: LabelGroupId,
    pub key: String,
    pub name: String,
    pub labels: Vec<Href>,
    pub sub_groups: Vec<Href>,
}

/// How a profile came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileOrigin {
    /// Made from the template when the namespace appeared; goes away with it.
    Namespace,
    /// Pre-created by an administrator with a pairing key.
    PreCreated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProfileState {
    /// No namespace has presented its pairing key yet (or its namespace was deleted).
    Pending,
    /// Applies to its namespace.
    Linked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileView {
    pub href: String,
    pub id: String,
    pub cluster_id: String,
    pub name: String,
    /// The namespace it applies to; none while pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub origin: ProfileOrigin,
    pub state: ProfileState,
    #[serde(flatten)]
    pub settings: ProfileSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TemplateView {
    pub cluster_id: String,
    #[serde(flatten)]
    pub settings: ProfileSettings,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelMapView {
    pub cluster_id: String,
    pub name: String,
    pub origin: LabelMapOrigin,
    pub spec: LabelMapSpec,
}

/// An entity's effective labels, with its cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct EffectiveLabelsView {
    pub cluster_id: String,
    #[serde(flatten)]
    pub labels: EntityLabels,
}

/// One thing a command made, changed or deleted (as it was, for a deletion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingItem {
    LabelKey(LabelKeyView),
    Label(LabelView),
    LabelGroup(LabelGroupView),
    Profile(ProfileView),
    Template(TemplateView),
    LabelMap(LabelMapView),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingCommandReply {
    /// Committed, and visible to queries from now on.
    Done {
        item: LabelingItem,
        /// The pairing key, in the reply to `CreateProfile` only: labeling keeps only its
        /// hash, so this is the one time anybody sees it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pairing_key: Option<String>,
    },
    /// Nothing changed.
    Rejected {
        kind: LabelingRejection,
        reason: String,
    },
    /// The event log could not commit now; nothing changed, the command may be sent again.
    Unavailable { reason: String },
}

/// What a [`LabelingQuery`] lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingQueryKind {
    LabelKeys,
    /// Filters: `key`, `value`.
    Labels,
    Label {
        label_id: LabelId,
    },
    /// Filter: `key`.
    LabelGroups,
    LabelGroup {
        group_id: LabelGroupId,
    },
    /// Needs `cluster_id`; pending profiles included. Filter: `namespace`.
    Profiles,
    Profile {
        cluster_id: String,
        profile_id: String,
    },
    Template {
        cluster_id: String,
    },
    /// Needs `cluster_id`: custom-resource and api label maps, in the order they apply.
    LabelMaps,
    /// Filters: `cluster_id`, `namespace`, `entity_kind`, `label`, `uids`.
    EffectiveLabels,
}

/// `key=value`: entities carrying that label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelFilter {
    pub key: String,
    pub value: String,
}

/// Narrows a query; every given filter must match. A filter that does not apply to the kind
/// is `Invalid`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelingFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// A label key, exactly.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// A part of a label's value, case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entity_kind: Option<EntityKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<LabelFilter>,
    /// Only these entities (at most [`LabelingQuery::MAX_LIMIT`]), e.g. the pods of a page of
    /// the inventory's listing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uids: Vec<String>,
}

/// Asks labeling for a page of one kind of item; answered with a [`LabelingReply`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelingQuery {
    pub what: LabelingQueryKind,
    #[serde(default)]
    pub filter: LabelingFilter,
    /// Entries to skip, in the listing's order.
    #[serde(default)]
    pub offset: u32,
    /// 1 to [`LabelingQuery::MAX_LIMIT`].
    pub limit: u32,
}

impl LabelingQuery {
    pub const MAX_LIMIT: u32 = 1000;
}

/// The entries of one page, typed by kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingItems {
    LabelKeys(Vec<LabelKeyView>),
    Labels(Vec<LabelView>),
    LabelGroups(Vec<LabelGroupView>),
    Profiles(Vec<ProfileView>),
    Templates(Vec<TemplateView>),
    LabelMaps(Vec<LabelMapView>),
    EffectiveLabels(Vec<EffectiveLabelsView>),
}

impl LabelingItems {
    pub fn len(&self) -> usize {
        match self {
            LabelingItems::LabelKeys(items) => items.len(),
            LabelingItems::Labels(items) => items.len(),
            LabelingItems::LabelGroups(items) => items.len(),
            LabelingItems::Profiles(items) => items.len(),
            LabelingItems::Templates(items) => items.len(),
            LabelingItems::LabelMaps(items) => items.len(),
            LabelingItems::EffectiveLabels(items) => items.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A page of a listing. It may hold fewer than `limit` entries before the end, when more would
/// not fit one message: the next page starts at `offset + items.len()`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LabelingPage {
    /// Entries matching the filter, on all pages.
    pub total: u64,
    pub offset: u32,
    pub items: LabelingItems,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LabelingReply {
    Page(LabelingPage),
    Rejected {
        kind: LabelingRejection,
        reason: String,
    },
}

impl WireMessage for LabelingEvent {
    const TYPE: &'static str = LabelingEvent::EVENT_TYPE;
    const VERSION: u16 = 1;
}

impl WireMessage for LabelingCommand {
    const TYPE: &'static str = "labeling.LabelingCommand";
    const VERSION: u16 = 1;
}

impl WireMessage for LabelingCommandReply {
    const TYPE: &'static str = "labeling.LabelingCommandReply";
    const VERSION: u16 = 1;
}

impl WireMessage for LabelingQuery {
    const TYPE: &'static str = "labeling.LabelingQuery";
    const VERSION: u16 = 1;
}

impl WireMessage for LabelingReply {
    const TYPE: &'static str = "labeling.LabelingReply";
    const VERSION: u16 = 1;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_round_trip_and_refuse_anything_else() {
        assert_eq!(
            HrefTarget::parse(&label_href(7)),
            Some(HrefTarget::Label(7))
        );
        assert_eq!(
            HrefTarget::parse(&label_group_href(3)),
            Some(HrefTarget::LabelGroup(3))
        );
        for bad in [
            "/orgs/1/labels/",
            "/orgs/1/labels/x",
            "/orgs/1/labels/+7",
            "/orgs/2/labels/7",
            "/orgs/1/labels/7/",
            "labels/7",
        ] {
            assert_eq!(HrefTarget::parse(bad), None, "{bad}");
        }
    }
}
