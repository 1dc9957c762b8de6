//! Arenas: ARENA_SIZE-aligned mappings carved into pools, and the `usable_arenas` ordering.
//!
//! An arena is carved into pools of one kind (`Kind`: small or medium), and each kind has its
//! own `usable` list, ordering and reserve; the arena lock guards both. Arenas with at least
//! one free pool sit on their kind's `usable`, sorted by free-pool count, fewest first:
//! new pools come from the fullest arena so nearly-empty arenas drain and can be released.
//! `nfp2lasta[n]` is the rightmost arena on `usable` with `n` free pools, which keeps every
//! re-sort O(1) (CPython's obmalloc, `insert_to_freepool`, Cases 1–4 below). An arena's empty
//! pools are a bitmap in its header, not a list through the pools, so nothing of an empty pool
//! needs its pages. All of this runs under the core's arena lock: `Arenas` is only reachable
//! through that lock's guard.
//!
//! ## Memory back to the OS, in time
//! With a purge delay (`Schedule::delay_ms`, the default), an empty pool stays committed (warm)
//! and a wholly empty arena stays mapped: the next pool taken is a warm one, with no page fault.
//! A purge pass (`begin_purge`, due `delay_ms` after the first pool waited) gives back what was
//! already empty at the pass before — pools empty for at least one delay and at most two:
//! their pages are decommitted, and wholly empty arenas beyond the reserve are unmapped (A3).
//! A pass **claims** what it gives back under the lock — claimed pools leave the free bitmap
//! and the counts, unmapped arenas every list and the registry — and the system calls run
//! without it (`PurgeWork::apply`), so an allocation never waits for a TLB shootdown and never
//! takes a pool being purged; `end_purge` puts the claimed pools back, decommitted.
//!
//! A pool given back with every carved block on its free list also goes on its class's warm
//! list (`warm_of`), and the class's next pool is the newest of those, resumed as it was
//! (`pool::resume`): its blocks already carved at the offsets the class touched. A pool leaves
//! the list when it is taken (by any class), claimed, or its arena goes.
//!
//! With a delay of 0 the old policy holds: a wholly empty arena is unmapped at once unless it
//! is its kind's reserve, and one with `Kind::purge_at_pools_in_use` pools in use or fewer gives
//! its empty pools' pages back at once.

use core::ptr::{self, NonNull};

use crate::config::{
    Kind, ARENA_SIZE, KINDS, NB_SIZE_CLASSES, POOLS_PER_ARENA, PURGER_START_BYTES, PURGE_BATCH,
    RESERVE_ARENAS,
};
use crate::layout::{ArenaHeader, PoolHeader};
use crate::os::PageSource;
use crate::registry::REGISTRY;
use crate::size_class::Class;
use crate::tools;

/// The header of the arena holding `pool`, from its registry slot (A1: a mapped arena of ours
/// has one).
///
/// # Safety
/// `pool` lies in an arena this core has mapped.
pub(crate) unsafe fn arena_of(pool: *mut PoolHeader) -> *mut ArenaHeader {
    REGISTRY
        .lookup(pool as usize)
        .expect("A1: a mapped arena is registered")
        .header
        .get()
}

/// Gives the pages of an arena's empty carved pools back to the system (those not already
/// given), one call per run of neighbouring pools.
///
/// # Safety
/// `a` is the header of a mapped arena of `source`, under the arena lock; its empty pools hold
/// nothing anyone refers to (P4).
unsafe fn purge<S: PageSource>(a: &mut ArenaHeader, source: &S) {
    let pool_size = a.kind.pool_size();
    let mut todo = a.free_pools & !a.decommitted;
    while todo != 0 {
        let first = todo.trailing_zeros() as usize;
        let run = (todo >> first).trailing_ones() as usize;
        let addr = (a.address + first * pool_size) as *mut u8;
        // SAFETY: the run lies in the arena (bits below its pool count), is pool- and so
        // page-aligned, and its pools are empty (precondition).
        unsafe { source.decommit(NonNull::new_unchecked(addr), run * pool_size) };
        let bits = run_bits(first, run);
        a.decommitted |= bits;
        a.old &= !bits;
        todo &= !bits;
    }
}

/// Arena counters, kept where they change (under the arena lock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaCounters {
    /// Arenas mapped now.
    pub mapped: usize,
    /// Arenas mapped since the core was made.
    pub mapped_ever: usize,
    /// Arenas given back to the OS.
    pub released: usize,
    /// Most arenas mapped at once.
    pub high_water: usize,
    /// Times the OS refused an arena.
    pub map_failures: usize,
    /// Mapped arenas whose pools are all empty (beyond RESERVE_ARENAS of a kind only until the
    /// next purge pass, A3).
    pub wholly_empty: usize,
    /// Purge passes run (by the purger, by allocator calls past the deadline, or by `collect`).
    pub purge_passes: usize,
    /// Ranges given back by purge passes: decommitted runs of neighbouring pools and unmapped
    /// arenas, one system call each.
    pub purges: usize,
    /// Bytes given back by purge passes (decommitted pools and unmapped arenas).
    pub purged_bytes: usize,
}

