//! The labeling area under `/orgs/{org_id}`: label dimensions, labels, label groups, each
//! container cluster's container workload profiles (with their pairing keys) and profile
//! template, and its label maps. The labeling service answers over the bus
//! (`labeling.LabelingCommand`, `labeling.LabelingQuery`) in the reference product's shapes
//! already (labels and groups named by `href`); here what it gives no `href` gets one, lists
//! are paged ([`crate::paging`]), and refusals become statuses: invalid 400, not found 404,
//! conflict and in use 409.
//!
//! Label maps belong to a cluster, like profiles, so they live under it:
//! `/container_clusters/{cluster_id}/label_maps`. The list holds the cluster's LabelMap custom
//! resources too (`origin: custom_resource`, no `href`: they are changed with kubectl); the
//! `{name}` routes are about the maps defined here (`origin: api`).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::inventory::LabelMapItem;
use bulkhead_schema::messages::labeling::{
    EnforcementMode, Href, LabelGroupId, LabelId, LabelKeyView, LabelMapOrigin, LabelMapSpec,
    LabelMapView, LabelingCommand, LabelingCommandReply, LabelingFilter, LabelingItem,
    LabelingItems, LabelingPage, LabelingQuery, LabelingQueryKind, LabelingRejection,
    LabelingReply, ProfileLabel, ProfileSettings, TemplateView,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use crate::error::HttpError;
use crate::inventory::{CLUSTERS, ClusterPath};
use crate::orgs::OrgScope;
use crate::paging::{Listing, PageQuery, Window};
use crate::{ApiRouter, AppState};

/// How long the api waits for labeling: a command's reply waits for the log to commit it.
const LABELING_TIMEOUT: Duration = Duration::from_secs(15);
const SERVICE: &str = "labeling service";
const TEMPLATE: &str = "container_workload_profile_template";

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::default()
        .routes(routes!(list_label_dimensions, create_label_dimension))
        .routes(routes!(get_label_dimension, delete_label_dimension))
        .routes(routes!(list_labels, create_label))
        .routes(routes!(get_label, rename_label, delete_label))
        .routes(routes!(list_label_groups, create_label_group))
        .routes(routes!(
            get_label_group,
            update_label_group,
            delete_label_group
        ))
        .routes(routes!(list_profiles, create_profile))
        .routes(routes!(get_profile, update_profile, delete_profile))
        .routes(routes!(get_template, set_template))
        .routes(routes!(list_label_maps))
        .routes(routes!(get_label_map, put_label_map, delete_label_map))
}

fn refused(kind: LabelingRejection, reason: String) -> HttpError {
    match kind {
        LabelingRejection::Invalid => HttpError::new(StatusCode::BAD_REQUEST, reason),
        LabelingRejection::NotFound => HttpError::new(StatusCode::NOT_FOUND, reason),
        LabelingRejection::Conflict => HttpError::new(StatusCode::CONFLICT, reason),
        // The reason counts the uses; say what to do about them.
        LabelingRejection::InUse => HttpError::new(
            StatusCode::CONFLICT,
            format!("{reason}: remove those uses first, then delete it"),
        ),
    }
}

/// Labeling answered with something else than what was asked for.
fn answered_badly(what: &str) -> HttpError {
    HttpError::new(
        StatusCode::BAD_GATEWAY,
        format!("the {SERVICE} answered without {what}"),
    )
}

// --- talking to labeling ----------------------------------------------------------------

async fn query(
    state: &AppState,
    what: LabelingQueryKind,
    filter: LabelingFilter,
    window: Window,
) -> Result<LabelingPage, HttpError> {
    let request = LabelingQuery {
        what,
        filter,
        offset: window.offset,
        limit: window.limit,
    };
    match state
        .ask(
            SERVICE,
            LABELING_TIMEOUT,
            &Subject::labeling_query(),
            &request,
        )
        .await?
    {
        LabelingReply::Page(page) => Ok(page),
        LabelingReply::Rejected { kind, reason } => Err(refused(kind, reason)),
    }
}

