//! The core: the lock-guarded pool and arena manager that thread caches take their pools from
//! and give them back to. `Core` and its transitions live here: handing a thread a pool and taking
//! it back (O3), remote frees into core-held pools, one block at a time for callers without a
//! cache, and the checked free; its uncached `alloc`/`dealloc` send large requests to `large`.
//! Fork handling, stats, fragmentation and the invariant walk add `impl Core` blocks in their own
//! modules above this one.
//!
//! ## Locks
//! One mutex per size class (its `usedpools` list, its counters, and the headers of the
//! core-held pools that serve it), padded against false sharing, and one arena mutex (`Arenas`,
//! the free-pool lists, and the headers of empty pools). **Lock order: class lock → arena lock**;
//! a thread takes at most one class lock unless it takes them all in index order (stats,
//! invariant walks, fork). A pool goes to or comes from its arena only under the arena lock, held
//! with the class lock for a core-held pool (P1); an owned pool is its owner's, lock-free (O1),
//! and becomes core-held or owned only under the class lock (O3).

use core::alloc::Layout;
use core::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

use crate::arena::Arenas;
use crate::classes::ClassPools;
use crate::config::{Kind, NB_SIZE_CLASSES};
use crate::error::{FreeError, FreeErrorKind};
use crate::large::{self, LargeTally};
use crate::layout::{pool_of, FreeBlock, PoolHeader, CORE_HELD};
use crate::os::{OsPages, PageSource};
use crate::pool::{self, OwnedPool};
use crate::registry::REGISTRY;
use crate::size_class::{pool_class_of, Class};
use crate::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use crate::sync::event::Event;
use crate::sync::{array_of, const_fn_unless_loom, model_static, Mutex, MutexGuard};

model_static! {
    /// Hands out core ids (0 means "no core" in the registry).
    static NEXT_CORE_ID: AtomicUsize = AtomicUsize::new(1);
}

/// Notified when a core in `Purger::Thread` mode first has something waiting to be purged:
/// the purger thread (crate `poolmalloc`) sleeps on it, and is started on its first request.
pub static PURGE_EVENT: Event = Event::new();

/// Who runs a core's purge passes once they are due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Purger {
    /// A background thread (`PURGE_EVENT`'s waiter), so memory goes back with no call from
    /// the program.
    Thread = 0,
    /// Allocator calls that take or give back a pool past the deadline: no thread, and an
    /// idle program keeps what waits.
    Calls = 1,
}

/// What `Core::free_remote` did with a block.
#[derive(Debug, PartialEq, Eq)]
pub enum RemoteFree {
    /// Pushed onto its pool's remote chain, for the owner to take.
    Pushed,
    /// Freed under the class lock into a core-held pool.
    Freed,
    /// The core-held pool is the adopter's now; the block is still to be freed, locally.
    Adopted(OwnedPool),
    /// Not freed: the block looks free already (`FreeBlock::looks_free`) and its pool is another
    /// thread's, whose lists only that thread may walk to confirm it (O1). A second free of a
    /// block still free changes nothing, as it must not; a live block whose first word the
    /// program set to a free block's link stays out.
    LeftAlone,
}

/// The pool and arena manager.
pub struct Core<S: PageSource = OsPages> {
    pub(crate) classes: [CachePadded<Mutex<ClassPools>>; NB_SIZE_CLASSES],
    pub(crate) arenas: CachePadded<Mutex<Arenas>>,
    pub(crate) source: S,
    /// This core's id in the registry, assigned when it maps its first arena.
    id: AtomicUsize,
    /// Large-path counts of the uncached `alloc` and of faces' threads without a tally of
    /// their own (see `large`).
    pub(crate) large: LargeTally,
    /// `Schedule::next_at`, readable without the arena lock: when the next purge pass is due
    /// (0: nothing waits).
    next_purge: AtomicUsize,
    /// A `Purger`.
    purger: AtomicU8,
    /// Held for a whole purge pass, claim to end: passes run one at a time, so a forced one
    /// (`collect`) gives back everything rather than skip what another pass holds claimed.
    /// Lock order: passes → class → arena; nothing holding a class or the arena lock takes it.
    pub(crate) passes: Mutex<()>,
    /// Per class, whether the core may hold a pool `take_pool_of_class` would take (`USED`: on
    /// `usedpools`, set and cleared under the class lock; `WARM`: on the class's warm list, under
    /// the arena lock), read with no lock so that a cache with a spare pool of its own asks
    /// only then. A hint: a bit may stay set after its pool is gone (the next ask clears it),
    /// and a pool it misses is still taken by `take_pool` or purged in time.
    offers: [AtomicU8; NB_SIZE_CLASSES],
}

/// `Core::offers` bits.
const USED: u8 = 1;
const WARM: u8 = 2;

impl<S: PageSource + Default> Default for Core<S> {
    fn default() -> Self {
        Core::new(S::default())
    }
}

impl<S: PageSource> Core<S> {
    const_fn_unless_loom! {
        /// A core that maps its arenas from `source` and gives memory back at once (purge delay
        /// 0). Maps nothing until first used.
        pub fn new(source: S) -> Core<S> {
            Core::with_purge_delay(source, 0)
        }
    }

    const_fn_unless_loom! {
        /// A core whose empty pools and arenas wait `delay_ms` before a purge pass gives them
        /// back (`purge`), passes run by the purger thread (`Purger::Thread`).
        pub fn with_purge_delay(source: S, delay_ms: u64) -> Core<S> {
            Core {
                classes: array_of!(CachePadded::new(Mutex::new(ClassPools::new())); NB_SIZE_CLASSES),
                arenas: CachePadded::new(Mutex::new(Arenas::new(delay_ms))),
                source,
                id: AtomicUsize::new(0),
                large: LargeTally::new(),
                next_purge: AtomicUsize::new(0),
                purger: AtomicU8::new(Purger::Thread as u8),
                passes: Mutex::new(()),
                offers: array_of!(AtomicU8::new(0); NB_SIZE_CLASSES),
            }
        }
    }

    /// The page source (tests use it to make the OS fail, or to count maps).
    pub fn source(&self) -> &S {
        &self.source
    }

    /// This core's registry id; assigned on first call (under the arena lock).
    fn id_for_mapping(&self) -> usize {
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 {
            return id;
        }
        let fresh = NEXT_CORE_ID.fetch_add(1, Ordering::Relaxed);
        self.id.store(fresh, Ordering::Relaxed);
        fresh
    }

    /// Sets `bit` of the class's `offers` (under the lock that bit follows).
    fn offer(&self, class: usize, bit: u8) {
        self.offers[class].fetch_or(bit, Ordering::Relaxed);
    }

    /// Clears `bit` of the class's `offers` (under the lock that bit follows).
    fn withdraw(&self, class: usize, bit: u8) {
        self.offers[class].fetch_and(!bit, Ordering::Relaxed);
    }

    /// An empty pool from the fullest arena, made to serve `class` for `owner` (0: the core),
    /// under the arena lock (the header's atomics are written afresh, and walks hold that lock).
    fn pool_from_arena(&self, class: Class, owner: usize, any: bool) -> Option<*mut PoolHeader> {
        let mut arenas = self.arenas.lock();
        let (pool, formatted) = if any {
            let id = self.id_for_mapping();
            arenas.take_pool(&self.source, id, class)?
        } else {
            let taken = arenas.take_warm_of(class);
            if arenas.warm_of(class).next().is_none() {
                self.withdraw(class.index(), WARM);
            }
            (taken?, true)
        };
        // SAFETY: the pool was just taken from its arena: empty, on no list, and we hold the
        // arena lock; a formatted one is as `class` gave it back (`Arenas::take_pool`).
        unsafe {
            if formatted {
                pool::resume(pool, class, owner);
            } else {
                pool::init(pool, class, owner);
            }
        }
        Some(pool)
    }

