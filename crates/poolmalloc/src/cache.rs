//! The thread cache: the pools a thread owns, and per size class the list it allocates from.
//!
//! A thread owns the pools it allocates from (mimalloc's free-list sharding, on pymalloc's
//! pools; the core's essay, "Threads own their pools"). Per class the cache keeps:
//! - the **allocation list**: free blocks of the class's *current* pool, detached from it in one
//!   step (`OwnedPool::detach`): its local frees, else its remote frees, else fresh blocks;
//! - the **current** pool, whose blocks the list holds; local frees go back onto the pool's own
//!   free list, not onto the allocation list, so a pool empties as soon as its last block is
//!   freed;
//! - the **used** list: other pools the thread owns with free blocks (filed pools a block came
//!   back to, and pools adopted when a free landed in a core-held one), allocated from when the
//!   current pool is used up;
//! - the **filed** list: its pools used up, *filed* full (`OwnedPool::file`). They stay the
//!   thread's: a local free into one is a local free that moves it to the used list
//!   (`free_filed`), and the first remote free into one sends the cache a notice (O5), which
//!   moves it there before the class looks for its next pool (`take_notices`).
//!
//! Blocks on an allocation list are free blocks of their pool: a pool counts a block out when
//! the owner hands it out (`note_alloc`) and back when it is freed, so a pool empties the moment
//! the program's last block of it comes back, whatever the list holds.
//!
//! A pool that empties stays with its thread, within `KEPT_POOLS` of each kind: the last to
//! empty is `kept`, as it was, current or not; the ones it displaced while still empty are
//! *spares*, off every list, in a stack per class. A pool displaced when the spares are full
//! goes to its arena, where it stays warm for the purge delay. A class that needs a pool takes
//! back one of its own first (a kept or spare pool that served it, as it was), then one the
//! core holds for it, then reformats a spare of another class, and only then takes a new pool. A free that empties the kept pool again is an ordinary
//! local free (`free_local`), so a loop that allocates and frees one block never leaves the
//! fast path.
//!
//! `pop` and `free_local` are the fast path: a few loads and stores, no lock, no atomic
//! read-modify-write, no allocation. Everything that reaches the core is `#[cold]` and is given
//! the core: the cache holds no reference to it, so the global allocator keeps its caches in a
//! `const`-initialised thread-local, `Heap` one per thread per instance, and loom models drive a
//! cache against a core of their own.
//!
//! A cache's id, which the pools it owns carry (`pool_owner`), is the address of its notices:
//! no two live caches share one, and a cache gives up every pool — each once no notice is being
//! sent into it (O5) — before its memory is reused.

use core::cell::Cell;
use core::ptr;

use poolmalloc_core::config::{
    FILED_BYTES, KEPT_POOLS, KINDS, NB_SIZE_CLASSES, NB_SMALL_SIZE_CLASSES,
};
use poolmalloc_core::{
    free_to_own_pool, link_key_for_cache, note_alloc, pool_owner, push_to_own_pool, Class, Core,
    FreeBlock, Kind, LargeTally, Notices, OwnedPool, PageSource, FILED_ID,
};

use crate::sync::atomic::{AtomicU8, Ordering};
use crate::sync::{array_of, const_fn_unless_loom};

/// One class's part of the cache, beside its allocation list (`ThreadCache::heads`).
struct ClassCache {
    /// The pool the allocation list came from, or `NONE`.
    current: Cell<OwnedPool>,
    /// Other pools of the class this thread owns with free blocks (linked through their
    /// headers).
    used: Cell<OwnedPool>,
    /// Its used-up pools, *filed* full (`OwnedPool::file`), linked as `used` is: they stay this
    /// thread's, and leave for `used` when a block comes back to them.
    filed: Cell<OwnedPool>,
}

impl ClassCache {
    const_fn_unless_loom! {
        fn new() -> ClassCache {
            ClassCache {
                current: Cell::new(OwnedPool::NONE),
                used: Cell::new(OwnedPool::NONE),
                filed: Cell::new(OwnedPool::NONE),
            }
        }
    }
}

/// The index of the first class of `kind` (the spares' bit of a class is its index less this).
fn first_class(kind: Kind) -> usize {
    match kind {
        Kind::Small => 0,
        Kind::Medium => NB_SMALL_SIZE_CLASSES,
    }
}

// Each kind's classes fit the bits of `ThreadCache::spare_classes`.
const _: () = assert!(NB_SMALL_SIZE_CLASSES <= 64 && NB_SIZE_CLASSES - NB_SMALL_SIZE_CLASSES <= 64);

