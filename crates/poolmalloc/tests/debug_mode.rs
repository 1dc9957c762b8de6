//! Debug mode (feature `debug`): fills, pads and every detection, each planted and its report
//! checked through a replaced misuse hook; and the default hook's one line and abort.
//! `cargo test -p poolmalloc --features debug --test debug_mode`
#![cfg(feature = "debug")]

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use poolmalloc::{debug, DebugBlock, Heap, Misuse, PoolMalloc};
use poolmalloc_core::config::{
    DEBUG_FORBIDDEN_BYTE, DEBUG_LARGE_MIN_SLOTS, DEBUG_PAD, MEDIUM_REQUEST_THRESHOLD,
};
use poolmalloc_core::{Class, FreeError, FreeErrorKind};

mod common;
use common::class_in_this_build;

static REPORTS: Mutex<Vec<Misuse>> = Mutex::new(Vec::new());
/// Held by each test that plants faults: they share the hook and the reports.
static SERIAL: Mutex<()> = Mutex::new(());

fn record(m: &Misuse) {
    REPORTS.lock().unwrap().push(*m);
}

/// Runs the calling test alone among those that plant faults, with reports recorded.
fn planting() -> MutexGuard<'static, ()> {
    let guard = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    poolmalloc::set_misuse_hook(Some(record));
    guard
}

/// The reports `f` caused.
fn reports_of(f: impl FnOnce()) -> Vec<Misuse> {
    REPORTS.lock().unwrap().clear();
    f();
    std::mem::take(&mut *REPORTS.lock().unwrap())
}

/// Plants one fault through `plant` and returns the one report it caused.
fn report_of(plant: impl FnOnce()) -> Misuse {
    let reports = reports_of(plant);
    assert_eq!(reports.len(), 1, "{reports:?}");
    reports[0]
}

/// Runs `f`, which must cause no report.
fn no_report(f: impl FnOnce()) {
    let reports = reports_of(f);
    assert!(reports.is_empty(), "{reports:?}");
}

fn class_of_request(size: usize) -> Class {
    class_in_this_build(size, 8)
}

/// Reads `len` bytes at `p` (the tests read pads and freed blocks, which stay mapped in pools).
fn bytes(p: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: callers pass ranges inside blocks of our pools, which stay mapped.
    unsafe { std::slice::from_raw_parts(p, len).to_vec() }
}

#[test]
fn fresh_memory_pads_and_freed_memory_are_filled() {
    let layout = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: a non-zero layout.
    let p = unsafe { PoolMalloc.alloc(layout) };
    assert!(!p.is_null());
    assert_eq!(bytes(p, 24), vec![0xCD; 24], "fresh memory is 0xCD");
    // SAFETY: the pads lie inside the same pool block.
    let (before, after) = unsafe { (p.sub(DEBUG_PAD), p.add(24)) };
    assert_eq!(
        bytes(before, DEBUG_PAD),
        vec![DEBUG_FORBIDDEN_BYTE; DEBUG_PAD]
    );
    assert_eq!(
        bytes(after, DEBUG_PAD),
        vec![DEBUG_FORBIDDEN_BYTE; DEBUG_PAD]
    );
    // SAFETY: the caller's 24 bytes.
    unsafe { p.write_bytes(7, 24) };
    // SAFETY: allocated above with this layout.
    unsafe { PoolMalloc.dealloc(p, layout) };
    // The block sits in this thread's cache: its pool is mapped, its bytes say it is dead.
    assert_eq!(bytes(p, 24), vec![0xDD; 24], "freed memory is 0xDD");
    // alloc_zeroed still zeroes; realloc keeps the bytes and pads the new size.
    // SAFETY: non-zero layout; realloc of the block just allocated.
    unsafe {
        let z = PoolMalloc.alloc_zeroed(layout);
        assert_eq!(bytes(z, 24), vec![0; 24]);
        let r = PoolMalloc.realloc(z, layout, 100);
        assert_eq!(bytes(r, 24), vec![0; 24]);
        assert_eq!(bytes(r.add(24), 76), vec![0xCD; 76]);
        assert_eq!(
            bytes(r.add(100), DEBUG_PAD),
            vec![DEBUG_FORBIDDEN_BYTE; DEBUG_PAD]
        );
        PoolMalloc.dealloc(r, Layout::from_size_align(100, 8).unwrap());
    }
    poolmalloc::check_invariants().unwrap();
}

