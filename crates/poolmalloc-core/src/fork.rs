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
        core::mem::forget(self.lock_all());
    }

    /// Releases what `lock_for_fork` took, in the parent or in the child after `fork`.
    ///
    /// # Safety
    /// `lock_for_fork` was called on this core by this thread (or, in a child, by the thread
    /// that forked) and nothing has released the locks since.
    pub unsafe fn unlock_after_fork(&self) {
        // SAFETY: every lock is held by this thread and its guard forgotten (precondition), so
        // nothing else will unlock it.
        unsafe {
            self.arenas.force_unlock();
            for lock in self.classes.iter().rev() {
                lock.force_unlock();
            }
        }
    }

    /// In the child after `fork`: every lock back to unlocked without waking anyone. A lock the
    /// parent's other threads were parked on still says so, and `force_unlock` could hand it to
    /// one of them — a thread the child does not have — leaving it locked for good (the fork
    /// test hung that way about one run in three).
    ///
    /// # Safety
    /// `lock_for_fork` was called on this core by the thread that forked and nothing has released
    /// the locks since; this runs in the child, where that thread is the only one.
    pub unsafe fn reset_locks_in_child(&self) {
        // SAFETY: the child has this one thread, which holds every lock with its guard forgotten
        // (precondition).
        unsafe {
            self.arenas.reset_in_child();
            for lock in self.classes.iter() {
                lock.reset_in_child();
            }
        }
    }
}
