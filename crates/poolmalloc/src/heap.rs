//! `Heap`: an independent allocator instance — its own core, its own per-thread caches (kept in
//! `slots`) — for services that want their allocations apart. The same front end as the
//! global allocator; only the home differs.
//!
//! When a thread first reaches a heap's slow path it registers an exit hook (`slots`); at thread
//! exit the hook gives that thread's pools back to the heap's core (if the heap still
//! lives) and leaves the cache unused, ready for the next thread that gets the same index.
//! `Heap::collect` flushes the calling thread's cache and unmaps empty arenas; dropping the heap
//! unmaps all its arenas.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use std::sync::{Arc, Weak};

use allocator_api2::alloc::{AllocError, Allocator};
use core::time::Duration;

use poolmalloc_core::config::{MAX_PURGE_DELAY_MS, PURGE_DELAY_MS};
use poolmalloc_core::{
    Core, CoreStats, Fragmentation, LargeTally, OsPages, PageSource, Purger, Violation,
};

use crate::cache::{CacheState, ThreadCache};
use crate::frontend::{self, Active, Home};
use crate::purger;
use crate::slots::{self, ExitHook, Slots};

/// A heap's home (see `frontend::Home`).
struct Shared<S: PageSource> {
    core: Core<S>,
    caches: Slots,
    /// The cache of a thread too far into its exit to have one of its own: never in service,
    /// so it owns no pool, its lists stay empty and nothing ever writes it.
    idle: ThreadCache,
    /// This heap, for the exit hooks threads register.
    me: Weak<Shared<S>>,
    /// The core's entry in the purger's list, from creation until the heap drops.
    purge_node: purger::Node,
}

impl<S: PageSource> Drop for Shared<S> {
    fn drop(&mut self) {
        // Off the purger's list before the core goes.
        purger::unregister(&self.purge_node);
    }
}

impl<S: PageSource + 'static> Home for Shared<S> {
    type Source = S;
    // The block may be another heap's: ask the registry.
    const TRUSTS_SMALL_LAYOUT: bool = false;
    // A heap's locks are its own; what they allocate goes to the global allocator.
    const REENTRANT: bool = false;

    #[inline(always)]
    fn core(&self) -> &Core<S> {
        &self.core
    }

    #[inline(always)]
    fn with_cache<R>(&self, f: impl FnOnce(&ThreadCache) -> R) -> R {
        match self.caches.get() {
            Some(cache) => f(cache),
            None => f(self.new_cache()),
        }
    }

    fn activate(&self, cache: &ThreadCache) {
        if ptr::eq(cache, &self.idle) {
            return;
        }
        let hook: Weak<dyn ExitHook> = self.me.clone();
        if slots::on_thread_exit(hook, cache) {
            cache.activate();
        }
    }

    /// Once the step is over, starts the purger if it asked for one.
    #[inline(always)]
    fn slow<R>(&self, f: impl FnOnce() -> R) -> R {
        let r = f();
        purger::start_if_requested();
        r
    }

    #[inline(always)]
    fn busy(&self) -> bool {
        false
    }

    fn census(
        &self,
        caches: &mut dyn FnMut(&ThreadCache),
        core_tally: &mut dyn FnMut(&LargeTally),
    ) {
        // An exited thread's cache keeps its counts in its slot: every slot is counted.
        self.caches.for_each(caches);
        core_tally(self.core.large_tally());
    }
}

impl<S: PageSource> Shared<S> {
    /// This thread's first use of the heap. Out of line: building a cache (a 4 KiB value) inline
    /// would give every `alloc` a 4 KiB stack frame and a stack probe.
    #[cold]
    #[inline(never)]
    fn new_cache(&self) -> &ThreadCache {
        self.caches.create().unwrap_or(&self.idle)
    }
}

impl<S: PageSource> ExitHook for Shared<S> {
    unsafe fn thread_exit(&self, cache: &ThreadCache) {
        cache.drain(&self.core);
        cache.close(CacheState::Unused);
    }
}

/// An independent allocator instance.
pub struct Heap<S: PageSource + 'static = OsPages> {
    shared: Arc<Shared<S>>,
}

impl Heap<OsPages> {
    /// A heap over mmap'd arenas. Maps nothing until first used.
    pub fn new() -> Heap<OsPages> {
        Heap::with_source(OsPages)
    }
}

impl Default for Heap<OsPages> {
    fn default() -> Self {
        Heap::new()
    }
}