/// One kind's arenas with a free pool, in order, and its reserve count.
struct Usable {
    usable: *mut ArenaHeader,
    nfp2lasta: [*mut ArenaHeader; POOLS_PER_ARENA + 1],
    /// Of `ArenaCounters::wholly_empty`, this kind's.
    wholly_empty: usize,
}

impl Usable {
    const fn new() -> Usable {
        Usable {
            usable: ptr::null_mut(),
            nfp2lasta: [ptr::null_mut(); POOLS_PER_ARENA + 1],
            wholly_empty: 0,
        }
    }
}

/// When memory goes back: the purge delay and the next pass's deadline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Schedule {
    /// Milliseconds an empty pool waits, committed, before a pass gives it back; 0: at once.
    pub delay_ms: u64,
    /// When the next pass is due, on the page source's clock; 0 while nothing waits.
    pub next_at: u64,
    /// Bytes of pools given back since the last pass began: the purger thread is asked for
    /// only once they reach `PURGER_START_BYTES`.
    pub given_since_pass: usize,
    /// Passes begun so far: an arena's `old` mask was set by the pass its `old_pass` names, so
    /// the batches of one pass each take the arenas the earlier ones left.
    pub pass: u64,
}

/// What a purge pass claimed under the arena lock, for `apply` to give back without it and
/// `end_purge` to put back. Fixed arrays: the pass runs inside the allocator and allocates
/// nothing; a pass with more to give back says `more`, and the caller runs another.
pub(crate) struct PurgeWork {
    /// Runs of neighbouring claimed pools: their arena, first pool and count.
    runs: [(*mut ArenaHeader, u32, u32); PURGE_BATCH],
    nruns: usize,
    /// Each run's address range (start, bytes), read while the lock was held.
    ranges: [(usize, usize); PURGE_BATCH],
    /// Wholly empty arenas taken off every list and out of the registry, to unmap.
    unmaps: [usize; PURGE_BATCH],
    nunmaps: usize,
    /// The arrays filled up before the pass was done.
    pub more: bool,
}

impl PurgeWork {
    fn new() -> PurgeWork {
        PurgeWork {
            runs: [(ptr::null_mut(), 0, 0); PURGE_BATCH],
            nruns: 0,
            ranges: [(0, 0); PURGE_BATCH],
            unmaps: [0; PURGE_BATCH],
            nunmaps: 0,
            more: false,
        }
    }

    /// Arenas the pass unmaps.
    pub fn arenas_unmapped(&self) -> usize {
        self.nunmaps
    }

    /// Gives the claimed memory back without the arena lock: one `decommit` per range of
    /// neighbouring claimed pools and one `unmap_arenas` per range of neighbouring arenas, so a
    /// burst costs one TLB shootdown per range, not one per pool or arena.
    ///
    /// # Safety
    /// `self` came from `begin_purge` of the arenas of `source`, and `end_purge` has not run.
    pub unsafe fn apply<S: PageSource>(&self, source: &S) {
        let mut ranges = self.ranges;
        for (start, len) in merged(&mut ranges[..self.nruns]) {
            // SAFETY: each range is claimed pools, empty and off the free bitmap, so no one
            // takes them or reads their pages until `end_purge` (P4); their arenas stay mapped
            // while they have claimed pools (a pass never unmaps such an arena, nor counts it
            // wholly empty). Neighbouring ranges of neighbouring arenas were merged.
            unsafe { source.decommit(NonNull::new_unchecked(start as *mut u8), len) };
        }
        let mut arenas = [(0, 0); PURGE_BATCH];
        for (slot, &base) in arenas.iter_mut().zip(&self.unmaps[..self.nunmaps]) {
            tools::unregister_root_region(base as *const u8, ARENA_SIZE);
            *slot = (base, ARENA_SIZE);
        }
        for (start, len) in merged(&mut arenas[..self.nunmaps]) {
            // SAFETY: the arenas are off every list and out of the registry (R2), and wholly
            // empty: nothing refers to their memory.
            unsafe {
                source.unmap_arenas(NonNull::new_unchecked(start as *mut u8), len / ARENA_SIZE)
            };
        }
    }
}

/// `ranges` (start, length) sorted by start, neighbours merged: the ranges to give back, each
/// once.
fn merged(ranges: &mut [(usize, usize)]) -> impl Iterator<Item = (usize, usize)> + '_ {
    ranges.sort_unstable_by_key(|r| r.0);
    let mut i = 0;
    core::iter::from_fn(move || {
        let &(start, mut len) = ranges.get(i)?;
        i += 1;
        while let Some(&(next, more)) = ranges.get(i) {
            if next != start + len {
                break;
            }
            len += more;
            i += 1;
        }
        Some((start, len))
    })
}

/// The planted bug of a purge without its claim (`planted_fault`), off in every other build.
#[cfg(feature = "planted-fault")]
use crate::planted_fault::unclaimed_purge;
#[cfg(not(feature = "planted-fault"))]
#[inline(always)]
fn unclaimed_purge() -> bool {
    false
}

/// What giving a pool back asks of the caller (`Arenas::give_pool`).
pub(crate) struct Given {
    /// The first pass is now due at this time (nothing waited before): publish it, wake the
    /// purger.
    pub scheduled: Option<u64>,
    /// Enough has been given back since the last pass to ask for the purger thread.
    pub start_purger: bool,
}

