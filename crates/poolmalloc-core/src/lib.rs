//! # poolmalloc-core: size classes, pools and arenas
//!
//! This crate is the bottom half of poolmalloc, after CPython's `Objects/obmalloc.c`. It knows
//! threads only as owners: the `poolmalloc` crate puts a cache per thread in front of it, each
//! cache owns the pools it allocates from, and caches enter the core only to take a pool or give
//! one back, or to free into a pool the core holds.
//!
//! ```text
//!  faces   GlobalAlloc · Heap · C ABI · stats · CLI          (other crates)
//!  cache   per-thread owned pools and allocation lists     (crate `poolmalloc`)
//!  core    size classes · pools · arenas · locks              (this crate: central, pool, arena)
//!  os      map / unmap ARENA_SIZE-aligned arenas              (this crate: os, registry)
//! ```
//!
//! ## Size classes
//! Requests of 1..=512 bytes (0 counts as 1) are rounded up to a multiple of `GRAIN` (8) and
//! served by class `size / 8 - 1`; requests aligned to 16 round up to a multiple of 16 instead, so
//! their blocks are 16-byte aligned. These are the *small* classes. The *medium* classes follow
//! (index 64 on): four per doubling up to `MEDIUM_REQUEST_THRESHOLD` (32 KiB) — 640, 768, 896,
//! 1024, 1280, ... 28672, 32768 bytes — so rounding wastes at most a fifth of a block; they serve
//! requests above 512 bytes, and smaller ones aligned to 32 or 64. Larger requests, or alignments
//! above 64, take the *large path* (the system allocator).
//!
//! ```text
//!   request bytes   align ≤ 8: class (block)   align 16: class (block)
//!   1 .. 8          0 (8)                      1 (16)
//!   9 .. 16         1 (16)                     1 (16)
//!   17 .. 24        2 (24)                     3 (32)
//!   ...             ...                        ...
//!   505 .. 512      63 (512)                   63 (512)
//! ```
//! `size_class::CLASS_TABLE` holds each class's block size, blocks per pool, and how many fresh
//! blocks an owner carves at a time; a test prints it.
//!
//! ## Pools
//! A pool is of one of two kinds (`Kind`): a small pool is `POOL_SIZE` (16 KiB), a medium pool
//! `MEDIUM_POOL_SIZE` (256 KiB: seven blocks of the largest class, 409 of the smallest); either
//! is aligned to its size inside an arena of its kind, so the pool of any block is `addr & !(pool
//! size - 1)`. Who frees a block knows the kind: a Rust `dealloc` from its layout (small layouts
//! need nothing more), the C library from the registry, which holds each arena's kind. Its header (`layout::PoolHeader`, one cache line) takes the first
//! `POOL_OVERHEAD` bytes; blocks follow and are carved lazily. A pool serving a class is held by
//! one party at a time — a thread (its cache *owns* it) or the core — and is in one of pymalloc's
//! states:
//!
//! ```text
//!                  taken by a thread (fullest arena first)
//!   empty ──────────────────────────────────────────────────▶ owned by a thread ◀─┐ a block
//!     ▲  ◀──── its last block freed, beyond the pools its owner  │  │ ▲    │ used │ comes back
//!     │        keeps (warm in its arena for the delay)           │  │ │    ▼ up   │ (a notice)
//!     │                                    its thread exits, or  │  │ │  owned, filed full
//!     │                                    its cache is flushed  ▼  │ │ a free lands in it:
//!     │                                             core-held: used │ │ the freeing thread
//!     │                                                     or full │ │ adopts it; or a thread
//!     └──── last block given back (class lock) ─────────────────────┘ ┘ needing a pool takes it
//! ```
//! - **owned**: a thread allocates from it and frees into it without a lock (its own free list
//!   and counts); other threads push their frees onto the pool's *remote chain* with one
//!   compare-and-swap, and the owner takes the whole chain with one swap when it needs blocks.
//!   The remote word counts its chain above the address bits, so the owner learns how many
//!   blocks came back without walking blocks another core wrote last.
//!   A pool empties the moment its last block comes back. Its owner keeps it for its next
//!   pools, up to `config::KEPT_SMALL_BYTES` of small pools and two medium pools (no lock for a
//!   service whose requests empty and refill the same classes' pools; no call out of the fast
//!   path for a loop that allocates and frees one block); beyond that, it goes to its arena
//!   (warm, for the purge delay). A pool used up stays its owner's too, *filed* full
//!   (mimalloc's full queue): the owner's next free into it is a local free that unfiles it, and
//!   the first remote free into it sends the owner a *notice* — the pool, pushed onto the
//!   cache's `Notices` — which the owner takes before it looks for its next pool (O5); up to
//!   `config::FILED_BYTES` a thread, since an idle thread takes no notices.
//! - **core-held**: pymalloc's *used* (on `usedpools[class]`) and *full* (on no list) pools,
//!   guarded by the class lock. An owner gives its pools to the core when its thread exits
//!   (abandoned, with blocks out) or its cache is flushed, and a pool it uses up beyond its
//!   `FILED_BYTES`. A free into a core-held pool adopts it
//!   into the freeing thread's cache (so its other blocks come back as local frees); a thread
//!   that needs a pool of the class adopts a core-held pool with free blocks before it takes an
//!   empty one.
//! - **empty**: on its arena's free-pool list; may serve any class of its kind next.
//!
//! Both kinds share all of this: the states, the ownership protocol (O1–O5) and the encoded
//! free-list links are per pool. A chain ends at its pool's header for both kinds, the one
//! address of the pool at a multiple of `POOL_SIZE` (no medium block starts at one:
//! `size_class` checks it), so `FreeBlock::is_end` needs no kind; what does need it —
//! `pool_of`, and `same_pool`, the double-free and secure-mode checks — takes it as a
//! parameter, a constant on the small fast path.
//!
//! The remote chain word also says who holds the pool: `CORE_HELD` while the core does; `FILED`
//! while its owner has it filed and no remote free came since; the `NOTIFYING` bit beside the
//! chain while the first such free sends the notice. A pool changes between owned and core-held only under its class lock, by a swap of
//! that word, so a remote free either lands in the chain before the swap (and comes back with
//! the pool) or sees `CORE_HELD` and frees under the class lock (O3).

