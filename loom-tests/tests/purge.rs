//! Model 10: a purge pass racing an allocation that takes a warm pool. One arena's pools (class
//! 63: one block per loom pool) are emptied and have waited a pass; then a purge pass runs on
//! one thread while another takes a pool and writes its block. The allocation gets a committed
//! pool (taken before the pass claimed the arena's pools), a pool the pass gave back (taken
//! after it, recommitted), or — while the pass holds them — a pool of a fresh arena: never one
//! whose pages are going. The block keeps its stamp through the pass, its arena stays mapped
//! while it is out, and the core is consistent at the end.
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::config::{POOLS_PER_ARENA, POOL_SIZE};
use poolmalloc_core::{Core, MemPages};

/// Class 63: 512-byte blocks, one per loom pool.
const CLASS: usize = 63;

static SEEN: Seen = Seen::new();
const TAKEN_BEFORE: usize = 0;
const TAKEN_AFTER: usize = 1;
const TAKEN_WHILE_CLAIMED: usize = 2;

/// Runs the model; `seen` records which of the three outcomes an interleaving reached.
pub fn purge_racing_an_allocation(seen: &'static Seen) {
    model("purge", move || {
        let core = Arc::new(Core::with_purge_delay(MemPages::new(3), 1));
        let c = class(CLASS);
        assert_eq!(c.blocks_per_pool(), 1);
        let cache = ThreadCache::new();
        cache.activate();
        let blocks: Vec<*mut u8> = (0..POOLS_PER_ARENA)
            .map(|_| take(&cache, &core, c))
            .collect();
        let first = arena_of(blocks[0]);
        for &p in &blocks {
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, p) };
        }
        cache.retire(&core);
        // The first pass marks the empty pools; the second, below, gives them back.
        core.source().advance_ms(1);
        assert!(core.purge().is_some());
        core.source().advance_ms(1);

        let purger_core = core.clone();
        let purger = thread::spawn(move || {
            purger_core.purge();
        });
        let taker = ThreadCache::new();
        taker.activate();
        let p = take(&taker, &core, c);
        stamp(p, 7);
        purger.join().unwrap();
        check_held(&core, p, 7);
        let decommitted = core.source().decommitted();
        seen.mark(if arena_of(p) != first {
            TAKEN_WHILE_CLAIMED
        } else if decommitted == (POOLS_PER_ARENA - 1) * POOL_SIZE {
            TAKEN_BEFORE
        } else {
            assert_eq!(decommitted, POOLS_PER_ARENA * POOL_SIZE);
            TAKEN_AFTER
        });
        // SAFETY: a block this thread took and frees once.
        unsafe { free(&core, &taker, p) };
        taker.retire(&core);
        // Two more passes: every pool given back, and a fresh arena (if any) unmapped.
        for _ in 0..2 {
            core.source().advance_ms(1);
            core.purge();
        }
        assert_quiescent(&core);
    });
}

#[test]
fn a_purge_never_gives_back_a_pool_an_allocation_takes() {
    purge_racing_an_allocation(&SEEN);
    SEEN.require(
        "purge",
        &[
            "the pool taken before the pass claimed it",
            "a pool the pass gave back, taken after it",
            "a fresh arena's pool, while the pass held the others",
        ],
    );
}
