//! The inventory area under `/orgs/{org_id}`: container clusters (pairing), and what their
//! clusterlinks observe: workloads (nodes), container workloads (pods), Kubernetes workloads,
//! virtual services, and each cluster's namespaces. The inventory service answers over the bus
//! (`inventory.ClusterCommand`, `inventory.InventoryQuery`); here its views get the reference
//! product's shape: `href` and `name` on everything, the owning cluster as
//! `container_cluster: {href, name}`, lists paged ([`crate::paging`]). `labels` are Bulkhead
//! labels as the reference has them, `[{href, key, value}]`, each with its `source` (a Bulkhead
//! extension), filtered by the reference's `labels` parameter; Kubernetes labels are
//! `kubernetes_labels` (docs/inventory-api.md).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::inventory::{
    ClusterCommand, ClusterCommandReply, ClusterView, InventoryFilter, InventoryItems,
    InventoryQuery, InventoryQueryKind, InventoryRejection, InventoryReply, LabelSelector,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::routes;

use crate::error::HttpError;
use crate::orgs::OrgScope;
use crate::paging::{Listing, PageQuery, Window};
use crate::{ApiRouter, AppState};

/// How long the api waits for inventory: a command's reply waits for the log to commit it.
const INVENTORY_TIMEOUT: Duration = Duration::from_secs(15);
/// The collection of container clusters; what labeling keeps per cluster lives under it too.
pub(crate) const CLUSTERS: &str = "container_clusters";

pub(crate) fn routes() -> ApiRouter {
    ApiRouter::default()
        .routes(routes!(list_clusters, create_cluster))
        .routes(routes!(get_cluster, update_cluster, delete_cluster))
        .routes(routes!(list_namespaces))
        .routes(routes!(list_workloads))
        .routes(routes!(list_container_workloads))
        .routes(routes!(list_kubernetes_workloads))
        .routes(routes!(list_virtual_services))
}

fn refused(kind: InventoryRejection, reason: String) -> HttpError {
    let status = match kind {
        InventoryRejection::Invalid => StatusCode::BAD_REQUEST,
        InventoryRejection::NotFound => StatusCode::NOT_FOUND,
        InventoryRejection::Conflict => StatusCode::CONFLICT,
    };
    HttpError::new(status, reason)
}

/// The `{cluster_id}` of a cluster's path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ClusterPath {
    /// The container cluster's id (the last part of its `href`).
    pub(crate) cluster_id: String,
}

/// Filters of a list; each list takes the filters that apply to it (others are a 400).
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// Only what is in this container cluster: its id or its `href`.
    container_cluster: Option<String>,
    /// Only what is in this namespace (container workloads, Kubernetes workloads, virtual
    /// services).
    namespace: Option<String>,
    /// Only what runs on this node, by name (workloads, container workloads, Kubernetes
    /// workloads).
    node: Option<String>,
    /// Only names containing this, case-insensitively.
    name: Option<String>,
    /// Only what carries these labels (workloads, container workloads, Kubernetes workloads,
    /// virtual services): a JSON list of lists, matching what carries every label of any one
    /// list, e.g. `[["/orgs/1/labels/1","/orgs/1/labels/2"],["/orgs/1/labels/3"]]`. A label is
    /// its href, `{"href": ...}`, or `{"key": ..., "value": ...}`.
    labels: Option<String>,
}

impl ListQuery {
    fn to_query(
        &self,
        what: InventoryQueryKind,
        window: Window,
    ) -> Result<InventoryQuery, HttpError> {
        Ok(InventoryQuery {
            what,
            filter: InventoryFilter {
                // An href ends with the id.
                cluster_id: self
                    .container_cluster
                    .as_deref()
                    .map(|c| c.rsplit('/').next().unwrap_or(c).to_owned()),
                namespace: self.namespace.clone(),
                node: self.node.clone(),
                name: self.name.clone(),
                labels: match &self.labels {
                    Some(labels) => label_selectors(labels)?,
                    None => Vec::new(),
                },
            },
            offset: window.offset,
            limit: window.limit,
        })
    }
}

/// A label of the `labels` parameter: an href as the reference API has it, a label object as
/// lists show them (so that they can be sent back as they are), or a key and value.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "each label an href, {\"href\": ...} or {\"key\": ..., \"value\": ...}"
)]
enum LabelParam {
    Href(String),
    Object { href: String },
    KeyValue { key: String, value: String },
}

impl From<LabelParam> for LabelSelector {
    fn from(param: LabelParam) -> Self {
        match param {
            LabelParam::Href(href) | LabelParam::Object { href } => LabelSelector::Href(href),
            LabelParam::KeyValue { key, value } => LabelSelector::KeyValue { key, value },
        }
    }
}

