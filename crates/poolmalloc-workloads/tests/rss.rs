//! `rss_bytes` allocates nothing (memory's release poll must not call the allocator it watches):
//! a test binary of its own, whose global allocator counts this thread's calls.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use poolmalloc_workloads::rss::rss_bytes;

thread_local! {
    static CALLS: Cell<usize> = const { Cell::new(0) };
}

struct Counting;

// SAFETY: forwards every call to System unchanged; the count is a const-initialised
// thread-local cell, which needs no allocation.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout is non-zero (`GlobalAlloc::alloc`'s contract).
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        CALLS.with(|c| c.set(c.get() + 1));
        // SAFETY: `ptr` came from `alloc` above, that is from System, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn rss_bytes_calls_no_allocator() {
    let calls = || CALLS.with(Cell::get);
    // The counter does count: a String is an allocation.
    let before = calls();
    drop(std::hint::black_box(String::from("counted")));
    assert_eq!(calls(), before + 2);

    let before = calls();
    let mut total = 0;
    for _ in 0..100 {
        total += rss_bytes();
    }
    assert!(total > 0);
    assert_eq!(calls(), before, "rss_bytes allocated");
}
