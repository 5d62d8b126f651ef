//! What inventory knows of each clusterlink from the bus rather than from the log: when it was
//! last heard from, and whether its last report was committed. Not logged (a heartbeat every few
//! seconds per cluster would flood the log); each replica keeps its own, from the heartbeats it
//! receives (all of them: heartbeats are not shared out in a queue group).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bulkhead_schema::messages::inventory::SyncState;

use crate::views::Presence;

#[derive(Debug)]
pub(crate) struct Presences {
    online_period: Duration,
    clusters: HashMap<String, Seen>,
}

#[derive(Debug)]
struct Seen {
    heartbeat_at: Option<Instant>,
    /// The current connection is in the log (`ClusterConnected` committed since it came online).
    connection_logged: bool,
    last_report_committed: bool,
}

impl Presences {
    pub(crate) fn new(online_period: Duration) -> Self {
        Presences {
            online_period,
            clusters: HashMap::new(),
        }
    }

    fn seen(&mut self, cluster_id: &str) -> &mut Seen {
        self.clusters.entry(cluster_id.to_owned()).or_insert(Seen {
            heartbeat_at: None,
            connection_logged: false,
            last_report_committed: true,
        })
    }

    fn online(&self, seen: &Seen, now: Instant) -> bool {
        seen.heartbeat_at
            .is_some_and(|at| now.saturating_duration_since(at) <= self.online_period)
    }

    /// Records a heartbeat of a verified cluster. True when the cluster comes online (or its
    /// connection is not logged yet): the caller logs `ClusterConnected` and reports back with
    /// [`Presences::connection_logged`].
    pub(crate) fn heartbeat(&mut self, cluster_id: &str, now: Instant) -> bool {
        let was_online = self
            .clusters
            .get(cluster_id)
            .is_some_and(|seen| self.online(seen, now) && seen.connection_logged);
        let seen = self.seen(cluster_id);
        seen.heartbeat_at = Some(now);
        if !was_online {
            seen.connection_logged = false;
        }
        !was_online
    }

    pub(crate) fn connection_logged(&mut self, cluster_id: &str) {
        self.seen(cluster_id).connection_logged = true;
    }

    pub(crate) fn report(&mut self, cluster_id: &str, committed: bool) {
        self.seen(cluster_id).last_report_committed = committed;
    }

    pub(crate) fn presence(&self, cluster_id: &str, now: Instant) -> Presence {
        let Some(seen) = self.clusters.get(cluster_id) else {
            return Presence {
                online: false,
                sync_state: SyncState::OutOfSync,
            };
        };
        let online = self.online(seen, now);
        Presence {
            online,
            sync_state: if online && seen.last_report_committed {
                SyncState::InSync
            } else {
                SyncState::OutOfSync
            },
        }
    }

    /// Forgets a deleted cluster.
    pub(crate) fn forget(&mut self, cluster_id: &str) {
        self.clusters.remove(cluster_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = Duration::from_secs(60);

    #[test]
    fn a_cluster_never_heard_from_is_offline_and_out_of_sync() {
        let presences = Presences::new(PERIOD);
        let presence = presences.presence("c1", Instant::now());
        assert!(!presence.online);
        assert_eq!(presence.sync_state, SyncState::OutOfSync);
    }

    #[test]
    fn heartbeats_keep_a_cluster_online_for_the_period() {
        let mut presences = Presences::new(PERIOD);
        let t0 = Instant::now();
        assert!(presences.heartbeat("c1", t0), "coming online is logged");
        presences.connection_logged("c1");
        assert_eq!(
            presences.presence("c1", t0 + PERIOD),
            Presence {
                online: true,
                sync_state: SyncState::InSync
            }
        );
        assert!(
            !presences.heartbeat("c1", t0 + PERIOD),
            "a heartbeat while online is not logged"
        );
        let later = t0 + 2 * PERIOD + Duration::from_secs(1);
        assert!(!presences.presence("c1", later).online);
        assert_eq!(
            presences.presence("c1", later).sync_state,
            SyncState::OutOfSync
        );
        assert!(presences.heartbeat("c1", later), "back online is logged");
    }

    #[test]
    fn an_unlogged_connection_is_logged_again_on_the_next_heartbeat() {
        let mut presences = Presences::new(PERIOD);
        let t0 = Instant::now();
        assert!(presences.heartbeat("c1", t0));
        // the append failed: connection_logged was not called
        assert!(presences.heartbeat("c1", t0 + Duration::from_secs(1)));
        presences.connection_logged("c1");
        assert!(!presences.heartbeat("c1", t0 + Duration::from_secs(2)));
    }

    #[test]
    fn an_uncommitted_report_puts_an_online_cluster_out_of_sync() {
        let mut presences = Presences::new(PERIOD);
        let t0 = Instant::now();
        presences.heartbeat("c1", t0);
        presences.report("c1", false);
        let presence = presences.presence("c1", t0);
        assert!(presence.online);
        assert_eq!(presence.sync_state, SyncState::OutOfSync);
        presences.report("c1", true);
        assert_eq!(presences.presence("c1", t0).sync_state, SyncState::InSync);
        presences.forget("c1");
        assert!(!presences.presence("c1", t0).online);
    }
}
