//! The global home: one process-wide core and a cache per thread, behind `PoolMalloc` (the
//! `#[global_allocator]`) and the C library's entry points (`capi`).
//!
//! ## Thread-local state and reentrancy
//! The cache lives in a `const`-initialised thread-local with no destructor, so reaching it is
//! one TLS-relative address and never allocates or fails. The thread's teardown is tied to a
//! pthread key (`exit_key`), armed when the cache is activated on the thread's first slow path:
//! at thread exit its destructor gives everything the cache holds back to the core and retires
//! the cache, whenever in the thread's end the allocator was first touched. Before activation
//! and after retirement the cache owns no pool and its lists have no blocks, so every request
//! falls to the slow path, which serves it from the core directly.
//!
//! The C library reaches the state through an initial-exec word (`thread_slot`) that the
//! thread's first call points at it: the thread-local's own access is a call to
//! `__tls_get_addr` in a shared library. The Rust faces, linked into the program, reach it
//! directly (one `fs`-relative address).
//!
//! `busy` marks a thread that is inside the slow path (holding or about to take a core lock, or
//! arming its teardown). A request that arrives on such a thread can only come from code the
//! allocator itself called — glibc setting a pthread key past its first 32 — and must not take a
//! core lock this very thread may hold: it is served from the bootstrap region. (The core's locks
//! are futex words: waiting on one allocates nothing.)
//!
//! `LIVE` links the state of every thread whose cache is in service, so that stats can count
//! what the caches hold; a thread unlinks itself at exit and leaves its large-block counts in
//! the core's tally, both under `LIVE`'s lock.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ffi::c_void;
use core::ptr;

use core::sync::atomic::{AtomicBool, Ordering};
use core::time::Duration;

use poolmalloc_core::config::PURGE_DELAY_MS;
use poolmalloc_core::{Core, CoreStats, Fragmentation, LargeTally, OsPages, Purger, Violation};

use crate::cache::{CacheState, ThreadCache};
use crate::exit_key::ExitKey;
use crate::frontend::{self, Active, Home};
use crate::purger;
use crate::sync::Mutex;

/// The process-wide core. Its purge settings come from the environment at the first thread's
/// activation (`settings_once`), before it holds any pool, or from `set_purge_delay` and
/// `set_purger`.
static CORE: Core<OsPages> = Core::with_purge_delay(OsPages, PURGE_DELAY_MS);

/// The global core's entry in the purger's list, put there when the purger is first started.
static PURGE_NODE: purger::Node = purger::Node::new(&CORE);

thread_local! {
    static THREAD: ThreadState = const { ThreadState::new() };
}

/// Runs `thread_exit` when a thread whose cache is in service ends.
static EXIT: ExitKey = ExitKey::new(thread_exit);

/// A thread's cache, its busy mark, and its links in `LIVE` so stats can count the blocks it
/// holds.
struct ThreadState {
    cache: ThreadCache,
    busy: Cell<bool>,
    next: Cell<*const ThreadState>,
    prev: Cell<*const ThreadState>,
}

impl ThreadState {
    const fn new() -> ThreadState {
        ThreadState {
            cache: ThreadCache::new(),
            busy: Cell::new(false),
            next: Cell::new(ptr::null()),
            prev: Cell::new(ptr::null()),
        }
    }
}

/// Runs `f` with this thread's state: for the C library (`C_LIBRARY`) through the initial-exec
/// slot, set on the thread's first call; else through the thread-local.
#[inline(always)]
fn with_state<const C_LIBRARY: bool, R>(f: impl FnOnce(&ThreadState) -> R) -> R {
    #[cfg(all(target_arch = "x86_64", target_os = "linux"))]
    if C_LIBRARY {
        let mut state = crate::thread_slot::get().cast::<ThreadState>();
        if state.is_null() {
            state = find_state();
        }
        // SAFETY: the slot holds this thread's own `THREAD` (`find_state`, on this thread),
        // which lives as long as the thread.
        return f(unsafe { &*state });
    }
    THREAD.with(f)
}

/// The C library's first call on this thread: points the slot at the thread's state.
#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
#[cold]
#[inline(never)]
fn find_state() -> *const ThreadState {
    let state = THREAD.with(|me| me as *const ThreadState);
    crate::thread_slot::set(state.cast());
    state
}