#[test]
fn every_detection_is_reported_with_address_and_class() {
    let _serial = planting();
    // A small block and a medium one.
    for size in [40, 5000] {
        detections(size);
    }
}

fn detections(size: usize) {
    let layout = Layout::from_size_align(size, 8).unwrap();
    let class = class_of_request(size);
    let alloc = || {
        // SAFETY: a non-zero layout.
        let p = unsafe { PoolMalloc.alloc(layout) };
        assert!(!p.is_null());
        p
    };
    let text_has = |m: &Misuse, addr: *mut u8| {
        let text = m.to_string();
        assert!(text.contains(&format!("{:#x}", addr as usize)), "{text}");
        assert!(text.contains(&format!("class {}", class.index())), "{text}");
    };

    // Double free: the state word says freed.
    let p = alloc();
    // SAFETY: the first free is legitimate; the second is the planted fault.
    let m = report_of(|| unsafe {
        PoolMalloc.dealloc(p, layout);
        PoolMalloc.dealloc(p, layout);
    });
    let kind = FreeErrorKind::DoubleFree { class };
    assert_eq!(
        m,
        Misuse::BadFree(FreeError {
            addr: p as usize,
            kind
        })
    );
    text_has(&m, p);

    // A pointer into the block, not its start.
    let p = alloc();
    // SAFETY: planted fault: an interior pointer (reported, nothing freed).
    let inner = unsafe { p.add(8) };
    // SAFETY: planted fault: freeing an interior pointer is reported and frees nothing.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(inner, layout) });
    let kind = FreeErrorKind::NotBlockStart { class };
    assert_eq!(
        m,
        Misuse::BadFree(FreeError {
            addr: inner as usize,
            kind
        })
    );
    text_has(&m, inner);

    // One byte past the end: the pad after.
    // SAFETY: planted fault: the first forbidden byte after the bytes requested (inside the
    // block).
    let m = report_of(|| unsafe {
        p.add(size).write(0x41);
        PoolMalloc.dealloc(p, layout);
    });
    let expected = Misuse::PadOverwritten {
        addr: p as usize,
        block: DebugBlock::Class(class),
        size,
        offset: size as isize,
        byte: 0x41,
    };
    assert_eq!(m, expected);
    text_has(&m, p);
    assert!(m.to_string().contains("after"), "{m}");

    // One byte before the start: the pad before.
    let p = alloc();
    // SAFETY: planted fault: the last forbidden byte before the block (inside the pool block).
    let m = report_of(|| unsafe {
        p.sub(1).write(0);
        PoolMalloc.dealloc(p, layout);
    });
    let expected = Misuse::PadOverwritten {
        addr: p as usize,
        block: DebugBlock::Class(class),
        size,
        offset: -1,
        byte: 0,
    };
    assert_eq!(m, expected);
    assert!(m.to_string().contains("before"), "{m}");

    // An underflow past the pad, into the header.
    let p = alloc();
    // SAFETY: planted fault: the state word, DEBUG_PAD + 8 bytes before the block.
    let m = report_of(|| unsafe {
        p.sub(DEBUG_PAD + 8).write_bytes(0, 8);
        PoolMalloc.dealloc(p, layout);
    });
    let addr = p as usize;
    let block = DebugBlock::Class(class);
    assert_eq!(m, Misuse::HeaderOverwritten { addr, block });
    text_has(&m, p);

    // A pointer that is not ours at all.
    let mut local = [0u64; 8];
    let foreign = local.as_mut_ptr().cast::<u8>();
    // SAFETY: planted fault: a stack address (checked against the registry, never read).
    let m = report_of(|| unsafe { PoolMalloc.dealloc(foreign, layout) });
    let kind = FreeErrorKind::Foreign;
    let addr = foreign as usize;
    assert_eq!(m, Misuse::BadFree(FreeError { addr, kind }));

    // A layout that maps to another class: reported, and the block still goes back.
    let p = alloc();
    let small = Layout::from_size_align(1, 1).unwrap();
    // SAFETY: planted fault: the wrong layout for this block.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(p, small) });
    let expected = Misuse::LayoutMismatch {
        addr: p as usize,
        layout_class: class_of_request(1),
        block_class: class,
    };
    assert_eq!(m, expected);
    poolmalloc::check_invariants().unwrap();
}

