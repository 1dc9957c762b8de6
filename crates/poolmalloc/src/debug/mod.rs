//! Debug mode (feature `debug`), after CPython's `PYTHONMALLOC=debug` and mimalloc's `MI_DEBUG`.
//!
//! Every block the program gets, small or large, from the global allocator, a `Heap` or the C
//! library (`POOLMALLOC_DEBUG=1`), is laid out the same way:
//! ```text
//! | requested size | state | 0xFD × DEBUG_PAD | caller's bytes (0xCD when fresh) | 0xFD … |
//!                                              ^ the pointer the caller gets
//! ```
//! On free the pointer is checked before anything is written; a fault is reported through the
//! misuse hook (one line: the address, the class or "large block", what was wrong) and the
//! block is left alone. A good block is filled with 0xDD and marked freed.
//!
//! - `block`: small blocks, in a pool block of a class `DEBUG_EXTRA` bytes bigger than the
//!   request needs. The registry and the pool header tell a foreign or interior pointer; the
//!   state word tells a double free while the block stays free.
//! - `large`: large blocks, from the system allocator with the same header and pads; a table of
//!   the live ones tells a foreign pointer, and a ring of recent frees a double free, without
//!   reading memory the system may have unmapped.
//!
//! Double frees are caught while the block stays free; once its memory has been handed out
//! again the stale pointer looks like the new owner's, as in CPython.

mod block;
pub(crate) mod large;

use core::alloc::Layout;
use core::ptr;

use poolmalloc_core::config::{
    DEBUG_DEAD_BYTE, DEBUG_FORBIDDEN_BYTE, DEBUG_FREED, DEBUG_FRESH_BYTE, DEBUG_HEADER, DEBUG_LIVE,
    DEBUG_PAD, DEBUG_PREFIX,
};
use poolmalloc_core::{
    class_tag, tools, Class, Core, FreeError, FreeErrorKind, Kind, LargeTally, PageSource,
};

use block::{check as check_small, on_alloc, on_free};
pub use block::{class_for, medium_class_for};

use crate::hooks::{class_of_tag, mark_live, Hooks};
use crate::misuse::{DebugBlock, Misuse};

const WORD: usize = core::mem::size_of::<usize>();

/// Writes the header, the pads and the fresh fill around `user`: `size` caller's bytes, then
/// `tail` forbidden ones.
///
/// # Safety
/// `[user - DEBUG_PREFIX, user + size + tail)` is memory the caller owns; `user` is
/// usize-aligned.
unsafe fn lay_out(user: *mut u8, size: usize, tail: usize) -> *mut u8 {
    // SAFETY: every write is inside the range the caller owns; the header words are aligned.
    unsafe {
        let header = user.sub(DEBUG_PREFIX);
        header.cast::<usize>().write(size);
        header.add(WORD).cast::<usize>().write(DEBUG_LIVE);
        ptr::write_bytes(header.add(DEBUG_HEADER), DEBUG_FORBIDDEN_BYTE, DEBUG_PAD);
        ptr::write_bytes(user, DEBUG_FRESH_BYTE, size);
        ptr::write_bytes(user.add(size), DEBUG_FORBIDDEN_BYTE, tail);
    }
    user
}

/// The requested size the header of the block at `user` holds, if its state says live.
///
/// # Safety
/// The `DEBUG_PREFIX` bytes before `user` are mapped, usize-aligned memory of a debug block.
unsafe fn live_size(user: *mut u8, block: DebugBlock) -> Result<usize, Misuse> {
    let addr = user as usize;
    // SAFETY: the header is mapped and aligned (precondition).
    let (size, state) = unsafe {
        let header = user.sub(DEBUG_PREFIX);
        (
            header.cast::<usize>().read(),
            header.add(WORD).cast::<usize>().read(),
        )
    };
    match (state, block) {
        (DEBUG_LIVE, _) => Ok(size),
        (DEBUG_FREED, DebugBlock::Class(class)) => Err(Misuse::BadFree(FreeError {
            addr,
            kind: FreeErrorKind::DoubleFree { class },
        })),
        _ => Err(Misuse::HeaderOverwritten { addr, block }),
    }
}

