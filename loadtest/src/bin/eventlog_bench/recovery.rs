//! Leader-kill recovery: clients append back to back to 3 replicas, the leader is SIGKILLed,
//! and the benchmark times how long the log takes to elect a new leader and to acknowledge
//! appends again.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bulkhead_loadtest::cell::{Bounds, Cell, CellResult, run_cell};

use crate::replicas::Replicas;
use crate::targets::BulkheadLog;

/// How long a client waits for one attempt during recovery. Attempts sent to the killed
/// leader are never answered, so a client notices only when this passes: it is short here so
/// that the figure measures the log, not the client's patience.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(200);

/// One leader kill and what the clients saw.
pub struct Kill {
    pub leader: u64,
    /// From the kill until a surviving replica said it was the leader.
    pub new_leader: Option<Duration>,
    /// From the kill to the first acknowledgement of an attempt sent after it: when the log
    /// accepts appends again.
    pub first_ack: Option<Duration>,
    /// From the kill until every client had an attempt sent after the kill acknowledged.
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

pub async fn measure(replicas: &mut Replicas, plan: &Plan) -> anyhow::Result<Vec<Kill>> {
    let target = Arc::new(BulkheadLog::connect(&replicas.nats_url(), ATTEMPT_TIMEOUT).await?);
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
            let killed_at = replicas.kill(leader)?;
            let elected = replicas.leader(plan.after_kill).await.ok();
            anyhow::Ok((killed_at, elected.map(|_| killed_at.elapsed())))
        };
        let (appended, killed) = tokio::join!(run_cell(&target, cell, bounds, &label), killer);
        let (appended, (killed_at, new_leader)) = (appended?, killed?);
        let kill = timings(leader, new_leader, &appended, killed_at);
        eprintln!(
            "  kill {}: leader {leader}; new leader after {}, appends acknowledged again after {}, \
             by all {} clients after {}",
            round + 1,
            show(kill.new_leader),
            show(kill.first_ack),
            plan.clients,
            show(kill.all_clients),
        );
        kills.push(kill);
        replicas.restart(leader, plan.catch_up_within).await?;
    }
    Ok(kills)
}

fn timings(
    leader: u64,
    new_leader: Option<Duration>,
    appended: &CellResult,
    killed_at: Instant,
) -> Kill {
    let after_kill = || {
        appended
            .acks
            .iter()
            .filter(move |a| a.attempt_sent >= killed_at)
    };
    let first_ack = after_kill().map(|a| a.acked - killed_at).min();
    let mut per_client: Vec<Option<Instant>> = vec![None; appended.cell.clients];
    for ack in after_kill() {
        let first = &mut per_client[ack.client];
        *first = Some(first.map_or(ack.acked, |f| f.min(ack.acked)));
    }
    let all_clients = per_client
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .and_then(|firsts| firsts.into_iter().max())
        .map(|last| last - killed_at);
    Kill {
        leader,
        new_leader,
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
