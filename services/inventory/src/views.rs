//! The listings the api asks for, derived from the [`Index`] on demand: a query filters and
//! sorts lightweight references, then builds views for the requested page only.
//!
//! Derivation rules:
//! - host workload = node; nodes sharing a machine id are flagged and named in the cluster's
//!   errors; host-network pods are listed on their node.
//! - pod workload = pod on the pod network (host-network pods are their node's).
//! - kube workload = the top of a pod's controlling owner chain (pod → ReplicaSet → Deployment,
//!   Job → CronJob, ...) as far as the owners are observed, or the pod itself when it has no
//!   controller (a bare pod; static pods, owned by their Node, are bare pods too).
//! - virtual service = service, with backends from the EndpointSlices naming it: an endpoint's
//!   pod uid leads to the pod and its kube workload, whatever controller made it (no selector
//!   matching, hence no `pod-template-hash` workaround).
//! - labeling (effective labels, managed, enforcement mode) = what labeling last wrote of the
//!   node, pod, service or controller; a bare pod's kube workload has its pod's.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bulkhead_schema::messages::inventory::{
    BackendView, ClusterError, ClusterRef, ClusterView, EffectiveLabeling, HostWorkloadView,
    InventoryFilter, InventoryItems, InventoryPage, InventoryQuery, InventoryQueryKind,
    InventoryRejection, KubeWorkloadView, LabelSelector, NamespaceView, PodRef, PodWorkloadView,
    ResourceKind, SlicePort, SyncState, VirtualServiceView, WorkloadRef,
};
use bulkhead_schema::messages::labeling::HrefTarget;

use crate::index::{
    Cluster, Details, Index, Labeling, MAX_OWNER_DEPTH, Object, Owner, PodDetails, SliceDetails,
    is_controller, to_map,
};

/// Nodes by machine id.
type MachineIds<'a> = BTreeMap<&'a str, Vec<&'a str>>;
/// Host-network pods by node name.
type HostNetworkPods<'a> = HashMap<&'a str, Vec<PodRef>>;

/// What only the serving shell knows of a cluster (from heartbeats and reports, not the log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub online: bool,
    pub sync_state: SyncState,
}

/// Why a query or command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Refusal {
    pub rejection: InventoryRejection,
    pub reason: String,
}

impl Refusal {
    pub fn invalid(reason: impl Into<String>) -> Self {
        Refusal {
            rejection: InventoryRejection::Invalid,
            reason: reason.into(),
        }
    }

    pub fn not_found(cluster_id: &str) -> Self {
        Refusal {
            rejection: InventoryRejection::NotFound,
            reason: format!("container cluster {cluster_id} does not exist"),
        }
    }

    pub fn conflict(reason: impl Into<String>) -> Self {
        Refusal {
            rejection: InventoryRejection::Conflict,
            reason: reason.into(),
        }
    }

    /// A stable label for metrics.
    pub fn kind(&self) -> &'static str {
        match self.rejection {
            InventoryRejection::Invalid => "invalid",
            InventoryRejection::NotFound => "not_found",
            InventoryRejection::Conflict => "conflict",
        }
    }
}

/// A listed entity before its view is built: what it is sorted by, and where it lives.
struct Candidate<'a, T> {
    cluster_id: &'a str,
    cluster: &'a Cluster,
    namespace: &'a str,
    name: &'a str,
    uid: &'a str,
    item: T,
}

impl<'a, T> Candidate<'a, T> {
    fn sort_key(&self) -> (&'a str, &'a str, &'a str, &'a str) {
        (&self.cluster.meta.name, self.namespace, self.name, self.uid)
    }

    fn cluster_ref(&self) -> ClusterRef {
        cluster_ref(self.cluster_id, self.cluster)
    }
}

fn cluster_ref(cluster_id: &str, cluster: &Cluster) -> ClusterRef {
    ClusterRef {
        cluster_id: cluster_id.to_owned(),
        name: cluster.meta.name.clone(),
    }
}