/// The global allocator's home (see `frontend::Home`). `C_LIBRARY`: the C library's, whose slow
/// steps keep the thread's `errno` (C's `free` must not change it, and the slow steps make
/// system calls that may) and which finds the thread's state through `thread_slot`; the Rust
/// faces pay for neither.
pub(crate) struct Global<const C_LIBRARY: bool = false>;

/// The global home as the C library uses it.
pub(crate) type GlobalC = Global<true>;

impl<const C_LIBRARY: bool> Home for Global<C_LIBRARY> {
    type Source = OsPages;
    // Every small layout the program frees came from our pools or the bootstrap region.
    const TRUSTS_SMALL_LAYOUT: bool = true;
    const REENTRANT: bool = true;

    #[inline(always)]
    fn core(&self) -> &Core<OsPages> {
        &CORE
    }

    #[inline(always)]
    fn with_cache<R>(&self, f: impl FnOnce(&ThreadCache) -> R) -> R {
        with_state::<C_LIBRARY, R>(|t| f(&t.cache))
    }

    fn activate(&self, cache: &ThreadCache) {
        activate(cache);
    }

    /// Marks the thread busy, so that requests from code the step calls go to the bootstrap
    /// region, and keeps `errno` if asked.
    /// Once the step is over (not inside another), starts the purger if the step asked for one.
    #[inline]
    fn slow<R>(&self, f: impl FnOnce() -> R) -> R {
        if !C_LIBRARY {
            let r = in_allocator(f);
            start_purger();
            return r;
        }
        // SAFETY: `__errno_location` returns this thread's errno.
        let errno = unsafe { *libc::__errno_location() };
        let r = in_allocator(f);
        start_purger();
        // SAFETY: `__errno_location` returns this thread's errno.
        unsafe { *libc::__errno_location() = errno };
        r
    }

    #[inline]
    fn busy(&self) -> bool {
        with_state::<C_LIBRARY, bool>(|t| t.busy.get())
    }

    fn census(
        &self,
        caches: &mut dyn FnMut(&ThreadCache),
        core_tally: &mut dyn FnMut(&LargeTally),
    ) {
        let live = LIVE.lock();
        let mut entry = live.head;
        while !entry.is_null() {
            // SAFETY: linked threads are alive (they unlink under this lock before exiting), so
            // their state is valid; a cache's counts are atomics (C1).
            unsafe {
                caches(&(*entry).cache);
                entry = (*entry).next.get();
            }
        }
        core_tally(CORE.large_tally());
    }
}

/// Starts the purger thread if the global core asked for one, when this thread is not inside
/// the allocator (so it holds no core lock, and what `pthread_create` allocates is served as
/// any request).
#[inline]
fn start_purger() {
    if poolmalloc_core::PURGE_EVENT.requested() && !THREAD.with(|t| t.busy.get()) {
        // SAFETY: the node and the core are statics.
        unsafe { purger::register(&PURGE_NODE) };
        purger::start_if_requested();
    }
}

/// Applies the environment's purge settings to the global core, once per process.
fn settings_once() {
    static READ: AtomicBool = AtomicBool::new(false);
    if READ.swap(true, Ordering::Relaxed) {
        return;
    }
    let (delay, purger) = purger::settings_from_env();
    if let Some(ms) = delay {
        CORE.set_purge_delay(ms);
    }
    if let Some(p) = purger {
        CORE.set_purger(p);
    }
}

/// Runs `f` with this thread marked as inside the allocator.
#[inline]
fn in_allocator<R>(f: impl FnOnce() -> R) -> R {
    THREAD.with(|me| {
        let was = me.busy.replace(true);
        let r = f();
        me.busy.set(was);
        r
    })
}

struct LiveList {
    head: *const ThreadState,
}

// SAFETY: the entries are thread-locals of live threads; a thread unlinks its own before its
// thread-locals die, under the list's mutex, which is the only way to reach them.
unsafe impl Send for LiveList {}

/// Threads with an active cache (for stats). Held together with core locks only by
/// `capi::fork_prepare`, which takes it first.
static LIVE: Mutex<LiveList> = Mutex::new(LiveList { head: ptr::null() });

fn link_this_thread() {
    THREAD.with(|me| {
        let mut live = LIVE.lock();
        me.prev.set(ptr::null());
        me.next.set(live.head);
        if !live.head.is_null() {
            // SAFETY: the head is the state of a live thread, reachable only under this lock.
            unsafe { (*live.head).prev.set(me) };
        }
        live.head = me;
    });
}

