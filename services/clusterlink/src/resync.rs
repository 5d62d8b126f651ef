//! The resync diff: after a watcher (re)lists a kind, what inventory must be told so that it
//! holds exactly the listed objects, given its digest of `(uid, resource_version)` pairs.
//!
//! The digest arrives page by page (it may be large); each page is diffed as it comes, so that
//! neither side holds more than the listed objects and one page.

use std::collections::BTreeMap;

use bulkhead_schema::messages::inventory::{Observation, ObservedObject, ResourceKind};

/// One kind's listed objects, not yet matched against the digest.
#[derive(Debug)]
pub struct Resync {
    kind: ResourceKind,
    unmatched: BTreeMap<String, ObservedObject>,
}

impl Resync {
    /// `listed`: every object of `kind` the watcher listed, by uid.
    pub fn new(kind: ResourceKind, listed: BTreeMap<String, ObservedObject>) -> Self {
        Resync {
            kind,
            unmatched: listed,
        }
    }

    /// What one digest page calls for: `Applied` for objects inventory holds in another
    /// version, `Deleted` for objects it holds that were not listed.
    pub fn page(&mut self, entries: &[(String, String)]) -> Vec<Observation> {
        entries
            .iter()
            .filter_map(|(uid, version)| match self.unmatched.remove(uid) {
                Some(object) if object.resource_version == *version => None,
                Some(object) => Some(Observation::Applied(object)),
                None => Some(Observation::Deleted {
                    kind: self.kind,
                    uid: uid.clone(),
                }),
            })
            .collect()
    }

    /// After the last page: `Applied` for the listed objects inventory does not hold.
    pub fn finish(self) -> Vec<Observation> {
        self.unmatched
            .into_values()
            .map(Observation::Applied)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::observe;
    use crate::convert::tests::mk_pod;

    fn pod(name: &str, version: &str) -> ObservedObject {
        let mut pod = mk_pod("shop", name, "node-1", "10.244.1.5");
        pod.metadata.resource_version = Some(version.into());
        observe(&pod).unwrap()
    }

    fn listed(objects: &[ObservedObject]) -> BTreeMap<String, ObservedObject> {
        objects.iter().map(|o| (o.uid.clone(), o.clone())).collect()
    }

    fn entry(name: &str, version: &str) -> (String, String) {
        (format!("uid-{name}"), version.into())
    }

    fn deleted(name: &str) -> Observation {
        Observation::Deleted {
            kind: ResourceKind::Pod,
            uid: format!("uid-{name}"),
        }
    }

    #[test]
    fn first_sync_against_an_empty_inventory_applies_everything() {
        let objects = [pod("a", "1"), pod("b", "2")];
        let mut resync = Resync::new(ResourceKind::Pod, listed(&objects));
        assert!(resync.page(&[]).is_empty());
        assert_eq!(resync.finish(), objects.map(Observation::Applied).to_vec());
    }

    #[test]
    fn sends_only_changed_new_and_vanished_objects() {
        let (same, changed, new) = (pod("a", "1"), pod("b", "7"), pod("c", "3"));
        let mut resync = Resync::new(
            ResourceKind::Pod,
            listed(&[same, changed.clone(), new.clone()]),
        );
        let mut sent = resync.page(&[entry("a", "1"), entry("b", "5"), entry("gone", "2")]);
        sent.extend(resync.finish());
        assert_eq!(
            sent,
            vec![
                Observation::Applied(changed),
                deleted("gone"),
                Observation::Applied(new),
            ]
        );
    }

    #[test]
    fn pages_are_diffed_independently() {
        let mut resync = Resync::new(ResourceKind::Pod, listed(&[pod("a", "1"), pod("d", "4")]));
        assert_eq!(
            resync.page(&[entry("a", "1"), entry("b", "2")]),
            vec![deleted("b")]
        );
        assert_eq!(
            resync.page(&[entry("c", "3"), entry("d", "4")]),
            vec![deleted("c")]
        );
        assert!(resync.finish().is_empty(), "everything matched");
    }

    #[test]
    fn an_empty_cluster_deletes_everything_inventory_holds() {
        let mut resync = Resync::new(ResourceKind::Pod, BTreeMap::new());
        assert_eq!(
            resync.page(&[entry("a", "1"), entry("b", "1")]),
            vec![deleted("a"), deleted("b")]
        );
        assert!(resync.finish().is_empty());
    }
}