/// The bits of a run of `n` pools from `first`.
fn run_bits(first: usize, n: usize) -> u64 {
    if n == 64 {
        u64::MAX
    } else {
        ((1u64 << n) - 1) << first
    }
}

/// The arena lock's state.
pub(crate) struct Arenas {
    kinds: [Usable; KINDS],
    all: *mut ArenaHeader,
    pub counters: ArenaCounters,
    pub schedule: Schedule,
    /// Per class, the empty pools it gave back as they were — committed, every carved block on
    /// the free list — newest first, linked through their headers (`nextpool`, `prevpool`,
    /// unused while a pool is empty); a pool is on its class's list exactly while its arena's
    /// `last_class` names the class.
    warm_of: [*mut PoolHeader; NB_SIZE_CLASSES],
}

// SAFETY: the raw pointers lead to registry slots and arena memory that this state owns (A1); the
// state is only reached through the arena mutex.
unsafe impl Send for Arenas {}

impl Arenas {
    pub const fn new(delay_ms: u64) -> Arenas {
        Arenas {
            kinds: [Usable::new(), Usable::new()],
            all: ptr::null_mut(),
            counters: ArenaCounters {
                mapped: 0,
                mapped_ever: 0,
                released: 0,
                high_water: 0,
                map_failures: 0,
                wholly_empty: 0,
                purge_passes: 0,
                purges: 0,
                purged_bytes: 0,
            },
            schedule: Schedule {
                delay_ms,
                next_at: 0,
                given_since_pass: 0,
                pass: 0,
            },
            warm_of: [ptr::null_mut(); NB_SIZE_CLASSES],
        }
    }

    /// Maps a new arena of `kind` for core `owner` and publishes it in the registry.
    fn new_arena<S: PageSource>(
        &mut self,
        source: &S,
        owner: usize,
        kind: Kind,
    ) -> Option<*mut ArenaHeader> {
        let Some(base) = source.map_arena() else {
            self.counters.map_failures += 1;
            return None;
        };
        // LeakSanitizer scans the arena while it is mapped: pool blocks may hold the only
        // pointer to a large-path block (`tools`). Withdrawn before every unmap below.
        tools::register_root_region(base.as_ptr(), ARENA_SIZE);
        let addr = base.as_ptr() as usize;
        let Some(slot) = REGISTRY.lookup_or_create(addr) else {
            tools::unregister_root_region(base.as_ptr(), ARENA_SIZE);
            // SAFETY: the arena was just mapped and nobody has seen it.
            unsafe { source.unmap_arena(base) };
            self.counters.map_failures += 1;
            return None;
        };
        let ao = slot.header.get();
        // SAFETY: the slot is free (its arena range was not mapped before `map_arena` returned
        // it), so nothing else touches its header; we hold the arena lock.
        unsafe {
            ao.write(ArenaHeader {
                address: addr,
                kind,
                pool_address: addr,
                nfreepools: kind.pools_per_arena(),
                ntotalpools: kind.pools_per_arena(),
                free_pools: 0,
                decommitted: 0,
                old: 0,
                old_pass: 0,
                claimed: 0,
                last_class: [0; 64],
                nextarena: ptr::null_mut(),
                prevarena: ptr::null_mut(),
                next_all: self.all,
                prev_all: ptr::null_mut(),
            });
            if !self.all.is_null() {
                (*self.all).prev_all = ao;
            }
        }
        self.all = ao;
        slot.set_owner(owner, kind);
        let c = &mut self.counters;
        c.mapped += 1;
        c.mapped_ever += 1;
        c.high_water = c.high_water.max(c.mapped);
        c.wholly_empty += 1;
        self.kinds[kind as usize].wholly_empty += 1;
        Some(ao)
    }

    /// Unlinks and unmaps an arena whose pools are all empty and which is on no list but `all`.
    ///
    /// # Safety
    /// `ao` is one of this core's arenas, wholly empty, already off `usable`.
    unsafe fn free_arena<S: PageSource>(&mut self, ao: *mut ArenaHeader, source: &S) {
        // SAFETY: forwarded precondition.
        let base = unsafe { self.forget_arena(ao) };
        tools::unregister_root_region(base as *const u8, ARENA_SIZE);
        // SAFETY: the arena is off every list and out of the registry, and wholly empty.
        unsafe { source.unmap_arena(NonNull::new_unchecked(base as *mut u8)) };
    }

    /// Takes an arena whose pools are all empty off `all` and out of the registry, and forgets
    /// its header; returns its base, for the caller to unmap.
    ///
    /// # Safety
    /// As for `free_arena`.
    unsafe fn forget_arena(&mut self, ao: *mut ArenaHeader) -> usize {
        // SAFETY: `ao` and its neighbours on `all` are headers of this core (precondition).
        let base = unsafe {
            let a = &mut *ao;
            if a.prev_all.is_null() {
                self.all = a.next_all;
            } else {
                (*a.prev_all).next_all = a.next_all;
            }
            if !a.next_all.is_null() {
                (*a.next_all).prev_all = a.prev_all;
            }
            let base = a.address;
            // Withdraw from the registry before the memory goes (R2), then forget the header.
            if let Some(slot) = REGISTRY.lookup(base) {
                slot.set_owner(0, Kind::Small);
            }
            ao.write(core::mem::zeroed());
            base
        };
        self.counters.mapped -= 1;
        self.counters.released += 1;
        base
    }

