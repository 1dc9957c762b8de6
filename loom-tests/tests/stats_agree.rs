//! Model 5: the stats counters agree with a walk of the core once all threads are joined, and a
//! snapshot taken while other threads refill and flush is consistent (its parts add up).
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, MemPages};

#[test]
fn counters_agree_with_the_walk() {
    model("stats_agree", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let worker_core = core.clone();
        let worker = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            for c in [class(31), class(63)] {
                let p = take(&cache, &worker_core, c);
                // SAFETY: the block came from this model's core for this class; given up once.
                unsafe { give(&cache, &worker_core, c, p) };
            }
            cache.retire(&worker_core);
        });
        let snapshot = core.stats();
        assert!(
            snapshot.identity_holds(),
            "inconsistent snapshot:\n{snapshot}"
        );
        worker.join().unwrap();
        // `check_invariants` compares every counter with the walk of arenas and pools.
        assert_quiescent(&core);
    });
}
