//! The exported C functions. Each follows glibc's contract; the comments in
//! `include/poolmalloc.h` say what each does with bad input.

use core::ffi::{c_char, c_int, c_void};
use core::ptr;

use poolmalloc::internal::capi;

use crate::init::{json_report, text_report, write_stderr};
use crate::mode::mode;

/// Saves `errno` and puts it back when dropped: `posix_memalign` answers through its return
/// value and leaves `errno` as it was.
struct KeepErrno(c_int);

impl KeepErrno {
    fn save() -> KeepErrno {
        // SAFETY: `__errno_location` returns this thread's errno.
        KeepErrno(unsafe { *libc::__errno_location() })
    }
}

impl Drop for KeepErrno {
    fn drop(&mut self) {
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = self.0 };
    }
}

fn set_errno(code: c_int) {
    // SAFETY: `__errno_location` returns this thread's errno.
    unsafe { *libc::__errno_location() = code };
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_PAGESIZE) as usize }
}

/// A block of `size` bytes aligned to `align` (a power of two), or null with ENOMEM. Inlined
/// into each caller, where `align` is a constant the class computation folds in.
#[inline(always)]
fn alloc_aligned(size: usize, align: usize, zeroed: bool) -> *mut c_void {
    let p = capi::malloc(mode(), size, align, zeroed);
    if p.is_null() {
        set_errno(libc::ENOMEM);
    }
    p.cast()
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
    // SAFETY: C's contract: a live block of this family, given up.
    unsafe { capi::free(mode(), ptr.cast()) }
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
    // SAFETY: C's contract: a live block of this family; `size` is non-zero.
    let new = unsafe { capi::realloc(mode(), ptr.cast(), size) };
    if new.is_null() {
        set_errno(libc::ENOMEM);
    }
    new.cast()
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
    // SAFETY: C's contract: a live block of this family.
    unsafe { capi::usable_size(mode(), ptr.cast()) }
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
