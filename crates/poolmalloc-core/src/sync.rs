//! The one place that says which shared-state primitives the core uses: loom's under
//! `cfg(poolmalloc_loom)`, so the loom models explore every interleaving of the lock protocol and
//! of the atomics beside it, and otherwise a futex lock of its own (`forkable`) and `core`'s
//! atomics (tokio's `loom` module, in small). No other module of the crate names `poolmalloc_loom` except `config`, whose loom
//! geometry shrinks pools and arenas.
//!
//! Loom's atomics and mutexes are objects of one model execution: they are made with `new` inside
//! the model, are not `const`, and a zeroed one is not a valid one. Hence:
//! - the pool header's atomics (owner, remote frees, counts, class tag) live in arena memory and
//!   are written there whole (`ptr::write(AtomicU8::new(..))`) when a pool is first carved from
//!   its arena, under the arena lock; afterwards they are only stored to. `config::POOL_OVERHEAD`
//!   is derived from their sizes, which are larger under loom. Under loom a never-carved pool's
//!   header is zeroed memory, not loom atomics: only a bad free reads it, and no model makes one;
//! - the core id counter, a process-wide `static`, is a `loom::lazy_static` under loom
//!   (`model_static!`), made afresh in each execution;
//! - constructors that are `const` in normal builds are plain under loom (`const_fn_unless_loom!`,
//!   `array_of!`).
//!
//! What stays std's under loom is in `unmodelled`, with the reason.

#[cfg(not(poolmalloc_loom))]
pub use self::forkable::{in_fork_window, set_fork_window, Mutex, MutexGuard};

/// The allocator's lock: a futex word, and one door for the thread in a *fork window*.
///
/// - A futex of its own, not parking_lot's: parking_lot parks threads in a process-wide hash
///   table whose bucket locks a thread of the parent may hold when another forks, and a child's
///   first contended lock (or new thread, which grows the table) then waits for ever; it also
///   allocates a thread's parking data, through the allocator, on first contention. A futex word
///   is all the lock's state: a child resets it to unlocked, and waiting allocates nothing.
/// - While `fork` runs, the forking thread holds every lock of the allocator (taken by the
///   `pthread_atfork` prepare handler), and other libraries' fork handlers on that thread —
///   prepare handlers registered before ours run after it, child and parent handlers registered
///   before ours run before them — may allocate. Their requests are served under the locks the
///   thread already holds, as glibc's own malloc serves every handler: a lock taken by the thread
///   in the window is passed through.
#[cfg(not(poolmalloc_loom))]
mod forkable {
    use core::cell::UnsafeCell;
    use core::ops::{Deref, DerefMut};
    use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

    /// The thread in the fork window, by the address of a thread-local of its own; 0 when no
    /// fork is in progress.
    static WINDOW: AtomicUsize = AtomicUsize::new(0);

    thread_local! {
        static ME: u8 = const { 0 };
    }

    fn this_thread() -> usize {
        ME.with(|me| me as *const u8 as usize)
    }

    /// True when this thread is in a fork window: it holds every lock of the allocator.
    #[inline]
    pub fn in_fork_window() -> bool {
        let owner = WINDOW.load(Ordering::Relaxed);
        owner != 0 && owner == this_thread()
    }

    /// Opens this thread's fork window (`true`) or closes it.
    ///
    /// # Safety
    /// Open only while this thread holds, through `lock_for_fork`, every `Mutex` a request to the
    /// allocator it forks with may take; close before any of them is released.
    pub unsafe fn set_fork_window(open: bool) {
        WINDOW.store(if open { this_thread() } else { 0 }, Ordering::Relaxed);
    }

    const UNLOCKED: u32 = 0;
    const LOCKED: u32 = 1;
    /// Locked, and a thread may be waiting: unlocking wakes one.
    const CONTENDED: u32 = 2;

    /// Rounds a contended lock spins, then yields, before it sleeps (parking_lot's schedule:
    /// the core's critical sections are short, and a futex sleep and wake cost two system calls;
    /// sleeping after 100 spins made binary-trees 1.6× slower).
    const SPIN_ROUNDS: u32 = 3;
    const YIELD_ROUNDS: u32 = 7;

    /// A mutex (Drepper's "Futexes Are Tricky", mutex 3) the thread in the fork window passes
    /// through, if it took it with `lock_for_fork`.
    pub struct Mutex<T> {
        state: AtomicU32,
        /// Locked by `lock_for_fork`: the thread in the fork window passes through.
        fork_held: AtomicBool,
        value: UnsafeCell<T>,
    }

