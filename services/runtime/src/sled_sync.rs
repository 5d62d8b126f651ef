//! Flushing a sled 0.34 database so that what the flush covers survives a power cut or a kernel
//! crash, not only the process's death.
//!
//! sled 0.34's own flush (Linux, without its `io_uring` feature) ends with `sync_file_range(2)`
//! on its data file: the written pages reach the device, but the device's volatile write cache
//! is not flushed, and neither is the file's metadata (its size and extents, which change as the
//! file grows). Values too large for a log segment (a serialized item over a quarter of a
//! segment, 128 KiB by default: a large Raft entry, a leaf of large values) are written to files
//! of their own under `blobs/`, which sled never syncs at all. [`SledSync::flush`] finishes the
//! job after sled's flush:
//!
//! ```text
//! tree.flush()                    sled: every earlier write in the data file and blob files
//!   -> fsync new or grown blobs   then the blobs directory, so their names are durable too
//!   -> fdatasync the data file    metadata and the device's cache
//! ```
//!
//! This is what JetStream's `sync_interval: always` does per message (`fsync`), so an
//! acknowledgement means the same in both.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

/// Makes one sled database's flushes durable. Holds its own read-only handle on the data file,
/// which does not hold sled's lock on the database.
#[derive(Debug)]
pub struct SledSync {
    data_file: File,
    blobs: PathBuf,
    /// The blob files synced so far, with the length each had when it was: sled writes a blob
    /// once, but a scan may find one while its write is still going on, so a blob that has grown
    /// since is synced again.
    synced_blobs: HashMap<OsString, u64>,
}

/// What one [`SledSync::flush`] had to sync beyond the data file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Synced {
    pub blobs: usize,
}

impl SledSync {
    /// For the sled database in `dir`, which must be open already. Syncs `dir` itself, so that
    /// the entries of the files sled created in it are durable.
    pub fn open(dir: &Path) -> io::Result<Self> {
        let data_file = File::open(dir.join("db")).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("{}: not an open sled database: {e}", dir.display()),
            )
        })?;
        sync_directory(dir)?;
        Ok(SledSync {
            data_file,
            blobs: dir.join("blobs"),
            synced_blobs: HashMap::new(),
        })
    }

    /// Flushes `tree`'s database and makes every write made to it before the call durable.
    pub fn flush(&mut self, tree: &sled::Tree) -> io::Result<Synced> {
        tree.flush().map_err(io::Error::other)?;
        let blobs = self.sync_blobs()?;
        self.data_file.sync_data()?;
        Ok(Synced { blobs })
    }

    /// Syncs the blob files that are new or have grown since the last call, then, if there
    /// were any, the directory. Forgets blobs sled has removed.
    fn sync_blobs(&mut self) -> io::Result<usize> {
        let entries = match std::fs::read_dir(&self.blobs) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e),
        };
        let mut present = HashMap::with_capacity(self.synced_blobs.len());
        let mut synced = 0;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name();
            let length = match entry.metadata() {
                Ok(metadata) => metadata.len(),
                // Removed by sled's blob collection since the directory was read.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if self.synced_blobs.get(&name) != Some(&length) {
                match File::open(entry.path()) {
                    Ok(blob) => blob.sync_data()?,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
                synced += 1;
            }
            // The length read before the sync: a write still going on makes the file longer,
            // and the next call syncs it again.
            present.insert(name, length);
        }
        if synced > 0 {
            sync_directory(&self.blobs)?;
        }
        self.synced_blobs = present;
        Ok(synced)
    }
}

fn sync_directory(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    const OVER_THE_BLOB_THRESHOLD: usize = 200 * 1024;

    fn open() -> (tempfile::TempDir, sled::Db, SledSync) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let sync = SledSync::open(dir.path()).unwrap();
        (dir, db, sync)
    }

    #[test]
    fn a_value_too_large_for_a_segment_is_a_blob_and_synced_by_the_flush_that_follows_it() {
        let (_dir, db, mut sync) = open();
        db.insert(b"small", vec![1; 64]).unwrap();
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 0 });
        db.insert(b"large", vec![2; OVER_THE_BLOB_THRESHOLD])
            .unwrap();
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 1 });
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 0 });
        db.insert(b"larger", vec![3; 2 * OVER_THE_BLOB_THRESHOLD])
            .unwrap();
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 1 });
    }

    #[test]
    fn a_blob_found_while_it_was_written_is_synced_again_once_it_has_grown() {
        let (dir, db, mut sync) = open();
        let blob = dir.path().join("blobs").join("4096");
        let mut being_written = File::create_new(&blob).unwrap();
        being_written.write_all(&[7; 100]).unwrap();
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 1 });
        being_written.write_all(&[7; 100]).unwrap();
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 1 });
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 0 });
        std::fs::remove_file(&blob).unwrap();
        assert_eq!(sync.flush(&db).unwrap(), Synced { blobs: 0 });
        assert!(sync.synced_blobs.is_empty(), "a removed blob is forgotten");
    }

    #[test]
    fn a_directory_without_a_sled_database_is_refused_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let error = SledSync::open(dir.path()).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::NotFound);
        assert!(error.to_string().contains("not an open sled database"));
    }
}
