//! `PoolMalloc`, the `#[global_allocator]`: one process-wide core and a cache per thread.
//!
//! ## Thread-local state and reentrancy
//! The cache lives in a `const`-initialised thread-local with no destructor, so reaching it is
//! one TLS-relative address and never allocates or fails. A second thread-local, the exit guard,
//! has the destructor: it is touched once, when the cache is activated on the thread's first slow
//! path, and at thread exit it gives everything the cache holds back to the core and retires the
//! cache. Before activation and after retirement the lists have no blocks and no room, so every
//! request falls to the slow path, which serves it from the core directly.
//!
//! `BUSY` marks a thread that is inside the slow path (holding or about to take a core lock, or
//! registering its exit guard). A request that arrives on such a thread can only come from code
//! the allocator itself called — parking_lot creating its per-thread data when a lock is
//! contended, the TLS destructor registration — and must not take a core lock this very thread
//! may hold: it is served from the bootstrap region. Activation also warms parking_lot's
//! per-thread data up front, so later contention on a core lock normally allocates nothing.

#[cfg(not(feature = "instrumented"))]
use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr;

use poolmalloc_core::__private::class_tag;
#[cfg(not(feature = "instrumented"))]
use poolmalloc_core::class_of;
use poolmalloc_core::config::NB_SMALL_SIZE_CLASSES;
use poolmalloc_core::{Class, Core, CoreStats, Fragmentation, OsPages, Violation};

use crate::bootstrap;
use crate::cache::{CacheState, ThreadCache};
#[cfg(all(debug_assertions, not(feature = "instrumented")))]
use crate::misuse::check_layout;
use crate::misuse::{report, Misuse};
#[cfg(not(feature = "instrumented"))]
use crate::resize;
use crate::sync::Mutex;

/// The process-wide core.
static CORE: Core<OsPages> = Core::new(OsPages);

thread_local! {
    static THREAD: ThreadState = const { ThreadState::new() };
    static BUSY: Cell<bool> = const { Cell::new(false) };
    static EXIT: ExitGuard = const { ExitGuard };
}

/// A thread's cache, and its links in `LIVE` so stats can count the blocks it holds.
struct ThreadState {
    cache: ThreadCache,
    next: Cell<*const ThreadState>,
    prev: Cell<*const ThreadState>,
}

impl ThreadState {
    const fn new() -> ThreadState {
        ThreadState {
            cache: ThreadCache::new(),
            next: Cell::new(ptr::null()),
            prev: Cell::new(ptr::null()),
        }
    }
}

/// This thread's cache.
#[inline(always)]
fn with_cache<R>(f: impl FnOnce(&ThreadCache) -> R) -> R {
    THREAD.with(|t| f(&t.cache))
}

/// The allocator to install with `#[global_allocator] static A: PoolMalloc = PoolMalloc;`.
/// Every value shares the one process-wide core and the per-thread caches.
#[derive(Clone, Copy, Debug, Default)]
pub struct PoolMalloc;

/// Runs `f` with this thread marked as inside the allocator.
#[inline]
fn in_allocator<R>(f: impl FnOnce() -> R) -> R {
    let was = BUSY.replace(true);
    let r = f();
    BUSY.set(was);
    r
}

struct LiveList {
    head: *const ThreadState,
}

// SAFETY: the entries are thread-locals of live threads; a thread unlinks its own before its
// thread-locals die, under the list's mutex, which is the only way to reach them.
unsafe impl Send for LiveList {}

/// Threads with an active cache (for stats). Held together with core locks only by
/// `raw::fork_prepare`, which takes it first.
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
    });
}

struct ExitGuard;

impl Drop for ExitGuard {
    fn drop(&mut self) {
        with_cache(|cache| in_allocator(|| cache.retire(&CORE)));
        unlink_this_thread();
    }
}

