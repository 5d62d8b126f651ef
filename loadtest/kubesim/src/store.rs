//! The object store: one map per kind, one resourceVersion counter for all of them, and per kind
//! a bounded history of watch events.
//!
//! Objects are kept as JSON values together with their serialisation, so that a list of 22,000
//! pods or a watch event fanned out to many watchers is a copy of bytes, never a re-encoding.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    ops::Bound,
    sync::Arc,
};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::watch;

use crate::{error::Error, kinds::Kind};

/// `(namespace, name)`; the namespace is empty for cluster-scoped kinds.
pub(crate) type Key = (String, String);

/// One stored version of an object.
#[derive(Debug)]
pub(crate) struct Obj {
    pub value: Value,
    pub raw: Bytes,
    pub rv: u64,
}

impl Obj {
    fn new(value: Value, rv: u64) -> Arc<Obj> {
        let raw = Bytes::from(serde_json::to_vec(&value).expect("JSON values always serialise"));
        Arc::new(Obj { value, raw, rv })
    }

    #[cfg(test)]
    pub fn for_test(value: Value) -> Arc<Obj> {
        Obj::new(value, 1)
    }

    pub fn key(&self) -> Key {
        key_of(&self.value)
    }

    pub fn uid(&self) -> &str {
        self.value["metadata"]["uid"].as_str().unwrap_or_default()
    }
}

