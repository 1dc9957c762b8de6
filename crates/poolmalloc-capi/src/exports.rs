//! The exported C functions. Each follows glibc's contract; the comments in
//! `include/poolmalloc.h` say what each does with bad input.

use core::alloc::Layout;
use core::ffi::{c_char, c_int, c_void};
use core::ptr;

use poolmalloc::raw::{self, Owner};
use poolmalloc_core::__private::large;
use poolmalloc_core::class_of;

use crate::init::{json_report, libc_usable_size, text_report, write_stderr};

/// Saves `errno` and puts it back when dropped: `free` must keep it, and the slow paths make
/// system calls (futex, munmap) that may change it.
struct KeepErrno(c_int);

impl KeepErrno {
    fn save() -> KeepErrno {
        // SAFETY: `__errno_location` returns this thread's errno.
        KeepErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for KeepErrno {
    fn drop(&mut self) {
        // SAFETY: as above.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

fn set_errno(code: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = code };
}

/// The alignment C requires of a block of `size` bytes: 16 (x86-64's `max_align_t`) from 16
/// bytes up, 8 below (no type needing more fits).
#[inline(always)]
fn natural_align(size: usize) -> usize {
    if size >= 16 {
        16
    } else {
        8
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// A block of `size` bytes aligned to `align` (a power of two), or null with ENOMEM.
#[inline]
fn alloc_aligned(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    let align = align.max(natural_align(size));
    #[cfg(feature = "debug")]
    if crate::debug::enabled() {
        let p = crate::debug::alloc(size, align, zeroed);
        if p.is_null() {
            set_errno(libc::ENOMEM);
        }
        return p.cast();
    }
    let p = match class_of(size, align) {
        Some(class) => {
            let p = raw::alloc(class);
            if zeroed && !p.is_null() {
                // SAFETY: the block holds at least `size` bytes.
                unsafe { ptr::write_bytes(p, 0, size) };
            }
            p
        }
        None => large_alloc(size, align, zeroed),
    };
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
}

#[cold]
pub(crate) fn large_alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    // Sizes past isize::MAX (SIZE_MAX, PTRDIFF_MAX + 1) have no layout: out of memory.
    let Ok(layout) = Layout::from_size_align(size, align) else {
        return ptr::null_mut();
    };
    let p = if zeroed {
        large::alloc_zeroed(layout)
    } else {
        large::alloc(layout)
    };
    if !p.is_null() {
        // SAFETY: `p` is a live C-library block.
        raw::core().count_large_alloc(unsafe { libc_usable_size(p.cast()) });
    }
    p
}

/// Frees a block that is not ours: the C library's.
///
/// # Safety
/// `ptr` is a live block of the C library's allocator.
#[cold]
unsafe fn large_free(ptr: *mut c_void) {
    let _errno = KeepErrno::save();
    // SAFETY: as the precondition says.
    unsafe {
        raw::core().count_large_free(libc_usable_size(ptr));
        large::free(ptr.cast());
    }
}

/// # Safety
/// C's `malloc`.
#[no_mangle]
pub unsafe extern "C" fn malloc(size: usize) -> *mut c_void {
    alloc_aligned(size, 1, false)
}

/// # Safety
/// C's `free`: `ptr` is null or a live block from this family.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if ptr.is_null() {
        return;
    }
    let p = ptr.cast::<u8>();
    #[cfg(feature = "debug")]
    if crate::debug::enabled() {
        let _errno = KeepErrno::save();
        // SAFETY: given up by the caller; checked before anything changes.
        return unsafe { poolmalloc::debug::free(p) };
    }
    match raw::owner(p) {
        Owner::Pool { tag } => {
            // SAFETY: ours, given up by the caller.
            if !unsafe { raw::try_free_fast(tag, p) } {
                let _errno = KeepErrno::save();
                // SAFETY: as above; the fast half declined.
                unsafe { raw::free_slow(tag, p) };
            }
        }
        // Bootstrap blocks are never reused.
        Owner::Bootstrap => {}
        // SAFETY: not ours, so the C library's (the large path, or from before us).
        Owner::Elsewhere => unsafe { large_free(ptr) },
    }
}

/// # Safety
/// C's `calloc`.
#[no_mangle]
pub unsafe extern "C" fn calloc(nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        Some(total) => alloc_aligned(total, 1, true),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// # Safety
/// C's `realloc`: `ptr` is null or a live block from this family.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    if ptr.is_null() {
        return alloc_aligned(size, 1, false);
    }
    if size == 0 {
        // glibc's choice: free, and return NULL.
        // SAFETY: forwarded contract.
        unsafe { free(ptr) };
        return ptr::null_mut();
    }
    #[cfg(feature = "debug")]
    if crate::debug::enabled() {
        // SAFETY: forwarded contract; `size` is non-zero.
        return unsafe { crate::debug::realloc(ptr, size) };
    }
    let p = ptr.cast::<u8>();
    let owner = raw::owner(p);
    // SAFETY: `owner` says whether the block is ours; `usable_size` reads only ours.
    let old_size = match unsafe { raw::usable_size(p, owner) } {
        Some(old) => old,
        // SAFETY: a C-library block: its realloc keeps it there (and sets errno on failure).
        None => return unsafe { large_realloc(ptr, size) },
    };
    if let (Owner::Pool { tag }, Some(class)) = (owner, class_of(size, natural_align(size))) {
        if tag as usize == class.index() + 1 {
            return ptr;
        }
    }
    let new = alloc_aligned(size, 1, false);
    if !new.is_null() {
        // SAFETY: both blocks hold at least the smaller size and are distinct.
        unsafe {
            ptr::copy_nonoverlapping(p, new.cast::<u8>(), old_size.min(size));
            free(ptr);
        }
    }
    new
}

/// # Safety
/// `ptr` is a live C-library block; `size` is non-zero.
#[cold]
unsafe fn large_realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: as the precondition says; a layout with alignment 16 makes `large::realloc` use
    // the C library's realloc, which keeps the block's own alignment.
    unsafe {
        let old = libc_usable_size(ptr);
        let layout = Layout::from_size_align_unchecked(1, 16);
        let new = large::realloc(ptr.cast(), layout, size);
        if new.is_null() {
            set_errno(libc::ENOMEM);
        } else {
            raw::core().count_large_free(old);
            raw::core().count_large_alloc(libc_usable_size(new.cast()));
        }
        new.cast()
    }
}

