//! The global allocator with checks, built instead of the fast path when a feature among
//! `debug`, `valgrind` and `asan` is on (the fast path in `global.rs` is then compiled out, so
//! builds without them keep exactly its instructions). Same caches, same core: each block is laid
//! out (debug) and marked live (tools) on its way to the program, and checked, filled and
//! marked freed on its way back.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use poolmalloc_core::{Class, FreeError, FreeErrorKind};

use crate::global::raw::{self, Owner};
use crate::global::PoolMalloc;
use crate::misuse::{report, Misuse};

/// The class whose blocks serve a request in this build; `None` for the large path.
#[cfg(feature = "debug")]
use crate::debug::class_for;
#[cfg(not(feature = "debug"))]
use poolmalloc_core::class_of as class_for;

/// Bytes of a freed block the cache and core keep using: the link, and in debug mode the state.
#[cfg(all(any(feature = "valgrind", feature = "asan"), feature = "debug"))]
const KEEP: usize = poolmalloc_core::config::DEBUG_HEADER;
#[cfg(all(any(feature = "valgrind", feature = "asan"), not(feature = "debug")))]
const KEEP: usize = core::mem::size_of::<poolmalloc_core::FreeBlock>();

/// A block of `class` for a request of `size` bytes, laid out and marked; null when out of
/// memory.
pub(crate) fn alloc_block(class: Class, size: usize) -> *mut u8 {
    let block = raw::alloc(class);
    if block.is_null() {
        return block;
    }
    #[cfg(any(feature = "valgrind", feature = "asan"))]
    if !crate::bootstrap::contains(block) {
        // SAFETY: a block of `class` just taken for the program.
        unsafe { poolmalloc_core::tools::mark_live(block, class.block_size()) };
    }
    #[cfg(feature = "debug")]
    // SAFETY: the block is ours, of `class` (a bootstrap block is at least that big), aligned.
    let block = unsafe { crate::debug::on_alloc(block, class, size) };
    #[cfg(not(feature = "debug"))]
    let _ = size;
    block
}

/// Frees a pointer the program gives back, after the checks this build makes. `expected` is
/// the class its layout maps to (the C library has no layout). Misuse is reported and the block
/// left alone.
///
/// # Safety
/// If `user` is a live block of ours, the program does not use it afterwards.
pub(crate) unsafe fn free_block(user: *mut u8, expected: Option<Class>) {
    let addr = user as usize;
    let tag = match raw::owner(user) {
        Owner::Pool { tag } => tag,
        // Bootstrap blocks are never reused.
        Owner::Bootstrap => return,
        Owner::Elsewhere => {
            let kind = FreeErrorKind::Foreign;
            return report(Misuse::BadFree(FreeError { addr, kind }));
        }
    };
    #[cfg(feature = "debug")]
    // SAFETY: the registry said `user` is in one of our arenas; `tag` is its pool's.
    let block = match unsafe { crate::debug::on_free(user, tag) } {
        Ok(block) => block,
        Err(misuse) => return report(misuse),
    };
    #[cfg(not(feature = "debug"))]
    let block = user;
    let class = (tag as usize).checked_sub(1).and_then(Class::new);
    if let (Some(layout_class), Some(block_class)) = (expected, class) {
        if layout_class != block_class {
            // The block still goes back to its own class: no list is corrupted.
            report(Misuse::LayoutMismatch {
                addr,
                layout_class,
                block_class,
            });
        }
    }
    #[cfg(any(feature = "valgrind", feature = "asan"))]
    if let Some(class) = class {
        // SAFETY: a live block of `class` the program gave up; KEEP is below the smallest block.
        unsafe { poolmalloc_core::tools::mark_freed(block, class.block_size(), KEEP) };
    }
    // SAFETY: the block is ours (registry), `tag` is its pool's, and the program gave it up; a
    // pool serving no class makes `free_slow` validate and report.
    unsafe {
        if !raw::try_free_fast(tag, block) {
            raw::free_slow(tag, block);
        }
    }
}

// SAFETY: as for the fast path's impl: blocks come from pools of a class big enough for the
// request plus debug mode's header and pads, aligned (debug's prefix keeps the alignment);
// everything else from the system allocator. Nothing here unwinds.
unsafe impl GlobalAlloc for PoolMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_for(layout.size(), layout.align()) {
            Some(class) => alloc_block(class, layout.size()),
            None => raw::core().large_alloc(layout),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match class_for(layout.size(), layout.align()) {
            // SAFETY: the caller gives the block up.
            Some(class) => unsafe { free_block(ptr, Some(class)) },
            // SAFETY: large layouts came from the large path.
            None => unsafe { raw::core().large_dealloc(ptr, layout) },
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_for(layout.size(), layout.align()).is_none() {
            return raw::core().large_alloc_zeroed(layout);
        }
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: the block holds at least `layout.size()` bytes for the caller.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    /// Always moves between small blocks: debug mode's size and pads belong to the old block.
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let small = |size| class_for(size, layout.align()).is_some();
        if !small(layout.size()) && !small(new_size) {
            // SAFETY: both sizes are on the large path; the caller keeps realloc's contract.
            return unsafe { raw::core().large_realloc(ptr, layout, new_size) };
        }
        // SAFETY: forwarded contract.
        unsafe { crate::resize::move_block(self, ptr, layout, new_size) }
    }
}
