//! `Heap`: an independent allocator instance — its own core, its own per-thread caches (kept
//! through the `thread_local` crate) — for services that want their allocations apart.
//!
//! When a thread first refills from a heap it registers an exit hook in a std thread-local; at
//! thread exit the hook gives that thread's cached blocks back to the heap's core (if the heap
//! still lives) and leaves the cache unused, ready for the next thread that gets its slot. The
//! hook holds the cache's address rather than looking it up, because the `thread_local` crate may
//! have released the thread's id by then. `Heap::collect` flushes the calling thread's cache and
//! unmaps empty arenas; dropping the heap unmaps all its arenas.

use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};
use std::cell::RefCell;
use std::sync::{Arc, Weak};

use allocator_api2::alloc::{AllocError, Allocator};
use poolmalloc_core::__private::class_tag;
#[cfg(not(feature = "instrumented"))]
use poolmalloc_core::class_of;
use poolmalloc_core::config::NB_SMALL_SIZE_CLASSES;
use poolmalloc_core::{Class, Core, CoreStats, Fragmentation, OsPages, PageSource, Violation};
use thread_local::ThreadLocal;

use crate::cache::{CacheState, ThreadCache};
use crate::misuse::{report, Misuse};
#[cfg(not(feature = "instrumented"))]
use crate::resize;

struct Shared<S: PageSource> {
    core: Core<S>,
    caches: ThreadLocal<ThreadCache>,
}

/// What a thread's exit hook needs of a heap, whatever its page source.
trait ExitHook: Send + Sync {
    /// Returns this thread's cached blocks to the core and leaves the cache unused.
    ///
    /// # Safety
    /// Called on the thread that owns `cache`, which belongs to this heap.
    unsafe fn thread_exit(&self, cache: *const ThreadCache);
}

impl<S: PageSource> ExitHook for Shared<S> {
    unsafe fn thread_exit(&self, cache: *const ThreadCache) {
        // SAFETY: the cache lives in `self.caches`, which lives as long as `self`; only this
        // thread uses it (precondition).
        let cache = unsafe { &*cache };
        cache.drain(&self.core);
        cache.close(CacheState::Unused);
    }
}

/// The heaps this thread has cached blocks of, with the address of its cache in each.
struct ExitHooks(RefCell<Vec<(Weak<dyn ExitHook>, *const ThreadCache)>>);

impl Drop for ExitHooks {
    fn drop(&mut self) {
        for (heap, cache) in self.0.borrow_mut().drain(..) {
            if let Some(heap) = heap.upgrade() {
                // SAFETY: we are the thread that registered `cache` for this heap.
                unsafe { heap.thread_exit(cache) };
            }
        }
    }
}

