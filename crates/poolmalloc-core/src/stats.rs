//! Statistics: counters kept where they change (`arena`, `large`, `classes`), a snapshot taken
//! under the locks, and its accounting identity. The snapshot's text report (after CPython's
//! `sys._debugmallocstats()`) and JSON are written in `report`.

use crate::arena::ArenaCounters;
use crate::central::{Core, Purger};
use crate::classes::ClassPools;
use crate::config::{Kind, ARENA_SIZE, KINDS, NB_SIZE_CLASSES, POOL_OVERHEAD};
use crate::large::{LargeStats, LargeTotals};
use crate::layout::CORE_HELD;
use crate::os::PageSource;
use crate::size_class::{Class, CLASS_TABLE};
use crate::sync::atomic::Ordering;

/// One size class in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Bytes in one block of the class.
    pub block_size: usize,
    /// Bytes in one pool of the class (its kind's).
    pub pool_size: usize,
    /// Pools serving the class that have a free block (on `usedpools`).
    pub pools_used: usize,
    /// Pools serving the class with every block out.
    pub pools_full: usize,
    /// Of `pools_used`, those a thread owns (the rest the core holds).
    pub pools_owned: usize,
    /// Blocks out of the class's pools: held by the program, or freed by another thread than
    /// the pool's owner and not yet taken back by it.
    pub blocks_out: usize,
    /// Blocks of the class's pools that are not out (free lists, owners' allocation lists, or
    /// never carved).
    pub free_in_pools: usize,
}

impl ClassStats {
    /// Pools serving the class, used or full.
    pub fn pools(&self) -> usize {
        self.pools_used + self.pools_full
    }
}

/// A consistent snapshot of a core, taken with every lock held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreStats {
    /// Each size class, by index.
    pub classes: [ClassStats; NB_SIZE_CLASSES],
    /// The arena counters.
    pub arenas: ArenaCounters,
    /// Mapped arenas of each kind (`Kind as usize`).
    pub arenas_of_kind: [usize; KINDS],
    /// Empty pools in mapped arenas, carved or not, of each kind.
    pub pools_empty: [usize; KINDS],
    /// The large path.
    pub large: LargeStats,
    /// What waits to go back to the OS (the passes' counts are in `arenas`).
    pub purge: PurgeStats,
}

/// What waits to go back to the OS (`arena`, "Memory back to the OS, in time").
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PurgeStats {
    /// Milliseconds an empty pool waits before a pass gives it back (0: at once).
    pub delay_ms: u64,
    /// Who runs the passes: the purger thread (true) or allocator calls.
    pub by_thread: bool,
    /// Bytes of empty pools kept committed (warm) in the arenas, waiting for a pass or a
    /// thread that needs a pool.
    pub warm_bytes: usize,
    /// Milliseconds until the next pass is due; `None` while nothing waits.
    pub next_in_ms: Option<u64>,
    /// Times the purger thread woke up (the faces fill it in; 0 where none runs).
    pub wakeups: usize,
}

impl CoreStats {
    /// Bytes of the mapped arenas.
    pub fn bytes_mapped(&self) -> usize {
        self.arenas.mapped * ARENA_SIZE
    }

    fn sum(&self, f: impl Fn(usize, &ClassStats) -> usize) -> usize {
        self.classes.iter().enumerate().map(|(i, c)| f(i, c)).sum()
    }

    /// Bytes in blocks out of the pools.
    pub fn bytes_in_blocks_out(&self) -> usize {
        self.sum(|_, c| c.blocks_out * c.block_size)
    }

    /// Bytes in free blocks of used and full pools.
    pub fn bytes_free_in_pools(&self) -> usize {
        self.sum(|_, c| c.free_in_pools * c.block_size)
    }

    /// Bytes taken by the headers of pools serving a class.
    pub fn bytes_pool_headers(&self) -> usize {
        self.sum(|_, c| c.pools() * POOL_OVERHEAD)
    }

    /// Bytes at the end of pools too small for one more block ("lost to quantization").
    pub fn bytes_quantization(&self) -> usize {
        self.sum(|i, c| c.pools() * CLASS_TABLE[i].pool_tail_waste)
    }

