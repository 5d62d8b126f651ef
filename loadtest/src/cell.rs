//! One cell of an append benchmark: N clients, each appending one event at a time back to back,
//! against one system for a bounded time and count. Every system under test implements
//! [`AppendTarget`], so Bulkhead and its floors are driven by the same loop and measured the
//! same way.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use hdrhistogram::Histogram;
use tokio::task::JoinSet;

/// Why an append did not go through.
#[derive(Debug)]
pub enum Failure {
    /// The system may not have decided (a timeout, no leader, no responder): the client retries
    /// with the same key, as a real client must.
    Retry(String),
    /// The workload or the system is broken; the cell stops.
    Fatal(String),
}

/// A system appends can be measured against.
pub trait AppendTarget: Send + Sync + 'static {
    /// Appends one event holding `payload` for client `client` and returns once the system
    /// acknowledged it. `key` is unique per append and repeated on its retries (an idempotency
    /// key, for systems that have them).
    fn append(
        &self,
        client: usize,
        key: &str,
        payload: Bytes,
    ) -> impl Future<Output = Result<(), Failure>> + Send;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cell {
    pub event_bytes: usize,
    pub clients: usize,
}

#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Appends sent before the window opens are not measured: connections, batching and caches
    /// settle first.
    pub warmup: Duration,
    pub window: Duration,
    /// No append is issued after this many, whatever the time.
    pub max_appends: u64,
    /// An append not acknowledged within this, retries included, counts as failed.
    pub give_up_after: Duration,
}

/// One acknowledged append.
#[derive(Debug, Clone, Copy)]
pub struct Ack {
    pub client: usize,
    /// When the attempt that was acknowledged was sent (the last one, when there were retries).
    pub attempt_sent: Instant,
    pub acked: Instant,
}

pub struct CellResult {
    pub cell: Cell,
    /// Appends acknowledged per second in the window.
    pub throughput: f64,
    /// Microseconds from the first attempt of an append sent in the window to its
    /// acknowledgement: retries count against the system, as a client sees them.
    pub latency: Histogram<u64>,
    pub retries: u64,
    pub failed: u64,
    /// Why the last attempt that was not acknowledged failed (retried or not), to tell a slow
    /// system from one that said no.
    pub last_failure: Option<String>,
    /// Every acknowledgement, grouped by client.
    pub acks: Vec<Ack>,
}

impl CellResult {
    pub fn p50_us(&self) -> u64 {
        self.latency.value_at_quantile(0.50)
    }

    pub fn p99_us(&self) -> u64 {
        self.latency.value_at_quantile(0.99)
    }
}

/// A failed client waits this long before retrying, so that a system without a leader is not
/// flooded; it also bounds how precisely a recovery is timed.
const RETRY_PAUSE: Duration = Duration::from_millis(20);

/// Runs `cell` against `target`. `label` makes the cell's keys unique among all cells that
/// share a system.
pub async fn run_cell<T: AppendTarget>(
    target: &Arc<T>,
    cell: Cell,
    bounds: Bounds,
    label: &str,
) -> anyhow::Result<CellResult> {
    let payload = Bytes::from(vec![0xA5; cell.event_bytes]);
    let window_opens = Instant::now() + bounds.warmup;
    let stop_issuing = window_opens + bounds.window;
    let issued = Arc::new(AtomicU64::new(0));
    let mut clients = JoinSet::new();
    for client in 0..cell.clients {
        let client_run = ClientRun {
            target: Arc::clone(target),
            client,
            payload: payload.clone(),
            label: label.to_owned(),
            issued: Arc::clone(&issued),
            window_opens,
            stop_issuing,
            bounds,
        };
        clients.spawn(client_run.run());
    }

    let mut result = CellResult {
        cell,
        throughput: 0.0,
        latency: new_histogram()?,
        retries: 0,
        failed: 0,
        last_failure: None,
        acks: Vec::new(),
    };
    let mut window_closes = stop_issuing;
    // Dropping the set on an early return aborts the other clients.
    while let Some(joined) = clients.join_next().await {
        let log = joined.context("a client task panicked")??;
        result.latency.add(&log.latency)?;
        result.retries += log.retries;
        result.failed += log.failed;
        result.last_failure = log.last_failure.or(result.last_failure);
        result.acks.extend(log.acks);
        window_closes = window_closes.min(log.stopped_issuing);
    }
    if window_closes <= window_opens {
        bail!(
            "the cell reached its cap of {} appends before its window opened",
            bounds.max_appends
        );
    }
    let in_window = result
        .acks
        .iter()
        .filter(|a| a.acked >= window_opens && a.acked <= window_closes)
        .count();
    result.throughput = in_window as f64 / (window_closes - window_opens).as_secs_f64();
    Ok(result)
}

fn new_histogram() -> anyhow::Result<Histogram<u64>> {
    // 1 µs to 1 min at 3 significant digits.
    Ok(Histogram::new_with_bounds(1, 60_000_000, 3)?)
}

struct ClientRun<T> {
    target: Arc<T>,
    client: usize,
    payload: Bytes,
    label: String,
    issued: Arc<AtomicU64>,
    window_opens: Instant,
    stop_issuing: Instant,
    bounds: Bounds,
}

struct ClientLog {
    latency: Histogram<u64>,
    retries: u64,
    failed: u64,
    last_failure: Option<String>,
    acks: Vec<Ack>,
    stopped_issuing: Instant,
}

impl<T: AppendTarget> ClientRun<T> {
    async fn run(self) -> anyhow::Result<ClientLog> {
        let mut log = ClientLog {
            latency: new_histogram()?,
            retries: 0,
            failed: 0,
            last_failure: None,
            acks: Vec::new(),
            stopped_issuing: self.stop_issuing,
        };
        // Bounded by `stop_issuing` and by the shared count.
        for n in 0u64.. {
            let first_sent = Instant::now();
            if first_sent >= self.stop_issuing
                || self.issued.fetch_add(1, Ordering::Relaxed) >= self.bounds.max_appends
            {
                log.stopped_issuing = first_sent;
                break;
            }
            let key = format!("{}-{}-{n}", self.label, self.client);
            // Even a system that never answers cannot hold a client past this.
            let give_up_at = tokio::time::Instant::from_std(first_sent + self.bounds.give_up_after);
            loop {
                let attempt_sent = Instant::now();
                let attempt = self.target.append(self.client, &key, self.payload.clone());
                let outcome = tokio::time::timeout_at(give_up_at, attempt)
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure::Retry(format!(
                            "no answer within {:?}",
                            self.bounds.give_up_after
                        )))
                    });
                match outcome {
                    Ok(()) => {
                        let acked = Instant::now();
                        if first_sent >= self.window_opens {
                            let micros = (acked - first_sent).as_micros();
                            log.latency
                                .saturating_record(u64::try_from(micros).unwrap_or(u64::MAX));
                        }
                        log.acks.push(Ack {
                            client: self.client,
                            attempt_sent,
                            acked,
                        });
                        break;
                    }
                    Err(Failure::Retry(reason)) => {
                        if first_sent.elapsed() >= self.bounds.give_up_after {
                            log.failed += 1;
                            log.last_failure = Some(reason);
                            break;
                        }
                        log.retries += 1;
                        log.last_failure = Some(reason);
                        tokio::time::sleep(RETRY_PAUSE).await;
                    }
                    Err(Failure::Fatal(reason)) => {
                        bail!("client {}, append {key}: {reason}", self.client)
                    }
                }
            }
        }
        Ok(log)
    }
}
