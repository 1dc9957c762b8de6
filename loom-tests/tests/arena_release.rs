//! Model 5: an arena is never unmapped while a block of it is out or in flight. One cache holds
//! every pool of one arena and one of a second (class 63: one 512-byte block per loom pool, four
//! pools per arena). Another thread frees two of the first arena's blocks (pushes into pools the
//! owner filed full, each sending it a notice, or, once the owner has exited, adopting them from
//! the core) and exits, while the owner takes one more block —
//! one of those freed, if its notice came in time, else from a fresh pool of the second arena —
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
// Which arena goes back is the drain's order: the owner keeps every pool until it exits, so
// the second arena (its last pools) is emptied first and kept as the reserve. (When the freer
// adopted the first arena's pools, either could be; `SECOND_RELEASED` is marked, not required.)
const FIRST_RELEASED: usize = 0;
const FREED_BLOCK_AGAIN: usize = 1;
const NEW_POOL_IN_SECOND: usize = 2;
const SECOND_RELEASED: usize = 3;

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
                // Pushed while the owner keeps the pool filed; adopted from the core once the
                // owner has exited.
                assert!(
                    matches!(how, Freed::Pushed | Freed::Adopted),
                    "a block of a full pool freed as {how:?}"
                );
            }
            cache.retire(&freer_core);
        });

        // The owner's current pool is used up: it is filed, and the next block comes from a
        // filed pool a notice named, else from a fresh pool of the arena with an empty one.
        // The freer may go first (the owner's reads of its empty notices are loads, which loom
        // does not go back to).
        thread::yield_now();
        let fresh = take(&cache, &core, c);
        if given.contains(&(fresh as usize)) {
            SEEN.mark(FREED_BLOCK_AGAIN);
        } else {
            assert_eq!(arena_of(fresh), second, "the first arena has no empty pool");
            SEEN.mark(NEW_POOL_IN_SECOND);
        }
        stamp(fresh, 99);
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
            "a block the freer freed handed out again, by its notice",
            "a fresh pool from the other arena",
        ],
    );
}