/// The `labels` parameter's lists; whether each label names one is inventory's to say.
fn label_selectors(param: &str) -> Result<Vec<Vec<LabelSelector>>, HttpError> {
    let lists: Vec<Vec<LabelParam>> = serde_json::from_str(param).map_err(|e| {
        HttpError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "labels must be a JSON list of lists of labels, e.g. \
                 [[\"/orgs/1/labels/1\",\"/orgs/1/labels/2\"],[\"/orgs/1/labels/3\"]]: {e}"
            ),
        )
    })?;
    Ok(lists
        .into_iter()
        .map(|all| all.into_iter().map(LabelSelector::from).collect())
        .collect())
}

/// Inventory's page for `query`, as JSON.
async fn listing(
    state: &AppState,
    scope: OrgScope,
    query: InventoryQuery,
) -> Result<Listing, HttpError> {
    match state
        .ask(
            "inventory service",
            INVENTORY_TIMEOUT,
            &Subject::inventory_query(),
            &query,
        )
        .await?
    {
        InventoryReply::Page(page) => Ok(Listing(page.total, items(scope, page.items))),
        InventoryReply::Rejected { kind, reason } => Err(refused(kind, reason)),
    }
}

/// One page of a list of `what`, filtered.
async fn list(
    state: &AppState,
    scope: OrgScope,
    what: InventoryQueryKind,
    filters: &ListQuery,
    page: &PageQuery,
) -> Result<Listing, HttpError> {
    let window = page.window(InventoryQuery::MAX_LIMIT)?;
    listing(state, scope, filters.to_query(what, window)?).await
}

/// The JSON of a view: its fields, `href`, its cluster as `container_cluster`, and its
/// Kubernetes labels as `kubernetes_labels` (in this API, as in the reference's, `labels` are
/// Bulkhead's).
fn resource(scope: OrgScope, collection: &str, id: &str, view: &impl Serialize) -> Value {
    let mut value = serde_json::to_value(view).expect("inventory views are JSON");
    let object = value.as_object_mut().expect("inventory views are objects");
    if let Some(kubernetes_labels) = object.remove("labels") {
        object.insert("kubernetes_labels".into(), kubernetes_labels);
    }
    if let Some(cluster) = object.remove("cluster") {
        let cluster_id = cluster["cluster_id"].as_str().unwrap_or_default();
        object.insert(
            "container_cluster".into(),
            json!({ "href": scope.href(CLUSTERS, cluster_id), "name": cluster["name"] }),
        );
    }
    object.insert("href".into(), scope.href(collection, id).into());
    value
}

/// The JSON of an entity labeling labels: what labeling wrote of it at the top, as the
/// reference has it: `labels` (`[]` until labeling wrote them), `managed` and
/// `enforcement_mode` (absent until then).
fn labeled(mut resource: Value) -> Value {
    let object = resource
        .as_object_mut()
        .expect("inventory views are objects");
    let mut labeling = object.remove("labeling").unwrap_or_default();
    let labels = labeling
        .get_mut("labels")
        .map_or_else(|| json!([]), Value::take);
    object.insert("labels".into(), labels);
    for field in ["managed", "enforcement_mode"] {
        if let Some(value) = labeling.get_mut(field) {
            object.insert(field.into(), value.take());
        }
    }
    resource
}

fn cluster_json(scope: OrgScope, cluster: &ClusterView) -> Value {
    resource(scope, CLUSTERS, &cluster.cluster_id, cluster)
}

fn items(scope: OrgScope, items: InventoryItems) -> Vec<Value> {
    match items {
        InventoryItems::Clusters(clusters) => {
            clusters.iter().map(|c| cluster_json(scope, c)).collect()
        }
        InventoryItems::HostWorkloads(hosts) => hosts
            .iter()
            .map(|h| labeled(resource(scope, "workloads", &h.uid, h)))
            .collect(),
        InventoryItems::PodWorkloads(pods) => pods
            .iter()
            .map(|p| labeled(resource(scope, "container_workloads", &p.uid, p)))
            .collect(),
        InventoryItems::KubeWorkloads(workloads) => workloads
            .iter()
            .map(|w| labeled(resource(scope, "kubernetes_workloads", &w.workload.uid, w)))
            .collect(),
        InventoryItems::VirtualServices(services) => services
            .iter()
            .map(|s| labeled(resource(scope, "virtual_services", &s.uid, s)))
            .collect(),
        InventoryItems::Namespaces(namespaces) => namespaces
            .iter()
            .map(|n| {
                let id = format!("{}/namespaces/{}", n.cluster.cluster_id, n.uid);
                resource(scope, CLUSTERS, &id, n)
            })
            .collect(),
    }
}

