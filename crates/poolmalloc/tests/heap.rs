//! `Heap` instances: independent cores and caches, reclaimed memory, bad input.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use allocator_api2::vec::Vec as AVec;
use poolmalloc::{Heap, Misuse};
use poolmalloc_core::config::{ARENA_SIZE, MEDIUM_REQUEST_THRESHOLD, RESERVE_ARENAS};
use poolmalloc_core::Kind;
use poolmalloc_core::MemPages;

mod common;
use common::{class_in_this_build, DEBUG, LARGEST_SMALL};

/// Misuse reports seen by the test hook (tests in this file share it; each checks its own).
static REPORTS: Mutex<Vec<Misuse>> = Mutex::new(Vec::new());

fn record(m: &Misuse) {
    REPORTS.lock().unwrap().push(*m);
}

#[test]
fn vec_new_in_works() {
    let heap = Heap::new();
    let mut v = AVec::new_in(&heap);
    for i in 0..10_000u64 {
        v.push(i);
    }
    assert_eq!(v.iter().sum::<u64>(), 10_000 * 9_999 / 2);
    let mut small = AVec::new_in(&heap);
    small.extend_from_slice(b"pool");
    assert!(heap.owns(small.as_ptr()));
    drop((v, small));
    heap.check_invariants().unwrap();
}

