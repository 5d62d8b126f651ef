//! A snapshot's bytes as openraft moves them: the snapshot a replica stands for is not written
//! anywhere, it is dumped from the state machine when something first reads it; a snapshot
//! received from the leader is the bytes as they arrive.
//!
//! ```text
//!   build, current snapshot ─► Deferred(dump) ──first read, seek or write: dumped──┐
//!                                                   on a thread of its own        ▼
//!   begin receiving ───────────────────────────────────────────────────────► Bytes(cursor)
//! ```
//!
//! So a snapshot costs its meta and its cut when it is built, and a full dump only when a
//! follower needs it; openraft reads the current snapshot at start-up for its meta alone.

use std::fmt;
use std::future::Future;
use std::io::{self, Cursor, SeekFrom};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use thread_priority::{ThreadPriority, ThreadPriorityValue, set_current_thread_priority};
use tokio::io::{AsyncRead, AsyncSeek, AsyncWrite, ReadBuf};

use crate::StoreError;

/// Produces a snapshot's bytes; runs on a thread of its own.
pub(crate) type Dump = Box<dyn FnOnce() -> Result<Vec<u8>, StoreError> + Send>;

/// A dump not yet run, or running: `in_background`'s future, which starts its thread when first
/// polled.
type PendingDump = Pin<Box<dyn Future<Output = Result<Vec<u8>, StoreError>> + Send>>;

/// openraft's `SnapshotData`: readable, seekable and writable like the `Cursor<Vec<u8>>` it
/// becomes, however it began. A deferred one holds the database open until it is dropped.
pub struct SnapshotData {
    state: State,
    /// A seek asked for before the bytes were there.
    seek: Option<SeekFrom>,
}

enum State {
    Deferred(PendingDump),
    Bytes(Cursor<Vec<u8>>),
    /// The dump failed: every later read says why.
    Failed(String),
}

impl SnapshotData {
    /// A snapshot whose bytes `dump` produces when they are first needed.
    pub(crate) fn deferred(dump: Dump) -> Self {
        Self {
            state: State::Deferred(Box::pin(in_background(dump))),
            seek: None,
        }
    }

    /// The whole of its bytes.
    pub(crate) async fn into_bytes(self) -> Result<Vec<u8>, StoreError> {
        match self.state {
            State::Deferred(dump) => dump.await,
            State::Bytes(cursor) => Ok(cursor.into_inner()),
            State::Failed(error) => Err(StoreError::Dump(error)),
        }
    }

    /// Drives a deferred snapshot to its bytes, then makes any pending seek.
    fn poll_bytes(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut Cursor<Vec<u8>>>> {
        if let State::Deferred(dump) = &mut self.state {
            self.state = match ready!(dump.as_mut().poll(cx)) {
                Ok(bytes) => State::Bytes(Cursor::new(bytes)),
                Err(error) => State::Failed(error.to_string()),
            };
        }
        match &mut self.state {
            State::Deferred(_) => unreachable!("a finished dump was replaced just above"),
            State::Failed(error) => Poll::Ready(Err(io::Error::other(error.clone()))),
            State::Bytes(cursor) => {
                if let Some(position) = self.seek.take() {
                    io::Seek::seek(cursor, position)?;
                }
                Poll::Ready(Ok(cursor))
            }
        }
    }
}

impl From<Vec<u8>> for SnapshotData {
    fn from(bytes: Vec<u8>) -> Self {
        Self {
            state: State::Bytes(Cursor::new(bytes)),
            seek: None,
        }
    }
}

impl fmt::Debug for SnapshotData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            State::Deferred(_) => f.write_str("SnapshotData::Deferred"),
            State::Failed(error) => write!(f, "SnapshotData::Failed({error})"),
            State::Bytes(cursor) => {
                write!(f, "SnapshotData::Bytes({} bytes)", cursor.get_ref().len())
            }
        }
    }
}

impl AsyncRead for SnapshotData {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let cursor = ready!(self.get_mut().poll_bytes(cx))?;
        Pin::new(cursor).poll_read(cx, buf)
    }
}

