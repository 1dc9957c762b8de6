//! # poolmalloc
//!
//! A multi-threaded small-object allocator: requests of up to 512 bytes come from pymalloc-style
//! pools (`poolmalloc-core`) that each thread owns, allocating and freeing in them without a
//! lock; a block freed by another thread goes back to its owner's pool with one atomic push;
//! larger requests go to the system allocator.
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;
//! ```
//!
//! An independent instance, with its own pools and caches:
//!
//! ```
//! use allocator_api2::vec::Vec;
//! let heap = poolmalloc::Heap::new();
//! let mut v = Vec::new_in(&heap);
//! v.extend([1u32, 2, 3]);
//! assert_eq!(v.iter().sum::<u32>(), 6);
//! ```
//!
//! ## Modules, bottom-up (each uses only those above it)
//! - `sync`: the primitives of shared state (loom's under `cfg(poolmalloc_loom)`).
//! - `misuse`: what a detected misuse is, and the hook that reports it.
//! - `exit_key`: a thread's teardown tied to a pthread key, run however the thread ends.
//! - `cache`: a thread's cache — the pools it owns, per class an allocation list — and its
//!   large-block tally (`poolmalloc_core::large`).
//! - `bootstrap`: a static region for requests made from inside the allocator.
//! - `hooks`: what a build's checks add to a block's way out and back; the plain and secure
//!   modes' hooks.
//! - `debug`: debug mode's hooks.
//! - `thread_slot`: an initial-exec thread-local word, through which the C library finds its
//!   thread's state (x86-64 Linux).
//! - `purger`: the background thread that gives memory back to the OS in time, and the purge
//!   settings of the environment.
//! - `frontend`: the cache protocol, once for every face, over a `Home` and a `Hooks`.
//! - `slots`: per-thread caches of `Heap` instances, and their exit hooks.
//! - `global`: the process-wide home — `PoolMalloc`, the C library's entry points.
//! - `heap`: `Heap`, a home of its own per instance.
//!
//! ## Invariants of the cache layer
//! - **C1** A thread cache is used by one thread at a time; other threads only read its atomics
//!   (state, large tally).
//! - **C2** A block on an allocation list is a free block of the list's current pool, which the
//!   cache owns (O1 of the core), and on no other list.
//!
//! Under `cfg(poolmalloc_loom)` only `sync` and `cache` are built: loom cannot run a registered
//! global allocator, so the models in `loom-tests/` drive `ThreadCache`s against a core of their
//! own.
#![warn(missing_docs)]

mod sync;

#[cfg(not(poolmalloc_loom))]
mod exit_key;
#[cfg(not(poolmalloc_loom))]
mod misuse;

mod cache;

#[cfg(not(poolmalloc_loom))]
mod bootstrap;
#[cfg(not(poolmalloc_loom))]
pub mod debug;
#[cfg(not(poolmalloc_loom))]
mod frontend;
#[cfg(not(poolmalloc_loom))]
mod global;
#[cfg(not(poolmalloc_loom))]
mod heap;
#[cfg(not(poolmalloc_loom))]
mod hooks;
#[cfg(not(poolmalloc_loom))]
mod purger;
#[cfg(not(poolmalloc_loom))]
mod slots;
#[cfg(all(not(poolmalloc_loom), target_arch = "x86_64", target_os = "linux"))]
mod thread_slot;

#[cfg(not(poolmalloc_loom))]
pub use global::{
    check_invariants, collect, flush_thread_cache, fragmentation, owns, set_purge_delay,
    set_purger, stats, PoolMalloc,
};
#[cfg(not(poolmalloc_loom))]
pub use heap::Heap;
#[cfg(not(poolmalloc_loom))]
pub use misuse::{set_misuse_hook, DebugBlock, Misuse, MisuseHook};
pub use poolmalloc_core::{CoreStats, Fragmentation, PurgeStats, Purger, Violation};

/// What exists only for the C library (`poolmalloc-capi`) and for the loom models: not part of
/// the Rust API, and free to change.
#[doc(hidden)]
pub mod internal {
    pub use crate::cache::{CacheState, LocalFree, ThreadCache};
    #[cfg(not(poolmalloc_loom))]
    pub use crate::global::capi;
    #[cfg(not(poolmalloc_loom))]
    pub use crate::purger::{env_setting, warn_setting};
}
