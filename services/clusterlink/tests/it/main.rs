//! clusterlink against the Kubernetes API simulator over HTTP (real kube-rs client) and a real
//! bus (in-process, and nats-server), with a recording responder in inventory's place.

mod common;
mod crd;
mod recovery;
mod sync;