/// One page of a list, as JSON.
async fn list(
    state: &AppState,
    scope: OrgScope,
    what: LabelingQueryKind,
    filter: LabelingFilter,
    page: &PageQuery,
) -> Result<Listing, HttpError> {
    let page = query(state, what, filter, page.window(LabelingQuery::MAX_LIMIT)?).await?;
    Ok(Listing(page.total, items_json(scope, page.items)))
}

/// The one item a query for a single item answers with, as JSON.
async fn one(
    state: &AppState,
    scope: OrgScope,
    what: LabelingQueryKind,
) -> Result<Json<Value>, HttpError> {
    let window = Window {
        offset: 0,
        limit: 1,
    };
    let page = query(state, what, LabelingFilter::default(), window).await?;
    items_json(scope, page.items)
        .pop()
        .map(Json)
        .ok_or_else(|| answered_badly("the item"))
}

/// Every entry of a list, page after page (a page may be cut short to fit one message).
async fn everything<T>(
    state: &AppState,
    what: LabelingQueryKind,
    filter: LabelingFilter,
    entries: fn(LabelingItems) -> Option<Vec<T>>,
) -> Result<Vec<T>, HttpError> {
    let mut all = Vec::new();
    loop {
        let window = Window {
            offset: u32::try_from(all.len()).unwrap_or(u32::MAX),
            limit: LabelingQuery::MAX_LIMIT,
        };
        let page = query(state, what.clone(), filter.clone(), window).await?;
        let total = page.total;
        let items = entries(page.items).ok_or_else(|| answered_badly("the entries asked for"))?;
        let last = items.is_empty();
        all.extend(items);
        if last || all.len() as u64 >= total {
            return Ok(all);
        }
    }
}

/// What a command made or changed (or, for a deletion, what it deleted), and a new profile's
/// pairing key.
async fn command(
    state: &AppState,
    command: LabelingCommand,
) -> Result<(LabelingItem, Option<String>), HttpError> {
    match state
        .ask(
            SERVICE,
            LABELING_TIMEOUT,
            &Subject::labeling_command(),
            &command,
        )
        .await?
    {
        LabelingCommandReply::Done { item, pairing_key } => Ok((item, pairing_key)),
        LabelingCommandReply::Rejected { kind, reason } => Err(refused(kind, reason)),
        LabelingCommandReply::Unavailable { reason } => {
            Err(HttpError::new(StatusCode::SERVICE_UNAVAILABLE, reason))
        }
    }
}

/// Runs a command that makes something: 201 with it.
async fn create(
    state: &AppState,
    scope: OrgScope,
    made: LabelingCommand,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let (item, _) = command(state, made).await?;
    Ok((StatusCode::CREATED, Json(item_json(scope, item))))
}

/// Runs a command that changes or deletes something: 204.
async fn change(state: &AppState, changed: LabelingCommand) -> Result<StatusCode, HttpError> {
    command(state, changed).await?;
    Ok(StatusCode::NO_CONTENT)
}

// --- JSON shapes ------------------------------------------------------------------------

fn to_json(view: &impl Serialize) -> Value {
    serde_json::to_value(view).expect("labeling views are JSON")
}

fn with_href(view: &impl Serialize, href: String) -> Value {
    let mut value = to_json(view);
    value["href"] = href.into();
    value
}

/// `text` as one segment of a path: anything but unreserved characters percent-encoded.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn key_json(scope: OrgScope, view: &LabelKeyView) -> Value {
    with_href(view, scope.href("label_dimensions", &view.key))
}

fn template_json(scope: OrgScope, view: &TemplateView) -> Value {
    let id = format!("{}/{TEMPLATE}", view.cluster_id);
    with_href(view, scope.href(CLUSTERS, &id))
}

