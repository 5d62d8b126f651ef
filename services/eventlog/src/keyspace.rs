//! Typed key spaces over one sled tree.
//!
//! Every key starts with its key space's prefix byte, so one tree holds several maps that can be
//! written together in one atomic `sled::Batch`. Integer parts of keys are big-endian so that
//! sled's byte order is numeric order and range scans walk indexes in order. Values are
//! MessagePack with field names, which tolerates added optional fields.

use std::ops::Bound;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::StoreError;

/// How a key space's keys are written after the prefix byte.
pub(crate) trait KeyCodec {
    fn encode_into(&self, out: &mut Vec<u8>);
}

/// A key space holding one value.
impl KeyCodec for () {
    fn encode_into(&self, _out: &mut Vec<u8>) {}
}

impl KeyCodec for u64 {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

/// A whole key: no length needed, nothing follows it.
impl KeyCodec for &str {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.as_bytes());
    }
}

/// A name followed by a number: the length prefix keeps `("a", n)` and `("ab", m)` apart and keeps
/// one name's keys contiguous and in numeric order.
impl KeyCodec for (&str, u64) {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&(self.0.len() as u64).to_be_bytes());
        out.extend_from_slice(self.0.as_bytes());
        self.1.encode_into(out);
    }
}

/// The inverse of the `u64` codec on a whole key, prefix byte included, or `None` for a key it
/// did not write.
pub(crate) fn number(key: &[u8]) -> Option<u64> {
    let number = key.get(1..)?;
    Some(u64::from_be_bytes(number.try_into().ok()?))
}

/// The inverse of the `(&str, u64)` codec on a whole key, prefix byte included: the name's bytes
/// and the number, or `None` for a key it did not write.
pub(crate) fn name_and_number(key: &[u8]) -> Option<(&[u8], u64)> {
    let (len, rest) = key.get(1..)?.split_first_chunk::<8>()?;
    let len = usize::try_from(u64::from_be_bytes(*len)).ok()?;
    let (name, number) = rest.split_at_checked(len)?;
    Some((name, u64::from_be_bytes(number.try_into().ok()?)))
}

/// One typed map inside a tree.
pub(crate) trait KeySpace {
    /// First byte of every key; unique among the key spaces sharing a tree.
    const PREFIX: u8;
    /// For error messages.
    const NAME: &'static str;
    type Key<'k>: KeyCodec;
    type Value: Serialize + DeserializeOwned;

    fn key(key: Self::Key<'_>) -> Vec<u8> {
        let mut out = vec![Self::PREFIX];
        key.encode_into(&mut out);
        out
    }

    fn encode(value: &Self::Value) -> Result<Vec<u8>, StoreError> {
        rmp_serde::to_vec_named(value).map_err(|source| StoreError::Encode {
            space: Self::NAME,
            source,
        })
    }

    fn decode(bytes: &[u8]) -> Result<Self::Value, StoreError> {
        rmp_serde::from_slice(bytes).map_err(|source| StoreError::Decode {
            space: Self::NAME,
            source,
        })
    }

    fn get(tree: &sled::Tree, key: Self::Key<'_>) -> Result<Option<Self::Value>, StoreError> {
        tree.get(Self::key(key))?
            .map(|bytes| Self::decode(&bytes))
            .transpose()
    }

    fn put(
        batch: &mut sled::Batch,
        key: Self::Key<'_>,
        value: &Self::Value,
    ) -> Result<(), StoreError> {
        batch.insert(Self::key(key), Self::encode(value)?);
        Ok(())
    }

    /// Writes through at once, for single-key updates that need no batch.
    fn insert(
        tree: &sled::Tree,
        key: Self::Key<'_>,
        value: &Self::Value,
    ) -> Result<(), StoreError> {
        tree.insert(Self::key(key), Self::encode(value)?)?;
        Ok(())
    }

    /// The raw entries of this key space within the bounds (unbounded = to the key space's edge).
    fn raw_range(
        tree: &sled::Tree,
        start: Bound<Self::Key<'_>>,
        end: Bound<Self::Key<'_>>,
    ) -> sled::Iter {
        let start = match start {
            Bound::Included(key) => Bound::Included(Self::key(key)),
            Bound::Excluded(key) => Bound::Excluded(Self::key(key)),
            Bound::Unbounded => Bound::Included(vec![Self::PREFIX]),
        };
        let end = match end {
            Bound::Included(key) => Bound::Included(Self::key(key)),
            Bound::Excluded(key) => Bound::Excluded(Self::key(key)),
            Bound::Unbounded => match Self::PREFIX.checked_add(1) {
                Some(next) => Bound::Excluded(vec![next]),
                None => Bound::Unbounded,
            },
        };
        tree.range::<Vec<u8>, _>((start, end))
    }