    /// Takes an empty pool for `class`: one the class gave back last if it is still warm and
    /// as it was (`true`: its header is still formatted for the class), else one from the arena
    /// of the class's kind with the fewest free pools, mapping a new arena if none has one
    /// (`false`: its header is not initialised). `owner` is the core's registry id.
    pub fn take_pool<S: PageSource>(
        &mut self,
        source: &S,
        owner: usize,
        class: Class,
    ) -> Option<(*mut PoolHeader, bool)> {
        if let Some(pool) = self.take_warm_of(class) {
            return Some((pool, true));
        }
        let kind = class.kind();
        let k = kind as usize;
        let pool_size = kind.pool_size();
        if self.kinds[k].usable.is_null() {
            let ao = self.new_arena(source, owner, kind)?;
            self.kinds[k].usable = ao;
            self.kinds[k].nfp2lasta[kind.pools_per_arena()] = ao;
        }
        let list = &mut self.kinds[k];
        let ao = list.usable;
        // SAFETY: `usable` holds headers of this core's mapped arenas (A1) and we hold the lock.
        unsafe {
            let a = &mut *ao;
            let nf = a.nfreepools;
            debug_assert!(nf > 0);
            if nf == a.ntotalpools {
                self.counters.wholly_empty -= 1;
                list.wholly_empty -= 1;
            }
            // `ao` is the leftmost arena, so the only one with `nf`, unless the next has it too.
            if list.nfp2lasta[nf] == ao {
                list.nfp2lasta[nf] = ptr::null_mut();
            }
            // With one pool fewer it is the only arena with `nf - 1` free pools.
            if nf > 1 {
                list.nfp2lasta[nf - 1] = ao;
            }
            let mut taken = 0;
            let pool = if a.free_pools != 0 {
                // Warm (committed) pools first: no page fault, and the cold ones stay given back.
                let warm = a.free_pools & !a.decommitted;
                let i = if warm != 0 { warm } else { a.free_pools }.trailing_zeros() as usize;
                taken = 1 << i;
                a.free_pools &= !taken;
                a.decommitted &= !taken;
                a.old &= !taken;
                (a.address + i * pool_size) as *mut PoolHeader
            } else {
                let pool = a.pool_address as *mut PoolHeader;
                a.pool_address += pool_size;
                pool
            };
            a.nfreepools -= 1;
            if a.nfreepools == 0 {
                // Wholly allocated: off `usable`.
                list.usable = a.nextarena;
                if !list.usable.is_null() {
                    (*list.usable).prevarena = ptr::null_mut();
                }
                a.nextarena = ptr::null_mut();
                a.prevarena = ptr::null_mut();
            }
            // The pool may be on another class's list: it is not any more.
            self.unlist(ao, taken);
            Some((pool, false))
        }
    }

    /// The newest pool `class` gave back as it was (`warm_of`), taken off its arena's books.
    pub fn take_warm_of(&mut self, class: Class) -> Option<*mut PoolHeader> {
        if tools::ENABLED {
            // The tools' marks of free blocks are renewed by a fresh `init` only.
            return None;
        }
        let pool = self.warm_of[class.index()];
        if pool.is_null() {
            return None;
        }
        // SAFETY: pools on a class's list are empty, committed pools of this core's mapped
        // arenas (`warm_of`), so their headers are readable; we hold the arena lock. The arena
        // has `nf` free pools and is on `usable` (A4).
        unsafe {
            let ao = arena_of(pool);
            let (address, size, nf) = ((*ao).address, (*ao).kind.pool_size(), (*ao).nfreepools);
            let bit = 1u64 << ((pool as usize - address) / size);
            debug_assert!((*ao).free_pools & !(*ao).decommitted & bit != 0);
            self.unlist(ao, bit);
            self.recount(ao, nf, nf - 1);
            (*ao).free_pools &= !bit;
            (*ao).old &= !bit;
            Some(pool)
        }
    }

    /// Puts `pool`, pool `i` of arena `ao` just given back by the class of `tag` as it was, at
    /// the front of that class's list.
    ///
    /// # Safety
    /// `pool` is the empty, committed pool `i` of the mapped arena `ao`, on no class's list.
    unsafe fn list(&mut self, ao: *mut ArenaHeader, i: usize, pool: *mut PoolHeader, tag: u8) {
        let Some(c) = (tag as usize).checked_sub(1) else {
            return;
        };
        // SAFETY: `pool` and the list's head are empty committed pools of this core (`warm_of`);
        // we hold the arena lock, which guards empty pools' headers (P1).
        unsafe {
            let head = self.warm_of[c];
            (*pool).prevpool = ptr::null_mut();
            (*pool).nextpool = head;
            if !head.is_null() {
                (*head).prevpool = pool;
            }
            self.warm_of[c] = pool;
            (*ao).last_class[i] = tag;
        }
    }