/// Hands out `head`, the first block of a chain of free blocks of the current pool (null:
/// none), and makes the rest the allocation list `list`. `checked`: a link that leaves the
/// pool is not followed; the list is abandoned instead.
///
/// # Safety
/// The chain's blocks are free blocks of the current pool of `list`'s class, of `kind`, which
/// this cache owns (C2); `key` is the link key.
#[inline(always)]
unsafe fn hand_out(
    list: &Cell<*mut FreeBlock>,
    head: *mut FreeBlock,
    key: usize,
    kind: Kind,
    checked: bool,
) -> Result<*mut u8, CorruptLink> {
    if FreeBlock::is_end(head) {
        return Ok(ptr::null_mut());
    }
    // SAFETY: a free block of the current pool, this cache's (precondition); the first word
    // of each is its link.
    unsafe {
        let next = FreeBlock::next_with(head, key);
        if checked && !FreeBlock::same_pool(next, head, kind) {
            list.set(ptr::null_mut());
            return Err(CorruptLink(head.cast()));
        }
        list.set(next);
        note_alloc(head.cast(), kind);
    }
    Ok(head.cast())
}

/// Secure mode: the free block at this address has a link that leaves its pool (it was written
/// after it was freed). The allocation list it headed was abandoned, not followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CorruptLink(pub *mut u8);

/// What `ThreadCache::free_local` did with a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocalFree {
    /// The pool is not this cache's: nothing changed (the caller takes the slow path).
    NotOwned,
    /// Freed onto its pool's free list.
    Freed,
    /// Freed into a pool this cache had filed full, which is on its used list again.
    Unfiled,
    /// Freed, and that emptied the pool: the caller hands it to `pool_emptied`.
    Emptied,
    /// Not freed: the block is free already, on one of this cache's lists (a double free).
    DoubleFree,
}

/// Whether the cache is in service. Only its owning thread changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CacheState {
    /// Never used: owns nothing. The first slow-path visit activates it.
    Unused,
    /// In service.
    Active,
    /// Torn down (its thread is exiting): owns nothing, requests go to the core.
    Retired,
}

/// A thread's cache. Owned by one thread at a time (C1); other threads only read its atomics
/// (`state`, `large`), which the owner writes with plain stores, and push onto its notices.
#[repr(C)]
pub struct ThreadCache {
    /// The filed pools that remote frees reached since (`Notices`), pushed by those frees. Its
    /// address is the cache's id.
    notices: Notices,
    /// Per class, the allocation list: free blocks of the class's current pool, linked through
    /// their first word. An array of its own, so that `pop` finds a class's list at
    /// `heads + 8 * class` (one addressing mode, no multiply) and the lists share few lines.
    heads: [Cell<*mut FreeBlock>; NB_SIZE_CLASSES],
    classes: [ClassCache; NB_SIZE_CLASSES],
    /// Of each kind, the last of its pools to empty, kept (or `NONE`): it may have blocks out
    /// again since, which `pool_emptied` and `next_pool` check before they give it up or reuse
    /// it.
    kept: [Cell<OwnedPool>; KINDS],
    /// Per class, the empty pools `kept` displaced that served it (*spares*: not current, on
    /// no other list), newest first, linked through their headers as the used lists are.
    spares: [Cell<OwnedPool>; NB_SIZE_CLASSES],
    /// Of each kind, the classes with a spare (bit: the class's index within its kind), and
    /// how many spares it has (`KEPT_POOLS - 1` at most).
    spare_classes: [Cell<u64>; KINDS],
    spare_len: [Cell<usize>; KINDS],
    /// Bytes of the pools on the filed lists (`FILED_BYTES` at most).
    filed_bytes: Cell<usize>,
    /// The free-list link key (`poolmalloc_core::link_key_for_cache`), copied when the cache
    /// is put in service, before it owns a pool.
    key: Cell<usize>,
    state: AtomicU8,
    /// This thread's large blocks (`poolmalloc_core::large`), counted here so that counting
    /// them writes no line another thread writes.
    pub large: LargeTally,
}

