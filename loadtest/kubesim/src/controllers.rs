//! The controllers the simulator stands in for: deployment (one ReplicaSet per pod template),
//! the pod owners (ReplicaSet, ReplicationController, StatefulSet, DaemonSet, Job), the
//! EndpointSlice controller, and the CronJob controller on demand.
//!
//! Each reconcile compares what exists with what should and writes only differences, so the
//! queue in `Cluster::settle` drains.

use std::{
    collections::{BTreeMap, HashSet},
    sync::Arc,
};

use serde_json::{Value, json};

use crate::{
    cluster::Cluster,
    error::Error,
    kinds::{Kind, Placement, Role},
    meta::{self, owner_ref, with_entries},
    selector,
    store::{Key, Obj},
};

/// The EndpointSlice controller's default `--max-endpoints-per-slice`.
const MAX_ENDPOINTS_PER_SLICE: usize = 100;

impl Cluster {
    pub(crate) fn reconcile(&mut self, kind: Kind, key: &Key) {
        let Some(obj) = self.store.get(kind, key).cloned() else {
            return;
        };
        let done = match kind.desc().role {
            Role::Plain => Ok(()),
            Role::Deployment => self.reconcile_deployment(&obj),
            Role::Pods(placement) => self.reconcile_pods(kind, placement, &obj),
            Role::Service => self.reconcile_endpoints(&obj),
        };
        if let Err(e) = done {
            // as a controller does: report, and leave the object as it is
            tracing::warn!(kind = kind.name(), namespace = %key.0, name = %key.1, "simulated controller: {e}");
        }
    }

    /// Objects of `kind` that `owner` owns.
    fn owned(&self, owner: &Obj, kind: Kind) -> Vec<Arc<Obj>> {
        self.store
            .dependents(owner.uid())
            .into_iter()
            .filter(|(k, _)| *k == kind)
            .filter_map(|(k, key)| self.store.get(k, &key).cloned())
            .collect()
    }

    /// An internal write (a controller's), skipping the API's checks.
    fn write(&mut self, kind: Kind, old: &Arc<Obj>, value: Value) {
        let new = self.store.put(kind, value);
        self.changed(kind, Some(old), Some(&new));
    }

    fn set_status(&mut self, kind: Kind, obj: &Arc<Obj>, status: Value) {
        let Some(current) = self.store.get(kind, &obj.key()).cloned() else {
            return;
        };
        if current.value["status"] != status {
            let mut value = current.value.clone();
            value["status"] = status;
            self.write(kind, &current, value);
        }
    }

