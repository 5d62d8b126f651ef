//! API keys: kept only as SHA-256 hashes, checked in constant time.
//!
//! For now the hashes live in `<data_dir>/api-keys.json`; a later issue moves them into the
//! event log, behind the same [`KeyStore`] methods.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// The admin key's plaintext, for the operator (and the CLI) to read.
pub(crate) const ADMIN_KEY_FILE: &str = "admin.key";
/// The hashes of every key.
pub(crate) const KEYS_FILE: &str = "api-keys.json";
/// Makes a Bulkhead key recognisable, e.g. to secret scanners.
const KEY_PREFIX: &str = "bhk_";

#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} is not a valid API key file: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{path} does not hold a Bulkhead API key (expected `{KEY_PREFIX}...`)")]
    NotAKey { path: PathBuf },
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> KeyStoreError {
    let path = path.to_owned();
    move |source| KeyStoreError::Io {
        action,
        path,
        source,
    }
}

/// One API key, as stored: never its plaintext.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    pub(crate) id: String,
    pub(crate) name: String,
    #[serde(with = "hex")]
    sha256: [u8; 32],
    pub(crate) created_at_ms: u64,
}

impl KeyRecord {
    fn new(name: &str, plaintext: &str) -> Self {
        KeyRecord {
            id: hex::encode(rand::random::<[u8; 8]>()),
            name: name.to_owned(),
            sha256: Sha256::digest(plaintext.as_bytes()).into(),
            created_at_ms: bulkhead_runtime::now_ms(),
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct KeyStore {
    keys: Vec<KeyRecord>,
}

impl KeyStore {
    /// Opens the store in `data_dir`. On the first start it creates the admin key and also
    /// returns its plaintext, the only time it is in memory.
    pub(crate) fn open(data_dir: &Path) -> Result<(KeyStore, Option<String>), KeyStoreError> {
        // The data dir holds admin.key: when we create it, nobody else may list it.
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(io_error("create", data_dir))?;
        let keys_path = data_dir.join(KEYS_FILE);
        match fs::read(&keys_path) {
            Ok(bytes) => {
                let store =
                    serde_json::from_slice(&bytes).map_err(|source| KeyStoreError::Corrupt {
                        path: keys_path,
                        source,
                    })?;
                return Ok((store, None));
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("read", &keys_path)(error)),
        }
        let admin_path = data_dir.join(ADMIN_KEY_FILE);
        let (plaintext, created) = match create_admin_key(&admin_path) {
            Ok(plaintext) => (plaintext, true),
            // A first start that wrote admin.key but died before saving its hash: adopt the key
            // rather than overwrite a file the operator may already have copied.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                (read_admin_key(&admin_path)?, false)
            }
            Err(error) => return Err(io_error("create", &admin_path)(error)),
        };
        let store = KeyStore {
            keys: vec![KeyRecord::new("admin", &plaintext)],
        };
        store.save(&keys_path)?;
        Ok((store, created.then_some(plaintext)))
    }

    /// Writes a temporary file and renames it over `path`, so that a crash leaves either the
    /// old store or the new one, never half of one.
    fn save(&self, path: &Path) -> Result<(), KeyStoreError> {
        let temporary = path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(self).expect("key records serialize");
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)
            .map_err(io_error("create", &temporary))?;
        file.write_all(&json)
            .and_then(|()| file.sync_all())
            .map_err(io_error("write", &temporary))?;
        fs::rename(&temporary, path).map_err(io_error("replace", path))
    }

    /// The key whose hash matches `presented`. Every stored hash is compared in constant time,
    /// so response times tell nothing about how close a guess was.
    pub(crate) fn verify(&self, presented: &str) -> Option<&KeyRecord> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        self.keys.iter().fold(None, |found, key| {
            if bool::from(key.sha256.ct_eq(&digest)) {
                Some(key)
            } else {
                found
            }
        })
    }
}

