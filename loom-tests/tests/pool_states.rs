//! Model 1: three threads refill and flush the same class at once. No block is lost or handed out
//! twice; pool counts are right; every pool is on exactly the list its state says; across the
//! exploration the class is seen with a full pool and with a used one, and ends empty.
#![cfg(poolmalloc_loom)]

use std::sync::atomic::{AtomicBool, Ordering};

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, MemPages};

static SAW_FULL: AtomicBool = AtomicBool::new(false);
static SAW_USED: AtomicBool = AtomicBool::new(false);

/// Class 31: 256-byte blocks, three per 1 KiB pool, batches of two.
const CLASS: usize = 31;

fn worker(core: &TestCore, id: u64) {
    let c = class(CLASS);
    let cache = ThreadCache::new();
    cache.activate();
    let a = take(&cache, core, c);
    let b = take(&cache, core, c);
    stamp(a, id);
    stamp(b, id);
    let s = core.class_stats(c);
    SAW_FULL.fetch_or(s.pools_full > 0, Ordering::Relaxed);
    SAW_USED.fetch_or(s.pools_used > 0, Ordering::Relaxed);
    assert_eq!(
        (read_stamp(a), read_stamp(b)),
        (id, id),
        "a block was handed out twice"
    );
    // SAFETY: the block came from this model's core for this class; given up once.
    unsafe { give(&cache, core, c, a) };
    // SAFETY: the block came from this model's core for this class; given up once.
    unsafe { give(&cache, core, c, b) };
    cache.flush(core, c);
    cache.retire(core);
}

#[test]
fn three_threads_refill_and_flush_one_class() {
    model("pool_states", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let threads: Vec<_> = (1..=2)
            .map(|id| {
                let core = core.clone();
                thread::spawn(move || worker(&core, id))
            })
            .collect();
        worker(&core, 3);
        for t in threads {
            t.join().unwrap();
        }
        assert_quiescent(&core);
    });
    assert!(
        SAW_FULL.load(Ordering::Relaxed),
        "no interleaving filled a pool"
    );
    assert!(
        SAW_USED.load(Ordering::Relaxed),
        "no interleaving left a pool used"
    );
}
