//! Statistics: counters kept where they change, a snapshot taken under the locks, and the report
//! (after CPython's `sys._debugmallocstats()`), with its accounting identity.

use core::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::arena::ArenaCounters;
use crate::central::Core;
use crate::config::{
    ARENA_SIZE, NB_SMALL_SIZE_CLASSES, POOLS_PER_ARENA, POOL_OVERHEAD, POOL_SIZE,
    SMALL_REQUEST_THRESHOLD,
};
use crate::os::PageSource;
use crate::size_class::{Class, CLASS_TABLE};

/// Counters of the large path (atomics: the large path takes no core lock).
pub(crate) struct LargeCounters {
    allocs: AtomicUsize,
    live: AtomicUsize,
    live_bytes: AtomicUsize,
}

impl LargeCounters {
    pub const fn new() -> LargeCounters {
        LargeCounters {
            allocs: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            live_bytes: AtomicUsize::new(0),
        }
    }

    pub fn record_alloc(&self, bytes: usize) {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(1, Ordering::Relaxed);
        self.live_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Saturating: a face that cannot tell our large blocks from others' (C `free`) must not
    /// wrap the counts around.
    pub fn record_free(&self, bytes: usize) {
        let dec = |by: usize| move |n: usize| Some(n.saturating_sub(by));
        let _ = self
            .live
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, dec(1));
        let _ = self
            .live_bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, dec(bytes));
    }

    fn snapshot(&self) -> LargeStats {
        LargeStats {
            allocs_total: self.allocs.load(Ordering::Relaxed),
            live: self.live.load(Ordering::Relaxed),
            live_bytes: self.live_bytes.load(Ordering::Relaxed),
        }
    }
}

/// One size class in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassStats {
    pub block_size: usize,
    /// Pools serving the class that have a free block (on `usedpools`).
    pub pools_used: usize,
    /// Pools serving the class with every block out.
    pub pools_full: usize,
    /// Blocks out of the class's pools: in use by the program or held in thread caches.
    pub blocks_out: usize,
    /// Of `blocks_out`, those sitting in thread caches (filled in by the cache layer).
    pub blocks_in_caches: usize,
    /// Blocks of the class's pools that are not out (free list or never carved).
    pub free_in_pools: usize,
}

impl ClassStats {
    /// Blocks the program holds.
    pub fn blocks_in_use(&self) -> usize {
        self.blocks_out - self.blocks_in_caches
    }

    pub fn pools(&self) -> usize {
        self.pools_used + self.pools_full
    }
}

/// The large path in a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LargeStats {
    /// Requests served since the core was made.
    pub allocs_total: usize,
    pub live: usize,
    pub live_bytes: usize,
}

/// A consistent snapshot of a core, taken with every lock held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreStats {
    pub classes: [ClassStats; NB_SMALL_SIZE_CLASSES],
    pub arenas: ArenaCounters,
    /// Empty pools in mapped arenas, carved or not.
    pub pools_empty: usize,
    pub large: LargeStats,
}

impl CoreStats {
    pub fn bytes_mapped(&self) -> usize {
        self.arenas.mapped * ARENA_SIZE
    }

    fn sum(&self, f: impl Fn(usize, &ClassStats) -> usize) -> usize {
        self.classes.iter().enumerate().map(|(i, c)| f(i, c)).sum()
    }

    /// Bytes in blocks out of the pools (program and thread caches).
    pub fn bytes_in_blocks_out(&self) -> usize {
        self.sum(|_, c| c.blocks_out * c.block_size)
    }

    /// Bytes in blocks the program holds.
    pub fn bytes_in_use(&self) -> usize {
        self.sum(|_, c| c.blocks_in_use() * c.block_size)
    }

    /// Bytes in blocks held by thread caches.
    pub fn bytes_in_caches(&self) -> usize {
        self.sum(|_, c| c.blocks_in_caches * c.block_size)
    }

    /// Bytes in free blocks of used and full pools.
    pub fn bytes_free_in_pools(&self) -> usize {
        self.sum(|_, c| c.free_in_pools * c.block_size)
    }

    pub fn bytes_pool_headers(&self) -> usize {
        self.sum(|_, c| c.pools() * POOL_OVERHEAD)
    }

