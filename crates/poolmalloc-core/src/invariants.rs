//! `check_invariants()`: a walk of every arena and pool that checks each state against its list
//! membership and its counts (talc's `scan_for_errors`, mimalloc's expensive asserts). Tests run it
//! after every step. It allocates nothing, so it can run inside the global allocator's process.

use core::fmt;

use crate::arena::Arenas;
use crate::central::Core;
use crate::config::{Kind, KINDS, NB_SIZE_CLASSES, POOLS_PER_ARENA, RESERVE_ARENAS};
use crate::layout::{pool_of, ArenaHeader, FreeBlock, PoolHeader, CORE_HELD};
use crate::os::PageSource;
use crate::registry::REGISTRY;
use crate::size_class::Class;
use crate::sync::atomic::Ordering;

/// A broken invariant: which one (its name in `lib.rs`), and where.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The invariant's name and what is wrong, e.g. "P2: free + out != carved".
    pub what: &'static str,
    /// Where: a pool's or an arena's address, or a class index or count for whole-core checks.
    pub addr: usize,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invariant broken at {:#x}: {}", self.addr, self.what)
    }
}

fn check(ok: bool, what: &'static str, addr: usize) -> Result<(), Violation> {
    if ok {
        Ok(())
    } else {
        Err(Violation { what, addr })
    }
}

#[derive(Clone, Copy, Default)]
struct Tally {
    used: usize,
    full: usize,
    refs: usize,
}

