//! The large path as every face uses it: requests no size class serves go to the C library's
//! allocator (`poolmalloc_core::os::large`), and are counted one way for every face — by the
//! system block's usable size, the one size the C library can tell again at `free`, where it
//! has no layout.
//!
//! The counts go into the calling thread's cache (`ThreadCache::large`), never onto a cache line
//! other threads write: a shared atomic counter here cost 47 % of a two-thread Larson run (the
//! line bouncing between cores). Stats add the live threads' counts to what exited threads left
//! in the core.

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr;

use poolmalloc_core::os;

use crate::cache::LargeTally;

/// A block for `layout` from the C library, counted in `tally`; null when out of memory. A
/// zero-size request gets a real block too, so that every pointer of the large path can be
/// freed the same way.
pub(crate) fn alloc(tally: &LargeTally, layout: Layout, zeroed: bool) -> *mut u8 {
    // SAFETY: a size of 1 with the layout's alignment (a power of two) is a valid layout.
    let layout = unsafe { Layout::from_size_align_unchecked(layout.size().max(1), layout.align()) };
    let p = if zeroed {
        os::large::alloc_zeroed(layout)
    } else {
        os::large::alloc(layout)
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
/// `ptr` is a live block of the C library's allocator (from `alloc`, or from before poolmalloc
/// was loaded); nobody uses it afterwards.
pub(crate) unsafe fn free(tally: &LargeTally, ptr: *mut u8) {
    // SAFETY: a live C-library block (precondition).
    unsafe {
        tally.record_free(usable_size(ptr));
        os::large::free(ptr);
    }
}

/// Resizes a C-library block to `new_size` bytes aligned to `align`, keeping the counts; null
/// (the old block intact) when out of memory.
///
/// # Safety
/// `ptr` is a live C-library block aligned to `align`, of at least `old_size` bytes; `new_size`
/// is non-zero.
pub(crate) unsafe fn realloc(
    tally: &LargeTally,
    ptr: *mut u8,
    old_size: usize,
    align: usize,
    new_size: usize,
) -> *mut u8 {
    if Layout::from_size_align(new_size, align).is_err() {
        return ptr::null_mut();
    }
    // SAFETY: a live C-library block (precondition).
    let old_usable = unsafe { usable_size(ptr) };
    // SAFETY: `os::large::realloc` only uses the layout's size and alignment, which are the
    // block's (precondition); the C library keeps the block's alignment or moves it itself.
    let new = unsafe {
        let old_layout = Layout::from_size_align_unchecked(old_size, align);
        os::large::realloc(ptr, old_layout, new_size)
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
pub(crate) unsafe fn usable_size(ptr: *mut u8) -> usize {
    // SAFETY: a live C-library block (precondition); `system_usable_size` is the C library's
    // own function, whichever allocator may interpose the symbol.
    unsafe { system_usable_size()(ptr.cast()) }
}

type UsableSize = unsafe extern "C" fn(*mut c_void) -> usize;

/// The C library's own `malloc_usable_size`. The symbol may be interposed — by our C library,
/// whose version would come back here for a block that is not ours, or by another preloaded
/// allocator that does not know glibc's blocks — so glibc's is looked up in glibc itself, once,
/// at the first large block (the C library's start-up does it before `main`).
#[cfg(all(target_os = "linux", target_env = "gnu", not(feature = "asan")))]
pub fn system_usable_size() -> UsableSize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static FOUND: AtomicUsize = AtomicUsize::new(0);
    let mut f = FOUND.load(Ordering::Relaxed);
    if f == 0 {
        // SAFETY: dlopen with RTLD_NOLOAD only finds the C library already loaded (by its
        // soname) and dlsym looks the name up in it; both take NUL-terminated names. Two
        // threads racing here store the same address.
        unsafe {
            let libc_handle =
                libc::dlopen(c"libc.so.6".as_ptr(), libc::RTLD_NOLOAD | libc::RTLD_LAZY);
            let sym = if libc_handle.is_null() {
                ptr::null_mut()
            } else {
                libc::dlsym(libc_handle, c"malloc_usable_size".as_ptr())
            };
            let fallback: UsableSize = libc::malloc_usable_size;
            f = if sym.is_null() {
                fallback as usize
            } else {
                sym as usize
            };
        }
        FOUND.store(f, Ordering::Relaxed);
    }
    // SAFETY: non-zero values are the address of a `malloc_usable_size`, stored above.
    unsafe { core::mem::transmute::<usize, UsableSize>(f) }
}

/// Under AddressSanitizer (which intercepts the plain names, as `os::large` uses them) and off
/// glibc: the plain name.
#[cfg(not(all(target_os = "linux", target_env = "gnu", not(feature = "asan"))))]
pub fn system_usable_size() -> UsableSize {
    libc::malloc_usable_size
}