fn label_map_json(scope: OrgScope, view: &LabelMapView) -> Value {
    match view.origin {
        LabelMapOrigin::Api => {
            let id = format!(
                "{}/label_maps/{}",
                view.cluster_id,
                path_segment(&view.name)
            );
            with_href(view, scope.href(CLUSTERS, &id))
        }
        LabelMapOrigin::CustomResource => to_json(view),
    }
}

fn item_json(scope: OrgScope, item: LabelingItem) -> Value {
    match item {
        LabelingItem::LabelKey(key) => key_json(scope, &key),
        LabelingItem::Label(label) => to_json(&label),
        LabelingItem::LabelGroup(group) => to_json(&group),
        LabelingItem::Profile(profile) => to_json(&profile),
        LabelingItem::Template(template) => template_json(scope, &template),
        LabelingItem::LabelMap(map) => label_map_json(scope, &map),
    }
}

fn items_json(scope: OrgScope, items: LabelingItems) -> Vec<Value> {
    match items {
        LabelingItems::LabelKeys(keys) => keys.iter().map(|k| key_json(scope, k)).collect(),
        LabelingItems::Labels(labels) => labels.iter().map(to_json).collect(),
        LabelingItems::LabelGroups(groups) => groups.iter().map(to_json).collect(),
        LabelingItems::Profiles(profiles) => profiles.iter().map(to_json).collect(),
        LabelingItems::Templates(templates) => {
            templates.iter().map(|t| template_json(scope, t)).collect()
        }
        LabelingItems::LabelMaps(maps) => maps.iter().map(|m| label_map_json(scope, m)).collect(),
        LabelingItems::EffectiveLabels(entities) => entities.iter().map(to_json).collect(),
    }
}

// --- label dimensions -------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct KeyPath {
    /// The label dimension's key, e.g. `role`.
    key: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewLabelDimension {
    /// 1 to 64 lowercase letters, digits, `_` or `-`, starting with a letter.
    #[schema(example = "team")]
    key: String,
    /// How people call it; the key when left out.
    #[serde(default)]
    display_name: String,
}

/// Label dimensions: the keys labels have (`role`, `app`, `env`, `loc`, and those added)
#[utoipa::path(get, path = "/label_dimensions", tag = "labeling", params(OrgScope, PageQuery),
    responses((status = 200, description = "Keys, in order: `href`, `key`, `display_name`, `builtin`",
        body = [Object],
        headers(("X-Total-Count" = u64, description = "Label dimensions on all pages")))))]
async fn list_label_dimensions(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    let what = LabelingQueryKind::LabelKeys;
    list(&state, scope, what, LabelingFilter::default(), &page).await
}

/// Adds a label dimension (at most 64 in all)
#[utoipa::path(post, path = "/label_dimensions", tag = "labeling", params(OrgScope),
    request_body = NewLabelDimension,
    responses((status = 201, description = "The label dimension (as in the list)", body = Object)))]
async fn create_label_dimension(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Json(new): Json<NewLabelDimension>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let made = LabelingCommand::CreateLabelKey {
        key: new.key,
        display_name: new.display_name,
    };
    create(&state, scope, made).await
}

/// One label dimension
#[utoipa::path(get, path = "/label_dimensions/{key}", tag = "labeling", params(OrgScope, KeyPath),
    responses((status = 200, description = "The label dimension (as in the list)", body = Object)))]
async fn get_label_dimension(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<KeyPath>,
) -> Result<Json<Value>, HttpError> {
    let keys = everything(
        &state,
        LabelingQueryKind::LabelKeys,
        LabelingFilter::default(),
        |items| match items {
            LabelingItems::LabelKeys(keys) => Some(keys),
            _ => None,
        },
    )
    .await?;
    keys.iter()
        .find(|k| k.key == path.key)
        .map(|k| Json(key_json(scope, k)))
        .ok_or_else(|| {
            HttpError::new(
                StatusCode::NOT_FOUND,
                format!("label key {} does not exist", path.key),
            )
        })
}