// SAFETY: the non-atomic fields are only touched by the owning thread (C1); other threads (stats)
// only read the atomic counts and state.
unsafe impl Sync for ThreadCache {}
// SAFETY: a cache may move to another thread (a `Heap` slot reused) only after it gave up every
// pool (`drain`), so nothing in it is tied to the thread that used it.
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
                notices: Notices::new(),
                heads: array_of!(Cell::new(ptr::null_mut()); NB_SIZE_CLASSES),
                classes: array_of!(ClassCache::new(); NB_SIZE_CLASSES),
                kept: [Cell::new(OwnedPool::NONE), Cell::new(OwnedPool::NONE)],
                spares: array_of!(Cell::new(OwnedPool::NONE); NB_SIZE_CLASSES),
                spare_classes: [Cell::new(0), Cell::new(0)],
                spare_len: [Cell::new(0), Cell::new(0)],
                filed_bytes: Cell::new(0),
                key: Cell::new(0),
                state: AtomicU8::new(CacheState::Unused as u8),
                large: LargeTally::new(),
            }
        }
    }

    /// The id the pools this cache owns carry: the address of its notices, where remote frees
    /// find them.
    #[inline(always)]
    pub fn id(&self) -> usize {
        &self.notices as *const Notices as usize
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

    /// True when a notice waits (the loom models check that none reaches a drained cache).
    pub fn notices_waiting(&self) -> bool {
        !self.notices.is_empty()
    }

    /// Puts the cache in service.
    pub fn activate(&self) {
        self.key.set(link_key_for_cache());
        self.set_state(CacheState::Active);
    }

    /// Takes a block of `class` (of `kind`, which the caller knows as a constant) from its
    /// allocation list, or null when the list is empty. `checked` (secure mode): the next
    /// block's link is followed only if it stays in the pool (`CorruptLink` otherwise).
    #[inline(always)]
    pub fn pop(&self, class: Class, kind: Kind, checked: bool) -> Result<*mut u8, CorruptLink> {
        debug_assert_eq!(class.kind(), kind);
        // SAFETY: a `Class` index is below NB_SIZE_CLASSES; the compiler cannot see that
        // through `Class`, and this saves the fast path a bounds check.
        let list = unsafe { self.heads.get_unchecked(class.index()) };
        // SAFETY: the list holds free blocks of the current pool, which this cache owns (C2).
        unsafe { hand_out(list, list.get(), self.key.get(), kind, checked) }
    }
    /// Frees `block` if its pool is this cache's: onto the pool's own free list — unless it is
    /// there already, or on the allocation list or the remote chain (a double free: the first
    /// word says it may be, and a walk of those lists confirms it).
    ///
    /// # Safety
    /// `block` lies in a pool of `kind` of our arenas (or the bootstrap region, laid out like
    /// small pools), and the program gives it up.
    #[inline(always)]
    pub unsafe fn free_local(&self, block: *mut u8, kind: Kind) -> LocalFree {
        // SAFETY: the pool header is mapped (precondition).
        let owner = unsafe { pool_owner(block, kind) };
        if owner != self.id() {
            // Tested here, not in `free_filed`: a remote free (every free of a consumer
            // thread) paid that call's prologue to learn it.
            if owner != self.id() | FILED_ID {
                return LocalFree::NotOwned;
            }
            // SAFETY: forwarded precondition; the pool is this cache's, filed.
            return unsafe { self.free_filed(block, kind) };
        }
        // SAFETY: the pool is this cache's, so the block lies in a carved pool; the program
        // gives it up (precondition).
        match unsafe { free_to_own_pool(block, self.key.get(), kind) } {
            Some(false) => LocalFree::Freed,
            // The pool this thread keeps emptied again (a loop of one alloc and one free, or a
            // kept pool reused): it stays kept, and the free stays on the fast path.
            Some(true) if self.kept[kind as usize].get() == OwnedPool::of(block, kind) => {
                LocalFree::Freed
            }
            Some(true) => LocalFree::Emptied,
            // SAFETY: as above.
            None => unsafe { self.confirm_free(block, kind) },
        }
    }

    /// `free_local` of a block of this cache's filed pool (its owner word is this cache's id
    /// with `FILED_ID`): the pool goes back to the used list and the block is freed into it, a
    /// local free (no lock, no atomic read-modify-write).
    ///
    /// # Safety
    /// As for `free_local`, and the block's pool is this cache's, filed.
    #[cold]
    #[inline(never)]
    unsafe fn free_filed(&self, block: *mut u8, kind: Kind) -> LocalFree {
        let pool = OwnedPool::of(block, kind);
        // SAFETY: this cache's filed pool; the block lies in it and is given up (precondition).
        unsafe {
            self.unfile(pool);
            match free_to_own_pool(block, self.key.get(), kind) {
                Some(false) => LocalFree::Unfiled,
                Some(true) => LocalFree::Emptied,
                None => self.confirm_free(block, kind),
            }
        }
    }

    /// The double-free check's confirming walk, for a block of a pool this cache owns whose
    /// first word looks like a link: a double free if the block is on the allocation list, the
    /// pool's free list or its remote chain; else it is freed.
    ///
    /// # Safety
    /// This cache owns the block's pool, of `kind`, and the program gives the block up.
    #[cold]
    #[inline(never)]
    unsafe fn confirm_free(&self, block: *mut u8, kind: Kind) -> LocalFree {
        let pool = OwnedPool::of(block, kind);
        // SAFETY: owned by this cache (precondition); the allocation list is its blocks.
        unsafe {
            let index = pool.class().index();
            let head = self.heads[index].get();
            if (self.classes[index].current.get() == pool
                && FreeBlock::chain_holds(head, block.cast(), kind))
                || pool.holds_free(block)
            {
                return LocalFree::DoubleFree;
            }
            if push_to_own_pool(block, kind) {
                LocalFree::Emptied
            } else {
                LocalFree::Freed
            }
        }
    }

    /// Moves a filed pool to the used list of its class.
    ///
    /// # Safety
    /// This cache owns `pool`, which is filed.
    unsafe fn unfile(&self, pool: OwnedPool) {
        // SAFETY: owned by this cache and on its filed list (precondition).
        unsafe {
            let cc = &self.classes[pool.class().index()];
            cc.filed.set(pool.unlink(cc.filed.get()));
            pool.unfile();
            let size = pool.class().kind().pool_size();
            self.filed_bytes.set(self.filed_bytes.get() - size);
            cc.used.set(pool.push_front(cc.used.get()));
        }
    }

    /// Takes the notices remote frees sent: each pool among them still filed goes to its used
    /// list. Run before a pool is filed or given
    /// up (`Notices::take`'s precondition). One load while none waits.
    fn take_notices(&self) {
        if self.notices.is_empty() {
            return;
        }
        // SAFETY: our notices; every pool given up since they were last taken was given up
        // after a `take_notices` that found it off them, and a pool this cache no longer owns
        // is sent no notice here (O5).
        unsafe { self.notices.take(|pool| self.unfile(pool)) };
    }

    /// A free emptied `pool`: it is kept, and the pool of its kind kept before becomes a spare
    /// if it is still empty.
    ///
    /// # Safety
    /// This cache owns `pool`, and none of its blocks is out.
    #[cold]
    #[inline(never)]
    pub unsafe fn pool_emptied<S: PageSource>(&self, core: &Core<S>, pool: OwnedPool) {
        // SAFETY: owned by this cache (precondition).
        let kind = unsafe { pool.class() }.kind();
        let old = self.kept[kind as usize].replace(pool);
        if old.is_none() || old == pool {
            return;
        }
        // SAFETY: `old` is this cache's (a pool leaves `kept` only by being reused or given up).
        unsafe {
            if old.out() == 0 {
                self.unhook(old);
                self.keep_spare(core, old, kind);
            }
        }
    }

    /// Takes an empty pool off this cache's lists: as the current pool, its allocation list
    /// dropped and the pool reformatted for its class (constant time, where giving the list
    /// back would walk it: the service spent 6 % of its time there), or off the used list.
    ///
    /// # Safety
    /// This cache owns `pool`, none of its blocks is out, and it is current or on the used list.
    unsafe fn unhook(&self, pool: OwnedPool) {
        // SAFETY: owned by this cache (precondition); as the current pool with none of its
        // blocks out, every block of it is free, so dropping its lists loses nothing.
        unsafe {
            let class = pool.class();
            let cc = &self.classes[class.index()];
            if cc.current.get() == pool {
                self.heads[class.index()].set(ptr::null_mut());
                pool.reformat(class, self.id());
                cc.current.set(OwnedPool::NONE);
            } else {
                cc.used.set(pool.unlink(cc.used.get()));
            }
        }
    }

    /// Takes the kept pool off this cache's lists and out of `kept`.
    ///
    /// # Safety
    /// The kept pool is empty (so current or on the used list).
    unsafe fn take_kept(&self, kept: &Cell<OwnedPool>) -> OwnedPool {
        let pool = kept.replace(OwnedPool::NONE);
        // SAFETY: this cache's, empty, current or on the used list (precondition).
        unsafe { self.unhook(pool) };
        pool
    }

    /// Keeps `pool`, empty and on no list, as a spare of its class — unless its kind keeps as
    /// many as `KEPT_POOLS` allows: then it goes to its arena (the spares kept are taken by
    /// their classes, or reformatted for others, in their turn).
    ///
    /// # Safety
    /// This cache owns `pool`, of `kind`, none of its blocks is out, and it is on no list.
    unsafe fn keep_spare<S: PageSource>(&self, core: &Core<S>, pool: OwnedPool, kind: Kind) {
        let len = &self.spare_len[kind as usize];
        // SAFETY: forwarded precondition; the spares are this cache's, on no other list.
        let index = unsafe {
            if len.get() == KEPT_POOLS[kind as usize] - 1 {
                self.take_notices();
                return core.give_empty(pool);
            }
            let index = pool.class().index();
            let spares = &self.spares[index];
            spares.set(pool.push_front(spares.get()));
            index
        };
        let classes = &self.spare_classes[kind as usize];
        classes.set(classes.get() | 1 << (index - first_class(kind)));
        len.set(len.get() + 1);
    }

    /// Takes a spare of `class`'s kind: the newest that served `class`, else, if `any`, one of
    /// another class; `NONE` if there is none.
    fn take_spare(&self, class: Class, any: bool) -> OwnedPool {
        let kind = class.kind();
        let classes = &self.spare_classes[kind as usize];
        let index = if !self.spares[class.index()].get().is_none() {
            class.index()
        } else if any && classes.get() != 0 {
            first_class(kind) + classes.get().trailing_zeros() as usize
        } else {
            return OwnedPool::NONE;
        };
        let spares = &self.spares[index];
        let pool = spares.get();
        // SAFETY: the spares are this cache's; `pool` heads its class's.
        let rest = unsafe { pool.unlink(pool) };
        spares.set(rest);
        if rest.is_none() {
            classes.set(classes.get() & !(1 << (index - first_class(kind))));
        }
        let len = &self.spare_len[kind as usize];
        len.set(len.get() - 1);
        pool
    }

    /// A pool the core just made this cache's (a free landed in it while the core held it):
    /// on the used list of its class.
    ///
    /// # Safety
    /// This cache owns `pool`, which is on no list.
    pub unsafe fn adopted(&self, pool: OwnedPool) {
        // SAFETY: owned by this cache, on no list (precondition).
        unsafe {
            let cc = &self.classes[pool.class().index()];
            cc.used.set(pool.push_front(cc.used.get()));
        }
    }

    /// The allocation list of `class` (of `kind`) is empty: detaches the next blocks from the
    /// current pool (no lock) and pops one; null when there is no current pool or it is used
    /// up.
    #[inline]
    pub fn refill_local(
        &self,
        class: Class,
        kind: Kind,
        checked: bool,
    ) -> Result<*mut u8, CorruptLink> {
        let list = &self.heads[class.index()];
        debug_assert!(FreeBlock::is_end(list.get()));
        let current = self.classes[class.index()].current.get();
        if current.is_none() {
            return Ok(ptr::null_mut());
        }
        // SAFETY: the current pool is this cache's; the chain `detach` gives holds free blocks
        // of it.
        unsafe { hand_out(list, current.detach(), self.key.get(), kind, checked) }
    }

    /// The allocation list of `class` is empty: detaches the next blocks from the current pool,
    /// or moves on to another pool — one of its used pools, the kept empty pool, or one from the
    /// core — and pops one block; null when the core is out of memory.
    #[cold]
    #[inline(never)]
    pub fn refill<S: PageSource>(
        &self,
        core: &Core<S>,
        class: Class,
        checked: bool,
    ) -> Result<*mut u8, CorruptLink> {
        let cc = &self.classes[class.index()];
        let kept = &self.kept[class.kind() as usize];
        loop {
            let block = self.refill_local(class, class.kind(), checked)?;
            if !block.is_null() {
                return Ok(block);
            }
            let current = cc.current.get();
            if !current.is_none() {
                let size = class.kind().pool_size();
                let filing = self.filed_bytes.get() + size <= FILED_BYTES;
                // Used up: filed full, the thread's still — unless a remote free came
                // meanwhile, which the next detach takes. Beyond `FILED_BYTES`, to the core.
                // SAFETY: the current pool is this cache's and on no other list; given up, no
                // notice is sent into it or waits for it (O5).
                unsafe {
                    if filing && !current.file(|| self.take_notices()) {
                        continue;
                    }
                    cc.current.set(OwnedPool::NONE);
                    if kept.get() == current {
                        kept.set(OwnedPool::NONE);
                    }
                    if filing {
                        cc.filed.set(current.push_front(cc.filed.get()));
                        self.filed_bytes.set(self.filed_bytes.get() + size);
                    } else {
                        current.quiesce();
                        self.take_notices();
                        core.release_pool(current);
                    }
                }
            }
            let next = self.next_pool(core, class);
            if next.is_none() {
                return Ok(ptr::null_mut());
            }
            cc.current.set(next);
        }
    }

    /// The pool `class` allocates from next (its current pool is used up and filed); `NONE`
    /// when the core is out of memory.
    fn next_pool<S: PageSource>(&self, core: &Core<S>, class: Class) -> OwnedPool {
        // Filed pools that remote frees reached come first, with the other used ones.
        self.take_notices();
        let cc = &self.classes[class.index()];
        let used = cc.used.get();
        let kept_cell = &self.kept[class.kind() as usize];
        let kept = kept_cell.get();
        // SAFETY: every pool named here is this cache's, off its lists once unlinked or taken
        // from the spares; `kept` is empty (hence current or on the used list) when reused.
        unsafe {
            if !used.is_none() {
                cc.used.set(used.unlink(used));
                return used;
            }
            let kept_empty = !kept.is_none() && kept.out() == 0;
            // One of the class's own pools first, as it was: kept, or a spare.
            let mut pool = if kept_empty && kept.class() == class {
                self.take_kept(kept_cell)
            } else {
                self.take_spare(class, false)
            };
            if pool.is_none() {
                let any_spare = kept_empty || self.spare_len[class.kind() as usize].get() > 0;
                if !any_spare {
                    return core.take_pool(class, self.id()).unwrap_or(OwnedPool::NONE);
                }
                // The spares serve other classes, which may come back for them: a pool that
                // serves this class already comes first.
                if let Some(pool) = core.take_pool_of_class(class, self.id()) {
                    return pool;
                }
                // Else another class's: a spare, else the kept pool.
                pool = self.take_spare(class, true);
                if pool.is_none() {
                    pool = self.take_kept(kept_cell);
                }
            }
            pool.reuse(class, self.id());
            pool
        }
    }

    /// Gives every pool back: the allocation lists' blocks to their pools, then each pool to the
    /// core (to its arena if empty). The cache stays in its state.
    pub fn drain<S: PageSource>(&self, core: &Core<S>) {
        for kept in &self.kept {
            kept.set(OwnedPool::NONE);
        }
        for class in (0..NB_SIZE_CLASSES).filter_map(Class::new) {
            loop {
                let spare = self.take_spare(class, false);
                if spare.is_none() {
                    break;
                }
                // SAFETY: spares are this cache's, empty and on no list.
                unsafe { core.give_empty(spare) };
            }
        }
        for (cc, list) in self.classes.iter().zip(&self.heads) {
            let current = cc.current.replace(OwnedPool::NONE);
            if !current.is_none() {
                // SAFETY: the list holds unused free blocks of the current pool, which is this
                // cache's and, no longer current, on no list.
                unsafe {
                    current.give_back(list.replace(ptr::null_mut()));
                    core.release_pool(current);
                }
            }
            for list in [&cc.used, &cc.filed] {
                let mut pool = list.replace(OwnedPool::NONE);
                while !pool.is_none() {
                    // SAFETY: pools on the used and filed lists are this cache's; read the link
                    // first.
                    unsafe {
                        let next = pool.next();
                        core.release_pool(pool);
                        pool = next;
                    }
                }
            }
        }
        // Each pool was given up once no notice was being sent into it (O5): none comes now,
        // and those that came are for pools given up.
        self.notices.forget();
        self.filed_bytes.set(0);
    }

    /// Drains the cache into `core` and takes it out of service (thread exit).
    pub fn retire<S: PageSource>(&self, core: &Core<S>) {
        self.drain(core);
        self.close(CacheState::Retired);
    }

    /// Takes a drained cache out of service, in state `state`.
    pub fn close(&self, state: CacheState) {
        debug_assert!(self.classes.iter().all(|cc| cc.current.get().is_none()));
        self.set_state(state);
    }
}
#[cfg(test)]
mod tests {
    use super::*;
    use poolmalloc_core::config::POOL_OVERHEAD;
    use poolmalloc_core::{MemPages, RemoteFree};