//! ## Arenas
//! An arena is `ARENA_SIZE` bytes, `ARENA_SIZE`-aligned, mapped from a `PageSource`, carved into
//! pools of one kind from the front as needed (64 small or 4 medium). Each kind keeps its arenas
//! with an empty pool on its own `usable_arenas`, sorted by their count of empty pools, fewest
//! first, so new pools come from the fullest arena and nearly-empty arenas drain; `nfp2lasta[n]`
//! (the rightmost arena with `n` empty pools) makes each re-sort O(1).
//!
//! A class takes back the pools it gave back, as they were (their free lists whole, nothing
//! re-carved, no new page touched) before any other: `arena`'s per-class warm lists.
//!
//! Memory goes back to the OS in time, not at once: an empty pool stays committed (warm) and a
//! wholly empty arena mapped for the purge delay (`config::PURGE_DELAY_MS`); then a purge pass
//! (`Core::purge`) decommits the pools that were already empty at the pass before and unmaps
//! the wholly empty arenas beyond one reserve arena of each kind. A pass claims what it gives
//! back under the arena lock and makes its system calls without it, so an allocation never
//! takes a pool being purged (`arena`, "Memory back to the OS, in time"). Who runs the passes
//! is a `Purger`: the `poolmalloc` crate's background thread, woken through `PURGE_EVENT`, or
//! later allocator calls. A delay of 0 keeps the old policy: an empty arena is unmapped at once
//! (but the reserve), and a nearly empty one gives its empty pools' pages back at once (small: 4
//! pools in use or fewer; medium: half its pools or fewer).
//!
//! Every arena is entered in the *registry*, a radix tree over arena-aligned addresses that holds
//! its header and the id of the core that owns it: `free` of any pointer can ask "is this ours?"
//! without reading memory we might not own.
//!
//! ## Locks
//! One lock per class and one for the arenas; the order is **class → arena** (see `central`).
//! An owner's steps on its own pools take none; moving a pool between an owner and the core takes
//! the class lock, and to or from an arena the arena lock.
//! Which primitives they and the atomics beside them are — futex words and `core`'s, or loom's
//! in the loom models — is said in one place, `sync`.
//!
//! ## Invariants (asserted by `Core::check_invariants`, cited by `SAFETY` comments)
//! - **P1** A core-held pool is guarded by its class's lock, an empty pool by the arena lock; a
//!   pool moves between the two only while its holder holds the arena lock too.
//! - **P2** In a pool serving a class, carved blocks = blocks out + blocks on its free list; a free
//!   block's first word links the next free block of its chain, XOR the process's link key
//!   (`FreeBlock`), and decodes to a block of the same pool or the pool's header (a chain's
//!   end); a block handed out has its first word cleared, so a free can suspect a double free
//!   from the block alone.
//! - **P3** `usedpools[c]` holds exactly the core-held pools of class `c` with a block out and a
//!   block free; full pools are on no list; the class's counters match the core-held pools.
//! - **P4** A core-held pool has a block out. A pool serving no class (its tag reads 0) has no
//!   block out and is on its arena's free-pool list, or was never carved.
//! - **O1** A pool whose `owner` names a thread's cache is touched by that thread alone — free
//!   list, counts, carving, list links — except that other threads read its owner and tag and
//!   push onto its remote chain; its remote word is never `CORE_HELD`.
//! - **O2** A block on a pool's remote chain is out (counted in the pool's blocks out) and on no
//!   other list; only the pool's holder takes the chain, whole, by a swap — except that a thread
//!   confirming a suspected double free borrows it whole and gives it back whole
//!   (`pool::borrow_remote`, `return_remote`).
//! - **O3** A pool changes between owned and core-held only under its class lock, by a swap of
//!   its remote word (owned → core-held: the chain comes back with the pool; core-held → owned:
//!   `CORE_HELD` gives way to an empty chain).
//! - **O4** No thread pushes onto a pool none of whose blocks is out (every push frees a block
//!   that is out), so the pool's holder may give it to its arena.
//! - **O5** A remote free into a `FILED` pool stores its block as the chain with the `NOTIFYING`
//!   bit, pushes the pool onto its owner's notices (the owner's id is their address) and only
//!   then clears the bit (other frees push past it); the owner waits for the bit to clear before
//!   it hands the pool over, so its cache — and
//!   the notices the sender writes — outlives every notice in flight. A pool is on its owner's
//!   notices at most once: the owner takes its notices before it files a pool and before it
//!   gives one up, and forgets them (unread) only once it has given up every pool.
//! - **A1** An arena is `ARENA_SIZE`-aligned and registered to its core with its kind; its header
//!   is guarded by the arena lock, and its pools are all of its kind.
//! - **A2** An arena's free-pool bitmap holds exactly its carved empty pools but those a purge
//!   pass has claimed; `nfreepools` counts them plus the pools never carved; a pool waiting for
//!   the next pass (`old`) is on the bitmap and committed; a class's warm list holds exactly
//!   the empty committed pools whose arena's `last_class` names that class.
//! - **A3** Beyond `RESERVE_ARENAS` of each kind, wholly empty arenas stay mapped only while a
//!   purge pass is due.
//! - **A4** A kind's `usable_arenas` holds exactly its arenas with an empty pool, sorted by that
//!   count, and its `nfp2lasta[n]` is the rightmost of them with `n` empty pools.
//! - **R1** Registry leaves, once published, stay mapped for the life of the process.
//! - **R2** A slot's owner is published after its arena's header is written and withdrawn before
//!   the arena is unmapped.