fn foreign(addr: usize) -> Misuse {
    let kind = FreeErrorKind::Foreign;
    Misuse::BadFree(FreeError { addr, kind })
}

#[test]
fn large_blocks_are_laid_out_and_every_detection_reported() {
    let _serial = planting();
    let size = 40_000;
    let layout = Layout::from_size_align(size, 8).unwrap();
    assert!(debug::class_for(size, 8).is_none() && debug::medium_class_for(size, 8).is_none());
    let alloc = |layout: Layout| {
        // SAFETY: a non-zero layout.
        let p = unsafe { PoolMalloc.alloc(layout) };
        assert!(!p.is_null() && !poolmalloc::owns(p));
        p
    };
    let large = DebugBlock::Large;

    // Fills and pads; an over-aligned block keeps its alignment and pads.
    let p = alloc(layout);
    assert_eq!(bytes(p, size), vec![0xCD; size]);
    // SAFETY: the pads lie inside the system block debug mode laid out.
    let (before, after) = unsafe { (p.sub(DEBUG_PAD), p.add(size)) };
    assert_eq!(bytes(before, DEBUG_PAD), vec![0xFD; DEBUG_PAD]);
    assert_eq!(bytes(after, DEBUG_PAD), vec![0xFD; DEBUG_PAD]);
    let page = Layout::from_size_align(100, 4096).unwrap();
    let q = alloc(page);
    assert_eq!(q as usize % 4096, 0);
    // SAFETY: the pad after the 100 bytes lies inside the system block debug mode laid out.
    assert_eq!(bytes(unsafe { q.add(100) }, DEBUG_PAD), vec![0xFD; 16]);
    // SAFETY: from `alloc(page)`, freed once.
    unsafe { PoolMalloc.dealloc(q, page) };

    // Double free: the second finds the block among the recent frees.
    // SAFETY: the first free is legitimate; the second is the planted fault.
    let m = report_of(|| unsafe {
        PoolMalloc.dealloc(p, layout);
        PoolMalloc.dealloc(p, layout);
    });
    let addr = p as usize;
    assert_eq!(m, Misuse::LargeDoubleFree { addr, size });
    let text = m.to_string();
    assert!(text.starts_with(&format!("double free of {addr:#x} (large block")));

    // One byte past the end, one before the start, the header.
    for (offset, byte) in [
        (size as isize, 0x41u8),
        (-1, 0),
        (-(DEBUG_PAD as isize) - 8, 0),
    ] {
        let p = alloc(layout);
        // SAFETY: inside the system block debug mode laid out.
        let original = unsafe { p.offset(offset).read() };
        // SAFETY: planted fault: a byte inside the system block, outside the caller's.
        let m = report_of(|| unsafe {
            p.offset(offset).write(byte);
            PoolMalloc.dealloc(p, layout);
        });
        let addr = p as usize;
        let expected = if offset < -(DEBUG_PAD as isize) {
            Misuse::HeaderOverwritten { addr, block: large }
        } else {
            let block = large;
            Misuse::PadOverwritten {
                addr,
                block,
                size,
                offset,
                byte,
            }
        };
        assert_eq!(m, expected);
        assert!(m.to_string().contains("large block"), "{m}");
        // The block was left alone: mended, it frees cleanly.
        // SAFETY: the planted byte put back; then the one free of the block.
        no_report(|| unsafe {
            p.offset(offset).write(original);
            PoolMalloc.dealloc(p, layout);
        });
    }

    // Foreign and interior pointers are in no table: reported, never read.
    let mut local = [0u64; 8];
    let on_stack = local.as_mut_ptr().cast::<u8>();
    // SAFETY: planted fault: a stack address.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(on_stack, layout) });
    assert_eq!(m, foreign(on_stack as usize));
    let p = alloc(layout);
    // SAFETY: planted fault: an interior pointer of a live large block.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(p.add(64), layout) });
    assert_eq!(m, foreign(p as usize + 64));

    // The wrong size: reported, and the block is still freed, by its own size.
    let wrong = Layout::from_size_align(6000, 8).unwrap();
    // SAFETY: planted fault: a live block freed with another size.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(p, wrong) });
    let (addr, layout_size, block_size) = (p as usize, 6000, size);
    assert_eq!(
        m,
        Misuse::LargeSizeMismatch {
            addr,
            layout_size,
            block_size
        }
    );
    // SAFETY: planted fault: it was freed, so this is a double free.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(p, layout) });
    assert_eq!(m, Misuse::LargeDoubleFree { addr, size });
}

