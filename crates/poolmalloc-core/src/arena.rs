//! Arenas: ARENA_SIZE-aligned mappings carved into pools, and the `usable_arenas` ordering.
//!
//! An arena is carved into pools of one kind (`Kind`: small or medium), and each kind has its
//! own `usable` list, ordering and reserve; the arena lock guards both. Arenas with at least
//! one free pool sit on their kind's `usable`, sorted by free-pool count, fewest first:
//! new pools come from the fullest arena so nearly-empty arenas drain and can be released.
//! `nfp2lasta[n]` is the rightmost arena on `usable` with `n` free pools, which keeps every
//! re-sort O(1) (CPython's obmalloc, `insert_to_freepool`, Cases 1–4 below). An arena whose pools
//! are all empty is unmapped unless it is its kind's reserve (A3); one with
//! `Kind::purge_at_pools_in_use` pools in use or fewer gives its empty pools' pages back (decommit), keeping them mapped. An
//! arena's empty pools are a bitmap in its header, not a list through the pools, so nothing of
//! an empty pool needs its pages. All of this runs under the core's
//! arena lock: `Arenas` is only reachable through that lock's guard.

use core::ptr::{self, NonNull};

use crate::config::{Kind, ARENA_SIZE, KINDS, POOLS_PER_ARENA, RESERVE_ARENAS};
use crate::layout::{ArenaHeader, PoolHeader};
use crate::os::PageSource;
use crate::registry::REGISTRY;
use crate::tools;

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
        let bits = if run == 64 {
            u64::MAX
        } else {
            ((1u64 << run) - 1) << first
        };
        a.decommitted |= bits;
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
    /// Mapped arenas whose pools are all empty (at most RESERVE_ARENAS of each kind, A3).
    pub wholly_empty: usize,
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

/// The arena lock's state.
pub(crate) struct Arenas {
    kinds: [Usable; KINDS],
    all: *mut ArenaHeader,
    pub counters: ArenaCounters,
}

// SAFETY: the raw pointers lead to registry slots and arena memory that this state owns (A1); the
// state is only reached through the arena mutex.
unsafe impl Send for Arenas {}

impl Arenas {
    pub const fn new() -> Arenas {
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
            },
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
        // SAFETY: `ao` and its neighbours on `all` are headers of this core (precondition).
        unsafe {
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
            tools::unregister_root_region(base as *const u8, ARENA_SIZE);
            source.unmap_arena(NonNull::new_unchecked(base as *mut u8));
        }
        self.counters.mapped -= 1;
        self.counters.released += 1;
    }

    /// Takes an empty pool of `kind`, from the arena of that kind with the fewest free pools,
    /// mapping a new arena if none has one. Returns the pool (header not yet initialised) and
    /// its arena.
    pub fn take_pool<S: PageSource>(
        &mut self,
        source: &S,
        owner: usize,
        kind: Kind,
    ) -> Option<(*mut PoolHeader, *mut ArenaHeader)> {
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
            let pool = if a.free_pools != 0 {
                let i = a.free_pools.trailing_zeros() as usize;
                a.free_pools &= !(1 << i);
                a.decommitted &= !(1 << i);
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
            Some((pool, ao))
        }
    }

    /// Gives an empty pool back to its arena and restores the ordering of `usable`, unmapping the
    /// arena when all its pools are empty and it is not needed as the reserve.
    ///
    /// # Safety
    /// `pool` is a carved pool of this core with no block out, on no list, already marked empty.
    pub unsafe fn give_pool<S: PageSource>(&mut self, pool: *mut PoolHeader, source: &S) {
        // SAFETY: the pool and its arena belong to this core (precondition) and we hold the arena
        // lock, which guards an empty pool and its arena's header (P1, A1).
        unsafe {
            let ao = (*pool).arena;
            let a = &mut *ao;
            let kind = a.kind;
            let k = kind as usize;
            a.free_pools |= 1 << ((pool as usize - a.address) / kind.pool_size());
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

            // Case 1: every pool is empty. Unmap unless it is needed as the reserve (A3).
            if nf == a.ntotalpools {
                if self.kinds[k].wholly_empty >= RESERVE_ARENAS {
                    self.unlink_usable(ao);
                    self.free_arena(ao, source);
                    return;
                }
                self.counters.wholly_empty += 1;
                self.kinds[k].wholly_empty += 1;
            }
            if a.ntotalpools - nf <= kind.purge_at_pools_in_use() {
                purge(a, source);
            }
            let list = &mut self.kinds[k];
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

    /// Unmaps wholly empty arenas beyond each kind's reserve (A3). Returns how many went.
    pub fn release_beyond_reserve<S: PageSource>(&mut self, source: &S) -> usize {
        let mut released = 0;
        for kind in Kind::ALL {
            let (k, all) = (kind as usize, kind.pools_per_arena());
            while self.kinds[k].wholly_empty > RESERVE_ARENAS {
                // Wholly empty arenas are the rightmost on `usable`; the last is `nfp2lasta[all]`.
                let ao = self.kinds[k].nfp2lasta[all];
                debug_assert!(!ao.is_null());
                // SAFETY: `nfp2lasta[all]` is a wholly empty arena of this core on its kind's
                // `usable` while its `wholly_empty` > 0 (A3, A4); we hold the arena lock.
                unsafe {
                    let p = (*ao).prevarena;
                    self.kinds[k].nfp2lasta[all] = if !p.is_null() && (*p).nfreepools == all {
                        p
                    } else {
                        ptr::null_mut()
                    };
                    self.unlink_usable(ao);
                    self.free_arena(ao, source);
                }
                self.counters.wholly_empty -= 1;
                self.kinds[k].wholly_empty -= 1;
                released += 1;
            }
        }
        released
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
