//! Model 4: adoption of an abandoned pool racing a late remote free. Thread A allocates two
//! blocks of one pool, gives one to thread B, keeps the other, and exits: its pool goes to the
//! core with blocks out (abandoned). A new thread C (on A's thread, as a thread that starts after
//! A's exit) allocates the same class meanwhile and adopts the abandoned pool from the core's
//! used pools. B's free races all of it: pushed onto A's chain before the hand-back (which takes
//! it in), adopted by B from the core, or pushed onto C's chain after C adopted the pool. After
//! C frees everything and B and C retire, nothing is out.
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, Kind, MemPages, OwnedPool};

/// Class 31: 256-byte blocks, three per 1 KiB pool, carved one at a time.
const CLASS: usize = 31;

static SEEN: Seen = Seen::new();
const PUSHED: usize = 0;
const B_ADOPTED: usize = 1;
const C_ADOPTED: usize = 2;
const PUSHED_TO_C: usize = 3;
const C_FRESH_POOL: usize = 4;

#[test]
fn an_abandoned_pool_is_adopted_while_a_late_free_lands() {
    model("adoption", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        assert_eq!((c.blocks_per_pool(), c.carve()), (3, 1));
        let a = ThreadCache::new();
        a.activate();
        let given = take(&a, &core, c);
        let held = take(&a, &core, c);
        let pool = OwnedPool::of(given, Kind::Small);
        assert_eq!(OwnedPool::of(held, Kind::Small), pool);
        stamp(given, 1);
        stamp(held, 2);
        let addr = given as usize;

        let b_core = core.clone();
        let b = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            let p = addr as *mut u8;
            check_held(&b_core, p, 1);
            // SAFETY: a block of this core, out, handed to this thread and freed once.
            let how = unsafe { free(&b_core, &cache, p) };
            match how {
                Freed::Pushed => SEEN.mark(PUSHED),
                Freed::Adopted => SEEN.mark(B_ADOPTED),
                other => panic!("a block of another cache's pool freed as {other:?}"),
            }
            cache.retire(&b_core);
            how
        });

        // A exits with `held` still out: its pool is abandoned to the core.
        a.retire(&core);
        // C starts and allocates: the core's used pool (the abandoned one, with room) if B has
        // not adopted it, else a fresh pool.
        let cc = ThreadCache::new();
        cc.activate();
        let mine = take(&cc, &core, c);
        assert_ne!(mine, held, "a block still out handed out again");
        stamp(mine, 3);
        let c_adopted = OwnedPool::of(mine, Kind::Small) == pool;
        SEEN.mark(if c_adopted { C_ADOPTED } else { C_FRESH_POOL });
        let how = b.join().unwrap();
        if c_adopted {
            // C holds `mine` and `held`; B's block is out too if it went onto C's chain (not if
            // it went onto A's, which A's hand-back took in, nor if B freed it locally).
            // SAFETY: C owns the pool (it allocated from it and has not given it up).
            let out = unsafe { pool.out() };
            let on_chain = out.checked_sub(2).expect("C's blocks not counted out");
            assert!(on_chain <= 1, "{out} blocks out of a pool of 3 with 2 held");
            if on_chain == 1 {
                assert_eq!(
                    how,
                    Freed::Pushed,
                    "a block on C's chain that B did not push"
                );
                SEEN.mark(PUSHED_TO_C);
            }
        }
        // C frees the abandoned block (locally if C adopted the pool, else adopting it) and its
        // own, and exits.
        for (p, s) in [(held, 2), (mine, 3)] {
            check_held(&core, p, s);
            // SAFETY: a block taken from this core, out, freed once.
            unsafe { free(&core, &cc, p) };
        }
        cc.retire(&core);
        assert_quiescent(&core);
    });
    SEEN.require(
        "adoption",
        &[
            "B's free pushed",
            "B adopts the abandoned pool",
            "C adopts the abandoned pool",
            "B's free pushed onto C's chain",
            "C takes a fresh pool",
        ],
    );
}