    /// Takes one block of `class` under its lock from a core-held pool, carving a new pool if
    /// needed (steps empty → used and used → full).
    fn take_locked(&self, cls: &mut ClassPools, class: Class) -> Option<*mut FreeBlock> {
        let mut pool = cls.usedpools;
        if pool.is_null() {
            let fresh = self.pool_from_arena(class, 0, true)?;
            // SAFETY: the pool is core-held, on no list, and we hold its class lock (P1).
            unsafe { cls.push_front(fresh) };
            self.offer(class.index(), USED);
            cls.pools += 1;
            pool = fresh;
        }
        // SAFETY: pools on `usedpools` are core-held, serve this class and have a free block (P3).
        unsafe {
            let block = pool::take_block(pool);
            if !(*pool).has_free() {
                cls.unlink(pool);
                cls.full += 1;
            }
            cls.blocks_out += 1;
            Some(block)
        }
    }

    /// Gives one block back to a core-held pool under its class lock (full → used, used →
    /// empty). The arena lock is taken only when the pool empties.
    ///
    /// # Safety
    /// `block` is a block of this core, out, from a core-held pool of `kind` serving the class
    /// of `cls`.
    unsafe fn give_locked(&self, cls: &mut ClassPools, block: *mut FreeBlock, kind: Kind) {
        let pool = pool_of(block.cast(), kind);
        // SAFETY: the block's pool is core-held and serves this class (precondition), and we
        // hold its lock.
        unsafe {
            let was_full = !(*pool).has_free();
            pool::put_block(pool, block);
            cls.blocks_out -= 1;
            if (*pool).out() == 0 {
                if was_full {
                    cls.full -= 1;
                } else {
                    cls.unlink(pool);
                }
                cls.pools -= 1;
                self.give_to_arena(pool);
            } else if was_full {
                cls.full -= 1;
                cls.push_front(pool);
                self.offer((*pool).class_tag.load(Ordering::Relaxed) as usize - 1, USED);
            }
        }
    }

    /// Gives a pool with no block out back to its arena.
    ///
    /// # Safety
    /// The caller holds the pool (its class lock, or it owns it), it is on no list, and none
    /// of its blocks is out (so nobody pushes to it: O4).
    unsafe fn give_to_arena(&self, pool: *mut PoolHeader) {
        let mut arenas = self.arenas.lock();
        // SAFETY: held by the caller and empty (precondition); we hold the arena lock.
        let given = unsafe {
            let tag = (*pool).class_tag.load(Ordering::Relaxed);
            if tag != 0 {
                self.offer(tag as usize - 1, WARM);
            }
            pool::mark_empty(pool);
            arenas.give_pool(pool, &self.source, tag)
        };
        drop(arenas);
        if let Some(at) = given.scheduled {
            self.next_purge.store(at as usize, Ordering::Relaxed);
        }
        if (given.scheduled.is_some() || given.start_purger) && self.purger() == Purger::Thread {
            PURGE_EVENT.notify(given.start_purger);
        }
    }

    /// Hands an owned pool to the core under its class lock (O3): with no block out it goes to
    /// its arena, else it joins the class's core-held pools (used or full).
    ///
    /// # Safety
    /// The caller owns the pool, it serves the class of `cls`, and it is on none of the
    /// owner's lists.
    unsafe fn hand_back_locked(&self, cls: &mut ClassPools, pool: *mut PoolHeader) {
        // SAFETY: owned by the caller, under the class lock (precondition).
        unsafe {
            let out = pool::hand_to_core(pool);
            if out == 0 {
                self.give_to_arena(pool);
                return;
            }
            if (*pool).has_free() {
                self.offer((*pool).class_tag.load(Ordering::Relaxed) as usize - 1, USED);
            }
            cls.take_in(pool, out);
        }
    }

    /// Takes a core-held pool off the class's books and makes it `owner`'s (O3).
    ///
    /// # Safety
    /// The pool is core-held and serves the class of `cls`, whose lock the caller holds.
    unsafe fn adopt_locked(&self, cls: &mut ClassPools, pool: *mut PoolHeader, owner: usize) {
        // SAFETY: core-held, under its class lock (precondition).
        unsafe {
            if (*pool).has_free() {
                cls.unlink(pool);
            } else {
                cls.full -= 1;
            }
            cls.pools -= 1;
            cls.blocks_out -= (*pool).out();
            pool::adopt(pool, owner);
        }
    }

    /// A pool for the cache `owner` to allocate `class` from: a core-held pool with free blocks
    /// is adopted (an exited thread's, or one a flushed cache gave back), else an empty pool is
    /// taken from the fullest arena. `None` when the OS refuses memory.
    ///
    /// # Safety
    /// `owner` is the calling thread's cache id.
    pub unsafe fn take_pool(&self, class: Class, owner: usize) -> Option<OwnedPool> {
        // SAFETY: forwarded precondition.
        unsafe { self.take_pool_for(class, owner, true) }
    }

    /// As `take_pool`, for a cache that keeps an empty pool of another class it could reformat:
    /// only a pool that already serves `class` — a core-held one with free blocks, or one the
    /// class gave back as it was — else `None`. Taking another class's warm pool, or a fresh
    /// one, would write pages its layout never touched; the cache reformats its own instead,
    /// and the pools each class gave back stay its own.
    ///
    /// # Safety
    /// As `take_pool`.
    #[inline]
    pub unsafe fn take_pool_of_class(&self, class: Class, owner: usize) -> Option<OwnedPool> {
        // Nothing offered: no lock taken.
        if self.offers[class.index()].load(Ordering::Relaxed) == 0 {
            return None;
        }
        // SAFETY: forwarded precondition.
        unsafe { self.take_pool_for(class, owner, false) }
    }

    /// `take_pool` (`any`) and `take_pool_of_class` (not `any`).
    ///
    /// # Safety
    /// As `take_pool`.
    unsafe fn take_pool_for(&self, class: Class, owner: usize, any: bool) -> Option<OwnedPool> {
        let mut cls = self.classes[class.index()].lock();
        let pool = cls.usedpools;
        if !pool.is_null() {
            // SAFETY: pools on `usedpools` are core-held and serve this class (P3).
            unsafe { self.adopt_locked(&mut cls, pool, owner) };
            return Some(OwnedPool(pool));
        }
        self.withdraw(class.index(), USED);
        drop(cls);
        let pool = self.pool_from_arena(class, owner, any).map(OwnedPool);
        self.purge_if_due();
        pool
    }

    /// Gives an owned pool to the core (the owner's thread exits, or flushes): to its arena when
    /// none of its blocks is out, else to its class.
    ///
    /// # Safety
    /// The calling thread owns the pool and has taken it off its lists.
    pub unsafe fn release_pool(&self, pool: OwnedPool) {
        // SAFETY: owned by the caller, so it serves a class (O1).
        let class = unsafe { pool.class() };
        let mut cls = self.classes[class.index()].lock();
        // SAFETY: owned by the caller and off its lists (precondition).
        unsafe { self.hand_back_locked(&mut cls, pool.0) };
        drop(cls);
        self.purge_if_due();
    }

