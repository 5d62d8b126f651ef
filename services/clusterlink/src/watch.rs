//! One watcher task per kind, generic over the kind: live changes become observations, and each
//! (re)list (at start, after a reconnect that lost its place, after a `410 Gone`) becomes a
//! resync against inventory's digest, so that what changed or vanished meanwhile is reported.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::pin;
use std::sync::Arc;

use bulkhead_schema::messages::inventory::{Observation, ObservedObject, ResourceKind};
use futures::StreamExt;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::convert::{Observe, observe};
use crate::metrics;
use crate::report::{Closed, Reports};
use crate::resync::Resync;
use crate::status::Status;
use crate::uplink::Uplink;

/// Digest entries asked for at once: ~50 bytes each, far below the bus limit.
const DIGEST_PAGE: u32 = 2_000;

/// What every watcher task shares.
pub struct Shared {
    pub uplink: Arc<Uplink>,
    pub reports: Reports,
    pub status: Status,
    pub verbosity: u8,
}

/// Follows every object of kind `K` until clusterlink stops.
pub async fn watch<K>(client: kube::Client, shared: Arc<Shared>)
where
    K: Observe + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    // the only error is a closed queue: clusterlink is stopping
    let _ = follow::<K>(client, &shared).await;
}

async fn follow<K>(client: kube::Client, shared: &Shared) -> Result<(), Closed>
where
    K: Observe + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let kind = K::KIND;
    // lists may come from the API server's cache (cheaper for it): a stale list costs a few
    // extra observations, as the resync and the watch from the list's version correct it
    let config = watcher::Config::default().any_semantic();
    let mut events = pin!(watcher(Api::<K>::all(client), config).default_backoff());
    let mut relist: Option<(Instant, BTreeMap<String, ObservedObject>)> = None;
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Init) => relist = Some((Instant::now(), BTreeMap::new())),
            Ok(watcher::Event::InitApply(obj)) => {
                if let (Some((_, listed)), Some(observed)) = (relist.as_mut(), observe(&obj)) {
                    listed.insert(observed.uid.clone(), observed);
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some((started, listed)) = relist.take() {
                    let count = listed.len();
                    let sent = shared.resync(kind, listed).await?;
                    metrics::resynced(kind, started.elapsed());
                    shared.status.synced(kind);
                    tracing::info!(
                        kind = kind.kube_kind(), listed = count, sent, took = ?started.elapsed(),
                        "resync acknowledged"
                    );
                }
            }
            Ok(watcher::Event::Apply(obj)) => {
                if let Some(observed) = observe(&obj) {
                    shared.emit(Observation::Applied(observed)).await?;
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                if let Some(uid) = obj.meta().uid.clone() {
                    shared.emit(Observation::Deleted { kind, uid }).await?;
                }
            }
            Err(error) => {
                metrics::watch_error(kind);
                tracing::warn!(kind = kind.kube_kind(), %error, "watch failed; retrying with back-off");
            }
        }
    }
    Ok(())
}

impl Shared {
    async fn emit(&self, observation: Observation) -> Result<(), Closed> {
        match &observation {
            Observation::Applied(o) => verbose!(
                self.verbosity >= 2,
                kind = o.kind.kube_kind(), namespace = %o.namespace, name = %o.name,
                resource_version = %o.resource_version, "applied"
            ),
            Observation::Deleted { kind, uid } => {
                verbose!(self.verbosity >= 2, kind = kind.kube_kind(), %uid, "deleted")
            }
        }
        self.reports.send(observation).await
    }

    /// Tells inventory what differs between `listed` and its digest; returns how many
    /// observations that took, once inventory acknowledged them.
    async fn resync(
        &self,
        kind: ResourceKind,
        listed: BTreeMap<String, ObservedObject>,
    ) -> Result<usize, Closed> {
        // The digest must include what is still queued: an Applied queued before the relist
        // for an object gone since would otherwise land after this diff, which could not know
        // to delete it.
        self.reports.acknowledged().await?;
        let mut resync = Resync::new(kind, listed);
        let mut sent = 0;
        let mut after = None;
        loop {
            let page = self.uplink.digest(kind, after, DIGEST_PAGE).await;
            let last = page.len() < DIGEST_PAGE as usize;
            after = page.last().map(|(uid, _)| uid.clone());
            for observation in resync.page(&page) {
                self.emit(observation).await?;
                sent += 1;
            }
            if last {
                break;
            }
        }
        for observation in resync.finish() {
            self.emit(observation).await?;
            sent += 1;
        }
        self.reports.acknowledged().await?;
        Ok(sent)
    }
}
