//! WATCH: a chunked stream of `{"type": ..., "object": ...}` lines per watcher.
//!
//! Each watcher is a task with its own cursor into its kind's history. A commit only bumps a
//! `tokio::sync::watch` value; the task wakes, copies the events after its cursor under the lock
//! and writes them outside it. A slow client stalls its own task only: when it falls behind the
//! retained history it gets `410 Expired`, as from the API server, and re-lists.

use std::{borrow::Cow, convert::Infallible, sync::Arc, time::Duration};

use axum::{
    body::{Body, Bytes},
    http::header,
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    api::{Filter, Params},
    error::Error,
    kinds::Kind,
    sim::Inner,
    store::{Event, EventType, Obj},
    table,
};

/// The API server's default watch timeout lies between 30 and 60 minutes.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1800);
/// Events per chunk written: bounds the memory a burst (a seed of 22,000 pods) holds at once.
const EVENTS_PER_CHUNK: usize = 500;

pub(crate) fn serve(
    inner: Arc<Inner>,
    kind: Kind,
    filter: Filter,
    params: &Params,
    table: bool,
) -> Response {
    // `resourceVersion` unset or "0" (and a streaming list) start from the current state, sent
    // as ADDED events; any other version resumes after it
    let from = match params.resource_version.as_deref() {
        None | Some("" | "0") => None,
        _ if params.send_initial_events() => None,
        Some(rv) => match rv.parse::<u64>() {
            Ok(rv) => Some(rv),
            Err(_) => {
                return Error::BadRequest(format!("invalid resourceVersion {rv:?}"))
                    .into_response();
            }
        },
    };
    let watcher = Watcher {
        inner,
        kind,
        filter,
        table,
        bookmarks: params.bookmarks(),
        initial_events_end: params.send_initial_events() && params.bookmarks(),
        timeout: params
            .timeout_seconds()
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs),
    };
    // a few chunks of slack; past that the task waits for this client alone
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(watcher.run(from, tx));
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<Bytes, Infallible>(chunk), rx))
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response()
}

struct Watcher {
    inner: Arc<Inner>,
    kind: Kind,
    filter: Filter,
    /// Objects as one-row Tables (`kubectl get -w`).
    table: bool,
    bookmarks: bool,
    initial_events_end: bool,
    timeout: Duration,
}

impl Watcher {
    async fn run(self, from: Option<u64>, tx: mpsc::Sender<Bytes>) {
        let deadline = tokio::time::sleep(self.timeout);
        tokio::pin!(deadline);
        // subscribed before reading, so that no commit falls between the read and the wait
        let (mut notify, mut cursor) = match from {
            Some(rv) => (self.inner.read(|c| c.store.subscribe(self.kind)), rv),
            None => {
                let (notify, rv, objects) = self.inner.read(|c| {
                    let objects: Vec<Arc<Obj>> = c
                        .store
                        .iter(self.kind, self.filter.namespace.as_deref(), None)
                        .filter(|o| self.filter.matches(&o.value))
                        .cloned()
                        .collect();
                    (c.store.subscribe(self.kind), c.store.rv(), objects)
                });
                for chunk in objects.chunks(EVENTS_PER_CHUNK) {
                    let mut out = Vec::new();
                    for obj in chunk {
                        line(&mut out, EventType::Added.as_str(), &self.object(obj));
                    }
                    if tx.send(out.into()).await.is_err() {
                        return;
                    }
                }
                if self.initial_events_end && tx.send(self.bookmark(rv, true)).await.is_err() {
                    return;
                }
                (notify, rv)
            }
        };
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + self.inner.bookmark_interval,
            self.inner.bookmark_interval,
        );
        let mut pending = from.is_some();
        let mut bookmark_due = false;
        loop {
            if pending || bookmark_due {
                let drained = self.inner.read(|c| {
                    c.store
                        .events_since(self.kind, cursor)
                        .map(|e| (e, c.store.rv()))
                });
                match drained {
                    Err(expired) => {
                        let mut out = Vec::new();
                        line(&mut out, "ERROR", expired.status().to_string().as_bytes());
                        let _ = tx.send(out.into()).await;
                        return;
                    }
                    Ok((events, rv)) => {
                        for chunk in events.chunks(EVENTS_PER_CHUNK) {
                            let out = self.render(chunk);
                            if !out.is_empty() && tx.send(out.into()).await.is_err() {
                                return;
                            }
                        }
                        // every change of this kind up to `rv` has been sent
                        cursor = cursor.max(rv);
                    }
                }
                if bookmark_due && tx.send(self.bookmark(cursor, false)).await.is_err() {
                    return;
                }
                (pending, bookmark_due) = (false, false);
            }
            tokio::select! {
                changed = notify.changed() => match changed {
                    Ok(()) => pending = true,
                    Err(_) => return,
                },
                _ = ticks.tick(), if self.bookmarks => bookmark_due = true,
                () = &mut deadline => return,
                () = self.inner.shutdown.cancelled() => return,
                () = tx.closed() => return,
            }
        }
    }

    /// The lines of the events this watcher selects. With a selector, an object entering the
    /// selection is ADDED and one leaving it DELETED, as from the API server.
    fn render(&self, events: &[Event]) -> Vec<u8> {
        let mut out = Vec::new();
        for event in events {
            let now_in = self.filter.matches(&event.obj.value);
            let was_in = event
                .prev
                .as_ref()
                .is_some_and(|p| self.filter.matches(&p.value));
            let kind = match (event.kind, was_in, now_in) {
                (EventType::Deleted, true, _) => EventType::Deleted,
                (EventType::Added, _, true) | (EventType::Modified, false, true) => {
                    EventType::Added
                }
                (EventType::Modified, true, true) => EventType::Modified,
                (EventType::Modified, true, false) => EventType::Deleted,
                _ => continue,
            };
            line(&mut out, kind.as_str(), &self.object(&event.obj));
        }
        out
    }

    fn object<'a>(&self, obj: &'a Arc<Obj>) -> Cow<'a, [u8]> {
        if self.table {
            let table = table::render(self.kind, obj.rv, None, std::slice::from_ref(obj));
            Cow::Owned(table.to_string().into_bytes())
        } else {
            Cow::Borrowed(&obj.raw)
        }
    }

    fn bookmark(&self, rv: u64, initial_events_end: bool) -> Bytes {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_events_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let object: Value = json!({ "kind": self.kind.name(), "apiVersion": self.kind.api_version(), "metadata": metadata });
        let mut out = Vec::new();
        line(&mut out, "BOOKMARK", object.to_string().as_bytes());
        out.into()
    }
}

fn line(out: &mut Vec<u8>, kind: &str, object: &[u8]) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    out.extend_from_slice(b"\",\"object\":");
    out.extend_from_slice(object);
    out.extend_from_slice(b"}\n");
}
