//! `kubesim`: a Kubernetes API server simulator, faithful enough for kube-rs watchers and
//! reflectors and for `kubectl`, for Bulkhead's tests, `bulkhead up --demo` and load tests.
//!
//! ```text
//!  kube-rs / kubectl ──HTTP──> api.rs ─────── discovery, list (selectors, pages), get, create,
//!                                 │           replace, patch (patch.rs), delete, scale;
//!                                 │           Tables (table.rs), OpenAPI stubs (openapi.rs)
//!                                 │  watch.rs ── one task per watch: replay after a
//!                                 │      ▲       resourceVersion, live events, bookmarks, 410
//!                                 ▼      │ wake
//!  Simulator (sim.rs) ──> Cluster (cluster.rs) ── admission: names, uids, defaults,
//!   apply/scale/seed…       │  one Mutex          scheduling and addresses (network.rs),
//!                           │  per transaction    CRDs and custom objects' schemas (crd.rs)
//!                           ├─ Store (store.rs) ── per kind: objects + serialised bytes,
//!                           │                      bounded event history; one resourceVersion
//!                           └─ controllers.rs ──── Deployment → ReplicaSet → Pods,
//!                                                  StatefulSet, DaemonSet, Job (CronJob on
//!                                                  demand), Service → EndpointSlices,
//!                                                  garbage collection of dependents
//! ```
//!
//! Every kind is a row of one table (`kinds.rs`); the store, the HTTP handlers and discovery are
//! generic over it. Custom kinds (Bulkhead's LabelMap) are served, discovered included, only
//! while their CustomResourceDefinition exists, as on a real cluster: none is installed at
//! start. Controllers run synchronously at the end of each write, so the cluster is
//! settled when a request returns. Addresses (node pod CIDRs `10.244.N.0/24`, node IPs
//! `172.18.x.y`, service IPs `10.96.x.y`) are data only: nothing ever connects to them.
//!
//! Cost: 200 nodes × 110 pods seed in about 3 s (release build, two cores) and take about
//! 30 KB of memory per pod, objects being `serde_json::Value` trees; run it as its own process
//! (`bulkhead kubesim`) when measuring another component's memory.
//!
//! Not simulated: authentication (any token is accepted), server-side apply, dry runs,
//! protobuf, aggregated discovery, metadata-only lists (full objects are sent), v1 Endpoints,
//! finalizers and graceful deletion, status subresources, pod lifecycle beyond Running, and
//! strategic merge of lists (they are replaced, see `patch.rs`).

mod api;
mod cli;
mod cluster;
mod controllers;
mod crd;
mod error;
mod kinds;
mod meta;
mod network;
mod openapi;
mod patch;
mod seed;
mod selector;
mod sim;
mod store;
mod table;
mod watch;

pub use cli::{KubesimArgs, run};
pub use error::Error;
pub use kinds::Kind;
pub use sim::{RunningSim, SimConfig, Simulator};