/// Sorts, counts, and builds the views of one page.
fn page<'a, T, V>(
    mut candidates: Vec<Candidate<'a, T>>,
    query: &InventoryQuery,
    mut build: impl FnMut(&Candidate<'a, T>) -> V,
) -> (u64, Vec<V>) {
    candidates.sort_unstable_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    let total = candidates.len() as u64;
    let views = candidates
        .iter()
        .skip(query.offset as usize)
        .take(query.limit as usize)
        .map(&mut build)
        .collect();
    (total, views)
}

/// ASCII-case-insensitive substring test, without allocating per candidate.
fn contains_ignoring_case(haystack: &str, needle: &str) -> bool {
    needle.is_empty()
        || haystack
            .as_bytes()
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle.as_bytes()))
}

/// The filters of a query, checked against what its kind supports.
struct Filter<'q> {
    namespace: Option<&'q str>,
    node: Option<&'q str>,
    name: Option<&'q str>,
    /// Any of these lists, each label of it.
    labels: &'q [Vec<LabelSelector>],
}

impl Filter<'_> {
    fn name(&self, name: &str) -> bool {
        self.name.is_none_or(|n| contains_ignoring_case(name, n))
    }

    fn namespace(&self, namespace: &str) -> bool {
        self.namespace.is_none_or(|n| n == namespace)
    }

    fn node(&self, node: &str) -> bool {
        self.node.is_none_or(|n| n == node)
    }

    /// Entities labeling has not written carry no labels, so match no label filter.
    fn labels(&self, labeling: Option<&Labeling>) -> bool {
        self.labels.is_empty()
            || labeling.is_some_and(|labeling| {
                self.labels
                    .iter()
                    .any(|all| all.iter().all(|selector| labeling.carries(selector)))
            })
    }
}

/// The filters a kind takes besides cluster and name.
#[derive(Debug, Clone, Copy)]
struct Takes {
    namespace: bool,
    node: bool,
    labels: bool,
}

fn filter<'q>(
    filter: &'q InventoryFilter,
    what: &str,
    takes: Takes,
) -> Result<Filter<'q>, Refusal> {
    let refused = |by: &str| Refusal::invalid(format!("{what} cannot be filtered by {by}"));
    if filter.namespace.is_some() && !takes.namespace {
        return Err(refused("namespace"));
    }
    if filter.node.is_some() && !takes.node {
        return Err(refused("node"));
    }
    if !filter.labels.is_empty() && !takes.labels {
        return Err(refused("labels"));
    }
    filter
        .labels
        .iter()
        .try_for_each(|all| check_label_list(all))?;
    Ok(Filter {
        namespace: filter.namespace.as_deref(),
        node: filter.node.as_deref(),
        name: filter.name.as_deref(),
        labels: &filter.labels,
    })
}

/// Refuses a list that cannot mean what its sender meant: an empty one (every entity would
/// match it), or one naming something other than a label (no entity could).
fn check_label_list(all: &[LabelSelector]) -> Result<(), Refusal> {
    if all.is_empty() {
        return Err(Refusal::invalid(
            "a list of labels to match is empty (leave it out to match everything)",
        ));
    }
    for selector in all {
        match selector {
            LabelSelector::Href(href) => match HrefTarget::parse(href) {
                Some(HrefTarget::Label(_)) => {}
                Some(HrefTarget::LabelGroup(_)) => {
                    return Err(Refusal::invalid(format!(
                        "{href} is a label group; filter by its labels"
                    )));
                }
                None => {
                    return Err(Refusal::invalid(format!(
                        "{href:?} is not a label href (/orgs/1/labels/<id>)"
                    )));
                }
            },
            LabelSelector::KeyValue { key, value } if key.is_empty() || value.is_empty() => {
                return Err(Refusal::invalid(format!(
                    "a label to match needs a key and a value, not {key:?}={value:?}"
                )));
            }
            LabelSelector::KeyValue { .. } => {}
        }
    }
    Ok(())
}

fn labeling_view(object: &Object) -> Option<EffectiveLabeling> {
    object.labeling.as_deref().map(Labeling::view)
}