    /// Bytes at the end of pools too small for one more block ("lost to quantization").
    pub fn bytes_quantization(&self) -> usize {
        self.sum(|i, c| c.pools() * CLASS_TABLE[i].pool_tail_waste)
    }

    pub fn bytes_empty_pools(&self) -> usize {
        self.pools_empty * POOL_SIZE
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
        self.classes[class.index()].lock().stats(class)
    }

    /// A consistent snapshot, taken with every lock held in order.
    pub fn stats(&self) -> CoreStats {
        let locks = self.lock_all();
        let mut classes = [ClassStats::default(); NB_SMALL_SIZE_CLASSES];
        for class in Class::all() {
            classes[class.index()] = locks.class(class).stats(class);
        }
        let pools_in_use: usize = classes.iter().map(ClassStats::pools).sum();
        let arenas = locks.arenas.counters;
        CoreStats {
            classes,
            arenas,
            pools_empty: arenas.mapped * POOLS_PER_ARENA - pools_in_use,
            large: self.large.snapshot(),
        }
    }
}

impl CoreStats {
    /// The snapshot as one JSON object: every field, and the derived byte counts the text report
    /// prints. Written by hand so that faces without a JSON library (the C ABI) share it; it
    /// allocates nothing of its own.
    pub fn write_json(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str("{\"classes\":[")?;
        let in_use = self.classes.iter().enumerate();
        let in_use = in_use.filter(|(_, c)| c.pools() > 0 || c.blocks_in_caches > 0);
        comma_separated(f, in_use, |f, (i, c)| {
            write!(
                f,
                "{{\"class\":{i},\"block_size\":{},\"pools_used\":{},\"pools_full\":{},\
                 \"blocks_out\":{},\"blocks_in_use\":{},\"blocks_in_caches\":{},\
                 \"free_in_pools\":{}}}",
                c.block_size,
                c.pools_used,
                c.pools_full,
                c.blocks_out,
                c.blocks_in_use(),
                c.blocks_in_caches,
                c.free_in_pools
            )
        })?;
        let a = &self.arenas;
        write!(
            f,
            "],\"arenas\":{{\"mapped\":{},\"mapped_ever\":{},\"released\":{},\"high_water\":{},\
             \"map_failures\":{},\"wholly_empty\":{}}},\"pools_empty\":{},\"pools_in_use\":{},\
             \"large\":{{\"allocs_total\":{},\"live\":{},\"live_bytes\":{}}},",
            a.mapped,
            a.mapped_ever,
            a.released,
            a.high_water,
            a.map_failures,
            a.wholly_empty,
            self.pools_empty,
            self.pools_in_use(),
            self.large.allocs_total,
            self.large.live,
            self.large.live_bytes
        )?;
        write!(
            f,
            "\"bytes\":{{\"mapped\":{},\"in_use\":{},\"in_caches\":{},\"free_in_pools\":{},\
             \"empty_pools\":{},\"pool_headers\":{},\"quantization\":{},\"accounted\":{}}},\
             \"identity_holds\":{}}}",
            self.bytes_mapped(),
            self.bytes_in_use(),
            self.bytes_in_caches(),
            self.bytes_free_in_pools(),
            self.bytes_empty_pools(),
            self.bytes_pool_headers(),
            self.bytes_quantization(),
            self.accounted_bytes(),
            self.identity_holds()
        )
    }
}

/// Writes `items` separated by commas, each through `one`: the JSON writers' arrays and
/// objects.
pub(crate) fn comma_separated<W: fmt::Write, T>(
    f: &mut W,
    items: impl IntoIterator<Item = T>,
    mut one: impl FnMut(&mut W, T) -> fmt::Result,
) -> fmt::Result {
    for (n, item) in items.into_iter().enumerate() {
        if n > 0 {
            f.write_char(',')?;
        }
        one(f, item)?;
    }
    Ok(())
}

/// Groups digits in threes, as CPython's report does.
pub(crate) struct Thousands(pub(crate) usize);

