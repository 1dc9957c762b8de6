//! The one place that says which shared-state primitives the core uses: loom's under
//! `cfg(poolmalloc_loom)`, so the loom models explore every interleaving of the lock protocol and
//! of the atomics beside it, and parking_lot's and `core`'s otherwise (tokio's `loom` module, in
//! small). No other module of the crate names `poolmalloc_loom` except `config`, whose loom
//! geometry shrinks pools and arenas.
//!
//! Loom's atomics and mutexes are objects of one model execution: they are made with `new` inside
//! the model, are not `const`, and a zeroed one is not a valid one. Hence:
//! - the pool header's class tag lives in arena memory and is written there whole
//!   (`ptr::write(AtomicU8::new(..))`) when a pool is carved; `config::POOL_OVERHEAD` is derived
//!   from the tag's size, which is larger under loom. Under loom a never-carved pool's tag is
//!   zeroed memory, not a loom atomic: only a bad free reads it, and no model makes one;
//! - the core id counter, a process-wide `static`, is a `loom::lazy_static` under loom
//!   (`model_static!`), made afresh in each execution;
//! - constructors that are `const` in normal builds are plain under loom (`const_fn_unless_loom!`,
//!   `array_of!`).
//!
//! What stays std's under loom is in `unmodelled`, with the reason.

#[cfg(not(poolmalloc_loom))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

#[cfg(poolmalloc_loom)]
pub(crate) use loom_mutex::{Mutex, MutexGuard};

/// The atomics the models see: the pool header's class tag, the core id and its counter, the
/// large-path counters.
pub(crate) mod atomic {
    pub(crate) use core::sync::atomic::Ordering;
    #[cfg(not(poolmalloc_loom))]
    pub(crate) use core::sync::atomic::{AtomicU8, AtomicUsize};
    #[cfg(poolmalloc_loom)]
    pub(crate) use loom::sync::atomic::{AtomicU8, AtomicUsize};
}

/// Primitives that stay std's under loom, outside the models:
/// - the arena registry's top level (`AtomicPtr`) and slot owners (`AtomicUsize`): the top level
///   is a `static` that must be const-initialised, and the leaves are anonymous mappings that
///   live for the whole process (R1) and are valid while zero-filled, whereas a loom atomic
///   belongs to one execution and is never valid zeroed. A loom registry would have to be made
///   and its leaves filled with fresh atomics in every execution;
/// - `MemPages`' slot table (`Mutex`) and counters (`AtomicBool`, `AtomicUsize`): it stands in
///   for the OS, which the models do not model either, and the core calls it only under its
///   arena lock;
/// - the `planted-fault` switch (`AtomicBool`): a test sets it before the model starts, outside
///   any execution.
pub(crate) mod unmodelled {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};
    pub(crate) use std::sync::Mutex;
}

#[cfg(poolmalloc_loom)]
mod loom_mutex {
    /// loom's mutex behind parking_lot's signature (`lock` returns the guard directly).
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .expect("a loom model thread panicked while holding a core lock")
        }
    }
}

/// Defines a function that is `const` in normal builds and plain under loom, whose primitives
/// cannot be built in a const context (the global allocator's core is a `static`).
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(poolmalloc_loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(poolmalloc_loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_fn_unless_loom;

/// `[$init; $n]` for an element that is not `Copy`: built in a const context in normal builds,
/// element by element under loom.
#[cfg(not(poolmalloc_loom))]
macro_rules! array_of {
    ($init:expr; $n:expr) => {
        [const { $init }; $n]
    };
}
#[cfg(poolmalloc_loom)]
macro_rules! array_of {
    ($init:expr; $n:expr) => {
        core::array::from_fn(|_| $init)
    };
}
pub(crate) use array_of;

/// A process-wide `static` of the primitives above: plain in normal builds, a `loom::lazy_static`
/// under loom (made afresh in each execution of a model).
#[cfg(not(poolmalloc_loom))]
macro_rules! model_static {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        $(#[$attr])* static $name: $ty = $init;
    };
}
#[cfg(poolmalloc_loom)]
macro_rules! model_static {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        loom::lazy_static! { $(#[$attr])* static ref $name: $ty = $init; }
    };
}
pub(crate) use model_static;

/// Items that exist only in normal builds: fork handling needs parking_lot's raw lock, which
/// loom's mutex does not have, and no model forks.
macro_rules! unless_loom {
    ($($item:item)*) => {
        $( #[cfg(not(poolmalloc_loom))] $item )*
    };
}
pub(crate) use unless_loom;