impl Cluster {
    /// The controlling owners of `object`, nearest first, as far as they are observed: an owner
    /// not observed (yet) ends the chain as a reference. A Node owner (a static pod's mirror)
    /// is no controller: kubelet runs the pod, which stands alone.
    pub(crate) fn owners<'a>(&'a self, object: &'a Object) -> impl Iterator<Item = &'a Owner> {
        std::iter::successors(object.owner.as_ref(), move |owner| {
            ResourceKind::from_kube_kind(&owner.kind)
                .filter(|kind| is_controller(*kind))
                .and_then(|kind| self.object(kind, &owner.uid))
                .and_then(|o| o.owner.as_ref())
        })
        .take_while(|owner| &*owner.kind != "Node")
        .take(MAX_OWNER_DEPTH)
    }

    /// The kube workload of a pod: the top of its owner chain, or the pod itself.
    fn workload_of(&self, pod_uid: &str, pod: &Object) -> WorkloadRef {
        match self.owners(pod).last() {
            Some(top) => workload_ref(top),
            None => WorkloadRef {
                kind: ResourceKind::Pod.kube_kind().into(),
                name: pod.name.to_string(),
                uid: pod_uid.to_owned(),
            },
        }
    }

    /// Nodes by machine id, for the machine ids more than one node reports.
    fn duplicate_machine_ids(&self) -> MachineIds<'_> {
        let mut by_id: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (_, node) in self.all(ResourceKind::Node) {
            if let Details::Node(details) = &node.details
                && !details.machine_id.is_empty()
            {
                by_id
                    .entry(&details.machine_id)
                    .or_default()
                    .push(&node.name);
            }
        }
        by_id.retain(|_, nodes| nodes.len() > 1);
        for nodes in by_id.values_mut() {
            nodes.sort_unstable();
        }
        by_id
    }

    fn view(&self, cluster_id: &str, presence: Presence) -> ClusterView {
        let connection = self.meta.connection.clone().unwrap_or_default();
        ClusterView {
            cluster_id: cluster_id.to_owned(),
            name: self.meta.name.clone(),
            description: self.meta.description.clone(),
            created_at_ms: self.meta.created_at_ms,
            online: presence.online,
            sync_state: presence.sync_state,
            last_connected_ms: self.meta.connection.as_ref().map(|c| c.at_ms),
            clusterlink_version: connection.clusterlink_version,
            kubernetes_version: connection.kubernetes_version,
            cluster_mode: connection.cluster_mode,
            network_type: connection.network_type,
            errors: self
                .duplicate_machine_ids()
                .into_iter()
                .map(|(machine_id, nodes)| ClusterError::DuplicateMachineId {
                    machine_id: machine_id.to_owned(),
                    nodes: nodes.into_iter().map(str::to_owned).collect(),
                })
                .collect(),
            nodes: self.count(ResourceKind::Node) as u32,
            pods: self.count(ResourceKind::Pod) as u32,
        }
    }

    /// Host-network pods by node name.
    fn host_network_pods(&self) -> HostNetworkPods<'_> {
        let mut by_node: HashMap<&str, Vec<PodRef>> = HashMap::new();
        for (uid, object) in self.all(ResourceKind::Pod) {
            if let Some(pod) = object.pod().filter(|p| p.host_network) {
                by_node
                    .entry(&pod.node_name)
                    .or_default()
                    .push(pod_ref(uid, object));
            }
        }
        for pods in by_node.values_mut() {
            pods.sort_unstable_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        }
        by_node
    }

    /// EndpointSlices by the (namespace, service name) they serve.
    fn slices_by_service(&self) -> HashMap<(&str, &str), Vec<&SliceDetails>> {
        let mut by_service: HashMap<(&str, &str), Vec<&SliceDetails>> = HashMap::new();
        for (_, object) in self.all(ResourceKind::EndpointSlice) {
            if let Details::EndpointSlice(slice) = &object.details {
                by_service
                    .entry((&object.namespace, &slice.service_name))
                    .or_default()
                    .push(slice);
            }
        }
        by_service
    }

    /// Every kube workload of the cluster: observed controllers at the top of their chains,
    /// owners known only by reference, and bare pods, each with its pod-network pods.
    fn kube_workloads(&self) -> HashMap<&str, KubeWorkload<'_>> {
        let mut workloads = HashMap::new();
        for kind in ResourceKind::ALL.into_iter().filter(|k| is_controller(*k)) {
            for (uid, object) in self.all(kind) {
                let namespace = &*object.namespace;
                match self.owners(object).last() {
                    Some(top) => {
                        KubeWorkload::entry(
                            &mut workloads,
                            &top.uid,
                            &top.kind,
                            &top.name,
                            namespace,
                        );
                    }
                    None => {
                        let own = KubeWorkload::entry(
                            &mut workloads,
                            uid,
                            kind.kube_kind(),
                            &object.name,
                            namespace,
                        );
                        own.object = Some(object);
                    }
                }
            }
        }
        for (uid, object) in self.all(ResourceKind::Pod) {
            let Some(pod) = object.pod().filter(|p| !p.host_network) else {
                continue;
            };
            let namespace = &*object.namespace;
            let workload = match self.owners(object).last() {
                Some(top) => {
                    KubeWorkload::entry(&mut workloads, &top.uid, &top.kind, &top.name, namespace)
                }
                None => {
                    let kind = ResourceKind::Pod.kube_kind();
                    let bare =
                        KubeWorkload::entry(&mut workloads, uid, kind, &object.name, namespace);
                    bare.object = Some(object);
                    bare
                }
            };
            workload.pods.push(pod);
        }
        workloads
    }
}