/// Warms parking_lot's per-thread data, so contention on a core lock later allocates nothing.
fn warm_parking_lot() {
    static KEY: u8 = 0;
    // SAFETY: `validate` returns false, so the call returns at once without parking; the key is
    // the address of a private static that nothing unparks.
    unsafe {
        parking_lot_core::park(
            &KEY as *const u8 as usize,
            || false,
            || {},
            |_, _| {},
            parking_lot_core::DEFAULT_PARK_TOKEN,
            None,
        );
    }
}

/// First slow-path visit on this thread: register the exit guard and put the cache in service.
#[cold]
fn activate(cache: &ThreadCache) {
    in_allocator(|| {
        warm_parking_lot();
        if EXIT.try_with(|_| ()).is_ok() {
            link_this_thread();
            cache.activate();
        } else {
            // The thread is already tearing down its thread-locals: no cache.
            cache.close(CacheState::Retired);
        }
    });
}

#[cold]
#[inline(never)]
fn alloc_slow(class: Class) -> *mut u8 {
    if BUSY.get() {
        let p = bootstrap::alloc(class.block_size());
        if !p.is_null() {
            return p;
        }
        // The region is used up: the core it is. This can only block if this thread holds the
        // lock of this very class, which needs a reentrant request of the same class.
        return CORE
            .alloc_block(class)
            .map_or(ptr::null_mut(), |p| p.as_ptr());
    }
    with_cache(|cache| {
        if cache.state() == CacheState::Unused {
            activate(cache);
        }
        match cache.state() {
            CacheState::Active => in_allocator(|| cache.refill(&CORE, class)),
            _ => in_allocator(|| CORE.alloc_block(class)).map_or(ptr::null_mut(), |p| p.as_ptr()),
        }
    })
}

/// Frees through the core, validating; a refused free is reported.
fn free_direct(ptr: *mut u8) {
    // SAFETY: the caller gives the block up; `free_block` validates it before touching anything.
    if let Err(e) = in_allocator(|| unsafe { CORE.free_block(ptr) }) {
        report(Misuse::BadFree(e));
    }
}

#[cold]
#[inline(never)]
unsafe fn dealloc_slow(tag: u8, ptr: *mut u8) {
    if bootstrap::contains(ptr) {
        return;
    }
    let Some(class) = (tag as usize).checked_sub(1).and_then(Class::new) else {
        // The pool serves no class: a double free or a foreign pointer. The core says which.
        return free_direct(ptr);
    };
    with_cache(|cache| {
        if cache.state() == CacheState::Unused && !BUSY.get() {
            activate(cache);
        }
        match cache.state() {
            // SAFETY: the block is of `class` (its pool's tag) and the caller gave it up.
            CacheState::Active if BUSY.get() => unsafe { cache.push_over_bound(class, ptr) },
            CacheState::Active => {
                in_allocator(|| cache.flush(&CORE, class));
                // SAFETY: as above; the flush made room.
                let pushed = unsafe { cache.push(tag, ptr) };
                debug_assert!(pushed);
            }
            _ => free_direct(ptr),
        }
    })
}

#[cfg(not(feature = "instrumented"))]
#[inline(always)]
fn is_small(layout: &Layout) -> bool {
    class_of(layout.size(), layout.align()).is_some()
}

