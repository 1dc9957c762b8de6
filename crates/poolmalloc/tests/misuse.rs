//! Double frees through the Rust faces (`PoolMalloc`, `Heap`), in every build: reported through
//! the misuse hook with the address and class — by the owner of the block's pool, by another
//! thread while the block is on the pool's remote chain, after a flush — and nothing changed:
//! no block handed out twice.
//! What only looks like a double free is not reported. With feature `secure`, a write into a free
//! block's link is reported and the link not followed.

use std::alloc::{GlobalAlloc, Layout};
use std::collections::HashSet;
use std::sync::{Mutex, MutexGuard};
use std::thread;

use poolmalloc::{Heap, Misuse, PoolMalloc};
use poolmalloc_core::config::POOL_SIZE;
use poolmalloc_core::{FreeError, FreeErrorKind};

mod common;
use common::{class_in_this_build, DEBUG};

static REPORTS: Mutex<Vec<Misuse>> = Mutex::new(Vec::new());
/// The hook and the reports are process-wide: one test at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn record(m: &Misuse) {
    REPORTS.lock().unwrap().push(*m);
}

/// Runs `f` alone among this file's tests and returns the reports it caused.
fn reports_of(f: impl FnOnce()) -> Vec<Misuse> {
    let _serial: MutexGuard<'_, ()> = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    poolmalloc::set_misuse_hook(Some(record));
    REPORTS.lock().unwrap().clear();
    f();
    poolmalloc::set_misuse_hook(None);
    std::mem::take(&mut *REPORTS.lock().unwrap())
}

/// What a face offers these tests.
trait Face: GlobalAlloc + Sync {
    fn flush(&self);
}

impl Face for PoolMalloc {
    fn flush(&self) {
        poolmalloc::flush_thread_cache();
    }
}

impl Face for Heap {
    fn flush(&self) {
        self.flush_thread_cache();
    }
}

fn double_free(addr: *mut u8, layout: Layout) -> Misuse {
    let class = class_in_this_build(layout.size(), layout.align());
    Misuse::BadFree(FreeError {
        addr: addr as usize,
        kind: FreeErrorKind::DoubleFree { class },
    })
}

/// `n` blocks of `layout` at once: all distinct, none of them `not`; then freed.
fn all_distinct(face: &impl Face, layout: Layout, n: usize, not: *mut u8) -> bool {
    // SAFETY: blocks of `layout`, freed once each below.
    let blocks: Vec<*mut u8> = (0..n).map(|_| unsafe { face.alloc(layout) }).collect();
    let distinct = blocks.iter().collect::<HashSet<_>>().len() == n;
    let clear = blocks.iter().filter(|&&b| b == not).count() <= 1;
    for b in blocks {
        // SAFETY: allocated above with `layout`.
        unsafe { face.dealloc(b, layout) };
    }
    distinct && clear
}

/// A block freed twice in a row, by its owner: one report naming it; the block is handed out
/// once afterwards.
fn twice_in_a_row(face: &impl Face) {
    for size in [8, 40, 256, 1000, 20_000] {
        let layout = Layout::from_size_align(size, 8).unwrap();
        let mut p = std::ptr::null_mut();
        let reports = reports_of(|| {
            // SAFETY: the second free is the misuse under test; the hook returns, so the block
            // stays where the first free put it.
            unsafe {
                p = face.alloc(layout);
                face.dealloc(p, layout);
                face.dealloc(p, layout);
            }
        });
        assert_eq!(reports, [double_free(p, layout)], "{size} bytes");
        assert!(reports[0].to_string().contains(&format!("{p:p}")));
        assert!(all_distinct(face, layout, 300, p), "{size} bytes");
    }
}

/// A 48-byte block `p` (beside a block kept out, which keeps its pool from its arena) freed
/// twice by `free_twice(p)`: exactly one report, naming it, and the block handed out at most
/// once afterwards.
fn reported_once(face: &impl Face, free_twice: impl FnOnce(*mut u8)) {
    let layout = Layout::from_size_align(48, 8).unwrap();
    let mut p = std::ptr::null_mut();
    let reports = reports_of(|| {
        // SAFETY: blocks of `layout`; `free_twice` frees `p` (twice: the misuse under test).
        unsafe {
            let keep = face.alloc(layout);
            p = face.alloc(layout);
            free_twice(p);
            face.dealloc(keep, layout);
        }
    });
    assert_eq!(reports, [double_free(p, layout)]);
    assert!(all_distinct(face, layout, 300, p));
}

/// Frees the 48-byte block at `addr` on a thread of its own.
fn dealloc_on_another_thread(face: &impl Face, addr: usize, times: usize) {
    let layout = Layout::from_size_align(48, 8).unwrap();
    thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..times {
                // SAFETY: a block of the face; a second free is the misuse under test.
                unsafe { face.dealloc(addr as *mut u8, layout) };
            }
        });
    });
}

/// The block went to another thread, which freed it; then its owner frees it again.
fn after_another_thread(face: &impl Face) {
    reported_once(face, |p| {
        dealloc_on_another_thread(face, p as usize, 1);
        // SAFETY: the second free.
        unsafe { face.dealloc(p, Layout::from_size_align(48, 8).unwrap()) };
    });
}

/// The thread's pools went back to the core between the two frees.
fn after_a_flush(face: &impl Face) {
    let layout = Layout::from_size_align(48, 8).unwrap();
    reported_once(face, |p| {
        // SAFETY: the first free, then the second after the flush.
        unsafe {
            face.dealloc(p, layout);
            face.flush();
            face.dealloc(p, layout);
        }
    });
}