    /// Takes the pools of `bits` in arena `ao` off their classes' lists (they are taken, or
    /// their pages go back): none is as its class left it any more.
    ///
    /// # Safety
    /// `ao` is a mapped arena of this core; the pools of `bits` are carved.
    unsafe fn unlist(&mut self, ao: *mut ArenaHeader, bits: u64) {
        // SAFETY: a mapped arena of this core; a pool whose `last_class` is set is on that
        // class's list, empty and committed (`warm_of`), and so are its neighbours.
        unsafe {
            let (address, size) = ((*ao).address, (*ao).kind.pool_size());
            let mut b = bits;
            while b != 0 {
                let i = b.trailing_zeros() as usize;
                b &= b - 1;
                let Some(c) = ((*ao).last_class[i] as usize).checked_sub(1) else {
                    continue;
                };
                (*ao).last_class[i] = 0;
                let pool = (address + i * size) as *mut PoolHeader;
                let (prev, next) = ((*pool).prevpool, (*pool).nextpool);
                if prev.is_null() {
                    self.warm_of[c] = next;
                } else {
                    (*prev).nextpool = next;
                }
                if !next.is_null() {
                    (*next).prevpool = prev;
                }
            }
        }
    }

    /// Gives an empty pool back to its arena and restores the ordering of `usable`. With a purge
    /// delay the pool stays committed until a pass gives it back; says whether this scheduled
    /// the first pass (nothing waited before) and whether enough now waits for the purger
    /// thread (`Given`), for the caller to act on. With no delay, a wholly empty arena not
    /// needed as the reserve is unmapped at once, and a nearly empty one gives its empty pools'
    /// pages back at once.
    ///
    /// `tag` is the class tag the pool served (its blocks all on its free list), for the
    /// class's next pool.
    ///
    /// # Safety
    /// `pool` is a carved pool of this core with no block out, on no list, already marked empty.
    pub unsafe fn give_pool<S: PageSource>(
        &mut self,
        pool: *mut PoolHeader,
        source: &S,
        tag: u8,
    ) -> Given {
        let delay = self.schedule.delay_ms;
        let mut given = Given {
            scheduled: None,
            start_purger: false,
        };
        // SAFETY: the pool and its arena belong to this core (precondition) and we hold the arena
        // lock, which guards an empty pool and its arena's header (P1, A1).
        unsafe {
            let ao = arena_of(pool);
            let a = &mut *ao;
            let kind = a.kind;
            let k = kind as usize;
            let i = (pool as usize - a.address) / kind.pool_size();
            a.free_pools |= 1 << i;
            let nf = a.nfreepools;
            // If `ao` was the rightmost arena with `nf`, the one before it may take that role.
            let lastnf = self.kinds[k].nfp2lasta[nf];
            if lastnf == ao {
                let p = a.prevarena;
                self.kinds[k].nfp2lasta[nf] = if !p.is_null() && (*p).nfreepools == nf {
                    p
                } else {
                    ptr::null_mut()
                };
            }
            let nf = nf + 1;
            a.nfreepools = nf;

            // Case 1: every pool is empty. With no delay, unmap unless it is the reserve (A3).
            if nf == a.ntotalpools {
                if delay == 0 && self.kinds[k].wholly_empty >= RESERVE_ARENAS {
                    self.unlink_usable(ao);
                    self.unlist(ao, (*ao).free_pools);
                    self.free_arena(ao, source);
                    return given;
                }
                self.counters.wholly_empty += 1;
                self.kinds[k].wholly_empty += 1;
            }
            if delay == 0 && a.ntotalpools - nf <= kind.purge_at_pools_in_use() {
                self.unlist(ao, a.free_pools & !a.decommitted);
                // `unlist` borrowed the header afresh.
                purge(&mut *ao, source);
            } else {
                self.list(ao, i, pool, tag);
            }
            self.reorder_after_give(ao, nf, lastnf);
            if delay == 0 {
                return given;
            }
            let before = self.schedule.given_since_pass;
            self.schedule.given_since_pass += kind.pool_size();
            given.start_purger =
                before < PURGER_START_BYTES && self.schedule.given_since_pass >= PURGER_START_BYTES;
        }
        if self.schedule.next_at == 0 {
            self.schedule.next_at = source.now_ms() + delay;
            given.scheduled = Some(self.schedule.next_at);
        }
        given
    }

