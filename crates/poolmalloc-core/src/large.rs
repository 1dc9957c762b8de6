//! The large path: requests above `SMALL_REQUEST_THRESHOLD`, or aligned above `MAX_SMALL_ALIGN`,
//! go to the C library's allocator (`os::large`). Every face uses these functions, and counts
//! one way: by the system block's usable size, the one size the C library's `free` can tell
//! again without a layout.
//!
//! The counts go into a `LargeTally` that one thread owns (its thread cache's, in `poolmalloc`),
//! written with plain loads and stores, never onto a cache line other threads write: a shared
//! atomic counter here cost 47 % of a two-thread Larson run, the line bouncing between cores.
//! Stats add the tallies up when they are read. A count made where no thread owns a tally (the
//! core's uncached `alloc`, a thread without a cache) goes to the core's tally through `absorb`.

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr;

use crate::os::large;
use crate::sync::atomic::{AtomicUsize, Ordering};
use crate::sync::const_fn_unless_loom;

/// The large path in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Requests served since the allocator was made.
    pub allocs_total: usize,
    /// Blocks live now.
    pub live: usize,
    /// Bytes in the blocks live now, as the C library counts them (usable size).
    pub live_bytes: usize,
}

/// Counts of large blocks allocated and freed: raw totals, so that a block allocated under one
/// tally and freed under another nets out when the tallies are added up.
pub struct LargeTally {
    /// Blocks allocated, blocks freed, bytes allocated, bytes freed.
    counts: [AtomicUsize; 4],
}

const ALLOCS: usize = 0;
const FREES: usize = 1;
const BYTES_IN: usize = 2;
const BYTES_OUT: usize = 3;

impl Default for LargeTally {
    fn default() -> Self {
        LargeTally::new()
    }
}

impl LargeTally {
    const_fn_unless_loom! {
        /// Nothing counted.
        pub fn new() -> LargeTally {
            LargeTally {
                counts: [
                    AtomicUsize::new(0),
                    AtomicUsize::new(0),
                    AtomicUsize::new(0),
                    AtomicUsize::new(0),
                ],
            }
        }
    }

    /// Plain load-add-store: only the tally's owner writes it.
    #[inline(always)]
    fn bump(&self, which: usize, by: usize) {
        let count = &self.counts[which];
        count.store(
            count.load(Ordering::Relaxed).wrapping_add(by),
            Ordering::Relaxed,
        );
    }

    /// One block of `bytes` allocated. Only the tally's owner (one thread at a time) calls it.
    pub fn record_alloc(&self, bytes: usize) {
        self.bump(ALLOCS, 1);
        self.bump(BYTES_IN, bytes);
    }

    /// One block of `bytes` freed. Only the tally's owner (one thread at a time) calls it.
    pub fn record_free(&self, bytes: usize) {
        self.bump(FREES, 1);
        self.bump(BYTES_OUT, bytes);
    }

    /// Adds `other`'s counts with atomic adds: any thread may call it.
    pub fn absorb(&self, other: &LargeTally) {
        for (mine, theirs) in self.counts.iter().zip(&other.counts) {
            mine.fetch_add(theirs.load(Ordering::Relaxed), Ordering::Relaxed);
        }
    }

    /// Adds the counts to `totals` (an instant's view: any thread may call it).
    pub fn add_to(&self, totals: &mut LargeTotals) {
        for (total, count) in totals.0.iter_mut().zip(&self.counts) {
            *total = total.wrapping_add(count.load(Ordering::Relaxed));
        }
    }

    /// Runs `f` with a tally of its own, then adds what it counted to this one: for counts made
    /// where no single thread owns this tally.
    pub fn shared<R>(&self, f: impl FnOnce(&LargeTally) -> R) -> R {
        let mine = LargeTally::new();
        let r = f(&mine);
        self.absorb(&mine);
        r
    }
}

