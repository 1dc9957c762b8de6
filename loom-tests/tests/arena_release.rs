//! Model 5: an arena is never unmapped while a block of it is out or in flight. One cache holds
//! every pool of one arena and one of a second (class 63: one 512-byte block per loom pool, four
//! pools per arena). Another thread frees two of the first arena's blocks (adopting their
//! core-held full pools, keeping one empty, giving the other to the arena) and exits, while the
//! owner takes a fresh pool — from the arena being emptied, if the freer gave a pool back first —
//! then frees everything and exits. Every thread checks, right before each free, that the block's
//! arena is still this core's; at the end one arena is left (the reserve) and the other was
//! unmapped once.
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::config::POOLS_PER_ARENA;
use poolmalloc_core::{Core, MemPages};

/// Class 63: 512-byte blocks, one per loom pool.
const CLASS: usize = 63;

static SEEN: Seen = Seen::new();
const FIRST_RELEASED: usize = 0;
const SECOND_RELEASED: usize = 1;
const NEW_POOL_IN_FIRST: usize = 2;
const NEW_POOL_IN_SECOND: usize = 3;

#[test]
fn the_last_free_of_an_arena_releases_it_only_then() {
    model("arena_release", || {
        let core = Arc::new(Core::new(MemPages::new(3)));
        let c = class(CLASS);
        assert_eq!(c.blocks_per_pool(), 1);
        let cache = ThreadCache::new();
        cache.activate();
        // Every pool of the first arena, and one of the second.
        let blocks: Vec<*mut u8> = (0..=POOLS_PER_ARENA)
            .map(|i| {
                let p = take(&cache, &core, c);
                stamp(p, i as u64);
                p
            })
            .collect();
        let (first, second) = (arena_of(blocks[0]), arena_of(blocks[POOLS_PER_ARENA]));
        assert!(blocks[..POOLS_PER_ARENA]
            .iter()
            .all(|&p| arena_of(p) == first));
        assert_ne!(first, second);
        assert_eq!(core.source().mapped_now(), 2);
        let given = [blocks[0] as usize, blocks[1] as usize];

        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            for (i, p) in given.into_iter().enumerate() {
                let p = p as *mut u8;
                check_held(&freer_core, p, i as u64);
                // SAFETY: a block of this core, out, handed to this thread and freed once.
                let how = unsafe { free(&freer_core, &cache, p) };
                assert_eq!(how, Freed::Adopted, "a full pool's free did not adopt it");
            }
            cache.retire(&freer_core);
        });

        // The owner's current pool is used up: it goes to the core, and a fresh pool comes from
        // the fullest arena with an empty pool.
        let fresh = take(&cache, &core, c);
        stamp(fresh, 99);
        SEEN.mark(if arena_of(fresh) == first {
            NEW_POOL_IN_FIRST
        } else {
            NEW_POOL_IN_SECOND
        });
        for (i, &p) in blocks.iter().enumerate().skip(2) {
            check_held(&core, p, i as u64);
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, p) };
        }
        check_held(&core, fresh, 99);
        // SAFETY: a block this thread took and frees once.
        unsafe { free(&core, &cache, fresh) };
        cache.retire(&core);
        freer.join().unwrap();

        assert_quiescent(&core);
        assert_eq!(
            (core.source().maps(), core.source().unmaps()),
            (2, 1),
            "one arena released, the other kept in reserve"
        );
        let (first_left, second_left) = (core.owns(blocks[0]), core.owns(blocks[POOLS_PER_ARENA]));
        assert!(first_left != second_left);
        SEEN.mark(if first_left {
            SECOND_RELEASED
        } else {
            FIRST_RELEASED
        });
    });
    SEEN.require(
        "arena_release",
        &[
            "the first arena released",
            "the second arena released",
            "a fresh pool from the arena being emptied",
            "a fresh pool from the other arena",
        ],
    );
}