impl<S: PageSource> Core<S> {
    /// Walks every arena and pool under all locks and checks the invariants of `lib.rs`.
    pub fn check_invariants(&self) -> Result<(), Violation> {
        let locks = self.lock_all();
        let arenas = &*locks.arenas;
        let mut tally = [Tally::default(); NB_SIZE_CLASSES];
        let mut mapped = 0;
        let mut wholly_empty = [0; KINDS];
        let mut with_free_pools = [0; KINDS];

        for ao in arenas.iter_all() {
            mapped += 1;
            // SAFETY: `all` links headers of this core's arenas (A1) and we hold every lock.
            let a = unsafe { &*ao };
            let base = a.address;
            check(
                base % crate::config::ARENA_SIZE == 0,
                "A1: arena not aligned",
                base,
            )?;
            let slot = REGISTRY.lookup(base);
            check(
                slot.is_some_and(|s| {
                    core::ptr::eq(s.header.get(), ao) && self.owns(base as *const u8)
                }),
                "R1: arena not registered to this core",
                base,
            )?;
            check(
                slot.is_some_and(|s| s.kind() == a.kind),
                "R1: arena registered with another kind",
                base,
            )?;
            let (kind, per_arena) = (a.kind, a.kind.pools_per_arena());
            let carved = a.carved();
            check(carved <= per_arena, "A1: carved past the arena", base)?;
            check(a.ntotalpools == per_arena, "A1: wrong pool total", base)?;
            let mut empty_carved = 0;
            for pool in a.committed_pools() {
                // SAFETY: committed carved pools of a mapped arena have initialised headers (P4:
                // only never-carved pools are plain zeroed memory, and decommitted ones are
                // skipped), and we hold every lock (P1).
                let p = unsafe { &*pool };
                let owner = p.owner.load(Ordering::Relaxed);
                let core_held = p.remote.load(Ordering::Relaxed) == CORE_HELD;
                match p.class() {
                    None => {
                        check(
                            p.out() == 0,
                            "P4: empty pool with blocks out",
                            pool as usize,
                        )?;
                        check(owner == 0, "P4: empty pool with an owner", pool as usize)?;
                        empty_carved += 1;
                    }
                    Some(class) if class.kind() != kind => {
                        return Err(Violation {
                            what: "P1: pool serves a class of another kind",
                            addr: pool as usize,
                        });
                    }
                    Some(class) if core_held => {
                        check(
                            owner == 0,
                            "O3: core-held pool with an owner",
                            pool as usize,
                        )?;
                        self.check_pool(pool, class)?;
                        let t = &mut tally[class.index()];
                        t.refs += p.out();
                        if p.has_free() {
                            t.used += 1;
                        } else {
                            t.full += 1;
                        }
                    }
                    // Owned: its lists are its owner's (O1), and its class, carving offset and
                    // count move while its owner works (Relaxed stores, seen in any order): only
                    // that it is owned is stable under our locks (O3).
                    Some(_) => {
                        check(owner != 0, "O1: owned pool without an owner", pool as usize)?;
                    }
                }
            }
            // Free-pool bitmap: exactly the carved empty pools; the decommitted ones among them.
            let carved_bits = if carved == 64 {
                u64::MAX
            } else {
                (1u64 << carved) - 1
            };
            check(
                a.free_pools & !carved_bits == 0,
                "A2: free-pool bit past the carved pools",
                base,
            )?;
            check(
                a.decommitted & !a.free_pools == 0,
                "A2: a pool in use is decommitted",
                base,
            )?;
            check(
                a.claimed & (a.free_pools | !carved_bits) == 0,
                "A2: a pool claimed by a purge is on the free bitmap",
                base,
            )?;
            check(
                a.old & !(a.free_pools & !a.decommitted) == 0,
                "A2: a pool waiting for a purge is not empty and committed",
                base,
            )?;
            for i in 0..carved {
                let empty_here = a.free_pools & (1 << i) != 0 && a.decommitted & (1 << i) == 0;
                if empty_here {
                    // SAFETY: a committed carved pool of this arena (just checked); every lock
                    // is held.
                    let pool = (base + i * kind.pool_size()) as *const PoolHeader;
                    // SAFETY: as above.
                    let tag = unsafe { (*pool).class() };
                    check(
                        tag.is_none(),
                        "A2: pool on the free bitmap serves a class",
                        base,
                    )?;
                }
            }
            check(
                (a.free_pools & !a.decommitted).count_ones() as usize == empty_carved,
                "A2: empty pool missing from the free bitmap",
                base,
            )?;
            let empty_carved = a.free_pools.count_ones() as usize;
            check(
                a.nfreepools == empty_carved + (per_arena - carved),
                "A2: nfreepools disagrees with the pools",
                base,
            )?;
            if a.nfreepools == a.ntotalpools {
                wholly_empty[kind as usize] += 1;
            }
            if a.nfreepools > 0 {
                with_free_pools[kind as usize] += 1;
            }
        }

        // Each class's list of pools given back as they were: exactly the empty, committed
        // pools whose arena names the class for them.
        let tagged: usize = arenas
            .iter_all()
            // SAFETY: `all` links headers of this core's arenas (A1) and we hold every lock.
            .map(|ao| unsafe { (*ao).last_class.iter().filter(|&&t| t != 0).count() })
            .sum();
        let mut listed = 0;
        for class in Class::all() {
            for pool in arenas.warm_of(class) {
                check(
                    listed < tagged,
                    "A2: a class's warm list is longer than its pools",
                    0,
                )?;
                listed += 1;
                // SAFETY: a listed pool is an empty committed pool of this core (checked below
                // against its arena's bitmaps); we hold every lock.
                let (a, i) = unsafe {
                    let ao = crate::arena::arena_of(pool);
                    (
                        &*ao,
                        (pool as usize - (*ao).address) / (*ao).kind.pool_size(),
                    )
                };
                check(
                    a.free_pools & !a.decommitted & (1 << i) != 0
                        && a.last_class[i] as usize == class.index() + 1,
                    "A2: a pool on a class's warm list is not its empty committed pool",
                    pool as usize,
                )?;
            }
        }
        check(
            listed == tagged,
            "A2: a pool named for its class is not on its warm list",
            0,
        )?;

        let counters = arenas.counters;
        check(
            counters.mapped == mapped,
            "A1: mapped counter disagrees with the arenas",
            0,
        )?;
        check(
            counters.wholly_empty == wholly_empty.iter().sum::<usize>(),
            "A3: wholly-empty counter wrong",
            0,
        )?;
        for kind in Kind::ALL {
            let k = kind as usize;
            check(
                arenas.wholly_empty(kind) == wholly_empty[k],
                "A3: wholly-empty counter of a kind wrong",
                k,
            )?;
            check(
                wholly_empty[k] <= RESERVE_ARENAS || arenas.schedule.next_at != 0,
                "A3: more empty arenas than the reserve, and no purge pass due",
                k,
            )?;
            check_usable(arenas, kind, mapped, with_free_pools[k])?;
        }

        for class in Class::all() {
            let cls = locks.class(class);
            let t = tally[class.index()];
            let mut on_list = 0;
            let mut prev: *mut PoolHeader = core::ptr::null_mut();
            let mut pool = cls.usedpools;
            while !pool.is_null() {
                check(
                    on_list < t.used,
                    "P3: usedpools longer than the used pools",
                    pool as usize,
                )?;
                // SAFETY: `usedpools` links headers of this class's pools (P3); we hold its lock (P1).
                let p = unsafe { &*pool };
                check(
                    p.class() == Some(class),
                    "P3: pool on another class's list",
                    pool as usize,
                )?;
                check(
                    p.prevpool == prev,
                    "P3: usedpools back link wrong",
                    pool as usize,
                )?;
                check(
                    p.has_free() && p.out() > 0,
                    "P3: non-used pool on usedpools",
                    pool as usize,
                )?;
                on_list += 1;
                prev = pool;
                pool = p.nextpool;
            }
            check(
                on_list == t.used,
                "P3: used pool missing from usedpools",
                class.index(),
            )?;
            check(
                cls.full == t.full,
                "P3: full-pool counter wrong",
                class.index(),
            )?;
            check(
                cls.pools == t.used + t.full,
                "P3: pool counter wrong",
                class.index(),
            )?;
            check(
                cls.blocks_out == t.refs,
                "P2: blocks-out counter wrong",
                class.index(),
            )?;
        }
        Ok(())
    }