/// A kube workload being assembled.
struct KubeWorkload<'a> {
    kind: &'a str,
    name: &'a str,
    namespace: &'a str,
    /// The controller (or bare pod) itself, when observed.
    object: Option<&'a Object>,
    pods: Vec<&'a PodDetails>,
}

impl<'a> KubeWorkload<'a> {
    fn entry<'m>(
        workloads: &'m mut HashMap<&'a str, KubeWorkload<'a>>,
        uid: &'a str,
        kind: &'a str,
        name: &'a str,
        namespace: &'a str,
    ) -> &'m mut KubeWorkload<'a> {
        workloads.entry(uid).or_insert_with(|| KubeWorkload {
            kind,
            name,
            namespace,
            object: None,
            pods: Vec::new(),
        })
    }
}

fn workload_ref(owner: &Owner) -> WorkloadRef {
    WorkloadRef {
        kind: owner.kind.to_string(),
        name: owner.name.to_string(),
        uid: owner.uid.to_string(),
    }
}

fn pod_ref(uid: &str, pod: &Object) -> PodRef {
    PodRef {
        uid: uid.to_owned(),
        namespace: pod.namespace.to_string(),
        name: pod.name.to_string(),
    }
}

fn strings<S: AsRef<str>>(list: &[S]) -> Vec<String> {
    list.iter().map(|s| s.as_ref().to_owned()).collect()
}