    fn class(i: usize) -> Class {
        Class::new(i).unwrap()
    }

    /// Frees as the front end does: locally, else through the core (adopting into `cache`).
    fn free(core: &Core<MemPages>, cache: &ThreadCache, block: *mut u8) {
        let kind = core.kind_of(block).expect("a block of the core");
        // SAFETY: test blocks are out, of `core`'s pools, and given up.
        unsafe {
            match cache.free_local(block, kind) {
                LocalFree::Freed | LocalFree::Unfiled => {}
                LocalFree::Emptied => cache.pool_emptied(core, OwnedPool::of(block, kind)),
                LocalFree::DoubleFree => panic!("double free of {block:p}"),
                LocalFree::NotOwned => match core.free_remote(block, kind, cache.id()).unwrap() {
                    RemoteFree::Adopted(pool) => {
                        cache.adopted(pool);
                        free(core, cache, block);
                    }
                    RemoteFree::Pushed | RemoteFree::Freed => {}
                    RemoteFree::LeftAlone => panic!("left alone: {block:p}"),
                },
            }
        }
    }

    fn alloc(core: &Core<MemPages>, cache: &ThreadCache, c: Class) -> *mut u8 {
        let b = cache.pop(c, c.kind(), true).unwrap();
        if b.is_null() {
            cache.refill(core, c, true).unwrap()
        } else {
            b
        }
    }

