//! Pools: lazy carving and the free-block list, the steps of a pool's state transitions.
//!
//! A pool serves one size class at a time. Its header (`layout::PoolHeader`) holds the count of
//! blocks out, the head of the free-block list, the links of whichever list the pool is on, its
//! arena and class, and the offset of the next never-used block: blocks are carved lazily, never
//! threaded up front, so a fresh pool touches only the pages its blocks reach.
//!
//! Every function here is a step of a state transition that the caller (`central`) performs
//! under the lock that guards the pool (P1 in `lib.rs`): these are `unsafe fn` with that as their
//! precondition.

use core::ptr;

use crate::config::{POOL_OVERHEAD, POOL_SIZE};
use crate::layout::{ArenaHeader, FreeBlock, PoolHeader};
use crate::size_class::Class;
use crate::sync::atomic::{AtomicU8, Ordering};

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
    // SAFETY: the pool's header is mapped and, with no block out, the caller's class and arena
    // locks guard it (P1); the tag is atomic for the lock-free readers.
    unsafe {
        debug_assert_eq!((*pool).ref_count, 0);
        (*pool).class_tag.store(0, Ordering::Relaxed);
    }
}