// SAFETY: small blocks come from pools of the right class (aligned, big enough, never handed out
// twice: C2); everything else comes from the system allocator. Nothing here unwinds.
// (With the debug or tool features, `instrumented.rs` has the impl instead.)
#[cfg(not(feature = "instrumented"))]
unsafe impl GlobalAlloc for PoolMalloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            Some(class) => {
                let p = with_cache(|cache| cache.pop(class));
                if !p.is_null() {
                    return p;
                }
                alloc_slow(class)
            }
            None => CORE.large_alloc(layout),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_small(&layout) {
            // SAFETY: a small-layout pointer from `alloc` lies in one of our pools (or the
            // bootstrap region, laid out like pools), so its pool header is mapped.
            let tag = unsafe { class_tag(ptr) };
            #[cfg(debug_assertions)]
            check_layout(ptr, &layout, tag);
            // SAFETY: the caller gives the block up; `tag` is its pool's class tag.
            if !with_cache(|cache| unsafe { cache.push(tag, ptr) }) {
                // SAFETY: as above.
                unsafe { dealloc_slow(tag, ptr) };
            }
        } else {
            // SAFETY: large layouts came from the large path.
            unsafe { CORE.large_dealloc(ptr, layout) };
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_small(&layout) {
            return CORE.large_alloc_zeroed(layout);
        }
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: the block holds at least `layout.size()` bytes; cached blocks are dirty.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { resize::realloc(self, &CORE, ptr, layout, new_size) }
    }
}

/// Gives every block this thread's cache holds back to the core.
pub fn flush_thread_cache() {
    with_cache(|cache| {
        if cache.state() == CacheState::Active {
            in_allocator(|| cache.drain(&CORE));
        }
    });
}

/// Flushes this thread's cache and unmaps wholly empty arenas beyond the reserve (like
/// `mi_collect` / `malloc_trim`). Returns the number of arenas unmapped.
pub fn collect() -> usize {
    flush_thread_cache();
    in_allocator(|| CORE.collect())
}

/// Blocks each class has in the caches of live threads (an instant's view of running threads).
fn held_in_caches() -> [usize; NB_SMALL_SIZE_CLASSES] {
    let mut cached = [0usize; NB_SMALL_SIZE_CLASSES];
    let live = LIVE.lock();
    let mut entry = live.head;
    while !entry.is_null() {
        // SAFETY: linked threads are alive (they unlink under this lock before exiting), so
        // their state is valid; `add_held_to` reads only atomics.
        unsafe {
            (*entry).cache.add_held_to(&mut cached);
            entry = (*entry).next.get();
        }
    }
    cached
}

/// A snapshot of the global allocator: the core's counts plus the blocks each live thread's cache
/// holds (an instant's view of threads that are running).
pub fn stats() -> CoreStats {
    let cached = held_in_caches();
    let mut stats = in_allocator(|| CORE.stats());
    for (class, held) in stats.classes.iter_mut().zip(cached) {
        class.blocks_in_caches = held.min(class.blocks_out);
    }
    stats
}

/// Walks the global core and checks its invariants.
pub fn check_invariants() -> Result<(), Violation> {
    in_allocator(|| CORE.check_invariants())
}

/// The global allocator's fragmentation snapshot (which pools pin memory, what freeing would
/// give back), with the blocks live threads' caches hold, since those pin pools too.
pub fn fragmentation() -> Fragmentation {
    let cached = held_in_caches();
    let mut frag = in_allocator(|| CORE.fragmentation());
    frag.set_blocks_in_caches(&cached);
    frag
}

/// The global allocator's pieces for faces that handle pointers without layouts (the C ABI in
/// `poolmalloc-capi`): the same process-wide core, the same per-thread caches.
pub mod raw {
    use super::*;