/// Deletes a label dimension no label, label group, profile, template or label map uses; the
/// built-in ones stay
#[utoipa::path(delete, path = "/label_dimensions/{key}", tag = "labeling", params(OrgScope, KeyPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_label_dimension(
    State(state): State<AppState>,
    Path(path): Path<KeyPath>,
) -> Result<StatusCode, HttpError> {
    change(&state, LabelingCommand::DeleteLabelKey { key: path.key }).await
}

// --- labels -----------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct LabelPath {
    /// The label's id (the last part of its `href`).
    label_id: LabelId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct LabelFilters {
    /// Only labels of this key, exactly.
    key: Option<String>,
    /// Only values containing this, case-insensitively.
    value: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewLabel {
    /// An existing label dimension.
    #[schema(example = "role")]
    key: String,
    /// 1 to 255 characters, unique within the key (ignoring case).
    #[schema(example = "web")]
    value: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LabelChanges {
    /// The new value: whatever carries the label carries this one from now on.
    value: String,
}

/// Labels, by key and value
#[utoipa::path(get, path = "/labels", tag = "labeling", params(OrgScope, LabelFilters, PageQuery),
    responses((status = 200, description = "Labels: `href`, `id`, `key`, `value`, `created_by` (`api` or \
        `label_map`), `usage` (`profiles`, `label_groups`, `label_maps`, `entities`)", body = [Object],
        headers(("X-Total-Count" = u64, description = "Labels matching the filters, on all pages")))))]
async fn list_labels(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(filters): Query<LabelFilters>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    let filter = LabelingFilter {
        key: filters.key,
        value: filters.value,
        ..LabelingFilter::default()
    };
    list(&state, scope, LabelingQueryKind::Labels, filter, &page).await
}

/// Creates a label
#[utoipa::path(post, path = "/labels", tag = "labeling", params(OrgScope), request_body = NewLabel,
    responses((status = 201, description = "The label (as in the list)", body = Object)))]
async fn create_label(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Json(new): Json<NewLabel>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let made = LabelingCommand::CreateLabel {
        key: new.key,
        value: new.value,
    };
    create(&state, scope, made).await
}

/// One label
#[utoipa::path(get, path = "/labels/{label_id}", tag = "labeling", params(OrgScope, LabelPath),
    responses((status = 200, description = "The label (as in the list)", body = Object)))]
async fn get_label(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<LabelPath>,
) -> Result<Json<Value>, HttpError> {
    let what = LabelingQueryKind::Label {
        label_id: path.label_id,
    };
    one(&state, scope, what).await
}

/// Renames a label: changes its value
#[utoipa::path(put, path = "/labels/{label_id}", tag = "labeling", params(OrgScope, LabelPath),
    request_body = LabelChanges, responses((status = 204, description = "Changed")))]
async fn rename_label(
    State(state): State<AppState>,
    Path(path): Path<LabelPath>,
    Json(changes): Json<LabelChanges>,
) -> Result<StatusCode, HttpError> {
    let changed = LabelingCommand::RenameLabel {
        label_id: path.label_id,
        value: changes.value,
    };
    change(&state, changed).await
}

/// Deletes a label nothing uses (no profile, template, label group, label map rule or
/// workload)
#[utoipa::path(delete, path = "/labels/{label_id}", tag = "labeling", params(OrgScope, LabelPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_label(
    State(state): State<AppState>,
    Path(path): Path<LabelPath>,
) -> Result<StatusCode, HttpError> {
    let deleted = LabelingCommand::DeleteLabel {
        label_id: path.label_id,
    };
    change(&state, deleted).await
}