    #[test]
    fn a_pool_serves_its_owner_and_the_last_to_empty_is_kept() {
        let core = Core::new(MemPages::new(2));
        let cache = ThreadCache::new();
        cache.activate();
        let c = class(63);
        let per_pool = c.blocks_per_pool();
        let blocks: Vec<_> = (0..per_pool).map(|_| alloc(&core, &cache, c)).collect();
        let pool = OwnedPool::of(blocks[0], Kind::Small);
        assert!(blocks
            .iter()
            .all(|&b| OwnedPool::of(b, Kind::Small) == pool));
        for &b in &blocks {
            // SAFETY: a block of our arenas, so its pool header is mapped.
            assert_eq!(unsafe { pool_owner(b, Kind::Small) }, cache.id());
        }
        let s = core.stats().classes[63];
        assert_eq!((s.pools_used, s.blocks_out), (1, per_pool));
        // The next block needs a new pool: the used-up one is filed full, still the cache's.
        let extra = alloc(&core, &cache, c);
        assert_ne!(OwnedPool::of(extra, Kind::Small), pool);
        let s = core.stats().classes[63];
        assert_eq!((s.pools_used, s.pools_full), (1, 1));
        core.check_invariants().unwrap();
        // SAFETY: the cache owns the pool; its header is mapped.
        let (filed, owner) = unsafe { (pool.is_filed(), pool_owner(blocks[0], Kind::Small)) };
        assert!(filed && owner == cache.id() | FILED_ID);
        // A free into the filed pool is a local free that unfiles it; freeing all of it
        // empties it: it is kept.
        for &b in &blocks {
            free(&core, &cache, b);
        }
        assert_eq!(core.stats().classes[63].pools(), 2);
        core.check_invariants().unwrap();
        // The current pool empties too: it is kept instead, the other stays as a spare.
        free(&core, &cache, extra);
        assert_eq!(core.stats().classes[63].pools(), 2);
        // The next class that needs a pool reformats the spare; the kept pool stays.
        let other = alloc(&core, &cache, class(0));
        assert_eq!(
            OwnedPool::of(other, Kind::Small),
            pool,
            "the spare serves class 0"
        );
        assert_eq!(core.stats().classes[63].pools(), 1);
        free(&core, &cache, other);
        cache.retire(&core);
        assert_eq!(cache.state(), CacheState::Retired);
        let s = core.stats();
        assert_eq!(s.pools_in_use(), 0);
        assert_eq!(s.arenas.mapped, 1, "only the reserve arena is left");
        core.check_invariants().unwrap();
    }

