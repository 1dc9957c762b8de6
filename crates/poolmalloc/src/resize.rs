//! `realloc` shared by the global allocator and `Heap`: in place when the new size maps to the
//! block's own class, through the system's realloc on the large path, else move. Debug mode
//! (`instrumented.rs`) uses only the move.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

#[cfg(not(feature = "debug"))]
use poolmalloc_core::__private::class_tag;
#[cfg(not(feature = "debug"))]
use poolmalloc_core::{class_of, Core, PageSource};

/// # Safety
/// `GlobalAlloc::realloc`'s contract, with `a` the allocator that serves `core`'s blocks.
#[cfg(not(feature = "debug"))]
#[inline]
pub(crate) unsafe fn realloc<A: GlobalAlloc, S: PageSource>(
    a: &A,
    core: &Core<S>,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    let old_class = class_of(layout.size(), layout.align());
    let new_class = class_of(new_size, layout.align());
    match (old_class, new_class) {
        // SAFETY: a small-layout pointer lies in one of our pools, so its header is mapped.
        (Some(_), Some(new)) if unsafe { class_tag(ptr) } as usize == new.index() + 1 => ptr,
        // SAFETY: both sizes are on the large path; the caller keeps realloc's contract.
        (None, None) => unsafe { core.large_realloc(ptr, layout, new_size) },
        // SAFETY: forwarded contract.
        _ => unsafe { move_block(a, ptr, layout, new_size) },
    }
}

/// `realloc` by moving: a new block from `a`, the smaller size copied, the old block freed.
/// Null (the old block intact) when `a` has no memory.
///
/// # Safety
/// `GlobalAlloc::realloc`'s contract, with `a` the allocator that gave `ptr`.
pub(crate) unsafe fn move_block<A: GlobalAlloc>(
    a: &A,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: realloc's contract makes `new_size` with this alignment a valid layout.
    let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
    // SAFETY: forwarded contract.
    let new = unsafe { a.alloc(new_layout) };
    if !new.is_null() {
        // SAFETY: both blocks hold at least the smaller size; they are distinct allocations.
        unsafe {
            ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            a.dealloc(ptr, layout);
        }
    }
    new
}
