//! Fork handling: `pthread_atfork`'s handlers take every lock of a core before `fork` and put them
//! back after it, so that no lock is held in the child by a thread that does not exist there.
//! Between the two the forking thread is in a *fork window* (`sync::set_fork_window`), and its own
//! requests pass through the locks it holds. Normal builds only (`sync::unless_loom!`): no model
//! forks.

use crate::central::Core;
use crate::os::PageSource;

impl<S: PageSource> Core<S> {
    /// Takes every lock in the documented order and keeps them: `pthread_atfork`'s prepare
    /// handler, so that no lock is held by a thread that will not exist in the child.
    pub fn lock_for_fork(&self) {
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
        }
    }
}