impl AsyncWrite for SnapshotData {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let cursor = ready!(self.get_mut().poll_bytes(cx))?;
        Pin::new(cursor).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl AsyncSeek for SnapshotData {
    fn start_seek(self: Pin<&mut Self>, position: SeekFrom) -> io::Result<()> {
        self.get_mut().seek = Some(position);
        Ok(())
    }

    fn poll_complete(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<u64>> {
        let cursor = ready!(self.get_mut().poll_bytes(cx))?;
        Poll::Ready(Ok(cursor.position()))
    }
}

/// A dump's thread priority, niceness 10 (thread-priority maps 0..=99 onto niceness
/// 20..=-20): it gets about a tenth of a core that appends want too, and all of an idle one.
const DUMP_PRIORITY: u8 = 24;

/// Runs `dump` on a thread of its own at [`DUMP_PRIORITY`]: it reads and encodes the whole
/// state, seconds of CPU for a big log, which appends applied meanwhile should not queue behind
/// and which would stall the Raft core's timers and RPCs on an async worker.
async fn in_background(dump: Dump) -> Result<Vec<u8>, StoreError> {
    let (done, result) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("eventlog-snapshot".into())
        .spawn(move || {
            let lowered = ThreadPriorityValue::try_from(DUMP_PRIORITY).and_then(|value| {
                set_current_thread_priority(ThreadPriority::Crossplatform(value))
                    .map_err(|error| error.to_string())
            });
            if let Err(error) = lowered {
                tracing::warn!(%error, "cannot lower the snapshot dump's priority");
            }
            let _ = done.send(dump());
        })
        .map_err(StoreError::Thread)?;
    result.await.map_err(|_| StoreError::DumpLost)?
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

    use super::*;

    fn counted_dump(bytes: &'static [u8], dumps: &Arc<AtomicUsize>) -> SnapshotData {
        let dumps = dumps.clone();
        SnapshotData::deferred(Box::new(move || {
            dumps.fetch_add(1, Ordering::SeqCst);
            Ok(bytes.to_vec())
        }))
    }

    #[tokio::test]
    async fn a_deferred_snapshot_is_dumped_once_when_first_sought_and_reads_like_its_bytes() {
        let dumps = Arc::new(AtomicUsize::new(0));
        let mut data = counted_dump(b"0123456789", &dumps);
        assert_eq!(dumps.load(Ordering::SeqCst), 0, "not before it is needed");

        assert_eq!(data.seek(SeekFrom::End(0)).await.unwrap(), 10);
        assert_eq!(data.seek(SeekFrom::Start(4)).await.unwrap(), 4);
        let mut chunk = [0; 3];
        data.read_exact(&mut chunk).await.unwrap();
        assert_eq!(&chunk, b"456");
        let mut rest = Vec::new();
        data.read_to_end(&mut rest).await.unwrap();
        assert_eq!(rest, b"789");
        assert_eq!(dumps.load(Ordering::SeqCst), 1);
        assert_eq!(data.into_bytes().await.unwrap(), b"0123456789");
    }

    #[tokio::test]
    async fn received_bytes_are_written_at_the_offsets_sought() {
        let mut data = SnapshotData::from(Vec::new());
        data.seek(SeekFrom::Start(0)).await.unwrap();
        data.write_all(b"abc").await.unwrap();
        data.seek(SeekFrom::Start(3)).await.unwrap();
        data.write_all(b"def").await.unwrap();
        assert_eq!(data.into_bytes().await.unwrap(), b"abcdef");

        let dumps = Arc::new(AtomicUsize::new(0));
        assert_eq!(
            counted_dump(b"xyz", &dumps).into_bytes().await.unwrap(),
            b"xyz"
        );
        assert_eq!(dumps.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_dump_is_an_io_error_for_the_reader() {
        let mut data =
            SnapshotData::deferred(Box::new(|| Err(StoreError::CorruptKey { space: "Events" })));
        for _ in 0..2 {
            let error = data.read_to_end(&mut Vec::new()).await.unwrap_err();
            assert!(error.to_string().contains("Events"), "{error}");
        }
        assert!(matches!(data.into_bytes().await, Err(StoreError::Dump(_))));
    }
}
