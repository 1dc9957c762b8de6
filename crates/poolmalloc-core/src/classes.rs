//! A class lock's state: the class's `usedpools` list and its counters, and the list steps of
//! its pool transitions (a pool taken in from its owner, linked, unlinked). `central` and `fork`
//! perform the transitions.

use core::ptr;

use crate::layout::PoolHeader;

/// A class lock's state: the class's used pools and its counters.
pub(crate) struct ClassPools {
    /// Head of `usedpools[class]`: pools with blocks out and blocks free, allocation looks here.
    pub usedpools: *mut PoolHeader,
    /// Pools serving the class, used or full.
    pub pools: usize,
    /// Of those, full ones (on no list).
    pub full: usize,
    /// Blocks out of this class's pools (to the program or to thread caches).
    pub blocks_out: usize,
}

// SAFETY: the pointers lead to pool headers this class owns (P1); the state is only reached
// through its mutex.
unsafe impl Send for ClassPools {}

impl ClassPools {
    pub const fn new() -> ClassPools {
        ClassPools {
            usedpools: ptr::null_mut(),
            pools: 0,
            full: 0,
            blocks_out: 0,
        }
    }

    /// Puts a pool the core has just taken from its owner, with `out` blocks out, on the
    /// class's books: on `usedpools` if it has a free block, else counted full (O3).
    ///
    /// # Safety
    /// `pool` serves this class, is core-held with `out` (> 0) blocks out, and is on no list.
    pub unsafe fn take_in(&mut self, pool: *mut PoolHeader, out: usize) {
        self.pools += 1;
        self.blocks_out += out;
        // SAFETY: the pool is core-held, of this class, on no list (precondition).
        unsafe {
            if (*pool).has_free() {
                self.push_front(pool);
            } else {
                self.full += 1;
            }
        }
    }

    /// Links `pool` at the front of `usedpools` (empty → used, full → used).
    ///
    /// # Safety
    /// `pool` serves this class and is on no list.
    #[inline]
    pub unsafe fn push_front(&mut self, pool: *mut PoolHeader) {
        // SAFETY: the pool and the current head serve this class, whose lock we hold (`&mut
        // self` is reached only through it), so their headers are ours (P1).
        unsafe {
            (*pool).prevpool = ptr::null_mut();
            (*pool).nextpool = self.usedpools;
            if !self.usedpools.is_null() {
                (*self.usedpools).prevpool = pool;
            }
        }
        self.usedpools = pool;
    }

    /// Unlinks `pool` from `usedpools` (used → full, used → empty).
    ///
    /// # Safety
    /// `pool` is on this class's `usedpools`.
    #[inline]
    pub unsafe fn unlink(&mut self, pool: *mut PoolHeader) {
        // SAFETY: the pool and its neighbours are on this class's list (precondition, P3), whose
        // lock we hold, so their headers are ours (P1).
        unsafe {
            let p = &mut *pool;
            if p.prevpool.is_null() {
                self.usedpools = p.nextpool;
            } else {
                (*p.prevpool).nextpool = p.nextpool;
            }
            if !p.nextpool.is_null() {
                (*p.nextpool).prevpool = p.prevpool;
            }
            p.nextpool = ptr::null_mut();
            p.prevpool = ptr::null_mut();
        }
    }
}