    // SAFETY: the value is reached only through a guard, which the lock (or the fork window,
    // whose thread holds the lock) makes exclusive.
    unsafe impl<T: Send> Sync for Mutex<T> {}
    // SAFETY: the mutex owns its value; nothing in it is tied to a thread.
    unsafe impl<T: Send> Send for Mutex<T> {}

    /// A held `Mutex`: locked by this guard, or held by this thread's fork window. Dropping it
    /// releases `release`: the mutex's word, or `PASSED_THROUGH` for a window's guard, which
    /// leaves the mutex locked without a branch on the unlock path.
    pub struct MutexGuard<'a, T> {
        mutex: &'a Mutex<T>,
        release: &'a AtomicU32,
    }

    /// What a fork window's guards release: a word nobody locks or waits on.
    static PASSED_THROUGH: AtomicU32 = AtomicU32::new(UNLOCKED);

    impl<T> Mutex<T> {
        /// An unlocked mutex.
        pub const fn new(value: T) -> Mutex<T> {
            Mutex {
                state: AtomicU32::new(UNLOCKED),
                fork_held: AtomicBool::new(false),
                value: UnsafeCell::new(value),
            }
        }

        /// Locks the mutex, or passes through it in this thread's fork window.
        #[inline]
        pub fn lock(&self) -> MutexGuard<'_, T> {
            let locked = self
                .state
                .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
                || self.lock_slow();
            MutexGuard {
                mutex: self,
                release: if locked { &self.state } else { &PASSED_THROUGH },
            }
        }

        /// The mutex is locked: wait for it — or, when this thread holds it for a fork, pass
        /// through (false). The window is open only while this thread holds its locks through
        /// `lock_for_fork` (`set_fork_window`), so no other thread reaches the value, and this
        /// thread takes each lock at most once per request, as it would outside.
        #[cold]
        #[inline(never)]
        fn lock_slow(&self) -> bool {
            if self.fork_held.load(Ordering::Relaxed) && in_fork_window() {
                return false;
            }
            for round in 0..SPIN_ROUNDS + YIELD_ROUNDS {
                if round < SPIN_ROUNDS {
                    for _ in 0..2 << round {
                        core::hint::spin_loop();
                    }
                } else {
                    // SAFETY: sched_yield has no preconditions.
                    unsafe { libc::sched_yield() };
                }
                if self.state.load(Ordering::Relaxed) == UNLOCKED
                    && self
                        .state
                        .compare_exchange(UNLOCKED, LOCKED, Ordering::Acquire, Ordering::Relaxed)
                        .is_ok()
                {
                    return true;
                }
            }
            // Whoever holds it now will wake one sleeper when it unlocks.
            while self.state.swap(CONTENDED, Ordering::Acquire) != UNLOCKED {
                futex(
                    &self.state,
                    libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG,
                    CONTENDED,
                );
            }
            true
        }

        fn unlock(&self) {
            release(&self.state);
        }

        /// `pthread_atfork` prepare: locks the mutex and keeps it locked, marked as held for
        /// the fork, so that this thread passes through it once its fork window is open.
        pub fn lock_for_fork(&self) {
            core::mem::forget(self.lock());
            self.fork_held.store(true, Ordering::Relaxed);
        }

        /// `pthread_atfork` parent: unlocks what `lock_for_fork` locked.
        ///
        /// # Safety
        /// `lock_for_fork` locked the mutex on this thread, and its window is closed.
        pub unsafe fn unlock_after_fork(&self) {
            self.fork_held.store(false, Ordering::Relaxed);
            self.unlock();
        }

        /// The value, for a walk that holds the lock through `lock_for_fork`.
        pub fn data_ptr(&self) -> *mut T {
            self.value.get()
        }

        /// Back to unlocked (a child after `fork`: nobody there waits on it).
        ///
        /// # Safety
        /// Called in a child after `fork`, where the calling thread is the only one; the lock
        /// is held by it (a forgotten guard) or by a thread of the parent, and nothing will use
        /// that guard.
        pub unsafe fn reset_in_child(&self) {
            self.fork_held.store(false, Ordering::Relaxed);
            self.state.store(UNLOCKED, Ordering::Relaxed);
        }
    }

    /// `futex(2)` on `word`: wait while it holds `value`, or wake `value` waiters. Its answer is
    /// not needed: a wait that returns early (a signal, the word changed) is looped by the caller.
    fn futex(word: &AtomicU32, op: libc::c_int, value: u32) {
        // SAFETY: `word` is a live, aligned 32-bit atomic; the timeout is null (wait for ever).
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                op,
                value,
                core::ptr::null::<libc::timespec>(),
            );
        }
    }

    /// Unlocks a lock word, waking a sleeper if one may wait.
    #[inline]
    fn release(state: &AtomicU32) {
        if state.swap(UNLOCKED, Ordering::Release) == CONTENDED {
            futex(state, libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG, 1);
        }
    }

    impl<T> Drop for MutexGuard<'_, T> {
        #[inline]
        fn drop(&mut self) {
            release(self.release);
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;

        #[inline]
        fn deref(&self) -> &T {
            // SAFETY: the guard holds the lock (itself, or through the fork window).
            unsafe { &*self.mutex.value.get() }
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        #[inline]
        fn deref_mut(&mut self) -> &mut T {
            // SAFETY: the guard holds the lock (itself, or through the fork window), and `&mut
            // self` makes this the only reference through it.
            unsafe { &mut *self.mutex.value.get() }
        }
    }
}

