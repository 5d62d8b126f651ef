//! Leader-kill recovery: clients append back to back to 3 replicas, the leader is SIGKILLed,
//! and the benchmark times how long the log takes to acknowledge appends again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_loadtest::cell::{Bounds, Cell, CellResult, run_cell};

use crate::replicas::Replicas;
use crate::targets::BulkheadLog;

/// One leader kill and what the clients saw.
pub struct Kill {
    pub leader: u64,
    /// From the kill to the first acknowledgement of an attempt sent after it: when the log
    /// accepts appends again.
    pub first_ack: Option<Duration>,
    /// From the kill until every client had an attempt sent after the kill acknowledged; it
    /// includes the client's wait for the attempts lost with the leader (the attempt timeout).
    pub all_clients: Option<Duration>,
    pub failed: u64,
}

pub struct Plan {
    pub kills: usize,
    pub clients: usize,
    /// Clients append this long before the kill, so that the kill lands under load.
    pub before_kill: Duration,
    /// And this long after it.
    pub after_kill: Duration,
    pub catch_up_within: Duration,
}

pub async fn measure(
    replicas: &mut Replicas,
    target: &Arc<BulkheadLog>,
    plan: &Plan,
) -> anyhow::Result<Vec<Kill>> {
    let mut kills = Vec::with_capacity(plan.kills);
    for round in 0..plan.kills {
        let leader = replicas.leader(Duration::from_secs(10)).await?;
        let cell = Cell {
            event_bytes: 256,
            clients: plan.clients,
        };
        let bounds = Bounds {
            warmup: Duration::ZERO,
            window: plan.before_kill + plan.after_kill,
            max_appends: u64::MAX,
            give_up_after: plan.after_kill,
        };
        let label = format!("kill-{round}");
        let killer = async {
            tokio::time::sleep(plan.before_kill).await;
            replicas.kill(leader)
        };
        let (appended, killed_at) = tokio::join!(run_cell(target, cell, bounds, &label), killer);
        let (appended, killed_at) = (appended?, killed_at?);
        let kill = timings(leader, &appended, killed_at);
        eprintln!(
            "  kill {}: leader {leader}, appends acknowledged again after {}, all {} clients after {}",
            round + 1,
            show(kill.first_ack),
            plan.clients,
            show(kill.all_clients),
        );
        kills.push(kill);
        replicas.restart(leader, plan.catch_up_within).await?;
    }
    Ok(kills)
}

fn timings(leader: u64, appended: &CellResult, killed_at: Instant) -> Kill {
    let after_kill = || {
        appended
            .acks
            .iter()
            .filter(move |a| a.attempt_sent >= killed_at)
    };
    let first_ack = after_kill().map(|a| a.acked - killed_at).min();
    let clients = appended.cell.clients;
    let mut per_client: Vec<Option<Instant>> = vec![None; clients];
    for ack in after_kill() {
        let first = &mut per_client[ack.client];
        *first = Some(first.map_or(ack.acked, |f| f.min(ack.acked)));
    }
    let all_clients = per_client
        .iter()
        .copied()
        .collect::<Option<Vec<_>>>()
        .and_then(|firsts| firsts.into_iter().max())
        .map(|last| last - killed_at);
    Kill {
        leader,
        first_ack,
        all_clients,
        failed: appended.failed,
    }
}

/// A duration in milliseconds, or why there is none.
pub fn show(duration: Option<Duration>) -> String {
    duration.map_or_else(
        || "not within the run".into(),
        |d| format!("{} ms", d.as_millis()),
    )
}