    fn reconcile_deployment(&mut self, deploy: &Arc<Obj>) -> Result<(), Error> {
        let (ns, name) = deploy.key();
        let spec = &deploy.value["spec"];
        let replicas = spec["replicas"].as_i64().unwrap_or(1);
        let hash = meta::template_hash(&spec["template"]);
        let current = format!("{name}-{hash}");
        let owned = self.owned(deploy, Kind::ReplicaSet);
        // a new template replaces the old ReplicaSets at once: no rolling, no surge
        for rs in &owned {
            let want = if rs.key().1 == current { replicas } else { 0 };
            if rs.value["spec"]["replicas"].as_i64() != Some(want) {
                self.scale(Kind::ReplicaSet, &rs.key(), want)?;
            }
        }
        if !owned.iter().any(|rs| rs.key().1 == current) {
            let hash_label = [("pod-template-hash", hash.as_str())];
            let mut template = spec["template"].clone();
            template["metadata"]["labels"] =
                with_entries(&template["metadata"]["labels"], &hash_label);
            let mut selector = spec["selector"].clone();
            selector["matchLabels"] = with_entries(&selector["matchLabels"], &hash_label);
            self.create(
                Kind::ReplicaSet,
                json!({
                    "metadata": {
                        "name": current,
                        "namespace": ns,
                        "labels": template["metadata"]["labels"],
                        "annotations": {
                            "deployment.kubernetes.io/revision": (owned.len() + 1).to_string(),
                            "deployment.kubernetes.io/desired-replicas": replicas.to_string(),
                        },
                        "ownerReferences": [owner_ref(Kind::Deployment, deploy)],
                    },
                    "spec": { "replicas": replicas, "selector": selector, "template": template },
                }),
            )?;
        }

        let sets = self.owned(deploy, Kind::ReplicaSet);
        let sum = |field: &str| {
            sets.iter()
                .filter_map(|rs| rs.value["status"][field].as_i64())
                .sum::<i64>()
        };
        let (total, ready) = (sum("replicas"), sum("readyReplicas"));
        let updated = sets
            .iter()
            .find(|rs| rs.key().1 == current)
            .and_then(|rs| rs.value["status"]["replicas"].as_i64())
            .unwrap_or(0);
        let available = if ready >= replicas { "True" } else { "False" };
        let status = json!({
            "observedGeneration": deploy.value["metadata"]["generation"],
            "replicas": total,
            "updatedReplicas": updated,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": (total - ready).max(0),
            "conditions": [
                { "type": "Available", "status": available, "reason": "MinimumReplicasAvailable",
                  "message": "Deployment has minimum availability." },
                { "type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                  "message": format!("ReplicaSet \"{current}\" has successfully progressed.") },
            ],
        });
        self.set_status(Kind::Deployment, deploy, status);
        Ok(())
    }

    fn reconcile_pods(
        &mut self,
        kind: Kind,
        placement: Placement,
        owner: &Arc<Obj>,
    ) -> Result<(), Error> {
        let name = owner.key().1;
        let spec = &owner.value["spec"];
        let mut pods = self.owned(owner, Kind::Pod);
        pods.sort_by_key(|p| p.key());
        let desired = match placement {
            Placement::Replicas | Placement::Ordinal => spec["replicas"].as_i64().unwrap_or(1),
            Placement::Parallel => spec["parallelism"].as_i64().unwrap_or(1),
            Placement::PerNode => i64::try_from(self.net.node_names().count()).unwrap_or(i64::MAX),
        };
        let desired_count = usize::try_from(desired.max(0)).unwrap_or(usize::MAX);
        match placement {
            Placement::Replicas | Placement::Parallel => {
                for _ in pods.len()..desired_count {
                    self.create(Kind::Pod, pod_from_template(kind, owner, None, None))?;
                }
                for extra in pods.iter().skip(desired_count) {
                    self.delete(Kind::Pod, &extra.key())?;
                }
            }
            Placement::Ordinal => {
                let have: HashSet<String> = pods.iter().map(|p| p.key().1).collect();
                for ordinal in 0..desired_count {
                    let pod_name = format!("{name}-{ordinal}");
                    if !have.contains(&pod_name) {
                        self.create(
                            Kind::Pod,
                            pod_from_template(kind, owner, Some(ordinal), None),
                        )?;
                    }
                }
                for pod in &pods {
                    let ordinal = pod
                        .key()
                        .1
                        .rsplit('-')
                        .next()
                        .and_then(|o| o.parse::<usize>().ok());
                    if ordinal.is_none_or(|o| o >= desired_count) {
                        self.delete(Kind::Pod, &pod.key())?;
                    }
                }
            }
            Placement::PerNode => {
                let nodes: Vec<String> = self.net.node_names().map(str::to_string).collect();
                let node_of = |pod: &Arc<Obj>| {
                    pod.value["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string()
                };
                let covered: HashSet<String> = pods.iter().map(node_of).collect();
                for node in nodes.iter().filter(|n| !covered.contains(*n)) {
                    self.create(Kind::Pod, pod_from_template(kind, owner, None, Some(node)))?;
                }
                for pod in pods.iter().filter(|p| !nodes.contains(&node_of(p))) {
                    self.delete(Kind::Pod, &pod.key())?;
                }
            }
        }

        let pods = self.owned(owner, Kind::Pod);
        let current = i64::try_from(pods.len()).unwrap_or(i64::MAX);
        let ready =
            i64::try_from(pods.iter().filter(|p| pod_ready(&p.value)).count()).unwrap_or(i64::MAX);
        let generation = &owner.value["metadata"]["generation"];
        let status = match placement {
            Placement::Replicas => json!({
                "replicas": current, "fullyLabeledReplicas": current, "readyReplicas": ready,
                "availableReplicas": ready, "observedGeneration": generation,
            }),
            Placement::Ordinal => json!({
                "replicas": current, "currentReplicas": current, "updatedReplicas": current,
                "readyReplicas": ready, "availableReplicas": ready, "observedGeneration": generation,
            }),
            Placement::PerNode => json!({
                "desiredNumberScheduled": desired, "currentNumberScheduled": current, "updatedNumberScheduled": current,
                "numberReady": ready, "numberAvailable": ready, "numberMisscheduled": 0, "observedGeneration": generation,
            }),
            Placement::Parallel => json!({
                "active": current, "ready": ready,
                "startTime": owner.value["status"].get("startTime").cloned().unwrap_or_else(|| json!(meta::now())),
            }),
        };
        self.set_status(kind, owner, status);
        Ok(())
    }

    /// The EndpointSlice controller, for services with a selector: every selected pod with an
    /// address is an endpoint (ready as the pod is), at most 100 to a slice, with the ports it
    /// serves. Endpoints stay in their slice while unchanged, so a pod change rewrites one slice.
    fn reconcile_endpoints(&mut self, svc: &Arc<Obj>) -> Result<(), Error> {
        // without a selector the slices are someone else's
        let Some(selector) = svc.value["spec"]["selector"]
            .as_object()
            .filter(|s| !s.is_empty())
        else {
            return Ok(());
        };
        let ns = svc.key().0;
        let service_ports = svc.value["spec"]["ports"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        // pod name -> (the ports it serves, its endpoint)
        let mut desired: BTreeMap<String, (Value, Value)> = BTreeMap::new();
        for pod in self
            .store
            .iter(Kind::Pod, Some(&ns), None)
            .filter(|p| selector::map_selects(selector, &p.value))
        {
            let (Some(ip), phase) = (
                pod.value["status"]["podIP"].as_str(),
                &pod.value["status"]["phase"],
            ) else {
                continue;
            };
            if phase == "Succeeded" || phase == "Failed" {
                continue;
            }
            let ready = pod_ready(&pod.value);
            let pod_name = pod.key().1;
            let endpoint = json!({
                "addresses": [ip],
                "conditions": { "ready": ready, "serving": ready, "terminating": false },
                "nodeName": pod.value["spec"]["nodeName"],
                "targetRef": { "kind": "Pod", "namespace": ns, "name": pod_name, "uid": pod.uid() },
            });
            desired.insert(
                pod_name,
                (resolve_ports(&service_ports, &pod.value), endpoint),
            );
        }

        // (existing slice, ports, endpoints)
        let mut plan: Vec<(Option<Arc<Obj>>, Value, Vec<Value>)> = Vec::new();
        let mut placed = HashSet::new();
        let mut slices = self.owned(svc, Kind::EndpointSlice);
        slices.sort_by_key(|s| s.key());
        for slice in slices {
            let ports = slice.value["ports"].clone();
            let kept = slice.value["endpoints"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|ep| {
                    let pod = ep["targetRef"]["name"].as_str().unwrap_or_default();
                    desired
                        .get(pod)
                        .is_some_and(|(p, e)| *p == ports && e == *ep)
                        && placed.insert(pod.to_string())
                })
                .cloned()
                .collect();
            plan.push((Some(slice), ports, kept));
        }
        for (pod, (ports, endpoint)) in &desired {
            if placed.contains(pod) {
                continue;
            }
            // an emptied slice takes any ports: reused rather than deleted and created again
            let fits = |(_, p, eps): &&mut (Option<Arc<Obj>>, Value, Vec<Value>)| {
                (p == ports || eps.is_empty()) && eps.len() < MAX_ENDPOINTS_PER_SLICE
            };
            match plan.iter_mut().find(fits) {
                Some((_, slice_ports, endpoints)) => {
                    *slice_ports = ports.clone();
                    endpoints.push(endpoint.clone());
                }
                None => plan.push((None, ports.clone(), vec![endpoint.clone()])),
            }
        }
        if plan.is_empty() {
            // a service without endpoints still has one (empty) slice, as with the real controller
            plan.push((None, json!([]), Vec::new()));
        }

        for (i, (existing, ports, endpoints)) in plan.into_iter().enumerate() {
            let keep = !endpoints.is_empty() || (desired.is_empty() && i == 0);
            match existing {
                Some(slice) if !keep => {
                    self.delete(Kind::EndpointSlice, &slice.key())?;
                }
                Some(slice) => {
                    let endpoints = Value::Array(endpoints);
                    if slice.value["endpoints"] != endpoints || slice.value["ports"] != ports {
                        let mut value = slice.value.clone();
                        value["endpoints"] = endpoints;
                        value["ports"] = ports;
                        self.write(Kind::EndpointSlice, &slice, value);
                    }
                }
                None => {
                    let svc_name = svc.key().1;
                    self.create(
                        Kind::EndpointSlice,
                        json!({
                            "metadata": {
                                "generateName": format!("{svc_name}-"),
                                "namespace": ns,
                                "labels": {
                                    "kubernetes.io/service-name": svc_name,
                                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                                },
                                "ownerReferences": [owner_ref(Kind::Service, svc)],
                            },
                            "addressType": "IPv4",
                            "endpoints": endpoints,
                            "ports": ports,
                        }),
                    )?;
                }
            }
        }
        Ok(())
    }

    /// The CronJob controller's work for one schedule, on demand: a Job from `jobTemplate`.
    pub fn trigger_cronjob(&mut self, key: &Key) -> Result<Arc<Obj>, Error> {
        let cronjob = self.get(Kind::CronJob, key)?;
        let template = &cronjob.value["spec"]["jobTemplate"];
        // named by the scheduled minute, as the real controller does; later triggers in the same
        // minute take the next free one
        let minute = jiff::Timestamp::now().as_second() / 60;
        let name = (minute..)
            .map(|m| format!("{}-{m}", key.1))
            .find(|n| {
                self.store
                    .get(Kind::Job, &(key.0.clone(), n.clone()))
                    .is_none()
            })
            .expect("an unbounded range has a free name");
        let job = self.create(
            Kind::Job,
            json!({
                "metadata": {
                    "name": name,
                    "namespace": key.0,
                    "labels": template["metadata"]["labels"],
                    "annotations": { "cronjob.kubernetes.io/instantiate": "manual" },
                    "ownerReferences": [owner_ref(Kind::CronJob, &cronjob)],
                },
                "spec": template["spec"],
            }),
        )?;
        let active: Vec<Value> = self
            .owned(&cronjob, Kind::Job)
            .iter()
            .map(|j| json!({ "kind": "Job", "apiVersion": "batch/v1", "namespace": key.0, "name": j.key().1, "uid": j.uid() }))
            .collect();
        self.set_status(
            Kind::CronJob,
            &cronjob,
            json!({ "active": active, "lastScheduleTime": meta::now() }),
        );
        Ok(job)
    }
}

/// A pod for `owner` from its `spec.template`: named `<owner>-<ordinal>` for a StatefulSet,
/// generated otherwise; on `node` for a DaemonSet.
fn pod_from_template(
    kind: Kind,
    owner: &Arc<Obj>,
    ordinal: Option<usize>,
    node: Option<&str>,
) -> Value {
    let (ns, owner_name) = owner.key();
    let template = &owner.value["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    let mut spec = template["spec"].clone();
    let mut metadata = json!({
        "namespace": ns,
        "annotations": template["metadata"]["annotations"],
        "ownerReferences": [owner_ref(kind, owner)],
    });
    match (kind, ordinal, node) {
        (_, Some(ordinal), _) => {
            let name = format!("{owner_name}-{ordinal}");
            labels = with_entries(
                &labels,
                &[
                    ("statefulset.kubernetes.io/pod-name", &name),
                    ("apps.kubernetes.io/pod-index", &ordinal.to_string()),
                ],
            );
            spec["hostname"] = json!(name);
            if let Some(service) = owner.value["spec"]["serviceName"].as_str() {
                spec["subdomain"] = json!(service);
            }
            metadata["name"] = json!(name);
        }
        (_, None, Some(node)) => {
            spec["nodeName"] = json!(node);
            metadata["generateName"] = json!(format!("{owner_name}-"));
        }
        (Kind::Job, ..) => {
            labels = with_entries(
                &labels,
                &[
                    ("batch.kubernetes.io/job-name", &owner_name),
                    ("job-name", &owner_name),
                    ("batch.kubernetes.io/controller-uid", owner.uid()),
                    ("controller-uid", owner.uid()),
                ],
            );
            metadata["generateName"] = json!(format!("{owner_name}-"));
        }
        _ => metadata["generateName"] = json!(format!("{owner_name}-")),
    }
    metadata["labels"] = labels;
    json!({ "metadata": metadata, "spec": spec })
}

fn pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| {
            conditions
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        })
}

/// The service's ports as this pod serves them: a named `targetPort` resolves to the pod's
/// container port of that name, and a port the pod lacks is left out.
fn resolve_ports(service_ports: &[Value], pod: &Value) -> Value {
    let container_port = |name: &str| {
        pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|c| {
                c["ports"]
                    .as_array()?
                    .iter()
                    .find(|p| p["name"] == name)
                    .map(|p| p["containerPort"].clone())
            })
    };
    let ports: Vec<Value> = service_ports
        .iter()
        .filter_map(|port| {
            let number = match &port["targetPort"] {
                Value::String(name) => container_port(name)?,
                Value::Null => port["port"].clone(),
                n => n.clone(),
            };
            let mut resolved = json!({
                "name": port["name"].as_str().unwrap_or_default(),
                "port": number,
                "protocol": port["protocol"].as_str().unwrap_or("TCP"),
            });
            if let Some(app_protocol) = port.get("appProtocol") {
                resolved["appProtocol"] = app_protocol.clone();
            }
            Some(resolved)
        })
        .collect();
    Value::Array(ports)
}
