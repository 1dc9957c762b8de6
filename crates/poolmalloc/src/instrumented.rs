//! The allocator faces with checks, built instead of the fast paths when a feature among
//! `debug`, `valgrind` and `asan` is on (the fast paths in `global.rs` and `heap.rs` are then
//! compiled out, so builds without them keep exactly their instructions). Same caches, same
//! cores: each block is laid out (debug) and marked live (tools) on its way to the program, and
//! checked, filled and marked freed on its way back. The global allocator and every `Heap` go
//! through the same functions here, each through its `Pools`.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr;

use poolmalloc_core::{Class, Core, PageSource};

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

/// What the checked paths need of a face: its core, and its caches' two halves.
pub(crate) trait Pools {
    type Source: PageSource;

    fn core(&self) -> &Core<Self::Source>;

    /// A block of `class` from the calling thread's cache (or the core); null when out of
    /// memory.
    fn take(&self, class: Class) -> *mut u8;

    /// Who owns `ptr`, told without reading memory outside the face's arenas.
    fn owner(&self, ptr: *const u8) -> Owner;

    /// Gives a block back to the calling thread's cache (or the core, which validates).
    ///
    /// # Safety
    /// `owner(block)` said `Pool { tag }` and the program gave the block up.
    unsafe fn give(&self, tag: u8, block: *mut u8);
}

impl Pools for PoolMalloc {
    type Source = poolmalloc_core::OsPages;

    fn core(&self) -> &Core<Self::Source> {
        raw::core()
    }

    fn take(&self, class: Class) -> *mut u8 {
        raw::alloc(class)
    }

    fn owner(&self, ptr: *const u8) -> Owner {
        raw::owner(ptr)
    }

    unsafe fn give(&self, tag: u8, block: *mut u8) {
        // SAFETY: forwarded precondition; a pool serving no class makes `free_slow` validate
        // and report.
        unsafe {
            if !raw::try_free_fast(tag, block) {
                raw::free_slow(tag, block);
            }
        }
    }
}

/// A block of `class` for a request of `size` bytes, laid out and marked; null when out of
/// memory.
pub(crate) fn alloc_block<P: Pools>(p: &P, class: Class, size: usize) -> *mut u8 {
    let block = p.take(class);
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

/// Allocates for `layout`: a checked small block, or the large path (laid out in debug mode).
pub(crate) fn alloc<P: Pools>(p: &P, layout: Layout) -> *mut u8 {
    match class_for(layout.size(), layout.align()) {
        Some(class) => alloc_block(p, class, layout.size()),
        #[cfg(feature = "debug")]
        None => crate::debug::large::alloc(p.core(), layout),
        #[cfg(not(feature = "debug"))]
        None => p.core().large_alloc(layout),
    }
}

/// Frees a pointer the program gives back, after the checks this build makes. `layout` is the
/// caller's (the C library has none). Misuse is reported and the block left alone.
///
/// # Safety
/// If `user` is a live block of `p`, the program does not use it afterwards.
pub(crate) unsafe fn free_block<P: Pools>(p: &P, user: *mut u8, layout: Option<Layout>) {
    let addr = user as usize;
    let tag = match p.owner(user) {
        Owner::Pool { tag } => tag,
        // Bootstrap blocks are never reused.
        Owner::Bootstrap => return,
        #[cfg(feature = "debug")]
        Owner::Elsewhere => {
            let layout_size = layout.map(|l| l.size());
            // SAFETY: forwarded contract; the table of large blocks checks before anything
            // changes.
            return unsafe { crate::debug::large::free(p.core(), user, layout_size) };
        }
        #[cfg(not(feature = "debug"))]
        Owner::Elsewhere => return report(Misuse::foreign(addr)),
    };
    #[cfg(feature = "debug")]
    // SAFETY: the face said `user` is in one of its arenas; `tag` is its pool's.
    let block = match unsafe { crate::debug::on_free(user, tag) } {
        Ok(block) => block,
        Err(misuse) => return report(misuse),
    };
    #[cfg(not(feature = "debug"))]
    let block = user;
    let class = (tag as usize).checked_sub(1).and_then(Class::new);
    let expected = layout.and_then(|l| class_for(l.size(), l.align()));
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
    // SAFETY: the block is ours (the face said so), `tag` is its pool's, the program gave it up.
    unsafe { p.give(tag, block) }
}

/// `GlobalAlloc::dealloc` of a checked face.
///
/// # Safety
/// `ptr` came from `alloc(p, layout)` and is not used afterwards.
pub(crate) unsafe fn dealloc<P: Pools>(p: &P, ptr: *mut u8, layout: Layout) {
    #[cfg(not(feature = "debug"))]
    if class_for(layout.size(), layout.align()).is_none() {
        // SAFETY: large layouts came from the large path.
        return unsafe { p.core().large_dealloc(ptr, layout) };
    }
    // SAFETY: forwarded contract.
    unsafe { free_block(p, ptr, Some(layout)) }
}

/// `GlobalAlloc::alloc_zeroed` of a checked face.
pub(crate) fn alloc_zeroed<P: Pools>(p: &P, layout: Layout) -> *mut u8 {
    #[cfg(not(feature = "debug"))]
    if class_for(layout.size(), layout.align()).is_none() {
        return p.core().large_alloc_zeroed(layout);
    }
    let ptr = alloc(p, layout);
    if !ptr.is_null() {
        // SAFETY: the block holds at least `layout.size()` bytes for the caller.
        unsafe { ptr::write_bytes(ptr, 0, layout.size()) };
    }
    ptr
}

/// `GlobalAlloc::realloc` of a checked face. Debug mode always moves (the size and pads belong
/// to the old block); the tool builds share the plain build's `resize::realloc`.
///
/// # Safety
/// `GlobalAlloc::realloc`'s contract, with `a` the face that gave `ptr`.
pub(crate) unsafe fn realloc<P: Pools + GlobalAlloc>(
    a: &P,
    ptr: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    #[cfg(feature = "debug")]
    // SAFETY: forwarded contract.
    return unsafe { crate::resize::move_block(a, ptr, layout, new_size) };
    #[cfg(not(feature = "debug"))]
    // SAFETY: forwarded contract; `a` serves `a.core()`'s blocks.
    return unsafe { crate::resize::realloc(a, a.core(), ptr, layout, new_size) };
}

// SAFETY: as for the fast path's impl: blocks come from pools of a class big enough for the
// request plus debug mode's header and pads, aligned (debug's prefix keeps the alignment);
// everything else from the system allocator. Nothing here unwinds.
unsafe impl GlobalAlloc for PoolMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        alloc(self, layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { dealloc(self, ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        alloc_zeroed(self, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { realloc(self, ptr, layout, new_size) }
    }
}
