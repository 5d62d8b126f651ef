//! The checked-in contract (JSON Schemas and golden byte vectors) must match the code.
//!
//! Run with `BULKHEAD_BLESS=1` to rewrite the files after a deliberate change; review the diff.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bulkhead_schema::{envelope_json_schema, registry};

fn contract_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(name)
}

fn blessing() -> bool {
    std::env::var_os("BULKHEAD_BLESS").is_some_and(|v| v == "1")
}

/// Compares `expected` with the file, or writes it when blessing. Returns a complaint.
fn check_file(path: &Path, expected: &str) -> Option<String> {
    if blessing() {
        std::fs::write(path, expected).unwrap();
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(actual) if actual == expected => None,
        Ok(_) => Some(format!("{} is stale", path.display())),
        Err(e) => Some(format!("{} is missing: {e}", path.display())),
    }
}

/// Files in `dir` with `suffix` that no message type accounts for.
fn strays(dir: &Path, suffix: &str, wanted: &BTreeSet<String>) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.ends_with(suffix) && !wanted.contains(name))
        .collect()
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap() + "\n"
}

#[test]
fn json_schemas_are_current() {
    let dir = contract_dir("json");
    let mut complaints = Vec::new();
    let mut wanted = BTreeSet::from(["envelope.json".to_owned()]);
    complaints.extend(check_file(
        &dir.join("envelope.json"),
        &pretty(&envelope_json_schema()),
    ));
    for info in registry() {
        let name = format!("{}.json", info.message_type);
        complaints.extend(check_file(&dir.join(&name), &pretty(&(info.json_schema)())));
        wanted.insert(name);
    }
    for stray in strays(&dir, ".json", &wanted) {
        complaints.push(format!("{stray} belongs to no message type"));
    }
    assert!(
        complaints.is_empty(),
        "{complaints:#?}\nrun `BULKHEAD_BLESS=1 cargo test -p bulkhead-schema` and review the diff"
    );
}

#[test]
fn golden_vectors_are_current_and_decode() {
    let dir = contract_dir("golden");
    let mut complaints = Vec::new();
    let mut wanted = BTreeSet::new();
    for info in registry() {
        let name = format!("{}.msgpack.hex", info.message_type);
        let golden = (info.golden_bytes)();
        complaints.extend(check_file(&dir.join(&name), &(hex::encode(&golden) + "\n")));
        let on_disk = hex::decode(
            std::fs::read_to_string(dir.join(&name))
                .unwrap_or_default()
                .trim(),
        );
        match on_disk.map(|bytes| (info.reencode)(&bytes).map(|again| (bytes, again))) {
            Ok(Ok((bytes, again))) if bytes == again => {}
            Ok(Ok(_)) => {
                complaints.push(format!("{name} does not survive decode + encode unchanged"))
            }
            Ok(Err(e)) => complaints.push(format!("{name} does not decode: {e}")),
            Err(e) => complaints.push(format!("{name} is not hex: {e}")),
        }
        wanted.insert(name);
    }
    for stray in strays(&dir, ".msgpack.hex", &wanted) {
        complaints.push(format!("{stray} belongs to no message type"));
    }
    assert!(
        complaints.is_empty(),
        "{complaints:#?}\nan encoding change breaks every reader of the wire; if it is deliberate, bump the message's VERSION, then `BULKHEAD_BLESS=1 cargo test -p bulkhead-schema`"
    );
}

#[test]
fn message_types_are_unique() {
    let all = registry();
    let names: BTreeSet<_> = all.iter().map(|i| i.message_type).collect();
    assert_eq!(names.len(), all.len());
}
