//! The seed's scenario (shared/seed/pymalloc-answer.txt): allocate 512·k one-byte objects, free
//! 511 of each 512 in allocation order, and watch the survivors pin their pools.

use std::alloc::Layout;

use poolmalloc_core::config::{POOLS_PER_ARENA, POOL_SIZE, RESERVE_ARENAS};
use poolmalloc_core::{class_of, Core, MemPages};

const K: usize = 600;

#[test]
fn survivors_pin_their_pools_until_freed() {
    let core = Core::new(MemPages::new(16));
    let one = Layout::from_size_align(1, 1).unwrap();
    let class = class_of(1, 1).unwrap();
    let per_pool = class.blocks_per_pool();

    let blocks: Vec<*mut u8> = (0..512 * K).map(|_| core.alloc(one)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    let pools_at_peak = (512 * K).div_ceil(per_pool);
    let s = core.stats();
    assert_eq!(s.classes[class.index()].pools(), pools_at_peak);
    assert_eq!(s.classes[class.index()].blocks_out, 512 * K);
    assert!(s.identity_holds());
    core.check_invariants().unwrap();

    // Free 511 of each 512, in allocation order: block 512·i survives.
    let mut survivors = vec![];
    for (i, &p) in blocks.iter().enumerate() {
        if i % 512 == 0 {
            survivors.push(p);
        } else {
            // SAFETY: each block came from `alloc(one)` and is freed once.
            unsafe { core.dealloc(p, one).unwrap() };
        }
    }
    // Blocks are carved in address order, so survivor i lives in pool (512·i) / per_pool: every
    // pool that holds a survivor stays, only a pool without one (the last) goes back.
    let expected: std::collections::BTreeSet<usize> = (0..K).map(|i| 512 * i / per_pool).collect();
    let pinned: std::collections::BTreeSet<usize> = survivors
        .iter()
        .map(|&p| p as usize & !(POOL_SIZE - 1))
        .collect();
    let s = core.stats();
    let c = s.classes[class.index()];
    assert_eq!(pinned.len(), expected.len());
    assert_eq!(
        c.pools(),
        expected.len(),
        "every pool with a survivor is pinned"
    );
    assert!(expected.len() >= pools_at_peak - 1);
    assert_eq!(c.blocks_out, K);
    assert_eq!(s.bytes_in_blocks_out(), K * class.block_size());
    assert_eq!(s.arenas.mapped, pools_at_peak.div_ceil(POOLS_PER_ARENA));
    assert!(s.identity_holds());
    core.check_invariants().unwrap();
    println!("after freeing 511 of each 512:\n{s}");

    // Free the survivors: all pools empty, arenas beyond the reserve gone.
    for p in survivors {
        // SAFETY: each survivor came from `alloc(one)` and is freed once.
        unsafe { core.dealloc(p, one).unwrap() };
    }
    let s = core.stats();
    assert_eq!(s.pools_in_use(), 0);
    assert_eq!(s.arenas.mapped, RESERVE_ARENAS);
    assert_eq!(core.source().mapped_now(), RESERVE_ARENAS);
    core.check_invariants().unwrap();
    println!("after freeing the survivors:\n{s}");
}

/// The seed's arithmetic with one survivor per pool: k pools each pinned by exactly one block.
#[test]
fn one_survivor_per_pool_pins_exactly_that_pool() {
    let core = Core::new(MemPages::new(16));
    let one = Layout::from_size_align(1, 1).unwrap();
    let class = class_of(1, 1).unwrap();
    let per_pool = class.blocks_per_pool();
    let blocks: Vec<*mut u8> = (0..per_pool * K).map(|_| core.alloc(one)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    for (i, &p) in blocks.iter().enumerate() {
        if i % per_pool != 0 {
            // SAFETY: freed once.
            unsafe { core.dealloc(p, one).unwrap() };
        }
    }
    let s = core.stats();
    let c = s.classes[class.index()];
    assert_eq!((c.pools(), c.blocks_out), (K, K), "k pools, one block each");
    assert_eq!(c.free_in_pools, K * (per_pool - 1));
    assert!(s.identity_holds());
    core.check_invariants().unwrap();
}
