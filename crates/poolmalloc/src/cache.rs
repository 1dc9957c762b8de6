//! The thread cache: per size class, an intrusive singly-linked list of free blocks.
//!
//! `pop` and `push` are the fast path: a few loads and stores, no lock, no atomic
//! read-modify-write, no allocation. Each list counts its `room`, the pushes it may still take
//! before it is over its bound; `room` is an atomic written only by the owning thread with plain
//! loads and stores (no RMW), so stats can read it from other threads. A list that runs dry
//! refills a batch from the core in one lock acquisition; one with no room left flushes a batch
//! back in one acquisition (both `#[cold]`).
//!
//! Lists are indexed by the one-byte class tag of the block's pool (`class_tag`): class `c`
//! uses list `c + 1`. Every other index — 0 for "pool serving no class", and the values a misused
//! pointer's garbage "header" may hold — has a list whose room is always 0, so such a free always
//! takes the slow path, where it is reported. With 256 lists no index needs a bounds check.
//!
//! The cache holds no reference to its core: every operation that reaches the core is given one.
//! This lets the global allocator keep its caches in a `const`-initialised thread-local, `Heap`
//! keep one per thread per instance, and loom models drive a cache against a core of their own.

use core::cell::Cell;
use core::ptr;

use poolmalloc_core::config::NB_SMALL_SIZE_CLASSES;
use poolmalloc_core::{Class, Core, FreeBlock, LargeTally, PageSource};

use crate::sync::atomic::{AtomicIsize, AtomicU8, Ordering};
use crate::sync::{array_of, const_fn_unless_loom};

/// One class's free list.
struct FreeList {
    head: Cell<*mut FreeBlock>,
    /// Pushes left before the list is over its bound (`cache_bound - length`). May go below zero
    /// only through `push_over_bound`. 0 while the cache is not active.
    room: AtomicIsize,
}

impl FreeList {
    const_fn_unless_loom! {
        fn new() -> FreeList {
            FreeList {
                head: Cell::new(ptr::null_mut()),
                room: AtomicIsize::new(0),
            }
        }
    }

    /// Plain load-add-store: only the owning thread writes `room` (C1).
    #[inline(always)]
    fn add_room(&self, delta: isize) {
        let room = self.room.load(Ordering::Relaxed);
        self.room.store(room + delta, Ordering::Relaxed);
    }
}

/// One list per value of a one-byte class tag.
const LISTS: usize = u8::MAX as usize + 1;
const _: () = assert!(NB_SMALL_SIZE_CLASSES < LISTS);

/// Whether the cache is in service. Only its owning thread changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CacheState {
    /// Never used: lists empty, no room. The first slow-path visit activates it.
    Unused,
    /// In service.
    Active,
    /// Torn down (its thread is exiting): lists empty, no room, requests go to the core.
    Retired,
}

/// A thread's cache. Owned by one thread at a time (C1); other threads only read `room`,
/// `state` and `large`, atomics that the owner writes with plain stores.
pub struct ThreadCache {
    lists: [FreeList; LISTS],
    state: AtomicU8,
    /// This thread's large blocks (`poolmalloc_core::large`), counted here so that counting
    /// them writes no line another thread writes.
    pub large: LargeTally,
}

// SAFETY: the non-atomic fields are only touched by the owning thread (C1); other threads (stats,
// `ThreadLocal::iter`) only read the atomic `room` counts and state.
unsafe impl Sync for ThreadCache {}
// SAFETY: a cache may move to another thread (a `ThreadLocal` slot reused); the blocks it holds
// belong to pools, not threads (ARCHITECTURE.md, "Cross-thread frees").
unsafe impl Send for ThreadCache {}

impl Default for ThreadCache {
    fn default() -> Self {
        ThreadCache::new()
    }
}

impl ThreadCache {
    const_fn_unless_loom! {
        /// An unused cache. `const` so the global allocator's thread-local needs no lazy init.
        pub fn new() -> ThreadCache {
            ThreadCache {
                lists: array_of!(FreeList::new(); LISTS),
                state: AtomicU8::new(CacheState::Unused as u8),
                large: LargeTally::new(),
            }
        }
    }

    /// Where the cache is in its life.
    #[inline]
    pub fn state(&self) -> CacheState {
        match self.state.load(Ordering::Relaxed) {
            0 => CacheState::Unused,
            1 => CacheState::Active,
            _ => CacheState::Retired,
        }
    }