impl<S: PageSource + 'static> Heap<S> {
    /// A heap whose arenas come from `source`.
    pub fn with_source(source: S) -> Heap<S> {
        let shared = Arc::new_cyclic(|me: &Weak<Shared<S>>| Shared {
            core: Core::with_purge_delay(source, PURGE_DELAY_MS),
            caches: Slots::new(),
            idle: ThreadCache::new(),
            me: me.clone(),
            // SAFETY: the address of the core's field in the allocation being built (no read).
            purge_node: purger::Node::new(unsafe { ptr::addr_of!((*me.as_ptr()).core) }),
        });
        // SAFETY: the node lives in the shared state with the core it names, and `Shared`'s
        // drop takes it off the list before either goes.
        unsafe { purger::register(&shared.purge_node) };
        Heap { shared }
    }

    /// How long the heap's empty pools and arenas wait, committed, before they go back to the
    /// OS (default `poolmalloc_core::config::PURGE_DELAY_MS`); zero gives memory back at once,
    /// and what waits goes back now.
    pub fn set_purge_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.shared.core.set_purge_delay(ms.min(MAX_PURGE_DELAY_MS));
        purger::start_if_requested();
    }

    /// Who gives the heap's memory back once it has waited: the purger thread (the default) or
    /// the heap's later calls.
    pub fn set_purger(&self, purger: Purger) {
        self.shared.core.set_purger(purger);
        purger::start_if_requested();
    }

    /// The heap's core (tests reach its page source and invariants through it).
    pub fn core(&self) -> &Core<S> {
        &self.shared.core
    }

    /// Allocates for `layout`; null when out of memory.
    #[inline(always)]
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        frontend::alloc::<Shared<S>, Active>(&self.shared, layout, false)
    }

    /// Frees what `alloc(layout)` gave. A pointer that is not one of this heap's blocks is
    /// reported as misuse and left alone (so a block of another heap cannot enter this one).
    ///
    /// # Safety
    /// `ptr` came from `alloc(layout)` of this heap and is not used afterwards.
    #[inline(always)]
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { frontend::dealloc::<Shared<S>, Active>(&self.shared, ptr, layout) }
    }

    /// Gives the pools this thread owns in this heap back to the heap's core.
    pub fn flush_thread_cache(&self) {
        frontend::flush_thread_cache(&*self.shared);
    }

    /// Flushes this thread's cache and unmaps wholly empty arenas beyond the reserve. Threads
    /// that have exited gave their pools back in their exit hooks. Returns arenas unmapped.
    pub fn collect(&self) -> usize {
        frontend::collect(&*self.shared)
    }

    /// A snapshot of the heap: its pools, owned by threads or not, and the large blocks.
    pub fn stats(&self) -> CoreStats {
        frontend::stats(&*self.shared)
    }

    /// The heap's fragmentation snapshot.
    pub fn fragmentation(&self) -> Fragmentation {
        frontend::fragmentation(&*self.shared)
    }

    /// Walks the heap's core and checks its invariants.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        self.shared.core.check_invariants()
    }

    /// True when `ptr` lies in one of this heap's arenas.
    pub fn owns(&self, ptr: *const u8) -> bool {
        self.shared.core.owns(ptr)
    }
}

// SAFETY: blocks come from this heap's pools, of a class big enough for the request and aligned
// for it, never handed out twice (C2), or from the system allocator. Nothing here unwinds.
unsafe impl<S: PageSource + 'static> GlobalAlloc for Heap<S> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Heap::alloc(self, layout)
    }

    #[inline(always)]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: GlobalAlloc's contract: `ptr` came from `alloc(layout)` and is given up.
        unsafe { Heap::dealloc(self, ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        frontend::alloc::<Shared<S>, Active>(&self.shared, layout, true)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: GlobalAlloc's contract, forwarded.
        unsafe { frontend::realloc::<Shared<S>, Active>(&self.shared, ptr, layout, new_size) }
    }
}

// SAFETY: a block stays valid until deallocated (its pool cannot be reused while it is out);
// `allocate` never returns a block another call still holds; zero-size requests get a dangling,
// aligned pointer that `deallocate` ignores.
unsafe impl<S: PageSource + 'static> Allocator for Heap<S> {
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            let dangling = ptr::without_provenance_mut::<u8>(layout.align());
            // SAFETY: the alignment is non-zero.
            let p = unsafe { NonNull::new_unchecked(dangling) };
            return Ok(NonNull::slice_from_raw_parts(p, 0));
        }
        let p = NonNull::new(Heap::alloc(self, layout)).ok_or(AllocError)?;
        Ok(NonNull::slice_from_raw_parts(p, layout.size()))
    }

    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: Allocator's contract: `ptr` came from `allocate(layout)` and is given up.
            unsafe { Heap::dealloc(self, ptr.as_ptr(), layout) }
        }
    }
}