//!
//! ## Modules, bottom-up
//! Each module uses only modules above it in this list.
//! - `sync`: the shared-state primitives (mutex, atomics, the purger's futex event), swapped for
//!   loom's under `cfg(poolmalloc_loom)`, and what stays std's.
//! - `config`: every tunable size and the values derived from them.
//! - `size_class`: request size → class, and the class table.
//! - `tools`: what valgrind and AddressSanitizer are told about our blocks.
//! - `os`: the page sources (`PageSource`, `OsPages`, `MemPages`) and the C library's allocator
//!   behind the large path.
//! - `layout`: the data laid out in memory: `FreeBlock`, the pool header, the arena header.
//! - `planted_fault` (feature `planted-fault`): the known faults the loom models must catch (a
//!   hand-back that stores over the remote chain instead of swapping it; a purge pass that does
//!   not claim what it gives back).
//! - `registry`: the radix tree from arena addresses to their owner and header.
//! - `pool`: the steps of a pool's transitions: carve, take and put a block, push and swap the
//!   remote chain, mark empty; `OwnedPool`, an owner's handle.
//! - `arena`: the arena lock's state: mapping, `usable_arenas`, the purge schedule and passes.
//! - `classes`: a class lock's state: `usedpools` and the class's counters.
//! - `error`: `FreeError`, why a pointer could not be freed.
//! - `large`: the large path (the C library's allocator), counted in per-owner tallies.
//! - `central`: `Core`, its locks and the transitions: pools to and from owners, remote frees
//!   into core-held pools, blocks for callers without a cache, the checked free, the purge
//!   passes and their settings.
//! - `fork` (not under loom): taking and resetting every lock around `fork`, and giving the
//!   pools of the threads a child does not have to the core.
//! - `stats`, `fragmentation`: the snapshots and how they are taken under every lock.
//! - `invariants`: `check_invariants`, the walk that checks P1–P4, O1 and O3 (what another
//!   thread's pool shows), A1–A4 and R1.
//! - `report`: the snapshots' text reports and JSON.
//!
//! The public API is the root's re-exports and `config`, `os` and `tools`; what only the C
//! library's face or the tests need is in `__private`.

