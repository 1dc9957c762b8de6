//! A thread's teardown tied to a pthread key, as mimalloc ties its own: what the C library
//! promises to run, in any order of a thread's end.
//!
//! A `thread_local!` destructor is registered with the C++ thread-exit list the first time the
//! thread-local is touched. glibc runs that list once, *before* the pthread key destructors; a
//! thread whose first allocator call comes from a key destructor (a `free` of another thread's
//! block, say) registers too late, and its teardown never ran — its cache leaked and its dead
//! state stayed on the live list. glibc runs the key destructors again, up to
//! `PTHREAD_DESTRUCTOR_ITERATIONS` rounds, while any destructor sets a key; so a key armed from a
//! key destructor still gets its turn. (A thread whose first allocator call comes in the last
//! round would still be missed; that takes four nested rounds of key destructors that each set a
//! key again.)

use core::ffi::c_void;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A pthread key whose destructor is a thread's teardown, made on first use.
pub(crate) struct ExitKey {
    /// The key + 1; 0 until made.
    key: AtomicUsize,
    teardown: unsafe extern "C" fn(*mut c_void),
}

impl ExitKey {
    /// A key that will run `teardown` with the armed value when a thread exits.
    pub(crate) const fn new(teardown: unsafe extern "C" fn(*mut c_void)) -> ExitKey {
        ExitKey {
            key: AtomicUsize::new(0),
            teardown,
        }
    }

    fn key(&self) -> Option<libc::pthread_key_t> {
        let made = self.key.load(Ordering::Acquire);
        if made != 0 {
            return Some((made - 1) as libc::pthread_key_t);
        }
        let mut key: libc::pthread_key_t = 0;
        // glibc's keys live in a static table: making one allocates nothing.
        // SAFETY: `key` is valid for the write; the destructor lives for the whole process.
        if unsafe { libc::pthread_key_create(&mut key, Some(self.teardown)) } != 0 {
            return None;
        }
        match self
            .key
            .compare_exchange(0, key as usize + 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(key),
            Err(theirs) => {
                // Another thread made the key first: keep one.
                // SAFETY: `key` was made above and never armed.
                unsafe { libc::pthread_key_delete(key) };
                Some((theirs - 1) as libc::pthread_key_t)
            }
        }
    }

    /// Runs the teardown with `value` (non-null) when this thread exits, even if it is already
    /// running its key destructors. False when no key could be made or set.
    pub(crate) fn arm(&self, value: *mut c_void) -> bool {
        debug_assert!(!value.is_null());
        match self.key() {
            // glibc keeps the first 32 keys' values in the thread's descriptor; past them it may
            // `calloc`, which a caller inside the allocator gets from the bootstrap region.
            // SAFETY: a key made by `pthread_key_create`.
            Some(key) => unsafe { libc::pthread_setspecific(key, value) == 0 },
            None => false,
        }
    }
}