    /// Gives an owned pool none of whose blocks is out (or the owner's spare) to its arena.
    ///
    /// # Safety
    /// The calling thread owns the pool, has taken it off its lists, and none of its blocks is
    /// out.
    pub unsafe fn give_empty(&self, pool: OwnedPool) {
        // SAFETY: forwarded precondition.
        unsafe { self.give_to_arena(pool.0) };
        self.purge_if_due();
    }

    /// `Purger::Calls`: runs the purge pass if one is due (a clock read only while one waits).
    #[inline]
    fn purge_if_due(&self) {
        let at = self.next_purge.load(Ordering::Relaxed);
        if at != 0 && self.purger() == Purger::Calls && self.source.now_ms() >= at as u64 {
            self.purge();
        }
    }

    /// Runs the purge pass if one is due: gives back the empty pools and wholly empty arenas
    /// (beyond the reserve) that have waited the purge delay. Returns the milliseconds until
    /// the next pass is due, `None` when nothing waits. Takes no lock while it makes the
    /// system calls (`arena`, "Memory back to the OS, in time").
    pub fn purge(&self) -> Option<u64> {
        self.purge_pass(false);
        let at = self.next_purge.load(Ordering::Relaxed) as u64;
        (at != 0).then(|| at.saturating_sub(self.source.now_ms()))
    }

    /// A pass now (`force`: everything empty, whatever its wait) or when due; returns the
    /// arenas it unmapped.
    fn purge_pass(&self, force: bool) -> usize {
        let _pass = self.passes.lock();
        let now = self.source.now_ms();
        let (mut unmapped, mut more) = (0, false);
        loop {
            let (work, next_at) = {
                let mut arenas = self.arenas.lock();
                (
                    arenas.begin_purge(now, force, more),
                    arenas.schedule.next_at,
                )
            };
            // The next deadline is known once the pass has claimed its work (other threads'
            // calls past it may run their pass meanwhile: what this one claimed is not theirs).
            self.next_purge.store(next_at as usize, Ordering::Relaxed);
            // SAFETY: claimed by `begin_purge` of this core's arenas just above; put back below.
            unsafe { work.apply(&self.source) };
            unmapped += work.arenas_unmapped();
            let mut arenas = self.arenas.lock();
            arenas.end_purge(&work, now);
            self.next_purge
                .store(arenas.schedule.next_at as usize, Ordering::Relaxed);
            if !work.more {
                return unmapped;
            }
            more = true;
        }
    }

    /// Milliseconds an empty pool or arena waits before a purge pass gives it back.
    pub fn purge_delay(&self) -> u64 {
        self.arenas.lock().schedule.delay_ms
    }

    /// Sets the purge delay (0: at once, and what waits goes back now).
    pub fn set_purge_delay(&self, delay_ms: u64) {
        let mut arenas = self.arenas.lock();
        arenas.schedule.delay_ms = delay_ms;
        if arenas.schedule.next_at != 0 {
            arenas.schedule.next_at = self.source.now_ms() + delay_ms;
            self.next_purge
                .store(arenas.schedule.next_at as usize, Ordering::Relaxed);
        }
        drop(arenas);
        if delay_ms == 0 {
            self.purge_pass(true);
        }
    }

    /// Who runs this core's purge passes.
    #[inline]
    pub fn purger(&self) -> Purger {
        if self.purger.load(Ordering::Relaxed) == Purger::Calls as u8 {
            Purger::Calls
        } else {
            Purger::Thread
        }
    }

    /// Sets who runs this core's purge passes; a thread is asked for (`PURGE_EVENT`) if
    /// something waits already.
    pub fn set_purger(&self, purger: Purger) {
        self.purger.store(purger as u8, Ordering::Relaxed);
        if purger == Purger::Thread && self.purge_waits() {
            PURGE_EVENT.notify(true);
        }
    }

    /// True while something waits for a purge pass.
    pub fn purge_waits(&self) -> bool {
        self.next_purge.load(Ordering::Relaxed) != 0
    }

    /// Frees a block of a pool the calling thread does not own: one push onto the pool's remote
    /// chain while a thread owns it; under the class lock while the core holds it — where a
    /// cache (`adopter`, its id; 0 for none) adopts the pool, so that the rest of its blocks
    /// come back as local frees. A block that looks free already is confirmed on the free list
    /// of a core-held pool (a double free: the error) and left alone in an owned one.
    ///
    /// # Safety
    /// `block` lies in a pool of `kind` of this core serving a class that the calling thread
    /// does not own; if it is out, it is given up.
    pub unsafe fn free_remote(
        &self,
        block: *mut u8,
        kind: Kind,
        adopter: usize,
    ) -> Result<RemoteFree, FreeError> {
        let pool = pool_of(block, kind);
        let link = block.cast::<FreeBlock>();
        // SAFETY: the block lies in a carved pool (precondition).
        let suspect = unsafe { FreeBlock::looks_free(link, kind) };
        // SAFETY: as above; if out, the block is given up (precondition).
        if suspect && unsafe { self.remote_chain_holds(pool, link, kind) } {
            // SAFETY: found free in its pool.
            return Err(unsafe { FreeError::double_free(block, kind) });
        }
        loop {
            // SAFETY: the pool serves a class and the block is out and given up (precondition).
            if !suspect && unsafe { pool::push_remote(pool, link) } {
                return Ok(RemoteFree::Pushed);
            }
            // SAFETY: the pool serves a class while our block is out (O4), or was freed twice:
            // its tag says so, or that it serves none.
            let Some(class) = (unsafe { (*pool).class() }) else {
                let kind = FreeErrorKind::PoolNotInUse;
                return Err(FreeError {
                    addr: block as usize,
                    kind,
                });
            };
            let mut cls = self.classes[class.index()].lock();
            // Owned ↔ core-held changes only under this lock (O3): what we read now stays.
            // SAFETY: as above.
            if unsafe { (*pool).remote.load(Ordering::Relaxed) } != CORE_HELD {
                if suspect {
                    return Ok(RemoteFree::LeftAlone);
                }
                continue;
            }
            // SAFETY: core-held, of this class, under its lock (P1).
            if suspect && unsafe { pool::holds_free(pool, link) } {
                // SAFETY: found free in its pool.
                return Err(unsafe { FreeError::double_free(block, kind) });
            }
            // SAFETY: core-held, of this class, under its lock; the block is out (precondition,
            // and not on the free list).
            unsafe {
                if adopter == 0 {
                    self.give_locked(&mut cls, link, kind);
                    return Ok(RemoteFree::Freed);
                }
                self.adopt_locked(&mut cls, pool, adopter);
            }
            return Ok(RemoteFree::Adopted(OwnedPool(pool)));
        }
    }

