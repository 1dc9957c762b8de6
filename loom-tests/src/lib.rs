//! Helpers shared by the loom models in `tests/`: running a model and counting the interleavings
//! it explored, and driving blocks through a `ThreadCache` bound to a model's own core.
//!
//! Every model builds a fresh core over the in-memory page source inside `loom::model` (loom's
//! mutexes cannot live in a static), with the loom geometry of `poolmalloc_core::config`: 1 KiB
//! pools, four per arena, two blocks per batch.
#![cfg(poolmalloc_loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Class, Core, FreeBlock, MemPages};

pub type TestCore = Core<MemPages>;

/// Runs `body` under loom (preemption bound from `LOOM_MAX_PREEMPTIONS`, default 3) and prints
/// how many interleavings it explored and how long that took.
pub fn model(name: &str, body: impl Fn() + Sync + Send + 'static) -> usize {
    let runs = Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    // A thread cache's activation and retirement store every list's `room` (a loom atomic each):
    // a few hundred branch points in one execution, past loom's default of 1000 in the longer
    // models. They are owner-only stores, so they add branch points, not interleavings.
    builder.max_branches = 20_000;
    let bound = builder.preemption_bound;
    let start = Instant::now();
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        body();
    });
    let explored = runs.load(Ordering::Relaxed);
    println!(
        "loom model {name}: {explored} interleavings, preemption bound {}, {:.1?}",
        bound.map_or("none".to_string(), |b| b.to_string()),
        start.elapsed()
    );
    explored
}

pub fn class(index: usize) -> Class {
    Class::new(index).expect("a size class")
}

/// Writes `stamp` into a block this thread holds.
pub fn stamp(block: *mut u8, stamp: u64) {
    // SAFETY: the caller holds the block, at least 8 bytes.
    unsafe { block.cast::<u64>().write(stamp) }
}

/// The stamp a block holds: had another thread been handed the same block, its stamp would show.
pub fn read_stamp(block: *mut u8) -> u64 {
    // SAFETY: the caller holds the block, at least 8 bytes.
    unsafe { block.cast::<u64>().read() }
}

/// A block from `cache`, refilling from `core` when its list is empty.
pub fn take(cache: &ThreadCache, core: &TestCore, class: Class) -> *mut u8 {
    let p = cache.pop(class);
    if !p.is_null() {
        return p;
    }
    let p = cache.refill(core, class);
    assert!(!p.is_null(), "the model's page source ran out");
    p
}

/// Gives a block to `cache`, flushing a batch to `core` when the list is full.
///
/// # Safety
/// `block` is a block of `class` taken from `core` (through any cache) and given up here.
pub unsafe fn give(cache: &ThreadCache, core: &TestCore, class: Class, block: *mut u8) {
    let tag = class.index() as u8 + 1;
    // SAFETY: the block is of `class` and the caller gives it up.
    if !unsafe { cache.push(tag, block) } {
        cache.flush(core, class);
        // SAFETY: the block is of `class` and given up (precondition); the flush made room.
        assert!(unsafe { cache.push(tag, block) });
    }
}

/// Links blocks into a chain for `Core::give_batch`.
pub fn chain(blocks: &[*mut u8]) -> *mut FreeBlock {
    let mut head: *mut FreeBlock = std::ptr::null_mut();
    for &b in blocks.iter().rev() {
        let block = b.cast::<FreeBlock>();
        // SAFETY: the caller holds the blocks; their first word becomes the link.
        unsafe { (*block).next = head };
        head = block;
    }
    head
}

/// After every thread is joined: the invariants hold, the counters agree with the walk and the
/// accounting identity, and nothing is out.
pub fn assert_quiescent(core: &TestCore) {
    core.check_invariants().unwrap_or_else(|v| panic!("{v}"));
    let s = core.stats();
    assert!(s.identity_holds(), "accounting identity broken:\n{s}");
    assert_eq!(s.bytes_in_blocks_out(), 0, "blocks still out:\n{s}");
    assert_eq!(s.pools_in_use(), 0);
    assert_eq!(
        core.source().mapped_now(),
        s.arenas.mapped,
        "page source disagrees"
    );
    assert!(s.arenas.mapped <= poolmalloc_core::config::RESERVE_ARENAS);
}