pub(crate) fn key_of(value: &Value) -> Key {
    let meta = &value["metadata"];
    let get = |field: &str| meta[field].as_str().unwrap_or_default().to_string();
    (get("namespace"), get("name"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change, as watchers see it. `prev` lets a watcher with a selector turn a change that moves
/// an object into or out of its selection into ADDED or DELETED, as the API server does.
#[derive(Clone, Debug)]
pub(crate) struct Event {
    pub rv: u64,
    pub kind: EventType,
    pub obj: Arc<Obj>,
    pub prev: Option<Arc<Obj>>,
}

struct KindStore {
    objects: BTreeMap<Key, Arc<Obj>>,
    history: VecDeque<Event>,
    /// Events up to this resourceVersion are no longer replayable: a watch or a continued list
    /// from an older version gets 410 Expired.
    compacted: u64,
    /// The latest resourceVersion of a committed change of this kind; wakes its watchers.
    notify: watch::Sender<u64>,
}

pub(crate) struct Store {
    rv: u64,
    kinds: Vec<KindStore>,
    /// owner uid -> objects whose ownerReferences name it: garbage collection and the
    /// controllers' "what do I own" without scanning.
    dependents: HashMap<String, BTreeSet<(Kind, Key)>>,
    history_limit: usize,
    /// Kinds changed since the last commit, to wake their watchers once per transaction.
    touched: BTreeSet<Kind>,
}

impl Store {
    pub fn new(history_limit: usize) -> Self {
        let kinds = Kind::ALL
            .iter()
            .map(|_| KindStore {
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: 0,
                notify: watch::Sender::new(0),
            })
            .collect();
        Store {
            rv: 0,
            kinds,
            dependents: HashMap::new(),
            history_limit: history_limit.max(1),
            touched: BTreeSet::new(),
        }
    }

    pub fn rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, kind: Kind, key: &Key) -> Option<&Arc<Obj>> {
        self.kinds[kind as usize].objects.get(key)
    }

    pub fn len(&self, kind: Kind) -> usize {
        self.kinds[kind as usize].objects.len()
    }

    /// Objects of a kind in key order, from `after` (exclusive) on, in one namespace or all.
    pub fn iter<'a>(
        &'a self,
        kind: Kind,
        namespace: Option<&'a str>,
        after: Option<&Key>,
    ) -> impl Iterator<Item = &'a Arc<Obj>> + 'a {
        let objects = &self.kinds[kind as usize].objects;
        let start = match (after, namespace) {
            (Some(key), _) => Bound::Excluded(key.clone()),
            (None, Some(ns)) => Bound::Included((ns.to_string(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        objects
            .range((start, Bound::Unbounded))
            .take_while(move |((ns, _), _)| namespace.is_none_or(|want| want == ns))
            .map(|(_, obj)| obj)
    }

    pub fn dependents(&self, owner_uid: &str) -> Vec<(Kind, Key)> {
        self.dependents
            .get(owner_uid)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Stores a new version of an object, stamping the next resourceVersion.
    pub fn put(&mut self, kind: Kind, mut value: Value) -> Arc<Obj> {
        self.rv += 1;
        value["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let obj = Obj::new(value, self.rv);
        let key = obj.key();
        let prev = self.kinds[kind as usize]
            .objects
            .insert(key.clone(), obj.clone());
        self.index_owners(kind, &key, prev.as_deref(), Some(&obj));
        let event_kind = if prev.is_some() {
            EventType::Modified
        } else {
            EventType::Added
        };
        self.record(
            kind,
            Event {
                rv: self.rv,
                kind: event_kind,
                obj: obj.clone(),
                prev,
            },
        );
        obj
    }

    /// Removes an object; watchers get it with the resourceVersion of its deletion.
    pub fn remove(&mut self, kind: Kind, key: &Key) -> Option<Arc<Obj>> {
        let prev = self.kinds[kind as usize].objects.remove(key)?;
        self.index_owners(kind, key, Some(&prev), None);
        self.rv += 1;
        let mut last = prev.value.clone();
        last["metadata"]["resourceVersion"] = Value::String(self.rv.to_string());
        let obj = Obj::new(last, self.rv);
        self.record(
            kind,
            Event {
                rv: self.rv,
                kind: EventType::Deleted,
                obj,
                prev: Some(prev.clone()),
            },
        );
        Some(prev)
    }

    fn index_owners(&mut self, kind: Kind, key: &Key, old: Option<&Obj>, new: Option<&Obj>) {
        let owners = |obj: Option<&Obj>| -> Vec<String> {
            obj.and_then(|o| o.value["metadata"]["ownerReferences"].as_array())
                .into_iter()
                .flatten()
                .filter_map(|r| r["uid"].as_str().map(str::to_string))
                .collect()
        };
        let (old, new) = (owners(old), owners(new));
        for uid in old.iter().filter(|u| !new.contains(u)) {
            if let Some(set) = self.dependents.get_mut(uid) {
                set.remove(&(kind, key.clone()));
                if set.is_empty() {
                    self.dependents.remove(uid);
                }
            }
        }
        for uid in new.into_iter().filter(|u| !old.contains(u)) {
            self.dependents
                .entry(uid)
                .or_default()
                .insert((kind, key.clone()));
        }
    }

    fn record(&mut self, kind: Kind, event: Event) {
        let store = &mut self.kinds[kind as usize];
        store.history.push_back(event);
        if store.history.len() > self.history_limit
            && let Some(evicted) = store.history.pop_front()
        {
            store.compacted = evicted.rv;
        }
        self.touched.insert(kind);
    }

    /// Ends a transaction: wakes the watchers of every kind it changed.
    pub fn commit(&mut self) {
        for kind in std::mem::take(&mut self.touched) {
            self.kinds[kind as usize].notify.send_replace(self.rv);
        }
    }

    /// Forgets all history, as after an etcd compaction: every watch and continued list from a
    /// resourceVersion before now gets 410 Expired, including the watches open now.
    pub fn expire_history(&mut self) {
        // a version of its own, so that even a watcher that has seen everything is behind it
        self.rv += 1;
        for kind in Kind::ALL {
            let store = &mut self.kinds[kind as usize];
            store.history.clear();
            store.compacted = self.rv;
            self.touched.insert(kind);
        }
    }

    /// Fails with Expired if changes after `rv` are no longer all retained.
    pub fn check_fresh(&self, kind: Kind, rv: u64) -> Result<(), Error> {
        if rv < self.kinds[kind as usize].compacted {
            Err(Error::Expired(rv))
        } else {
            Ok(())
        }
    }

    /// The changes of a kind after `rv`.
    pub fn events_since(&self, kind: Kind, rv: u64) -> Result<Vec<Event>, Error> {
        self.check_fresh(kind, rv)?;
        let history = &self.kinds[kind as usize].history;
        let start = history.partition_point(|e| e.rv <= rv);
        Ok(history.range(start..).cloned().collect())
    }

    pub fn subscribe(&self, kind: Kind) -> watch::Receiver<u64> {
        self.kinds[kind as usize].notify.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn pod(name: &str, owner: Option<&str>) -> Value {
        let mut pod = json!({ "metadata": { "namespace": "ns", "name": name, "uid": name } });
        if let Some(owner) = owner {
            pod["metadata"]["ownerReferences"] = json!([{ "uid": owner }]);
        }
        pod
    }

    #[test]
    fn versions_history_and_expiry() {
        let mut store = Store::new(2);
        let a = store.put(Kind::Pod, pod("a", Some("rs")));
        assert_eq!(
            (a.rv, a.value["metadata"]["resourceVersion"].as_str()),
            (1, Some("1"))
        );
        store.put(Kind::Pod, pod("b", None));
        store.put(Kind::Node, json!({ "metadata": { "name": "n" } }));
        let removed = store.remove(Kind::Pod, &("ns".into(), "a".into())).unwrap();
        assert_eq!(removed.rv, 1);
        // pods: added a (1), added b (2), deleted a (4); limit 2 evicts rv 1
        assert!(matches!(
            store.events_since(Kind::Pod, 0),
            Err(Error::Expired(0))
        ));
        let events = store.events_since(Kind::Pod, 1).unwrap();
        assert_eq!(
            events.iter().map(|e| (e.rv, e.kind)).collect::<Vec<_>>(),
            [(2, EventType::Added), (4, EventType::Deleted)]
        );
        assert_eq!(events[1].obj.value["metadata"]["resourceVersion"], "4");
        assert!(store.dependents("rs").is_empty());
        store.expire_history();
        assert!(store.events_since(Kind::Node, 4).is_err());
        assert!(
            store
                .events_since(Kind::Node, store.rv())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn iterates_one_namespace_from_a_key() {
        let mut store = Store::new(10);
        for (ns, name) in [("a", "1"), ("b", "1"), ("b", "2"), ("c", "1")] {
            store.put(
                Kind::Pod,
                json!({ "metadata": { "namespace": ns, "name": name } }),
            );
        }
        let names = |it: Vec<&Arc<Obj>>| it.iter().map(|o| o.key()).collect::<Vec<_>>();
        assert_eq!(
            names(store.iter(Kind::Pod, Some("b"), None).collect()),
            [("b".into(), "1".into()), ("b".into(), "2".into())]
        );
        let after = ("b".to_string(), "1".to_string());
        assert_eq!(store.iter(Kind::Pod, None, Some(&after)).count(), 2);
        assert_eq!(store.iter(Kind::Pod, Some("b"), Some(&after)).count(), 1);
    }
}
