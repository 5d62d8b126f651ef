//! Interning, for projections that hold many equal values (the pods of one controller carry
//! the same labels, namespaces and owners): equal values become one shared allocation, and
//! what nobody holds any more is forgotten.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// An interned string.
pub type Str = Arc<str>;

/// Below this many values a pool is never swept: too small to matter.
const MIN_SWEEP_SIZE: usize = 1024;

/// Shared values of one type. A sweep drops those only the pool still holds, once the pool has
/// doubled since the last one (amortised O(1) per value).
#[derive(Debug)]
pub struct Pool<T: ?Sized> {
    items: HashSet<Arc<T>>,
    size_after_sweep: usize,
}

impl<T: ?Sized> Default for Pool<T> {
    fn default() -> Self {
        Pool {
            items: HashSet::new(),
            size_after_sweep: 0,
        }
    }
}

impl<T: ?Sized + Eq + Hash> Pool<T> {
    /// The shared value equal to `value`, made from it when the pool has none yet.
    pub fn intern<V: Borrow<T>>(&mut self, value: V) -> Arc<T>
    where
        Arc<T>: From<V>,
    {
        if let Some(shared) = self.items.get(value.borrow()) {
            return shared.clone();
        }
        let shared = Arc::from(value);
        self.items.insert(shared.clone());
        shared
    }

    /// Sweeps when the pool has doubled since the last sweep.
    pub fn sweep_if_grown(&mut self) {
        if self.items.len() > 2 * self.size_after_sweep.max(MIN_SWEEP_SIZE) {
            self.sweep();
        }
    }

    /// Drops the values only the pool holds.
    pub fn sweep(&mut self) {
        self.items.retain(|s| Arc::strong_count(s) > 1);
        self.size_after_sweep = self.items.len();
    }

    /// How many values the pool holds.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation_until_nobody_holds_them() {
        let mut pool: Pool<str> = Pool::default();
        let a = pool.intern("shop");
        let b = pool.intern(String::from("shop"));
        assert!(Arc::ptr_eq(&a, &b));
        pool.intern("gone");
        assert_eq!(pool.len(), 2);
        pool.sweep();
        assert_eq!(pool.len(), 1);
        drop((a, b));
        pool.sweep();
        assert!(pool.is_empty());
    }

    #[test]
    fn slices_are_interned_from_vectors() {
        let mut pool: Pool<[u32]> = Pool::default();
        let a = pool.intern(vec![1, 2]);
        let b = pool.intern(vec![1, 2]);
        assert!(Arc::ptr_eq(&a, &b));
    }
}