#![warn(missing_docs)]

mod arena;
mod central;
mod classes;
pub mod config;
mod error;
mod fragmentation;
mod invariants;
pub mod large;
mod layout;
pub mod os;
#[cfg(feature = "planted-fault")]
mod planted_fault;
mod pool;
mod registry;
mod report;
mod size_class;
mod stats;
mod sync;
pub mod tools;

sync::unless_loom! {
    mod fork;
    pub use sync::{in_fork_window, set_fork_window, Mutex as ForkAwareMutex};
}

pub use arena::ArenaCounters;
pub use central::{Core, Purger, RemoteFree, PURGE_EVENT};
pub use config::Kind;
pub use error::{FreeError, FreeErrorKind};
pub use fragmentation::{ArenaFrag, Band, ClassFrag, Fragmentation, PoolFrag, BANDS};
pub use invariants::Violation;
pub use large::{LargeStats, LargeTally, LargeTotals};
pub use layout::{
    class_tag, free_to_own_pool, link_key_for_cache, note_alloc, pool_owner, push_to_own_pool,
    FreeBlock, FILED_ID,
};
pub use os::{MemPages, OsPages, PageSource};
pub use pool::{Batch, Notices, OwnedPool};
pub use size_class::{
    class_of, is_small, medium_class_of, pool_class_of, Class, ClassInfo, CLASS_TABLE,
};
pub use stats::{ClassStats, CoreStats, PurgeStats};

/// Not part of the API: what exists only for the tests — the loom models' switch for the
/// planted race (feature `planted-fault`). Paths here may change with the tests that use them.
#[doc(hidden)]
pub mod __private {
    /// The loom models' switch for the planted race (feature `planted-fault`).
    #[cfg(feature = "planted-fault")]
    pub mod planted_fault {
        pub use crate::planted_fault::{
            EVERY_NOTICE, NO_NOTICE, ON, UNCLAIMED_PURGE, UNWAITED_HANDOVER,
        };
    }
}
