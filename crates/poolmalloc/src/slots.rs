//! Per-thread slots for `Heap` instances: each heap keeps one `ThreadCache` per thread, found by a
//! process-wide thread index, and each thread keeps the list of heaps it has a cache in.
//!
//! The index and the exit hooks belong to one teardown, tied to a pthread key (`exit_key`), which
//! drains the thread's caches *and then* gives the index back. So a cache is never handed to a
//! new thread while its old one may still be draining it, whatever order the C library runs
//! thread-local destructors in (the `thread_local` crate used before released its thread ids in
//! a destructor of its own, which had to run after ours), and whenever in its end the thread
//! first used a heap.
//!
//! Slots live in buckets of doubling size, allocated on first use and never moved: index `i` is
//! in bucket `log2(i + 1)`, so a lookup is two loads and no lock. Before that, each thread
//! remembers the last heap it found its cache in (`LAST`): a thread that uses one heap at a
//! time finds its cache with one compare.

use core::cell::Cell;
use core::ffi::c_void;
use core::ptr;
use std::sync::{Mutex, Weak};

use crate::cache::ThreadCache;
use crate::exit_key::ExitKey;
use crate::sync::atomic::{AtomicPtr, Ordering};

/// No index yet (or no more: the thread is exiting).
const NO_INDEX: usize = usize::MAX;

/// What a thread's exit hook needs of a heap, whatever its page source.
pub(crate) trait ExitHook: Send + Sync {
    /// Gives the pools this thread owns back to the heap's core and leaves the cache unused.
    ///
    /// # Safety
    /// Called on the thread that owns `cache`, which belongs to this heap.
    unsafe fn thread_exit(&self, cache: &ThreadCache);
}

/// The heaps a thread has a cache in, with the cache.
type Hooks = Vec<(Weak<dyn ExitHook>, *const ThreadCache)>;

// `INDEX`: this thread's index, or NO_INDEX, read on every heap request. `HOOKS`: its exit hooks
// (null until the first). Both `const` with no destructor: the teardown (`EXIT`) owns them.
// `LAST`: the id of the heap (`Slots::id`) this thread last found its cache in, and the cache;
// ids are never reused, so a dropped heap's entry never matches again.
thread_local! {
    static INDEX: Cell<usize> = const { Cell::new(NO_INDEX) };
    static HOOKS: Cell<*mut Hooks> = const { Cell::new(ptr::null_mut()) };
    static LAST: Cell<(usize, *const ThreadCache)> = const { Cell::new((0, ptr::null())) };
}

/// Hands out `Slots` ids (0 is `LAST`'s "none").
static NEXT_SLOTS_ID: core::sync::atomic::AtomicUsize = core::sync::atomic::AtomicUsize::new(1);

/// Runs `thread_exit` when a thread that has an index ends.
static EXIT: ExitKey = ExitKey::new(thread_exit);

/// Indices of exited threads, for reuse (their slots hold unused caches).
static FREE_INDICES: Mutex<Vec<usize>> = Mutex::new(Vec::new());
/// The next index never handed out.
static NEXT_INDEX: Mutex<usize> = Mutex::new(0);