/// Checks the forbidden bytes around `size` caller's bytes at `user`, `tail` of them after.
///
/// # Safety
/// `[user - DEBUG_PREFIX, user + size + tail)` is mapped memory of a debug block.
unsafe fn check_pads(
    user: *mut u8,
    block: DebugBlock,
    size: usize,
    tail: usize,
) -> Result<(), Misuse> {
    let before = -(DEBUG_PAD as isize)..0;
    let after = size as isize..(size + tail) as isize;
    for offset in before.chain(after) {
        // SAFETY: every offset is inside the range of the precondition.
        let byte = unsafe { user.offset(offset).read() };
        if byte != DEBUG_FORBIDDEN_BYTE {
            return Err(Misuse::PadOverwritten {
                addr: user as usize,
                block,
                size,
                offset,
                byte,
            });
        }
    }
    Ok(())
}

/// Fills a checked block with 0xDD from its front pad to `end` bytes past `user`, and marks
/// it freed.
///
/// # Safety
/// `[user - DEBUG_PREFIX, user + end)` is a debug block the program gave up, checked.
unsafe fn kill(user: *mut u8, end: usize) {
    // SAFETY: inside the block (precondition); the state word is aligned.
    unsafe {
        let header = user.sub(DEBUG_PREFIX);
        ptr::write_bytes(header.add(DEBUG_HEADER), DEBUG_DEAD_BYTE, DEBUG_PAD + end);
        header.add(WORD).cast::<usize>().write(DEBUG_FREED);
    }
}

/// Debug mode's hooks: every block laid out and checked, the tools told as in the plain build.
pub(crate) struct Debug;

impl Hooks for Debug {
    const CHECKS_EVERY_FREE: bool = true;
    // The size and pads belong to the old block: a resize always moves.
    const RESIZES_IN_PLACE: bool = false;
    const CHECKS_LINKS: bool = true;

    #[inline]
    fn class_for(size: usize, align: usize) -> Option<Class> {
        class_for(size, align)
    }

    #[inline]
    fn medium_class_for(size: usize, align: usize) -> Option<Class> {
        medium_class_for(size, align)
    }

    unsafe fn on_alloc(block: *mut u8, class: Class, size: usize) -> *mut u8 {
        mark_live(block, class);
        // SAFETY: a block of `class == class_for(size, _)` (precondition), at least usize-aligned
        // as every class is.
        unsafe { on_alloc(block, class, size) }
    }

    unsafe fn on_free(user: *mut u8, kind: Kind) -> Result<*mut u8, Misuse> {
        // SAFETY: `user` is in one of our arenas of `kind` (precondition), so its pool header is
        // mapped.
        let tag = unsafe { class_tag(user, kind) };
        // SAFETY: `user` is in one of our arenas and `tag` its pool's.
        let block = unsafe { on_free(user, tag) }?;
        if let Some(class) = class_of_tag(tag) {
            // SAFETY: a live block of `class` the program gave up, just checked; the debug
            // header stays readable, for the next free's double-free check.
            unsafe { tools::mark_freed(block, class.block_size(), DEBUG_HEADER) };
        }
        Ok(block)
    }

    unsafe fn pool_size(user: *mut u8, tag: u8) -> Result<usize, Misuse> {
        // SAFETY: `user` is in one of our arenas and `tag` its pool's (precondition).
        unsafe { check_small(user, tag) }.map(|(_, _, size)| size)
    }

    unsafe fn bootstrap_size(user: *mut u8) -> Result<usize, Misuse> {
        // SAFETY: a bootstrap block laid out by `on_alloc` (precondition): its header is the
        // DEBUG_PREFIX bytes before `user`.
        unsafe { live_size(user, DebugBlock::Large) }
    }

    fn large_alloc<S: PageSource>(
        core: &Core<S>,
        tally: &LargeTally,
        layout: Layout,
        zeroed: bool,
    ) -> *mut u8 {
        let p = large::alloc(core, tally, layout);
        if zeroed && !p.is_null() {
            // SAFETY: the block holds `layout.size()` bytes for the caller.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    unsafe fn large_free<S: PageSource>(
        core: &Core<S>,
        tally: &LargeTally,
        user: *mut u8,
        layout: Option<Layout>,
    ) {
        // SAFETY: forwarded contract; the table of large blocks checks before anything changes.
        unsafe { large::free(core, tally, user, layout.map(|l| l.size())) }
    }

    unsafe fn large_size<S: PageSource>(core: &Core<S>, user: *mut u8) -> Result<usize, Misuse> {
        large::usable_size(core, user)
    }
}
