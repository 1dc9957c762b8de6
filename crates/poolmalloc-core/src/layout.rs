//! The shared data types, laid out in memory: the free-block link, the pool header at the start of
//! every pool, and the arena header in every registry slot. `pool`, `arena` and `registry` each
//! work on these; none of them needs another to name them.

use crate::config::{POOL_ADDR_MASK, POOL_OVERHEAD};
use crate::size_class::Class;
use crate::sync::atomic::{AtomicU8, Ordering};

/// The link stored in the first word of a free block. Thread caches use the same link.
#[repr(C)]
pub struct FreeBlock {
    /// The next free block of the chain, or null at its end.
    pub next: *mut FreeBlock,
}

/// Header at the start of every carved pool. Its size is accounted for in
/// `config::POOL_OVERHEAD` (pointers first, then the `u32`s, then the class tag).
#[repr(C)]
pub(crate) struct PoolHeader {
    /// Head of the free-block list (blocks given back); carving comes after it is exhausted.
    pub freeblock: *mut FreeBlock,
    /// Links in `usedpools[class]` (used pools) or, `nextpool` only, in the arena's free-pool list.
    pub nextpool: *mut PoolHeader,
    pub prevpool: *mut PoolHeader,
    pub arena: *mut ArenaHeader,
    /// Blocks handed out of this pool (to the program or to a thread cache).
    pub ref_count: u32,
    /// Offset of the next never-used block; carving is possible while it is `<= maxnextoffset`.
    pub nextoffset: u32,
    pub maxnextoffset: u32,
    /// `class index + 1` while the pool serves a class (used or full); 0 while it is empty or was
    /// never carved, which is what zero-filled arena memory says. Atomic because the ownership
    /// test reads it before taking any lock. One byte, so a thread cache can index a 256-entry
    /// table with it without a bounds check, whatever a misused pointer's "header" holds.
    pub class_tag: AtomicU8,
}

const _: () = assert!(core::mem::size_of::<PoolHeader>() <= POOL_OVERHEAD);

/// The pool holding `addr` (the essay's "Pools": `addr & !(POOL_SIZE - 1)`).
#[inline(always)]
pub(crate) fn pool_of(addr: *const u8) -> *mut PoolHeader {
    ((addr as usize) & POOL_ADDR_MASK) as *mut PoolHeader
}

/// The class tag of the pool holding `block`: 0 when the pool serves no class, else the class
/// index + 1. Thread caches index their lists with it directly (their list 0 never has room, so
/// a block of a pool in no use falls to their slow path, which reports it).
///
/// # Safety
/// `block` lies in one of our arenas (in a small-path block, or in a bootstrap region laid out
/// like pools), so its pool header is mapped.
#[inline(always)]
pub unsafe fn class_tag(block: *const u8) -> u8 {
    // SAFETY: the header is mapped (precondition); the tag is atomic, so reading it without the
    // pool's lock (P1) is no data race.
    unsafe { (*pool_of(block)).class_tag.load(Ordering::Relaxed) }
}

impl PoolHeader {
    /// The class the pool serves, or `None` when it is empty or never carved.
    #[inline]
    pub fn class(&self) -> Option<Class> {
        match self.class_tag.load(Ordering::Relaxed) {
            0 => None,
            tag => Class::new(tag as usize - 1),
        }
    }

    #[inline]
    pub fn block_size(&self) -> usize {
        // A pool with blocks out always has a class; callers only ask such pools.
        self.class().map_or(0, Class::block_size)
    }

    /// Blocks carved so far (handed out at least once).
    pub fn carved(&self) -> usize {
        match self.class() {
            Some(c) => (self.nextoffset as usize - POOL_OVERHEAD) / c.block_size(),
            None => 0,
        }
    }

    /// True while a block can be taken (free list or carving room).
    #[inline]
    pub fn has_free(&self) -> bool {
        !self.freeblock.is_null() || self.nextoffset <= self.maxnextoffset
    }

    /// True when `addr` is the start of a block this pool has carved.
    pub fn is_block_start(&self, addr: usize) -> bool {
        let base = self as *const Self as usize + POOL_OVERHEAD;
        let end = self as *const Self as usize + self.nextoffset as usize;
        let size = self.block_size();
        size != 0 && addr >= base && addr < end && (addr - base) % size == 0
    }
}

/// An arena's header. It lives in the arena's registry slot, not in the arena; zeroed memory is
/// a valid (unmapped) header.
pub(crate) struct ArenaHeader {
    /// Base address of the arena; 0 while the slot holds no arena.
    pub address: usize,
    /// Next never-carved pool: pools are carved from the front, lazily.
    pub pool_address: usize,
    /// Empty pools, carved or not.
    pub nfreepools: usize,
    pub ntotalpools: usize,
    /// Carved pools that are empty (linked through `PoolHeader::nextpool`).
    pub freepools: *mut PoolHeader,
    /// Links in `usable`.
    pub nextarena: *mut ArenaHeader,
    pub prevarena: *mut ArenaHeader,
    /// Links in the list of all this core's arenas (for walks and for dropping the core).
    pub next_all: *mut ArenaHeader,
    pub prev_all: *mut ArenaHeader,
}
