//! The simulator against real clients: kube-rs (watcher, reflector, list/get/patch) and kubectl.

mod common;
mod controllers;
mod kubectl;
mod watch;