/// A thread's teardown (the pthread key's destructor): its caches drain into their heaps, then
/// its index is given back.
unsafe extern "C" fn thread_exit(_: *mut c_void) {
    // From here on the thread finds no cache: its index is about to go to another thread.
    LAST.with(|last| last.set((0, ptr::null())));
    let hooks = HOOKS.with(|h| h.replace(ptr::null_mut()));
    if !hooks.is_null() {
        // SAFETY: `on_thread_exit` made the box and only this thread's teardown takes it.
        let hooks = unsafe { Box::from_raw(hooks) };
        for (heap, cache) in hooks.iter() {
            if let Some(heap) = heap.upgrade() {
                // SAFETY: this thread registered `cache` for this heap, which still lives (so
                // its slots do), and the index is still ours, so no other thread has it.
                unsafe { heap.thread_exit(&**cache) };
            }
        }
    }
    let index = INDEX.with(|i| i.replace(NO_INDEX));
    if index != NO_INDEX {
        lock(&FREE_INDICES).push(index);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// This thread's index, assigned now if it has none; `None` when no teardown can be armed to
/// give it back.
fn this_thread_index() -> Option<usize> {
    let index = INDEX.with(Cell::get);
    if index != NO_INDEX {
        return Some(index);
    }
    // Any non-null value: the teardown finds what it needs in this thread's thread-locals.
    if !EXIT.arm(ptr::NonNull::<c_void>::dangling().as_ptr()) {
        return None;
    }
    let index = lock(&FREE_INDICES).pop().unwrap_or_else(|| {
        let mut next = lock(&NEXT_INDEX);
        *next += 1;
        *next - 1
    });
    INDEX.with(|i| i.set(index));
    Some(index)
}

/// Registers `cache` (this thread's, in its slot) to be drained into `heap` when this thread
/// exits. False when the thread has no index (its teardown could not be armed).
pub(crate) fn on_thread_exit(heap: Weak<dyn ExitHook>, cache: &ThreadCache) -> bool {
    if INDEX.with(Cell::get) == NO_INDEX {
        return false;
    }
    let mut hooks = HOOKS.with(Cell::get);
    if hooks.is_null() {
        hooks = Box::into_raw(Box::default());
        HOOKS.with(|h| h.set(hooks));
    }
    // SAFETY: the box is this thread's (made above or by an earlier call on this thread), and
    // only its teardown frees it, after which the index is gone and this is not reached.
    let hooks = unsafe { &mut *hooks };
    hooks.retain(|(h, _)| h.strong_count() > 0);
    hooks.push((heap, cache as *const ThreadCache));
    true
}

/// Buckets: bucket `b` holds `2^b` slots.
const BUCKETS: usize = usize::BITS as usize;

/// One heap's caches, one per thread index.
pub(crate) struct Slots {
    /// Unique for the life of the process (`LAST`).
    id: usize,
    buckets: [AtomicPtr<AtomicPtr<ThreadCache>>; BUCKETS],
}

// SAFETY: a slot's cache is used by the thread whose index it is (C1); other threads only read
// a cache's atomics (stats), and the pointers are published with release stores.
unsafe impl Sync for Slots {}
// SAFETY: the slots own their buckets and caches; nothing in them is tied to a thread.
unsafe impl Send for Slots {}

/// The bucket and the place in it of index `i`.
#[inline(always)]
fn locate(index: usize) -> (usize, usize) {
    let bucket = (usize::BITS - 1 - (index + 1).leading_zeros()) as usize;
    (bucket, index + 1 - (1 << bucket))
}

impl Slots {
    pub(crate) fn new() -> Slots {
        Slots {
            id: NEXT_SLOTS_ID.fetch_add(1, core::sync::atomic::Ordering::Relaxed),
            buckets: core::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// This thread's cache, if it has one already.
    #[inline(always)]
    pub(crate) fn get(&self) -> Option<&ThreadCache> {
        let (id, cache) = LAST.with(Cell::get);
        if id == self.id {
            // `LAST` names a cache of this heap (ids are unique), found by `find` on this thread
            // while it held its index; the teardown forgets it before the index goes.
            // SAFETY: so the cache is this thread's, and a published cache lives as long as `self`.
            return Some(unsafe { &*cache });
        }
        self.find()
    }

    /// `get` past `LAST`: the bucket lookup, remembered in `LAST`.
    #[inline(never)]
    fn find(&self) -> Option<&ThreadCache> {
        let index = INDEX.with(Cell::get);
        if index == NO_INDEX {
            return None;
        }
        let (bucket, at) = locate(index);
        let slots = self.buckets[bucket].load(Ordering::Acquire);
        if slots.is_null() {
            return None;
        }
        // SAFETY: a bucket of `1 << bucket` slots, published whole (release) and never freed
        // before `self`; `at` is below its length.
        let cache = unsafe { (*slots.add(at)).load(Ordering::Acquire) };
        if !cache.is_null() {
            LAST.with(|last| last.set((self.id, cache)));
        }
        // SAFETY: a published cache lives as long as `self`.
        unsafe { cache.as_ref() }
    }

    /// This thread's cache, made now; `None` when the thread is exiting and can have none.
    pub(crate) fn create(&self) -> Option<&ThreadCache> {
        let index = this_thread_index()?;
        let (bucket, at) = locate(index);
        let mut slots = self.buckets[bucket].load(Ordering::Acquire);
        if slots.is_null() {
            let fresh: Box<[AtomicPtr<ThreadCache>]> = (0..1usize << bucket)
                .map(|_| AtomicPtr::new(ptr::null_mut()))
                .collect();
            let fresh = Box::into_raw(fresh).cast::<AtomicPtr<ThreadCache>>();
            match self.buckets[bucket].compare_exchange(
                ptr::null_mut(),
                fresh,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => slots = fresh,
                Err(theirs) => {
                    // SAFETY: `fresh` was made above with this length and never published.
                    drop(unsafe {
                        Box::from_raw(ptr::slice_from_raw_parts_mut(fresh, 1 << bucket))
                    });
                    slots = theirs;
                }
            }
        }
        // SAFETY: a published bucket of `1 << bucket` slots; `at` is below its length.
        let slot = unsafe { &*slots.add(at) };
        let mut cache = slot.load(Ordering::Acquire);
        if cache.is_null() {
            // Only the thread holding this index writes its slot.
            cache = Box::into_raw(Box::new(ThreadCache::new()));
            slot.store(cache, Ordering::Release);
        }
        // SAFETY: a published cache lives as long as `self`.
        Some(unsafe { &*cache })
    }

    /// Every cache made so far.
    pub(crate) fn for_each(&self, f: &mut dyn FnMut(&ThreadCache)) {
        for (bucket, slots) in self.buckets.iter().enumerate() {
            let slots = slots.load(Ordering::Acquire);
            if slots.is_null() {
                continue;
            }
            for at in 0..1usize << bucket {
                // SAFETY: a published bucket of `1 << bucket` slots; a published cache lives as
                // long as `self`.
                unsafe {
                    if let Some(cache) = (*slots.add(at)).load(Ordering::Acquire).as_ref() {
                        f(cache);
                    }
                }
            }
        }
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        for (bucket, slots) in self.buckets.iter().enumerate() {
            let slots = slots.load(Ordering::Acquire);
            if slots.is_null() {
                continue;
            }
            // SAFETY: the bucket was made by `create` with this length, and `&mut self` means
            // no thread uses it any more; so were the caches in it.
            unsafe {
                let bucket = Box::from_raw(ptr::slice_from_raw_parts_mut(slots, 1 << bucket));
                for slot in bucket.iter() {
                    let cache = slot.load(Ordering::Acquire);
                    if !cache.is_null() {
                        drop(Box::from_raw(cache));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_map_to_distinct_places() {
        let mut seen = std::collections::HashSet::new();
        for index in 0..5000 {
            let (bucket, at) = locate(index);
            assert!(at < 1 << bucket, "index {index} past its bucket");
            assert!(seen.insert((bucket, at)), "index {index} shares a place");
        }
        assert_eq!(locate(0), (0, 0));
        assert_eq!(locate(1), (1, 0));
        assert_eq!(locate(2), (1, 1));
        assert_eq!(locate(3), (2, 0));
    }

    #[test]
    fn an_exited_thread_s_index_is_reused_after_its_hooks_ran() {
        let slots = std::sync::Arc::new(Slots::new());
        let first = std::thread::scope(|s| {
            s.spawn(|| {
                slots.create().unwrap();
                INDEX.with(Cell::get)
            })
            .join()
            .unwrap()
        });
        assert!(lock(&FREE_INDICES).contains(&first));
        let mut count = 0;
        slots.for_each(&mut |_| count += 1);
        assert_eq!(count, 1);
    }
}
