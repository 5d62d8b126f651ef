//! The cluster state machine: the API server's write paths (validation, defaulting, admission,
//! optimistic concurrency, cascading deletion) over the store, with the simulated controllers
//! (`controllers.rs`) run to a fixed point after every write, inside the same transaction.
//!
//! Running the controllers synchronously trades the real cluster's eventual consistency for
//! determinism: when a create of a Deployment returns, its ReplicaSet, pods and EndpointSlices
//! exist, and a watcher sees them in causal order.

use std::{
    collections::{HashSet, VecDeque},
    net::Ipv4Addr,
    sync::Arc,
};

use serde_json::{Value, json};

use crate::{
    crd,
    error::Error,
    kinds::{Kind, Role},
    meta::{self, default_at},
    network::{DEFAULT_MAX_PODS, Network},
    patch::PatchType,
    selector,
    store::{Key, Obj, Store, key_of},
};

/// Where an update takes the status from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusFrom {
    /// The stored object: writes to the main resource cannot change status (the API's rule).
    Stored,
    /// The caller's object when it has one: the library's `apply`, which tests use to mark a
    /// pod unready, for instance.
    Caller,
}

pub(crate) struct Cluster {
    pub store: Store,
    pub net: Network,
    /// Controller work by level: deployments, then pod owners, then services. Draining upper
    /// levels first lets a service see all the pods a transaction creates in one reconcile.
    queue: [VecDeque<(Kind, Key)>; 3],
    queued: HashSet<(Kind, Key)>,
    /// The object being reconciled: its own writes do not queue it again.
    reconciling: Option<(Kind, Key)>,
}

fn level(kind: Kind) -> usize {
    match kind.desc().role {
        Role::Deployment | Role::Plain => 0,
        Role::Pods(_) => 1,
        Role::Service => 2,
    }
}

impl Cluster {
    pub fn new(history: usize) -> Self {
        Cluster {
            store: Store::new(history),
            net: Network::default(),
            queue: Default::default(),
            queued: HashSet::new(),
            reconciling: None,
        }
    }

    /// Whether the API serves `kind`: a built-in kind always, a custom one while its
    /// CustomResourceDefinition exists.
    pub fn serves(&self, kind: Kind) -> bool {
        !kind.desc().custom || self.definition(kind).is_some()
    }

    fn definition(&self, kind: Kind) -> Option<&Arc<Obj>> {
        let name = kind.desc().resource();
        self.store
            .get(Kind::CustomResourceDefinition, &(String::new(), name))
    }

