//! Model 3: a full pool is found again. The owner fills a pool and allocates one more block (the
//! full pool is filed, still its own), then flushes its cache: the full pool goes to the core,
//! which keeps full pools on no list, so only a free can find it.
//! Two threads then free its two blocks at once: the first to take the class lock adopts it
//! (`RemoteFree::Adopted`) and frees its block locally; the other pushes onto the adopter's
//! remote chain, or, if the adopter already gave the pool back, adopts it in turn. The pool is
//! not left full, each block is freed once, and everything ends quiescent.
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, Kind, MemPages, OwnedPool};

/// Class 47: 384-byte blocks, two per 1 KiB pool, carved one at a time.
const CLASS: usize = 47;

static SEEN: Seen = Seen::new();
const MAIN_ADOPTED: usize = 0;
const OTHER_ADOPTED: usize = 1;
const PUSHED_TO_ADOPTER: usize = 2;
const ADOPTED_AFTER_HAND_BACK: usize = 3;

#[test]
fn a_full_pool_is_found_again_by_a_free() {
    model("pool_states", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        assert_eq!((c.blocks_per_pool(), c.carve()), (2, 1));
        let cache = ThreadCache::new();
        cache.activate();
        let full = [take(&cache, &core, c), take(&cache, &core, c)];
        let pool = OwnedPool::of(full[0], Kind::Small);
        assert_eq!(OwnedPool::of(full[1], Kind::Small), pool);
        // One more block: the full pool is filed, the block comes from a fresh pool.
        let extra = take(&cache, &core, c);
        assert_ne!(OwnedPool::of(extra, Kind::Small), pool);
        // The flush gives both to the core: the full one to no list.
        cache.drain(&core);
        assert_eq!(
            arena_of(extra),
            arena_of(full[0]),
            "both pools in one arena"
        );
        let s = class_snapshot(&core, c);
        assert_eq!(
            (s.pools_full, s.pools_owned, s.blocks_out),
            (1, 0, 3),
            "the used-up pool is full in the core"
        );
        stamp(full[0], 1);
        stamp(full[1], 2);
        stamp(extra, 3);
        let theirs = full[0] as usize;

        let other_core = core.clone();
        let other = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            let p = theirs as *mut u8;
            check_held(&other_core, p, 1);
            // SAFETY: a block of this core, out, handed to this thread and freed once.
            let how = unsafe { free(&other_core, &cache, p) };
            match how {
                Freed::Adopted => SEEN.mark(OTHER_ADOPTED),
                Freed::Pushed => SEEN.mark(PUSHED_TO_ADOPTER),
                other => panic!("a block of a core-held pool freed as {other:?}"),
            }
            // Exit: a pool it adopted goes back to the core (or its arena), its remote chain
            // taken in.
            cache.retire(&other_core);
            how
        });

        check_held(&core, full[1], 2);
        // SAFETY: a block this thread took and frees once.
        match unsafe { free(&core, &cache, full[1]) } {
            Freed::Adopted => SEEN.mark(MAIN_ADOPTED),
            Freed::Pushed => SEEN.mark(PUSHED_TO_ADOPTER),
            other => panic!("a block of a core-held pool freed as {other:?}"),
        }
        let how = other.join().unwrap();

        // Both blocks of the full pool are back, except the other thread's if it went onto
        // this cache's remote chain (still out until this cache takes the chain in): only
        // `extra` is out besides, and no pool is full.
        let on_chain = usize::from(how == Freed::Pushed);
        let s = class_snapshot(&core, c);
        assert_eq!(
            s.blocks_out,
            1 + on_chain,
            "a free into the full pool was lost:\n{s:?}"
        );
        assert_eq!(s.pools_full, 0, "the full pool was never found again");
        // SAFETY: the pool's header is mapped: its arena is `extra`'s, whose block is out.
        let owner = unsafe { poolmalloc_core::pool_owner(full[0], Kind::Small) };
        if on_chain == 1 {
            assert_eq!(
                owner,
                cache.id(),
                "a push went to a pool its adopter gave up"
            );
            // SAFETY: this cache owns the pool (checked just above).
            assert_eq!(unsafe { pool.out() }, 1, "the pushed block is counted out");
        }
        // The pool serves again: the next blocks (the fresh pool's last one, then the found
        // pool's or a new one) are distinct, and every one is freed.
        let again = [take(&cache, &core, c), take(&cache, &core, c)];
        if again.iter().any(|&p| OwnedPool::of(p, Kind::Small) == pool) {
            SEEN.mark(ADOPTED_AFTER_HAND_BACK);
        }
        assert_ne!(again[0], again[1]);
        for (i, &p) in again.iter().enumerate() {
            assert_ne!(p, extra, "a block handed out twice");
            stamp(p, 4 + i as u64);
        }
        for (i, &p) in again.iter().enumerate() {
            check_held(&core, p, 4 + i as u64);
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, p) };
        }
        check_held(&core, extra, 3);
        // SAFETY: a block this thread took and frees once.
        unsafe { free(&core, &cache, extra) };
        cache.retire(&core);
        assert_quiescent(&core);
    });
    SEEN.require(
        "pool_states",
        &[
            "the owner's free adopts the full pool",
            "the other thread's free adopts it",
            "the second free pushed onto the adopter's chain",
            "the found pool serves the owner again",
        ],
    );
}