    /// `give_pool`'s re-sort of `usable` for an arena whose free-pool count rose to `nf`;
    /// `lastnf` was the rightmost arena with its old count.
    ///
    /// # Safety
    /// `ao` is a mapped arena of this core, on its kind's `usable` unless `nf` is 1.
    unsafe fn reorder_after_give(
        &mut self,
        ao: *mut ArenaHeader,
        nf: usize,
        lastnf: *mut ArenaHeader,
    ) {
        // SAFETY: `ao` and its neighbours are headers of this core's arenas (precondition).
        unsafe {
            let a = &mut *ao;
            let list = &mut self.kinds[a.kind as usize];
            // Case 2: its first free pool: it goes to the front, where the fewest-free arenas are.
            if nf == 1 {
                a.prevarena = ptr::null_mut();
                a.nextarena = list.usable;
                if !list.usable.is_null() {
                    (*list.usable).prevarena = ao;
                }
                list.usable = ao;
                if list.nfp2lasta[1].is_null() {
                    list.nfp2lasta[1] = ao;
                }
                return;
            }
            if list.nfp2lasta[nf].is_null() {
                list.nfp2lasta[nf] = ao;
            }
            // Case 4: it was the rightmost with its old count, so it is still in order.
            if ao == lastnf {
                return;
            }
            // Case 3: slide it right, behind the last arena that has its old count.
            self.unlink_usable(ao);
            // `unlink_usable` borrowed the header afresh, which ends `a` (Miri: Stacked Borrows).
            let a = &mut *ao;
            let after = lastnf;
            a.prevarena = after;
            a.nextarena = (*after).nextarena;
            if !a.nextarena.is_null() {
                (*a.nextarena).prevarena = ao;
            }
            (*after).nextarena = ao;
        }
    }

    /// Changes an arena's free-pool count from `old` to `new` (a purge's claim, or its end),
    /// moving it on its kind's `usable` and keeping `nfp2lasta` and the wholly-empty counts.
    ///
    /// # Safety
    /// `ao` is a mapped arena of this core with `old` free pools, on `usable` if `old > 0`.
    unsafe fn recount(&mut self, ao: *mut ArenaHeader, old: usize, new: usize) {
        // SAFETY: a header of this core's arenas (precondition); we hold the arena lock.
        let (k, total) = unsafe { ((*ao).kind as usize, (*ao).ntotalpools) };
        if old > 0 {
            // SAFETY: on `usable` with `old` free pools (precondition).
            unsafe { self.remove_usable(ao, old) };
        }
        // SAFETY: as above.
        unsafe { (*ao).nfreepools = new };
        if new > 0 {
            // SAFETY: off every `usable` list now, with `new` free pools.
            unsafe { self.insert_usable(ao, new) };
        }
        let step = usize::from(new == total) as isize - usize::from(old == total) as isize;
        self.counters.wholly_empty = self.counters.wholly_empty.wrapping_add_signed(step);
        self.kinds[k].wholly_empty = self.kinds[k].wholly_empty.wrapping_add_signed(step);
    }

    /// Takes `ao`, which has `nf` free pools, off its kind's `usable`, keeping `nfp2lasta`.
    ///
    /// # Safety
    /// `ao` is on its kind's `usable` with `nf` free pools.
    unsafe fn remove_usable(&mut self, ao: *mut ArenaHeader, nf: usize) {
        // SAFETY: `ao` and its neighbours are on `usable` (precondition).
        unsafe {
            let k = (*ao).kind as usize;
            if self.kinds[k].nfp2lasta[nf] == ao {
                let p = (*ao).prevarena;
                self.kinds[k].nfp2lasta[nf] = if !p.is_null() && (*p).nfreepools == nf {
                    p
                } else {
                    ptr::null_mut()
                };
            }
            self.unlink_usable(ao);
        }
    }

    /// Puts `ao`, which has `nf > 0` free pools and is on no `usable` list, on its kind's, in
    /// order: behind the rightmost arena with `nf` free pools or fewer.
    ///
    /// # Safety
    /// As said; `ao` is a mapped arena of this core.
    unsafe fn insert_usable(&mut self, ao: *mut ArenaHeader, nf: usize) {
        // SAFETY: `ao` and the arenas on `usable` are headers of this core (precondition).
        unsafe {
            let list = &mut self.kinds[(*ao).kind as usize];
            let after = (1..=nf)
                .rev()
                .map(|m| list.nfp2lasta[m])
                .find(|p| !p.is_null())
                .unwrap_or(ptr::null_mut());
            let a = &mut *ao;
            if after.is_null() {
                a.prevarena = ptr::null_mut();
                a.nextarena = list.usable;
                if !list.usable.is_null() {
                    (*list.usable).prevarena = ao;
                }
                list.usable = ao;
            } else {
                a.prevarena = after;
                a.nextarena = (*after).nextarena;
                if !a.nextarena.is_null() {
                    (*a.nextarena).prevarena = ao;
                }
                (*after).nextarena = ao;
            }
            list.nfp2lasta[nf] = ao;
        }
    }