/// Creates `path` (never overwriting it) with a new random key, readable by the owner only.
fn create_admin_key(path: &Path) -> io::Result<String> {
    let plaintext = format!("{KEY_PREFIX}{}", hex::encode(rand::random::<[u8; 32]>()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{plaintext}\n").as_bytes())?;
    file.sync_all()?;
    Ok(plaintext)
}

fn read_admin_key(path: &Path) -> Result<String, KeyStoreError> {
    let text = fs::read_to_string(path).map_err(io_error("read", path))?;
    let key = text.trim();
    if key.len() > KEY_PREFIX.len() && key.starts_with(KEY_PREFIX) {
        Ok(key.to_owned())
    } else {
        Err(KeyStoreError::NotAKey {
            path: path.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn first_open_creates_a_private_admin_key_and_stores_only_its_hash() {
        let dir = tempfile::tempdir().unwrap();
        let data_dir = dir.path().join("nested/data");
        let (store, key) = KeyStore::open(&data_dir).unwrap();
        let key = key.expect("first start returns the new key");
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(
            fs::read_to_string(data_dir.join(ADMIN_KEY_FILE))
                .unwrap()
                .trim(),
            key
        );
        assert_eq!(mode(&data_dir.join(ADMIN_KEY_FILE)), 0o600);
        assert_eq!(mode(&data_dir.join(KEYS_FILE)), 0o600);
        assert_eq!(mode(&data_dir), 0o700);
        let stored = fs::read_to_string(data_dir.join(KEYS_FILE)).unwrap();
        assert!(
            !stored.contains(&key[KEY_PREFIX.len()..]),
            "plaintext in {stored}"
        );
        assert!(stored.contains(&hex::encode(Sha256::digest(key.as_bytes()))));
        assert_eq!(store.verify(&key).unwrap().name, "admin");
    }

    #[test]
    fn later_opens_keep_the_key_and_never_return_it() {
        let dir = tempfile::tempdir().unwrap();
        let (first, key) = KeyStore::open(dir.path()).unwrap();
        let key = key.unwrap();
        let key_file = fs::read(dir.path().join(ADMIN_KEY_FILE)).unwrap();
        let (second, again) = KeyStore::open(dir.path()).unwrap();
        assert_eq!(again, None);
        assert_eq!(fs::read(dir.path().join(ADMIN_KEY_FILE)).unwrap(), key_file);
        assert_eq!(
            second.verify(&key).unwrap().id,
            first.verify(&key).unwrap().id
        );
    }

    #[test]
    fn only_the_exact_key_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let (store, key) = KeyStore::open(dir.path()).unwrap();
        let key = key.unwrap();
        assert!(store.verify(&key).is_some());
        assert!(store.verify(&key[..key.len() - 1]).is_none());
        assert!(store.verify(&format!("{key}x")).is_none());
        assert!(store.verify("").is_none());
    }

    #[test]
    fn a_leftover_admin_key_is_adopted_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let leftover = format!("{KEY_PREFIX}{}", "ab".repeat(32));
        fs::write(dir.path().join(ADMIN_KEY_FILE), format!("{leftover}\n")).unwrap();
        let (store, key) = KeyStore::open(dir.path()).unwrap();
        assert_eq!(key, None, "the key was not made by this start");
        assert!(store.verify(&leftover).is_some());
        assert_eq!(
            fs::read_to_string(dir.path().join(ADMIN_KEY_FILE))
                .unwrap()
                .trim(),
            leftover
        );
    }

    #[test]
    fn unusable_files_are_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(ADMIN_KEY_FILE), "hunter2").unwrap();
        assert!(matches!(
            KeyStore::open(dir.path()),
            Err(KeyStoreError::NotAKey { .. })
        ));
        fs::write(dir.path().join(KEYS_FILE), "{").unwrap();
        assert!(matches!(
            KeyStore::open(dir.path()),
            Err(KeyStoreError::Corrupt { .. })
        ));
        assert_eq!(fs::read_to_string(dir.path().join(KEYS_FILE)).unwrap(), "{");
    }
}
