//! The table of kinds the simulator serves. Everything generic (store, HTTP handlers, discovery,
//! garbage collection) is driven by one row of this table; only the controllers look at `role`.

use serde_json::{Value, json};

/// A kind the simulator serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Namespace,
    Node,
    Pod,
    Service,
    ReplicationController,
    Event,
    EndpointSlice,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    Job,
    CronJob,
    CustomResourceDefinition,
    /// Bulkhead's custom resource: served while its CRD is installed.
    LabelMap,
}

/// What the simulator does when an object of a kind changes, in place of the real controllers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    /// Stored and served, nothing more.
    Plain,
    /// Rolls a ReplicaSet per pod template.
    Deployment,
    /// Creates pods from `spec.template`, placed as said.
    Pods(Placement),
    /// Keeps the service's EndpointSlices current.
    Service,
}

/// How a pod-owning controller names and places its pods.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Placement {
    /// `spec.replicas` pods named `<owner>-<random>` (ReplicaSet, ReplicationController).
    Replicas,
    /// `spec.replicas` pods named `<owner>-<ordinal>` (StatefulSet).
    Ordinal,
    /// One pod on every node (DaemonSet).
    PerNode,
    /// `spec.parallelism` pods named `<owner>-<random>` (Job).
    Parallel,
}

/// One row of the table.
#[derive(Debug)]
pub(crate) struct Desc {
    pub kind: Kind,
    pub name: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub short_names: &'static [&'static str],
    pub namespaced: bool,
    pub role: Role,
    /// Serves the `scale` subresource on `spec.replicas`.
    pub scalable: bool,
    /// Has a status that the main resource's writers cannot change (the status subresource rule).
    pub has_status: bool,
    /// Member of the `all` category, so `kubectl get all` lists it.
    pub in_all: bool,
    /// A custom resource: served only while the CustomResourceDefinition named after it
    /// ([`Desc::resource`]) exists.
    pub custom: bool,
}

use Kind as K;

static DESCS: [Desc; 15] = [
    row(
        K::Namespace,
        "Namespace",
        "",
        "namespaces",
        &["ns"],
        false,
        Role::Plain,
    ),
    row(K::Node, "Node", "", "nodes", &["no"], false, Role::Plain),
    row(K::Pod, "Pod", "", "pods", &["po"], true, Role::Plain).all(),
    row(
        K::Service,
        "Service",
        "",
        "services",
        &["svc"],
        true,
        Role::Service,
    )
    .all(),
    row(
        K::ReplicationController,
        "ReplicationController",
        "",
        "replicationcontrollers",
        &["rc"],
        true,
        Role::Pods(Placement::Replicas),
    )
    .all()
    .scalable(),
    row(K::Event, "Event", "", "events", &["ev"], true, Role::Plain).statusless(),
    row(
        K::EndpointSlice,
        "EndpointSlice",
        "discovery.k8s.io",
        "endpointslices",
        &[],
        true,
        Role::Plain,
    )
    .statusless(),
    row(
        K::Deployment,
        "Deployment",
        "apps",
        "deployments",
        &["deploy"],
        true,
        Role::Deployment,
    )
    .all()
    .scalable(),
    row(
        K::ReplicaSet,
        "ReplicaSet",
        "apps",
        "replicasets",
        &["rs"],
        true,
        Role::Pods(Placement::Replicas),
    )
    .all()
    .scalable(),
    row(
        K::StatefulSet,
        "StatefulSet",
        "apps",
        "statefulsets",
        &["sts"],
        true,
        Role::Pods(Placement::Ordinal),
    )
    .all()
    .scalable(),
    row(
        K::DaemonSet,
        "DaemonSet",
        "apps",
        "daemonsets",
        &["ds"],
        true,
        Role::Pods(Placement::PerNode),
    )
    .all(),
    row(
        K::Job,
        "Job",
        "batch",
        "jobs",
        &[],
        true,
        Role::Pods(Placement::Parallel),
    )
    .all(),
    row(
        K::CronJob,
        "CronJob",
        "batch",
        "cronjobs",
        &["cj"],
        true,
        Role::Plain,
    )
    .all(),
    row(
        K::CustomResourceDefinition,
        "CustomResourceDefinition",
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["crd", "crds"],
        false,
        Role::Plain,
    ),
    // no status subresource: what the main resource's writers send is kept whole
    row(
        K::LabelMap,
        "LabelMap",
        "bulkhead.io",
        "labelmaps",
        &[],
        false,
        Role::Plain,
    )
    .statusless()
    .custom(),
];

const fn row(
    kind: Kind,
    name: &'static str,
    group: &'static str,
    plural: &'static str,
    short_names: &'static [&'static str],
    namespaced: bool,
    role: Role,
) -> Desc {
    Desc {
        kind,
        name,
        group,
        version: "v1",
        plural,
        short_names,
        namespaced,
        role,
        scalable: false,
        has_status: true,
        in_all: false,
        custom: false,
    }
}