    fn set_state(&self, state: CacheState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    /// Puts the cache in service: every class gets its bound as room.
    pub fn activate(&self) {
        debug_assert!(self.lists.iter().all(|l| l.head.get().is_null()));
        for class in Class::all() {
            let room = class.cache_bound() as isize;
            self.lists[class.index() + 1]
                .room
                .store(room, Ordering::Relaxed);
        }
        self.set_state(CacheState::Active);
    }

    /// Takes a block of `class` from the list, or null when the list is empty.
    #[inline(always)]
    pub fn pop(&self, class: Class) -> *mut u8 {
        // SAFETY: a `Class` index is below NB_SMALL_SIZE_CLASSES, so `index + 1 < LISTS`; the
        // compiler cannot see that through `Class`, and this saves the fast path a bounds check.
        let list = unsafe { self.lists.get_unchecked(class.index() + 1) };
        let head = list.head.get();
        if !head.is_null() {
            // SAFETY: blocks on the list are free blocks of this cache; the first word of each
            // is its link (P2 of the core), written when it was pushed or refilled.
            list.head.set(unsafe { (*head).next });
            list.add_room(1);
        }
        head.cast()
    }

    /// Pushes a free block onto list `tag` (the class tag of its pool). False when the list has
    /// no room (or `tag` is 0): the caller takes its slow path and nothing has changed.
    ///
    /// # Safety
    /// `block` is a block of at least 8 bytes that the caller gives up; when `tag` is a class
    /// index + 1, the block belongs to a pool of that class.
    #[inline(always)]
    pub unsafe fn push(&self, tag: u8, block: *mut u8) -> bool {
        let list = &self.lists[tag as usize];
        if list.room.load(Ordering::Relaxed) <= 0 {
            return false;
        }
        list.add_room(-1);
        let block = block.cast::<FreeBlock>();
        // SAFETY: the caller gave the block up, so its first word is ours for the link.
        unsafe { (*block).next = list.head.get() };
        list.head.set(block);
        true
    }

    /// Pushes even past the bound. For blocks freed while the thread is already inside the
    /// allocator's slow path, which must not re-enter the core: the next ordinary push flushes.
    ///
    /// # Safety
    /// As for `push`, with `class` the block's class.
    pub unsafe fn push_over_bound(&self, class: Class, block: *mut u8) {
        let list = &self.lists[class.index() + 1];
        list.add_room(-1);
        let block = block.cast::<FreeBlock>();
        // SAFETY: as in `push`.
        unsafe { (*block).next = list.head.get() };
        list.head.set(block);
    }

    /// Refills the empty list of `class` with a batch from `core` and pops one block; null when
    /// the core is out of memory.
    #[cold]
    #[inline(never)]
    pub fn refill<S: PageSource>(&self, core: &Core<S>, class: Class) -> *mut u8 {
        let list = &self.lists[class.index() + 1];
        debug_assert!(list.head.get().is_null());
        let batch = core.take_batch(class, class.batch());
        if batch.count == 0 {
            return ptr::null_mut();
        }
        // SAFETY: the chain holds `count` blocks just taken for this cache; its head is ours.
        let rest = unsafe { (*batch.head).next };
        list.head.set(rest);
        list.add_room(-(batch.count as isize - 1));
        batch.head.cast()
    }

    /// Gives one batch of `class` back to `core` (the list is at or past its bound).
    #[cold]
    #[inline(never)]
    pub fn flush<S: PageSource>(&self, core: &Core<S>, class: Class) {
        let list = &self.lists[class.index() + 1];
        let held = self.held(class);
        let count = held.min(class.batch());
        if count == 0 {
            return;
        }
        let head = list.head.get();
        // Cut the first `count` blocks off the list, and leave the list whole before entering
        // the core (a request re-entering the cache from inside the core must see it consistent).
        let mut last = head;
        for _ in 1..count {
            // SAFETY: the list holds at least `count` blocks, linked through their first word.
            last = unsafe { (*last).next };
        }
        // SAFETY: `last` is the count-th block of the list.
        unsafe {
            list.head.set((*last).next);
            (*last).next = ptr::null_mut();
        }
        list.add_room(count as isize);
        // SAFETY: the chain holds `count` distinct blocks of `class` taken from `core` (C2).
        unsafe { core.give_batch(class, head, count) };
    }

    /// Gives every block back to `core`. The cache stays in its state.
    pub fn drain<S: PageSource>(&self, core: &Core<S>) {
        for class in Class::all() {
            while self.held(class) > 0 {
                self.flush(core, class);
            }
        }
    }

    /// Drains the cache into `core` and takes it out of service (thread exit).
    pub fn retire<S: PageSource>(&self, core: &Core<S>) {
        self.drain(core);
        self.close(CacheState::Retired);
    }

    /// Takes an empty cache out of service, leaving no room, in state `state`.
    pub fn close(&self, state: CacheState) {
        for list in &self.lists {
            debug_assert!(list.head.get().is_null());
            list.room.store(0, Ordering::Relaxed);
        }
        self.set_state(state);
    }

    /// Blocks of `class` the list holds. Readable from any thread (an instant's view).
    pub fn held(&self, class: Class) -> usize {
        if self.state() != CacheState::Active {
            return 0;
        }
        let room = self.lists[class.index() + 1].room.load(Ordering::Relaxed);
        (class.cache_bound() as isize - room).max(0) as usize
    }

    /// Adds the blocks this cache holds to per-class counts. Any thread may call it: it reads
    /// only atomics, so it sees an instant's view of a cache in use.
    pub fn add_held_to(&self, counts: &mut [usize; NB_SMALL_SIZE_CLASSES]) {
        for class in Class::all() {
            counts[class.index()] += self.held(class);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use poolmalloc_core::MemPages;

    fn class(i: usize) -> Class {
        Class::new(i).unwrap()
    }

    #[test]
    fn refill_pop_push_flush_keep_counts() {
        let core = Core::new(MemPages::new(2));
        let cache = ThreadCache::new();
        let c = class(3);
        // Unused: nothing to pop, no room to push.
        assert!(cache.pop(c).is_null());
        cache.activate();
        let first = cache.refill(&core, c);
        assert!(!first.is_null());
        assert_eq!(cache.held(c), c.batch() - 1);
        assert_eq!(core.stats().classes[3].blocks_out, c.batch());
        let mut out = vec![first];
        while cache.held(c) > 0 {
            out.push(cache.pop(c));
        }
        assert!(cache.pop(c).is_null());
        let tag = c.index() as u8 + 1;
        for &b in &out {
            // SAFETY: each block is ours and of class `c`.
            assert!(unsafe { cache.push(tag, b) });
        }
        assert_eq!(cache.held(c), c.batch());
        // Fill to the bound, then a push is refused until a flush makes room.
        let more = core.take_batch(c, c.cache_bound());
        let mut b = more.head;
        let mut pushed = 0;
        while !b.is_null() {
            // SAFETY: chain of blocks of class `c`, ours.
            let next = unsafe { (*b).next };
            // SAFETY: a block of class `c` taken from `core` for this test, given to the cache.
            if unsafe { cache.push(tag, b.cast()) } {
                pushed += 1;
            } else {
                cache.flush(&core, c);
                // SAFETY: the same block of class `c`, refused before and given again.
                assert!(unsafe { cache.push(tag, b.cast()) });
                pushed += 1;
            }
            b = next;
        }
        assert_eq!(pushed, c.cache_bound());
        assert!(cache.held(c) <= c.cache_bound());
        cache.retire(&core);
        assert_eq!(cache.state(), CacheState::Retired);
        assert_eq!(cache.held(c), 0);
        assert_eq!(core.stats().classes[3].blocks_out, 0);
        core.check_invariants().unwrap();
        // Retired: a push is refused (the caller frees through the core).
        let x = core.alloc_block(c).unwrap().as_ptr();
        // SAFETY: ours.
        assert!(!unsafe { cache.push(tag, x) });
        // SAFETY: ours, out.
        unsafe { core.free_block(x).unwrap() };
    }

    #[test]
    fn list_zero_never_takes_a_block() {
        let cache = ThreadCache::new();
        cache.activate();
        let mut word = 0u64;
        // SAFETY: the push is refused before the block is touched.
        assert!(!unsafe { cache.push(0, (&mut word as *mut u64).cast()) });
    }

    #[test]
    fn refill_reports_out_of_memory_as_null() {
        let core = Core::new(MemPages::new(1));
        core.source().set_failing(true);
        let cache = ThreadCache::new();
        cache.activate();
        assert!(cache.refill(&core, class(0)).is_null());
        assert_eq!(cache.held(class(0)), 0);
        core.source().set_failing(false);
        assert!(!cache.refill(&core, class(0)).is_null());
        cache.retire(&core);
        core.check_invariants().unwrap();
    }
}