#[cfg(poolmalloc_loom)]
pub(crate) use loom_mutex::{Mutex, MutexGuard};

/// Waits a moment for another thread to finish a step of a few instructions that it began (a
/// remote free sending its notice, `pool::push_remote`): gives up the CPU, since on a machine
/// with more threads than cores that thread may be the one preempted.
#[inline]
pub(crate) fn wait_a_moment() {
    #[cfg(poolmalloc_loom)]
    loom::thread::yield_now();
    #[cfg(not(poolmalloc_loom))]
    // SAFETY: sched_yield has no preconditions.
    unsafe {
        libc::sched_yield();
    }
}

/// The atomics the models see: the pool header's owner, remote-free word, counts and class tag,
/// the core id and its counter, the large-path counters.
pub(crate) mod atomic {
    pub(crate) use core::sync::atomic::Ordering;
    #[cfg(not(poolmalloc_loom))]
    pub(crate) use core::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize};
    #[cfg(poolmalloc_loom)]
    pub(crate) use loom::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize};
}

/// Primitives that stay std's under loom, outside the models:
/// - the arena registry's top level (`AtomicPtr`) and slot owners (`AtomicUsize`): the top level
///   is a `static` that must be const-initialised, and the leaves are anonymous mappings that
///   live for the whole process (R1) and are valid while zero-filled, whereas a loom atomic
///   belongs to one execution and is never valid zeroed. A loom registry would have to be made
///   and its leaves filled with fresh atomics in every execution;
/// - `MemPages`' slot table (`Mutex`) and counters (`AtomicBool`, `AtomicUsize`): it stands in
///   for the OS, which the models do not model either, and the core calls it only under its
///   arena lock;
/// - the `planted-fault` switch (`AtomicBool`): a test sets it before the model starts, outside
///   any execution;
/// - the free-list link key (`layout::LINK_KEY`, `AtomicUsize`): drawn once per process and
///   never changed, so no interleaving can see two values.
pub(crate) mod unmodelled {
    pub(crate) use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicUsize};
    pub(crate) use std::sync::Mutex;
}

#[cfg(poolmalloc_loom)]
mod loom_mutex {
    /// loom's mutex behind parking_lot's signature (`lock` returns the guard directly).
    pub(crate) struct Mutex<T>(loom::sync::Mutex<T>);
    pub(crate) type MutexGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            self.0
                .lock()
                .expect("a loom model thread panicked while holding a core lock")
        }
    }
}

/// The purge's wake-up call (`central::PURGE_EVENT`): a futex word that `notify` bumps, on
/// which the purger thread sleeps while nothing waits to be purged (`wait`). std's atomics under
/// loom too: no model runs the purger thread, and `notify` wakes no one there (the models call
/// `Core::purge` themselves).
pub mod event {
    use core::sync::atomic::{fence, AtomicBool, AtomicU32, Ordering};

    /// See the module.
    pub struct Event {
        word: AtomicU32,
        /// A thread is (about to be) asleep in `wait`: `notify` must wake it.
        waiting: AtomicBool,
        /// Set by `notify(true)`, taken by whoever starts the thread that waits
        /// (`take_request`).
        requested: AtomicBool,
    }

    impl Event {
        /// An event nobody waits on.
        pub const fn new() -> Event {
            Event {
                word: AtomicU32::new(0),
                waiting: AtomicBool::new(false),
                requested: AtomicBool::new(false),
            }
        }

        /// The count of notifications so far: pass it to `wait`.
        pub fn seen(&self) -> u32 {
            self.word.load(Ordering::Acquire)
        }

