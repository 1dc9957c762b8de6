//! The front end: the thread-cache protocol, written once for every face (rlsf's `global.rs`
//! and mimalloc's `_mi_page_malloc` are the models: the faces are thin adaptors over it).
//!
//! Two parameters say what differs between faces:
//! - a `Home`: where the face's core and its threads' caches live — the process-wide core and
//!   a `const` thread-local for `PoolMalloc` and the C library (`global`), a core and a
//!   slot per thread per instance for `Heap` (`heap`, `slots`);
//! - a `Hooks` (`hooks`): what the build's checks do with a block on its way out and back.
//!
//! ## The protocol
//! - **alloc**: the class of the request → pop this thread's allocation list → on an empty list
//!   the slow path: activate the cache on the thread's first visit (the home registers its exit
//!   hook), then refill from the pools it owns, or take a pool from the core in one lock
//!   acquisition. A thread already inside the slow path (`Home::busy`) is served from the
//!   bootstrap region, never the core whose lock it may hold. No size class → the large path
//!   (`large`), counted in the thread's tally.
//! - **free**: the block's pool — trusted from a small layout where the home allows it, else
//!   only after the registry has said the address is ours (`owner`) → owned by this thread: onto
//!   the pool's own free list (an emptied pool goes back) → else the slow path: one push onto
//!   the owner's remote chain, or under the class lock into a pool the core holds, which this
//!   thread adopts. A pool of no class (a double free, a foreign or interior pointer) always
//!   takes the slow path, where the core validates the free and the misuse is reported. A block
//!   whose first word decodes to a free-list link may be free already: the lists the thread may
//!   read confirm a double free (reported) or clear it (ARCHITECTURE.md, "Double frees").
//! - **thread exit**: the home's exit hook gives the cache's pools to the core (`retire`).
//! - **realloc**: in place when the new size maps to the block's own class, through the C
//!   library when both sizes are on the large path, else move (`resize`).
//! - **stats**: the core's snapshot (owned pools read from their headers) and every thread's
//!   large-block tally (`stats`).

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use poolmalloc_core::{
    class_tag, large, Class, Core, CoreStats, Fragmentation, FreeError, Kind, LargeTally,
    LargeTotals, OwnedPool, PageSource, RemoteFree,
};

use crate::bootstrap;
use crate::cache::{CacheState, CorruptLink, LocalFree, ThreadCache};
use crate::hooks::{class_of_tag, Hooks};
use crate::misuse::{report, Misuse};

/// The hooks `PoolMalloc` and `Heap` use in this build: debug mode's with feature `debug`,
/// secure mode's with feature `secure`, else the plain ones. (The C library picks its hooks when
/// it starts, from `POOLMALLOC_DEBUG` and `POOLMALLOC_SECURE`: `global::capi`.)
#[cfg(feature = "debug")]
pub(crate) type Active = crate::debug::Debug;
/// See the `debug` variant.
#[cfg(all(feature = "secure", not(feature = "debug")))]
pub(crate) type Active = crate::hooks::Secure;
/// See the `debug` variant.
#[cfg(not(any(feature = "debug", feature = "secure")))]
pub(crate) type Active = crate::hooks::Plain;

/// Where a face keeps its core and its threads' caches.
pub(crate) trait Home {
    /// Where the core's arenas come from.
    type Source: PageSource;

    /// True when a block freed with a small layout is known to lie in this home's pools (or
    /// the bootstrap region): the global allocator, which every small layout came from. A
    /// `Heap` asks the registry, since the block may be another heap's.
    const TRUSTS_SMALL_LAYOUT: bool;

    /// The home's core.
    fn core(&self) -> &Core<Self::Source>;

    /// Runs `f` with this thread's cache.
    fn with_cache<R>(&self, f: impl FnOnce(&ThreadCache) -> R) -> R;

    /// This thread's first visit to the slow path: registers the cache's exit hook and puts the
    /// cache in service, or leaves it as it is if the thread is too far into its exit for that.
    fn activate(&self, cache: &ThreadCache);