#[test]
fn heaps_run_in_debug_mode_too() {
    let _serial = planting();
    let (heap, other) = (Heap::new(), Heap::new());
    let layout = Layout::from_size_align(40, 8).unwrap();
    let class = class_of_request(40);
    let p = heap.alloc(layout);
    assert!(heap.owns(p));
    assert_eq!(bytes(p, 40), vec![0xCD; 40]);
    // SAFETY: the pads lie inside the same pool block.
    assert_eq!(bytes(unsafe { p.add(40) }, DEBUG_PAD), vec![0xFD; 16]);
    // SAFETY: allocated above, freed once; the second free is the planted fault.
    let m = report_of(|| unsafe {
        heap.dealloc(p, layout);
        assert_eq!(bytes(p, 40), vec![0xDD; 40], "freed memory is 0xDD");
        heap.dealloc(p, layout);
    });
    let (addr, kind) = (p as usize, FreeErrorKind::DoubleFree { class });
    assert_eq!(m, Misuse::BadFree(FreeError { addr, kind }));

    let p = heap.alloc(layout);
    // SAFETY: planted faults: an interior pointer, then an overflow into the pad.
    unsafe {
        let m = report_of(|| heap.dealloc(p.add(8), layout));
        let kind = FreeErrorKind::NotBlockStart { class };
        let addr = p as usize + 8;
        assert_eq!(m, Misuse::BadFree(FreeError { addr, kind }));
        let m = report_of(|| {
            p.add(40).write(1);
            heap.dealloc(p, layout);
        });
        assert!(
            matches!(m, Misuse::PadOverwritten { offset: 40, .. }),
            "{m}"
        );
    }

    // Another heap's blocks, small and large, are foreign to this one.
    let theirs = other.alloc(layout);
    // SAFETY: planted fault: `other`'s block given to `heap`.
    let m = report_of(|| unsafe { heap.dealloc(theirs, layout) });
    assert_eq!(m, foreign(theirs as usize));
    let big = Layout::from_size_align(50_000, 16).unwrap();
    let their_big = other.alloc(big);
    assert_eq!(bytes(their_big, 50_000), vec![0xCD; 50_000]);
    // SAFETY: planted fault: `other`'s large block given to `heap` (reported, nothing freed);
    // then each block back to its own heap, once.
    unsafe {
        let m = report_of(|| heap.dealloc(their_big, big));
        assert_eq!(m, foreign(their_big as usize));
        no_report(|| {
            other.dealloc(their_big, big);
            other.dealloc(theirs, layout);
        });
        let m = report_of(|| other.dealloc(their_big, big));
        let (addr, size) = (their_big as usize, 50_000);
        assert_eq!(m, Misuse::LargeDoubleFree { addr, size });
    }

    // Collections over a debug heap: every growth moves, the contents come along.
    no_report(|| {
        let mut v = allocator_api2::vec::Vec::new_in(&heap);
        v.extend(0..10_000u32);
        assert!(v.iter().copied().eq(0..10_000));
    });
    heap.check_invariants().unwrap();
    other.check_invariants().unwrap();
}

/// Thousands of live large blocks, freed in a shuffled order, each with its contents intact.
#[test]
fn thousands_of_live_large_blocks_grow_the_table() {
    let _serial = planting();
    let live_before = poolmalloc::stats().large.live;
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng as usize
    };
    // The table starts at DEBUG_LARGE_MIN_SLOTS slots and doubles when half full.
    let n = 4 * DEBUG_LARGE_MIN_SLOTS;
    let mut blocks: Vec<(usize, Layout)> = (0..n)
        .map(|i| {
            let size = MEDIUM_REQUEST_THRESHOLD + next() % 4000;
            let layout = Layout::from_size_align(size, 8 << (i % 4)).unwrap();
            // SAFETY: a non-zero layout; the block is checked before it is written.
            let p = unsafe { PoolMalloc.alloc(layout) };
            assert!(!p.is_null());
            // SAFETY: the caller's bytes of the block.
            unsafe { p.write_bytes(i as u8, layout.size()) };
            (p as usize, layout)
        })
        .collect();
    for i in (1..n).rev() {
        blocks.swap(i, next() % (i + 1));
    }
    no_report(|| {
        for &(p, layout) in &blocks {
            let b = bytes(p as *const u8, layout.size());
            assert!(b.iter().all(|&x| x == b[0]), "contents intact");
            // SAFETY: allocated above with this layout, freed once.
            unsafe { PoolMalloc.dealloc(p as *mut u8, layout) };
        }
    });
    assert_eq!(poolmalloc::stats().large.live, live_before);
    // The latest frees are remembered: freeing the last one again is a double free.
    let (p, layout) = *blocks.last().unwrap();
    // SAFETY: planted fault.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(p as *mut u8, layout) });
    let (addr, size) = (p, layout.size());
    assert_eq!(m, Misuse::LargeDoubleFree { addr, size });
}