/// Takes this thread off `LIVE` and leaves its large-block counts in the core's tally, in one critical
/// section, so a census counts them once.
fn unlink_this_thread() {
    THREAD.with(|me| {
        let mut live = LIVE.lock();
        let (prev, next) = (me.prev.get(), me.next.get());
        // SAFETY: neighbours are states of live threads, reachable only under this lock.
        unsafe {
            if prev.is_null() {
                live.head = next;
            } else {
                (*prev).next.set(next);
            }
            if !next.is_null() {
                (*next).prev.set(prev);
            }
        }
        CORE.large_tally().absorb(&me.cache.large);
    });
}

/// A thread's teardown (the pthread key's destructor): its cache's blocks go back to the core,
/// the cache retires, the thread leaves `LIVE`.
unsafe extern "C" fn thread_exit(_: *mut c_void) {
    THREAD.with(|me| in_allocator(|| me.cache.retire(&CORE)));
    unlink_this_thread();
    // What the thread gave back may wait for a purger no one else's call would start.
    start_purger();
}

/// First slow-path visit on this thread: arm the thread's teardown and put the cache in service.
#[cold]
fn activate(cache: &ThreadCache) {
    in_allocator(|| {
        settings_once();
        if EXIT.arm(cache as *const ThreadCache as *mut c_void) {
            link_this_thread();
            cache.activate();
        } else {
            // No key to be had: no cache, and nothing to tear down.
            cache.close(CacheState::Retired);
        }
    });
}

/// The allocator to install with `#[global_allocator] static A: PoolMalloc = PoolMalloc;`.
/// Every value shares the one process-wide core and the per-thread caches.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolMalloc;