    #[test]
    fn each_kind_keeps_its_own_emptied_pool() {
        let core = Core::new(MemPages::new(4));
        let cache = ThreadCache::new();
        cache.activate();
        let (small, medium) = (class(0), class(NB_SIZE_CLASSES - 1));
        assert_eq!(medium.kind(), Kind::Medium);
        let mb: Vec<_> = (0..medium.blocks_per_pool())
            .map(|_| alloc(&core, &cache, medium))
            .collect();
        let mpool = OwnedPool::of(mb[0], Kind::Medium);
        assert!(mb.iter().all(|&b| OwnedPool::of(b, Kind::Medium) == mpool));
        let sb = alloc(&core, &cache, small);
        // Both pools empty: each is kept, neither gives the other up.
        for &b in &mb {
            free(&core, &cache, b);
        }
        free(&core, &cache, sb);
        let s = core.stats();
        assert_eq!(s.classes[medium.index()].pools(), 1);
        assert_eq!(s.classes[small.index()].pools(), 1);
        // Another medium class reuses the kept medium pool, another small class the small one.
        let m2 = alloc(&core, &cache, class(NB_SIZE_CLASSES - 2));
        assert_eq!(OwnedPool::of(m2, Kind::Medium), mpool);
        let s2 = alloc(&core, &cache, class(5));
        assert_eq!(
            OwnedPool::of(s2, Kind::Small),
            OwnedPool::of(sb, Kind::Small)
        );
        // A medium block freed by another cache goes onto the owner's remote chain.
        let other = ThreadCache::new();
        other.activate();
        free(&core, &other, m2);
        assert_eq!(core.stats().classes[NB_SIZE_CLASSES - 2].blocks_out, 1);
        free(&core, &cache, s2);
        cache.retire(&core);
        other.retire(&core);
        let s = core.stats();
        assert_eq!(s.pools_in_use(), 0);
        assert!(s.arenas_of_kind.iter().all(|&n| n <= 1));
        core.check_invariants().unwrap();
    }

