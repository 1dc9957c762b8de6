//! The OS layer: where arenas come from and go back to. The only module that calls mmap/munmap.
//!
//! `PageSource` is the whole interface the core needs (mimalloc's `prim.h` in miniature): map one
//! `ARENA_SIZE`-aligned, zero-filled arena, give part of one back while keeping it mapped
//! (decommit), and unmap it. `OsPages` is the real one; `MemPages`
//! is a deterministic in-memory one for tests and loom models, which can be told to fail and
//! counts every map and unmap.

use crate::config::{ADDRESS_BITS, ARENA_SIZE};
use crate::sync::atomic::Ordering;
use crate::sync::unmodelled::{AtomicBool, AtomicUsize, Mutex};
use core::ptr::NonNull;
use std::alloc::{GlobalAlloc, Layout, System};

/// A source of arenas.
///
/// # Safety
/// `map_arena` must return memory that is `ARENA_SIZE` bytes long, `ARENA_SIZE`-aligned,
/// zero-filled, below `1 << ADDRESS_BITS`, readable and writable, and used by nobody else until it
/// is passed to `unmap_arena`.
pub unsafe trait PageSource: Send + Sync {
    /// Maps a new arena, or `None` when the system refuses.
    fn map_arena(&self) -> Option<NonNull<u8>>;

    /// Gives an arena back.
    ///
    /// # Safety
    /// `arena` came from `map_arena` of this source and nothing refers to its memory any more.
    unsafe fn unmap_arena(&self, arena: NonNull<u8>);

    /// Gives the pages of `len` bytes at `addr` back to the system, keeping them mapped: they
    /// read as zero when next touched.
    ///
    /// # Safety
    /// The range lies in arenas of this source (one, or neighbouring ones), is page-aligned,
    /// and nothing refers to its memory any more.
    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize);

    /// Gives back `count` neighbouring arenas from `first` on, as `unmap_arena` each.
    ///
    /// # Safety
    /// As for `unmap_arena`, for each of the arenas.
    unsafe fn unmap_arenas(&self, first: NonNull<u8>, count: usize) {
        for i in 0..count {
            // SAFETY: forwarded precondition, arena by arena.
            unsafe { self.unmap_arena(first.add(i * ARENA_SIZE)) };
        }
    }

    /// Milliseconds on a clock that never goes back: what the purge delay is measured on
    /// (`Core::purge`). The OS's coarse monotonic clock (read through the vDSO, no system call).
    fn now_ms(&self) -> u64 {
        monotonic_ms()
    }
}

/// `CLOCK_MONOTONIC_COARSE` in milliseconds: a jiffy's resolution (1 to 4 ms), which the purge
/// delay (tens of milliseconds) does not need finer, for a fifth of the fine clock's cost.
pub fn monotonic_ms() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec it is given; the coarse monotonic clock exists
    // on every Linux since 2.6.32, and a failure leaves the zeroed value (time stands still).
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut t) };
    t.tv_sec as u64 * 1000 + t.tv_nsec as u64 / 1_000_000
}

// SAFETY: forwards to the shared source, which keeps the contract.
unsafe impl<S: PageSource + ?Sized> PageSource for std::sync::Arc<S> {
    fn map_arena(&self) -> Option<NonNull<u8>> {
        (**self).map_arena()
    }

    unsafe fn unmap_arena(&self, arena: NonNull<u8>) {
        // SAFETY: the caller keeps the contract for the shared source.
        unsafe { (**self).unmap_arena(arena) }
    }

    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize) {
        // SAFETY: the caller keeps the contract for the shared source.
        unsafe { (**self).decommit(addr, len) }
    }

    unsafe fn unmap_arenas(&self, first: NonNull<u8>, count: usize) {
        // SAFETY: the caller keeps the contract for the shared source.
        unsafe { (**self).unmap_arenas(first, count) }
    }

    fn now_ms(&self) -> u64 {
        (**self).now_ms()
    }
}

/// Anonymous private mapping of `len` bytes, zero-filled, or `None` (also for debug mode's
/// table of large blocks in `poolmalloc`, which must not allocate).
pub fn map_anonymous(len: usize) -> Option<NonNull<u8>> {
    // Miri's mmap takes no other flags; the core's pure-logic tests run under it.
    #[cfg(miri)]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS;
    #[cfg(not(miri))]
    let flags = libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE;
    // SAFETY: a fresh anonymous mapping at an address of the kernel's choosing touches no
    // existing memory; the result is checked for MAP_FAILED.
    let p = unsafe {
        libc::mmap(
            core::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            flags,
            -1,
            0,
        )
    };
    if p == libc::MAP_FAILED {
        None
    } else {
        NonNull::new(p.cast())
    }
}