#[test]
fn two_heaps_never_share_blocks() {
    let a = Arc::new(Heap::new());
    let b = Arc::new(Heap::new());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let (a, b) = (a.clone(), b.clone());
            std::thread::spawn(move || {
                let mut mine = vec![];
                for i in 0..20_000usize {
                    let size = 8 + (i * 7 + t) % (LARGEST_SMALL - 8);
                    let layout = Layout::from_size_align(size, 8).unwrap();
                    let (heap, other) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
                    let p = heap.alloc(layout);
                    assert!(!p.is_null());
                    assert!(heap.owns(p) && !other.owns(p), "block of the wrong heap");
                    mine.push((p as usize, layout, i % 2 == 0));
                    if i % 3 == 0 {
                        let (q, l, in_a) = mine.swap_remove((i * 31) % mine.len());
                        let heap = if in_a { &a } else { &b };
                        // SAFETY: allocated above from this heap with this layout.
                        unsafe { heap.dealloc(q as *mut u8, l) };
                    }
                }
                for (q, l, in_a) in mine {
                    let heap = if in_a { &a } else { &b };
                    // SAFETY: each block left came from this heap with this layout, freed once.
                    unsafe { heap.dealloc(q as *mut u8, l) };
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for heap in [&a, &b] {
        heap.check_invariants().unwrap();
        heap.collect();
        let s = heap.stats();
        // The threads have exited: their exit hooks gave every cached block back.
        assert_eq!(s.bytes_in_blocks_out(), 0, "{s}");
        assert_eq!(s.arenas.mapped, RESERVE_ARENAS);
    }
}

#[test]
fn dropping_a_heap_unmaps_its_arenas() {
    let pages = Arc::new(MemPages::new(8));
    let heap = Heap::with_source(pages.clone());
    let layout = Layout::from_size_align(256, 8).unwrap();
    let blocks: Vec<_> = (0..10_000).map(|_| heap.alloc(layout)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));
    assert!(pages.mapped_now() >= 2);
    let addr = blocks[0];
    drop(heap);
    assert_eq!(pages.mapped_now(), 0, "every arena went back");
    assert_eq!(pages.maps(), pages.unmaps());
    // The registry no longer calls the address anyone's.
    let other = Heap::new();
    assert!(!other.owns(addr));
}

#[test]
fn out_of_memory_returns_null_then_recovers() {
    let pages = Arc::new(MemPages::new(1));
    let heap = Heap::with_source(pages.clone());
    let layout = Layout::from_size_align(LARGEST_SMALL, 8).unwrap();
    let mut blocks = vec![];
    loop {
        let p = heap.alloc(layout);
        if p.is_null() {
            break;
        }
        blocks.push(p);
    }
    assert!(
        blocks.len() * 512 >= ARENA_SIZE * 9 / 10,
        "the one arena was used up"
    );
    assert!(heap.alloc(layout).is_null(), "still null, no panic");
    heap.check_invariants().unwrap();
    for p in blocks.drain(..100) {
        // SAFETY: allocated above with this layout.
        unsafe { heap.dealloc(p, layout) };
    }
    heap.flush_thread_cache();
    assert!(
        !heap.alloc(layout).is_null(),
        "memory is back: the next request works"
    );
    heap.check_invariants().unwrap();
    // Large requests are not limited by the page source.
    let big = Layout::from_size_align(1 << 20, 8).unwrap();
    let p = heap.alloc(big);
    assert!(!p.is_null());
    // SAFETY: allocated above with this layout.
    unsafe { heap.dealloc(p, big) };
}

#[test]
fn misuse_is_reported_with_address_and_classes() {
    poolmalloc::set_misuse_hook(Some(record));
    let heap = Heap::new();
    let big = Layout::from_size_align(64, 8).unwrap();
    let p = heap.alloc(big);
    let before = heap.stats();
    // A foreign pointer is reported and left alone.
    let mut local = [0u64; 8];
    let foreign = local.as_mut_ptr().cast::<u8>();
    // SAFETY: deliberately wrong, to see it refused.
    unsafe { heap.dealloc(foreign, big) };
    // A block of another heap is foreign too.
    let other = Heap::new();
    let theirs = other.alloc(big);
    // SAFETY: deliberately wrong.
    unsafe { heap.dealloc(theirs, big) };
    let small = Layout::from_size_align(8, 8).unwrap();
    // SAFETY: deliberately the wrong layout for a 64-byte block.
    unsafe { heap.dealloc(p, small) };
    let reports: Vec<Misuse> = REPORTS
        .lock()
        .unwrap()
        .iter()
        .copied()
        .filter(|m| match m {
            Misuse::BadFree(e) => e.addr == foreign as usize || e.addr == theirs as usize,
            Misuse::LayoutMismatch { addr, .. } => *addr == p as usize,
            _ => false,
        })
        .collect();
    assert!(matches!(reports[0], Misuse::BadFree(e) if e.addr == foreign as usize));
    assert!(matches!(reports[1], Misuse::BadFree(e) if e.addr == theirs as usize));
    assert!(reports[0]
        .to_string()
        .contains(&format!("{:#x}", foreign as usize)));
    let (small_class, big_class) = (class_in_this_build(8, 8), class_in_this_build(64, 8));
    // Debug builds check every layout; so does debug mode.
    if cfg!(debug_assertions) || DEBUG {
        let expected = (small_class, big_class);
        let mismatch = Misuse::LayoutMismatch {
            addr: p as usize,
            layout_class: small_class,
            block_class: big_class,
        };
        assert_eq!(reports[2], mismatch);
        let text = reports[2].to_string();
        let named = |c: poolmalloc_core::Class| text.contains(&format!("class {}", c.index()));
        assert!(named(expected.0) && named(expected.1), "{text}");
    }
    // Whatever the layout said, the block went back to its own class: no other list changed.
    heap.flush_thread_cache();
    let after = heap.stats();
    let (s, b) = (small_class.index(), big_class.index());
    assert_eq!(after.classes[s].blocks_out, before.classes[s].blocks_out);
    assert_eq!(after.classes[b].blocks_out, 0);
    heap.check_invariants().unwrap();
    other.check_invariants().unwrap();
    // SAFETY: `theirs` belongs to `other`, with this layout.
    unsafe { other.dealloc(theirs, big) };
    poolmalloc::set_misuse_hook(None);
}

#[test]
fn medium_blocks_come_from_the_heaps_own_pools() {
    let heap = Heap::new();
    let other = Heap::new();
    let mut blocks = vec![];
    // Sizes from the small threshold to the medium one, at 1, 16 and 64 alignment (32 in debug
    // mode, whose header and pad come first): owned by the heap, aligned, and the bytes intact
    // while the rest are written.
    let most_aligned = if DEBUG { 32 } else { 64 };
    let mut size = 500;
    while size <= MEDIUM_REQUEST_THRESHOLD - 48 {
        for align in [1, 16, most_aligned] {
            let layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero layout.
            let p = unsafe { GlobalAlloc::alloc(&heap, layout) };
            assert!(!p.is_null() && p as usize % align == 0, "{size} {align}");
            assert!(heap.owns(p) && !other.owns(p), "{size} {align}");
            // SAFETY: the block holds `size` bytes.
            unsafe { p.write_bytes(size as u8, size) };
            blocks.push((p, layout));
        }
        size += size / 7;
    }
    for &(p, layout) in &blocks {
        // SAFETY: the block holds `layout.size()` bytes, written above.
        let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
        assert!(bytes.iter().all(|&b| b == layout.size() as u8));
    }
    let s = heap.stats();
    assert!(s.arenas_of_kind[Kind::Medium as usize] >= 1, "{s}");
    assert_eq!(s.large.live, 0, "no medium request went to the large path");
    // Freed on another thread: pushed onto this thread's pools' chains; collected, all back.
    // Joined, not scoped: the thread's exit (its cache's pools back to the core) is over when
    // `join` returns.
    let heap = std::sync::Arc::new(heap);
    let addrs: Vec<(usize, Layout)> = blocks.iter().map(|&(p, l)| (p as usize, l)).collect();
    let freer = heap.clone();
    std::thread::spawn(move || {
        for &(p, layout) in &addrs {
            // SAFETY: allocated above with this layout, freed once.
            unsafe { freer.dealloc(p as *mut u8, layout) };
        }
    })
    .join()
    .unwrap();
    heap.check_invariants().unwrap();
    heap.collect();
    let s = heap.stats();
    assert_eq!(s.pools_in_use(), 0, "{s}");
    assert!(s.arenas_of_kind.iter().all(|&n| n <= RESERVE_ARENAS), "{s}");
    heap.check_invariants().unwrap();
}

#[test]
fn realloc_stays_in_place_within_a_class() {
    let heap = Heap::new();
    let layout = Layout::from_size_align(20, 8).unwrap();
    // SAFETY: GlobalAlloc calls with valid layouts; each result is checked before use.
    unsafe {
        let p = GlobalAlloc::alloc(&heap, layout);
        p.write_bytes(0xAB, 20);
        let q = heap.realloc(p, layout, 24);
        if !DEBUG {
            assert_eq!(p, q, "20 → 24 bytes stays in the 24-byte class");
        }
        let r = heap.realloc(q, Layout::from_size_align(24, 8).unwrap(), 100);
        assert_ne!(r, q);
        assert!(std::slice::from_raw_parts(r, 20).iter().all(|&b| b == 0xAB));
        let big = heap.realloc(r, Layout::from_size_align(100, 8).unwrap(), 5000);
        assert!(std::slice::from_raw_parts(big, 20)
            .iter()
            .all(|&b| b == 0xAB));
        assert!(heap.owns(big), "5000 bytes: a medium block");
        let same = heap.realloc(big, Layout::from_size_align(5000, 8).unwrap(), 5120);
        if !DEBUG {
            assert_eq!(same, big, "5000 → 5120 bytes stays in the 5120-byte class");
        }
        let big = same;
        let bigger = heap.realloc(big, Layout::from_size_align(5120, 8).unwrap(), 50_000);
        assert!(std::slice::from_raw_parts(bigger, 20)
            .iter()
            .all(|&b| b == 0xAB));
        let small = heap.realloc(bigger, Layout::from_size_align(50_000, 8).unwrap(), 16);
        assert!(std::slice::from_raw_parts(small, 16)
            .iter()
            .all(|&b| b == 0xAB));
        assert!(heap.owns(small));
        heap.dealloc(small, Layout::from_size_align(16, 8).unwrap());
        // A dirty block comes back (once the allocation list before it is used up):
        // alloc_zeroed must clear it, and every block before it.
        let layout16 = Layout::from_size_align(16, 8).unwrap();
        let d = GlobalAlloc::alloc(&heap, layout16);
        d.write_bytes(0xFF, 16);
        heap.dealloc(d, layout16);
        let mut before = vec![];
        let z2 = loop {
            let z = GlobalAlloc::alloc_zeroed(&heap, layout16);
            assert!(std::slice::from_raw_parts(z, 16).iter().all(|&b| b == 0));
            if z == d {
                break z;
            }
            before.push(z);
            assert!(before.len() < 100_000, "the dirty block is reused");
        };
        for z in before.into_iter().chain([z2]) {
            heap.dealloc(z, layout16);
        }
    }
    assert_eq!(heap.stats().large.live, 0);
    heap.check_invariants().unwrap();
}

#[test]
fn producer_consumer_stays_bounded() {
    let heap = Arc::new(Heap::new());
    let (tx, rx) = crossbeam_channel::bounded::<usize>(1024);
    let layout = Layout::from_size_align(64, 8).unwrap();
    const N: usize = 2_000_000;
    let producer = {
        let heap = heap.clone();
        std::thread::spawn(move || {
            for i in 0..N {
                let p = heap.alloc(layout);
                assert!(!p.is_null());
                // SAFETY: fresh 64-byte block.
                unsafe { p.cast::<usize>().write(i) };
                tx.send(p as usize).unwrap();
            }
        })
    };
    let freed = Arc::new(AtomicUsize::new(0));
    let consumer = {
        let (heap, freed) = (heap.clone(), freed.clone());
        std::thread::spawn(move || {
            for (i, p) in rx.iter().enumerate() {
                // SAFETY: the producer wrote the index into the block before sending it.
                assert_eq!(unsafe { (p as *const usize).read() }, i);
                // SAFETY: allocated by the producer with this layout; freed once, here.
                unsafe { heap.dealloc(p as *mut u8, layout) };
                freed.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    producer.join().unwrap();
    consumer.join().unwrap();
    assert_eq!(freed.load(Ordering::Relaxed), N);
    let s = heap.stats();
    // 2M blocks of 64 bytes went through; at most the channel's 1024 plus two caches' worth
    // were ever out at once. 4 arenas (4 MiB) is a generous fixed bound for that.
    assert!(s.arenas.high_water <= 4, "mapped grew without bound:\n{s}");
    assert_eq!(
        s.bytes_in_blocks_out(),
        0,
        "exited threads left blocks in caches"
    );
    heap.check_invariants().unwrap();
}
