//! # poolmalloc-core: size classes, pools and arenas
//!
//! This crate is the bottom half of poolmalloc, after CPython's `Objects/obmalloc.c`. It knows
//! nothing of threads: the `poolmalloc` crate puts per-thread caches in front of it, and those
//! caches enter the core only to refill or flush a batch of blocks.
//!
//! ```text
//!  faces   GlobalAlloc · Heap · C ABI · stats · CLI          (other crates)
//!  cache   per-thread free lists, batch refill / flush        (crate `poolmalloc`)
//!  core    size classes · pools · arenas · locks              (this crate: central, pool, arena)
//!  os      map / unmap ARENA_SIZE-aligned arenas              (this crate: os, registry)
//! ```
//!
//! ## Size classes
//! Requests of 1..=512 bytes (0 counts as 1) are rounded up to a multiple of `GRAIN` (8) and
//! served by class `size / 8 - 1`; requests aligned to 16 round up to a multiple of 16 instead, so
//! their blocks are 16-byte aligned. Larger requests, or alignments above 16, take the *large
//! path* (the system allocator).
//!
//! ```text
//!   request bytes   align ≤ 8: class (block)   align 16: class (block)
//!   1 .. 8          0 (8)                      1 (16)
//!   9 .. 16         1 (16)                     1 (16)
//!   17 .. 24        2 (24)                     3 (32)
//!   ...             ...                        ...
//!   505 .. 512      63 (512)                   63 (512)
//! ```
//! `size_class::CLASS_TABLE` holds each class's block size, blocks per pool, and the batch and
//! bound of the thread caches; a test prints it.
//!
//! ## Pools
//! A pool is `POOL_SIZE` bytes, `POOL_SIZE`-aligned, inside an arena; the pool of any block is
//! `addr & !(POOL_SIZE - 1)`. Its header (`pool::PoolHeader`) takes the first `POOL_OVERHEAD`
//! bytes; blocks follow and are carved lazily. A pool is in one of three states:
//!
//! ```text
//!            first block taken                 last free block taken
//!   empty ─────────────────────────▶ used ─────────────────────────────▶ full
//!     ▲                               │  ▲                                 │
//!     └──── last block given back ────┘  └───── a block given back ────────┘
//!                                           (to the front of usedpools[class])
//! ```
//! *used* pools are linked in `usedpools[class]`, where allocation looks first; *full* pools are on
//! no list; *empty* pools are on their arena's free-pool list and may serve any class next.
//!
//! ## Arenas
//! An arena is `ARENA_SIZE` bytes, `ARENA_SIZE`-aligned, mapped from a `PageSource`, carved into
//! pools from the front as needed. Arenas with an empty pool are kept on `usable_arenas` sorted by
//! their count of empty pools, fewest first, so new pools come from the fullest arena and
//! nearly-empty arenas drain; `nfp2lasta[n]` (the rightmost arena with `n` empty pools) makes each
//! re-sort O(1). An arena whose pools are all empty is unmapped, except that one is kept in
//! reserve against map/unmap thrashing.
//!
//! Every arena is entered in the *registry*, a radix tree over arena-aligned addresses that holds
//! its header and the id of the core that owns it: `free` of any pointer can ask "is this ours?"
//! without reading memory we might not own.
//!
//! ## Locks
//! One lock per class and one for the arenas; the order is **class → arena** (see `central`).
//!
//! ## Invariants (asserted by `Core::check_invariants`, cited by `SAFETY` comments)
//! - **P1** A pool serving a class is guarded by that class's lock, an empty pool by the arena
//!   lock; a pool moves between the two only while both are held.
//! - **P2** In a pool serving a class, carved blocks = blocks out + blocks on its free list; a free
//!   block's first word links the next free block.
//! - **P3** `usedpools[c]` holds exactly the pools of class `c` with a block out and a block free;
//!   full pools are on no list; the class's counters match the pools.
//! - **P4** A pool with no block out serves no class (its tag reads 0) and is on its arena's
//!   free-pool list, or was never carved.
//! - **A1** An arena is `ARENA_SIZE`-aligned and registered to its core; its header is guarded by
//!   the arena lock.
//! - **A2** An arena's free-pool list holds exactly its carved empty pools; `nfreepools` counts
//!   them plus the pools never carved.
//! - **A3** At most `RESERVE_ARENAS` wholly empty arenas stay mapped.
//! - **A4** `usable_arenas` holds exactly the arenas with an empty pool, sorted by that count,
//!   and `nfp2lasta[n]` is its rightmost arena with `n` empty pools.
//! - **R1** Registry leaves, once published, stay mapped for the life of the process.
//! - **R2** A slot's owner is published after its arena's header is written and withdrawn before
//!   the arena is unmapped.

pub mod arena;
pub mod central;
pub mod config;
pub mod fragmentation;
mod invariants;
pub mod os;
pub mod pool;
mod registry;
pub mod size_class;
pub mod stats;
mod sync;
pub mod tools;

pub use arena::ArenaCounters;
pub use central::{Batch, Core, FreeError, FreeErrorKind};
pub use fragmentation::{ArenaFrag, Band, ClassFrag, Fragmentation, PoolFrag};
pub use invariants::Violation;
pub use os::{MemPages, OsPages, PageSource};
pub use pool::FreeBlock;
pub use size_class::{class_of, Class, ClassInfo, CLASS_TABLE};
pub use stats::{ClassStats, CoreStats, LargeStats};
