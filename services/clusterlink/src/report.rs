//! The one queue between the watchers and inventory: observations are batched into reports and
//! sent one report at a time, so that inventory sees each object's changes in order.

use std::sync::Arc;
use std::time::Duration;

use bulkhead_schema::messages::inventory::Observation;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};

use crate::batch::Batch;
use crate::uplink::Uplink;

/// Bounded, so that a stalled inventory stalls the watchers (the API server holds or expires
/// their events) instead of filling this process's memory.
const QUEUE_LEN: usize = 4_096;

#[allow(
    clippy::large_enum_variant,
    reason = "nearly every item is an observation: boxing would only add an allocation to each"
)]
pub enum Item {
    Observation(Observation),
    /// Answered once everything queued before it is acknowledged.
    Barrier(oneshot::Sender<()>),
}

/// The reporter is gone: clusterlink is stopping.
#[derive(Debug)]
pub struct Closed;

/// The watchers' end of the queue.
#[derive(Clone)]
pub struct Reports {
    queue: mpsc::Sender<Item>,
}

pub fn queue() -> (Reports, mpsc::Receiver<Item>) {
    let (queue, receiver) = mpsc::channel(QUEUE_LEN);
    (Reports { queue }, receiver)
}

impl Reports {
    pub async fn send(&self, observation: Observation) -> Result<(), Closed> {
        self.queue
            .send(Item::Observation(observation))
            .await
            .map_err(|_| Closed)
    }

    /// Resolves once inventory has acknowledged everything sent before.
    pub async fn acknowledged(&self) -> Result<(), Closed> {
        let (done, acknowledged) = oneshot::channel();
        self.queue
            .send(Item::Barrier(done))
            .await
            .map_err(|_| Closed)?;
        acknowledged.await.map_err(|_| Closed)
    }
}

/// Bounds of one report.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub count: usize,
    pub bytes: usize,
    /// How long the first observation waits for others.
    pub linger: Duration,
}

/// Sends what the watchers queue, report after report, until the queue closes.
pub async fn deliver(mut queue: mpsc::Receiver<Item>, uplink: Arc<Uplink>, limits: Limits) {
    let mut carried = None;
    loop {
        let first = match carried.take() {
            Some(observation) => observation,
            None => match queue.recv().await {
                None => return,
                // everything before it was acknowledged with the previous report
                Some(Item::Barrier(done)) => {
                    let _ = done.send(());
                    continue;
                }
                Some(Item::Observation(observation)) => observation,
            },
        };
        let mut batch = Batch::new(first, limits.count, limits.bytes);
        let mut barrier = None;
        let deadline = Instant::now() + limits.linger;
        while !batch.is_full() {
            tokio::select! {
                // what is queued already joins the report even when the linger is over
                biased;
                item = queue.recv() => match item {
                    Some(Item::Observation(observation)) => {
                        carried = batch.push(observation);
                        if carried.is_some() {
                            break;
                        }
                    }
                    Some(Item::Barrier(done)) => {
                        barrier = Some(done);
                        break;
                    }
                    None => break,
                },
                () = sleep_until(deadline) => break,
            }
        }
        uplink.report(batch.into_observations()).await;
        if let Some(done) = barrier {
            let _ = done.send(());
        }
    }
}