impl Desc {
    const fn all(mut self) -> Self {
        self.in_all = true;
        self
    }
    const fn scalable(mut self) -> Self {
        self.scalable = true;
        self
    }
    const fn statusless(mut self) -> Self {
        self.has_status = false;
        self
    }
    const fn custom(mut self) -> Self {
        self.custom = true;
        self
    }

    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `deployments.apps`, as the API server names a resource in its messages.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `deployment`: every kind's singular is its lower-cased name.
    pub fn singular(&self) -> String {
        self.name.to_ascii_lowercase()
    }

    /// The APIResource entries of this kind (and its subresources) in a discovery document.
    pub fn api_resources(&self) -> Vec<Value> {
        let verbs = [
            "create", "delete", "get", "list", "patch", "update", "watch",
        ];
        let mut main = json!({
            "name": self.plural,
            "singularName": self.singular(),
            "namespaced": self.namespaced,
            "kind": self.name,
            "verbs": verbs,
        });
        if !self.short_names.is_empty() {
            main["shortNames"] = json!(self.short_names);
        }
        if self.in_all {
            main["categories"] = json!(["all"]);
        }
        let mut out = vec![main];
        if self.scalable {
            out.push(json!({
                "name": format!("{}/scale", self.plural),
                "singularName": "",
                "namespaced": self.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }));
        }
        out
    }
}

impl Kind {
    pub const ALL: [Kind; 15] = [
        K::Namespace,
        K::Node,
        K::Pod,
        K::Service,
        K::ReplicationController,
        K::Event,
        K::EndpointSlice,
        K::Deployment,
        K::ReplicaSet,
        K::StatefulSet,
        K::DaemonSet,
        K::Job,
        K::CronJob,
        K::CustomResourceDefinition,
        K::LabelMap,
    ];

    pub(crate) fn desc(self) -> &'static Desc {
        &DESCS[self as usize]
    }

    /// The kind's name as in `kind:` (`Deployment`).
    pub fn name(self) -> &'static str {
        self.desc().name
    }

    /// `v1`, `apps/v1`, ...
    pub fn api_version(self) -> String {
        self.desc().api_version()
    }

    pub fn namespaced(self) -> bool {
        self.desc().namespaced
    }

    /// The kind named by an object's `apiVersion` and `kind`, or an owner reference's.
    pub fn from_type(api_version: &str, kind: &str) -> Option<Kind> {
        DESCS
            .iter()
            .find(|d| d.name == kind && d.api_version() == api_version)
            .map(|d| d.kind)
    }

    /// The kind an object declares.
    pub fn of(obj: &Value) -> Option<Kind> {
        Kind::from_type(obj["apiVersion"].as_str()?, obj["kind"].as_str()?)
    }

    /// The kind served at `/<group>/<version>/<plural>`.
    pub(crate) fn from_plural(group: &str, version: &str, plural: &str) -> Option<Kind> {
        DESCS
            .iter()
            .find(|d| d.group == group && d.version == version && d.plural == plural)
            .map(|d| d.kind)
    }

    /// The kinds of a group/version that `served` says are served.
    pub(crate) fn in_group_version(
        group: &str,
        version: &str,
        served: impl Fn(Kind) -> bool,
    ) -> impl Iterator<Item = &'static Desc> {
        DESCS
            .iter()
            .filter(move |d| d.group == group && d.version == version && served(d.kind))
    }

    /// The API groups other than core with a kind that `served` says is served, in discovery
    /// order.
    pub(crate) fn groups(served: impl Fn(Kind) -> bool) -> Vec<&'static str> {
        let mut groups: Vec<&str> = Vec::new();
        for d in DESCS.iter().filter(|d| served(d.kind)) {
            if !d.group.is_empty() && !groups.contains(&d.group) {
                groups.push(d.group);
            }
        }
        groups
    }

    /// The custom kind a CustomResourceDefinition of this name (`<plural>.<group>`) defines.
    pub(crate) fn defined_by(crd_name: &str) -> Option<Kind> {
        DESCS
            .iter()
            .find(|d| d.custom && d.resource() == crd_name)
            .map(|d| d.kind)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_indexed_by_kind() {
        for kind in Kind::ALL {
            assert_eq!(kind.desc().kind, kind);
        }
    }

    #[test]
    fn lookups() {
        assert_eq!(
            Kind::from_type("apps/v1", "Deployment"),
            Some(Kind::Deployment)
        );
        assert_eq!(Kind::from_type("v1", "Deployment"), None);
        assert_eq!(Kind::from_plural("", "v1", "pods"), Some(Kind::Pod));
        assert_eq!(Kind::Deployment.desc().resource(), "deployments.apps");
        assert_eq!(
            Kind::groups(|_| true),
            [
                "discovery.k8s.io",
                "apps",
                "batch",
                "apiextensions.k8s.io",
                "bulkhead.io"
            ]
        );
        let built_in = |kind: Kind| !kind.desc().custom;
        assert_eq!(Kind::groups(built_in).last(), Some(&"apiextensions.k8s.io"));
        assert_eq!(
            Kind::defined_by("labelmaps.bulkhead.io"),
            Some(Kind::LabelMap)
        );
        assert_eq!(Kind::defined_by("deployments.apps"), None);
    }
}