async fn command(
    state: &AppState,
    command: ClusterCommand,
) -> Result<ClusterCommandReply, HttpError> {
    match state
        .ask(
            "inventory service",
            INVENTORY_TIMEOUT,
            &Subject::inventory_command(),
            &command,
        )
        .await?
    {
        ClusterCommandReply::Rejected { kind, reason } => Err(refused(kind, reason)),
        ClusterCommandReply::Unavailable { reason } => {
            Err(HttpError::new(StatusCode::SERVICE_UNAVAILABLE, reason))
        }
        done => Ok(done),
    }
}

/// Container clusters: paired Kubernetes or OpenShift clusters, with their clusterlink's state
#[utoipa::path(get, path = "/container_clusters", tag = "inventory", params(OrgScope, ListQuery, PageQuery),
    responses((status = 200, description = "Clusters by name: `href`, `cluster_id`, `name`, `description`, `online`, \
        `sync_state`, `last_connected_ms`, `clusterlink_version`, `kubernetes_version`, `cluster_mode`, \
        `network_type`, `errors`, `nodes`, `pods`", body = [Object],
        headers(("X-Total-Count" = u64, description = "Clusters matching the filters, on all pages")))))]
async fn list_clusters(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(filters): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    list(&state, scope, InventoryQueryKind::Clusters, &filters, &page).await
}

#[derive(Debug, Deserialize, ToSchema)]
struct NewCluster {
    /// 1 to 255 characters, unique.
    name: String,
    #[serde(default)]
    description: String,
}

/// Pairs a new container cluster; the answer holds its pairing token, shown this once
#[utoipa::path(post, path = "/container_clusters", tag = "inventory", params(OrgScope), request_body = NewCluster,
    responses((status = 201, description = "The cluster, with `container_cluster_token`: configure clusterlink with \
        `cluster_id` and this token; Bulkhead keeps only its hash", body = Object)))]
async fn create_cluster(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Json(new): Json<NewCluster>,
) -> Result<(StatusCode, Json<Value>), HttpError> {
    let reply = command(
        &state,
        ClusterCommand::Create {
            name: new.name,
            description: new.description,
        },
    )
    .await?;
    let ClusterCommandReply::Done {
        cluster,
        token: Some(token),
    } = reply
    else {
        return Err(HttpError::new(
            StatusCode::BAD_GATEWAY,
            "the inventory service created a cluster without a token",
        ));
    };
    let mut body = cluster_json(scope, &cluster);
    body["container_cluster_token"] = token.into();
    Ok((StatusCode::CREATED, Json(body)))
}

/// One container cluster
#[utoipa::path(get, path = "/container_clusters/{cluster_id}", tag = "inventory", params(OrgScope, ClusterPath),
    responses((status = 200, description = "The cluster (as in the list)", body = Object)))]
async fn get_cluster(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<ClusterPath>,
) -> Result<Json<Value>, HttpError> {
    let what = InventoryQueryKind::Cluster {
        cluster_id: path.cluster_id,
    };
    let window = Window {
        offset: 0,
        limit: 1,
    };
    let query = ListQuery::default().to_query(what, window)?;
    let Listing(_, mut clusters) = listing(&state, scope, query).await?;
    clusters
        .pop()
        .map(Json)
        .ok_or_else(|| HttpError::new(StatusCode::BAD_GATEWAY, "inventory answered no cluster"))
}

#[derive(Debug, Deserialize, ToSchema)]
struct ClusterChanges {
    name: Option<String>,
    description: Option<String>,
}

/// Renames a container cluster or changes its description
#[utoipa::path(put, path = "/container_clusters/{cluster_id}", tag = "inventory", params(OrgScope, ClusterPath),
    request_body = ClusterChanges, responses((status = 204, description = "Changed")))]
async fn update_cluster(
    State(state): State<AppState>,
    Path(path): Path<ClusterPath>,
    Json(changes): Json<ClusterChanges>,
) -> Result<StatusCode, HttpError> {
    command(
        &state,
        ClusterCommand::Update {
            cluster_id: path.cluster_id,
            name: changes.name,
            description: changes.description,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Unpairs a container cluster: it is forgotten with everything observed in it, and its token
/// stops working
#[utoipa::path(delete, path = "/container_clusters/{cluster_id}", tag = "inventory", params(OrgScope, ClusterPath),
    responses((status = 204, description = "Deleted")))]
async fn delete_cluster(
    State(state): State<AppState>,
    Path(path): Path<ClusterPath>,
) -> Result<StatusCode, HttpError> {
    command(
        &state,
        ClusterCommand::Delete {
            cluster_id: path.cluster_id,
        },
    )
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A container cluster's Kubernetes namespaces
#[utoipa::path(get, path = "/container_clusters/{cluster_id}/namespaces", tag = "inventory",
    params(OrgScope, ClusterPath, ListQuery, PageQuery),
    responses((status = 200, description = "Namespaces by name: `href`, `uid`, `name`, `kubernetes_labels`, \
        `annotations`, `container_cluster`", body = [Object],
        headers(("X-Total-Count" = u64, description = "Namespaces matching the filters, on all pages")))))]
