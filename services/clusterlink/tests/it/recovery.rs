//! At-least-once delivery, resync after a restart or an expired watch, rejected credentials.

use std::sync::Arc;

use bulkhead_kubesim::Kind;
use bulkhead_runtime::bus::{InProcessBus, TypedBus};
use bulkhead_schema::messages::health::ServiceState;
use bulkhead_schema::messages::inventory::{Observation, ReportAck, ResourceKind};

use crate::common::{Env, as_changes, bounded, difference, eventually, metric_line_with, pod, uid};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_and_unavailable_requests_are_retried_and_nothing_is_lost() {
    bounded(async {
        let env = Env::unanswered(TypedBus::new(Arc::new(InProcessBus::default()))).await;
        let unavailable = || ReportAck::Unavailable {
            reason: "the log has no leader".into(),
        };
        env.recorder
            .lock()
            .script
            .extend([unavailable(), unavailable()]);
        let link = env.link();

        // nobody answers: digests are asked again and again
        eventually("digest requests retried for want of responders", || {
            metric_line_with(&[
                "bulkhead_clusterlink_requests_retried_total",
                "request=\"digest\"",
                "reason=\"no_responders\"",
            ])
        })
        .await;
        assert_eq!(link.health.state().0, ServiceState::Starting);

        env.recorder.answer(&env.bus).await;
        link.state_is(ServiceState::Ready).await;
        assert_eq!(env.recorder.objects(), env.expected(), "nothing lost");
        let reports = env.recorder.lock().reports.clone();
        assert_eq!(
            reports[0], reports[1],
            "the same report, same id, sent again"
        );
        assert_eq!(reports[1], reports[2]);
        assert!(
            reports[3..]
                .iter()
                .all(|r| r.report_id != reports[0].report_id),
            "not sent again once accepted"
        );
        let applied = env.recorder.applied();
        assert_eq!(
            applied[..reports[0].observations.len()],
            reports[0].observations[..]
        );
        link.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_sends_only_what_changed_while_away() {
    bounded(async {
        let env = Env::start().await;
        env.sim.apply(pod("shop", "solo")).unwrap();
        let link = env.link();
        link.state_is(ServiceState::Ready).await;
        env.converged("the first sync").await;
        link.stop().await;

        let before = env.recorder.objects();
        let mark = env.recorder.applied().len();
        let digests = env.recorder.lock().digests.len();
        let solo = uid(&env.sim.get(Kind::Pod, "shop", "solo").unwrap());
        let backend = uid(&env.sim.get(Kind::Deployment, "shop", "backend").unwrap());
        env.sim.delete(Kind::Pod, "shop", "solo").unwrap();
        // its replica set and pods go with it, its service's endpoints change
        env.sim.delete(Kind::Deployment, "shop", "backend").unwrap();
        env.sim.apply(pod("shop", "newcomer-1")).unwrap();
        env.sim.apply(pod("payments", "newcomer-2")).unwrap();
        let after = env.expected();

        let link = env.link();
        link.state_is(ServiceState::Ready).await;
        assert_eq!(env.recorder.objects(), after, "converged, nothing stale");
        let sent = env.recorder.applied()[mark..].to_vec();
        let changes = difference(&before, &after);
        assert_eq!(as_changes(&sent), changes, "exactly the differences");
        assert_eq!(sent.len(), changes.len(), "each once");
        for (kind, uid) in [
            (ResourceKind::Pod, solo),
            (ResourceKind::Deployment, backend),
        ] {
            assert!(
                sent.contains(&Observation::Deleted { kind, uid }),
                "{kind:?} deleted"
            );
        }
        assert_eq!(
            env.recorder.lock().digests.len() - digests,
            ResourceKind::ALL.len(),
            "one digest page per kind"
        );
        link.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_watch_relists_and_converges() {
    bounded(async {
        let env = Env::start().await;
        let link = env.link();
        link.state_is(ServiceState::Ready).await;
        env.converged("the first sync").await;
        let before = env.recorder.objects();
        let mark = env.recorder.applied().len();
        let digests = env.recorder.lock().digests.len();

        // changes around a compaction: the watches may or may not see them before their 410
        env.sim.delete(Kind::Deployment, "shop", "backend").unwrap();
        env.sim.expire_history();
        env.sim.apply(pod("shop", "after-expiry")).unwrap();

        let recorder = env.recorder.clone();
        eventually("every kind to re-list and resync", || {
            recorder.lock().digests.len() >= digests + ResourceKind::ALL.len()
        })
        .await;
        env.converged("convergence after the 410").await;
        link.state_is(ServiceState::Ready).await;
        let changed = difference(&before, &env.expected());
        let sent = as_changes(&env.recorder.applied()[mark..]);
        assert!(
            sent.keys().all(|key| changed.contains_key(key)),
            "the relist sent only what changed: {:?}",
            sent.keys()
                .filter(|k| !changed.contains_key(*k))
                .collect::<Vec<_>>()
        );
        assert!(metric_line_with(&[
            "bulkhead_clusterlink_watch_errors_total"
        ]));
        link.stop().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_credentials_degrade_health_until_fixed() {
    bounded(async {
        let env = Env::start().await;
        env.recorder.lock().token = "rotated".into();
        let link = env.link();
        link.state_is(ServiceState::Degraded).await;
        let detail = link.health.state().1.unwrap();
        assert!(
            detail.contains("unauthorized") && detail.contains("wrong cluster id or token"),
            "{detail}"
        );
        assert!(env.recorder.objects().is_empty(), "nothing applied");
        assert!(metric_line_with(&[
            "bulkhead_clusterlink_rejections_total",
            "kind=\"unauthorized\"",
        ]));

        // inventory takes the token again (the cluster re-paired): clusterlink recovers alone
        env.recorder.lock().token = crate::common::TOKEN.into();
        link.state_is(ServiceState::Ready).await;
        env.converged("the sync after the fix").await;
        link.stop().await;
    })
    .await;
}
