//! The shared-state primitives of this crate, in one place: loom's under `cfg(poolmalloc_loom)`,
//! so the loom models in `loom-tests/` see every atomic of a thread cache (its lists' lengths,
//! its state, its large-block tally), and the standard ones otherwise (tokio's `loom` module, in
//! small). No other module names `poolmalloc_loom`.

/// A mutex the forking thread passes through in its fork window (`poolmalloc_core::fork`).
#[cfg(not(poolmalloc_loom))]
pub(crate) use poolmalloc_core::ForkAwareMutex as Mutex;

/// Atomics: `core`'s, or loom's in the models.
pub(crate) mod atomic {
    #[cfg(not(poolmalloc_loom))]
    pub(crate) use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};
    #[cfg(poolmalloc_loom)]
    pub(crate) use loom::sync::atomic::{AtomicU8, Ordering};
}

/// Defines a function that is `const` in normal builds and plain under loom, whose atomics
/// cannot be built in a const context (the global allocator's caches are `const`-initialised
/// thread-locals).
#[cfg(not(poolmalloc_loom))]
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => { $(#[$attr])* $vis const fn $($rest)* };
}
#[cfg(poolmalloc_loom)]
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => { $(#[$attr])* $vis fn $($rest)* };
}
pub(crate) use const_fn_unless_loom;

/// `[$value; $n]` for a value that is not `Copy`: built in a const context in normal builds,
/// one element at a time under loom.
#[cfg(not(poolmalloc_loom))]
macro_rules! array_of {
    ($value:expr; $n:expr) => {
        [const { $value }; $n]
    };
}
#[cfg(poolmalloc_loom)]
macro_rules! array_of {
    ($value:expr; $n:expr) => {
        core::array::from_fn(|_| $value)
    };
}
pub(crate) use array_of;
