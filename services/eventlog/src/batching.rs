//! Gathering queued work into batches, twice on the way to the log: a follower gathers its
//! clients' appends into batches for the leader, and the leader gathers its own clients' appends
//! and the batches followers hand over into Raft entries.
//!
//! A batch never waits for work to come: it takes what is queued when one of its `in_flight`
//! slots is free, so an append to an idle log goes on at once, alone. While every slot is taken,
//! work piles up in the queue and the next batch takes all of it (up to its limits). That is
//! where the throughput comes from: one fsync and one round trip per entry, not per append, and
//! entries grow with the load.

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Work that can be gathered into a batch.
pub(crate) trait Batchable {
    /// How many appends it holds.
    fn appends(&self) -> usize;
    /// Its events' bytes, roughly.
    fn bytes(&self) -> usize;
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct BatchLimits {
    /// Batches handed to `decide` and not yet decided.
    pub(crate) in_flight: usize,
    /// A batch closes once it holds this many appends, or this many bytes.
    pub(crate) max_appends: usize,
    pub(crate) max_bytes: usize,
}

/// Gathers `queue` into batches and has each decided by `decide`, until `stop`.
pub(crate) async fn run<T, F, Fut>(
    mut queue: mpsc::Receiver<T>,
    limits: BatchLimits,
    stop: CancellationToken,
    decide: F,
) where
    T: Batchable,
    F: Fn(Vec<T>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.in_flight));
    loop {
        let slot = tokio::select! {
            _ = stop.cancelled() => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let first = tokio::select! {
            _ = stop.cancelled() => break,
            first = queue.recv() => match first {
                Some(first) => first,
                None => break,
            },
        };
        let deciding = decide(gather(first, &mut queue, &limits));
        tokio::spawn(async move {
            deciding.await;
            drop(slot);
        });
    }
}

/// `first` and the work queued behind it, up to a batch's limits.
fn gather<T: Batchable>(first: T, queue: &mut mpsc::Receiver<T>, limits: &BatchLimits) -> Vec<T> {
    let (mut appends, mut bytes) = (first.appends(), first.bytes());
    let mut batch = vec![first];
    while appends < limits.max_appends && bytes < limits.max_bytes {
        let Ok(next) = queue.try_recv() else { break };
        appends += next.appends();
        bytes += next.bytes();
        batch.push(next);
    }
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Work of `.0` appends and `.1` bytes.
    struct Work(usize, usize);

    impl Batchable for Work {
        fn appends(&self) -> usize {
            self.0
        }
        fn bytes(&self) -> usize {
            self.1
        }
    }

    const LIMITS: BatchLimits = BatchLimits {
        in_flight: 2,
        max_appends: 256,
        max_bytes: 1_000,
    };

    #[test]
    fn a_batch_takes_what_is_queued_up_to_its_limits() {
        let (sender, mut queue) = mpsc::channel(1_000);
        for _ in 0..300 {
            assert!(sender.try_send(Work(1, 1)).is_ok());
        }
        let first = queue.try_recv().unwrap();
        assert_eq!(gather(first, &mut queue, &LIMITS).len(), 256);
        let first = queue.try_recv().unwrap();
        assert_eq!(gather(first, &mut queue, &LIMITS).len(), 300 - 256);

        for _ in 0..3 {
            assert!(sender.try_send(Work(100, 1)).is_ok());
        }
        let first = queue.try_recv().unwrap();
        assert_eq!(
            gather(first, &mut queue, &LIMITS).len(),
            3,
            "counts appends"
        );

        for _ in 0..3 {
            assert!(sender.try_send(Work(1, 600)).is_ok());
        }
        let first = queue.try_recv().unwrap();
        assert_eq!(
            gather(first, &mut queue, &LIMITS).len(),
            2,
            "closed by size"
        );
    }

    /// The clock is paused: had the batcher waited for a timer, tokio would have moved the clock
    /// on to fire it.
    #[tokio::test(start_paused = true)]
    async fn an_idle_batcher_goes_at_once_and_a_busy_one_batches_what_queued_meanwhile() {
        let (sender, queue) = mpsc::channel(100);
        let (proposed, mut proposals) = mpsc::unbounded_channel();
        let decided = Arc::new(Semaphore::new(0));
        let stop = CancellationToken::new();
        let gate = decided.clone();
        let batcher = tokio::spawn(run(queue, LIMITS, stop.clone(), move |batch| {
            proposed.send(batch.len()).unwrap();
            let gate = gate.clone();
            async move { gate.acquire().await.unwrap().forget() }
        }));
        let started = tokio::time::Instant::now();

        for _ in 0..LIMITS.in_flight {
            assert!(sender.try_send(Work(1, 1)).is_ok());
            assert_eq!(
                proposals.recv().await,
                Some(1),
                "an idle batcher goes alone"
            );
        }
        for _ in 0..5 {
            assert!(sender.try_send(Work(1, 1)).is_ok());
        }
        tokio::task::yield_now().await;
        assert!(proposals.try_recv().is_err(), "no slot is free");
        decided.add_permits(1);
        assert_eq!(proposals.recv().await, Some(5), "what queued meanwhile");
        assert_eq!(tokio::time::Instant::now(), started);

        stop.cancel();
        batcher.await.unwrap();
    }
}