    /// Runs `f`, a step that enters the core or the C library from the slow path.
    fn slow<R>(&self, f: impl FnOnce() -> R) -> R;

    /// True when this thread is already inside the allocator's slow path: a request now comes
    /// from code the allocator itself called, and must not take a core lock.
    fn busy(&self) -> bool;

    /// True when the home can be `busy`, and so hands out blocks of the bootstrap region.
    const REENTRANT: bool;

    /// Runs `caches` on every cache whose counts stats must see, then `core_tally` on the core's
    /// large-block tally, in one critical section with the threads' exits (which leave their
    /// large-block counts in the core's tally), so that a thread exiting meanwhile is counted
    /// once.
    fn census(&self, caches: &mut dyn FnMut(&ThreadCache), core_tally: &mut dyn FnMut(&LargeTally));
}

/// Who owns a pointer, told without reading memory outside our arenas.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owner {
    /// A block of the home's pools of this kind (its pool header is mapped).
    Pool(Kind),
    /// A block of the bootstrap region (never reused).
    Bootstrap,
    /// Not in our pools: the large path's, or another allocator's.
    Elsewhere,
}

/// The one ownership check: the registry first, and the pool header only once it said ours.
/// Only a reentrant home hands out bootstrap blocks: to a `Heap` one is as foreign as any.
#[inline]
pub(crate) fn owner<H: Home>(home: &H, ptr: *const u8) -> Owner {
    if let Some(kind) = home.core().kind_of(ptr) {
        // The registry says the address lies in one of the core's arenas (A1), of `kind`.
        Owner::Pool(kind)
    } else if H::REENTRANT && bootstrap::contains(ptr) {
        Owner::Bootstrap
    } else {
        Owner::Elsewhere
    }
}

/// A block for `layout` (zero-filled if asked); null when out of memory.
#[inline(always)]
pub(crate) fn alloc<H: Home, K: Hooks>(home: &H, layout: Layout, zeroed: bool) -> *mut u8 {
    let Some(class) = K::class_for(layout.size(), layout.align()) else {
        return alloc_elsewhere::<H, K>(home, layout, zeroed);
    };
    // SAFETY: `class` serves the request.
    unsafe { alloc_in_pool::<H, K>(home, class, Kind::Small, layout, zeroed) }
}

/// A request no small class serves: from a medium class's pool, else the large path.
#[cold]
#[inline(never)]
fn alloc_elsewhere<H: Home, K: Hooks>(home: &H, layout: Layout, zeroed: bool) -> *mut u8 {
    match K::medium_class_for(layout.size(), layout.align()) {
        // SAFETY: `class` serves the request.
        Some(class) => unsafe { alloc_in_pool::<H, K>(home, class, Kind::Medium, layout, zeroed) },
        None => large_alloc::<H, K>(home, layout, zeroed),
    }
}

/// A block of `class` (of `kind`) for `layout`, laid out by the hooks.
///
/// # Safety
/// `class` is `K::pool_class_for(layout.size(), layout.align())`, of `kind`.
#[inline(always)]
unsafe fn alloc_in_pool<H: Home, K: Hooks>(
    home: &H,
    class: Class,
    kind: Kind,
    layout: Layout,
    zeroed: bool,
) -> *mut u8 {
    let block = take::<H, K>(home, class, kind);
    if block.is_null() {
        return block;
    }
    // SAFETY: a block of `class`, just taken for this request of `layout.size()` bytes.
    let user = unsafe { K::on_alloc(block, class, layout.size()) };
    if zeroed {
        // SAFETY: the block holds at least `layout.size()` bytes for the caller; a cached block
        // holds whatever its last owner left.
        unsafe { ptr::write_bytes(user, 0, layout.size()) };
    }
    user
}

/// A block of `class` (of `kind`) from this thread's list, or the slow path; null when out of
/// memory.
#[inline(always)]
fn take<H: Home, K: Hooks>(home: &H, class: Class, kind: Kind) -> *mut u8 {
    match home.with_cache(|cache| cache.pop(class, kind, K::CHECKS_LINKS)) {
        Ok(block) if !block.is_null() => block,
        Ok(_) => alloc_slow::<H, K>(home, class),
        Err(bad) => corrupt_link::<H, K>(home, class, bad),
    }
}

