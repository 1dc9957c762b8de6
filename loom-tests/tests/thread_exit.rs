//! Model 2: a remote free racing the owner giving its pool back — at exit (`retire`) or in a
//! drain that leaves its cache in service. The free lands on the remote chain before the owner's
//! swap to `CORE_HELD` (the hand-back takes it in), or sees `CORE_HELD` and goes through the
//! class lock (O3): adopted by a freer with a cache, freed in the core by one without. Either
//! way, once everything is freed and every cache retired, nothing is out and the arenas are back.
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::{CacheState, ThreadCache};
use poolmalloc_core::{Core, Kind, MemPages, OwnedPool};

/// Class 31: 256-byte blocks, three per 1 KiB pool, carved one at a time.
const CLASS: usize = 31;

static RETIRE_SEEN: Seen = Seen::new();
static DRAIN_SEEN: Seen = Seen::new();
const PUSHED: usize = 0;
const THROUGH_CORE: usize = 1;
const SAME_POOL: usize = 2;

#[test]
fn retire_races_a_remote_free() {
    model("thread_exit/retire", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        assert_eq!((c.blocks_per_pool(), c.carve()), (3, 1));
        let cache = ThreadCache::new();
        cache.activate();
        let given = take(&cache, &core, c);
        let kept = take(&cache, &core, c);
        assert_eq!(
            OwnedPool::of(given, Kind::Small),
            OwnedPool::of(kept, Kind::Small)
        );
        stamp(given, 1);
        stamp(kept, 2);
        let addr = given as usize;

        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            let p = addr as *mut u8;
            check_held(&freer_core, p, 1);
            // SAFETY: a block of this core, out, handed to this thread and freed once.
            match unsafe { free(&freer_core, &cache, p) } {
                Freed::Pushed => RETIRE_SEEN.mark(PUSHED),
                Freed::Adopted => RETIRE_SEEN.mark(THROUGH_CORE),
                other => panic!("a block of another cache's pool freed as {other:?}"),
            }
            cache.retire(&freer_core);
        });

        // The owner frees its other block (locally: the pool is not empty while the freer's
        // block is out or on its remote chain) and exits.
        check_held(&core, kept, 2);
        // SAFETY: a block this thread took and frees once.
        let how = unsafe { free(&core, &cache, kept) };
        assert_eq!(how, Freed::Local, "the pool emptied with a block out");
        cache.retire(&core);
        assert_eq!(cache.state(), CacheState::Retired);
        freer.join().unwrap();
        assert_quiescent(&core);
    });
    RETIRE_SEEN.require(
        "thread_exit/retire",
        &["free pushed before the hand-back", "free adopting after it"],
    );
}

#[test]
fn drain_races_a_remote_free() {
    model("thread_exit/drain", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        let cache = ThreadCache::new();
        cache.activate();
        let given = take(&cache, &core, c);
        let kept = take(&cache, &core, c);
        let pool = OwnedPool::of(given, Kind::Small);
        stamp(given, 1);
        stamp(kept, 2);
        let addr = given as usize;

        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let p = addr as *mut u8;
            check_held(&freer_core, p, 1);
            // A thread without a cache: it never adopts.
            // SAFETY: a block of this core, out, handed to this thread and freed once.
            match unsafe { free_uncached(&freer_core, p) } {
                Freed::Pushed => DRAIN_SEEN.mark(PUSHED),
                Freed::Core => DRAIN_SEEN.mark(THROUGH_CORE),
                other => panic!("freed without a cache as {other:?}"),
            }
        });

        // The owner gives everything back but stays in service, then allocates again: from the
        // core, which may hand it its old pool back (adopted from the core's used pools).
        cache.drain(&core);
        assert_eq!(cache.state(), CacheState::Active);
        let again = take(&cache, &core, c);
        stamp(again, 3);
        if OwnedPool::of(again, Kind::Small) == pool {
            DRAIN_SEEN.mark(SAME_POOL);
        }
        check_held(&core, kept, 2);
        // SAFETY: a block this thread took and frees once.
        unsafe { free(&core, &cache, kept) };
        freer.join().unwrap();
        check_held(&core, again, 3);
        // SAFETY: a block this thread took and frees once.
        unsafe { free(&core, &cache, again) };
        cache.retire(&core);
        assert_quiescent(&core);
    });
    DRAIN_SEEN.require(
        "thread_exit/drain",
        &[
            "free pushed before the hand-back",
            "free under the class lock after it",
            "the drained pool adopted again",
        ],
    );
}