thread_local! {
    static EXIT_HOOKS: ExitHooks = const { ExitHooks(RefCell::new(Vec::new())) };
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
        Heap {
            shared: Arc::new(Shared {
                core: Core::new(source),
                caches: ThreadLocal::new(),
            }),
        }
    }

    /// The heap's core (tests reach its page source and invariants through it).
    pub fn core(&self) -> &Core<S> {
        &self.shared.core
    }

    #[inline(always)]
    fn cache(&self) -> &ThreadCache {
        match self.shared.caches.get() {
            Some(cache) => cache,
            None => self.new_cache(),
        }
    }

    /// This thread's first use of the heap. Out of line: building a cache (a 4 KiB value) inline
    /// would give every `alloc` a 4 KiB stack frame and a stack probe.
    #[cold]
    #[inline(never)]
    fn new_cache(&self) -> &ThreadCache {
        self.shared.caches.get_or(ThreadCache::new)
    }

    /// Puts this thread's cache in service if its exit hook can be registered.
    #[cold]
    fn activate(&self, cache: &ThreadCache) {
        let weak: Weak<dyn ExitHook> = Arc::downgrade(&self.shared) as Weak<dyn ExitHook>;
        let registered = EXIT_HOOKS
            .try_with(|hooks| {
                let mut hooks = hooks.0.borrow_mut();
                hooks.retain(|(h, _)| h.strong_count() > 0);
                hooks.push((weak, cache as *const ThreadCache));
            })
            .is_ok();
        if registered {
            cache.activate();
        }
    }

    /// Allocates for `layout`; null when out of memory.
    #[cfg(not(feature = "instrumented"))]
    #[inline]
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        match class_of(layout.size(), layout.align()) {
            Some(class) => self.take(class),
            None => self.shared.core.large_alloc(layout),
        }
    }

    /// Allocates for `layout`, laid out and marked as this build's checks need; null when out
    /// of memory.
    #[cfg(feature = "instrumented")]
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        crate::instrumented::alloc(self, layout)
    }

    /// A block of `class` from this thread's cache, or the slow path; null when out of memory.
    #[inline(always)]
    fn take(&self, class: Class) -> *mut u8 {
        let cache = self.cache();
        let p = cache.pop(class);
        if !p.is_null() {
            return p;
        }
        self.alloc_slow(cache, class)
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, cache: &ThreadCache, class: Class) -> *mut u8 {
        if cache.state() != CacheState::Active {
            self.activate(cache);
        }
        if cache.state() == CacheState::Active {
            cache.refill(&self.shared.core, class)
        } else {
            self.shared
                .core
                .alloc_block(class)
                .map_or(ptr::null_mut(), NonNull::as_ptr)
        }
    }

    /// Frees what `alloc(layout)` gave. A pointer that is not one of this heap's blocks is
    /// reported as misuse and left alone (so a block of another heap cannot enter this one).
    ///
    /// # Safety
    /// `ptr` came from `alloc(layout)` of this heap and is not used afterwards.
    #[cfg(not(feature = "instrumented"))]
    #[inline]
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if class_of(layout.size(), layout.align()).is_none() {
            // SAFETY: large layouts came from the large path.
            return unsafe { self.shared.core.large_dealloc(ptr, layout) };
        }
        if !self.shared.core.owns(ptr) {
            return report(Misuse::foreign(ptr as usize));
        }
        // SAFETY: the pointer lies in one of this heap's arenas, so its pool header is mapped.
        let tag = unsafe { class_tag(ptr) };
        #[cfg(debug_assertions)]
        crate::misuse::check_layout(ptr, &layout, tag);
        // SAFETY: the caller gives the block up; `tag` is its pool's class tag.
        unsafe { self.give(tag, ptr) }
    }

    /// Frees what `alloc(layout)` gave, after this build's checks; misuse is reported and the
    /// block left alone.
    ///
    /// # Safety
    /// `ptr` came from `alloc(layout)` of this heap and is not used afterwards.
    #[cfg(feature = "instrumented")]
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { crate::instrumented::dealloc(self, ptr, layout) }
    }

    /// Puts a block on this thread's list, or takes the slow path.
    ///
    /// # Safety
    /// The block lies in one of this heap's arenas, `tag` is its pool's class tag, and the
    /// program gave it up.
    #[inline(always)]
    unsafe fn give(&self, tag: u8, ptr: *mut u8) {
        let cache = self.cache();
        // SAFETY: as the precondition says.
        if !unsafe { cache.push(tag, ptr) } {
            // SAFETY: as above.
            unsafe { self.dealloc_slow(cache, tag, ptr) };
        }
    }

    #[cold]
    #[inline(never)]
    unsafe fn dealloc_slow(&self, cache: &ThreadCache, tag: u8, ptr: *mut u8) {
        let core = &self.shared.core;
        let class = (tag as usize).checked_sub(1).and_then(Class::new);
        if class.is_some() && cache.state() != CacheState::Active {
            self.activate(cache);
        }
        match class {
            Some(class) if cache.state() == CacheState::Active => {
                cache.flush(core, class);
                // SAFETY: the block is of `class` and given up; the flush made room.
                let pushed = unsafe { cache.push(tag, ptr) };
                debug_assert!(pushed);
            }
            _ => {
                // SAFETY: `free_block` validates before it touches anything.
                if let Err(e) = unsafe { core.free_block(ptr) } {
                    report(Misuse::BadFree(e));
                }
            }
        }
    }

    /// Gives this thread's cached blocks back to the heap's core.
    pub fn flush_thread_cache(&self) {
        if let Some(cache) = self.shared.caches.get() {
            if cache.state() == CacheState::Active {
                cache.drain(&self.shared.core);
            }
        }
    }

    /// Flushes this thread's cache and unmaps wholly empty arenas beyond the reserve. Caches of
    /// threads that have exited were emptied by their exit hooks. Returns arenas unmapped.
    pub fn collect(&self) -> usize {
        self.flush_thread_cache();
        self.shared.core.collect()
    }

    /// Blocks each class has in the caches of this heap's threads.
    fn held_in_caches(&self) -> [usize; NB_SMALL_SIZE_CLASSES] {
        let mut cached = [0usize; NB_SMALL_SIZE_CLASSES];
        for cache in self.shared.caches.iter() {
            cache.add_held_to(&mut cached);
        }
        cached
    }

    /// A snapshot of the heap, with the blocks held in every thread's cache.
    pub fn stats(&self) -> CoreStats {
        let cached = self.held_in_caches();
        let mut stats = self.shared.core.stats();
        for (class, held) in stats.classes.iter_mut().zip(cached) {
            class.blocks_in_caches = held.min(class.blocks_out);
        }
        stats
    }

    /// The heap's fragmentation snapshot, with the blocks held in every thread's cache.
    pub fn fragmentation(&self) -> Fragmentation {
        let cached = self.held_in_caches();
        let mut frag = self.shared.core.fragmentation();
        frag.set_blocks_in_caches(&cached);
        frag
    }

    pub fn check_invariants(&self) -> Result<(), Violation> {
        self.shared.core.check_invariants()
    }

    /// True when `ptr` lies in one of this heap's arenas.
    pub fn owns(&self, ptr: *const u8) -> bool {
        self.shared.core.owns(ptr)
    }
}