/// # Safety
/// C's `reallocarray`.
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, nmemb: usize, size: usize) -> *mut c_void {
    match nmemb.checked_mul(size) {
        // SAFETY: forwarded contract.
        Some(total) => unsafe { realloc(ptr, total) },
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// # Safety
/// C's `posix_memalign`: `out` is valid for a write.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align % core::mem::size_of::<*mut c_void>() != 0 {
        return libc::EINVAL;
    }
    let _errno = KeepErrno::save();
    let p = alloc_aligned(size, align, false);
    if p.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: `out` is valid for a write (precondition).
    unsafe { out.write(p) };
    0
}

/// # Safety
/// C's `aligned_alloc`.
#[no_mangle]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    if !align.is_power_of_two() {
        set_errno(libc::EINVAL);
        return ptr::null_mut();
    }
    alloc_aligned(size, align, false)
}

/// # Safety
/// C's `memalign`.
#[no_mangle]
pub unsafe extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    // glibc rounds an alignment that is not a power of two up to one.
    match align.checked_next_power_of_two() {
        Some(align) => alloc_aligned(size, align, false),
        None => {
            set_errno(libc::EINVAL);
            ptr::null_mut()
        }
    }
}

/// # Safety
/// C's `valloc`.
#[no_mangle]
pub unsafe extern "C" fn valloc(size: usize) -> *mut c_void {
    alloc_aligned(size, page_size(), false)
}

/// # Safety
/// C's `pvalloc`.
#[no_mangle]
pub unsafe extern "C" fn pvalloc(size: usize) -> *mut c_void {
    let page = page_size();
    match size.max(1).checked_next_multiple_of(page) {
        Some(rounded) => alloc_aligned(rounded, page, false),
        None => {
            set_errno(libc::ENOMEM);
            ptr::null_mut()
        }
    }
}

/// # Safety
/// C's `malloc_usable_size`: `ptr` is null or a live block from this family.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    if ptr.is_null() {
        return 0;
    }
    let p = ptr.cast::<u8>();
    #[cfg(feature = "debug")]
    if crate::debug::enabled() {
        // SAFETY: a live block (precondition); misuse is reported and reads as 0.
        return unsafe { poolmalloc::debug::usable_size(p) }.unwrap_or(0);
    }
    // SAFETY: `usable_size` reads only our blocks; others are the C library's (precondition).
    unsafe { raw::usable_size(p, raw::owner(p)).unwrap_or_else(|| libc_usable_size(ptr)) }
}

/// Prints the stats report to stderr.
#[no_mangle]
pub extern "C" fn poolmalloc_stats_print() {
    write_stderr(&text_report());
}

/// Copies `text` into a C buffer the way snprintf does: at most `size - 1` bytes and a NUL;
/// returns the whole length, so a call with `size` 0 asks how big a buffer to pass.
///
/// # Safety
/// `buf` is valid for `size` bytes of writes (or `size` is 0).
unsafe fn copy_out(text: &str, buf: *mut c_char, size: usize) -> usize {
    if size > 0 {
        let n = text.len().min(size - 1);
        // SAFETY: `buf` holds `size` bytes (precondition) and `n < size`.
        unsafe {
            ptr::copy_nonoverlapping(text.as_ptr(), buf.cast::<u8>(), n);
            buf.add(n).write(0);
        }
    }
    text.len()
}

/// # Safety
/// `buf` is valid for `size` bytes of writes (or `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn poolmalloc_stats_json(buf: *mut c_char, size: usize) -> usize {
    // SAFETY: forwarded contract.
    unsafe { copy_out(&json_report(), buf, size) }
}

/// # Safety
/// `buf` is valid for `size` bytes of writes (or `size` is 0).
#[no_mangle]
pub unsafe extern "C" fn poolmalloc_fragmentation_json(buf: *mut c_char, size: usize) -> usize {
    let mut json = String::new();
    // Writing into a String cannot fail.
    let _ = poolmalloc::fragmentation().write_json(&mut json);
    // SAFETY: forwarded contract.
    unsafe { copy_out(&json, buf, size) }
}

/// Flushes this thread's cache and unmaps empty arenas beyond the reserve.
#[no_mangle]
pub extern "C" fn poolmalloc_collect() -> usize {
    poolmalloc::collect()
}
