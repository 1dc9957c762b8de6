//! Debug mode (feature `debug`), after CPython's `PYTHONMALLOC=debug` and mimalloc's `MI_DEBUG`.
//!
//! A debug block, in a pool block of a class `DEBUG_EXTRA` bytes bigger than the request needs:
//! ```text
//! | requested size | state | 0xFD × DEBUG_PAD | caller's bytes (0xCD when fresh) | 0xFD … to the end |
//!   word 0 (the free-list link once freed)                 ^ the pointer the caller gets
//! ```
//! On free the pointer is checked before anything is written: it must be in one of our arenas
//! (else foreign), in a pool that serves a class, `DEBUG_PREFIX` bytes past a block start; the
//! state must say live (a second free finds it saying freed); the header's size must fit; every
//! forbidden byte must be intact. Then everything but the header is filled with 0xDD. A fault is
//! reported through the misuse hook and the block is left alone.
//!
//! Double frees are caught while the block stays free (in a cache or a pool); once it has been
//! handed out again the stale pointer looks like the new owner's, as in CPython.
//!
//! The global allocator and the C library (`POOLMALLOC_DEBUG=1`) run in this mode; `Heap`
//! instances do not.

use core::ptr;

use poolmalloc_core::config::{
    DEBUG_DEAD_BYTE, DEBUG_EXTRA, DEBUG_FORBIDDEN_BYTE, DEBUG_FREED, DEBUG_FRESH_BYTE,
    DEBUG_HEADER, DEBUG_LIVE, DEBUG_PAD, DEBUG_PREFIX, POOL_ADDR_MASK, POOL_OVERHEAD, POOL_SIZE,
};
use poolmalloc_core::{class_of, Class, FreeError, FreeErrorKind};

use crate::misuse::Misuse;

const WORD: usize = core::mem::size_of::<usize>();

/// The class whose blocks hold a debug block of `size` bytes aligned to `align`; `None` sends
/// the request to the large path, which debug mode leaves to the system.
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<Class> {
    class_of(size.checked_add(DEBUG_EXTRA)?, align)
}

/// Lays a debug block out in `block` and returns the pointer for the caller.
///
/// # Safety
/// `block` is a block of at least `class.block_size()` bytes that the caller owns, aligned for
/// a usize, and `class == class_for(size, _)`.
pub(crate) unsafe fn on_alloc(block: *mut u8, class: Class, size: usize) -> *mut u8 {
    let end = class.block_size();
    debug_assert!(DEBUG_EXTRA + size <= end);
    // SAFETY: every write is inside the block (`DEBUG_PREFIX + size + DEBUG_PAD <= end`), which
    // the caller owns; the header words are aligned (precondition).
    unsafe {
        block.cast::<usize>().write(size);
        block.add(WORD).cast::<usize>().write(DEBUG_LIVE);
        ptr::write_bytes(block.add(DEBUG_HEADER), DEBUG_FORBIDDEN_BYTE, DEBUG_PAD);
        ptr::write_bytes(block.add(DEBUG_PREFIX), DEBUG_FRESH_BYTE, size);
        let tail = DEBUG_PREFIX + size;
        ptr::write_bytes(block.add(tail), DEBUG_FORBIDDEN_BYTE, end - tail);
        block.add(DEBUG_PREFIX)
    }
}

/// Checks a pointer the program hands back without changing anything: its block's start, class
/// and requested size, or the misuse.
///
/// # Safety
/// `user` lies in one of our arenas (the registry said so), so its pool header is mapped; `tag`
/// is that pool's class tag.
unsafe fn check(user: *mut u8, tag: u8) -> Result<(*mut u8, Class, usize), Misuse> {
    let addr = user as usize;
    let bad = |kind| Misuse::BadFree(FreeError { addr, kind });
    let class = (tag as usize)
        .checked_sub(1)
        .and_then(Class::new)
        .ok_or(bad(FreeErrorKind::PoolNotInUse))?;
    let size_of_block = class.block_size();
    let pool = addr & POOL_ADDR_MASK;
    let first = pool + POOL_OVERHEAD;
    let start = addr.wrapping_sub(DEBUG_PREFIX);
    if addr < first + DEBUG_PREFIX
        || (start - first) % size_of_block != 0
        || start + size_of_block > pool + POOL_SIZE
    {
        return Err(bad(FreeErrorKind::NotBlockStart { class }));
    }
    let block = user.wrapping_sub(DEBUG_PREFIX);
    // SAFETY: `block` is a block start of a pool serving `class` (checked above), so its
    // `size_of_block` bytes are mapped pool memory; the header words are usize-aligned.
    unsafe {
        match block.add(WORD).cast::<usize>().read() {
            DEBUG_LIVE => {}
            DEBUG_FREED => return Err(bad(FreeErrorKind::DoubleFree { class })),
            _ => return Err(Misuse::HeaderOverwritten { addr, class }),
        }
        let size = block.cast::<usize>().read();
        if size > size_of_block - DEBUG_EXTRA {
            return Err(Misuse::HeaderOverwritten { addr, class });
        }
        let pads = (DEBUG_HEADER..DEBUG_PREFIX).chain(DEBUG_PREFIX + size..size_of_block);
        for at in pads {
            let byte = block.add(at).read();
            if byte != DEBUG_FORBIDDEN_BYTE {
                return Err(Misuse::PadOverwritten {
                    addr,
                    class,
                    size,
                    offset: at as isize - DEBUG_PREFIX as isize,
                    byte,
                });
            }
        }
        Ok((block, class, size))
    }
}

/// Checks a pointer being freed, and on success fills the block with 0xDD, marks it freed and
/// returns the block's start.
///
/// # Safety
/// As for `check`; on success the block is the program's no more.
pub(crate) unsafe fn on_free(user: *mut u8, tag: u8) -> Result<*mut u8, Misuse> {
    // SAFETY: forwarded precondition.
    let (block, class, _) = unsafe { check(user, tag) }?;
    // SAFETY: `check` found a live block of `class` at `block`.
    unsafe {
        ptr::write_bytes(
            block.add(DEBUG_HEADER),
            DEBUG_DEAD_BYTE,
            class.block_size() - DEBUG_HEADER,
        );
        block.add(WORD).cast::<usize>().write(DEBUG_FREED);
    }
    Ok(block)
}

/// For the C library: a debug block of `class` (from `class_for`) for a request of `size`
/// bytes, or null when out of memory.
pub fn alloc(class: Class, size: usize) -> *mut u8 {
    crate::instrumented::alloc_block(class, size)
}

/// For the C library: frees a debug block after checking it; misuse is reported.
///
/// # Safety
/// If `user` is a live block of ours, the program does not use it afterwards.
pub unsafe fn free(user: *mut u8) {
    // SAFETY: forwarded contract.
    unsafe { crate::instrumented::free_block(user, None) }
}

/// For the C library: the usable size of a debug block — what was asked for — after the same
/// checks as a free (misuse is reported, and gives `None`).
///
/// # Safety
/// `user` lies in one of our arenas and `tag` is its pool's class tag (`raw::owner` said so).
pub unsafe fn usable_size(user: *mut u8, tag: u8) -> Option<usize> {
    // SAFETY: forwarded precondition.
    match unsafe { check(user, tag) } {
        Ok((_, _, size)) => Some(size),
        Err(misuse) => {
            crate::misuse::report(misuse);
            None
        }
    }
}
