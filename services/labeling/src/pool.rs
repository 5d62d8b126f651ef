//! Interning: equal strings, Kubernetes label sets and annotation sets become one shared
//! allocation. The pods of one controller carry the same labels and annotations, so a pod costs
//! two pointers for them instead of two maps. The pool is the runtime's, as inventory's is.

pub(crate) use bulkhead_runtime::intern::{Pool, Str};