/// Unmaps `[addr, addr + len)`, as `map_anonymous` mapped it.
///
/// # Safety
/// `[addr, addr + len)` is a whole mapping (or whole pages of one) that nothing uses any more.
pub unsafe fn unmap(addr: *mut u8, len: usize) {
    // SAFETY: the caller promises the range is ours and unused. munmap of a valid range cannot
    // fail, so its result carries no information.
    unsafe { libc::munmap(addr.cast(), len) };
}

/// The large path: blocks above the small threshold (or over-aligned) come from the C library's
/// malloc. On glibc it is reached through its `__libc_*` entry points, which no `LD_PRELOAD`ed
/// library can interpose: when poolmalloc itself is the preloaded `malloc` (poolmalloc-capi),
/// calling the `malloc` symbol here would come straight back to us.
pub mod large {
    use core::alloc::Layout;

    /// What glibc's malloc guarantees for every block on 64-bit targets.
    const MALLOC_ALIGN: usize = 16;

    // Under AddressSanitizer (feature `asan`) the plain names: ASan intercepts `malloc`, `free`
    // and `__libc_memalign` but not `__libc_malloc` or `__libc_free`, so over-aligned blocks
    // went from ASan's allocator to glibc's free (the fuzzer's leak report found it).
    #[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "asan")))]
    mod libc_malloc {
        use core::ffi::c_void;
        extern "C" {
            pub fn __libc_malloc(size: usize) -> *mut c_void;
            pub fn __libc_calloc(n: usize, size: usize) -> *mut c_void;
            pub fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
            pub fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
            pub fn __libc_free(ptr: *mut c_void);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "asan"))))]
    mod libc_malloc {
        pub use libc::{calloc as __libc_calloc, free as __libc_free, malloc as __libc_malloc};
        pub use libc::{memalign as __libc_memalign, realloc as __libc_realloc};
    }
    use libc_malloc::*;

    /// A block for `layout` (non-zero size), or null.
    pub fn alloc(layout: Layout) -> *mut u8 {
        // SAFETY: plain calls into the C allocator; null results are passed on.
        unsafe {
            if layout.align() <= MALLOC_ALIGN {
                __libc_malloc(layout.size()).cast()
            } else {
                __libc_memalign(layout.align(), layout.size()).cast()
            }
        }
    }

    /// A zero-filled block for `layout` (non-zero size), or null.
    pub fn alloc_zeroed(layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: a plain call into the C allocator.
            return unsafe { __libc_calloc(1, layout.size()).cast() };
        }
        let p = alloc(layout);
        if !p.is_null() {
            // SAFETY: the block holds `layout.size()` bytes.
            unsafe { core::ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    /// Resizes a block from `alloc`, moving it if the C library must; null leaves it intact.
    ///
    /// # Safety
    /// `ptr` came from this module with `layout`; `new_size` is non-zero.
    pub unsafe fn realloc(ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` is a C-library block (precondition).
            return unsafe { __libc_realloc(ptr.cast(), new_size).cast() };
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, layout.align()) else {
            return core::ptr::null_mut();
        };
        let new = alloc(new_layout);
        if !new.is_null() {
            // SAFETY: both blocks hold at least the smaller size and are distinct.
            unsafe {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                free(ptr);
            }
        }
        new
    }

    /// Gives a block back to the C library.
    ///
    /// # Safety
    /// `ptr` came from the C library's allocator (through this module or not) and is unused.
    pub unsafe fn free(ptr: *mut u8) {
        // SAFETY: `ptr` came from the C library's allocator and is unused (precondition).
        unsafe { __libc_free(ptr.cast()) }
    }
}

/// Arenas straight from the kernel.
#[derive(Debug, Default, Clone, Copy)]
pub struct OsPages;

// SAFETY: mmap gives zero-filled private memory; `map_arena` trims it to an ARENA_SIZE-aligned
// range of ARENA_SIZE bytes and refuses addresses at or above `1 << ADDRESS_BITS`.
unsafe impl PageSource for OsPages {
    fn map_arena(&self) -> Option<NonNull<u8>> {
        // Map twice the size and trim, so the result is aligned whatever the kernel picks.
        let len = 2 * ARENA_SIZE;
        let raw = map_anonymous(len)?.as_ptr() as usize;
        let start = (raw + ARENA_SIZE - 1) & !(ARENA_SIZE - 1);
        let end = start + ARENA_SIZE;
        // SAFETY: both trimmed pieces lie inside the mapping just made and hold nothing.
        unsafe {
            if start > raw {
                unmap(raw as *mut u8, start - raw);
            }
            if raw + len > end {
                unmap(end as *mut u8, raw + len - end);
            }
        }
        if end > 1usize << ADDRESS_BITS {
            // SAFETY: the arena was mapped just above and nobody has seen it.
            unsafe { unmap(start as *mut u8, ARENA_SIZE) };
            return None;
        }
        NonNull::new(start as *mut u8)
    }

    unsafe fn unmap_arena(&self, arena: NonNull<u8>) {
        // SAFETY: the caller promises `arena` is one of ours and unused.
        unsafe { unmap(arena.as_ptr(), ARENA_SIZE) }
    }

    unsafe fn unmap_arenas(&self, first: NonNull<u8>, count: usize) {
        // One call for the range: one TLB shootdown.
        // SAFETY: the caller promises the arenas are ours, neighbours and unused.
        unsafe { unmap(first.as_ptr(), count * ARENA_SIZE) }
    }

    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize) {
        // MADV_DONTNEED on a private anonymous mapping frees the pages, which read as zero
        // afterwards; its result carries nothing to act on (the pages then simply stay).
        // SAFETY: the caller promises the page-aligned range is ours and unused.
        unsafe { libc::madvise(addr.as_ptr().cast(), len, libc::MADV_DONTNEED) };
    }
}

/// A deterministic in-memory page source: `capacity` arena slots in one block from the system
/// allocator, handed out lowest free slot first, zeroed again when unmapped; its clock stands
/// still until a test moves it (`advance_ms`).
pub struct MemPages {
    base: NonNull<u8>,
    capacity: usize,
    used: Mutex<Vec<bool>>,
    failing: AtomicBool,
    maps: AtomicUsize,
    unmaps: AtomicUsize,
    decommitted: AtomicUsize,
    decommits: AtomicUsize,
    now: AtomicUsize,
}

// SAFETY: the slot table is behind a mutex, the counters are atomics, and `base` is only used to
// compute addresses of slots that the table hands to one owner at a time.
unsafe impl Send for MemPages {}
// SAFETY: the slot table is behind a mutex, the counters are atomics, and `base` is only read to
// compute slot addresses, each handed to one owner at a time: shared use changes nothing else.
unsafe impl Sync for MemPages {}

impl MemPages {
    /// A source of at most `capacity` arenas at a time.
    pub fn new(capacity: usize) -> MemPages {
        assert!(capacity > 0, "MemPages capacity must be at least 1");
        let layout = Self::layout(capacity);
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { System.alloc_zeroed(layout) };
        let base = NonNull::new(base).expect("MemPages: the system allocator refused the backing");
        MemPages {
            base,
            capacity,
            used: Mutex::new(vec![false; capacity]),
            failing: AtomicBool::new(false),
            maps: AtomicUsize::new(0),
            unmaps: AtomicUsize::new(0),
            decommitted: AtomicUsize::new(0),
            decommits: AtomicUsize::new(0),
            now: AtomicUsize::new(1),
        }
    }

    fn layout(capacity: usize) -> Layout {
        Layout::from_size_align(capacity * ARENA_SIZE, ARENA_SIZE).expect("MemPages layout")
    }

    /// While set, every `map_arena` fails as if the OS had no memory.
    pub fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Arenas mapped so far.
    pub fn maps(&self) -> usize {
        self.maps.load(Ordering::SeqCst)
    }

    /// Arenas unmapped so far.
    pub fn unmaps(&self) -> usize {
        self.unmaps.load(Ordering::SeqCst)
    }

    /// Bytes decommitted so far.
    pub fn decommitted(&self) -> usize {
        self.decommitted.load(Ordering::SeqCst)
    }

    /// Calls to `decommit` so far (each one range: a run of neighbouring pools).
    pub fn decommits(&self) -> usize {
        self.decommits.load(Ordering::SeqCst)
    }

    /// Moves this source's clock on by `ms` milliseconds.
    pub fn advance_ms(&self, ms: u64) {
        self.now.fetch_add(ms as usize, Ordering::SeqCst);
    }

    /// Arenas mapped now.
    pub fn mapped_now(&self) -> usize {
        self.used.lock().unwrap().iter().filter(|u| **u).count()
    }
}

impl Drop for MemPages {
    fn drop(&mut self) {
        // SAFETY: `base` came from `System.alloc_zeroed` with this layout.
        unsafe { System.dealloc(self.base.as_ptr(), Self::layout(self.capacity)) }
    }
}

// SAFETY: each slot is ARENA_SIZE bytes at an ARENA_SIZE-aligned offset of an ARENA_SIZE-aligned
// block, zeroed at creation and again on unmap, and handed to one caller until unmapped.
unsafe impl PageSource for MemPages {
    fn map_arena(&self) -> Option<NonNull<u8>> {
        if self.failing.load(Ordering::SeqCst) {
            return None;
        }
        let mut used = self.used.lock().unwrap();
        let slot = used.iter().position(|u| !u)?;
        used[slot] = true;
        self.maps.fetch_add(1, Ordering::SeqCst);
        // SAFETY: slot < capacity, so the offset stays inside the backing block.
        Some(unsafe { self.base.add(slot * ARENA_SIZE) })
    }

    unsafe fn unmap_arena(&self, arena: NonNull<u8>) {
        let offset = arena.as_ptr() as usize - self.base.as_ptr() as usize;
        assert_eq!(
            offset % ARENA_SIZE,
            0,
            "MemPages: unmap of a non-arena address"
        );
        let slot = offset / ARENA_SIZE;
        let mut used = self.used.lock().unwrap();
        assert!(used[slot], "MemPages: arena {arena:p} unmapped twice");
        // SAFETY: the caller promises nothing refers to the arena any more. Free blocks in it
        // may be poisoned for ASan (feature `asan`); munmap would unpoison, so must we.
        unsafe {
            crate::tools::mark_reusable(arena.as_ptr(), ARENA_SIZE);
            core::ptr::write_bytes(arena.as_ptr(), 0, ARENA_SIZE);
        }
        used[slot] = false;
        self.unmaps.fetch_add(1, Ordering::SeqCst);
    }

    unsafe fn decommit(&self, addr: NonNull<u8>, len: usize) {
        // SAFETY: the caller promises the range is ours and unused; zeroing is what the kernel's
        // fresh pages would read as (unpoisoned first, as `unmap_arena` does).
        unsafe {
            crate::tools::mark_reusable(addr.as_ptr(), len);
            core::ptr::write_bytes(addr.as_ptr(), 0, len);
        }
        self.decommitted.fetch_add(len, Ordering::SeqCst);
        self.decommits.fetch_add(1, Ordering::SeqCst);
    }

    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_pages_are_aligned_zeroed_and_writable() {
        let arena = OsPages.map_arena().expect("mmap");
        let addr = arena.as_ptr() as usize;
        assert_eq!(addr % ARENA_SIZE, 0);
        // SAFETY: the arena is ours, ARENA_SIZE bytes long.
        unsafe {
            assert_eq!(*arena.as_ptr().add(ARENA_SIZE - 1), 0);
            arena.as_ptr().add(ARENA_SIZE - 1).write(7);
            OsPages.unmap_arena(arena);
        }
    }

    #[test]
    fn mem_pages_count_fail_and_reuse_lowest_slot() {
        let src = MemPages::new(2);
        let a = src.map_arena().unwrap();
        let b = src.map_arena().unwrap();
        assert_eq!(a.as_ptr() as usize % ARENA_SIZE, 0);
        assert!(
            src.map_arena().is_none(),
            "capacity 2 must refuse a third arena"
        );
        // SAFETY: `a` is ours.
        unsafe {
            a.as_ptr().write(9);
            src.unmap_arena(a);
        }
        assert_eq!((src.maps(), src.unmaps(), src.mapped_now()), (2, 1, 1));
        src.set_failing(true);
        assert!(src.map_arena().is_none());
        src.set_failing(false);
        let c = src.map_arena().unwrap();
        assert_eq!(c, a, "lowest free slot first");
        // SAFETY: `c` is ours again and was zeroed on unmap.
        unsafe { assert_eq!(c.as_ptr().read(), 0) };
        // SAFETY: both are ours.
        unsafe {
            src.unmap_arena(b);
            src.unmap_arena(c);
        }
    }
}
