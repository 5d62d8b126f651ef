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
    #[error("a {space} key is not one this version writes")]
    CorruptKey { space: &'static str },
    #[error("a storage task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("cannot start a snapshot dump thread: {0}")]
    Thread(std::io::Error),
    #[error("the snapshot dump thread stopped without an answer")]
    DumpLost,
    #[error("the snapshot dump failed: {0}")]
    Dump(String),
    #[error("cannot start flushing the database: {0}")]
    Flusher(std::io::Error),
}

/// Why a replica could not start or had to stop.
#[derive(Debug, thiserror::Error)]
pub enum EventlogError {
    #[error("cannot open the log in {dir}: {source}")]
    Open {
        dir: std::path::PathBuf,
        source: StoreError,
    },
    #[error("cannot listen on {addr} for Raft: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("the Raft listener failed: {0}")]
    Serve(std::io::Error),
    #[error("cannot build the HTTP client for Raft: {0}")]
    HttpClient(reqwest::Error),
    #[error("invalid Raft configuration: {0}")]
    RaftConfig(#[from] openraft::ConfigError),
    #[error("the Raft node stopped: {0}")]
    Raft(#[from] openraft::error::Fatal<crate::NodeId>),
    #[error("cannot initialise the cluster: {0}")]
    Init(
        #[from]
        openraft::error::RaftError<
            crate::NodeId,
            openraft::error::InitializeError<crate::NodeId, openraft::BasicNode>,
        >,
    ),
    #[error(transparent)]
    Bus(#[from] bulkhead_runtime::bus::BusError),
}

impl EventlogError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Open { .. } => "open",
            Self::Bind { .. } => "bind",
            Self::Serve(_) => "serve",
            Self::HttpClient(_) => "http_client",
            Self::RaftConfig(_) => "raft_config",
            Self::Raft(_) => "raft",
            Self::Init(_) => "init",
            Self::Bus(_) => "bus",
        }
    }
}