/// Tallies added up.
#[derive(Clone, Copy, Debug, Default)]
pub struct LargeTotals([usize; 4]);

impl core::ops::AddAssign for LargeTotals {
    fn add_assign(&mut self, other: LargeTotals) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0) {
            *mine = mine.wrapping_add(theirs);
        }
    }
}

impl LargeTotals {
    /// The snapshot. Live counts stop at zero: the C library's `free` counts every block that is
    /// not in our pools, blocks the C library handed out before poolmalloc was loaded included.
    pub fn stats(&self) -> LargeStats {
        let c = &self.0;
        LargeStats {
            allocs_total: c[ALLOCS],
            live: c[ALLOCS].saturating_sub(c[FREES]),
            live_bytes: c[BYTES_IN].saturating_sub(c[BYTES_OUT]),
        }
    }
}

/// A block for `layout` from the C library, counted in `tally`; null when out of memory. A
/// zero-size layout (only a Rust face asks for one: the C library asks for a byte) gets a
/// dangling pointer aligned to it, which is no block: `free` must not be given it, and `realloc`
/// of it is told its size, 0.
pub fn alloc(tally: &LargeTally, layout: Layout, zeroed: bool) -> *mut u8 {
    if layout.size() == 0 {
        return ptr::without_provenance_mut(layout.align());
    }
    let p = if zeroed {
        large::alloc_zeroed(layout)
    } else {
        large::alloc(layout)
    };
    if !p.is_null() {
        // SAFETY: a live C-library block, just allocated.
        tally.record_alloc(unsafe { usable_size(p) });
    }
    p
}

/// Gives a C-library block back, counted in `tally`.
///
/// # Safety
/// `ptr` is a live block of the C library's allocator (from `alloc` of a non-zero size, or from
/// before poolmalloc was loaded); nobody uses it afterwards.
pub unsafe fn free(tally: &LargeTally, ptr: *mut u8) {
    // SAFETY: a live C-library block (precondition).
    unsafe {
        tally.record_free(usable_size(ptr));
        large::free(ptr);
    }
}

/// Resizes a C-library block to `new_size` bytes aligned to `align`, in place where the C
/// library can, keeping the counts; null (the old block intact) when out of memory.
///
/// # Safety
/// `ptr` is a live C-library block aligned to `align`, of at least `old_size` bytes, or the
/// dangling pointer `alloc` gave for a zero-size layout (`old_size` 0); `new_size` is non-zero.
pub unsafe fn realloc(
    tally: &LargeTally,
    ptr: *mut u8,
    old_size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    let Ok(new_layout) = Layout::from_size_align(new_size, align) else {
        return ptr::null_mut();
    };
    if old_size == 0 {
        // A zero-size layout's pointer is no block: nothing to copy or free (the fuzzer found
        // the free of it).
        return alloc(tally, new_layout, false);
    }
    // SAFETY: a live C-library block (precondition).
    let old_usable = unsafe { usable_size(ptr) };
    // `large::realloc` asks for the block's layout and a non-zero new size.
    // SAFETY: the block holds `old_size` bytes aligned to `align` (precondition): a valid layout.
    let new = unsafe {
        let old_layout = Layout::from_size_align_unchecked(old_size, align);
        large::realloc(ptr, old_layout, new_size)
    };
    if !new.is_null() {
        tally.record_free(old_usable);
        // SAFETY: a live C-library block, just resized.
        tally.record_alloc(unsafe { usable_size(new) });
    }
    new
}

/// The usable size the C library gives a block of its own.
///
/// # Safety
/// `ptr` is a live block of the C library's allocator.
pub unsafe fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: a live C-library block (precondition); `system_usable_size` is the C library's
    // own function, whichever allocator interposes the symbol.
    unsafe { system_usable_size()(ptr.cast()) }
}

type UsableSize = unsafe extern "C" fn(*mut c_void) -> usize;

