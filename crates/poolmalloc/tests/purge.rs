//! Memory back to the OS in time: through `PoolMalloc` (the process's allocator here) and a
//! `Heap`, freed memory waits the purge delay and then the purger thread gives it back, with no
//! allocator call from the program; `collect` gives it back at once.

use std::alloc::Layout;
use std::time::{Duration, Instant};

use poolmalloc::{Heap, PoolMalloc, Purger};
use poolmalloc_core::config::{ARENA_SIZE, PURGE_DELAY_MS};
use poolmalloc_core::MemPages;

#[global_allocator]
static ALLOC: PoolMalloc = PoolMalloc;

/// Waits (sleeping, no allocator call) until `done` holds or 2 s pass; true if it held.
fn within_2s(done: impl Fn() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    done()
}

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

#[test]
fn the_global_allocator_gives_freed_memory_back_by_its_purger() {
    let layout = Layout::from_size_align(64, 8).unwrap();
    let blocks: Vec<usize> = (0..100_000)
        // SAFETY: a non-zero layout.
        .map(|_| unsafe { std::alloc::alloc(layout) } as usize)
        .collect();
    for &b in &blocks {
        // SAFETY: allocated above with this layout, freed once.
        unsafe { std::alloc::dealloc(b as *mut u8, layout) };
    }
    let s = poolmalloc::stats();
    assert_eq!(s.purge.delay_ms, PURGE_DELAY_MS);
    assert!(s.purge.by_thread);
    assert!(
        within_2s(|| poolmalloc::stats().purge.warm_bytes < ARENA_SIZE),
        "{}",
        poolmalloc::stats()
    );
    let s = poolmalloc::stats();
    assert!(s.purge.wakeups > 0 && s.arenas.purged_bytes > 0, "{s}");
    assert!(thread_names().iter().any(|n| n == "poolmalloc bg"));
    drop(blocks);
}

#[test]
fn a_heap_is_purged_the_same_way_and_leaves_the_purger_when_dropped() {
    let heap = Heap::with_source(MemPages::new(8));
    let layout = Layout::from_size_align(512, 8).unwrap();
    let blocks: Vec<*mut u8> = (0..3 * ARENA_SIZE / 512)
        .map(|_| heap.alloc(layout))
        .collect();
    for &b in &blocks {
        // SAFETY: allocated above from this heap with this layout, freed once.
        unsafe { heap.dealloc(b, layout) };
    }
    heap.flush_thread_cache();
    let warm = heap.stats().purge.warm_bytes;
    assert!(warm >= 2 * ARENA_SIZE, "{}", heap.stats());
    // The heap's clock (its page source's) stands still: nothing goes until it moves on.
    std::thread::sleep(Duration::from_millis(3 * PURGE_DELAY_MS));
    assert_eq!(heap.stats().purge.warm_bytes, warm);
    let src = heap.core().source();
    src.advance_ms(PURGE_DELAY_MS);
    // The purger's first pass marks what waits; after one more delay the next gives it back.
    assert!(within_2s(|| heap.stats().arenas.purge_passes >= 1));
    src.advance_ms(PURGE_DELAY_MS);
    assert!(
        within_2s(|| heap.stats().purge.warm_bytes == 0),
        "{}",
        heap.stats()
    );
    assert_eq!(heap.stats().arenas.mapped, 1, "only the reserve is left");
    heap.check_invariants().unwrap();
    drop(heap);
}

#[test]
fn purger_calls_and_a_zero_delay_are_honoured_by_a_heap() {
    let heap = Heap::with_source(MemPages::new(8));
    heap.set_purger(Purger::Calls);
    let layout = Layout::from_size_align(256, 8).unwrap();
    let round = |heap: &Heap<MemPages>| {
        let blocks: Vec<*mut u8> = (0..2 * ARENA_SIZE / 256)
            .map(|_| heap.alloc(layout))
            .collect();
        for &b in &blocks {
            // SAFETY: allocated above from this heap with this layout, freed once.
            unsafe { heap.dealloc(b, layout) };
        }
        heap.flush_thread_cache();
    };
    round(&heap);
    let src = heap.core().source();
    src.advance_ms(PURGE_DELAY_MS);
    std::thread::sleep(Duration::from_millis(2 * PURGE_DELAY_MS));
    assert_eq!(
        heap.stats().arenas.purge_passes,
        0,
        "no thread purges a Calls heap"
    );
    // Calls past the deadline run the passes.
    round(&heap);
    src.advance_ms(PURGE_DELAY_MS);
    round(&heap);
    assert!(heap.stats().arenas.purge_passes >= 2, "{}", heap.stats());
    heap.set_purge_delay(Duration::ZERO);
    let s = heap.stats();
    assert_eq!((s.purge.delay_ms, s.purge.warm_bytes), (0, 0), "{s}");
    heap.check_invariants().unwrap();
}