    #[test]
    fn a_thread_keeps_as_many_medium_pools_as_kept_pools_says() {
        let core = Core::new(MemPages::new(8));
        let cache = ThreadCache::new();
        cache.activate();
        let m = class(NB_SIZE_CLASSES - 1);
        let kept = KEPT_POOLS[Kind::Medium as usize];
        // One pool more than the cache keeps, each full.
        let blocks: Vec<_> = (0..(kept + 1) * m.blocks_per_pool())
            .map(|_| alloc(&core, &cache, m))
            .collect();
        assert_eq!(core.stats().classes[m.index()].pools(), kept + 1);
        for &b in &blocks {
            free(&core, &cache, b);
        }
        assert_eq!(
            core.stats().classes[m.index()].pools(),
            kept,
            "the cache keeps KEPT_POOLS medium pools; the one more goes to its arena"
        );
        cache.retire(&core);
        assert_eq!(core.stats().pools_in_use(), 0);
        core.check_invariants().unwrap();
    }

    #[test]
    fn a_class_takes_back_its_own_pools_before_the_spare_of_another() {
        // With a delay, a pool given to its arena stays warm, as its class left it.
        let core = Core::with_purge_delay(MemPages::new(4), 1_000);
        let cache = ThreadCache::new();
        cache.activate();
        // A pool of class a, then as many full pools of b as the cache keeps. a's block is
        // freed first, then b's: each pool that empties is kept and the one it displaces
        // becomes a spare, until the spares are full: the last b pool displaced goes to its
        // arena.
        let (a, b) = (class(10), class(63));
        let (kept, per_pool) = (KEPT_POOLS[Kind::Small as usize], b.blocks_per_pool());
        let ba = alloc(&core, &cache, a);
        let pa = OwnedPool::of(ba, Kind::Small);
        let bs: Vec<_> = (0..kept * per_pool)
            .map(|_| alloc(&core, &cache, b))
            .collect();
        let mut pbs: Vec<_> = bs.iter().map(|&x| OwnedPool::of(x, Kind::Small)).collect();
        pbs.dedup();
        assert_eq!(pbs.len(), kept);
        free(&core, &cache, ba);
        for &x in &bs {
            free(&core, &cache, x);
        }
        let pools_of = |c: Class| core.stats().classes[c.index()].pools();
        assert_eq!(pools_of(a), 1, "a's pool is a spare");
        assert_eq!(pools_of(b), kept - 1, "one of b's went to its arena");
        // b fills as many pools again: its kept pool and spares, then its pool from the arena,
        // as it was — before a's spare is reformatted. (Under valgrind or ASan no pool is
        // taken back from an arena as it was: the tools' marks are renewed by a fresh format
        // only, and a's spare serves first.)
        let tools = poolmalloc_core::tools::ENABLED;
        let again: Vec<_> = (0..kept * per_pool)
            .map(|_| alloc(&core, &cache, b))
            .collect();
        let mut pools: Vec<_> = again
            .iter()
            .map(|&x| OwnedPool::of(x, Kind::Small))
            .collect();
        pools.dedup();
        assert_eq!(pools.len(), kept, "each pool filled before the next");
        assert_eq!(
            pools.contains(&pa),
            tools,
            "a's spare serves b only under the tools"
        );
        // One more pool for b: a's spare, reformatted, rather than a new pool.
        let more = alloc(&core, &cache, b);
        if !tools {
            assert_eq!(OwnedPool::of(more, Kind::Small), pa);
        }
        assert_eq!(pools_of(a), 0);
        for &x in again.iter().chain([&more]) {
            free(&core, &cache, x);
        }
        cache.retire(&core);
        assert_eq!(core.stats().pools_in_use(), 0);
        core.check_invariants().unwrap();
    }

