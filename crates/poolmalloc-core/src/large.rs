//! The large path: requests above `SMALL_REQUEST_THRESHOLD`, or aligned above `MAX_SMALL_ALIGN`,
//! go to the C library's allocator (`os::large`), counted here. It takes no core lock: its
//! counters are atomics. `Core`'s `large_*` and `count_large_*` methods forward here.

use core::alloc::Layout;

use crate::os::large;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::const_fn_unless_loom;

/// The large path in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Requests served since the core was made.
    pub allocs_total: usize,
    /// Blocks live now.
    pub live: usize,
    /// Bytes in the blocks live now, as requested.
    pub live_bytes: usize,
}

/// Counters of the large path (atomics: the large path takes no core lock).
pub(crate) struct LargeCounters {
    allocs: AtomicUsize,
    live: AtomicUsize,
    live_bytes: AtomicUsize,
}

impl LargeCounters {
    const_fn_unless_loom! {
        pub fn new() -> LargeCounters {
            LargeCounters {
                allocs: AtomicUsize::new(0),
                live: AtomicUsize::new(0),
                live_bytes: AtomicUsize::new(0),
            }
        }
    }

    /// A block for `layout`, counted; a dangling aligned pointer for size 0; null when the C
    /// library refuses.
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() == 0 {
            return layout.align() as *mut u8;
        }
        let p = large::alloc(layout);
        if !p.is_null() {
            self.record_alloc(layout.size());
        }
        p
    }

    /// As `alloc`, zero-filled (fresh pages from the system need no clearing).
    pub fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() == 0 {
            return layout.align() as *mut u8;
        }
        let p = large::alloc_zeroed(layout);
        if !p.is_null() {
            self.record_alloc(layout.size());
        }
        p
    }

    /// Resizes a block from `alloc` in place where the system can, keeping the counts.
    ///
    /// # Safety
    /// `ptr` came from the large path with `layout`; `new_size` is non-zero and, rounded up to
    /// `layout.align()`, does not overflow `isize`.
    pub unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.size() == 0 {
            // `alloc` gave a dangling pointer, not a block: nothing to copy or free (the fuzzer
            // found the free of it).
            // SAFETY: realloc's contract makes the new size with this alignment a valid layout.
            let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            return self.alloc(new_layout);
        }
        // SAFETY: `ptr` came from `large::alloc` with `layout` and `new_size` is non-zero
        // (precondition), which is what `large::realloc` asks.
        let p = unsafe { large::realloc(ptr, layout, new_size) };
        if !p.is_null() {
            self.record_free(layout.size());
            self.record_alloc(new_size);
        }
        p
    }

    /// Frees a block from `alloc`, counted.
    ///
    /// # Safety
    /// `ptr` came from `alloc(layout)` (or `alloc_zeroed`, `realloc` to this layout) and is not
    /// used afterwards.
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        self.record_free(layout.size());
        // SAFETY: a non-zero-size block of this path came from the C library's allocator
        // (precondition) and is unused.
        unsafe { large::free(ptr) }
    }

    pub fn record_alloc(&self, bytes: usize) {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
        self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Saturating: a face that cannot tell our large blocks from others' (C `free`) must not
    /// wrap the counts around.
    pub fn record_free(&self, bytes: usize) {
        let dec = |by: usize| move |n: usize| Some(n.saturating_sub(by));
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, dec(1));
        let _ = self
            .live_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, dec(bytes));
    }

    pub fn snapshot(&self) -> LargeStats {
        LargeStats {
            allocs_total: self.allocs.load(Ordering::Relaxed),
            live: self.live.load(Ordering::Relaxed),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
        }
    }
}