    /// A purge pass, if one is due at `now` (or `force`: `collect`, everything now): claims
    /// the committed empty pools that were empty at the pass before (all of them when forced)
    /// and the wholly empty arenas beyond each kind's reserve with nothing newly emptied
    /// (every one when forced), marks what is left committed as waiting for the next pass, and
    /// schedules that pass while anything waits.
    /// `more`: this is a further batch of the pass begun last, which a full `PurgeWork` cut
    /// short.
    pub fn begin_purge(&mut self, now: u64, force: bool, more: bool) -> PurgeWork {
        let mut work = PurgeWork::new();
        if !more {
            let due = self.schedule.next_at != 0 && now >= self.schedule.next_at;
            if !force && !due {
                return work;
            }
            self.counters.purge_passes += 1;
            self.schedule.pass += 1;
            self.schedule.given_since_pass = 0;
        }
        let mut excess = [0; KINDS];
        for kind in Kind::ALL {
            excess[kind as usize] = self.kinds[kind as usize]
                .wholly_empty
                .saturating_sub(RESERVE_ARENAS);
        }
        let mut waits = false;
        let mut next = self.all;
        while !next.is_null() {
            let ao = next;
            // SAFETY: `all` links headers of this core's mapped arenas (A1); we hold the arena
            // lock. The link is read before the arena may leave the list.
            unsafe {
                next = (*ao).next_all;
                if !self.claim(ao, force, &mut excess, &mut work) {
                    waits = true;
                }
            }
            if work.more {
                waits = true;
                break;
            }
        }
        if Kind::ALL
            .iter()
            .any(|&k| self.kinds[k as usize].wholly_empty > RESERVE_ARENAS)
        {
            waits = true;
        }
        self.schedule.next_at = if waits && self.schedule.delay_ms > 0 {
            now + self.schedule.delay_ms
        } else {
            0
        };
        work
    }

    /// `begin_purge` on one arena; false when something of it still waits for a later pass.
    ///
    /// # Safety
    /// `ao` is a mapped arena of this core; we hold the arena lock.
    unsafe fn claim(
        &mut self,
        ao: *mut ArenaHeader,
        force: bool,
        excess: &mut [usize; KINDS],
        work: &mut PurgeWork,
    ) -> bool {
        // SAFETY: forwarded precondition.
        let a = unsafe { &mut *ao };
        if a.claimed != 0 {
            // Another pass is giving part of it back: it finishes the arena.
            return false;
        }
        if a.old_pass == self.schedule.pass {
            // An earlier batch of this pass did this arena.
            return a.old == 0;
        }
        let k = a.kind as usize;
        let committed = a.free_pools & !a.decommitted;
        let young = committed & !a.old;
        let nf = a.nfreepools;
        if nf == a.ntotalpools && excess[k] > 0 && (force || young == 0) {
            if work.nunmaps == PURGE_BATCH {
                work.more = true;
                return false;
            }
            // Only carved pools that were not given back yet hold pages.
            let bytes = (a.carved() - a.decommitted.count_ones() as usize) * a.kind.pool_size();
            // SAFETY: wholly empty, on its kind's `usable` (it has free pools: A4).
            unsafe {
                self.unlist(ao, (*ao).free_pools);
                self.recount(ao, nf, 0);
                work.unmaps[work.nunmaps] = self.forget_arena(ao);
            }
            self.counters.purged_bytes += bytes;
            work.nunmaps += 1;
            self.counters.purges += 1;
            excess[k] -= 1;
            return true;
        }
        let ripe = if force { committed } else { committed & a.old };
        let pool_size = a.kind.pool_size();
        let mut todo = ripe;
        let (mut claimed, mut runs) = (0u64, 0);
        while todo != 0 {
            if work.nruns == PURGE_BATCH {
                work.more = true;
                break;
            }
            let first = todo.trailing_zeros() as usize;
            let n = (todo >> first).trailing_ones() as usize;
            work.runs[work.nruns] = (ao, first as u32, n as u32);
            work.ranges[work.nruns] = (a.address + first * pool_size, n * pool_size);
            work.nruns += 1;
            claimed |= run_bits(first, n);
            todo &= !run_bits(first, n);
            runs += 1;
        }
        if claimed != 0 && unclaimed_purge() {
            // The planted bug: the pools stay takeable (on the free bitmap) while their pages
            // go; only their classes' lists let them go.
            // SAFETY: a mapped arena of this core; the pools of `claimed` are carved.
            unsafe { self.unlist(ao, claimed) };
            self.counters.purges += runs;
        } else if claimed != 0 {
            // SAFETY: a mapped arena with `nf` free pools, on `usable` as it has some (A4).
            unsafe {
                self.unlist(ao, claimed);
                self.recount(ao, nf, nf - claimed.count_ones() as usize);
            }
            // SAFETY: as above (`recount` borrowed the header afresh).
            let a = unsafe { &mut *ao };
            a.free_pools &= !claimed;
            a.claimed = claimed;
            self.counters.purges += runs;
            self.counters.purged_bytes += claimed.count_ones() as usize * pool_size;
        }
        // SAFETY: as above.
        let a = unsafe { &mut *ao };
        // What is still empty and committed has waited one pass: the next one gives it back.
        // (What this pass claimed, `end_purge` finishes.)
        a.old = a.free_pools & !a.decommitted & !claimed;
        a.old_pass = self.schedule.pass;
        a.old == 0
    }

    /// Puts back what `begin_purge` claimed for `work`, now decommitted; schedules another pass
    /// at `now` + the delay if a wholly empty arena beyond the reserve is left to unmap.
    pub fn end_purge(&mut self, work: &PurgeWork, now: u64) {
        for &(ao, first, n) in &work.runs[..work.nruns] {
            let bits = run_bits(first as usize, n as usize);
            if unclaimed_purge() {
                // SAFETY: as below (the planted bug's pools were never claimed: those still
                // free are marked given back, one taken meanwhile is in use).
                unsafe { (*ao).decommitted |= bits & (*ao).free_pools };
                continue;
            }
            // SAFETY: the run's arena is mapped while it has claimed pools (`PurgeWork::apply`),
            // and we hold the arena lock.
            unsafe {
                let a = &mut *ao;
                a.claimed &= !bits;
                a.decommitted |= bits;
                let nf = a.nfreepools;
                self.recount(ao, nf, nf + n as usize);
                (*ao).free_pools |= bits;
            }
        }
        let waits = Kind::ALL
            .iter()
            .any(|&k| self.kinds[k as usize].wholly_empty > RESERVE_ARENAS);
        if waits && self.schedule.next_at == 0 && self.schedule.delay_ms > 0 {
            self.schedule.next_at = now + self.schedule.delay_ms;
        }
    }

