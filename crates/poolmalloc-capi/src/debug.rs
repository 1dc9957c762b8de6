//! Debug mode for the C library (feature `debug`): a library built with it runs in poolmalloc's
//! debug mode when `POOLMALLOC_DEBUG=1` (see `poolmalloc::debug`), and as usual otherwise.
//!
//! The mode is read once, at the library's first call (at the latest at load, from `init`), and
//! never changes: a block laid out in one mode must be freed in the same mode. Reading it costs
//! no allocation (`getenv`). In debug mode every block is a debug block, large ones too (they
//! still come from the C library, laid out and tracked by poolmalloc); freeing a pointer that
//! is none of them — another allocator's — is reported as foreign.

use core::ffi::{c_void, CStr};
use core::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use poolmalloc::debug;

const UNDECIDED: u8 = 0;
const OFF: u8 = 1;
const ON: u8 = 2;

static MODE: AtomicU8 = AtomicU8::new(UNDECIDED);

/// True when the library runs in debug mode.
#[inline]
pub(crate) fn enabled() -> bool {
    match MODE.load(Ordering::Relaxed) {
        ON => true,
        OFF => false,
        _ => decide(),
    }
}

#[cold]
fn decide() -> bool {
    // SAFETY: getenv returns null or a NUL-terminated string; it does not allocate. Two threads
    // deciding at once read the same environment and store the same answer.
    let on = unsafe {
        let v = libc::getenv(c"POOLMALLOC_DEBUG".as_ptr());
        !v.is_null() && CStr::from_ptr(v).to_bytes() == b"1"
    };
    MODE.store(if on { ON } else { OFF }, Ordering::Relaxed);
    on
}

/// `alloc_aligned` in debug mode: a debug block, small or large; null when out of memory.
pub(crate) fn alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let p = debug::alloc(size, align);
    if zeroed && !p.is_null() {
        // SAFETY: the block holds `size` bytes for the caller.
        unsafe { ptr::write_bytes(p, 0, size) };
    }
    p
}

/// `realloc` in debug mode: always moves, since the size and pads belong to the old block.
/// Null (errno ENOMEM) when out of memory, or when the pointer was misuse (reported; the block
/// is left alone).
///
/// # Safety
/// `ptr` is a live block from this family; `size` is non-zero.
pub(crate) unsafe fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let p = ptr.cast::<u8>();
    // SAFETY: a live block, if ours (precondition); anything else is reported.
    let Some(old) = (unsafe { debug::usable_size(p) }) else {
        return ptr::null_mut();
    };
    // SAFETY: `malloc` and `free` are this library's, and `ptr` is a live block (checked).
    unsafe {
        let new = crate::exports::malloc(size);
        if !new.is_null() {
            ptr::copy_nonoverlapping(p, new.cast::<u8>(), old.min(size));
            crate::exports::free(ptr);
        }
        new
    }
}
