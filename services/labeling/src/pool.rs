//! Interning: equal strings, Kubernetes label sets and annotation sets become one shared
//! allocation. The pods of one controller carry the same labels and annotations, so a pod costs
//! two pointers for them instead of two maps.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

/// An interned string.
pub(crate) type Str = Arc<str>;

/// Below this many entries a pool is never swept: too small to matter.
const MIN_SWEEP_SIZE: usize = 1024;

/// Shared values of one type. A sweep drops those only the pool still holds, once the pool has
/// doubled since the last one (amortised O(1) per value).
#[derive(Debug)]
pub(crate) struct Pool<T: ?Sized> {
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

impl<T: ?Sized + Eq + Hash> Pool<T>
where
    for<'a> Arc<T>: From<&'a T>,
{
    pub(crate) fn intern(&mut self, value: &T) -> Arc<T> {
        if let Some(shared) = self.items.get(value) {
            return shared.clone();
        }
        let shared: Arc<T> = value.into();
        self.items.insert(shared.clone());
        shared
    }

    pub(crate) fn sweep_if_grown(&mut self) {
        if self.items.len() > 2 * self.size_after_sweep.max(MIN_SWEEP_SIZE) {
            self.items.retain(|s| Arc::strong_count(s) > 1);
            self.size_after_sweep = self.items.len();
        }
    }
}
