//! Model 4: a thread's exit flush (its cache retiring, with blocks of several pools) racing two
//! other threads' refills of the same class.
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::{CacheState, ThreadCache};
use poolmalloc_core::{Core, MemPages};

/// Class 31: three blocks per pool, batches of two.
const CLASS: usize = 31;

#[test]
fn exit_flush_races_refill() {
    model("thread_exit", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        let exiting = core.clone();
        let t = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            let a = take(&cache, &exiting, c);
            let b = take(&cache, &exiting, c);
            // SAFETY: the block came from this model's core for this class; given up once.
            unsafe { give(&cache, &exiting, c, a) };
            // SAFETY: the block came from this model's core for this class; given up once.
            unsafe { give(&cache, &exiting, c, b) };
            // What the global allocator's exit guard does.
            cache.retire(&exiting);
            assert_eq!(cache.state(), CacheState::Retired);
        });
        let refiller = core.clone();
        let r = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            let p = take(&cache, &refiller, c);
            stamp(p, 5);
            assert_eq!(read_stamp(p), 5);
            // SAFETY: the block came from this model's core for this class; given up once.
            unsafe { give(&cache, &refiller, c, p) };
            cache.retire(&refiller);
        });
        let cache = ThreadCache::new();
        cache.activate();
        let p = take(&cache, &core, c);
        stamp(p, 3);
        let q = take(&cache, &core, c);
        stamp(q, 4);
        assert_eq!((read_stamp(p), read_stamp(q)), (3, 4));
        t.join().unwrap();
        r.join().unwrap();
        // SAFETY: the block came from this model's core for this class; given up once.
        unsafe { give(&cache, &core, c, p) };
        // SAFETY: the block came from this model's core for this class; given up once.
        unsafe { give(&cache, &core, c, q) };
        cache.retire(&core);
        assert_quiescent(&core);
    });
}
