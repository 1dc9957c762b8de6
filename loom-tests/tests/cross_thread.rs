//! Model 3: cross-thread free. Blocks allocated through one thread's cache are freed and flushed
//! through two others' while the first keeps allocating; the pool's state and its class list are
//! right afterwards.
#![cfg(poolmalloc_loom)]

use loom::sync::{mpsc, Arc};
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, MemPages};

/// Class 47: 384-byte blocks, two per 1 KiB pool.
const CLASS: usize = 47;

#[test]
fn block_freed_and_flushed_on_another_thread() {
    model("cross_thread", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<usize>();
                let consumer_core = core.clone();
                let consumer = thread::spawn(move || {
                    let cache = ThreadCache::new();
                    cache.activate();
                    let p = rx.recv().unwrap() as *mut u8;
                    assert_eq!(read_stamp(p), 7);
                    // SAFETY: the block came from this model's core for this class; given up once.
                    unsafe { give(&cache, &consumer_core, c, p) };
                    cache.flush(&consumer_core, c);
                    cache.retire(&consumer_core);
                });
                (tx, consumer)
            })
            .collect();
        let cache = ThreadCache::new();
        cache.activate();
        for (tx, _) in &consumers {
            let p = take(&cache, &core, c);
            stamp(p, 7);
            tx.send(p as usize).unwrap();
        }
        let q = take(&cache, &core, c);
        stamp(q, 8);
        assert_eq!(read_stamp(q), 8);
        // SAFETY: the block came from this model's core for this class; given up once.
        unsafe { give(&cache, &core, c, q) };
        cache.retire(&core);
        for (_, consumer) in consumers {
            consumer.join().unwrap();
        }
        assert_quiescent(&core);
    });
}