#[cold]
#[inline(never)]
fn alloc_slow<H: Home, K: Hooks>(home: &H, class: Class) -> *mut u8 {
    let core = home.core();
    if home.busy() {
        let block = bootstrap::alloc(class.block_size());
        if !block.is_null() {
            return block;
        }
        // The region is used up: the core it is. This can only block if this thread holds the
        // lock of this very class, which needs a reentrant request of the same class.
        return core
            .alloc_block(class)
            .map_or(ptr::null_mut(), NonNull::as_ptr);
    }
    let got = home.with_cache(|cache| {
        // The current pool's next blocks, without a lock: no need to mark the thread busy.
        match cache.refill_local(class, class.kind(), K::CHECKS_LINKS) {
            Ok(block) if block.is_null() => {}
            done => return done,
        }
        if cache.state() == CacheState::Unused {
            home.activate(cache);
        }
        match cache.state() {
            CacheState::Active => home.slow(|| cache.refill(core, class, K::CHECKS_LINKS)),
            _ => Ok(home
                .slow(|| core.alloc_block(class))
                .map_or(ptr::null_mut(), NonNull::as_ptr)),
        }
    });
    match got {
        Ok(block) => block,
        Err(bad) => corrupt_link::<H, K>(home, class, bad),
    }
}

/// Secure mode found a free block whose link leaves its pool: reported; the list it headed was
/// abandoned, and the request is served from the next blocks.
#[cold]
#[inline(never)]
fn corrupt_link<H: Home, K: Hooks>(home: &H, class: Class, bad: CorruptLink) -> *mut u8 {
    report(Misuse::CorruptLink {
        addr: bad.0 as usize,
        class,
    });
    alloc_slow::<H, K>(home, class)
}

#[cold]
#[inline(never)]
fn large_alloc<H: Home, K: Hooks>(home: &H, layout: Layout, zeroed: bool) -> *mut u8 {
    with_tally(home, |tally| {
        K::large_alloc(home.core(), tally, layout, zeroed)
    })
}

/// Runs `f` with the tally this thread counts its large blocks in: its cache's, once the cache
/// is in service; else a count that goes straight to the core's tally.
fn with_tally<H: Home, R>(home: &H, f: impl FnOnce(&LargeTally) -> R) -> R {
    home.with_cache(|cache| {
        if cache.state() == CacheState::Unused && !home.busy() {
            home.activate(cache);
        }
        if cache.state() == CacheState::Active {
            f(&cache.large)
        } else {
            home.core().large_tally().shared(f)
        }
    })
}

/// Frees what `alloc(layout)` gave (the Rust faces). In the plain build the layout says which
/// path the block is on; the checked builds ask the registry and the block itself.
///
/// # Safety
/// `user` came from this home's `alloc` with `layout` and is not used afterwards.
#[inline(always)]
pub(crate) unsafe fn dealloc<H: Home, K: Hooks>(home: &H, user: *mut u8, layout: Layout) {
    if !K::CHECKS_EVERY_FREE {
        match K::is_small(layout.size(), layout.align()) {
            // SAFETY: forwarded contract.
            false => return unsafe { dealloc_elsewhere::<H, K>(home, user, layout) },
            true if H::TRUSTS_SMALL_LAYOUT => {
                // A small layout's block lies in one of the home's small pools or in the
                // bootstrap region, laid out like small pools.
                // SAFETY: so its pool header is mapped; the program gives it up (precondition).
                return unsafe { free_in_pool::<H, K>(home, user, Some(layout), Kind::Small) };
            }
            true => {}
        }
    }
    // SAFETY: forwarded contract.
    unsafe { free::<H, K>(home, user, Some(layout)) }
}