// --- label groups -----------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct GroupPath {
    /// The label group's id (the last part of its `href`).
    group_id: LabelGroupId,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct GroupFilters {
    /// Only groups of this key, exactly.
    key: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewLabelGroup {
    /// Every member has this key.
    #[schema(example = "env")]
    key: String,
    /// Unique within the key (ignoring case).
    #[schema(example = "Non-prod")]
    name: String,
    /// Labels of the key, by `href`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, example = json!([{"href": "/orgs/1/labels/7"}]))]
    labels: Vec<Href>,
    /// Label groups of the key, by `href`.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, example = json!([{"href": "/orgs/1/label_groups/2"}]))]
    sub_groups: Vec<Href>,
}

/// What is given changes; what is left out stays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LabelGroupChanges {
    name: Option<String>,
    /// The new members, replacing the old.
    #[schema(value_type = Option<Vec<Object>>)]
    labels: Option<Vec<Href>>,
    /// The new sub-groups, replacing the old; a group may not contain itself.
    #[schema(value_type = Option<Vec<Object>>)]
    sub_groups: Option<Vec<Href>>,
}

/// Label groups: named sets of labels of one key, and of other such groups
#[utoipa::path(get, path = "/label_groups", tag = "labeling", params(OrgScope, GroupFilters, PageQuery),
    responses((status = 200, description = "Label groups: `href`, `id`, `key`, `name`, `labels` and \
        `sub_groups` (each `[{href}]`)", body = [Object],
        headers(("X-Total-Count" = u64, description = "Label groups matching the filters, on all pages")))))]
async fn list_label_groups(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(filters): Query<GroupFilters>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    let filter = LabelingFilter {
        key: filters.key,
        ..LabelingFilter::default()
    };
    list(&state, scope, LabelingQueryKind::LabelGroups, filter, &page).await
}

/// Creates a label group
#[utoipa::path(post, path = "/label_groups", tag = "labeling", params(OrgScope),
    request_body = NewLabelGroup,
    responses((status = 201, description = "The label group (as in the list)", body = Object)))]
async fn create_label_group(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Json(new): Json<NewLabelGroup>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let made = LabelingCommand::CreateLabelGroup {
        key: new.key,
        name: new.name,
        labels: new.labels,
        sub_groups: new.sub_groups,
    };
    create(&state, scope, made).await
}

/// One label group
#[utoipa::path(get, path = "/label_groups/{group_id}", tag = "labeling", params(OrgScope, GroupPath),
    responses((status = 200, description = "The label group (as in the list)", body = Object)))]
async fn get_label_group(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<GroupPath>,
) -> Result<Json<Value>, HttpError> {
    let what = LabelingQueryKind::LabelGroup {
        group_id: path.group_id,
    };
    one(&state, scope, what).await
}

/// Renames a label group or changes its members
#[utoipa::path(put, path = "/label_groups/{group_id}", tag = "labeling", params(OrgScope, GroupPath),
    request_body = LabelGroupChanges, responses((status = 204, description = "Changed")))]
async fn update_label_group(
    State(state): State<AppState>,
    Path(path): Path<GroupPath>,
    Json(changes): Json<LabelGroupChanges>,
) -> Result<StatusCode, HttpError> {
    let changed = LabelingCommand::UpdateLabelGroup {
        group_id: path.group_id,
        name: changes.name,
        labels: changes.labels,
        sub_groups: changes.sub_groups,
    };
    change(&state, changed).await
}

/// Deletes a label group no profile, template or other group uses
#[utoipa::path(delete, path = "/label_groups/{group_id}", tag = "labeling", params(OrgScope, GroupPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_label_group(
    State(state): State<AppState>,
    Path(path): Path<GroupPath>,
) -> Result<StatusCode, HttpError> {
    let deleted = LabelingCommand::DeleteLabelGroup {
        group_id: path.group_id,
    };
    change(&state, deleted).await
}

