//! Labeling through the CLI against `bulkhead up`, as an administrator sets a cluster up:
//! labels, a group, a pre-created profile and its pairing key, the template, a label map; and
//! what a refused command looks like.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use bulkhead_runtime::testing::free_port;
use common::{Process, cli, wait_healthy};
use serde_json::{Value, json};

/// The CLI against `server`; its stdout, asserting that it succeeded.
fn ok(dir: &Path, server: &str, args: &[&str]) -> String {
    let out = run(dir, server, args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The CLI with `--output json`; its answer.
fn ok_json(dir: &Path, server: &str, args: &[&str]) -> Value {
    let all: Vec<&str> = ["--output", "json"].iter().chain(args).copied().collect();
    let stdout = ok(dir, server, &all);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {stdout}"))
}

/// The CLI, expected to be refused; its stderr.
fn refused(dir: &Path, server: &str, args: &[&str]) -> String {
    let out = run(dir, server, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(out.stdout.is_empty(), "{args:?} printed something");
    String::from_utf8(out.stderr).unwrap()
}

fn run(dir: &Path, server: &str, args: &[&str]) -> Output {
    let all: Vec<&str> = ["--server", server].iter().chain(args).copied().collect();
    cli(dir, &all)
}

#[test]
fn an_administrator_sets_up_labels_profiles_and_label_maps_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let server = format!("http://{listen}");
    let mut up = Process::spawn(
        &["up", "--listen", &listen, "--admin-listen", "127.0.0.1:0"],
        dir.path(),
    );
    wait_healthy(&format!("{server}/api/v2/health"), Duration::from_secs(30));
    let dir = dir.path();
    let cluster = ok_json(dir, &server, &["cluster", "create", "prod"]);
    let cluster = cluster["cluster_id"].as_str().unwrap().to_owned();

    // Labels and a dimension.
    let table = ok(dir, &server, &["labels", "create", "role=web"]);
    assert!(table.contains("web") && table.contains("VALUE"), "{table}");
    let prod = ok_json(dir, &server, &["labels", "create", "env=prod"]);
    assert_eq!(prod["value"], "prod");
    ok(dir, &server, &["labels", "create", "role=db"]);
    let error = refused(dir, &server, &["labels", "create", "role=WEB"]);
    assert!(error.contains("exists already (conflict)"), "{error}");
    let error = refused(dir, &server, &["labels", "create", "tier=x"]);
    assert!(
        error.contains("label key tier does not exist (not_found)"),
        "{error}"
    );
    ok(
        dir,
        &server,
        &[
            "label-dimensions",
            "create",
            "team",
            "--display-name",
            "Team",
        ],
    );
    let keys = ok_json(dir, &server, &["label-dimensions", "list"]);
    assert_eq!(keys.as_array().unwrap().len(), 5, "{keys}");

    // A group of role labels, named by value.
    let group = ok_json(
        dir,
        &server,
        &["label-groups", "create", "role=Front", "--label", "web"],
    );
    assert_eq!(group["labels"].as_array().unwrap().len(), 1, "{group}");
    let table = ok(dir, &server, &["label-groups", "list", "--key", "role"]);
    assert!(
        table.contains("Front") && table.contains("web"),
        "values, not hrefs: {table}"
    );
    let error = refused(
        dir,
        &server,
        &["label-groups", "create", "role=Back", "--label", "nope"],
    );
    assert!(error.contains("there is no label role=nope"), "{error}");

    // A pre-created profile: the cluster reaches labeling a moment after inventory.
    let profiles = ["profiles", "--cluster", cluster.as_str()];
    let create = [
        "create",
        "payments",
        "--managed",
        "true",
        "--enforcement-mode",
        "full",
        "--assign",
        "env=prod",
        "--restrict",
        "role=web,group:Front",
    ];
    let args: Vec<&str> = profiles.iter().chain(&create).copied().collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let created = loop {
        let out = run(dir, &server, &args);
        if out.status.success() {
            break String::from_utf8(out.stdout).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let key_line = created
        .lines()
        .find(|l| l.starts_with("pairing key: "))
        .unwrap_or_else(|| panic!("no pairing key: {created}"));
    let pairing_key = key_line.split_whitespace().nth(2).unwrap();
    assert_eq!(pairing_key.len(), 64, "{key_line}");
    assert!(
        created.contains("env=prod; role in (web, Front)"),
        "{created}"
    );
    let listed = ok_json(dir, &server, &[&profiles[..], &["list"]].concat());
    let profile = listed[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(listed[0]["state"], "pending");
    assert!(listed[0].get("pairing_key").is_none(), "shown once");

    let update = [
        "update",
        profile.as_str(),
        "--enforcement-mode",
        "test",
        "--restrict",
        "app=",
        "--from-annotations",
        "role",
    ];
    ok(dir, &server, &[&profiles[..], &update].concat());
    let changed = ok_json(dir, &server, &[&profiles[..], &["get", &profile]].concat());
    assert_eq!(
        (
            changed["managed"].clone(),
            changed["enforcement_mode"].clone()
        ),
        (json!(true), json!("test"))
    );
    assert_eq!(
        changed["labels"],
        json!([
            { "key": "app", "restriction": [] },
            { "key": "env", "assignment": { "href": prod["href"] } },
        ]),
        "app allows none, env kept, role from annotations"
    );
    let error = refused(
        dir,
        &server,
        &[
            &profiles[..],
            &[
                "update",
                &profile,
                "--assign",
                "env=prod",
                "--from-annotations",
                "env",
            ],
        ]
        .concat(),
    );
    assert!(error.contains("env is given twice"), "{error}");

    // The template: changed in part, the rest kept.
    let template = ["profile-template", "--cluster", cluster.as_str()];
    ok(
        dir,
        &server,
        &[
            &template[..],
            &["set", "--managed", "true", "--assign", "env=prod"],
        ]
        .concat(),
    );
    ok(
        dir,
        &server,
        &[&template[..], &["set", "--enforcement-mode", "test"]].concat(),
    );
    let set = ok_json(dir, &server, &[&template[..], &["get"]].concat());
    assert_eq!(
        (set["managed"].clone(), set["enforcement_mode"].clone()),
        (json!(true), json!("test"))
    );
    assert_eq!(set["labels"][0]["key"], "env");
    let table = ok(dir, &server, &[&template[..], &["get"]].concat());
    assert!(table.contains("env=prod"), "{table}");

    // Used labels are not deleted, and the CLI says why.
    let error = refused(dir, &server, &["labels", "delete", "env=prod"]);
    assert!(
        error.contains("remove those uses first") && error.contains("(conflict)"),
        "{error}"
    );

    // A label map from YAML, listed, shown, refused when wrong, deleted.
    let maps = ["label-maps", "--cluster", cluster.as_str()];
    let file = dir.join("map.yaml");
    std::fs::write(
        &file,
        "workload_label_map:\n  - from_key: app.kubernetes.io/name\n    to_key: app\n    allow_create: true\n",
    )
    .unwrap();
    let file = file.to_str().unwrap();
    ok(
        dir,
        &server,
        &[&maps[..], &["put", "apps", "--file", file]].concat(),
    );
    let listed = ok_json(dir, &server, &[&maps[..], &["list"]].concat());
    assert_eq!(
        (listed[0]["name"].clone(), listed[0]["origin"].clone()),
        (json!("apps"), json!("api"))
    );
    let table = ok(dir, &server, &[&maps[..], &["get", "apps"]].concat());
    assert!(
        table.contains("app.kubernetes.io/name -> app (creates)"),
        "{table}"
    );
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"{"workload_label_map": [{"from_key": "a", "to_key": "tier"}]}"#,
    )
    .unwrap();
    let error = refused(
        dir,
        &server,
        &[&maps[..], &["put", "apps", "--file", bad.to_str().unwrap()]].concat(),
    );
    assert!(error.contains("label key tier does not exist"), "{error}");
    ok(dir, &server, &[&maps[..], &["delete", "apps"]].concat());
    let listed = ok_json(dir, &server, &[&maps[..], &["list"]].concat());
    assert_eq!(listed, json!([]));
    let error = refused(dir, &server, &[&maps[..], &["get", "apps"]].concat());
    assert!(error.contains("(not_found)"), "{error}");

    // Renaming by name; deleting the pre-created profile.
    ok(dir, &server, &["labels", "rename", "role=db", "database"]);
    let labels = ok_json(dir, &server, &["labels", "list", "--key", "role"]);
    let values: Vec<&str> = labels
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["value"].as_str().unwrap())
        .collect();
    assert_eq!(values, ["database", "web"]);
    let deleted = ok(
        dir,
        &server,
        &[&profiles[..], &["delete", &profile]].concat(),
    );
    assert!(deleted.contains("deleted profile"), "{deleted}");
    let listed = ok_json(dir, &server, &[&profiles[..], &["list"]].concat());
    assert_eq!(listed, json!([]));

    assert!(up.terminate(Duration::from_secs(5)).success());
}