/// `dealloc` of a block no small class serves: a medium block is found through the registry
/// (it may lie in the bootstrap region), a large layout's block came from the large path.
///
/// # Safety
/// As for `dealloc`.
#[cold]
#[inline(never)]
unsafe fn dealloc_elsewhere<H: Home, K: Hooks>(home: &H, user: *mut u8, layout: Layout) {
    if K::medium_class_for(layout.size(), layout.align()).is_some() {
        // SAFETY: forwarded contract.
        return unsafe { free::<H, K>(home, user, Some(layout)) };
    }
    // SAFETY: a large layout's block came from the large path (precondition).
    unsafe { large_free::<H, K>(home, user, Some(layout)) }
}

/// Frees any pointer the program gives back, finding its owner through the registry; `layout`
/// is the caller's, if it has one (the C library has none). Misuse is reported and the block
/// left alone.
///
/// # Safety
/// If `user` is a live block of this home (or of the C library's allocator, for the C
/// library), nobody uses it afterwards.
#[inline(always)]
pub(crate) unsafe fn free<H: Home, K: Hooks>(home: &H, user: *mut u8, layout: Option<Layout>) {
    match owner(home, user) {
        // SAFETY: the registry said the block is in one of the home's small arenas.
        Owner::Pool(Kind::Small) => unsafe {
            free_in_pool::<H, K>(home, user, layout, Kind::Small)
        },
        // SAFETY: the registry said the block is in one of the home's medium arenas.
        Owner::Pool(Kind::Medium) => unsafe { free_medium::<H, K>(home, user, layout) },
        // Bootstrap blocks are never reused.
        Owner::Bootstrap => {}
        // SAFETY: forwarded contract; the hooks check what they can before freeing.
        Owner::Elsewhere => unsafe { large_free::<H, K>(home, user, layout) },
    }
}

/// `free_in_pool` for a medium block, out of the small path's line: each path has its kind as
/// a constant.
///
/// # Safety
/// `user` lies in one of the home's medium arenas, and the program gives it up.
#[cold]
#[inline(never)]
unsafe fn free_medium<H: Home, K: Hooks>(home: &H, user: *mut u8, layout: Option<Layout>) {
    // SAFETY: forwarded precondition.
    unsafe { free_in_pool::<H, K>(home, user, layout, Kind::Medium) }
}

/// # Safety
/// `user` lies in one of the home's arenas of `kind` (or the bootstrap region, laid out like
/// small pools), and the program gives it up.
#[inline(always)]
unsafe fn free_in_pool<H: Home, K: Hooks>(
    home: &H,
    user: *mut u8,
    layout: Option<Layout>,
    kind: Kind,
) {
    // SAFETY: forwarded precondition.
    let block = match unsafe { K::on_free(user, kind) } {
        Ok(block) => block,
        Err(misuse) => return report(misuse),
    };
    if K::CHECKS_EVERY_FREE || cfg!(debug_assertions) {
        if let Some(layout) = layout {
            // SAFETY: the pool header is mapped (precondition).
            check_layout::<K>(user, layout, unsafe { class_tag(user, kind) });
        }
    }
    // SAFETY: forwarded precondition; `on_free` gave the block's start.
    unsafe { give(home, block, kind) }
}

/// The one layout check: a `dealloc` whose layout maps to another class than the block's pool
/// is reported. The block still goes back to its own class, so no list is corrupted.
fn check_layout<K: Hooks>(user: *mut u8, layout: Layout, tag: u8) {
    let layout_class = K::pool_class_for(layout.size(), layout.align());
    if let (Some(layout_class), Some(block_class)) = (layout_class, class_of_tag(tag)) {
        if layout_class != block_class {
            report(Misuse::LayoutMismatch {
                addr: user as usize,
                layout_class,
                block_class,
            });
        }
    }
}