async fn list_namespaces(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Path(path): Path<ClusterPath>,
    Query(filters): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    if filters.container_cluster.is_some() {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "the container cluster is in the path; container_cluster does not apply",
        ));
    }
    let window = page.window(InventoryQuery::MAX_LIMIT)?;
    let mut query = filters.to_query(InventoryQueryKind::Namespaces, window)?;
    query.filter.cluster_id = Some(path.cluster_id);
    listing(&state, scope, query).await
}

/// Workloads: the nodes of the container clusters
#[utoipa::path(get, path = "/workloads", tag = "inventory", params(OrgScope, ListQuery, PageQuery),
    responses((status = 200, description = "Nodes by cluster and name: `href`, `uid`, `name`, `machine_id`, \
        `duplicate_machine_id`, `addresses`, `pod_cidrs`, `roles`, `kubelet_version`, `kubernetes_labels`, \
        `host_network_pods`, `container_cluster`, and what labeling resolved: `labels` \
        (`[{href, key, value, source}]`), `managed`, `enforcement_mode`", body = [Object],
        headers(("X-Total-Count" = u64, description = "Workloads matching the filters, on all pages")))))]
async fn list_workloads(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(filters): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    list(
        &state,
        scope,
        InventoryQueryKind::HostWorkloads,
        &filters,
        &page,
    )
    .await
}

/// Container workloads: pods on the pod network (host-network pods are their node's)
#[utoipa::path(get, path = "/container_workloads", tag = "inventory", params(OrgScope, ListQuery, PageQuery),
    responses((status = 200, description = "Pods by cluster, namespace and name: `href`, `uid`, `namespace`, `name`, \
        `node_name`, `ips`, `phase`, `containers`, `kubernetes_labels`, `annotations`, `owners`, \
        `container_cluster`, and what labeling resolved: `labels` (`[{href, key, value, source}]`), \
        `managed`, `enforcement_mode`", body = [Object],
        headers(("X-Total-Count" = u64, description = "Container workloads matching the filters, on all pages")))))]
async fn list_container_workloads(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(filters): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    list(
        &state,
        scope,
        InventoryQueryKind::PodWorkloads,
        &filters,
        &page,
    )
    .await
}

/// Kubernetes workloads: Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs, CronJobs and
/// bare pods, each with its pods' IPs
#[utoipa::path(get, path = "/kubernetes_workloads", tag = "inventory", params(OrgScope, ListQuery, PageQuery),
    responses((status = 200, description = "Top-level controllers and bare pods by cluster, namespace and name: `href`, \
        `kind`, `uid`, `namespace`, `name`, `kubernetes_labels`, `annotations`, `replicas`, `pods`, `ips`, \
        `nodes`, `container_cluster`, and what labeling resolved: `labels` (`[{href, key, value, source}]`), \
        `managed`, `enforcement_mode`", body = [Object],
        headers(("X-Total-Count" = u64, description = "Kubernetes workloads matching the filters, on all pages")))))]
async fn list_kubernetes_workloads(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(filters): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    list(
        &state,
        scope,
        InventoryQueryKind::KubeWorkloads,
        &filters,
        &page,
    )
    .await
}

/// Virtual services: Kubernetes services, with backends resolved through their EndpointSlices
#[utoipa::path(get, path = "/virtual_services", tag = "inventory", params(OrgScope, ListQuery, PageQuery),
    responses((status = 200, description = "Services by cluster, namespace and name: `href`, `uid`, `namespace`, `name`, \
        `service_type`, `cluster_ips`, `ports`, `selector`, `kubernetes_labels`, `annotations`, `backends`, \
        `backend_ports`, `workloads`, `container_cluster`, and what labeling resolved: `labels` \
        (`[{href, key, value, source}]`), `managed`, `enforcement_mode`", body = [Object],
        headers(("X-Total-Count" = u64, description = "Virtual services matching the filters, on all pages")))))]
async fn list_virtual_services(
    State(state): State<AppState>,
    Path(scope): Path<OrgScope>,
    Query(filters): Query<ListQuery>,
    Query(page): Query<PageQuery>,
) -> Result<Listing, HttpError> {
    list(
        &state,
        scope,
        InventoryQueryKind::VirtualServices,
        &filters,
        &page,
    )
    .await
}

#[cfg(test)]
mod tests;