    pub fn get(&self, kind: Kind, key: &Key) -> Result<Arc<Obj>, Error> {
        self.store
            .get(kind, key)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                kind,
                name: key.1.clone(),
            })
    }

    /// Ends a transaction: runs the controllers until nothing is left to do, then wakes watchers.
    pub fn settle(&mut self) {
        while let Some(item) = self.queue.iter_mut().find_map(VecDeque::pop_front) {
            self.queued.remove(&item);
            self.reconciling = Some(item.clone());
            self.reconcile(item.0, &item.1);
            self.reconciling = None;
        }
        self.store.commit();
    }

    fn enqueue(&mut self, kind: Kind, key: Key) {
        let item = (kind, key);
        if self.reconciling.as_ref() != Some(&item) && self.queued.insert(item.clone()) {
            self.queue[level(kind)].push_back(item);
        }
    }

    /// POST: a new object, named or `generateName`d, in an existing namespace.
    pub fn create(&mut self, kind: Kind, mut obj: Value) -> Result<Arc<Obj>, Error> {
        check_shape(kind, &mut obj)?;
        let meta = &mut obj["metadata"];
        if meta["name"].as_str().is_none_or(str::is_empty) {
            let prefix = meta["generateName"].as_str().ok_or_else(|| {
                Error::Invalid(format!("{} is invalid: metadata.name: Required value: name or generateName is required", kind.name()))
            })?;
            meta["name"] = json!(meta::generate_name(prefix));
        }
        let key = key_of(&obj);
        if !meta::valid_name(&key.1) {
            return Err(Error::Invalid(format!(
                "{} \"{}\" is invalid: metadata.name: Invalid value: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.'",
                kind.name(),
                key.1
            )));
        }
        if kind.namespaced()
            && self
                .store
                .get(Kind::Namespace, &(String::new(), key.0.clone()))
                .is_none()
        {
            return Err(Error::NotFound {
                kind: Kind::Namespace,
                name: key.0,
            });
        }
        if self.store.get(kind, &key).is_some() {
            return Err(Error::AlreadyExists { kind, name: key.1 });
        }
        let meta = obj["metadata"].as_object_mut().expect("checked shape");
        meta.remove("resourceVersion");
        meta.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        meta.insert("creationTimestamp".into(), json!(meta::now()));
        if kind.desc().has_status {
            meta.insert("generation".into(), json!(1));
        }
        self.admit(kind, &key, &mut obj, None)?;
        let new = self.store.put(kind, obj);
        self.changed(kind, None, Some(&new));
        Ok(new)
    }

    /// PUT: a new version of an existing object, refused if it was changed since the version the
    /// caller read (when the caller says which).
    pub fn update(
        &mut self,
        kind: Kind,
        mut obj: Value,
        status: StatusFrom,
    ) -> Result<Arc<Obj>, Error> {
        check_shape(kind, &mut obj)?;
        let key = key_of(&obj);
        let old = self.get(kind, &key)?;
        let sent_rv = obj["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default();
        if !sent_rv.is_empty() && sent_rv != old.rv.to_string() {
            return Err(Error::Conflict { kind, name: key.1 });
        }
        for field in ["uid", "creationTimestamp", "generation"] {
            carry_over(&mut obj["metadata"], &old.value["metadata"], field);
        }
        if kind.desc().has_status && (status == StatusFrom::Stored || obj.get("status").is_none()) {
            carry_over(&mut obj, &old.value, "status");
        }
        self.admit(kind, &key, &mut obj, Some(&old))?;
        if obj.get("spec") != old.value.get("spec")
            && let Some(generation) = obj["metadata"]["generation"].as_i64()
        {
            obj["metadata"]["generation"] = json!(generation + 1);
        }
        obj["metadata"]["resourceVersion"] = old.value["metadata"]["resourceVersion"].clone();
        if obj == old.value {
            // a no-op write keeps its version and wakes no one, as on the API server
            return Ok(old);
        }
        let new = self.store.put(kind, obj);
        self.changed(kind, Some(&old), Some(&new));
        Ok(new)
    }

    /// PATCH of the main resource.
    pub fn patch(
        &mut self,
        kind: Kind,
        key: &Key,
        patch_type: PatchType,
        patch: &Value,
    ) -> Result<Arc<Obj>, Error> {
        let mut value = self.get(kind, key)?.value.clone();
        patch_type.apply(&mut value, patch)?;
        check_shape(kind, &mut value)?;
        // a patch cannot move or rename what it patches
        value["metadata"]["name"] = json!(key.1);
        if kind.namespaced() {
            value["metadata"]["namespace"] = json!(key.0);
        }
        self.update(kind, value, StatusFrom::Stored)
    }

    /// The library's create-or-update.
    pub fn apply(&mut self, mut obj: Value) -> Result<Arc<Obj>, Error> {
        let kind = Kind::of(&obj).ok_or_else(|| {
            Error::BadRequest(format!(
                "unknown apiVersion/kind {} {}",
                obj["apiVersion"], obj["kind"]
            ))
        })?;
        check_shape(kind, &mut obj)?;
        if self.store.get(kind, &key_of(&obj)).is_some() {
            self.update(kind, obj, StatusFrom::Caller)
        } else {
            self.create(kind, obj)
        }
    }

    /// Sets `spec.replicas` of a scalable kind (the scale subresource).
    pub fn scale(&mut self, kind: Kind, key: &Key, replicas: i64) -> Result<Arc<Obj>, Error> {
        if !kind.desc().scalable {
            return Err(Error::NoSuchPath);
        }
        if replicas < 0 {
            return Err(Error::Invalid(format!(
                "Scale.autoscaling \"{}\" is invalid: spec.replicas: must be non-negative",
                key.1
            )));
        }
        self.patch(
            kind,
            key,
            PatchType::Merge,
            &json!({ "spec": { "replicas": replicas } }),
        )
    }

    /// DELETE, with the garbage collector's cascade: dependents (by owner reference), a
    /// namespace's contents, a node's pods. Deletion is immediate (no finalizers, no grace).
    pub fn delete(&mut self, kind: Kind, key: &Key) -> Result<Arc<Obj>, Error> {
        let obj = self
            .store
            .remove(kind, key)
            .ok_or_else(|| Error::NotFound {
                kind,
                name: key.1.clone(),
            })?;
        let mut doomed = vec![(kind, obj.clone())];
        while let Some((kind, obj)) = doomed.pop() {
            self.changed(kind, Some(&obj), None);
            let mut dependents = self.store.dependents(obj.uid());
            let name = obj.key().1;
            match kind {
                Kind::Namespace => {
                    for inner in Kind::ALL.into_iter().filter(|k| k.namespaced()) {
                        dependents.extend(
                            self.store
                                .iter(inner, Some(&name), None)
                                .map(|o| (inner, o.key())),
                        );
                    }
                }
                Kind::Node => dependents.extend(
                    self.store
                        .iter(Kind::Pod, None, None)
                        .filter(|pod| pod.value["spec"]["nodeName"].as_str() == Some(&name))
                        .map(|pod| (Kind::Pod, pod.key())),
                ),
                // uninstalling a custom resource deletes every object of it
                Kind::CustomResourceDefinition => {
                    if let Some(defined) = Kind::defined_by(&name) {
                        dependents.extend(
                            self.store
                                .iter(defined, None, None)
                                .map(|o| (defined, o.key())),
                        );
                    }
                }
                _ => {}
            }
            for (kind, key) in dependents {
                if let Some(gone) = self.store.remove(kind, &key) {
                    doomed.push((kind, gone));
                }
            }
        }
        Ok(obj)
    }

    /// Bookkeeping after a write (`new` None for a deletion): frees a deleted pod's address and
    /// queues the controllers that care.
    pub(crate) fn changed(&mut self, kind: Kind, old: Option<&Arc<Obj>>, new: Option<&Arc<Obj>>) {
        let obj = new.or(old).expect("a change has a before or an after");
        let key = obj.key();
        if new.is_none() {
            match kind {
                Kind::Pod => self.net.release(&key),
                Kind::Node => self.net.remove_node(&key.1),
                _ => {}
            }
        }
        if new.is_some() && kind.desc().role != Role::Plain {
            self.enqueue(kind, key.clone());
        }
        // the controller that owns it counts it in its status, or replaces it
        for version in [old, new].into_iter().flatten() {
            if let Some((owner, name)) = meta::controller_of(&version.value)
                && owner.desc().role != Role::Plain
            {
                self.enqueue(owner, (key.0.clone(), name.to_string()));
            }
        }
        match kind {
            Kind::Pod => {
                let services: Vec<Key> = self
                    .store
                    .iter(Kind::Service, Some(&key.0), None)
                    .filter(|svc| {
                        svc.value["spec"]["selector"]
                            .as_object()
                            .is_some_and(|sel| {
                                [old, new]
                                    .into_iter()
                                    .flatten()
                                    .any(|pod| selector::map_selects(sel, &pod.value))
                            })
                    })
                    .map(|svc| svc.key())
                    .collect();
                for svc in services {
                    self.enqueue(Kind::Service, svc);
                }
            }
            Kind::Node => {
                let daemonsets: Vec<Key> = self
                    .store
                    .iter(Kind::DaemonSet, None, None)
                    .map(|ds| ds.key())
                    .collect();
                for ds in daemonsets {
                    self.enqueue(Kind::DaemonSet, ds);
                }
            }
            _ => {}
        }
    }

    /// Defaulting and admission: what the API server and the node-side components fill in.
    fn admit(
        &mut self,
        kind: Kind,
        key: &Key,
        obj: &mut Value,
        old: Option<&Arc<Obj>>,
    ) -> Result<(), Error> {
        if kind.desc().scalable {
            default_at(obj, &["spec", "replicas"], || json!(1));
        }
        if matches!(kind.desc().role, Role::Deployment | Role::Pods(_)) {
            check_template(kind, key, obj)?;
        }
        match kind {
            Kind::Namespace => {
                obj["metadata"]["labels"] = meta::with_entries(
                    &obj["metadata"]["labels"],
                    &[("kubernetes.io/metadata.name", &key.1)],
                );
                default_at(obj, &["spec", "finalizers"], || json!(["kubernetes"]));
                default_at(obj, &["status", "phase"], || json!("Active"));
            }
            Kind::Node if old.is_none() => self.admit_node(key, obj),
            Kind::Pod => match old {
                None => self.admit_pod(key, obj)?,
                // the API server allows next to no change to a pod's spec, and the simulator's
                // placement hangs on it: updates keep the stored one
                Some(old) => obj["spec"] = old.value["spec"].clone(),
            },
            Kind::Service => self.admit_service(obj, old),
            Kind::Job => default_at(obj, &["spec", "parallelism"], || json!(1)),
            Kind::CustomResourceDefinition => crd::admit_definition(obj)?,
            _ if kind.desc().custom => {
                let definition = self.definition(kind).ok_or(Error::NoSuchPath)?;
                let schema = crd::schema_of(&definition.value, kind).ok_or(Error::NoSuchPath)?;
                crd::conform(schema, kind, obj)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn admit_node(&mut self, key: &Key, obj: &mut Value) {
        let internal_ip = obj["status"]["addresses"].as_array().and_then(|addresses| {
            addresses
                .iter()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str()?.parse::<Ipv4Addr>().ok())
        });
        let max_pods = obj["status"]["allocatable"]["pods"]
            .as_str()
            .and_then(|p| p.parse().ok())
            .unwrap_or(DEFAULT_MAX_PODS);
        let net = self.net.add_node(
            &key.1,
            internal_ip,
            obj["spec"]["podCIDR"].as_str(),
            max_pods,
        );
        let name = key.1.as_str();
        let now = meta::now();
        obj["metadata"]["labels"] = meta::with_entries(
            &obj["metadata"]["labels"],
            &[
                ("kubernetes.io/hostname", name),
                ("kubernetes.io/os", "linux"),
                ("kubernetes.io/arch", "amd64"),
            ],
        );
        default_at(obj, &["spec", "podCIDR"], || json!(net.pod_cidr));
        default_at(obj, &["spec", "podCIDRs"], || json!([net.pod_cidr]));
        default_at(
            obj,
            &["status", "addresses"],
            || json!([{ "type": "InternalIP", "address": net.ip.to_string() }, { "type": "Hostname", "address": name }]),
        );
        let resources = json!({ "cpu": "8", "memory": "32Gi", "pods": max_pods.to_string() });
        default_at(obj, &["status", "capacity"], || resources.clone());
        default_at(obj, &["status", "allocatable"], || resources);
        default_at(obj, &["status", "conditions"], || {
            json!([{ "type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                     "lastHeartbeatTime": now, "lastTransitionTime": now }])
        });
        let machine = || json!(uuid::Uuid::new_v4().simple().to_string());
        for (field, value) in [
            ("machineID", machine()),
            ("systemUUID", json!(uuid::Uuid::new_v4().to_string())),
            ("bootID", json!(uuid::Uuid::new_v4().to_string())),
            ("kernelVersion", json!("6.1.0-31-amd64")),
            ("osImage", json!("Debian GNU/Linux 12 (bookworm)")),
            ("containerRuntimeVersion", json!("containerd://1.7.24")),
            ("kubeletVersion", json!(crate::api::GIT_VERSION)),
            ("kubeProxyVersion", json!(crate::api::GIT_VERSION)),
            ("operatingSystem", json!("linux")),
            ("architecture", json!("amd64")),
        ] {
            default_at(obj, &["status", "nodeInfo", field], || value);
        }
        default_at(
            obj,
            &["status", "daemonEndpoints"],
            || json!({ "kubeletEndpoint": { "Port": 10250 } }),
        );
    }

    /// Schedules a new pod, gives it an address from its node's CIDR (or the node's own on the
    /// host network) and starts it: the scheduler's, the CNI's and the kubelet's part.
    fn admit_pod(&mut self, key: &Key, obj: &mut Value) -> Result<(), Error> {
        let containers = obj["spec"]["containers"]
            .as_array()
            .filter(|c| !c.is_empty())
            .cloned()
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "Pod \"{}\" is invalid: spec.containers: Required value",
                    key.1
                ))
            })?;
        for (field, value) in [
            ("restartPolicy", "Always"),
            ("dnsPolicy", "ClusterFirst"),
            ("schedulerName", "default-scheduler"),
            ("serviceAccountName", "default"),
        ] {
            default_at(obj, &["spec", field], || json!(value));
        }
        let host_network = obj["spec"]["hostNetwork"].as_bool() == Some(true);
        let node = match obj["spec"]["nodeName"].as_str() {
            Some(node) => Some(node.to_string()),
            None => self.net.schedule(),
        };
        let placed = node
            .as_deref()
            .and_then(|node| self.net.place(key, node, host_network));
        let now = meta::now();
        let (Some(node), Some((pod_ip, host_ip))) = (node, placed) else {
            obj["status"] = json!({
                "phase": "Pending",
                "conditions": [{ "type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/0 nodes are available: no node with room", "lastTransitionTime": now }],
                "qosClass": "BestEffort",
            });
            return Ok(());
        };
        obj["spec"]["nodeName"] = json!(node);
        let condition =
            |kind: &str| json!({ "type": kind, "status": "True", "lastTransitionTime": now });
        let statuses: Vec<Value> = containers
            .iter()
            .map(|c| {
                json!({
                    "name": c["name"], "image": c["image"], "imageID": "",
                    "containerID": format!("containerd://{}", uuid::Uuid::new_v4().simple()),
                    "ready": true, "started": true, "restartCount": 0,
                    "state": { "running": { "startedAt": now } },
                })
            })
            .collect();
        let conditions = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ]
        .map(condition);
        obj["status"] = json!({
            "phase": "Running",
            "conditions": conditions,
            "hostIP": host_ip.to_string(),
            "hostIPs": [{ "ip": host_ip.to_string() }],
            "podIP": pod_ip.to_string(),
            "podIPs": [{ "ip": pod_ip.to_string() }],
            "startTime": now,
            "containerStatuses": statuses,
            "qosClass": "BestEffort",
        });
        Ok(())
    }

    /// Cluster IP (kept across updates), ports' protocols, target ports and node ports.
    fn admit_service(&mut self, obj: &mut Value, old: Option<&Arc<Obj>>) {
        for field in ["clusterIP", "clusterIPs"] {
            if let Some(old) = old
                .map(|o| &o.value["spec"][field])
                .filter(|v| !v.is_null())
            {
                default_at(obj, &["spec", field], || old.clone());
            }
        }
        default_at(obj, &["spec", "type"], || json!("ClusterIP"));
        if obj["spec"]["type"] != "ExternalName" {
            let ip = match obj["spec"]["clusterIP"].as_str() {
                Some(ip) if !ip.is_empty() => ip.to_string(),
                _ => self.net.service_ip().to_string(),
            };
            obj["spec"]["clusterIP"] = json!(ip);
            default_at(obj, &["spec", "clusterIPs"], || json!([ip]));
        }
        for (field, value) in [
            ("sessionAffinity", json!("None")),
            ("ipFamilies", json!(["IPv4"])),
            ("ipFamilyPolicy", json!("SingleStack")),
            ("internalTrafficPolicy", json!("Cluster")),
        ] {
            default_at(obj, &["spec", field], || value);
        }
        let node_ports = matches!(
            obj["spec"]["type"].as_str(),
            Some("NodePort" | "LoadBalancer")
        );
        let old_ports = old
            .map(|o| o.value["spec"]["ports"].clone())
            .unwrap_or_default();
        if let Some(ports) = obj["spec"]["ports"].as_array_mut() {
            for (i, port) in ports.iter_mut().enumerate() {
                default_at(port, &["protocol"], || json!("TCP"));
                let number = port["port"].clone();
                default_at(port, &["targetPort"], || number);
                if node_ports {
                    let kept = old_ports[i]["nodePort"].clone();
                    let fresh = if kept.is_null() {
                        json!(self.net.node_port())
                    } else {
                        kept
                    };
                    default_at(port, &["nodePort"], || fresh);
                }
            }
        }
        default_at(obj, &["status", "loadBalancer"], || json!({}));
    }
}

