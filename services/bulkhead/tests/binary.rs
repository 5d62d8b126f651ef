//! The `bulkhead` binary as a newcomer uses it: `up`, the CLI against it, `serve api` against a
//! real nats-server, and clean exits on SIGTERM.

mod common;

use std::time::Duration;

use bulkhead_runtime::testing::{NatsServer, free_port};
use common::{Process, cli, eventually_json, get, wait_healthy};

#[test]
fn up_serves_health_requires_keys_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let base = format!("http://{listen}");
    let mut up = Process::spawn(
        &["up", "--listen", &listen, "--admin-listen", "127.0.0.1:0"],
        dir.path(),
    );

    let health = wait_healthy(&format!("{base}/api/v2/health"), Duration::from_secs(30));
    assert_eq!(health["status"], "healthy");

    let (code, body) = get(&format!("{base}/api/v2/orgs/1/whoami"), None);
    assert_eq!(code, 401);
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert!(body["error"]["message"].is_string());

    let key_file = dir.path().join("bulkhead-data/admin.key");
    let key = std::fs::read_to_string(&key_file).unwrap();
    let (code, body) = get(&format!("{base}/api/v2/orgs/1/whoami"), Some(key.trim()));
    assert_eq!(code, 200, "{body}");

    // The CLI, run where `up` keeps its data, finds the key and the server by itself when told
    // the server; `health` exits 0 when all is well.
    let out = cli(dir.path(), &["--server", &base, "health"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("api"));
    let out = cli(
        dir.path(),
        &["--server", &base, "--output", "json", "health"],
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["status"], "healthy");
    let services: Vec<&str> = json["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(
        services.contains(&"eventlog"),
        "up runs the event log: {services:?}"
    );

    // The single-node event log, through REST and the CLI.
    let out = cli(
        dir.path(),
        &["--server", &base, "--output", "json", "log", "status"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(log["role"], "leader");
    assert_eq!(log["voters"].as_array().unwrap().len(), 1);
    let out = cli(
        dir.path(),
        &[
            "--server", &base, "--output", "json", "log", "events", "--limit", "10",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        page["events"].is_array() && page["last_seq"].is_u64(),
        "{page}"
    );
    let (code, body) = get(
        &format!("{base}/api/v2/log/events?limit=0"),
        Some(key.trim()),
    );
    assert_eq!(
        (code, body["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{body}"
    );
    let (code, _) = get(&format!("{base}/api/v2/log/status"), None);
    assert_eq!(code, 401, "the log is for key holders only");
    let out = cli(dir.path(), &["--server", &base, "log", "promote", "42"]);
    assert!(!out.status.success(), "promoting an unknown replica fails");
    assert!(!String::from_utf8_lossy(&out.stderr).is_empty());

    let status = up.terminate(Duration::from_secs(5));
    assert!(status.success(), "exit status {status:?}");
    let banner = up.stdout();
    assert!(banner.contains(&base), "banner names the address: {banner}");
    assert!(
        banner.contains(key.trim()),
        "the new admin key is printed on first start"
    );

    // Second start: same data dir, key not printed again.
    let mut again = Process::spawn(
        &["up", "--listen", &listen, "--admin-listen", "127.0.0.1:0"],
        dir.path(),
    );
    wait_healthy(&format!("{base}/api/v2/health"), Duration::from_secs(30));
    assert!(again.terminate(Duration::from_secs(5)).success());
    assert!(
        !again.stdout().contains(key.trim()),
        "the key is shown only once"
    );
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), key);
}

#[test]
fn health_command_fails_when_nothing_answers() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(
        dir.path(),
        &[
            "--server",
            &format!("http://127.0.0.1:{}", free_port()),
            "health",
        ],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
}

#[test]
fn serve_api_runs_against_nats() {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("data");
    let mut api = Process::spawn(
        &[
            "serve",
            "api",
            "--nats",
            &nats.url(),
            "--listen",
            &listen,
            "--data-dir",
            data.to_str().unwrap(),
            "--admin-listen",
            "127.0.0.1:0",
        ],
        dir.path(),
    );
    let health = wait_healthy(
        &format!("http://{listen}/api/v2/health"),
        Duration::from_secs(30),
    );
    assert_eq!(health["services"][0]["name"], "api");
    assert!(data.join("admin.key").exists());
    assert!(api.terminate(Duration::from_secs(5)).success());
}

#[test]
fn serve_refuses_a_missing_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = cli(dir.path(), &["serve", "--config", "missing.toml", "api"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[test]
fn up_demo_shows_a_live_inventory_that_follows_kubectl_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{listen}");
    let args = [
        "up",
        "--demo",
        "--listen",
        &listen,
        "--admin-listen",
        "127.0.0.1:0",
    ];
    let mut up = Process::spawn(&args, dir.path());
    wait_healthy(&format!("{base}/api/v2/health"), Duration::from_secs(30));

    let frontends = |json: &serde_json::Value| {
        json.as_array().map_or(0, |pods| {
            pods.iter()
                .filter(|p| {
                    p["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("frontend-"))
                })
                .count()
        })
    };
    let list = [
        "--server",
        &base,
        "--output",
        "json",
        "container-workloads",
        "--namespace",
        "shop",
    ];
    let kubeconfig = dir.path().join("bulkhead-data/demo.kubeconfig");
    let kubectl = |args: &[&str]| common::kubectl(&kubeconfig, args);
    let replicas: usize = kubectl(&[
        "-n",
        "shop",
        "get",
        "deployment/frontend",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
    .trim()
    .parse()
    .unwrap();
    let pods = eventually_json(dir.path(), &list, Duration::from_secs(30), |j| {
        frontends(j) == replicas
    });
    assert!(
        pods.as_array()
            .unwrap()
            .iter()
            .all(|p| p["ips"].as_array().is_some_and(|ips| !ips.is_empty())),
        "{pods}"
    );

    kubectl(&[
        "-n",
        "shop",
        "scale",
        "deployment/frontend",
        &format!("--replicas={}", replicas + 2),
    ]);
    eventually_json(dir.path(), &list, Duration::from_secs(30), |j| {
        frontends(j) == replicas + 2
    });
    // The demo's label map turns the pods' Kubernetes labels app and tier into Bulkhead labels.
    let mapped = |pod: &serde_json::Value| {
        let labels: Vec<(&str, &str, bool)> = pod["labels"].as_array().map_or(vec![], |l| {
            l.iter()
                .map(|l| {
                    let key = l["key"].as_str().unwrap_or_default();
                    let value = l["value"].as_str().unwrap_or_default();
                    (key, value, l["source"].get("label_map").is_some())
                })
                .collect()
        });
        labels == [("app", "frontend", true), ("role", "web", true)]
    };
    eventually_json(dir.path(), &list, Duration::from_secs(30), |j| {
        j.as_array().is_some_and(|pods| {
            pods.iter()
                .filter(|p| {
                    p["name"]
                        .as_str()
                        .is_some_and(|n| n.starts_with("frontend-"))
                })
                .all(mapped)
        })
    });

    let clusters = ["--server", &base, "--output", "json", "cluster", "list"];
    let before = eventually_json(dir.path(), &clusters, Duration::from_secs(10), |j| {
        j.as_array().is_some_and(|c| c.len() == 1)
    });
    assert!(up.terminate(Duration::from_secs(5)).success());

    // The cluster lives in the event log in the data dir: a restart finds it, same id.
    let mut again = Process::spawn(&args, dir.path());
    wait_healthy(&format!("{base}/api/v2/health"), Duration::from_secs(30));
    let after = eventually_json(dir.path(), &clusters, Duration::from_secs(10), |j| {
        j.as_array().is_some_and(|c| c.len() == 1)
    });
    assert_eq!(after[0]["cluster_id"], before[0]["cluster_id"]);
    // The restarted simulator is a new cluster of the same shape (new pods, new uids): the
    // resync replaces everything clusterlink reported before, and nothing stale remains.
    let fresh = eventually_json(dir.path(), &list, Duration::from_secs(30), |j| {
        j.as_array().is_some_and(|pods| {
            pods.len()
                == kubectl(&["-n", "shop", "get", "pods", "-o", "name"])
                    .lines()
                    .count()
                && frontends(j) == replicas
        })
    });
    let old_uids: Vec<&serde_json::Value> =
        pods.as_array().unwrap().iter().map(|p| &p["uid"]).collect();
    assert!(
        fresh
            .as_array()
            .unwrap()
            .iter()
            .all(|p| !old_uids.contains(&&p["uid"])),
        "no pod of the cluster before the restart is left"
    );
    assert!(again.terminate(Duration::from_secs(5)).success());
}