    /// One pool serving `class`: counts, free list and carving agree.
    fn check_pool(&self, pool: *mut PoolHeader, class: Class) -> Result<(), Violation> {
        // SAFETY: the caller walks carved pools of a mapped arena under every lock (P1), and a
        // carved pool's header is initialised.
        let p = unsafe { &*pool };
        let at = pool as usize;
        check(
            p.out() > 0,
            "P4: pool serving a class with no block out",
            at,
        )?;
        let carved = p.carved();
        check(
            carved <= class.blocks_per_pool(),
            "P2: carved past the pool",
            at,
        )?;
        check(p.out() <= carved, "P2: more blocks out than carved", at)?;
        let mut free = 0;
        let mut block = p.freeblock;
        while !FreeBlock::is_end(block) {
            check(free < carved, "P2: free list longer than the pool", at)?;
            check(
                pool_of(block.cast(), class.kind()) == pool,
                "P2: free list leaves its pool",
                block as usize,
            )?;
            check(
                p.is_block_start(block as usize),
                "P2: free list entry not a block",
                block as usize,
            )?;
            free += 1;
            // SAFETY: the entry is a carved block of this pool (checked above); its first word is
            // its link (P2).
            block = unsafe { FreeBlock::next(block) };
        }
        check(free + p.out() == carved, "P2: free + out != carved", at)
    }
}

/// One kind's `usable` list against the arenas walked (`with_free_pools` of its kind).
fn check_usable(
    arenas: &Arenas,
    kind: Kind,
    mapped: usize,
    with_free_pools: usize,
) -> Result<(), Violation> {
    // `usable`: every arena with a free pool, sorted fewest first, `nfp2lasta` its rightmost.
    let mut on_usable = 0;
    let mut prev: *mut ArenaHeader = core::ptr::null_mut();
    let mut last_of = [core::ptr::null_mut::<ArenaHeader>(); POOLS_PER_ARENA + 1];
    for ao in arenas.iter_usable(kind) {
        check(
            on_usable < mapped,
            "A4: usable list longer than the arenas",
            0,
        )?;
        // SAFETY: `usable` links headers of this core's arenas (A4); we hold the arena lock.
        let a = unsafe { &*ao };
        check(
            a.prevarena == prev,
            "A4: usable list back link wrong",
            a.address,
        )?;
        check(
            a.nfreepools > 0,
            "A4: arena without free pools on usable",
            a.address,
        )?;
        if !prev.is_null() {
            // SAFETY: `prev` came off `usable`, which links headers of this core's arenas (A4);
            // we hold the arena lock.
            let before = unsafe { (*prev).nfreepools };
            check(
                before <= a.nfreepools,
                "A4: usable not sorted by free pools",
                a.address,
            )?;
        }
        last_of[a.nfreepools] = ao;
        prev = ao;
        on_usable += 1;
    }
    check(
        on_usable == with_free_pools,
        "A4: arena with free pools off usable",
        0,
    )?;
    for (nf, last) in last_of
        .iter()
        .enumerate()
        .skip(1)
        .take(kind.pools_per_arena())
    {
        check(
            arenas.nfp2lasta(kind, nf) == *last,
            "A4: nfp2lasta is not the rightmost",
            nf,
        )?;
    }
    Ok(())
}