/// Copies `field` of `from` into `to`, or removes it from `to` when `from` has none.
fn carry_over(to: &mut Value, from: &Value, field: &str) {
    if let Some(to) = to.as_object_mut() {
        match from.get(field) {
            Some(value) => to.insert(field.to_string(), value.clone()),
            None => to.remove(field),
        };
    }
}

/// A workload's pod template and selector must be objects: the controllers build on them.
fn check_template(kind: Kind, key: &Key, obj: &Value) -> Result<(), Error> {
    let spec = &obj["spec"];
    let template_ok = spec["template"].is_object()
        && spec["template"]["spec"].is_object()
        && matches!(spec["template"]["metadata"], Value::Null | Value::Object(_));
    if !template_ok || !matches!(spec["selector"], Value::Null | Value::Object(_)) {
        return Err(Error::Invalid(format!(
            "{} \"{}\" is invalid: spec.template and spec.selector must be objects, with spec.template.spec",
            kind.name(),
            key.1
        )));
    }
    Ok(())
}

/// Checks the envelope of a written object and completes it: `apiVersion` and `kind` (filled in
/// when absent), objects where objects belong, and a namespace only on namespaced kinds
/// (`default` when the caller gave none).
pub(crate) fn check_shape(kind: Kind, obj: &mut Value) -> Result<(), Error> {
    let Some(map) = obj.as_object_mut() else {
        return Err(Error::BadRequest("the body is not a JSON object".into()));
    };
    for (field, want) in [
        ("apiVersion", kind.api_version()),
        ("kind", kind.name().to_string()),
    ] {
        match map.get(field).and_then(Value::as_str) {
            None => {
                map.insert(field.into(), json!(want));
            }
            Some(have) if have == want => {}
            Some(have) => {
                return Err(Error::BadRequest(format!(
                    "{field} {have:?} does not match the resource ({want})"
                )));
            }
        }
    }
    for field in ["metadata", "spec", "status"] {
        match map.get(field) {
            None | Some(Value::Object(_)) => {}
            Some(Value::Null) if field != "metadata" => {}
            Some(_) => return Err(Error::BadRequest(format!("{field} must be an object"))),
        }
    }
    let meta = map.entry("metadata").or_insert_with(|| json!({}));
    for field in ["labels", "annotations"] {
        match &meta[field] {
            Value::Null => {}
            Value::Object(m) if m.values().all(Value::is_string) => {}
            _ => {
                return Err(Error::Invalid(format!(
                    "metadata.{field} must map strings to strings"
                )));
            }
        }
    }
    if meta["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| !r.is_object()))
    {
        return Err(Error::Invalid(
            "metadata.ownerReferences must be objects".into(),
        ));
    }
    let meta = meta.as_object_mut().expect("checked above");
    if kind.namespaced() {
        if meta
            .get("namespace")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            meta.insert("namespace".into(), json!("default"));
        }
    } else {
        meta.remove("namespace");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Cluster {
        let mut c = Cluster::new(100);
        c.create(
            Kind::Namespace,
            json!({ "metadata": { "name": "default" } }),
        )
        .unwrap();
        c.settle();
        c
    }

    fn key(name: &str) -> Key {
        ("default".into(), name.into())
    }

    #[test]
    fn malformed_objects_are_refused_not_panicked_on() {
        let mut c = cluster();
        let deployment = |template: Value| json!({ "metadata": { "name": "d" }, "spec": { "selector": {}, "template": template } });
        for template in [
            json!("x"),
            json!({ "spec": 1 }),
            json!({ "metadata": [], "spec": {} }),
        ] {
            assert!(matches!(
                c.create(Kind::Deployment, deployment(template)),
                Err(Error::Invalid(_))
            ));
        }
        assert!(matches!(
            c.create(Kind::Pod, json!({ "metadata": "x" })),
            Err(Error::BadRequest(_))
        ));
        assert!(matches!(
            c.create(Kind::Pod, json!({ "metadata": { "name": "p" } })),
            Err(Error::Invalid(_))
        ));
        c.create(
            Kind::Service,
            json!({ "metadata": { "name": "s" }, "spec": { "ports": ["odd"] } }),
        )
        .unwrap();
        let patch = json!({ "metadata": "x" });
        assert!(
            c.patch(Kind::Service, &key("s"), PatchType::Merge, &patch)
                .is_err()
        );
        let patch = json!([{ "op": "replace", "path": "", "value": 1 }]);
        assert!(
            c.patch(Kind::Service, &key("s"), PatchType::Json, &patch)
                .is_err()
        );
        let wrong = json!({ "apiVersion": "v1", "kind": "Pod", "metadata": { "name": "s" } });
        assert!(matches!(
            c.update(Kind::Service, wrong, StatusFrom::Stored),
            Err(Error::BadRequest(_))
        ));
    }

    #[test]
    fn updates_keep_what_the_server_owns_and_check_versions() {
        let mut c = cluster();
        let created = c
            .create(
                Kind::Event,
                json!({ "metadata": { "name": "e" }, "reason": "x" }),
            )
            .unwrap();
        let mut changed = created.value.clone();
        changed["reason"] = json!("y");
        changed["metadata"]["uid"] = json!("forged");
        let updated = c
            .update(Kind::Event, changed.clone(), StatusFrom::Stored)
            .unwrap();
        assert_eq!(
            updated.value["metadata"]["uid"],
            created.value["metadata"]["uid"]
        );
        assert!(
            updated.value.get("status").is_none()
                && updated.value["metadata"].get("generation").is_none()
        );
        assert!(matches!(
            c.update(Kind::Event, changed, StatusFrom::Stored),
            Err(Error::Conflict { .. })
        ));
        let same = c
            .update(Kind::Event, updated.value.clone(), StatusFrom::Stored)
            .unwrap();
        assert_eq!(same.rv, updated.rv, "a no-op update keeps the version");

        let svc = c
            .create(
                Kind::Service,
                json!({ "metadata": { "name": "s" }, "spec": { "ports": [{ "port": 80 }] } }),
            )
            .unwrap();
        assert_eq!(
            svc.value["spec"]["ports"][0],
            json!({ "port": 80, "protocol": "TCP", "targetPort": 80 })
        );
        let mut replaced = svc.value.clone();
        replaced["spec"]
            .as_object_mut()
            .unwrap()
            .remove("clusterIP");
        replaced["status"] = json!({ "forged": true });
        let replaced = c
            .update(Kind::Service, replaced, StatusFrom::Stored)
            .unwrap();
        assert_eq!(
            replaced.value["spec"]["clusterIP"], svc.value["spec"]["clusterIP"],
            "the cluster IP stays"
        );
        assert_eq!(
            replaced.value["status"], svc.value["status"],
            "status belongs to the server"
        );
    }
}