impl fmt::Display for Thousands {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut digits = [0u8; 32];
        let mut n = self.0;
        let mut len = 0;
        loop {
            if len % 4 == 3 {
                digits[len] = b',';
                len += 1;
            }
            digits[len] = b'0' + (n % 10) as u8;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        digits[..len].reverse();
        let text = core::str::from_utf8(&digits[..len]).map_err(|_| fmt::Error)?;
        f.pad(text)
    }
}

impl fmt::Display for CoreStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Small block threshold = {SMALL_REQUEST_THRESHOLD}, in {NB_SMALL_SIZE_CLASSES} size classes."
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "class   size   num pools   full pools   blocks in use   in caches   avail blocks"
        )?;
        writeln!(
            f,
            "-----   ----   ---------   ----------   -------------   ---------   ------------"
        )?;
        for (i, c) in self.classes.iter().enumerate() {
            if c.pools() == 0 && c.blocks_in_caches == 0 {
                continue;
            }
            writeln!(
                f,
                "{:>5}   {:>4}   {:>9}   {:>10}   {:>13}   {:>9}   {:>12}",
                i,
                c.block_size,
                c.pools(),
                c.pools_full,
                c.blocks_in_use(),
                c.blocks_in_caches,
                c.free_in_pools
            )?;
        }
        writeln!(f)?;
        let a = &self.arenas;
        let line = |f: &mut fmt::Formatter<'_>, label: &str, n: usize| {
            writeln!(f, "{label:<40}= {:>21}", Thousands(n))
        };
        line(f, "# arenas allocated total", a.mapped_ever)?;
        line(f, "# arenas reclaimed", a.released)?;
        line(f, "# arenas highwater mark", a.high_water)?;
        line(f, "# arenas allocated current", a.mapped)?;
        line(f, "# arena map failures", a.map_failures)?;
        line(
            f,
            &format!("{} arenas * {} bytes/arena", a.mapped, ARENA_SIZE),
            self.bytes_mapped(),
        )?;
        writeln!(f)?;
        line(f, "# bytes in allocated blocks", self.bytes_in_use())?;
        line(f, "# bytes in thread caches", self.bytes_in_caches())?;
        line(f, "# bytes in available blocks", self.bytes_free_in_pools())?;
        line(
            f,
            &format!("{} unused pools * {} bytes", self.pools_empty, POOL_SIZE),
            self.bytes_empty_pools(),
        )?;
        line(f, "# bytes lost to pool headers", self.bytes_pool_headers())?;
        line(f, "# bytes lost to quantization", self.bytes_quantization())?;
        line(f, "Total", self.accounted_bytes())?;
        if !self.identity_holds() {
            writeln!(
                f,
                "!! accounting identity broken: parts {} != mapped {}",
                self.accounted_bytes(),
                self.bytes_mapped()
            )?;
        }
        writeln!(f)?;
        line(f, "# large-path blocks live", self.large.live)?;
        line(f, "# large-path bytes live", self.large.live_bytes)?;
        line(f, "# large-path requests served", self.large.allocs_total)
    }
}

#[cfg(test)]
mod tests {
    use super::Thousands;

    #[test]
    fn json_is_well_formed_and_complete() {
        let core = crate::Core::new(crate::MemPages::new(1));
        let p = core.alloc(core::alloc::Layout::from_size_align(24, 8).unwrap());
        let mut json = String::new();
        core.stats().write_json(&mut json).unwrap();
        assert!(
            json.starts_with("{\"classes\":[{\"class\":2,\"block_size\":24,"),
            "{json}"
        );
        assert!(json.contains("\"mapped\":1,") && json.ends_with("\"identity_holds\":true}"));
        let opens = json.matches(['{', '[']).count();
        let closes = json.matches(['}', ']']).count();
        assert_eq!(opens, closes, "{json}");
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe {
            core.dealloc(p, core::alloc::Layout::from_size_align(24, 8).unwrap())
                .unwrap()
        };
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(Thousands(0).to_string(), "0");
        assert_eq!(Thousands(999).to_string(), "999");
        assert_eq!(Thousands(1000).to_string(), "1,000");
        assert_eq!(Thousands(1_048_576).to_string(), "1,048,576");
        assert_eq!(format!("{:>8}", Thousands(1234)), "   1,234");
    }
}
