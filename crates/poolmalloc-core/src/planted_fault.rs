//! A known bug, compiled in only with the `planted-fault` feature and switched on at run time by
//! one loom model, to show that the models catch a broken lock protocol: a block going back to a
//! full pool republishes the pool on `usedpools` and drops the class lock *before* the block is
//! on the pool's free list. In the gap another thread finds a pool on `usedpools` with nothing
//! free (P3 broken) and carves past its end. `Core::give_batch` calls it while `ON` is set.

use crate::classes::ClassPools;
use crate::layout::{pool_of, FreeBlock};
use crate::pool;
use crate::sync::unmodelled::AtomicBool;
use crate::sync::{Mutex, MutexGuard};

/// Switches the bug on for this process. std's atomic even under loom: the test sets it before
/// the model runs (`sync::unmodelled`).
pub static ON: AtomicBool = AtomicBool::new(false);

/// Gives `block` back the broken way when its pool is full with other blocks out; otherwise
/// gives nothing back and returns `false`, and the caller gives the block back correctly. The
/// guard comes back re-taken from `lock`.
///
/// # Safety
/// `cls` guards `lock`, the class lock of a pool serving that class that holds `block`, a block
/// that is out (what `Core::give_locked` asks).
pub(crate) unsafe fn give_racily<'a>(
    lock: &'a Mutex<ClassPools>,
    mut cls: MutexGuard<'a, ClassPools>,
    block: *mut FreeBlock,
) -> (MutexGuard<'a, ClassPools>, bool) {
    let pool = pool_of(block.cast());
    // The bug is that the lock is dropped before `put_block`, which breaks P3 for other threads,
    // not the pointers used here.
    // SAFETY: the block's pool serves `cls`'s class (precondition), read under its lock (P1).
    unsafe {
        if !(*pool).has_free() && (*pool).ref_count > 1 {
            cls.full -= 1;
            cls.push_front(pool);
            drop(cls);
            cls = lock.lock();
            pool::put_block(pool, block);
            cls.blocks_out -= 1;
            return (cls, true);
        }
    }
    (cls, false)
}
