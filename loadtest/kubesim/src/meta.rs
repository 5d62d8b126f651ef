//! Small helpers over object JSON: timestamps, names, owner references, defaults.

use rand::Rng;
use serde_json::{Value, json};

use crate::{kinds::Kind, store::Obj};

/// Now, in the API's RFC 3339 second precision.
pub(crate) fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The alphabet of Kubernetes' generated name suffixes (no vowels, no look-alikes).
const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// `<prefix><5 random characters>`, as for `generateName`.
pub(crate) fn generate_name(prefix: &str) -> String {
    let mut rng = rand::rng();
    let suffix: String = (0..5)
        .map(|_| char::from(ALPHANUMS[rng.random_range(0..ALPHANUMS.len())]))
        .collect();
    format!("{prefix}{suffix}")
}

/// The `pod-template-hash` of a pod template: FNV-1a of its JSON, encoded as Kubernetes encodes
/// it (each decimal digit mapped into the alphabet above).
pub(crate) fn template_hash(template: &Value) -> String {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in template.to_string().bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash.to_string()
        .bytes()
        .map(|b| char::from(ALPHANUMS[usize::from(b) % ALPHANUMS.len()]))
        .collect()
}

/// Whether a name is a DNS-1123 subdomain, as nearly all object names must be.
pub(crate) fn valid_name(name: &str) -> bool {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    let alnum = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty()
        && name.len() <= 253
        && name.chars().all(ok_char)
        && alnum(name.chars().next())
        && alnum(name.chars().last())
}

/// A controller owner reference to `owner`.
pub(crate) fn owner_ref(kind: Kind, owner: &Obj) -> Value {
    json!({
        "apiVersion": kind.api_version(),
        "kind": kind.name(),
        "name": owner.value["metadata"]["name"],
        "uid": owner.uid(),
        "controller": true,
        "blockOwnerDeletion": true,
    })
}

/// The kind and name of an object's controller (its owner reference with `controller: true`).
pub(crate) fn controller_of(value: &Value) -> Option<(Kind, &str)> {
    value["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find_map(|r| {
            if r["controller"].as_bool() != Some(true) {
                return None;
            }
            let kind = Kind::from_type(r["apiVersion"].as_str()?, r["kind"].as_str()?)?;
            Some((kind, r["name"].as_str()?))
        })
}

/// The slot at `path`, creating empty objects where the path is missing; None where it crosses
/// something that is not an object (user input the simulator leaves as it is).
pub(crate) fn slot<'a>(value: &'a mut Value, path: &[&str]) -> Option<&'a mut Value> {
    path.iter().try_fold(value, |v, step| {
        if v.is_null() {
            *v = json!({});
        }
        v.as_object_mut()
            .map(|map| map.entry(*step).or_insert(Value::Null))
    })
}

/// Sets `path` to `default` unless it already holds something.
pub(crate) fn default_at(value: &mut Value, path: &[&str], default: impl FnOnce() -> Value) {
    if let Some(slot) = slot(value, path)
        && slot.is_null()
    {
        *slot = default();
    }
}

/// A label or annotation map merged with extra entries.
pub(crate) fn with_entries(map: &Value, extra: &[(&str, &str)]) -> Value {
    let mut map = if map.is_object() {
        map.clone()
    } else {
        json!({})
    };
    for (k, v) in extra {
        map[*k] = json!(v);
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        assert_eq!(now().len(), "2025-01-01T00:00:00Z".len());
        let name = generate_name("web-");
        assert_eq!(name.len(), 9);
        assert!(valid_name(&name));
        assert!(!valid_name("Web") && !valid_name("-a") && !valid_name(""));
        let hash = template_hash(&json!({ "spec": {} }));
        assert_eq!(hash, template_hash(&json!({ "spec": {} })));
        assert_ne!(hash, template_hash(&json!({ "spec": { "x": 1 } })));

        let mut obj = json!({ "spec": { "replicas": 2 }, "status": "odd" });
        default_at(&mut obj, &["spec", "replicas"], || json!(1));
        default_at(&mut obj, &["spec", "template", "metadata"], || json!({}));
        default_at(&mut obj, &["status", "phase"], || json!("x"));
        assert_eq!(
            obj,
            json!({ "spec": { "replicas": 2, "template": { "metadata": {} } }, "status": "odd" })
        );

        let owned = json!({ "metadata": { "ownerReferences": [
            { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "other" },
            { "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "controller": true },
        ] } });
        assert_eq!(controller_of(&owned), Some((Kind::ReplicaSet, "rs")));
        assert_eq!(
            with_entries(&Value::Null, &[("a", "b")]),
            json!({ "a": "b" })
        );
    }
}