// --- container workload profiles and their template --------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct ProfilePath {
    /// The container cluster's id.
    cluster_id: String,
    /// The profile's id (the last part of its `href`).
    profile_id: String,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ProfileFilters {
    /// Only the profile linked to this namespace (by name).
    namespace: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct NewProfile {
    /// 1 to 255 characters.
    #[schema(example = "payments")]
    name: String,
    /// Unmanaged namespaces' workloads get no labels and no policy (default false).
    #[serde(default)]
    managed: bool,
    /// `idle`, `visibility_only` (default), `test` or `full`.
    #[serde(default)]
    #[schema(value_type = String, example = "visibility_only")]
    enforcement_mode: EnforcementMode,
    /// Label rules by key: `{key, assignment: {href}}` fixes the key to a label;
    /// `{key, restriction: [{href}...]}` lets annotations choose among these labels and groups
    /// (`[]`: no label of the key at all). Keys left out are free.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, example = json!([
        {"key": "env", "assignment": {"href": "/orgs/1/labels/3"}},
        {"key": "app", "restriction": [{"href": "/orgs/1/labels/5"}, {"href": "/orgs/1/label_groups/2"}]},
        {"key": "loc", "restriction": []}
    ]))]
    labels: Vec<ProfileLabel>,
}

/// What is given changes; what is left out stays.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ProfileChanges {
    name: Option<String>,
    managed: Option<bool>,
    #[schema(value_type = Option<String>)]
    enforcement_mode: Option<EnforcementMode>,
    /// The new label rules, replacing the old (as in the creation).
    #[schema(value_type = Option<Vec<Object>>)]
    labels: Option<Vec<ProfileLabel>>,
}

/// The whole template: what is left out takes its default.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct TemplateSettings {
    /// Default false.
    #[serde(default)]
    managed: bool,
    /// Default `visibility_only`.
    #[serde(default)]
    #[schema(value_type = String, example = "visibility_only")]
    enforcement_mode: EnforcementMode,
    /// Label rules by key, as in a profile.
    #[serde(default)]
    #[schema(value_type = Vec<Object>)]
    labels: Vec<ProfileLabel>,
}

/// A container cluster's container workload profiles: one per namespace, and the pre-created
/// ones waiting for theirs
#[utoipa::path(get, path = "/container_clusters/{cluster_id}/container_workload_profiles", tag = "labeling",
    params(OrgScope, ClusterPath, ProfileFilters, PageQuery),
    responses((status = 200, description = "Profiles by namespace and name: `href`, `id`, `cluster_id`, `name`, \
        `namespace` (none while pending), `origin` (`namespace` or `pre_created`), `state` (`pending` or \
        `linked`), `managed`, `enforcement_mode`, `labels`", body = [Object],
        headers(("X-Total-Count" = u64, description = "Profiles matching the filters, on all pages")))))]
async fn list_profiles(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<ClusterPath>,
    Query(filters): Query<ProfileFilters>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    let filter = LabelingFilter {
        cluster_id: Some(path.cluster_id),
        namespace: filters.namespace,
        ..LabelingFilter::default()
    };
    list(&state, scope, LabelingQueryKind::Profiles, filter, &page).await
}

/// Pre-creates a profile; the answer holds its pairing key, shown this once
#[utoipa::path(post, path = "/container_clusters/{cluster_id}/container_workload_profiles", tag = "labeling",
    params(OrgScope, ClusterPath), request_body = NewProfile,
    responses((status = 201, description = "The profile (pending), with `pairing_key`: annotate a namespace of \
        the cluster with `bulkhead.io/pairing-key: <key>` (or `com.illumio.pairing_key`) to link it; Bulkhead \
        keeps only its hash", body = Object)))]
async fn create_profile(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<ClusterPath>,
    Json(new): Json<NewProfile>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let made = LabelingCommand::CreateProfile {
        cluster_id: path.cluster_id,
        name: new.name,
        settings: ProfileSettings {
            managed: new.managed,
            enforcement_mode: new.enforcement_mode,
            labels: new.labels,
        },
    };
    let (profile, pairing_key) = command(&state, made).await?;
    let pairing_key = pairing_key.ok_or_else(|| answered_badly("the pairing key"))?;
    let mut body = item_json(scope, profile);
    body["pairing_key"] = pairing_key.into();
    Ok((StatusCode::CREATED, Json(body)))
}

/// One container workload profile
#[utoipa::path(get, path = "/container_clusters/{cluster_id}/container_workload_profiles/{profile_id}",
    tag = "labeling", params(OrgScope, ProfilePath),
    responses((status = 200, description = "The profile (as in the list)", body = Object)))]