    /// The pools on `class`'s list of pools given back as they were (`warm_of`), newest first.
    pub fn warm_of(&self, class: Class) -> impl Iterator<Item = *mut PoolHeader> + '_ {
        let mut next = self.warm_of[class.index()];
        core::iter::from_fn(move || {
            if next.is_null() {
                return None;
            }
            let pool = next;
            // SAFETY: pools on a class's list are empty committed pools of this core; the caller
            // holds the arena lock (the iterator borrows the guarded state).
            next = unsafe { (*pool).nextpool };
            Some(pool)
        })
    }

    /// Bytes of empty pools kept committed (warm), waiting for a purge pass or the next pool.
    pub fn warm_bytes(&self) -> usize {
        self.iter_all()
            .map(|ao| {
                // SAFETY: `all` links headers of this core's mapped arenas (A1); the caller holds
                // the lock (the iterator borrows the guarded state).
                let a = unsafe { &*ao };
                (a.free_pools & !a.decommitted).count_ones() as usize * a.kind.pool_size()
            })
            .sum()
    }

    /// # Safety
    /// `ao` is on its kind's `usable`; the caller fixes `nfp2lasta` itself.
    unsafe fn unlink_usable(&mut self, ao: *mut ArenaHeader) {
        // SAFETY: `ao` and its neighbours are on `usable` (precondition).
        unsafe {
            let a = &mut *ao;
            if a.prevarena.is_null() {
                self.kinds[a.kind as usize].usable = a.nextarena;
            } else {
                (*a.prevarena).nextarena = a.nextarena;
            }
            if !a.nextarena.is_null() {
                (*a.nextarena).prevarena = a.prevarena;
            }
            a.nextarena = ptr::null_mut();
            a.prevarena = ptr::null_mut();
        }
    }

    /// Unmaps every arena, whatever it holds. Used when a core is dropped.
    ///
    /// # Safety
    /// Nothing refers to any block of this core any more.
    pub unsafe fn release_all<S: PageSource>(&mut self, source: &S) {
        while !self.all.is_null() {
            let ao = self.all;
            // SAFETY: `ao` is this core's arena and nothing uses it (precondition).
            unsafe { self.free_arena(ao, source) };
        }
        self.kinds = [Usable::new(), Usable::new()];
        self.warm_of = [ptr::null_mut(); NB_SIZE_CLASSES];
        self.counters.wholly_empty = 0;
    }

    /// The newest of this core's arenas (null when none is mapped); the rest follow `next_all`.
    #[cfg(not(poolmalloc_loom))]
    pub fn all_head(&self) -> *mut ArenaHeader {
        self.all
    }

    /// This core's arenas, newest first.
    pub fn iter_all(&self) -> impl Iterator<Item = *mut ArenaHeader> + '_ {
        let mut next = self.all;
        core::iter::from_fn(move || {
            if next.is_null() {
                return None;
            }
            let ao = next;
            // SAFETY: `all` links headers of this core's mapped arenas (A1); the caller holds the lock
            // (the iterator borrows the guarded state).
            next = unsafe { (*ao).next_all };
            Some(ao)
        })
    }

    /// Arenas of `kind` on its `usable`, in order.
    pub fn iter_usable(&self, kind: Kind) -> impl Iterator<Item = *mut ArenaHeader> + '_ {
        let mut next = self.kinds[kind as usize].usable;
        core::iter::from_fn(move || {
            if next.is_null() {
                return None;
            }
            let ao = next;
            // SAFETY: `usable` links headers of this core's mapped arenas (A1, A4); the caller holds
            // the arena lock (the iterator borrows the guarded state).
            next = unsafe { (*ao).nextarena };
            Some(ao)
        })
    }

    pub fn nfp2lasta(&self, kind: Kind, nf: usize) -> *mut ArenaHeader {
        self.kinds[kind as usize].nfp2lasta[nf]
    }

    /// Wholly empty arenas of `kind` (at most RESERVE_ARENAS).
    pub fn wholly_empty(&self, kind: Kind) -> usize {
        self.kinds[kind as usize].wholly_empty
    }
}

#[cfg(test)]
mod tests {
    use super::merged;

    #[test]
    fn neighbouring_ranges_merge_into_one_call() {
        let mut r = [(300, 100), (0, 100), (100, 50), (150, 50), (500, 10)];
        let out: Vec<_> = merged(&mut r).collect();
        assert_eq!(out, [(0, 200), (300, 100), (500, 10)]);
        assert_eq!(merged(&mut []).count(), 0);
    }
}