    /// The double-free check of a thread that does not own `block`'s pool, on the one list of
    /// the owner's it may read: the remote chain, borrowed whole and given back whole (O2;
    /// `pool::borrow_remote`). If the core took the pool meanwhile, the chain's blocks are freed
    /// into it under the class lock. (A block the owner already took back is on its lists, which
    /// only it may walk: not found here.)
    ///
    /// # Safety
    /// `block` lies in `pool`, a pool of `kind` of this core; if it is out, it is given up.
    unsafe fn remote_chain_holds(
        &self,
        pool: *mut PoolHeader,
        block: *mut FreeBlock,
        kind: Kind,
    ) -> bool {
        // SAFETY: a suspect's pool serves a class unless the block was freed into an emptied
        // pool; then there is no chain to borrow.
        if unsafe { (*pool).class() }.is_none() {
            return false;
        }
        // SAFETY: the pool serves a class and has a block out: the suspect, or one on its chain.
        let Some(chain) = (unsafe { pool::borrow_remote(pool) }) else {
            return false;
        };
        // SAFETY: the borrowed chain is ours until given back; its blocks lie in `pool`.
        let found = unsafe { FreeBlock::chain_holds(chain, block, kind) };
        // SAFETY: borrowed from `pool` just above.
        while !unsafe { pool::return_remote(pool, chain) } {
            // SAFETY: the chain's blocks are out, so the pool serves its class (O4).
            let class = unsafe { (*pool).class() }.expect("a pool with blocks out serves a class");
            let mut cls = self.classes[class.index()].lock();
            // SAFETY: as above; owned ↔ core-held changes only under this lock (O3).
            if unsafe { (*pool).remote.load(Ordering::Relaxed) } != CORE_HELD {
                continue;
            }
            let mut b = chain;
            while !FreeBlock::is_end(b) {
                // SAFETY: a block of the borrowed chain, out, of a core-held pool of this class,
                // under its lock; its link is read before it is freed.
                unsafe {
                    let next = FreeBlock::next(b);
                    self.give_locked(&mut cls, b, kind);
                    b = next;
                }
            }
            break;
        }
        found
    }

    /// The lock-free half of `free_remote`: one push onto the remote chain of the block's pool,
    /// while a thread owns it. False (nothing done) when the core holds the pool, or when the
    /// block looks free already (`free_remote` then confirms or leaves it).
    ///
    /// # Safety
    /// `block` is a block of this core that is out, from a pool of `kind` serving a class that
    /// the calling thread does not own, and is given up.
    #[inline]
    pub unsafe fn push_remote(&self, block: *mut u8, kind: Kind) -> bool {
        let link = block.cast::<FreeBlock>();
        // SAFETY: forwarded precondition.
        unsafe {
            !FreeBlock::looks_free(link, kind) && pool::push_remote(pool_of(block, kind), link)
        }
    }

    /// One block of `class`, for callers without a thread cache; `None` when out of memory.
    pub fn alloc_block(&self, class: Class) -> Option<NonNull<u8>> {
        let mut cls = self.classes[class.index()].lock();
        self.take_locked(&mut cls, class)
            .and_then(|b| NonNull::new(b.cast()))
    }

    /// The class of the block at `addr`, checked through the registry: no memory outside our
    /// arenas is read. The class is a hint until its lock is held.
    pub fn class_of_block(&self, addr: *const u8) -> Result<Class, FreeError> {
        let err = |kind| FreeError {
            addr: addr as usize,
            kind,
        };
        let Some(kind) = self.kind_of(addr) else {
            return Err(err(FreeErrorKind::Foreign));
        };
        // SAFETY: the address is inside one of our mapped arenas of `kind` (A1, R2), so its pool
        // header is mapped; the class tag is atomic, so reading it without the lock is no data
        // race.
        unsafe { (*pool_of(addr, kind)).class() }
            .filter(|class| class.kind() == kind)
            .ok_or(err(FreeErrorKind::PoolNotInUse))
    }

    /// True when `addr` lies in an arena of this core.
    pub fn owns(&self, addr: *const u8) -> bool {
        self.kind_of(addr).is_some()
    }

    /// The kind of the arena of this core that `addr` lies in; `None` when it lies in none.
    #[inline]
    pub fn kind_of(&self, addr: *const u8) -> Option<Kind> {
        let id = self.id.load(Ordering::Relaxed);
        if id == 0 {
            return None;
        }
        REGISTRY.kind_if_owned_by(addr as usize, id)
    }

    /// Frees one block, validating it first: a pointer that is not a block of ours that is out
    /// comes back as an error and changes nothing.
    ///
    /// # Safety
    /// If `ptr` is a block of ours that is out, nobody uses it after this call.
    pub unsafe fn free_block(&self, ptr: *mut u8) -> Result<(), FreeError> {
        let class = self.class_of_block(ptr)?;
        let addr = ptr as usize;
        let mut cls = self.classes[class.index()].lock();
        let kind = class.kind();
        let pool = pool_of(ptr, kind);
        // SAFETY: the pool is in one of our arenas (checked by `class_of_block`). Under this
        // class's lock (P1, O3) a core-held pool cannot start or stop serving this class, so the
        // checks below are stable; an owned pool serves its class while a block of it is out.
        unsafe {
            let p = &*pool;
            if p.class() != Some(class) {
                return Err(FreeError {
                    addr,
                    kind: FreeErrorKind::PoolNotInUse,
                });
            }
            if !p.is_block_start(addr) {
                return Err(FreeError {
                    addr,
                    kind: FreeErrorKind::NotBlockStart { class },
                });
            }
            let link = ptr.cast::<FreeBlock>();
            let suspect = FreeBlock::looks_free(link, kind);
            if p.remote.load(Ordering::Relaxed) != CORE_HELD {
                // Owned by a thread: its lists are the owner's to check, not ours (O1), so a
                // block that looks free already is left alone (`RemoteFree::LeftAlone`).
                if suspect || pool::push_remote(pool, link) {
                    return Ok(());
                }
                return Err(FreeError {
                    addr,
                    kind: FreeErrorKind::PoolNotInUse,
                });
            }
            if suspect && pool::holds_free(pool, link) {
                return Err(FreeError {
                    addr,
                    kind: FreeErrorKind::DoubleFree { class },
                });
            }
            self.give_locked(&mut cls, link, kind);
        }
        Ok(())
    }

    /// Allocates for `layout`: small and medium requests from the pools, the rest from the
    /// large path. Null when out of memory.
    pub fn alloc(&self, layout: Layout) -> *mut u8 {
        match pool_class_of(layout.size(), layout.align()) {
            Some(class) => self
                .alloc_block(class)
                .map_or(ptr::null_mut(), NonNull::as_ptr),
            None => self
                .large
                .shared(|tally| large::alloc(tally, layout, false)),
        }
    }

    /// Frees what `alloc` gave for `layout`. A pool block goes back to the class its pool
    /// serves, whatever class `layout` maps to, so a wrong layout cannot corrupt another class.
    ///
    /// # Safety
    /// `ptr` came from `alloc` of this core with a layout mapping to the same path (pools or
    /// large) as `layout`, and is not used afterwards.
    pub unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) -> Result<(), FreeError> {
        if pool_class_of(layout.size(), layout.align()).is_none() {
            if layout.size() != 0 {
                // SAFETY: a non-zero large layout's pointer is a large-path block (precondition).
                let free = |tally: &_| unsafe { large::free(tally, ptr) };
                self.large.shared(free);
            }
            return Ok(());
        }
        // SAFETY: `ptr` came from this core's `alloc` from the pools and is not used afterwards
        // (precondition); `free_block` validates the rest.
        unsafe { self.free_block(ptr) }
    }

    /// Where large-path counts go that no thread's own tally takes: the uncached `alloc`'s,
    /// a face's thread without a cache, a face's exited threads. Stats add the faces' tallies
    /// to it.
    pub fn large_tally(&self) -> &LargeTally {
        &self.large
    }

    /// Gives back now what a purge pass would give back later, whatever its wait: every empty
    /// pool's pages, and every wholly empty arena beyond the reserve; returns the arenas
    /// unmapped.
    pub fn collect(&self) -> usize {
        self.purge_pass(true)
    }

    /// Takes every lock in the documented order (class locks by index, then the arena lock), for
    /// walks that need one consistent view.
    pub(crate) fn lock_all(&self) -> AllLocks<'_> {
        let mut classes: [Option<MutexGuard<'_, ClassPools>>; NB_SIZE_CLASSES] =
            [const { None }; NB_SIZE_CLASSES];
        for (slot, lock) in classes.iter_mut().zip(self.classes.iter()) {
            *slot = Some(lock.lock());
        }
        AllLocks {
            classes,
            arenas: self.arenas.lock(),
        }
    }
}

