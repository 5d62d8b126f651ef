/// A failure of the sled storage under the log or the state machine.
///
/// The openraft trait methods wrap it in a `StorageIOError` (which stops the Raft node: its
/// storage can no longer be trusted); the read handle returns it as is.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    #[error("cannot encode a {space} value: {source}")]
    Encode {
        space: &'static str,
        source: rmp_serde::encode::Error,
    },
    #[error("cannot decode a {space} value: {source}")]
    Decode {
        space: &'static str,
        source: rmp_serde::decode::Error,
    },
    #[error("the index of stream {stream:?} points at event {seq}, which is missing")]
    DanglingStreamIndex { stream: String, seq: u64 },
    #[error("snapshot format {found} is not the supported format {supported}")]
    SnapshotFormat { found: u32, supported: u32 },
    #[error("snapshot holds a key outside the state machine's key spaces (prefix {prefix:#04x})")]
    ForeignSnapshotKey { prefix: u8 },
}
