//! Pools: the header at the start of each pool, lazy carving, the free-block list.
//!
//! A pool serves one size class at a time. Its header (below) holds the count of blocks out, the
//! head of the free-block list, the links of whichever list the pool is on, its arena and class,
//! and the offset of the next never-used block: blocks are carved lazily, never threaded up front,
//! so a fresh pool touches only the pages its blocks reach.
//!
//! Every function here is a step of a state transition that the caller (`central`) performs
//! under the lock that guards the pool (P1 in `lib.rs`): these are `unsafe fn` with that as their
//! precondition.

use core::ptr;
use std::sync::atomic::{AtomicU8, Ordering};

use crate::arena::ArenaHeader;
use crate::config::{POOL_ADDR_MASK, POOL_OVERHEAD, POOL_SIZE};
use crate::size_class::Class;

/// The link stored in the first word of a free block. Thread caches use the same link.
#[repr(C)]
pub struct FreeBlock {
    pub next: *mut FreeBlock,
}

/// Header at the start of every carved pool.
#[repr(C)]
pub(crate) struct PoolHeader {
    /// Blocks handed out of this pool (to the program or to a thread cache).
    pub ref_count: u32,
    /// `class index + 1` while the pool serves a class (used or full); 0 while it is empty or was
    /// never carved, which is what zero-filled arena memory says. Atomic because the ownership
    /// test reads it before taking any lock. One byte, so a thread cache can index a 256-entry
    /// table with it without a bounds check, whatever a misused pointer's "header" holds.
    pub class_tag: AtomicU8,
    _pad: [u8; 3],
    /// Head of the free-block list (blocks given back); carving comes after it is exhausted.
    pub freeblock: *mut FreeBlock,
    /// Links in `usedpools[class]` (used pools) or, `nextpool` only, in the arena's free-pool list.
    pub nextpool: *mut PoolHeader,
    pub prevpool: *mut PoolHeader,
    pub arena: *mut ArenaHeader,
    /// Offset of the next never-used block; carving is possible while it is `<= maxnextoffset`.
    pub nextoffset: u32,
    pub maxnextoffset: u32,
}

const _: () = assert!(core::mem::size_of::<PoolHeader>() <= POOL_OVERHEAD);

/// The pool holding `addr` (DESIGN §3: `addr & !(POOL_SIZE - 1)`).
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
    // SAFETY: the header is mapped (precondition); the tag is atomic, so no lock is needed.
    unsafe { (*pool_of(block)).class_tag.load(Ordering::Relaxed) }
}

impl PoolHeader {
    /// The class the pool serves, or `None` when it is empty or never carved.
    pub fn class(&self) -> Option<Class> {
        match self.class_tag.load(Ordering::Relaxed) {
            0 => None,
            tag => Class::new(tag as usize - 1),
        }
    }

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

/// Makes `pool` serve `class` (empty → used: the caller then links it into `usedpools`).
///
/// # Safety
/// `pool` is a POOL_SIZE-aligned pool inside a mapped arena, empty (no block out), and the caller
/// holds the class lock of `class` and the arena lock.
pub(crate) unsafe fn init(pool: *mut PoolHeader, class: Class, arena: *mut ArenaHeader) {
    let size = class.block_size();
    // A pool that served another class may hold freed blocks the tools see as no-access; the
    // new class's links fall anywhere in it.
    #[cfg(any(feature = "valgrind", feature = "asan"))]
    // SAFETY: the pool's block area is ours and empty (precondition).
    unsafe {
        crate::tools::mark_reusable(
            pool.cast::<u8>().add(POOL_OVERHEAD),
            POOL_SIZE - POOL_OVERHEAD,
        )
    };
    // SAFETY: the pool is ours (precondition) and its header is plain memory under our locks.
    unsafe {
        ptr::addr_of_mut!((*pool).ref_count).write(0);
        ptr::addr_of_mut!((*pool).class_tag).write(AtomicU8::new(class.index() as u8 + 1));
        ptr::addr_of_mut!((*pool).freeblock).write(ptr::null_mut());
        ptr::addr_of_mut!((*pool).nextpool).write(ptr::null_mut());
        ptr::addr_of_mut!((*pool).prevpool).write(ptr::null_mut());
        ptr::addr_of_mut!((*pool).arena).write(arena);
        ptr::addr_of_mut!((*pool).nextoffset).write(POOL_OVERHEAD as u32);
        ptr::addr_of_mut!((*pool).maxnextoffset).write((POOL_SIZE - size) as u32);
    }
}

/// Takes one block: the head of the free list, else the next never-used block.
///
/// # Safety
/// The caller holds the pool's class lock and `(*pool).has_free()`.
#[inline]
pub(crate) unsafe fn take_block(pool: *mut PoolHeader) -> *mut FreeBlock {
    // SAFETY: the header is ours under the class lock (precondition); a free-list head is a block
    // of this pool whose first word is its link (P2).
    unsafe {
        let p = &mut *pool;
        p.ref_count += 1;
        let head = p.freeblock;
        if !head.is_null() {
            p.freeblock = (*head).next;
            return head;
        }
        debug_assert!(
            p.nextoffset <= p.maxnextoffset,
            "P3: a used pool has a free block"
        );
        let block = (pool as *mut u8).add(p.nextoffset as usize);
        p.nextoffset += p.block_size() as u32;
        block.cast()
    }
}

/// Gives `block` back to the pool's free list.
///
/// # Safety
/// The caller holds the pool's class lock; `block` is a carved block of `pool` that is out.
#[inline]
pub(crate) unsafe fn put_block(pool: *mut PoolHeader, block: *mut FreeBlock) {
    // SAFETY: the header is ours under the class lock; the block is ours to link (precondition).
    unsafe {
        let p = &mut *pool;
        debug_assert!(p.ref_count > 0);
        (*block).next = p.freeblock;
        p.freeblock = block;
        p.ref_count -= 1;
    }
}

/// Marks the pool empty (used → empty: the caller gives it to its arena).
///
/// # Safety
/// The caller holds the pool's class lock and the arena lock, and no block of the pool is out.
pub(crate) unsafe fn mark_empty(pool: *mut PoolHeader) {
    // SAFETY: as the precondition says.
    unsafe {
        debug_assert_eq!((*pool).ref_count, 0);
        (*pool).class_tag.store(0, Ordering::Relaxed);
    }
}