        /// Something waits: wakes the waiter, if any, and (`start`) leaves a request for a
        /// waiter to be started if none runs. A system call only while a thread sleeps in
        /// `wait`.
        pub fn notify(&self, start: bool) {
            if start && !self.requested.load(Ordering::Relaxed) {
                self.requested.store(true, Ordering::Relaxed);
            }
            self.word.fetch_add(1, Ordering::SeqCst);
            if self.waiting.load(Ordering::SeqCst) {
                futex(
                    &self.word,
                    libc::FUTEX_WAKE | libc::FUTEX_PRIVATE_FLAG,
                    u32::MAX,
                    None,
                );
            }
        }

        /// True when `notify(true)` ran since the last `take_request`.
        #[inline]
        pub fn requested(&self) -> bool {
            self.requested.load(Ordering::Relaxed)
        }

        /// Takes the request `notify` left: true for exactly one caller per request.
        pub fn take_request(&self) -> bool {
            self.requested.swap(false, Ordering::Relaxed)
        }

        /// Sleeps until a `notify` after `seen` was read, or `timeout_ms` passed (`None`: no
        /// limit). May return early (a signal); callers loop.
        pub fn wait(&self, seen: u32, timeout_ms: Option<u64>) {
            self.waiting.store(true, Ordering::SeqCst);
            fence(Ordering::SeqCst);
            let op = libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG;
            futex(&self.word, op, seen, timeout_ms);
            self.waiting.store(false, Ordering::SeqCst);
        }

        /// A forked child has no thread of the parent's: none waits.
        pub fn reset_in_child(&self) {
            self.waiting.store(false, Ordering::Relaxed);
        }
    }

    impl Default for Event {
        fn default() -> Self {
            Event::new()
        }
    }

    /// `futex(2)` on `word` with an optional relative timeout; its answer is not needed (the
    /// callers loop).
    fn futex(word: &AtomicU32, op: libc::c_int, value: u32, timeout_ms: Option<u64>) {
        let ts = timeout_ms.map(|ms| libc::timespec {
            tv_sec: (ms / 1000) as libc::time_t,
            tv_nsec: ((ms % 1000) * 1_000_000) as libc::c_long,
        });
        let ts_ptr = ts
            .as_ref()
            .map_or(core::ptr::null(), |t| t as *const libc::timespec);
        // SAFETY: `word` is a live, aligned 32-bit atomic; `ts_ptr` is null or points to a
        // timespec that lives across the call.
        unsafe { libc::syscall(libc::SYS_futex, word.as_ptr(), op, value, ts_ptr) };
    }
}

/// Defines a function that is `const` in normal builds and plain under loom, whose primitives
/// cannot be built in a const context (the global allocator's core is a `static`).
macro_rules! const_fn_unless_loom {
    ($(#[$attr:meta])* $vis:vis fn $($rest:tt)*) => {
        #[cfg(not(poolmalloc_loom))]
        $(#[$attr])* $vis const fn $($rest)*
        #[cfg(poolmalloc_loom)]
        $(#[$attr])* $vis fn $($rest)*
    };
}
pub(crate) use const_fn_unless_loom;

/// `[$init; $n]` for an element that is not `Copy`: built in a const context in normal builds,
/// element by element under loom.
#[cfg(not(poolmalloc_loom))]
macro_rules! array_of {
    ($init:expr; $n:expr) => {
        [const { $init }; $n]
    };
}
#[cfg(poolmalloc_loom)]
macro_rules! array_of {
    ($init:expr; $n:expr) => {
        core::array::from_fn(|_| $init)
    };
}
pub(crate) use array_of;

/// A process-wide `static` of the primitives above: plain in normal builds, a `loom::lazy_static`
/// under loom (made afresh in each execution of a model).
#[cfg(not(poolmalloc_loom))]
macro_rules! model_static {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        $(#[$attr])* static $name: $ty = $init;
    };
}
#[cfg(poolmalloc_loom)]
macro_rules! model_static {
    ($(#[$attr:meta])* static $name:ident: $ty:ty = $init:expr;) => {
        loom::lazy_static! { $(#[$attr])* static ref $name: $ty = $init; }
    };
}
pub(crate) use model_static;

/// Items that exist only in normal builds: fork handling needs parking_lot's raw lock, which
/// loom's mutex does not have, and no model forks.
macro_rules! unless_loom {
    ($($item:item)*) => {
        $( #[cfg(not(poolmalloc_loom))] $item )*
    };
}
pub(crate) use unless_loom;