// SAFETY: blocks come from this heap's pools (aligned, big enough, never handed out twice) or the
// system allocator. Nothing here unwinds.
unsafe impl<S: PageSource + 'static> GlobalAlloc for Heap<S> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Heap::alloc(self, layout)
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { Heap::dealloc(self, ptr, layout) }
    }

    #[cfg(not(feature = "instrumented"))]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if class_of(layout.size(), layout.align()).is_none() {
            return self.shared.core.large_alloc_zeroed(layout);
        }
        let p = Heap::alloc(self, layout);
        if !p.is_null() {
            // SAFETY: the block holds at least `layout.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    #[cfg(feature = "instrumented")]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        crate::instrumented::alloc_zeroed(self, layout)
    }

    #[cfg(not(feature = "instrumented"))]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { resize::realloc(self, &self.shared.core, ptr, layout, new_size) }
    }

    #[cfg(feature = "instrumented")]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { crate::instrumented::realloc(self, ptr, layout, new_size) }
    }
}

#[cfg(feature = "instrumented")]
impl<S: PageSource + 'static> crate::instrumented::Pools for Heap<S> {
    type Source = S;

    fn core(&self) -> &Core<S> {
        &self.shared.core
    }

    fn take(&self, class: Class) -> *mut u8 {
        Heap::take(self, class)
    }

    fn owner(&self, ptr: *const u8) -> crate::raw::Owner {
        if self.shared.core.owns(ptr) {
            // SAFETY: the pointer lies in one of this heap's arenas, so its pool header is
            // mapped.
            let tag = unsafe { class_tag(ptr) };
            crate::raw::Owner::Pool { tag }
        } else {
            crate::raw::Owner::Elsewhere
        }
    }

    unsafe fn give(&self, tag: u8, block: *mut u8) {
        // SAFETY: forwarded precondition.
        unsafe { Heap::give(self, tag, block) }
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
            // SAFETY: forwarded contract.
            unsafe { Heap::dealloc(self, ptr.as_ptr(), layout) }
        }
    }
}
