//! # poolmalloc
//!
//! A multi-threaded small-object allocator: requests of up to 512 bytes come from per-thread
//! caches that take no lock, refilled in batches from pymalloc-style pools (`poolmalloc-core`);
//! larger ones go to the system allocator.
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
//! ## Invariants of the cache layer
//! - **C1** A thread cache is used by one thread at a time; other threads only read its atomic
//!   counts.
//! - **C2** A block on a cache list is out of its pool (counted in the core's blocks out), of the
//!   list's class, and on no other list.

//!
//! Under `cfg(poolmalloc_loom)` only the cache is built: loom cannot run a registered global
//! allocator, so the models in `loom-tests/` drive `ThreadCache`s against a core of their own.

#[cfg(not(poolmalloc_loom))]
mod bootstrap;
pub mod cache;
#[cfg(all(feature = "debug", not(poolmalloc_loom)))]
pub mod debug;
#[cfg(not(poolmalloc_loom))]
mod global;
#[cfg(not(poolmalloc_loom))]
mod heap;
#[cfg(all(feature = "instrumented", not(poolmalloc_loom)))]
mod instrumented;
#[cfg(not(poolmalloc_loom))]
mod misuse;
#[cfg(not(poolmalloc_loom))]
mod resize;
#[cfg(not(poolmalloc_loom))]
mod sync;

pub use cache::{CacheState, ThreadCache};
#[cfg(not(poolmalloc_loom))]
pub use global::{
    check_invariants, collect, flush_thread_cache, fragmentation, raw, stats, PoolMalloc,
};
#[cfg(not(poolmalloc_loom))]
pub use heap::Heap;
#[cfg(all(feature = "debug", not(poolmalloc_loom)))]
pub use misuse::DebugBlock;
#[cfg(not(poolmalloc_loom))]
pub use misuse::{set_misuse_hook, Misuse, MisuseHook};
pub use poolmalloc_core::{CoreStats, Fragmentation, Violation};