    /// Who owns a pointer, told without reading memory outside our arenas.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Owner {
        /// A block of our pools; `tag` is its pool's class tag (class index + 1; 0 if the pool
        /// serves no class, which makes any free of it fall to the reporting slow path).
        Pool { tag: u8 },
        /// A block of the bootstrap region (served while inside the allocator; never reused).
        Bootstrap,
        /// Not ours: the large path's C library, or another allocator.
        Elsewhere,
    }

    /// The usable size of a block `owner` called ours (`None` for other memory). A pool block
    /// whose pool serves no class (a misused pointer) reports 0.
    ///
    /// # Safety
    /// `ptr` is a block `owner` said was ours (`Pool` or `Bootstrap`), not yet freed.
    pub unsafe fn usable_size(ptr: *const u8, owner: Owner) -> Option<usize> {
        match owner {
            Owner::Pool { tag } => Some(
                (tag as usize)
                    .checked_sub(1)
                    .and_then(Class::new)
                    .map_or(0, Class::block_size),
            ),
            // SAFETY: a bootstrap block (precondition).
            Owner::Bootstrap => Some(unsafe { bootstrap::size_of(ptr) }),
            Owner::Elsewhere => None,
        }
    }

    /// The process-wide core.
    pub fn core() -> &'static Core<OsPages> {
        &CORE
    }

    // Any pointer may be asked about: the pool header is read only once the registry has said
    // the address lies in one of our arenas.
    #[allow(clippy::not_unsafe_ptr_arg_deref)]
    #[inline]
    pub fn owner(ptr: *const u8) -> Owner {
        if CORE.owns(ptr) {
            // SAFETY: the pointer lies in one of our arenas, so its pool header is mapped.
            let tag = unsafe { class_tag(ptr) };
            Owner::Pool { tag }
        } else if bootstrap::contains(ptr) {
            Owner::Bootstrap
        } else {
            Owner::Elsewhere
        }
    }

    /// A block of `class` from this thread's cache (or the slow path); null when out of memory.
    #[inline]
    pub fn alloc(class: Class) -> *mut u8 {
        let p = with_cache(|cache| cache.pop(class));
        if !p.is_null() {
            return p;
        }
        alloc_slow(class)
    }

    /// The fast half of a free: pushes the block on this thread's list if it has room.
    ///
    /// # Safety
    /// `owner(ptr)` said `Pool { tag }` and the caller gives the block up.
    #[inline]
    pub unsafe fn try_free_fast(tag: u8, ptr: *mut u8) -> bool {
        // SAFETY: as the precondition says.
        with_cache(|cache| unsafe { cache.push(tag, ptr) })
    }

    /// The slow half: flush or activate, or free through the core (validating, reporting).
    ///
    /// # Safety
    /// As for `try_free_fast`, which returned false.
    pub unsafe fn free_slow(tag: u8, ptr: *mut u8) {
        // SAFETY: as the precondition says.
        unsafe { dealloc_slow(tag, ptr) }
    }

    /// `pthread_atfork` prepare: takes the live-cache list's lock, then every core lock.
    pub fn fork_prepare() {
        in_allocator(|| {
            core::mem::forget(LIVE.lock());
            CORE.lock_for_fork();
            #[cfg(feature = "debug")]
            crate::debug::large::fork_prepare();
        });
    }

    /// `pthread_atfork` parent: releases what `fork_prepare` took.
    ///
    /// # Safety
    /// `fork_prepare` ran on this thread just before `fork`.
    pub unsafe fn fork_parent() {
        #[cfg(feature = "debug")]
        crate::debug::large::fork_release();
        // SAFETY: the locks are held by this thread with their guards forgotten.
        unsafe {
            CORE.unlock_after_fork();
            LIVE.force_unlock();
        }
    }

    /// `pthread_atfork` child: the other threads are gone, so their caches leave the live list
    /// (their blocks stay out for the child's life), then the locks are released.
    ///
    /// # Safety
    /// `fork_prepare` ran in the parent's forking thread, which this child continues.
    pub unsafe fn fork_child() {
        THREAD.with(|me| {
            // SAFETY: this thread holds LIVE's lock (forgotten guard); nobody else exists.
            let live = unsafe { &mut *LIVE.data_ptr() };
            let active = me.cache.state() == CacheState::Active;
            me.prev.set(ptr::null());
            me.next.set(ptr::null());
            live.head = if active { me } else { ptr::null() };
        });
        #[cfg(feature = "debug")]
        crate::debug::large::fork_release();
        // SAFETY: this child has only this thread, which `fork_prepare` left holding every lock.
        unsafe {
            CORE.reset_locks_in_child();
            poolmalloc_core::__private::reset_lock_in_child(&LIVE);
        }
    }
}
