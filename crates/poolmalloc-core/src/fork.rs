//! Fork handling: `pthread_atfork`'s handlers take every lock of a core before `fork` and put them
//! back after it, so that no lock is held in the child by a thread that does not exist there.
//! Between the two the forking thread is in a *fork window* (`sync::set_fork_window`), and its own
//! requests pass through the locks it holds. Normal builds only (`sync::unless_loom!`): no model
//! forks.

use crate::central::Core;
use crate::layout::{PoolHeader, FILED_ID, NOTIFYING};
use crate::os::PageSource;
use crate::pool::{self, owner_notices, Notices};
use crate::sync::atomic::Ordering;

impl<S: PageSource> Core<S> {
    /// Takes every lock in the documented order and keeps them: `pthread_atfork`'s prepare
    /// handler, so that no lock is held by a thread that will not exist in the child.
    pub fn lock_for_fork(&self) {
        // No purge pass is half done (claims out, system calls running) at the fork.
        self.passes.lock_for_fork();
        for lock in self.classes.iter() {
            lock.lock_for_fork();
        }
        self.arenas.lock_for_fork();
    }

    /// Releases what `lock_for_fork` took, in the parent after `fork`.
    ///
    /// # Safety
    /// `lock_for_fork` was called on this core by this thread, nothing has released the locks
    /// since, and this thread's fork window is closed.
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: every lock is held by this thread through `lock_for_fork` and the window is
        // closed (precondition), so nothing else will unlock it.
        unsafe {
            self.arenas.unlock_after_fork();
            for lock in self.classes.iter().rev() {
                lock.unlock_after_fork();
            }
            self.passes.unlock_after_fork();
        }
    }

    /// In the child after `fork`: every lock back to unlocked without waking anyone. A lock the
    /// parent's other threads were waiting on still says so, and waking a waiter could hand it
    /// to one of them — a thread the child does not have — leaving it locked for good (the fork
    /// test hung that way about one run in three, with parking_lot's locks).
    ///
    /// # Safety
    /// `lock_for_fork` was called on this core by the thread that forked and nothing has released
    /// the locks since; this runs in the child, where that thread is the only one.
    pub unsafe fn reset_locks_in_child(&self) {
        // SAFETY: the child has this one thread, which holds every lock through `lock_for_fork`
        // (precondition).
        unsafe {
            self.arenas.reset_in_child();
            for lock in self.classes.iter() {
                lock.reset_in_child();
            }
            self.passes.reset_in_child();
        }
    }
}

impl<S: PageSource> Core<S> {
    /// In the child after `fork`: the pools that the parent's other threads owned — threads the
    /// child does not have — go to the core (O3), or to their arenas when empty, so that frees
    /// into them are not pushed onto chains no thread will take. The blocks those threads held
    /// on their allocation lists stay out (their lists are lost with them). `keep` is the id of
    /// the forking thread's cache, whose pools stay its own.
    ///
    /// # Safety
    /// Runs in the child, after `reset_locks_in_child`, where this is the only thread.
    pub unsafe fn disown_in_child(&self, keep: usize) {
        let mut locks = self.lock_all();
        let mut arena = locks.arenas.all_head();
        while !arena.is_null() {
            // SAFETY: `all` links headers of this core's mapped arenas (A1); we hold every lock
            // and no other thread exists (precondition).
            let (base, carved, pool_size, next) = unsafe {
                let a = &*arena;
                (a.address, a.carved(), a.kind.pool_size(), a.next_all)
            };
            for i in 0..carved {
                let pool = (base + i * pool_size) as *mut PoolHeader;
                // SAFETY: a carved pool's header is initialised; with every lock held and no
                // other thread, every pool is ours to move (P1, O1).
                unsafe {
                    let owner = (*pool).owner.load(Ordering::Relaxed) & !FILED_ID;
                    if owner != 0 {
                        settle_notice_in_child(pool, owner == keep);
                    }
                    if owner == 0 || owner == keep {
                        continue;
                    }
                    let Some(class) = (*pool).class() else {
                        continue;
                    };
                    let out = pool::hand_to_core(pool);
                    match out {
                        0 => {
                            pool::mark_empty(pool);
                            // Tag 0: the gone thread's allocation list held some of its free
                            // blocks, so its free list is not whole: not to be reused as it is.
                            locks.arenas.give_pool(pool, &self.source, 0);
                            // The arena went back to the OS (its header is zeroed): no pool
                            // of it is left to look at.
                            if (*arena).address == 0 {
                                break;
                            }
                        }
                        _ => {
                            let cls = locks.classes[class.index()]
                                .as_deref_mut()
                                .expect("all class locks are held");
                            cls.take_in(pool, out);
                        }
                    }
                }
            }
            arena = next;
        }
    }
}

/// In a forked child: a notice the parent's gone thread was sending into `pool` (`NOTIFYING`)
/// is settled, so that nobody waits for it: the bit is cleared, and if the pool is `kept` by
/// the forking thread's cache, filed, and not on that cache's notices, it is put there (its
/// chain holds the sender's block).
///
/// # Safety
/// Runs in the child, where the calling thread is the only one; `pool` is owned, and `kept`
/// says whether by the calling thread's cache.
unsafe fn settle_notice_in_child(pool: *mut PoolHeader, kept: bool) {
    // SAFETY: owned, and no other thread exists (precondition); the owner's id is its notices'.
    unsafe {
        let remote = &(*pool).remote;
        let word = remote.load(Ordering::Relaxed);
        if word & NOTIFYING == 0 {
            return;
        }
        remote.store(word & !NOTIFYING, Ordering::Relaxed);
        let notices = owner_notices((*pool).owner.load(Ordering::Relaxed));
        if kept && (*pool).is_filed() && !notices_hold(notices, pool) {
            notices.push(pool);
        }
    }
}

/// True when `pool` is among `notices` waiting (a forked child's check, with no other thread).
///
/// # Safety
/// `notices` are the calling thread's cache's, and it gave up none of their pools since it
/// last took them (`Notices::take`).
unsafe fn notices_hold(notices: &Notices, pool: *mut PoolHeader) -> bool {
    let mut p = notices.head.load(Ordering::Acquire) as *mut PoolHeader;
    while !p.is_null() {
        if p == pool {
            return true;
        }
        // SAFETY: a pool on our notices is ours (precondition), its header mapped.
        p = unsafe { (*p).next_notice.load(Ordering::Relaxed) } as *mut PoolHeader;
    }
    false
}