impl Index {
    /// Answers a listing. `presence` tells what the shell knows of each cluster's clusterlink.
    pub fn query(
        &self,
        query: &InventoryQuery,
        presence: &dyn Fn(&str) -> Presence,
    ) -> Result<InventoryPage, Refusal> {
        if query.limit == 0 || query.limit > InventoryQuery::MAX_LIMIT {
            return Err(Refusal::invalid(format!(
                "limit must be between 1 and {}",
                InventoryQuery::MAX_LIMIT
            )));
        }
        let f = &query.filter;
        let (total, items) = match &query.what {
            InventoryQueryKind::Clusters => {
                let takes = Takes {
                    namespace: false,
                    node: false,
                    labels: false,
                };
                let (total, views) =
                    self.clusters_page(query, filter(f, "clusters", takes)?, presence)?;
                (total, InventoryItems::Clusters(views))
            }
            InventoryQueryKind::Cluster { cluster_id } => {
                if *f != InventoryFilter::default() {
                    return Err(Refusal::invalid("a single cluster takes no filters"));
                }
                let view = self
                    .cluster_view(cluster_id, presence(cluster_id))
                    .ok_or_else(|| Refusal::not_found(cluster_id))?;
                (1, InventoryItems::Clusters(vec![view]))
            }
            InventoryQueryKind::HostWorkloads => {
                let takes = Takes {
                    namespace: false,
                    node: true,
                    labels: true,
                };
                let (total, views) =
                    self.host_workloads(query, filter(f, "host workloads", takes)?)?;
                (total, InventoryItems::HostWorkloads(views))
            }
            InventoryQueryKind::PodWorkloads => {
                let takes = Takes {
                    namespace: true,
                    node: true,
                    labels: true,
                };
                let (total, views) =
                    self.pod_workloads(query, filter(f, "pod workloads", takes)?)?;
                (total, InventoryItems::PodWorkloads(views))
            }
            InventoryQueryKind::KubeWorkloads => {
                let takes = Takes {
                    namespace: true,
                    node: true,
                    labels: true,
                };
                let (total, views) =
                    self.kube_workloads(query, filter(f, "kube workloads", takes)?)?;
                (total, InventoryItems::KubeWorkloads(views))
            }
            InventoryQueryKind::VirtualServices => {
                let takes = Takes {
                    namespace: true,
                    node: false,
                    labels: true,
                };
                let (total, views) =
                    self.virtual_services(query, filter(f, "virtual services", takes)?)?;
                (total, InventoryItems::VirtualServices(views))
            }
            InventoryQueryKind::Namespaces => {
                if f.cluster_id.is_none() {
                    return Err(Refusal::invalid("namespaces are listed per cluster"));
                }
                let takes = Takes {
                    namespace: false,
                    node: false,
                    labels: false,
                };
                let (total, views) = self.namespaces(query, filter(f, "namespaces", takes)?)?;
                (total, InventoryItems::Namespaces(views))
            }
        };
        Ok(InventoryPage {
            total,
            offset: query.offset,
            items,
        })
    }

    pub fn cluster_view(&self, cluster_id: &str, presence: Presence) -> Option<ClusterView> {
        Some(self.cluster(cluster_id)?.view(cluster_id, presence))
    }

    /// The clusters a query covers: the one its filter names, or all.
    fn selected(&self, filter: &InventoryFilter) -> Result<Vec<(&str, &Cluster)>, Refusal> {
        match &filter.cluster_id {
            Some(id) => self
                .clusters
                .get_key_value(id)
                .map(|(id, c)| vec![(id.as_str(), c)])
                .ok_or_else(|| Refusal::not_found(id)),
            None => Ok(self
                .clusters
                .iter()
                .map(|(id, c)| (id.as_str(), c))
                .collect()),
        }
    }