    #[test]
    fn remote_frees_come_back_to_the_owner() {
        let core = Core::new(MemPages::new(2));
        let owner = ThreadCache::new();
        let other = ThreadCache::new();
        owner.activate();
        other.activate();
        // A whole pool's blocks, so that its next blocks can only come from its remote chain.
        let c = class(63);
        let n = c.blocks_per_pool();
        let blocks: Vec<_> = (0..n).map(|_| alloc(&core, &owner, c)).collect();
        assert!(blocks
            .iter()
            .all(|&b| OwnedPool::of(b, Kind::Small) == OwnedPool::of(blocks[0], Kind::Small)));
        // Freed by the other cache: pushed onto the pool's remote chain, still counted out.
        for &b in &blocks {
            free(&core, &other, b);
        }
        assert_eq!(core.stats().classes[63].blocks_out, n);
        // The owner's list is empty and the pool fully carved: the refill takes the chain.
        let again: Vec<_> = (0..n).map(|_| alloc(&core, &owner, c)).collect();
        let mut sorted = again.clone();
        sorted.sort();
        let mut expect = blocks.clone();
        expect.sort();
        assert_eq!(sorted, expect, "the same blocks, each handed out once");
        for &b in &again {
            free(&core, &owner, b);
        }
        owner.retire(&core);
        other.retire(&core);
        assert_eq!(core.stats().pools_in_use(), 0);
        core.check_invariants().unwrap();
    }

    #[test]
    fn remote_frees_come_back_before_fresh_blocks_are_carved() {
        let core = Core::new(MemPages::new(2));
        let owner = ThreadCache::new();
        let other = ThreadCache::new();
        owner.activate();
        other.activate();
        // The first carve's blocks, so the owner's allocation list is empty after it, and the
        // pool has room to carve more.
        let c = class(0);
        let first = c.carve_at(POOL_OVERHEAD);
        assert!(first < c.blocks_per_pool());
        let blocks: Vec<_> = (0..first).map(|_| alloc(&core, &owner, c)).collect();
        let pool = OwnedPool::of(blocks[0], Kind::Small);
        assert!(blocks
            .iter()
            .all(|&b| OwnedPool::of(b, Kind::Small) == pool));
        // Half of them freed by the other cache, onto the pool's remote chain.
        let (remote, kept) = blocks.split_at(blocks.len() / 2);
        for &b in remote {
            free(&core, &other, b);
        }
        // The owner's next blocks are those, not fresh ones.
        let again: Vec<_> = (0..remote.len()).map(|_| alloc(&core, &owner, c)).collect();
        let (mut got, mut want) = (again.clone(), remote.to_vec());
        got.sort();
        want.sort();
        assert_eq!(got, want, "the remote chain before a fresh carve");
        for &b in kept.iter().chain(&again) {
            free(&core, &owner, b);
        }
        owner.retire(&core);
        other.retire(&core);
        assert_eq!(core.stats().pools_in_use(), 0);
        core.check_invariants().unwrap();
    }

    #[test]
    fn refill_reports_out_of_memory_as_null() {
        let core = Core::new(MemPages::new(1));
        core.source().set_failing(true);
        let cache = ThreadCache::new();
        cache.activate();
        assert!(cache.refill(&core, class(0), true).unwrap().is_null());
        core.source().set_failing(false);
        let b = cache.refill(&core, class(0), true).unwrap();
        assert!(!b.is_null());
        free(&core, &cache, b);
        cache.retire(&core);
        core.check_invariants().unwrap();
    }
}
