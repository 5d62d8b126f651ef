//! The event log as a benchmark sees it: one stream's committed events followed as they are
//! published, and appends made directly, the floor under any service's path through the log.

use std::time::Instant;

use anyhow::bail;
use bulkhead_runtime::bus::TypedBus;
use bulkhead_schema::Subject;
use bulkhead_schema::messages::eventlog::{
    AppendOutcome, AppendReply, AppendRequest, CommittedEvents, ExpectedVersion, NewEvent,
    ReadReply, ReadStreamRequest, RecordedEvent,
};

use crate::control_plane::REQUEST_TIMEOUT;

/// The stream floor appends go to: one no service reads.
const FLOOR_STREAM: &str = "bench/floor";
/// Events asked for per read when filling a gap.
const READ_PAGE: u32 = 1000;

/// Hands `on_events` every event of `stream`, in stream order and each once, with when it
/// arrived: as the log publishes committed events, and, read back from the log, what was
/// committed before the subscription and what it missed (a slow subscriber loses messages),
/// arriving when read, so that a gap never makes a figure look better. Runs until the
/// subscription ends.
pub async fn follow_stream(
    bus: TypedBus,
    stream: String,
    mut on_events: impl FnMut(Vec<RecordedEvent>, Instant),
) -> anyhow::Result<()> {
    let mut subscription = bus
        .subscribe::<CommittedEvents>(&Subject::eventlog_committed())
        .await?;
    let mut version = read_stream(&bus, &stream, 0, u64::MAX, &mut on_events).await?;
    while let Some(received) = subscription.next().await {
        let arrived = Instant::now();
        let ours: Vec<RecordedEvent> = received
            .message
            .events
            .into_iter()
            .filter(|e| e.stream == stream && e.stream_version > version)
            .collect();
        let (Some(first), Some(last)) = (ours.first(), ours.last()) else {
            continue;
        };
        let (first, last) = (first.stream_version, last.stream_version);
        if first > version + 1 {
            read_stream(&bus, &stream, version, first - 1, &mut on_events).await?;
        }
        version = last;
        on_events(ours, arrived);
    }
    Ok(())
}

/// Reads `stream` after version `after` up to `through` (or its end), handing each page to
/// `on_events`; returns the last version read.
async fn read_stream(
    bus: &TypedBus,
    stream: &str,
    mut after: u64,
    through: u64,
    on_events: &mut impl FnMut(Vec<RecordedEvent>, Instant),
) -> anyhow::Result<u64> {
    while after < through {
        let request = ReadStreamRequest {
            stream: stream.to_owned(),
            from_version: after + 1,
            limit: READ_PAGE.min(u32::try_from(through - after).unwrap_or(u32::MAX)),
        };
        let reply = bus
            .request::<ReadStreamRequest, ReadReply>(
                &Subject::eventlog_read_stream(),
                &request,
                REQUEST_TIMEOUT,
            )
            .await?
            .message;
        let events = match reply {
            ReadReply::Events { events, .. } => events,
            ReadReply::Unavailable { reason } => bail!("reading {stream}: {reason}"),
        };
        let Some(last) = events.last() else {
            break;
        };
        after = last.stream_version;
        on_events(events, Instant::now());
    }
    Ok(after)
}

/// Appends `events` straight to the log, on a stream of the benchmark's own, under `key`.
pub async fn append_floor(bus: &TypedBus, key: &str, events: Vec<NewEvent>) -> anyhow::Result<()> {
    append_to(bus, FLOOR_STREAM, key, events).await
}

/// Appends `events` to `stream` under `key`, whatever the stream's version, as a service
/// that does not own it would.
pub async fn append_to(
    bus: &TypedBus,
    stream: &str,
    key: &str,
    events: Vec<NewEvent>,
) -> anyhow::Result<()> {
    let request = AppendRequest {
        stream: stream.into(),
        expected_version: ExpectedVersion::Any,
        idempotency_key: key.to_owned(),
        events,
    };
    match bus
        .request::<AppendRequest, AppendReply>(
            &Subject::eventlog_append(),
            &request,
            REQUEST_TIMEOUT,
        )
        .await?
        .message
    {
        AppendReply::Decided(AppendOutcome::Appended { .. }) => Ok(()),
        other => bail!("append {key} to {stream}: {other:?}"),
    }
}
