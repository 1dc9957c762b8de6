//! The fragmentation faces: `poolmalloc::fragmentation()` walked while other threads allocate and
//! free through the very allocator it inspects (no deadlock, every snapshot adds up), and
//! `Heap::fragmentation()` counting the blocks parked in thread caches as `Heap::stats` does.

use std::alloc::Layout;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use poolmalloc::{Heap, PoolMalloc};
use poolmalloc_core::config::POOL_SIZE;
use poolmalloc_core::Band;

mod common;
use common::class_in_this_build;

#[global_allocator]
static A: PoolMalloc = PoolMalloc;

#[test]
fn global_walks_while_threads_allocate_and_free() {
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..3usize)
        .map(|t| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut kept: Vec<Box<[u8]>> = Vec::new();
                let mut i = t;
                while !stop.load(Ordering::Relaxed) {
                    i = i
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let size = 1 + (i >> 33) % 512;
                    kept.push(vec![t as u8; size].into_boxed_slice());
                    if kept.len() > 2000 {
                        // Drop most, keep a few survivors: pools go sparse and come back.
                        let keep = kept.len() / 16;
                        kept.truncate(keep);
                    }
                }
                assert!(kept.iter().all(|b| b.iter().all(|&x| x == t as u8)));
            })
        })
        .collect();
    let (tx, rx) = mpsc::channel();
    let walker = std::thread::spawn(move || {
        let mut pools_seen = 0;
        for _ in 0..300 {
            let f = poolmalloc::fragmentation();
            assert!(f.identity_holds(), "{f}");
            for c in &f.classes {
                assert!(c.blocks_out_sparse <= c.blocks_out);
            }
            pools_seen = pools_seen.max(f.pools_in_use());
        }
        tx.send(pools_seen).unwrap();
    });
    let pools_seen = rx
        .recv_timeout(Duration::from_secs(120))
        .expect("the walks finished while threads allocated (no deadlock)");
    stop.store(true, Ordering::Relaxed);
    walker.join().unwrap();
    for w in workers {
        w.join().unwrap();
    }
    assert!(pools_seen > 0, "the walks saw the workers' pools");
    assert!(poolmalloc::fragmentation().identity_holds());
}

#[test]
fn heap_frees_go_straight_to_their_pools_and_fragmentation_matches_stats() {
    let heap = Heap::new();
    let layout = Layout::from_size_align(24, 8).unwrap();
    let class = class_in_this_build(24, 8);
    let n = 3 * class.blocks_per_pool();
    let blocks: Vec<*mut u8> = (0..n).map(|_| heap.alloc(layout)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    // Keep one block in each 100; the rest go straight back to their pools (this thread owns
    // them), so the kept blocks alone pin the pools: sparse ones.
    let mut kept = vec![];
    for (i, &p) in blocks.iter().enumerate() {
        if i % 100 == 0 {
            kept.push(p);
        } else {
            // SAFETY: from `heap.alloc(layout)`, freed once.
            unsafe { heap.dealloc(p, layout) };
        }
    }
    let s = heap.stats();
    let f = heap.fragmentation();
    let (fc, sc) = (f.classes[class.index()], s.classes[class.index()]);
    assert_eq!(fc.blocks_out, kept.len());
    assert_eq!(fc.blocks_out, sc.blocks_out);
    assert_eq!(fc.pools_in_use(), sc.pools());
    assert!(f.identity_holds() && s.identity_holds());
    let c = fc;
    assert_eq!(c.pools_sparse(), c.pools_in_use());
    assert_eq!(c.pools[Band::Full.index()], 0);
    assert_eq!(
        c.bytes_idle,
        c.pools_in_use() * POOL_SIZE - kept.len() * class.block_size()
    );
    for p in kept {
        // SAFETY: each kept block came from this heap with `layout` and is freed once.
        unsafe { heap.dealloc(p, layout) };
    }
    heap.flush_thread_cache();
    let f = heap.fragmentation();
    assert_eq!(f.pools_in_use(), 0);
    assert!(f.identity_holds());
}
