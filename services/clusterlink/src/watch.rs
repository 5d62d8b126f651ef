//! One watcher task per kind, generic over the kind: live changes become observations, and each
//! (re)list (at start, after a reconnect that lost its place, after a `410 Gone`) becomes a
//! resync against inventory's digest, so that what changed or vanished meanwhile is reported.
//! A kind the API server does not serve (a custom resource whose CRD is not installed) counts
//! as having no objects, and is looked for again every `absent_kind_retry_ms`.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

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
    /// The pause before looking again for a kind the API server does not serve.
    pub absent_retry: Duration,
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
    let mut absent = false;
    loop {
        if follow_served::<K>(client.clone(), shared, &mut absent).await? == Ended::Stream {
            // a watch task that ends stops clusterlink (`run` reports it): never silently
            return Ok(());
        }
        // A kind the API server does not serve (the LabelMap CRD not installed) has no
        // objects: inventory is told so once, and the other kinds go on regardless.
        if !absent {
            absent = true;
            tracing::info!(
                kind = kind.kube_kind(), retry = ?shared.absent_retry,
                "the API server does not serve this kind (is its CRD installed?); looking again periodically"
            );
            shared
                .relisted(kind, Instant::now(), BTreeMap::new())
                .await?;
        }
        tokio::time::sleep(shared.absent_retry).await;
    }
}

/// Why a watch of one kind ended.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// The API server answered that it does not serve the kind.
    NotServed,
    /// The stream ended, which kube's watcher does not do (it retries errors itself).
    Stream,
}

/// Watches kind `K` until the API server answers that it does not serve it. `absent`: whether
/// it did not the last time; cleared once it is listed again.
async fn follow_served<K>(
    client: kube::Client,
    shared: &Shared,
    absent: &mut bool,
) -> Result<Ended, Closed>
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
                if let (Some((_, listed)), Some(observed)) = (relist.as_mut(), observed(&obj)) {
                    listed.insert(observed.uid.clone(), observed);
                }
            }
            Ok(watcher::Event::InitDone) => {
                if let Some((started, listed)) = relist.take() {
                    if std::mem::take(absent) {
                        tracing::info!(
                            kind = kind.kube_kind(),
                            "the API server serves this kind now"
                        );
                    }
                    shared.relisted(kind, started, listed).await?;
                }
            }
            Ok(watcher::Event::Apply(obj)) => {
                if let Some(observed) = observed(&obj) {
                    shared.emit(Observation::Applied(observed)).await?;
                }
            }
            Ok(watcher::Event::Delete(obj)) => {
                if let Some(uid) = obj.meta().uid.clone() {
                    shared.emit(Observation::Deleted { kind, uid }).await?;
                }
            }
            Err(error) if not_served(&error) => {
                if *absent {
                    tracing::debug!(kind = kind.kube_kind(), "still not served");
                }
                return Ok(Ended::NotServed);
            }
            Err(error) => {
                metrics::watch_error(kind);
                tracing::warn!(kind = kind.kube_kind(), %error, "watch failed; retrying with back-off");
            }
        }
    }
    Ok(Ended::Stream)
}

/// Whether the API server answered that it does not serve the resource at all (404 to a list or
/// a watch): a CRD not installed, or deleted.
fn not_served(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.is_not_found(),
        watcher::Error::WatchError(status) => status.is_not_found(),
        _ => false,
    }
}

/// The observation of `obj`, telling the operators what of it was left out as unusable.
fn observed<K: Observe>(obj: &K) -> Option<ObservedObject> {
    let observed = observe(obj)?;
    for dropped in obj.dropped() {
        metrics::dropped(K::KIND, &dropped);
        tracing::warn!(
            kind = K::KIND.kube_kind(), name = %observed.name, problem = %dropped,
            "left out an unusable part"
        );
    }
    Some(observed)
}

impl Shared {
    /// After a (re)list that began at `started`: the resync of `listed`, acknowledged.
    async fn relisted(
        &self,
        kind: ResourceKind,
        started: Instant,
        listed: BTreeMap<String, ObservedObject>,
    ) -> Result<(), Closed> {
        let count = listed.len();
        let sent = self.resync(kind, listed).await?;
        metrics::resynced(kind, started.elapsed());
        self.status.synced(kind);
        tracing::info!(
            kind = kind.kube_kind(), listed = count, sent, took = ?started.elapsed(),
            "resync acknowledged"
        );
        Ok(())
    }

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