    fn values(
        tree: &sled::Tree,
        start: Bound<Self::Key<'_>>,
        end: Bound<Self::Key<'_>>,
    ) -> impl DoubleEndedIterator<Item = Result<Self::Value, StoreError>> {
        Self::raw_range(tree, start, end).map(|item| Self::decode(&item?.1))
    }

    fn remove_range(
        tree: &sled::Tree,
        batch: &mut sled::Batch,
        start: Bound<Self::Key<'_>>,
        end: Bound<Self::Key<'_>>,
    ) -> Result<(), StoreError> {
        for key in Self::raw_range(tree, start, end).keys() {
            batch.remove(key?);
        }
        Ok(())
    }
}

/// Declares a unit struct as a key space.
macro_rules! key_space {
    ($(#[$doc:meta])* $name:ident, $prefix:expr, $key:ty => $value:ty) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl $crate::keyspace::KeySpace for $name {
            const PREFIX: u8 = $prefix;
            const NAME: &'static str = stringify!($name);
            type Key<'k> = $key;
            type Value = $value;
        }
    };
}

pub(crate) use key_space;

#[cfg(test)]
mod tests {
    use super::*;

    key_space!(Numbers, 7, u64 => String);
    key_space!(Pairs, 8, (&'k str, u64) => u64);

    fn tree() -> (tempfile::TempDir, sled::Tree) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let tree = db.open_tree("t").unwrap();
        (dir, tree)
    }

    #[test]
    fn integer_keys_scan_in_numeric_order() {
        let (_dir, tree) = tree();
        let mut batch = sled::Batch::default();
        for n in [256, 1, 65_536, 2] {
            Numbers::put(&mut batch, n, &n.to_string()).unwrap();
        }
        tree.apply_batch(batch).unwrap();
        let all: Vec<_> = Numbers::values(&tree, Bound::Unbounded, Bound::Unbounded)
            .map(Result::unwrap)
            .collect();
        assert_eq!(all, ["1", "2", "256", "65536"]);
        let middle: Vec<_> = Numbers::values(&tree, Bound::Excluded(1), Bound::Included(256))
            .map(Result::unwrap)
            .collect();
        assert_eq!(middle, ["2", "256"]);
    }

    #[test]
    fn name_keys_do_not_bleed_into_each_other() {
        let (_dir, tree) = tree();
        let mut batch = sled::Batch::default();
        for (name, n) in [("a", 1), ("a", 2), ("ab", 1), ("b", 0)] {
            Pairs::put(&mut batch, (name, n), &n).unwrap();
        }
        Numbers::put(&mut batch, 0, &"other space".into()).unwrap();
        tree.apply_batch(batch).unwrap();
        let of_a: Vec<_> = Pairs::values(
            &tree,
            Bound::Included(("a", 0)),
            Bound::Included(("a", u64::MAX)),
        )
        .map(Result::unwrap)
        .collect();
        assert_eq!(of_a, [1, 2]);
        assert_eq!(
            Pairs::values(&tree, Bound::Unbounded, Bound::Unbounded).count(),
            4
        );
    }

    #[test]
    fn a_number_key_decodes_back_to_its_number() {
        assert_eq!(
            number(&Numbers::key(0x0102_0304_0506_0708)),
            Some(0x0102_0304_0506_0708)
        );
        assert_eq!(number(&[7, 1, 2]), None, "too short");
        assert_eq!(number(&[7; 10]), None, "too long");
    }

    #[test]
    fn a_name_and_number_key_splits_back_into_its_parts() {
        for (name, n) in [("", 0), ("ab", 7), ("stream-ü", u64::MAX)] {
            let key = Pairs::key((name, n));
            assert_eq!(name_and_number(&key), Some((name.as_bytes(), n)));
        }
        for short in [&Pairs::key(("ab", 7))[..10], &[8][..], &[]] {
            assert_eq!(name_and_number(short), None, "{short:?}");
        }
    }
}
