//! Debug mode's small blocks: a debug block fills a pool block of a class `DEBUG_EXTRA` bytes
//! bigger than the request needs, its forbidden bytes running to the pool block's end.
//!
//! On free the pointer must lie in one of our arenas (else foreign — the caller asked the
//! registry), in a pool that serves a class, `DEBUG_PREFIX` bytes past a block start; then the
//! state, the header's size and the pads are checked.

use poolmalloc_core::config::{DEBUG_EXTRA, DEBUG_PREFIX, POOL_OVERHEAD};
use poolmalloc_core::{class_of, medium_class_of, Class, FreeError, FreeErrorKind};

use super::{check_pads, kill, lay_out, live_size};
use crate::misuse::{DebugBlock, Misuse};

/// The class whose blocks hold a debug block of `size` bytes aligned to `align`; `None` sends
/// the request to the large path (`large.rs`).
#[inline]
pub fn class_for(size: usize, align: usize) -> Option<Class> {
    class_of(size.checked_add(DEBUG_EXTRA)?, align)
}

/// The medium class whose blocks hold a debug block that `class_for` sends elsewhere. The
/// caller's bytes start `DEBUG_PREFIX` into the block, so an alignment above that goes to the
/// large path, which lays out any alignment.
#[inline]
pub fn medium_class_for(size: usize, align: usize) -> Option<Class> {
    if align > DEBUG_PREFIX {
        return None;
    }
    medium_class_of(size.checked_add(DEBUG_EXTRA)?, align)
}

/// Lays a debug block out in `block` and returns the pointer for the caller.
///
/// # Safety
/// `block` is a block of at least `class.block_size()` bytes that the caller owns, aligned for
/// a usize, and `class == class_for(size, _)`.
pub(crate) unsafe fn on_alloc(block: *mut u8, class: Class, size: usize) -> *mut u8 {
    debug_assert!(DEBUG_EXTRA + size <= class.block_size());
    let tail = class.block_size() - DEBUG_PREFIX - size;
    // SAFETY: the header, pads and bytes fill the block, which the caller owns; DEBUG_PREFIX
    // keeps the block's alignment.
    unsafe { lay_out(block.add(DEBUG_PREFIX), size, tail) }
}

/// Checks a pointer the program hands back without changing anything: its block's start, class
/// and requested size, or the misuse.
///
/// # Safety
/// `user` lies in one of our arenas (the registry said so), so its pool header is mapped; `tag`
/// is that pool's class tag.
pub(crate) unsafe fn check(user: *mut u8, tag: u8) -> Result<(*mut u8, Class, usize), Misuse> {
    let addr = user as usize;
    let bad = |kind| Misuse::BadFree(FreeError { addr, kind });
    let class = (tag as usize)
        .checked_sub(1)
        .and_then(Class::new)
        .ok_or(bad(FreeErrorKind::PoolNotInUse))?;
    let size_of_block = class.block_size();
    let pool = addr & class.kind().pool_mask();
    let first = pool + POOL_OVERHEAD;
    let start = addr.wrapping_sub(DEBUG_PREFIX);
    if addr < first + DEBUG_PREFIX
        || (start - first) % size_of_block != 0
        || start + size_of_block > pool + class.kind().pool_size()
    {
        return Err(bad(FreeErrorKind::NotBlockStart { class }));
    }
    let block = DebugBlock::Class(class);
    // SAFETY: `start` is a block start of a pool serving `class` (checked above), so the block's
    // `size_of_block` bytes are mapped pool memory, and its header words are usize-aligned.
    unsafe {
        let size = live_size(user, block)?;
        if size > size_of_block - DEBUG_EXTRA {
            return Err(Misuse::HeaderOverwritten { addr, block });
        }
        check_pads(user, block, size, size_of_block - DEBUG_PREFIX - size)?;
        Ok((user.sub(DEBUG_PREFIX), class, size))
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
    unsafe { kill(user, class.block_size() - DEBUG_PREFIX) };
    Ok(block)
}
