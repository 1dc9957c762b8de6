//! Model 1: remote frees racing the owner's refills. The owner fills a pool; another thread frees
//! both blocks (pushes onto the pool's remote chain while the owner owns it) while the owner
//! allocates two more: each refill swaps the remote chain out (O2), or finds the pool used up and
//! hands it to the core (O3), where the freer, finding it core-held, adopts it. No block is lost
//! (everything freed and retired: quiescent) and none is handed out twice (stamps).
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, MemPages, OwnedPool};

/// Class 47: 384-byte blocks, two per 1 KiB pool, carved one at a time.
const CLASS: usize = 47;

static SEEN: Seen = Seen::new();
const PUSHED: usize = 0;
const ADOPTED: usize = 1;
const REUSED: usize = 2;
const FRESH_POOL: usize = 3;

#[test]
fn remote_push_races_the_owners_swap() {
    model("cross_thread", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        assert_eq!((c.blocks_per_pool(), c.carve()), (2, 1));
        let cache = ThreadCache::new();
        cache.activate();
        let given = [take(&cache, &core, c), take(&cache, &core, c)];
        let pool = OwnedPool::of(given[0]);
        assert_eq!(OwnedPool::of(given[1]), pool, "both blocks fill one pool");
        for &p in &given {
            stamp(p, 1);
        }
        let addrs = given.map(|p| p as usize);

        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            for p in addrs {
                let p = p as *mut u8;
                check_held(&freer_core, p, 1);
                // SAFETY: a block of this core, out, handed to this thread and freed once.
                match unsafe { free(&freer_core, &cache, p) } {
                    Freed::Pushed => SEEN.mark(PUSHED),
                    Freed::Adopted => SEEN.mark(ADOPTED),
                    // The second block, after this thread adopted the pool with the first.
                    Freed::Local | Freed::Emptied => {}
                    Freed::Core => panic!("a thread with a cache freed under the class lock"),
                }
            }
            cache.retire(&freer_core);
        });

        // The owner keeps allocating: its pool is full, so each refill takes back the remote
        // chain, or hands the used-up pool to the core and moves on.
        let mine = [take(&cache, &core, c), take(&cache, &core, c)];
        assert_ne!(mine[0], mine[1], "the owner was handed one block twice");
        for (i, &p) in mine.iter().enumerate() {
            stamp(p, 2 + i as u64);
            if addrs.contains(&(p as usize)) {
                SEEN.mark(REUSED);
            }
            if OwnedPool::of(p) != pool {
                SEEN.mark(FRESH_POOL);
            }
        }
        freer.join().unwrap();
        for (i, &p) in mine.iter().enumerate() {
            check_held(&core, p, 2 + i as u64);
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, p) };
        }
        cache.retire(&core);
        assert_quiescent(&core);
    });
    SEEN.require(
        "cross_thread",
        &[
            "remote push",
            "adoption of the handed-back pool",
            "a remote-freed block handed out again",
            "a fresh pool",
        ],
    );
}