/// Frees a block of the home's pools: onto its pool's own free list when this thread owns the
/// pool (no lock, no atomic read-modify-write), else the slow path.
///
/// # Safety
/// The block lies in one of the home's arenas of `kind` (or the bootstrap region), and the
/// program gave it up.
#[inline(always)]
unsafe fn give<H: Home>(home: &H, block: *mut u8, kind: Kind) {
    // SAFETY: forwarded precondition.
    match home.with_cache(|cache| unsafe { cache.free_local(block, kind) }) {
        LocalFree::Freed | LocalFree::Unfiled => {}
        // SAFETY: the free emptied the block's pool, which this thread owns.
        LocalFree::Emptied => unsafe { emptied(home, block, kind) },
        // SAFETY: forwarded precondition; `free_local` declined and changed nothing.
        LocalFree::NotOwned => unsafe { free_foreign(home, block, kind) },
        LocalFree::DoubleFree => double_free(block, kind),
    }
}

/// Reports a double free the thread's own lists confirmed; the block stays where it is.
#[cold]
#[inline(never)]
fn double_free(block: *mut u8, kind: Kind) {
    // SAFETY: the thread's own lists found the block free in its pool, of `kind`.
    report(Misuse::BadFree(unsafe {
        FreeError::double_free(block, kind)
    }));
}

/// A local free emptied the block's pool: it becomes the thread's spare or goes to its arena.
/// A thread already inside the allocator leaves it where it is (no core lock may be taken); the
/// pool's next refill or the cache's drain finds it empty.
///
/// # Safety
/// This thread's cache owns the block's pool, of `kind`, and none of its blocks is out.
#[cold]
#[inline(never)]
unsafe fn emptied<H: Home>(home: &H, block: *mut u8, kind: Kind) {
    if home.busy() {
        return;
    }
    home.with_cache(|cache| {
        // SAFETY: forwarded precondition.
        home.slow(|| unsafe { cache.pool_emptied(home.core(), OwnedPool::of(block, kind)) })
    })
}

/// A block of a pool this thread does not own: pushed onto the pool's remote chain, or, if the
/// core holds the pool, freed under the class lock (`free_slow`). Small, apart from the slow
/// step: a consumer thread frees every block here, and a push that paid the slow step's
/// prologue cost it a third more.
///
/// # Safety
/// As for `give`.
#[inline(never)]
unsafe fn free_foreign<H: Home>(home: &H, block: *mut u8, kind: Kind) {
    if H::REENTRANT && bootstrap::contains(block) {
        return;
    }
    // SAFETY: the block lies in one of the home's arenas of `kind` (precondition).
    if class_of_tag(unsafe { class_tag(block, kind) }).is_none() {
        // The pool serves no class: a double free or a bad pointer. The core says which.
        return free_direct(home, block);
    }
    // SAFETY: the block is out, of a pool serving a class that this thread does not own
    // (`free_local` declined), and given up (precondition).
    if unsafe { home.core().push_remote(block, kind) } {
        // One push onto the owner's chain: no lock, so no need to mark the thread busy. (A
        // block that looks free already is not pushed: `free_remote` confirms it or leaves it.)
        return;
    }
    // SAFETY: forwarded precondition; nothing was pushed.
    unsafe { free_slow(home, block, kind) }
}

/// `free_foreign` of a block whose pool the core holds, or that looks free already: freed
/// under the class lock — adopting the pool into this thread's cache when it is in service —
/// or reported.
///
/// # Safety
/// As for `give`, and the block's pool serves a class.
#[cold]
#[inline(never)]
unsafe fn free_slow<H: Home>(home: &H, block: *mut u8, kind: Kind) {
    home.with_cache(|cache| {
        let busy = home.busy();
        if cache.state() == CacheState::Unused && !busy {
            home.activate(cache);
        }
        let adopter = if cache.state() == CacheState::Active && !busy {
            cache.id()
        } else {
            0
        };
        // SAFETY: the block is out, of a pool serving a class that this thread does not own
        // (`free_local` declined), and given up (precondition).
        let freed = home.slow(|| unsafe { home.core().free_remote(block, kind, adopter) });
        match freed {
            Ok(RemoteFree::Adopted(pool)) => {
                // SAFETY: the core made the pool this cache's; the block is still to be freed
                // (it was not on the pool's free list).
                unsafe {
                    cache.adopted(pool);
                    if cache.free_local(block, kind) == LocalFree::Emptied {
                        home.slow(|| cache.pool_emptied(home.core(), pool));
                    }
                }
            }
            Ok(RemoteFree::Pushed | RemoteFree::Freed | RemoteFree::LeftAlone) => {}
            Err(e) => report(Misuse::BadFree(e)),
        }
    })
}