    /// Bytes of empty pools in mapped arenas.
    pub fn bytes_empty_pools(&self) -> usize {
        Kind::ALL
            .iter()
            .map(|&k| self.pools_empty[k as usize] * k.pool_size())
            .sum()
    }

    /// The parts that must add up to the mapped bytes.
    pub fn accounted_bytes(&self) -> usize {
        self.bytes_in_blocks_out()
            + self.bytes_free_in_pools()
            + self.bytes_pool_headers()
            + self.bytes_quantization()
            + self.bytes_empty_pools()
    }

    /// The accounting identity: blocks out + free blocks + headers + quantization + empty pools
    /// = arenas × ARENA_SIZE.
    pub fn identity_holds(&self) -> bool {
        self.accounted_bytes() == self.bytes_mapped()
    }

    /// Pools serving some class.
    pub fn pools_in_use(&self) -> usize {
        self.sum(|_, c| c.pools())
    }
}

impl<S: PageSource> Core<S> {
    /// One class's counts, under its lock only (cheaper than a full snapshot).
    pub fn class_stats(&self, class: Class) -> ClassStats {
        class_stats(&self.classes[class.index()].lock(), class)
    }

    /// A consistent snapshot, taken with every lock held in order.
    pub fn stats(&self) -> CoreStats {
        let locks = self.lock_all();
        let mut classes = [ClassStats::default(); NB_SIZE_CLASSES];
        let mut arenas_of_kind = [0; KINDS];
        for class in Class::all() {
            classes[class.index()] = class_stats(locks.class(class), class);
        }
        // Owned pools are on no class's books (O1): their counts are read from their headers.
        for ao in locks.arenas.iter_all() {
            // SAFETY: `all` links headers of this core's mapped arenas (A1); we hold the arena
            // lock, so none is unmapped and no pool is carved meanwhile.
            let a = unsafe { &*ao };
            arenas_of_kind[a.kind as usize] += 1;
            for pool in a.committed_pools() {
                // Its counts and owner words are atomics, which its owner writes without our
                // locks.
                // SAFETY: a committed carved pool of a mapped arena has an initialised header.
                let p = unsafe { &*pool };
                if p.remote.load(Ordering::Relaxed) == CORE_HELD {
                    continue;
                }
                if let Some(class) = p.class() {
                    let c = &mut classes[class.index()];
                    // Its owner stores the class and the count without our locks: an instant's
                    // view may pair a count with the class before, so it is kept in range.
                    let out = p.out().min(class.blocks_per_pool());
                    // A filed pool is full, and its owner's.
                    if p.is_filed() {
                        c.pools_full += 1;
                    } else {
                        c.pools_used += 1;
                    }
                    c.pools_owned += 1;
                    c.blocks_out += out;
                    c.free_in_pools += class.blocks_per_pool() - out;
                }
            }
        }
        let mut pools_empty = [0; KINDS];
        for kind in Kind::ALL {
            let in_use: usize = Class::all()
                .filter(|c| c.kind() == kind)
                .map(|c| classes[c.index()].pools())
                .sum();
            let k = kind as usize;
            pools_empty[k] = arenas_of_kind[k] * kind.pools_per_arena() - in_use;
        }
        let schedule = locks.arenas.schedule;
        let purge = PurgeStats {
            delay_ms: schedule.delay_ms,
            by_thread: self.purger() == Purger::Thread,
            warm_bytes: locks.arenas.warm_bytes(),
            next_in_ms: (schedule.next_at != 0)
                .then(|| schedule.next_at.saturating_sub(self.source.now_ms())),
            wakeups: 0,
        };
        CoreStats {
            purge,
            classes,
            arenas: locks.arenas.counters,
            arenas_of_kind,
            pools_empty,
            large: {
                let mut totals = LargeTotals::default();
                self.large.add_to(&mut totals);
                totals.stats()
            },
        }
    }
}

/// A class's counts as stats report them, from its lock's state.
fn class_stats(cls: &ClassPools, class: Class) -> ClassStats {
    ClassStats {
        block_size: class.block_size(),
        pool_size: class.kind().pool_size(),
        pools_used: cls.pools - cls.full,
        pools_full: cls.full,
        pools_owned: 0,
        blocks_out: cls.blocks_out,
        free_in_pools: cls.pools * class.blocks_per_pool() - cls.blocks_out,
    }
}