/// The C library's own `malloc_usable_size`. The symbol may be interposed — by poolmalloc's C
/// library, whose version would come back here for a block that is not ours, or by another
/// preloaded allocator that does not know glibc's blocks — so it is looked up in glibc itself,
/// once (the C library's start-up does it before `main`, while allocating is safe).
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "asan")))]
pub fn system_usable_size() -> UsableSize {
    static FOUND: crate::sync::unmodelled::AtomicUsize =
        crate::sync::unmodelled::AtomicUsize::new(0);
    let mut f = FOUND.load(Ordering::Relaxed);
    if f == 0 {
        let fallback: UsableSize = libc::malloc_usable_size;
        // Threads racing here store the same address.
        // SAFETY: dlopen(RTLD_NOLOAD) only finds the loaded C library by its soname, dlsym looks
        // the name up in it; both take NUL-terminated names.
        f = unsafe {
            let handle = libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
            let sym = if handle.is_null() {
                ptr::null_mut()
            } else {
                libc::dlsym(handle, c"malloc_usable_size".as_ptr())
            };
            if sym.is_null() {
                fallback as usize
            } else {
                sym as usize
            }
        };
        FOUND.store(f, Ordering::Relaxed);
    }
    // SAFETY: non-zero values are the address of a `malloc_usable_size`, stored above.
    unsafe { core::mem::transmute::<usize, UsableSize>(f) }
}

/// The C library's `malloc_usable_size`: under AddressSanitizer, which intercepts the plain
/// names as `os::large` then uses them, and off glibc, the plain name.
#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "asan"))))]
pub fn system_usable_size() -> UsableSize {
    libc::malloc_usable_size
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_net_out_across_tallies_and_stop_at_zero() {
        let (a, b) = (LargeTally::new(), LargeTally::new());
        let layout = Layout::from_size_align(4096, 8).unwrap();
        let p = alloc(&a, layout, false);
        let q = alloc(&a, Layout::from_size_align(64, 64).unwrap(), true);
        assert!(!p.is_null() && q as usize % 64 == 0);
        // SAFETY: both live C-library blocks, freed on the other tally.
        unsafe {
            assert!(usable_size(p) >= 4096);
            free(&b, p);
        }
        let mut totals = LargeTotals::default();
        a.add_to(&mut totals);
        b.add_to(&mut totals);
        let s = totals.stats();
        assert_eq!((s.allocs_total, s.live), (2, 1));
        // SAFETY: a live C-library block.
        assert_eq!(s.live_bytes, unsafe { usable_size(q) });
        // SAFETY: `q` is a live C-library block from `alloc`, freed once.
        unsafe { free(&b, q) };
        // A free of a block no tally counted (the C library's `free` of one from before us).
        let foreign = LargeTally::new();
        foreign.record_free(100);
        let mut totals = LargeTotals::default();
        for t in [&a, &b, &foreign] {
            t.add_to(&mut totals);
        }
        assert_eq!((totals.stats().live, totals.stats().live_bytes), (0, 0));
    }

    #[test]
    fn a_zero_size_request_is_no_block_and_resizes_into_one() {
        let tally = LargeTally::new();
        let zero = Layout::from_size_align(0, 4096).unwrap();
        let p = alloc(&tally, zero, false);
        assert_eq!(p as usize, 4096, "a dangling pointer aligned to the layout");
        // SAFETY: the dangling pointer of a zero-size layout, told as such (old size 0); before
        // the fix this freed it.
        let q = unsafe { realloc(&tally, p, 0, 4096, 100) };
        assert!(!q.is_null() && q as usize % 4096 == 0);
        let mut totals = LargeTotals::default();
        tally.add_to(&mut totals);
        assert_eq!(totals.stats().live, 1);
        // SAFETY: the live block `realloc` gave.
        unsafe { free(&tally, q) };
        let mut totals = LargeTotals::default();
        tally.add_to(&mut totals);
        assert_eq!((totals.stats().live, totals.stats().allocs_total), (0, 1));
    }
}