/// Frees through the core, which validates the block first; a refused free is reported.
fn free_direct<H: Home>(home: &H, block: *mut u8) {
    // SAFETY: the caller gives the block up; `free_block` validates it before touching it.
    if let Err(e) = home.slow(|| unsafe { home.core().free_block(block) }) {
        report(Misuse::BadFree(e));
    }
}

/// # Safety
/// As for `Hooks::large_free`.
#[cold]
#[inline(never)]
unsafe fn large_free<H: Home, K: Hooks>(home: &H, user: *mut u8, layout: Option<Layout>) {
    with_tally(home, |tally| {
        // SAFETY: forwarded contract.
        home.slow(|| unsafe { K::large_free(home.core(), tally, user, layout) })
    })
}

/// `GlobalAlloc::realloc` of the Rust faces.
///
/// # Safety
/// `GlobalAlloc::realloc`'s contract, for a block of this home.
pub(crate) unsafe fn realloc<H: Home, K: Hooks>(
    home: &H,
    user: *mut u8,
    layout: Layout,
    new_size: usize,
) -> *mut u8 {
    // A small layout's block lies in one of the home's small pools (the layout says where it
    // is, as for `dealloc`); the registry says where any other block is.
    let place = if K::is_small(layout.size(), layout.align()) {
        Owner::Pool(Kind::Small)
    } else if K::medium_class_for(layout.size(), layout.align()).is_some() {
        owner(home, user)
    } else {
        Owner::Elsewhere
    };
    // SAFETY: forwarded contract.
    unsafe { resize::<H, K>(home, user, place, layout.size(), Some(layout), new_size) }
}

/// The C library's `realloc`: what the old block is comes from the registry and the block.
/// Null (the old block intact) when out of memory or when `user` is misuse (reported).
///
/// # Safety
/// `user` is a live block of this home or of the C library's allocator; `new_size` is
/// non-zero.
pub(crate) unsafe fn realloc_unsized<H: Home, K: Hooks>(
    home: &H,
    user: *mut u8,
    new_size: usize,
) -> *mut u8 {
    let place = owner(home, user);
    // SAFETY: `place` is what the registry says of `user`, a live block (precondition).
    match unsafe { size_of::<H, K>(home, user, place) } {
        // SAFETY: forwarded contract.
        Ok(old_size) => unsafe { resize::<H, K>(home, user, place, old_size, None, new_size) },
        Err(misuse) => {
            report(misuse);
            ptr::null_mut()
        }
    }
}

/// The one realloc decision: in place when the new size maps to the block's own class (and
/// the hooks allow it), through the C library when both sizes are on the large path, else a
/// new block, the smaller size copied, the old block freed.
///
/// # Safety
/// `user` is a live block at `place` of which the program may use `old_size` bytes, from this
/// home's `alloc` with `layout` when given (else from `free`'s family); `new_size` is non-zero
/// and, with the block's alignment, a valid layout.
unsafe fn resize<H: Home, K: Hooks>(
    home: &H,
    user: *mut u8,
    place: Owner,
    old_size: usize,
    layout: Option<Layout>,
    new_size: usize,
) -> *mut u8 {
    let align = layout.map_or_else(|| natural_align(new_size), |l| l.align());
    if K::RESIZES_IN_PLACE {
        match (place, K::pool_class_for(new_size, align)) {
            (Owner::Pool(kind), Some(new))
                // SAFETY: a block of the home's pools of `kind`: its pool header is mapped
                // (precondition).
                if unsafe { class_tag(user, kind) } as usize == new.index() + 1 =>
            {
                return user
            }
            (Owner::Elsewhere, None) => {
                // SAFETY: both sizes are on the large path, so `user` is a C-library block
                // (precondition) aligned to `align`, of `old_size` bytes.
                return with_tally(home, |tally| unsafe {
                    large::realloc(tally, user, old_size, align, new_size)
                });
            }
            _ => {}
        }
    }
    let Ok(new_layout) = Layout::from_size_align(new_size, align) else {
        return ptr::null_mut();
    };
    let new = alloc::<H, K>(home, new_layout, false);
    if !new.is_null() {
        // SAFETY: both blocks hold at least the smaller size and are distinct; the old block is
        // given up (precondition).
        unsafe {
            ptr::copy_nonoverlapping(user, new, old_size.min(new_size));
            match layout {
                Some(layout) => dealloc::<H, K>(home, user, layout),
                None => free::<H, K>(home, user, None),
            }
        }
    }
    new
}

