//! openraft's storage conformance suite against the sled stores, each case in a fresh directory.

use bulkhead_eventlog::{LogStore, NodeId, StateMachineStore, TypeConfig, open_stores};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{ErrorSubject, ErrorVerb, StorageError, StorageIOError};
use tempfile::TempDir;

struct TempStores;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for TempStores {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = tempfile::tempdir()
            .map_err(|e| StorageError::from_io_error(ErrorSubject::Store, ErrorVerb::Write, e))?;
        let (log, sm) = open_stores(dir.path()).map_err(|e| StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn stores_pass_the_openraft_suite() {
    Suite::test_all(TempStores).unwrap();
}