async fn get_profile(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<ProfilePath>,
) -> Result<Json<Value>, HttpError> {
    let what = LabelingQueryKind::Profile {
        cluster_id: path.cluster_id,
        profile_id: path.profile_id,
    };
    one(&state, scope, what).await
}

/// Renames a profile or changes what it decides for its namespace's workloads
#[utoipa::path(put, path = "/container_clusters/{cluster_id}/container_workload_profiles/{profile_id}",
    tag = "labeling", params(OrgScope, ProfilePath), request_body = ProfileChanges,
    responses((status = 204, description = "Changed")))]
async fn update_profile(
    State(state): State<AppState>,
    Path(path): Path<ProfilePath>,
    Json(changes): Json<ProfileChanges>,
) -> Result<StatusCode, HttpError> {
    let changed = LabelingCommand::UpdateProfile {
        cluster_id: path.cluster_id,
        profile_id: path.profile_id,
        name: changes.name,
        managed: changes.managed,
        enforcement_mode: changes.enforcement_mode,
        labels: changes.labels,
    };
    change(&state, changed).await
}

/// Deletes a pre-created profile (its namespace, if linked, gets one from the template); a
/// namespace's own profile goes with its namespace only
#[utoipa::path(delete, path = "/container_clusters/{cluster_id}/container_workload_profiles/{profile_id}",
    tag = "labeling", params(OrgScope, ProfilePath),
    responses((status = 204, description = "Deleted")))]
async fn delete_profile(
    State(state): State<AppState>,
    Path(path): Path<ProfilePath>,
) -> Result<StatusCode, HttpError> {
    let deleted = LabelingCommand::DeleteProfile {
        cluster_id: path.cluster_id,
        profile_id: path.profile_id,
    };
    change(&state, deleted).await
}

/// A container cluster's profile template: what the profiles of new namespaces start with
#[utoipa::path(get, path = "/container_clusters/{cluster_id}/container_workload_profile_template",
    tag = "labeling", params(OrgScope, ClusterPath),
    responses((status = 200, description = "`href`, `cluster_id`, `managed`, `enforcement_mode`, `labels`",
        body = Object)))]
async fn get_template(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<ClusterPath>,
) -> Result<Json<Value>, HttpError> {
    let what = LabelingQueryKind::Template {
        cluster_id: path.cluster_id,
    };
    one(&state, scope, what).await
}

/// Replaces a container cluster's profile template (existing profiles keep their settings)
#[utoipa::path(put, path = "/container_clusters/{cluster_id}/container_workload_profile_template",
    tag = "labeling", params(OrgScope, ClusterPath), request_body = TemplateSettings,
    responses((status = 204, description = "Replaced")))]
async fn set_template(
    State(state): State<AppState>,
    Path(path): Path<ClusterPath>,
    Json(settings): Json<TemplateSettings>,
) -> Result<StatusCode, HttpError> {
    let changed = LabelingCommand::SetTemplate {
        cluster_id: path.cluster_id,
        settings: ProfileSettings {
            managed: settings.managed,
            enforcement_mode: settings.enforcement_mode,
            labels: settings.labels,
        },
    };
    change(&state, changed).await
}

// --- label maps -------------------------------------------------------------------------

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct LabelMapPath {
    /// The container cluster's id.
    cluster_id: String,
    /// The label map's name.
    name: String,
}

/// A label map's rules: a Kubernetes label `from_key` gives the label of key `to_key`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct LabelMapRules {
    /// Rules for nodes: `[{from_key, to_key, values_map: [{from, to}], allow_create}]`.
    /// `values_map` (optional) maps only the values listed, translated; `allow_create`
    /// (default false) lets a value name a label that does not exist yet.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, example = json!([{"from_key": "topology.kubernetes.io/zone", "to_key": "loc", "values_map": [{"from": "us-east-1a", "to": "east"}], "allow_create": true}]))]
    node_label_map: Vec<LabelMapItem>,
    /// Rules for pods, Kubernetes workloads and services, in the same shape.
    #[serde(default)]
    #[schema(value_type = Vec<Object>, example = json!([{"from_key": "app.kubernetes.io/name", "to_key": "app"}]))]
    workload_label_map: Vec<LabelMapItem>,
}