// SAFETY: small blocks come from pools of a class big enough for the request and aligned for it
// (the size-class table), never handed out twice (C2); everything else comes from the system
// allocator. Nothing here unwinds.
// `alloc` and `dealloc` are the front end's fast paths, whole: `#[inline]` left them to LLVM's
// budget, which a caller with a larger loop (the churn workload) exceeded once the medium branch
// was added, and a call cost 19 instructions a churn op (`benches/instructions.sh`).
unsafe impl GlobalAlloc for PoolMalloc {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        frontend::alloc::<Global, Active>(&Global::<false>, layout, false)
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc(layout)` and is given up.
        unsafe { frontend::dealloc::<Global, Active>(&Global::<false>, ptr, layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        frontend::alloc::<Global, Active>(&Global::<false>, layout, true)
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract, forwarded.
        unsafe { frontend::realloc::<Global, Active>(&Global::<false>, ptr, layout, new_size) }
    }
}

/// Gives every block this thread's cache holds back to the core.
pub fn flush_thread_cache() {
    frontend::flush_thread_cache(&Global::<false>);
}

/// Flushes this thread's cache and unmaps wholly empty arenas beyond the reserve (like
/// `mi_collect` / `malloc_trim`). Returns the number of arenas unmapped.
pub fn collect() -> usize {
    frontend::collect(&Global::<false>)
}

/// How long the global allocator's empty pools and arenas wait, committed, before they go back
/// to the OS (`POOLMALLOC_PURGE_DELAY_MS` in the C library; default
/// `poolmalloc_core::config::PURGE_DELAY_MS`). Zero gives memory back at once, and what waits
/// goes back now. Whole milliseconds; longer than `config::MAX_PURGE_DELAY_MS` is that.
pub fn set_purge_delay(delay: Duration) {
    let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
    in_allocator(|| {
        settings_once();
        CORE.set_purge_delay(ms.min(poolmalloc_core::config::MAX_PURGE_DELAY_MS))
    });
    start_purger();
}

/// Who gives the global allocator's memory back once it has waited: a background thread
/// (`Purger::Thread`, the default) or later allocator calls (`Purger::Calls`: no thread is
/// ever started; `POOLMALLOC_PURGER=calls` in the C library).
pub fn set_purger(purger: Purger) {
    in_allocator(|| {
        settings_once();
        CORE.set_purger(purger)
    });
    start_purger();
}

/// A snapshot of the global allocator: the core's counts plus the blocks each live thread's cache
/// holds (an instant's view of threads that are running).
pub fn stats() -> CoreStats {
    frontend::stats(&Global::<false>)
}

/// Walks the global core and checks its invariants.
pub fn check_invariants() -> Result<(), Violation> {
    in_allocator(|| CORE.check_invariants())
}

/// The global allocator's fragmentation snapshot (which pools pin memory, what freeing would
/// give back), with the blocks live threads' caches hold, since those pin pools too.
pub fn fragmentation() -> Fragmentation {
    frontend::fragmentation(&Global::<false>)
}

/// True when `ptr` lies in one of the global allocator's arenas (a block of its pools).
pub fn owns(ptr: *const u8) -> bool {
    CORE.owns(ptr)
}

/// The global home's entry points for the C library (`poolmalloc-capi`), which has no layouts:
/// the same core, the same per-thread caches, the same front end. Not part of the Rust API.
pub mod capi {
    use core::alloc::Layout;
    use core::ptr;

    use super::*;
    use poolmalloc_core::is_small;

    use crate::debug::Debug;
    use crate::frontend::natural_align;
    use crate::hooks::{Hooks, Plain, Secure};

    /// The checks the C library runs with, chosen once, at its first call, before it hands out
    /// any block (the library's `mode` module reads the environment), and never changed, since
    /// a block laid out in one mode must be freed in the same mode.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    #[repr(u8)]
    pub enum Mode {
        /// No checks beyond the double-free check every mode has.
        Plain = 1,
        /// Every free-list link checked before it is followed (`hooks::Secure`).
        Secure = 2,
        /// Debug mode (`crate::debug`), links checked too.
        Debug = 3,
    }

    /// Runs `$call` with the hooks of `$mode`, for the entry points off the hot path.
    macro_rules! with_mode {
        ($mode:expr, $f:ident ( $($arg:expr),* )) => {
            match $mode {
                Mode::Plain => frontend::$f::<GlobalC, Plain>($($arg),*),
                Mode::Secure => frontend::$f::<GlobalC, Secure>($($arg),*),
                Mode::Debug => frontend::$f::<GlobalC, Debug>($($arg),*),
            }
        };
    }

    /// `size` bytes aligned to at least `align` (a power of two) and to what C requires of that
    /// size, zero-filled if asked; null when out of memory (or the size has no layout).
    ///
    /// The plain mode's cost of the modes is the caller's compare (`benches/instructions.sh`
    /// measures it). Plain and secure paths are inlined; debug mode's is out of line
    /// (`malloc_checked`): inlined too, with the closure-based dispatch tried first, it made the
    /// plain path some 35 instructions a pair longer.
    #[inline(always)]
    pub fn malloc(mode: Mode, size: usize, align: usize, zeroed: bool) -> *mut u8 {
        match mode {
            Mode::Plain => malloc_with::<Plain>(size, align, zeroed),
            Mode::Secure => malloc_with::<Secure>(size, align, zeroed),
            Mode::Debug => malloc_checked::<Debug>(size, align, zeroed),
        }
    }

    #[inline(always)]
    fn malloc_with<K: Hooks>(size: usize, align: usize, zeroed: bool) -> *mut u8 {
        let align = align.max(natural_align(size));
        // The large path gives a zero-size layout no block; C's `malloc(0)` must get one.
        let size = if is_small(size, align) {
            size
        } else {
            size.max(1)
        };
        let Ok(layout) = Layout::from_size_align(size, align) else {
            return ptr::null_mut();
        };
        frontend::alloc::<GlobalC, K>(&Global::<true>, layout, zeroed)
    }

    #[cold]
    #[inline(never)]
    fn malloc_checked<K: Hooks>(size: usize, align: usize, zeroed: bool) -> *mut u8 {
        malloc_with::<K>(size, align, zeroed)
    }

    /// C's `free` of a non-null pointer; the modes' paths as for `malloc`.
    ///
    /// # Safety
    /// `ptr` is a live block of ours or of the C library's allocator, given up.
    #[inline(always)]
    pub unsafe fn free(mode: Mode, ptr: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe {
            match mode {
                Mode::Plain => frontend::free::<GlobalC, Plain>(&Global::<true>, ptr, None),
                Mode::Secure => frontend::free::<GlobalC, Secure>(&Global::<true>, ptr, None),
                Mode::Debug => free_checked::<Debug>(ptr),
            }
        }
    }

    /// # Safety
    /// As for `free`.
    #[cold]
    #[inline(never)]
    unsafe fn free_checked<K: Hooks>(ptr: *mut u8) {
        // SAFETY: forwarded contract.
        unsafe { frontend::free::<GlobalC, K>(&Global::<true>, ptr, None) }
    }

    /// C's `realloc` of a non-null pointer to a non-zero size; null (the block intact) when out
    /// of memory or when `ptr` was misuse (reported).
    ///
    /// # Safety
    /// `ptr` is a live block of ours or of the C library's allocator; `size` is non-zero.
    pub unsafe fn realloc(mode: Mode, ptr: *mut u8, size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { with_mode!(mode, realloc_unsized(&Global::<true>, ptr, size)) }
    }

    /// C's `malloc_usable_size` of a non-null pointer; 0 for misuse (reported).
    ///
    /// # Safety
    /// `ptr` is a live block of ours or of the C library's allocator.
    pub unsafe fn usable_size(mode: Mode, ptr: *mut u8) -> usize {
        // SAFETY: forwarded contract.
        unsafe { with_mode!(mode, usable_size(&Global::<true>, ptr)) }
    }

    /// The library's start-up, before `main`: finds the C library's own `malloc_usable_size`
    /// while no lock is held and allocating is still safe.
    pub fn start() {
        poolmalloc_core::large::system_usable_size();
    }

    /// `pthread_atfork` prepare: takes the live-cache list's lock, then every core lock, and
    /// opens this thread's fork window: until `fork_parent` or `fork_child`, this thread's own
    /// requests (other libraries' fork handlers, whichever order they were registered in) are
    /// served under the locks it holds.
    pub fn fork_prepare() {
        in_allocator(|| {
            LIVE.lock_for_fork();
            CORE.lock_for_fork();
            crate::debug::large::fork_prepare();
        });
        // SAFETY: this thread holds every lock of the global allocator, guards forgotten.
        unsafe { poolmalloc_core::set_fork_window(true) };
    }

    /// `pthread_atfork` parent: closes the fork window and releases what `fork_prepare` took.
    ///
    /// # Safety
    /// `fork_prepare` ran on this thread just before `fork`.
    pub unsafe fn fork_parent() {
        // SAFETY: closed before any lock is released.
        unsafe { poolmalloc_core::set_fork_window(false) };
        // SAFETY: `fork_prepare` took the table's lock on this thread (precondition).
        unsafe { crate::debug::large::fork_parent() };
        // SAFETY: this thread holds the locks through `lock_for_fork` (precondition); window closed.
        unsafe {
            CORE.unlock_after_fork();
            LIVE.unlock_after_fork();
        }
    }

    /// `pthread_atfork` child: the other threads are gone, so their caches leave the live list
    /// (their blocks stay out for the child's life; their large-block counts go to the core's
    /// tally),
    /// then the locks are released.
    ///
    /// # Safety
    /// `fork_prepare` ran in the parent's forking thread, which this child continues.
    pub unsafe fn fork_child() {
        // SAFETY: closed before any lock is released.
        unsafe { poolmalloc_core::set_fork_window(false) };
        THREAD.with(|me| {
            // SAFETY: this thread holds LIVE's lock (forgotten guard); nobody else exists, and
            // the other threads' states are memory the child inherited, unchanged since.
            let live = unsafe { &mut *LIVE.data_ptr() };
            let mut entry = live.head;
            while !entry.is_null() {
                // SAFETY: `entry` is a state on LIVE, memory the child inherited unchanged, and
                // no other thread exists to change it.
                unsafe {
                    if !ptr::eq(entry, me) {
                        CORE.large_tally().absorb(&(*entry).cache.large);
                    }
                    entry = (*entry).next.get();
                }
            }
            let active = me.cache.state() == CacheState::Active;
            me.prev.set(ptr::null());
            me.next.set(ptr::null());
            live.head = if active { me } else { ptr::null() };
        });
        // SAFETY: the child of the fork `fork_prepare` prepared; this is its only thread.
        unsafe { crate::debug::large::fork_child() };
        // SAFETY: this child has only this thread, which `fork_prepare` left holding every lock.
        unsafe {
            CORE.reset_locks_in_child();
            LIVE.reset_in_child();
            CORE.disown_in_child(THREAD.with(|me| me.cache.id()));
        }
    }
}
