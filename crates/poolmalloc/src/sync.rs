//! Lock primitives of this crate's own shared state (the list of live thread caches).
pub(crate) use parking_lot::Mutex;