/// A thread that does not own the block's pool frees it twice while it is still on the
/// pool's remote chain (its owner is busy elsewhere): the chain, borrowed, confirms it.
fn twice_by_another_thread(face: &impl Face) {
    reported_once(face, |p| dealloc_on_another_thread(face, p as usize, 2));
}

/// A block holding a freed block's first word — the value the check looks for — is freed by its
/// owner, after a flush, and by another thread, without a report; a second free that only the
/// owner could confirm changes nothing.
fn what_is_not_confirmed(face: &impl Face) {
    let layout = Layout::from_size_align(48, 8).unwrap();
    let reports = reports_of(|| {
        for how in 0..3 {
            // SAFETY: blocks of `layout`, each freed once; reading `freed` after its free is the
            // program misbehaving in a way the allocator must not mistake for a double free.
            unsafe {
                let keep = face.alloc(layout);
                let freed = face.alloc(layout);
                let holder = face.alloc(layout);
                face.dealloc(freed, layout);
                holder.cast::<usize>().write(freed.cast::<usize>().read());
                match how {
                    0 => face.dealloc(holder, layout),
                    1 => {
                        face.flush();
                        face.dealloc(holder, layout);
                    }
                    _ => dealloc_on_another_thread(face, holder as usize, 1),
                }
                face.dealloc(keep, layout);
            }
        }
    });
    assert_eq!(reports, []);
    // A block another thread freed, then the owner took back from the remote chain (here: its
    // confirming walk for a key holder of the same pool did), then that thread frees again: the
    // block is on the owner's lists, which only the owner may walk, so the second free is left
    // alone — outside debug mode, whose record of the block (its state word) confirms it.
    let mut b = std::ptr::null_mut();
    let reports = reports_of(|| {
        // SAFETY: blocks of `layout`, each freed once but `b`, whose second free is the case
        // under test; reading `freed` after its free is on purpose.
        unsafe {
            let [keep, freed, holder, twice] = same_pool(face, layout);
            b = twice;
            face.dealloc(freed, layout);
            holder.cast::<usize>().write(freed.cast::<usize>().read());
            dealloc_on_another_thread(face, b as usize, 1);
            face.dealloc(holder, layout);
            dealloc_on_another_thread(face, b as usize, 1);
            face.dealloc(keep, layout);
        }
        assert!(all_distinct(face, layout, 600, b));
    });
    if DEBUG {
        assert_eq!(reports, [double_free(b, layout)]);
    } else {
        assert_eq!(reports, []);
    }
}

/// Four blocks of `layout` in one pool (others taken on the way are freed).
fn same_pool(face: &impl Face, layout: Layout) -> [*mut u8; 4] {
    let pool = |p: *mut u8| p as usize & !(POOL_SIZE - 1);
    let mut spare = vec![];
    loop {
        // SAFETY: blocks of `layout`; those not returned are freed below.
        let blocks: [*mut u8; 4] = std::array::from_fn(|_| unsafe { face.alloc(layout) });
        if blocks.iter().all(|&b| pool(b) == pool(blocks[0])) {
            for b in spare {
                // SAFETY: allocated above with `layout`, freed once.
                unsafe { face.dealloc(b, layout) };
            }
            return blocks;
        }
        spare.extend(blocks);
    }
}

#[test]
fn double_frees_through_poolmalloc() {
    twice_in_a_row(&PoolMalloc);
    after_another_thread(&PoolMalloc);
    twice_by_another_thread(&PoolMalloc);
    after_a_flush(&PoolMalloc);
}

#[test]
fn double_frees_through_a_heap() {
    let heap = Heap::new();
    twice_in_a_row(&heap);
    after_another_thread(&heap);
    twice_by_another_thread(&heap);
    after_a_flush(&heap);
    heap.check_invariants().unwrap();
}

#[test]
fn what_is_not_a_confirmed_double_free_is_not_reported() {
    what_is_not_confirmed(&PoolMalloc);
    let heap = Heap::new();
    what_is_not_confirmed(&heap);
    heap.check_invariants().unwrap();
}

/// Secure mode: a write into the first word of a free block on the thread's allocation list (a
/// fresh heap's blocks are handed out in address order) is reported when the allocation reaches
/// it, and the allocation is served from elsewhere.
#[cfg(all(feature = "secure", not(feature = "debug")))]
#[test]
fn secure_mode_reports_a_write_into_a_free_block() {
    let heap = Heap::new();
    let layout = Layout::from_size_align(48, 8).unwrap();
    let class = class_in_this_build(48, 8);
    let mut blocks = vec![];
    let reports = reports_of(|| {
        // SAFETY: `next` is a free block of the heap: writing into it is the misuse under test.
        unsafe {
            let p = heap.alloc(layout);
            let next = p.add(class.block_size());
            next.cast::<usize>().write(0x4141_4141_4141_4141);
            blocks.push(p);
            blocks.push(heap.alloc(layout));
            blocks.push(heap.alloc(layout));
            blocks.push(next);
        }
    });
    let next = blocks[3];
    assert_eq!(
        reports,
        [Misuse::CorruptLink {
            addr: next as usize,
            class
        }]
    );
    assert!(reports[0]
        .to_string()
        .contains("written after it was freed"));
    // The blocks handed out are real blocks of the heap, not the link's target.
    for &b in &blocks[..3] {
        assert!(heap.owns(b), "{b:p}");
    }
}