/// Every lock of a core, held.
pub(crate) struct AllLocks<'a> {
    pub classes: [Option<MutexGuard<'a, ClassPools>>; NB_SIZE_CLASSES],
    pub arenas: MutexGuard<'a, Arenas>,
}

impl AllLocks<'_> {
    pub fn class(&self, class: Class) -> &ClassPools {
        self.classes[class.index()]
            .as_deref()
            .expect("all class locks are held")
    }
}

impl<S: PageSource> Drop for Core<S> {
    fn drop(&mut self) {
        // SAFETY: dropping the core means nothing can use its blocks any more (`&mut self`).
        unsafe { self.arenas.lock().release_all(&self.source) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{MEDIUM_REQUEST_THRESHOLD, POOLS_PER_ARENA, POOL_OVERHEAD, RESERVE_ARENAS};
    use crate::layout::PoolHeader;
    use crate::os::MemPages;

    fn core(arenas: usize) -> Core<MemPages> {
        Core::new(MemPages::new(arenas))
    }

    fn biggest() -> Class {
        Class::new(crate::config::NB_SMALL_SIZE_CLASSES - 1).unwrap()
    }

    fn used_list(core: &Core<MemPages>, class: Class) -> Vec<usize> {
        let cls = core.classes[class.index()].lock();
        let mut out = vec![];
        let mut p = cls.usedpools;
        while !p.is_null() {
            out.push(p as usize);
            // SAFETY: test walk of the used list under its lock.
            p = unsafe { (*p).nextpool };
        }
        out
    }

    fn take(core: &Core<MemPages>, class: Class, n: usize) -> Vec<*mut u8> {
        (0..n)
            .map(|_| core.alloc_block(class).unwrap().as_ptr())
            .collect()
    }

    fn free(core: &Core<MemPages>, blocks: &[*mut u8]) {
        for &b in blocks {
            // SAFETY: test blocks are out and unused.
            unsafe { core.free_block(b).unwrap() };
        }
    }

    #[test]
    fn every_pool_transition() {
        let core = core(2);
        let class = biggest();
        let per_pool = class.blocks_per_pool();
        let stats = |c: &Core<MemPages>| c.stats().classes[class.index()];

        // empty → used
        let first = take(&core, class, 1);
        let pool_a = pool_of(first[0], Kind::Small) as usize;
        assert_eq!(used_list(&core, class), vec![pool_a]);
        assert_eq!((stats(&core).pools_used, stats(&core).pools_full), (1, 0));
        core.check_invariants().unwrap();

        // used → full: on no list
        let rest = take(&core, class, per_pool - 1);
        assert!(rest
            .iter()
            .all(|&b| pool_of(b, Kind::Small) as usize == pool_a));
        assert_eq!(used_list(&core, class), Vec::<usize>::new());
        assert_eq!((stats(&core).pools_used, stats(&core).pools_full), (0, 1));
        core.check_invariants().unwrap();

        // a second pool, then full → used puts the first pool at the front
        let b = take(&core, class, 1);
        let pool_b = pool_of(b[0], Kind::Small) as usize;
        assert_ne!(pool_a, pool_b);
        assert_eq!(used_list(&core, class), vec![pool_b]);
        free(&core, &rest[..1]);
        assert_eq!(used_list(&core, class), vec![pool_a, pool_b]);
        assert_eq!((stats(&core).pools_used, stats(&core).pools_full), (2, 0));
        // the freed block is the next one handed out (LIFO free list)
        let again = take(&core, class, 1);
        assert_eq!(again[0], rest[0]);
        assert_eq!(used_list(&core, class), vec![pool_b]);
        core.check_invariants().unwrap();

        // used → empty: off usedpools, class tag cleared, back on the arena's free list
        free(&core, &b);
        assert_eq!(used_list(&core, class), Vec::<usize>::new());
        // SAFETY: pool_b is a carved pool of a mapped arena.
        assert_eq!(unsafe { (*(pool_b as *mut PoolHeader)).class() }, None);
        assert_eq!(core.stats().pools_empty, [POOLS_PER_ARENA - 1, 0]);
        core.check_invariants().unwrap();

        // full → empty directly is the same path: free everything
        free(&core, &first);
        free(&core, &rest[1..]);
        free(&core, &again);
        let s = core.stats();
        assert_eq!(
            s.classes[class.index()],
            ClassStats {
                block_size: 512,
                pool_size: crate::config::POOL_SIZE,
                ..Default::default()
            }
        );
        assert_eq!(s.arenas.mapped, RESERVE_ARENAS);
        core.check_invariants().unwrap();
    }

    use crate::stats::ClassStats;

    /// Arena `i` of the usable list and its free-pool count.
    #[test]
    fn medium_pools_live_in_arenas_of_their_own_kind() {
        use crate::config::{MEDIUM_POOLS_PER_ARENA, MEDIUM_POOL_SIZE};
        let core = core(4);
        let small = biggest();
        let medium = Class::new(NB_SIZE_CLASSES - 1).unwrap();
        assert_eq!(
            (medium.kind(), medium.block_size()),
            (Kind::Medium, 32 * 1024)
        );
        let per_pool = medium.blocks_per_pool();
        // One small block, then a medium arena's every pool, then one block more.
        let s = take(&core, small, 1);
        let blocks = take(&core, medium, MEDIUM_POOLS_PER_ARENA * per_pool + 1);
        let arena_of = |b: *mut u8| b as usize & crate::config::ARENA_ADDR_MASK;
        assert_eq!(core.kind_of(s[0]), Some(Kind::Small));
        for &b in &blocks {
            assert_eq!(core.kind_of(b), Some(Kind::Medium));
            assert_ne!(
                arena_of(b),
                arena_of(s[0]),
                "no medium pool in a small arena"
            );
            // Blocks lie in their medium pool, past its header, a whole block before its end.
            let offset = b as usize % MEDIUM_POOL_SIZE;
            assert!(offset >= crate::config::POOL_OVERHEAD);
            assert!(offset + medium.block_size() <= MEDIUM_POOL_SIZE);
        }
        assert_eq!(arena_of(blocks[0]), arena_of(blocks[per_pool]));
        let last = *blocks.last().unwrap();
        assert_ne!(
            arena_of(last),
            arena_of(blocks[0]),
            "the pool past an arena's last maps another arena"
        );
        let st = core.stats();
        assert_eq!(st.arenas_of_kind, [1, 2]);
        assert_eq!(
            st.classes[medium.index()].pools(),
            MEDIUM_POOLS_PER_ARENA + 1
        );
        assert_eq!(
            st.pools_empty[Kind::Medium as usize],
            MEDIUM_POOLS_PER_ARENA - 1
        );
        assert!(st.identity_holds(), "{st}");
        core.check_invariants().unwrap();
        // Freeing is checked against the pool the registry's kind finds: an interior pointer
        // of a medium block is refused, a double free reported.
        // SAFETY: interior of a live block; `free_block` validates and refuses it.
        let interior = unsafe { core.free_block(blocks[0].add(640)) };
        assert!(matches!(
            interior.map_err(|e| e.kind),
            Err(FreeErrorKind::NotBlockStart { class }) if class == medium
        ));
        free(&core, &blocks[..1]);
        // SAFETY: the block is free already; `free_block` confirms it on the free list.
        let twice = unsafe { core.free_block(blocks[0]) };
        assert_eq!(
            twice.map_err(|e| e.kind),
            Err(FreeErrorKind::DoubleFree { class: medium })
        );
        // Everything back: each kind keeps its reserve arena at most.
        free(&core, &blocks[1..]);
        free(&core, &s);
        core.collect();
        let st = core.stats();
        assert_eq!(st.pools_in_use(), 0);
        assert!(st.arenas_of_kind.iter().all(|&n| n <= RESERVE_ARENAS));
        core.check_invariants().unwrap();
    }

    fn usable(core: &Core<MemPages>) -> Vec<(usize, usize)> {
        let arenas = core.arenas.lock();
        arenas
            .iter_usable(Kind::Small)
            // SAFETY: test walk under the arena lock.
            .map(|ao| unsafe { ((*ao).address, (*ao).nfreepools) })
            .collect()
    }

    #[test]
    fn arenas_stay_ordered_fewest_free_pools_first() {
        let core = core(4);
        let class = biggest();
        let per_pool = class.blocks_per_pool();
        // Fill three arenas pool by pool; keep one block per pool to control emptiness.
        let mut pools: Vec<Vec<*mut u8>> = vec![];
        for _ in 0..3 * POOLS_PER_ARENA {
            pools.push(take(&core, class, per_pool));
        }
        assert_eq!(core.stats().arenas.mapped, 3);
        assert!(
            usable(&core).is_empty(),
            "all three arenas are wholly allocated"
        );
        let arena_of = |p: &Vec<*mut u8>| p[0] as usize & !(crate::config::ARENA_SIZE - 1);
        let a0 = arena_of(&pools[0]);
        let a1 = arena_of(&pools[POOLS_PER_ARENA]);
        let a2 = arena_of(&pools[2 * POOLS_PER_ARENA]);

        // Case 2: an arena's first free pool puts it at the front.
        free(&core, &pools[0]);
        assert_eq!(usable(&core), vec![(a0, 1)]);
        free(&core, &pools[POOLS_PER_ARENA]);
        assert_eq!(usable(&core), vec![(a1, 1), (a0, 1)]);
        core.check_invariants().unwrap();
        // Case 3: a1 gains a second free pool and slides right past a0.
        free(&core, &pools[POOLS_PER_ARENA + 1]);
        assert_eq!(usable(&core), vec![(a0, 1), (a1, 2)]);
        core.check_invariants().unwrap();
        // Case 4: a1 is already rightmost: no move.
        free(&core, &pools[POOLS_PER_ARENA + 2]);
        assert_eq!(usable(&core), vec![(a0, 1), (a1, 3)]);
        free(&core, &pools[2 * POOLS_PER_ARENA]);
        assert_eq!(usable(&core), vec![(a2, 1), (a0, 1), (a1, 3)]);
        core.check_invariants().unwrap();
        // New pools come from the fullest arena (the front).
        let again = take(&core, class, 1);
        assert_eq!(again[0] as usize & !(crate::config::ARENA_SIZE - 1), a2);
        assert_eq!(usable(&core), vec![(a0, 1), (a1, 3)]);
        core.check_invariants().unwrap();

        // Case 1: empty a0 completely: the first wholly empty arena is kept as the reserve…
        for p in &pools[1..POOLS_PER_ARENA] {
            free(&core, p);
        }
        assert_eq!(core.stats().arenas.mapped, 3);
        assert_eq!(usable(&core), vec![(a1, 3), (a0, POOLS_PER_ARENA)]);
        core.check_invariants().unwrap();
        // …and a second one is unmapped at once.
        let before = core.source().unmaps();
        for p in &pools[POOLS_PER_ARENA + 3..2 * POOLS_PER_ARENA] {
            free(&core, p);
        }
        assert_eq!(core.source().unmaps(), before + 1);
        assert_eq!(core.stats().arenas.mapped, 2);
        assert_eq!(core.stats().arenas.released, 1);
        assert_eq!(usable(&core), vec![(a0, POOLS_PER_ARENA)]);
        core.check_invariants().unwrap();
        // The rest: a2 empties and goes; a0 stays as the reserve.
        free(&core, &again);
        for p in &pools[2 * POOLS_PER_ARENA + 1..] {
            free(&core, p);
        }
        assert_eq!(core.stats().arenas.mapped, RESERVE_ARENAS);
        assert_eq!(core.collect(), 0, "nothing beyond the reserve to collect");
        core.check_invariants().unwrap();
    }

    #[test]
    fn owned_pools_go_back_and_forth() {
        let core = core(2);
        let class = Class::new(3).unwrap();
        let owner = 0x1000;
        // SAFETY: `owner` stands for a cache that owns the pools it is given.
        unsafe {
            let pool = core.take_pool(class, owner).unwrap();
            let mut blocks = vec![];
            let mut b = pool.detach();
            while !FreeBlock::is_end(b) {
                assert_eq!(crate::layout::pool_owner(b.cast(), Kind::Small), owner);
                blocks.push(b);
                b = FreeBlock::next(b);
            }
            let distinct: std::collections::HashSet<_> = blocks.iter().collect();
            assert_eq!(distinct.len(), blocks.len(), "block handed out twice");
            assert_eq!(blocks.len(), class.carve_at(POOL_OVERHEAD));
            for &b in &blocks {
                crate::layout::note_alloc(b.cast(), Kind::Small);
            }
            assert_eq!(pool.out(), class.carve_at(POOL_OVERHEAD));
            let s = core.stats().classes[3];
            assert_eq!(
                (s.pools_used, s.blocks_out),
                (1, class.carve_at(POOL_OVERHEAD))
            );
            core.check_invariants().unwrap();
            // A remote free while owned: pushed, still out.
            assert_eq!(
                core.free_remote(blocks[0].cast(), Kind::Small, 0),
                Ok(RemoteFree::Pushed)
            );
            assert_eq!(pool.out(), class.carve_at(POOL_OVERHEAD));
            // Freed again while on the chain: the borrowed chain confirms it.
            let kind = FreeErrorKind::DoubleFree { class };
            let addr = blocks[0] as usize;
            assert_eq!(
                core.free_remote(blocks[0].cast(), Kind::Small, 0),
                Err(FreeError { addr, kind })
            );
            // Once the owner took it back it is on the owner's lists, which only the owner may
            // walk: a second free from elsewhere is left alone.
            assert_eq!(pool.take_remote(), class.carve_at(POOL_OVERHEAD) - 1);
            assert_eq!(
                core.free_remote(blocks[0].cast(), Kind::Small, 0),
                Ok(RemoteFree::LeftAlone)
            );
            // Handed to the core: the remote block comes home with it, the rest stay out.
            core.release_pool(pool);
            let s = core.stats().classes[3];
            assert_eq!(
                (s.pools_used, s.blocks_out),
                (1, class.carve_at(POOL_OVERHEAD) - 1)
            );
            core.check_invariants().unwrap();
            // Freed again into the core-held pool: confirmed on its free list, refused.
            assert_eq!(
                core.free_remote(blocks[0].cast(), Kind::Small, 0),
                Err(FreeError { addr, kind })
            );
            assert_eq!(
                core.free_block(blocks[0].cast()),
                Err(FreeError { addr, kind })
            );
            // A free into the core-held pool without a cache: under the class lock.
            assert_eq!(
                core.free_remote(blocks[1].cast(), Kind::Small, 0),
                Ok(RemoteFree::Freed)
            );
            // With a cache: adopted, and the block is the adopter's to free.
            let Ok(RemoteFree::Adopted(again)) =
                core.free_remote(blocks[2].cast(), Kind::Small, owner)
            else {
                panic!("a cache adopts a core-held pool");
            };
            assert_eq!(again, pool);
            let key = crate::layout::link_key_for_cache();
            assert_eq!(
                crate::layout::free_to_own_pool(blocks[2].cast(), key, Kind::Small),
                Some(false)
            );
            // The owner's confirming walk finds a block freed twice, and not a live one.
            assert!(pool.holds_free(blocks[2].cast()));
            assert!(!pool.holds_free(blocks[3].cast()));
            let mut left = class.carve_at(POOL_OVERHEAD) - 3;
            for &b in &blocks[3..] {
                left -= 1;
                let emptied = crate::layout::free_to_own_pool(b.cast(), key, Kind::Small);
                assert_eq!(emptied, Some(left == 0));
            }
            core.give_empty(pool);
        }
        assert_eq!(core.stats().pools_in_use(), 0);
        core.check_invariants().unwrap();
    }

    #[test]
    fn out_of_memory_returns_null_and_recovers() {
        let core = core(1);
        core.source().set_failing(true);
        assert!(core.alloc(Layout::from_size_align(8, 8).unwrap()).is_null());
        // SAFETY: `1 << 12` stands for a cache, which gives no pool back.
        let none = unsafe { core.take_pool(Class::new(0).unwrap(), 1 << 12) };
        assert!(none.is_none());
        assert_eq!(core.stats().arenas.map_failures, 2);
        core.check_invariants().unwrap();
        core.source().set_failing(false);
        // One arena only: fill it, then the next block fails, and memory comes back.
        let class = biggest();
        let total = POOLS_PER_ARENA * class.blocks_per_pool();
        let blocks = take(&core, class, total);
        assert!(core.alloc_block(class).is_none());
        core.check_invariants().unwrap();
        free(&core, &blocks[..1]);
        assert!(core.alloc_block(class).is_some());
        core.check_invariants().unwrap();
    }

    #[test]
    fn bad_frees_are_reported_and_change_nothing() {
        let core = core(1);
        let class = Class::new(7).unwrap();
        let a = core.alloc_block(class).unwrap().as_ptr();
        let b = core.alloc_block(class).unwrap().as_ptr();
        let local = 0u64;
        let foreign = &local as *const u64 as *mut u8;
        // SAFETY: each call is rejected before anything is touched.
        unsafe {
            assert_eq!(
                core.free_block(foreign).unwrap_err().kind,
                FreeErrorKind::Foreign
            );
            let inner = core.free_block(a.add(8)).unwrap_err();
            assert_eq!(inner.kind, FreeErrorKind::NotBlockStart { class });
            assert_eq!(inner.addr, a as usize + 8);
            core.free_block(a).unwrap();
            let twice = core.free_block(a).unwrap_err();
            assert_eq!(twice.kind, FreeErrorKind::DoubleFree { class });
            assert!(twice.to_string().contains(&format!("{:#x}", a as usize)));
        }
        // A block of another core is foreign to this one.
        let other = Core::new(MemPages::new(1));
        let theirs = other.alloc_block(class).unwrap().as_ptr();
        // SAFETY: rejected before anything is touched.
        unsafe {
            assert_eq!(
                core.free_block(theirs).unwrap_err().kind,
                FreeErrorKind::Foreign
            );
            core.free_block(b).unwrap();
            // The pool is empty now: a further free of either block says so.
            assert_eq!(
                core.free_block(b).unwrap_err().kind,
                FreeErrorKind::PoolNotInUse
            );
        }
        core.check_invariants().unwrap();
        other.check_invariants().unwrap();
    }

    #[test]
    fn large_path_is_counted() {
        let core = core(1);
        let layout = Layout::from_size_align(MEDIUM_REQUEST_THRESHOLD + 1, 8).unwrap();
        let p = core.alloc(layout);
        assert!(!p.is_null());
        let aligned = Layout::from_size_align(64, 4096).unwrap();
        let q = core.alloc(aligned);
        assert_eq!(q as usize % 4096, 0);
        let s = core.stats();
        // SAFETY: both are live C-library blocks.
        let usable = unsafe { large::usable_size(p) + large::usable_size(q) };
        assert!(usable > MEDIUM_REQUEST_THRESHOLD + 64);
        assert_eq!(
            (s.large.live, s.large.live_bytes, s.large.allocs_total),
            (2, usable, 2)
        );
        assert_eq!(s.arenas.mapped, 0, "the large path maps no arena");
        // SAFETY: both came from `alloc` with these layouts.
        unsafe {
            core.dealloc(p, layout).unwrap();
            core.dealloc(q, aligned).unwrap();
        }
        assert_eq!(core.stats().large.live, 0);
    }

    #[test]
    fn dropping_a_core_unmaps_its_arenas() {
        let core = core(3);
        let blocks = take(&core, biggest(), 3 * biggest().blocks_per_pool());
        assert!(core.owns(blocks[0]));
        let addr = blocks[0] as usize;
        drop(core);
        assert_eq!(
            REGISTRY.owner_of(addr),
            0,
            "the registry forgets dropped arenas"
        );
    }

    /// Two arenas' worth of the biggest class, allocated and freed, on a core with a delay.
    fn two_arenas_freed(delay: u64) -> (Core<MemPages>, usize) {
        let core = Core::with_purge_delay(MemPages::new(4), delay);
        let blocks = take(
            &core,
            biggest(),
            2 * POOLS_PER_ARENA * biggest().blocks_per_pool(),
        );
        free(&core, &blocks);
        (core, 2 * POOLS_PER_ARENA * crate::config::POOL_SIZE)
    }

    #[test]
    fn empty_pools_stay_warm_for_the_delay_then_go_back() {
        let (core, bytes) = two_arenas_freed(10);
        let src = core.source();
        let s = core.stats();
        assert_eq!((s.arenas.mapped, s.arenas.wholly_empty), (2, 2));
        assert_eq!((s.purge.warm_bytes, src.decommitted()), (bytes, 0));
        assert_eq!(s.purge.next_in_ms, Some(10));
        core.check_invariants().unwrap();
        // Not due yet: nothing happens.
        assert_eq!(core.purge(), Some(10));
        src.advance_ms(10);
        // The first pass only marks what is empty; the second gives it back.
        assert_eq!(core.purge(), Some(10));
        assert_eq!((src.decommitted(), core.stats().arenas.mapped), (0, 2));
        core.check_invariants().unwrap();
        src.advance_ms(10);
        assert_eq!(core.purge(), None, "nothing waits after the second pass");
        let s = core.stats();
        assert_eq!(
            s.arenas.mapped, RESERVE_ARENAS,
            "the arena beyond the reserve went"
        );
        assert_eq!(
            src.decommitted(),
            bytes / 2,
            "the reserve's pools were decommitted"
        );
        assert_eq!(src.decommits(), 1, "in one call: its pools are one run");
        assert_eq!((s.purge.warm_bytes, s.purge.next_in_ms), (0, None));
        assert_eq!((s.arenas.purges, s.arenas.purged_bytes), (2, bytes));
        core.check_invariants().unwrap();
    }

    #[test]
    fn a_pool_taken_again_within_the_delay_is_not_given_back() {
        let (core, _) = two_arenas_freed(10);
        let src = core.source();
        src.advance_ms(10);
        core.purge();
        // Taken and emptied again between the passes: it waits afresh, the rest go back.
        let again = take(&core, biggest(), 1);
        let pool = pool_of(again[0], Kind::Small);
        free(&core, &again);
        src.advance_ms(10);
        core.purge();
        let s = core.stats();
        assert_eq!(
            s.arenas.mapped, RESERVE_ARENAS,
            "the other arena went, not the pool's"
        );
        assert_eq!(s.purge.warm_bytes, crate::config::POOL_SIZE, "{s}");
        assert!(core.owns(pool.cast()));
        // SAFETY: an empty pool of a mapped arena of this core: its header is readable.
        assert!(unsafe { (*pool).class() }.is_none());
        core.check_invariants().unwrap();
        src.advance_ms(10);
        assert_eq!(core.purge(), None);
        assert_eq!(
            core.stats().purge.warm_bytes,
            0,
            "its turn came a pass later"
        );
        core.check_invariants().unwrap();
    }

    #[test]
    fn allocation_takes_warm_pools_first_and_never_a_claimed_one() {
        let (core, _) = two_arenas_freed(10);
        let src = core.source();
        // A forced pass claims every empty pool; while it holds them (before its system calls
        // end), an allocation gets a pool none of them is: a fresh arena's.
        let arenas = |core: &Core<MemPages>| -> Vec<usize> {
            let a = core.arenas.lock();
            // SAFETY: `all` links headers of the core's mapped arenas; we hold the arena lock.
            a.iter_all().map(|ao| unsafe { (*ao).address }).collect()
        };
        let claimed_arenas = arenas(&core);
        let work = core.arenas.lock().begin_purge(src.now_ms(), true, false);
        core.check_invariants().unwrap();
        let b = take(&core, biggest(), 1)[0];
        let arena = b as usize & crate::config::ARENA_ADDR_MASK;
        // SAFETY: the work came from `begin_purge` of this core just above.
        unsafe { work.apply(src) };
        core.arenas.lock().end_purge(&work, src.now_ms());
        let survivors = arenas(&core);
        assert!(
            !claimed_arenas.contains(&arena) || !survivors.contains(&arena),
            "the block's arena was not one being purged"
        );
        core.check_invariants().unwrap();
        free(&core, &[b]);
        // Warm first: the pool just emptied is taken again rather than a decommitted one.
        let decommitted = src.decommitted();
        let c = take(&core, biggest(), 1);
        assert_eq!(pool_of(c[0], Kind::Small), pool_of(b, Kind::Small));
        free(&core, &c);
        assert_eq!(src.decommitted(), decommitted);
        core.check_invariants().unwrap();
    }

    #[test]
    fn collect_gives_back_everything_at_once_and_delay_zero_is_the_old_policy() {
        let (core, bytes) = two_arenas_freed(1000);
        assert_eq!(core.collect(), 1);
        let s = core.stats();
        assert_eq!((s.arenas.mapped, s.purge.warm_bytes), (RESERVE_ARENAS, 0));
        assert_eq!(core.source().decommitted(), bytes / 2);
        core.check_invariants().unwrap();
        let (core, _) = two_arenas_freed(1000);
        core.set_purge_delay(0);
        assert_eq!(
            core.stats().arenas.mapped,
            RESERVE_ARENAS,
            "what waited went"
        );
        let (core, _) = two_arenas_freed(0);
        let s = core.stats();
        assert_eq!(
            (s.arenas.mapped, s.purge.next_in_ms),
            (RESERVE_ARENAS, None)
        );
    }

    #[test]
    fn purger_calls_purges_inside_a_later_pool_move() {
        let core = Core::with_purge_delay(MemPages::new(4), 10);
        core.set_purger(Purger::Calls);
        let class = biggest();
        let owner = 0x1000;
        // SAFETY: `owner` stands for a cache of this test's; it takes and gives back its pools.
        let pools: Vec<OwnedPool> = (0..POOLS_PER_ARENA + 1)
            .map(|_| unsafe { core.take_pool(class, owner) }.unwrap())
            .collect();
        for &p in &pools {
            // SAFETY: owned by `owner`, none of its blocks out, on no list.
            unsafe { core.give_empty(p) };
        }
        assert_eq!(core.stats().arenas.mapped, 2);
        let src = core.source();
        for _ in 0..2 {
            src.advance_ms(10);
            // SAFETY: as above.
            let p = unsafe { core.take_pool(class, owner) }.unwrap();
            // SAFETY: as above.
            unsafe { core.give_empty(p) };
        }
        // The second call past a deadline gave back what waited since the first.
        assert!(
            src.decommitted() > 0 || core.stats().arenas.mapped == 1,
            "{}",
            core.stats()
        );
        core.check_invariants().unwrap();
    }

    #[test]
    fn a_class_takes_back_the_pool_it_gave_back_as_it_was() {
        let core = Core::with_purge_delay(MemPages::new(4), 10);
        let class = biggest();
        let n = class.blocks_per_pool();
        let (a, b) = (take(&core, class, n), take(&core, class, n));
        let pool_a = pool_of(a[0], Kind::Small);
        // SAFETY: a pool of this core's mapped arena; its header is written.
        let carved = unsafe { (*pool_a).next_offset() };
        free(&core, &a);
        // The class's next pool is the one it gave back, its blocks carved as they were (but
        // under valgrind or ASan, whose marks of free blocks only a fresh format renews).
        let again = take(&core, class, 1);
        let pool = pool_of(again[0], Kind::Small);
        // SAFETY: as above.
        let now = unsafe { (*pool).next_offset() };
        if crate::tools::ENABLED {
            assert!(now < carved, "formatted afresh under the tools");
        } else {
            assert_eq!(pool, pool_a);
            assert_eq!(now, carved, "nothing re-carved");
        }
        core.check_invariants().unwrap();
        free(&core, &again);
        free(&core, &b);
        // Given back to the OS since: off the class's list, and the class gets a fresh pool.
        core.collect();
        let fresh = take(&core, class, 1);
        let pool = pool_of(fresh[0], Kind::Small);
        // SAFETY: as above.
        let fresh_offset = unsafe { (*pool).next_offset() };
        assert!(fresh_offset < carved, "a decommitted pool is carved anew");
        free(&core, &fresh);
        core.check_invariants().unwrap();
    }
}