/// Debug blocks, small, medium and large, handed between threads through shared slots, so a quarter of
/// frees are cross-thread and the large table is used by every thread at once: contents intact,
/// no report.
#[test]
fn threads_free_each_others_debug_blocks() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let _serial = planting();
    const SLOTS: usize = 256;
    let slots: Vec<AtomicUsize> = (0..SLOTS).map(|_| AtomicUsize::new(0)).collect();
    // A block's first word is its size; the rest is a cookie of its address.
    let alloc = |size: usize| {
        let layout = Layout::from_size_align(size, 8).unwrap();
        // SAFETY: a non-zero layout; the block holds `size` bytes, a multiple of 8.
        unsafe {
            let p = PoolMalloc.alloc(layout).cast::<usize>();
            assert!(!p.is_null());
            p.write(size);
            for i in 1..size / 8 {
                p.add(i).write(p as usize ^ i);
            }
            p as usize
        }
    };
    let free = |p: usize| {
        if p == 0 {
            return;
        }
        let p = p as *mut usize;
        // SAFETY: a block from `alloc`, freed once, by whichever thread took it.
        unsafe {
            let size = p.read();
            for i in 1..size / 8 {
                assert_eq!(p.add(i).read(), p as usize ^ i, "contents of {p:p}");
            }
            PoolMalloc.dealloc(p.cast(), Layout::from_size_align(size, 8).unwrap());
        }
    };
    no_report(|| {
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let (slots, alloc, free) = (&slots, &alloc, &free);
                s.spawn(move || {
                    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ (t + 1);
                    let mut mine = vec![];
                    for _ in 0..20_000 {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        let r = rng as usize;
                        match r % 4 {
                            0 | 1 => {
                                // One in eight large, one in eight medium, else small.
                                let words = (r >> 8) % 1000;
                                mine.push(alloc(match r % 8 {
                                    0 => MEDIUM_REQUEST_THRESHOLD + 8 * words,
                                    4 => 8 * (70 + words),
                                    _ => 8 * (1 + words % 40),
                                }));
                            }
                            2 if !mine.is_empty() => free(mine.swap_remove((r >> 8) % mine.len())),
                            _ if !mine.is_empty() => {
                                let ours = mine.swap_remove((r >> 8) % mine.len());
                                free(slots[(r >> 20) % SLOTS].swap(ours, Ordering::AcqRel));
                            }
                            _ => {}
                        }
                    }
                    mine.into_iter().for_each(free);
                });
            }
        });
        slots
            .iter()
            .for_each(|slot| free(slot.swap(0, Ordering::AcqRel)));
    });
    poolmalloc::check_invariants().unwrap();
}

/// Run by `default_hook_prints_one_line_and_aborts` in a child process.
#[test]
fn default_hook_child() {
    if std::env::var_os("POOLMALLOC_DEBUG_CHILD").is_none() {
        return;
    }
    let layout = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: planted fault: a double free, which the default hook reports and aborts on.
    unsafe {
        let p = PoolMalloc.alloc(layout);
        PoolMalloc.dealloc(p, layout);
        PoolMalloc.dealloc(p, layout);
    }
    unreachable!("the default hook returned");
}

#[test]
fn default_hook_prints_one_line_and_aborts() {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "default_hook_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("POOLMALLOC_DEBUG_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("poolmalloc:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("poolmalloc: double free of 0x"),
        "{stderr}"
    );
    assert!(lines[0].contains("(class "), "{stderr}");
}