    /// Candidates of one kind across the selected clusters, filtered by namespace, name and
    /// labels.
    fn candidates<'a>(
        &'a self,
        query: &InventoryQuery,
        filter: &Filter<'_>,
        kind: ResourceKind,
    ) -> Result<Vec<Candidate<'a, &'a Object>>, Refusal> {
        let mut candidates = Vec::new();
        for (cluster_id, cluster) in self.selected(&query.filter)? {
            for (uid, object) in cluster.all(kind) {
                if filter.namespace(&object.namespace)
                    && filter.name(&object.name)
                    && filter.labels(object.labeling.as_deref())
                {
                    candidates.push(Candidate {
                        cluster_id,
                        cluster,
                        namespace: &object.namespace,
                        name: &object.name,
                        uid,
                        item: object,
                    });
                }
            }
        }
        Ok(candidates)
    }

    fn clusters_page(
        &self,
        query: &InventoryQuery,
        filter: Filter<'_>,
        presence: &dyn Fn(&str) -> Presence,
    ) -> Result<(u64, Vec<ClusterView>), Refusal> {
        let candidates = self
            .selected(&query.filter)?
            .into_iter()
            .filter(|(_, c)| filter.name(&c.meta.name))
            .map(|(cluster_id, cluster)| Candidate {
                cluster_id,
                cluster,
                namespace: "",
                name: "",
                uid: cluster_id,
                item: (),
            })
            .collect();
        Ok(page(candidates, query, |c| {
            c.cluster.view(c.cluster_id, presence(c.cluster_id))
        }))
    }

    fn host_workloads(
        &self,
        query: &InventoryQuery,
        filter: Filter<'_>,
    ) -> Result<(u64, Vec<HostWorkloadView>), Refusal> {
        let mut candidates = self.candidates(query, &filter, ResourceKind::Node)?;
        candidates.retain(|c| filter.node(c.name));
        // Per cluster, built when the page first needs it.
        let mut derived: HashMap<&str, (MachineIds<'_>, HostNetworkPods<'_>)> = HashMap::new();
        Ok(page(candidates, query, |c| {
            let (duplicates, host_pods) = derived.entry(c.cluster_id).or_insert_with(|| {
                (
                    c.cluster.duplicate_machine_ids(),
                    c.cluster.host_network_pods(),
                )
            });
            let Details::Node(node) = &c.item.details else {
                unreachable!("the node map holds nodes only (Object::from_observed)")
            };
            HostWorkloadView {
                cluster: c.cluster_ref(),
                uid: c.uid.to_owned(),
                name: c.name.to_owned(),
                machine_id: node.machine_id.clone(),
                duplicate_machine_id: duplicates.contains_key(node.machine_id.as_str()),
                addresses: node.addresses.clone(),
                pod_cidrs: node.pod_cidrs.clone(),
                roles: node.roles.clone(),
                kubelet_version: node.kubelet_version.clone(),
                labels: to_map(&c.item.labels),
                host_network_pods: host_pods.remove(c.name).unwrap_or_default(),
                labeling: labeling_view(c.item),
            }
        }))
    }

    fn pod_workloads(
        &self,
        query: &InventoryQuery,
        filter: Filter<'_>,
    ) -> Result<(u64, Vec<PodWorkloadView>), Refusal> {
        let mut candidates = self.candidates(query, &filter, ResourceKind::Pod)?;
        candidates.retain(|c| {
            c.item
                .pod()
                .is_some_and(|p| !p.host_network && filter.node(&p.node_name))
        });
        Ok(page(candidates, query, |c| {
            let pod = c.item.pod().expect("filtered to pods");
            PodWorkloadView {
                cluster: c.cluster_ref(),
                uid: c.uid.to_owned(),
                namespace: c.namespace.to_owned(),
                name: c.name.to_owned(),
                node_name: pod.node_name.to_string(),
                ips: strings(&pod.ips),
                phase: pod.phase.to_string(),
                containers: strings(&pod.containers),
                labels: to_map(&c.item.labels),
                annotations: to_map(&c.item.annotations),
                owners: c.cluster.owners(c.item).map(workload_ref).collect(),
                labeling: labeling_view(c.item),
            }
        }))
    }

    fn kube_workloads(
        &self,
        query: &InventoryQuery,
        filter: Filter<'_>,
    ) -> Result<(u64, Vec<KubeWorkloadView>), Refusal> {
        let mut candidates = Vec::new();
        for (cluster_id, cluster) in self.selected(&query.filter)? {
            for (uid, workload) in cluster.kube_workloads() {
                if filter.namespace(workload.namespace)
                    && filter.name(workload.name)
                    && (filter.node.is_none()
                        || workload.pods.iter().any(|p| filter.node(&p.node_name)))
                    && filter.labels(workload.object.and_then(|o| o.labeling.as_deref()))
                {
                    candidates.push(Candidate {
                        cluster_id,
                        cluster,
                        namespace: workload.namespace,
                        name: workload.name,
                        uid,
                        item: workload,
                    });
                }
            }
        }
        Ok(page(candidates, query, |c| {
            let workload = &c.item;
            let replicas = workload.object.and_then(|o| match o.details {
                Details::Workload { replicas } => replicas,
                _ => None,
            });
            let nodes: BTreeSet<&str> = workload.pods.iter().map(|p| &*p.node_name).collect();
            KubeWorkloadView {
                cluster: c.cluster_ref(),
                namespace: c.namespace.to_owned(),
                workload: WorkloadRef {
                    kind: workload.kind.to_owned(),
                    name: c.name.to_owned(),
                    uid: c.uid.to_owned(),
                },
                labels: workload
                    .object
                    .map(|o| to_map(&o.labels))
                    .unwrap_or_default(),
                annotations: workload
                    .object
                    .map(|o| to_map(&o.annotations))
                    .unwrap_or_default(),
                replicas,
                pods: workload.pods.len() as u32,
                ips: workload.pods.iter().flat_map(|p| strings(&p.ips)).collect(),
                nodes: nodes
                    .into_iter()
                    .filter(|n| !n.is_empty())
                    .map(str::to_owned)
                    .collect(),
                labeling: workload.object.and_then(labeling_view),
            }
        }))
    }

    fn virtual_services(
        &self,
        query: &InventoryQuery,
        filter: Filter<'_>,
    ) -> Result<(u64, Vec<VirtualServiceView>), Refusal> {
        let candidates = self.candidates(query, &filter, ResourceKind::Service)?;
        let mut slices: HashMap<&str, HashMap<(&str, &str), Vec<&SliceDetails>>> = HashMap::new();
        Ok(page(candidates, query, |c| {
            let Details::Service(service) = &c.item.details else {
                unreachable!("the service map holds services only (Object::from_observed)")
            };
            let by_service = slices
                .entry(c.cluster_id)
                .or_insert_with(|| c.cluster.slices_by_service());
            let mut backends = Vec::new();
            let mut backend_ports: Vec<SlicePort> = Vec::new();
            let mut workloads = BTreeSet::new();
            for slice in by_service.get(&(c.namespace, c.name)).into_iter().flatten() {
                for port in &slice.ports {
                    if !backend_ports.contains(port) {
                        backend_ports.push(port.clone());
                    }
                }
                for endpoint in &slice.endpoints {
                    let pod = endpoint.pod_uid.as_deref().and_then(|uid| {
                        c.cluster
                            .object(ResourceKind::Pod, uid)
                            .map(|pod| (pod_ref(uid, pod), c.cluster.workload_of(uid, pod)))
                    });
                    if let Some((_, workload)) = &pod {
                        workloads.insert(workload.clone());
                    }
                    let (pod, workload) = pod.unzip();
                    backends.push(BackendView {
                        addresses: strings(&endpoint.addresses),
                        ready: endpoint.ready,
                        node_name: endpoint.node_name.to_string(),
                        pod,
                        workload,
                    });
                }
            }
            VirtualServiceView {
                cluster: c.cluster_ref(),
                uid: c.uid.to_owned(),
                namespace: c.namespace.to_owned(),
                name: c.name.to_owned(),
                service_type: service.service_type.clone(),
                cluster_ips: service.cluster_ips.clone(),
                ports: service.ports.clone(),
                selector: service.selector.clone(),
                labels: to_map(&c.item.labels),
                annotations: to_map(&c.item.annotations),
                backends,
                backend_ports,
                workloads: workloads.into_iter().collect(),
                labeling: labeling_view(c.item),
            }
        }))
    }

    fn namespaces(
        &self,
        query: &InventoryQuery,
        filter: Filter<'_>,
    ) -> Result<(u64, Vec<NamespaceView>), Refusal> {
        let candidates = self.candidates(query, &filter, ResourceKind::Namespace)?;
        Ok(page(candidates, query, |c| NamespaceView {
            cluster: c.cluster_ref(),
            uid: c.uid.to_owned(),
            name: c.name.to_owned(),
            labels: to_map(&c.item.labels),
            annotations: to_map(&c.item.annotations),
        }))
    }
}
