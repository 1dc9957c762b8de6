//! Model 2: arena release racing allocation. One thread frees the last blocks of two arenas while
//! another takes a new pool. An arena is never unmapped while a pool in it is used or being
//! taken, the reserve rule holds, and the page source's count of unmaps says so.
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc_core::config::POOLS_PER_ARENA;
use poolmalloc_core::{Core, MemPages};

/// Class 63: 512-byte blocks, one per 1 KiB pool, so every block is a pool.
const CLASS: usize = 63;

#[test]
fn last_free_of_an_arena_races_a_new_pool() {
    model("arena_release", || {
        let core = Arc::new(Core::new(MemPages::new(3)));
        let c = class(CLASS);
        // Arena A: all its pools used. Arena B: one pool used.
        let a: Vec<usize> = (0..POOLS_PER_ARENA)
            .map(|_| core.alloc_block(c).unwrap().as_ptr() as usize)
            .collect();
        let b = core.alloc_block(c).unwrap().as_ptr() as usize;
        assert_eq!(core.source().mapped_now(), 2);

        let freer = core.clone();
        let t = thread::spawn(move || {
            let blocks: Vec<*mut u8> = a.iter().map(|&p| p as *mut u8).collect();
            // SAFETY: the chain holds blocks taken from this core for `c`, each once.
            unsafe { freer.give_batch(c, chain(&blocks), blocks.len()) };
            // SAFETY: `b` is out and freed once.
            unsafe { freer.free_block(b as *mut u8).unwrap() };
        });
        // A third thread takes and gives back a pool of its own meanwhile.
        let churner = core.clone();
        let u = thread::spawn(move || {
            let p = churner.alloc_block(c).expect("a pool").as_ptr();
            stamp(p, 0xC0DE);
            assert_eq!(read_stamp(p), 0xC0DE);
            // SAFETY: `p` is out and freed once.
            unsafe { churner.free_block(p).unwrap() };
        });
        let mine = core.alloc_block(c).expect("a pool").as_ptr();
        stamp(mine, 0xA11C);
        t.join().unwrap();
        u.join().unwrap();

        // The new pool's arena is still mapped and the block intact.
        assert!(core.owns(mine), "the arena of a used pool was unmapped");
        assert_eq!(read_stamp(mine), 0xA11C);
        core.check_invariants().unwrap_or_else(|v| panic!("{v}"));
        let s = core.stats();
        assert_eq!(s.arenas.mapped, core.source().mapped_now());
        // One arena holds `mine`; at most one more is the reserve.
        assert!(s.arenas.mapped <= 2);
        assert_eq!(
            core.source().unmaps(),
            core.source().maps() - s.arenas.mapped
        );

        // SAFETY: `mine` is out and freed once.
        unsafe { core.free_block(mine).unwrap() };
        assert_quiescent(&core);
    });
}