/// A container cluster's label maps: its LabelMap custom resources first, then those defined
/// here, each in name order (the order they apply in: per key, the last rule yielding a label
/// wins)
#[utoipa::path(get, path = "/container_clusters/{cluster_id}/label_maps", tag = "labeling",
    params(OrgScope, ClusterPath, PageQuery),
    responses((status = 200, description = "Label maps: `cluster_id`, `name`, `origin` (`custom_resource` or \
        `api`), `spec` (`node_label_map`, `workload_label_map`); those defined here have an `href`",
        body = [Object],
        headers(("X-Total-Count" = u64, description = "Label maps on all pages")))))]
async fn list_label_maps(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<ClusterPath>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    let filter = LabelingFilter {
        cluster_id: Some(path.cluster_id),
        ..LabelingFilter::default()
    };
    list(&state, scope, LabelingQueryKind::LabelMaps, filter, &page).await
}

/// One label map defined here
#[utoipa::path(get, path = "/container_clusters/{cluster_id}/label_maps/{name}", tag = "labeling",
    params(OrgScope, LabelMapPath),
    responses((status = 200, description = "The label map (as in the list)", body = Object)))]
async fn get_label_map(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<LabelMapPath>,
) -> Result<Json<Value>, HttpError> {
    let filter = LabelingFilter {
        cluster_id: Some(path.cluster_id.clone()),
        ..LabelingFilter::default()
    };
    let maps = everything(
        &state,
        LabelingQueryKind::LabelMaps,
        filter,
        |items| match items {
            LabelingItems::LabelMaps(maps) => Some(maps),
            _ => None,
        },
    )
    .await?;
    let named = |origin| {
        maps.iter()
            .find(|m| m.name == path.name && m.origin == origin)
    };
    if let Some(map) = named(LabelMapOrigin::Api) {
        return Ok(Json(label_map_json(scope, map)));
    }
    let hint = match named(LabelMapOrigin::CustomResource) {
        Some(_) => " (a LabelMap custom resource of that name is in the cluster's list)",
        None => "",
    };
    Err(HttpError::new(
        StatusCode::NOT_FOUND,
        format!(
            "container cluster {} has no label map {:?} defined through the api{hint}",
            path.cluster_id, path.name
        ),
    ))
}

/// Creates or replaces a label map of a container cluster
#[utoipa::path(put, path = "/container_clusters/{cluster_id}/label_maps/{name}", tag = "labeling",
    params(OrgScope, LabelMapPath), request_body = LabelMapRules,
    responses((status = 204, description = "Created or replaced")))]
async fn put_label_map(
    State(state): State<AppState>,
    Path(path): Path<LabelMapPath>,
    Json(rules): Json<LabelMapRules>,
) -> Result<StatusCode, HttpError> {
    let changed = LabelingCommand::PutLabelMap {
        cluster_id: path.cluster_id,
        name: path.name,
        spec: LabelMapSpec {
            node_label_map: rules.node_label_map,
            workload_label_map: rules.workload_label_map,
        },
    };
    change(&state, changed).await
}

/// Deletes a label map defined here
#[utoipa::path(delete, path = "/container_clusters/{cluster_id}/label_maps/{name}", tag = "labeling",
    params(OrgScope, LabelMapPath), responses((status = 204, description = "Deleted")))]
async fn delete_label_map(
    State(state): State<AppState>,
    Path(path): Path<LabelMapPath>,
) -> Result<StatusCode, HttpError> {
    let deleted = LabelingCommand::DeleteLabelMap {
        cluster_id: path.cluster_id,
        name: path.name,
    };
    change(&state, deleted).await
}

#[cfg(test)]
mod tests;
