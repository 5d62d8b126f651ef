//! The control plane as separate processes on a real nats-server, driven through the CLI.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bulkhead_runtime::testing::{NatsServer, free_port};
use serde_json::Value;

use super::{Process, cli, eventually_json, wait_healthy};

/// How long a test waits for the control plane to converge.
pub const CONVERGE: Duration = Duration::from_secs(30);

/// The control plane's processes and how to reach them.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub nats: NatsServer,
    pub api: String,
    pub api_key: String,
    inventory_metrics: String,
    _eventlog: Process,
    _api: Process,
    inventory: Option<Process>,
    _labeling: Process,
}

impl ControlPlane {
    /// The event log (one replica), the api, inventory and labeling, each its own process.
    pub fn start(dir: &Path) -> Self {
        let nats = NatsServer::start();
        let raft = format!("127.0.0.1:{}", free_port());
        let eventlog = Process::spawn(
            &[
                "serve",
                "eventlog",
                "--nats",
                &nats.url(),
                "--node-id",
                "1",
                "--data-dir",
                dir.join("eventlog").to_str().unwrap(),
                "--raft-listen",
                &raft,
                "--peers",
                &format!("1={raft}"),
                "--init",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            dir,
        );
        let api = format!("127.0.0.1:{}", free_port());
        let api_process = Process::spawn(
            &[
                "serve",
                "api",
                "--nats",
                &nats.url(),
                "--listen",
                &api,
                "--data-dir",
                dir.join("api").to_str().unwrap(),
                "--admin-listen",
                "127.0.0.1:0",
            ],
            dir,
        );
        let api = format!("http://{api}");
        wait_healthy(&format!("{api}/api/v2/health"), CONVERGE);
        let api_key = std::fs::read_to_string(dir.join("api/admin.key"))
            .unwrap()
            .trim()
            .to_owned();
        let labeling = Process::spawn(
            &[
                "serve",
                "labeling",
                "--nats",
                &nats.url(),
                "--data-dir",
                dir.join("labeling").to_str().unwrap(),
                "--admin-listen",
                "127.0.0.1:0",
            ],
            dir,
        );
        let mut plane = ControlPlane {
            dir: dir.to_owned(),
            nats,
            api,
            api_key,
            inventory_metrics: format!("127.0.0.1:{}", free_port()),
            _eventlog: eventlog,
            _api: api_process,
            inventory: None,
            _labeling: labeling,
        };
        plane.start_inventory();
        // inventory answers once it has caught up with the log
        plane.eventually(&["cluster", "list"], |_| true);
        plane
    }

    pub fn start_inventory(&mut self) {
        assert!(self.inventory.is_none());
        self.inventory = Some(Process::spawn(
            &[
                "serve",
                "inventory",
                "--nats",
                &self.nats.url(),
                "--data-dir",
                self.dir.join("inventory").to_str().unwrap(),
                "--admin-listen",
                &self.inventory_metrics,
            ],
            &self.dir,
        ));
    }

    pub fn kill_inventory(&mut self) {
        drop(self.inventory.take().expect("inventory runs"));
    }

    pub fn clusterlink(&self, cluster_id: &str, token: &str, kubeconfig: &Path) -> Process {
        Process::spawn(
            &[
                "serve",
                "clusterlink",
                "--nats",
                &self.nats.url(),
                "--cluster-id",
                cluster_id,
                "--cluster-token",
                token,
                "--kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--heartbeat-interval-ms",
                "500",
                "--admin-listen",
                "127.0.0.1:0",
            ],
            &self.dir,
        )
    }

    /// The CLI with `--output json` against this control plane.
    pub fn cli_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec![
            "--server",
            &self.api,
            "--api-key",
            &self.api_key,
            "--output",
            "json",
        ];
        all.extend_from_slice(args);
        all
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let out = cli(&self.dir, &self.cli_args(args));
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn eventually(&self, args: &[&str], check: impl Fn(&Value) -> bool) -> Value {
        eventually_json(&self.dir, &self.cli_args(args), CONVERGE, check)
    }

    /// inventory's `bulkhead_inventory_auth_failures_total`, all reasons.
    pub fn auth_failures(&self) -> u64 {
        let out = std::process::Command::new("curl")
            .args(["-s", &format!("http://{}/metrics", self.inventory_metrics)])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("bulkhead_inventory_auth_failures_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// Every committed event of the log, through the CLI (pages of 1,000).
    pub fn log_events(&self) -> Vec<Value> {
        let mut events: Vec<Value> = Vec::new();
        loop {
            let from = (events.len() + 1).to_string();
            let page = self.json(&["log", "events", "--from", &from, "--limit", "1000"]);
            let batch = page["events"].as_array().unwrap().clone();
            if batch.is_empty() {
                return events;
            }
            events.extend(batch);
        }
    }
}