/// The alignment C requires of a block of `size` bytes: `max_align_t`'s (MAX_SMALL_ALIGN) from
/// that size up; below it no type needing more than the grain fits.
#[inline(always)]
pub(crate) fn natural_align(size: usize) -> usize {
    use poolmalloc_core::config::{GRAIN, MAX_SMALL_ALIGN};
    if size >= MAX_SMALL_ALIGN {
        MAX_SMALL_ALIGN
    } else {
        GRAIN
    }
}

/// The bytes the program may use at `user`, which the registry placed at `place`.
///
/// # Safety
/// `user` is a live block of this home or of the C library's allocator, at `place`.
unsafe fn size_of<H: Home, K: Hooks>(
    home: &H,
    user: *mut u8,
    place: Owner,
) -> Result<usize, Misuse> {
    // SAFETY: each branch is the place the registry found (precondition).
    unsafe {
        match place {
            Owner::Pool(kind) => K::pool_size(user, class_tag(user, kind)),
            Owner::Bootstrap => K::bootstrap_size(user),
            Owner::Elsewhere => K::large_size(home.core(), user),
        }
    }
}

/// `malloc_usable_size`: the bytes the program may use at `user`; 0 for misuse (reported).
///
/// # Safety
/// `user` is a live block of this home or of the C library's allocator.
pub(crate) unsafe fn usable_size<H: Home, K: Hooks>(home: &H, user: *mut u8) -> usize {
    let place = owner(home, user);
    // SAFETY: `place` is what the registry says of `user`, a live block (precondition).
    unsafe { size_of::<H, K>(home, user, place) }.unwrap_or_else(|misuse| {
        report(misuse);
        0
    })
}

/// Gives every pool this thread's cache owns back to the core, with the blocks it holds.
pub(crate) fn flush_thread_cache<H: Home>(home: &H) {
    home.with_cache(|cache| {
        if cache.state() == CacheState::Active {
            home.slow(|| cache.drain(home.core()));
        }
    });
}

/// Flushes this thread's cache (its pools' remote frees taken in, empty pools to their arenas)
/// and unmaps wholly empty arenas beyond the reserve.
pub(crate) fn collect<H: Home>(home: &H) -> usize {
    flush_thread_cache(home);
    home.slow(|| home.core().collect())
}

/// The large-block counts of every thread, and of the core's tally.
fn large_totals<H: Home>(home: &H) -> LargeTotals {
    let mut large = LargeTotals::default();
    let mut left = LargeTotals::default();
    home.census(
        &mut |cache| cache.large.add_to(&mut large),
        &mut |core_tally| core_tally.add_to(&mut left),
    );
    large += left;
    large
}

/// The one stats merge: the core's snapshot (its pools, owned or not, read from their headers)
/// and the large path's counts of every thread.
pub(crate) fn stats<H: Home>(home: &H) -> CoreStats {
    let large = large_totals(home);
    let mut stats = home.slow(|| home.core().stats());
    stats.large = large.stats();
    stats.purge.wakeups = crate::purger::wakeups();
    stats
}

/// The fragmentation snapshot.
pub(crate) fn fragmentation<H: Home>(home: &H) -> Fragmentation {
    home.slow(|| home.core().fragmentation())
}
