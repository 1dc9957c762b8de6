//! The fragmentation explainer: which pools pin memory, and what freeing would give back.
//!
//! The seed's question — most objects die, a few survive: where did the memory go? — is answered
//! by a walk of every arena and pool, under all the core's locks taken in the documented order
//! (`Core::lock_all`: class locks by index, then the arena lock), as `check_invariants` walks.
//! The walk writes into a plain `Copy` snapshot of fixed-size arrays and allocates nothing while
//! it holds the locks: the allocator it inspects may be the process's global allocator, and an
//! allocation inside the walk would wait on a lock the walk holds.
//!
//! Words used here:
//! - a pool's *occupancy* is its blocks out over its capacity (blocks per pool);
//! - a pool is *sparse* when it has one block out, or at most `FRAG_SPARSE_PERCENT` of its
//!   capacity: a few blocks pin a whole pool. These are the *pinned* pools;
//! - a pool's *idle* bytes are those not in a block out: free blocks, room never carved, header
//!   and tail;
//! - an arena *could go back* when every pool it has in use is sparse: emptying them would empty
//!   it, and it would be unmapped unless kept as the reserve (A3).
//!
//! The snapshot's text report and JSON are written in `report`.

use crate::central::Core;
use crate::config::{
    Kind, ARENA_ADDR_MASK, ARENA_SIZE, FRAG_HALF_PERCENT, FRAG_SPARSE_PERCENT, FRAG_TOP_ARENAS,
    FRAG_TOP_POOLS, KINDS, NB_SIZE_CLASSES, POOL_OVERHEAD, RESERVE_ARENAS,
};
use crate::os::PageSource;
use crate::size_class::{Class, CLASS_TABLE};

/// Number of occupancy bands.
pub const BANDS: usize = 5;

/// Occupancy band of a pool in use, emptiest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Band {
    /// One block out: one object pins the whole pool.
    One,
    /// At most `FRAG_SPARSE_PERCENT` of the capacity out.
    Sparse,
    /// At most `FRAG_HALF_PERCENT`.
    Half,
    /// More than that, but a block is free.
    Most,
    /// Every block out.
    Full,
}

impl Band {
    /// Every band, emptiest first.
    pub const ALL: [Band; BANDS] = [Band::One, Band::Sparse, Band::Half, Band::Most, Band::Full];

    /// The band of a pool with `out` of `capacity` blocks out.
    pub const fn of(out: usize, capacity: usize) -> Band {
        if out >= capacity {
            Band::Full
        } else if out == 1 {
            Band::One
        } else if out * 100 <= capacity * FRAG_SPARSE_PERCENT {
            Band::Sparse
        } else if out * 100 <= capacity * FRAG_HALF_PERCENT {
            Band::Half
        } else {
            Band::Most
        }
    }

    /// The band's position in `Band::ALL` and in the snapshot's per-band arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Sparse pools are the pinned ones: what the report asks to look at.
    pub const fn is_sparse(self) -> bool {
        matches!(self, Band::One | Band::Sparse)
    }

    /// A stable name, for JSON keys.
    pub const fn name(self) -> &'static str {
        match self {
            Band::One => "one_block",
            Band::Sparse => "sparse",
            Band::Half => "half",
            Band::Most => "most",
            Band::Full => "full",
        }
    }
}

/// One size class in a fragmentation snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClassFrag {
    /// Bytes in one block of the class.
    pub block_size: usize,
    /// Bytes in one pool of the class (its kind's).
    pub pool_size: usize,
    /// Blocks one pool of the class holds.
    pub capacity: usize,
    /// Pools in use, by occupancy band (`Band::index`).
    pub pools: [usize; BANDS],
    /// Blocks out of the class's pools (held by the program, or freed by another thread than
    /// the pool's owner and not yet taken back).
    pub blocks_out: usize,
    /// Of `blocks_out`, those in sparse pools.
    pub blocks_out_sparse: usize,
    /// Idle bytes of the class's partly-used pools: what they hold beyond their blocks out.
    pub bytes_idle: usize,
}

impl ClassFrag {
    /// Pools serving the class, in every band.
    pub fn pools_in_use(&self) -> usize {
        self.pools.iter().sum()
    }

    /// Pools with every block out.
    pub fn pools_full(&self) -> usize {
        self.pools[Band::Full.index()]
    }

    /// Pools with blocks out and blocks free.
    pub fn pools_used(&self) -> usize {
        self.pools_in_use() - self.pools_full()
    }

    /// Pools in a sparse band: the pinned ones.
    pub fn pools_sparse(&self) -> usize {
        Band::ALL
            .iter()
            .filter(|b| b.is_sparse())
            .map(|b| self.pools[b.index()])
            .sum()
    }
}

/// One arena in a fragmentation snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ArenaFrag {
    /// Base address of the arena.
    pub address: usize,
    /// The kind of pool it is carved into.
    pub kind: Kind,
    /// Pools with blocks out and blocks free.
    pub pools_used: usize,
    /// Pools with every block out.
    pub pools_full: usize,
    /// Empty pools, carved or never carved.
    pub pools_empty: usize,
    /// Of the pools in use, the sparse ones.
    pub pools_sparse: usize,
    /// Blocks out of the arena's pools.
    pub blocks_out: usize,
}

impl ArenaFrag {
    /// Pools serving some class.
    pub fn pools_in_use(&self) -> usize {
        self.pools_used + self.pools_full
    }

    /// Every pool in use is sparse: emptying them would empty the arena.
    pub fn could_go_back(&self) -> bool {
        self.pools_in_use() > 0 && self.pools_sparse == self.pools_in_use()
    }

    /// No pool in use: the arena is unmapped unless it is the reserve (A3).
    pub fn wholly_empty(&self) -> bool {
        self.pools_in_use() == 0
    }
}

/// One of the most wasteful partly-used pools: a whole pool stays mapped for few bytes of
/// blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolFrag {
    /// Address of the pool.
    pub address: usize,
    /// Index of the class it serves.
    pub class: usize,
    /// Bytes in one block of its class.
    pub block_size: usize,
    /// Blocks out of the pool.
    pub blocks_out: usize,
    /// Blocks the pool holds.
    pub capacity: usize,
    /// Bytes of the pool not in a block out.
    pub bytes_idle: usize,
    /// The only pool in use in its arena: emptying it would empty the arena.
    pub alone_in_arena: bool,
}

/// The `N` best items offered so far, best first, in a fixed array (the walk cannot allocate).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Top<T, const N: usize> {
    items: [T; N],
    len: usize,
}

impl<T: Copy + Default, const N: usize> Top<T, N> {
    fn new() -> Self {
        Top {
            items: [T::default(); N],
            len: 0,
        }
    }

    /// Keeps `item` if it is among the `N` best; `better(a, b)` is a strict order.
    fn offer(&mut self, item: T, better: impl Fn(&T, &T) -> bool) {
        let at = self.items[..self.len]
            .iter()
            .position(|old| better(&item, old))
            .unwrap_or(self.len);
        if at >= N {
            return;
        }
        let end = self.len.min(N - 1);
        self.items.copy_within(at..end, at + 1);
        self.items[at] = item;
        self.len = (self.len + 1).min(N);
    }

    fn as_slice(&self) -> &[T] {
        &self.items[..self.len]
    }

    fn as_mut_slice(&mut self) -> &mut [T] {
        &mut self.items[..self.len]
    }
}

/// More idle bytes first; at equal waste, lower address first (a stable order for tests).
fn more_wasteful(a: &PoolFrag, b: &PoolFrag) -> bool {
    (b.bytes_idle, a.address) < (a.bytes_idle, b.address)
}

/// Fewer blocks out first: the arenas fewest frees away from going back.
fn nearer_release(a: &ArenaFrag, b: &ArenaFrag) -> bool {
    (a.blocks_out, a.address) < (b.blocks_out, b.address)
}

/// A fragmentation snapshot of a core, taken with every lock held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragmentation {
    /// Each size class, by index.
    pub classes: [ClassFrag; NB_SIZE_CLASSES],
    /// Arenas mapped.
    pub arenas_mapped: usize,
    /// Pools the mapped arenas hold, in use or empty.
    pub pools_total: usize,
    /// Bytes of the empty pools.
    pub bytes_empty_pools: usize,
    /// Of each kind, arenas wholly empty or that could go back (the reserve is per kind).
    back_by_kind: [usize; KINDS],
    /// Mapped arenas with no pool in use (at most `RESERVE_ARENAS`, A3).
    pub arenas_wholly_empty: usize,
    /// Arenas whose pools in use are all sparse.
    pub arenas_could_go_back: usize,
    /// Empty pools in mapped arenas, carved or not.
    pub pools_empty: usize,
    /// Bytes of empty pools kept committed (warm), until a purge pass gives them back.
    pub bytes_warm: usize,
    /// Milliseconds until the next purge pass is due; `None` while nothing waits.
    pub purge_in_ms: Option<u64>,
    arenas: Top<ArenaFrag, FRAG_TOP_ARENAS>,
    pools: Top<PoolFrag, FRAG_TOP_POOLS>,
}

impl Fragmentation {
    fn new() -> Fragmentation {
        let mut classes = [ClassFrag::default(); NB_SIZE_CLASSES];
        for (c, info) in classes.iter_mut().zip(CLASS_TABLE.iter()) {
            c.block_size = info.block_size;
            c.pool_size = info.pool_size;
            c.capacity = info.blocks_per_pool;
        }
        Fragmentation {
            classes,
            arenas_mapped: 0,
            pools_total: 0,
            bytes_empty_pools: 0,
            back_by_kind: [0; KINDS],
            arenas_wholly_empty: 0,
            arenas_could_go_back: 0,
            pools_empty: 0,
            bytes_warm: 0,
            purge_in_ms: None,
            arenas: Top::new(),
            pools: Top::new(),
        }
    }

    /// Up to `FRAG_TOP_ARENAS` arenas, fewest blocks out first (then by address).
    pub fn arenas(&self) -> &[ArenaFrag] {
        self.arenas.as_slice()
    }

    /// Up to `FRAG_TOP_POOLS` partly-used pools, most idle bytes first (then by address).
    pub fn wasteful_pools(&self) -> &[PoolFrag] {
        self.pools.as_slice()
    }

    fn sum(&self, f: impl Fn(&ClassFrag) -> usize) -> usize {
        self.classes.iter().map(f).sum()
    }

    /// Pools serving some class.
    pub fn pools_in_use(&self) -> usize {
        self.sum(ClassFrag::pools_in_use)
    }

    /// Pools with every block out.
    pub fn pools_full(&self) -> usize {
        self.sum(ClassFrag::pools_full)
    }

    /// Pools in use per band, over all classes.
    pub fn pools_by_band(&self) -> [usize; BANDS] {
        let mut bands = [0; BANDS];
        for c in &self.classes {
            for (total, n) in bands.iter_mut().zip(c.pools) {
                *total += n;
            }
        }
        bands
    }

    /// The pinned pools: sparse ones.
    pub fn pools_sparse(&self) -> usize {
        self.sum(ClassFrag::pools_sparse)
    }

    /// Bytes the sparse pools keep mapped.
    pub fn bytes_pinned(&self) -> usize {
        self.sum(|c| c.pools_sparse() * c.pool_size)
    }

    /// Blocks out of every pool.
    pub fn blocks_out(&self) -> usize {
        self.sum(|c| c.blocks_out)
    }

    /// Of those, blocks in sparse pools.
    pub fn blocks_out_sparse(&self) -> usize {
        self.sum(|c| c.blocks_out_sparse)
    }

    /// Bytes in blocks out of sparse pools.
    pub fn bytes_out_sparse(&self) -> usize {
        self.sum(|c| c.blocks_out_sparse * c.block_size)
    }

    /// Bytes in blocks out of every pool.
    pub fn bytes_in_blocks_out(&self) -> usize {
        self.sum(|c| c.blocks_out * c.block_size)
    }

    /// Idle bytes of partly-used pools, over all classes.
    pub fn bytes_idle(&self) -> usize {
        self.sum(|c| c.bytes_idle)
    }

    /// Bytes of the mapped arenas.
    pub fn bytes_mapped(&self) -> usize {
        self.arenas_mapped * ARENA_SIZE
    }

    /// Arenas unmapped if every sparse pool emptied: those that could go back join the wholly
    /// empty ones, and all of them but each kind's reserve go (A3).
    pub fn arenas_back_if_sparse_emptied(&self) -> usize {
        self.back_by_kind
            .iter()
            .map(|n| n.saturating_sub(RESERVE_ARENAS))
            .sum()
    }

    /// Bytes of the arenas `arenas_back_if_sparse_emptied` counts.
    pub fn bytes_back_if_sparse_emptied(&self) -> usize {
        self.arenas_back_if_sparse_emptied() * ARENA_SIZE
    }

    /// Blocks out + idle bytes of partly-used pools + header and tail of full pools + empty pools.
    pub fn accounted_bytes(&self) -> usize {
        let full_overhead: usize = self
            .classes
            .iter()
            .zip(CLASS_TABLE.iter())
            .map(|(c, info)| c.pools_full() * (POOL_OVERHEAD + info.pool_tail_waste))
            .sum();
        self.bytes_in_blocks_out() + self.bytes_idle() + full_overhead + self.bytes_empty_pools
    }

    /// The snapshot's own accounting identity: its parts add up to the mapped bytes, and its pools
    /// to the arenas' pools.
    pub fn identity_holds(&self) -> bool {
        self.accounted_bytes() == self.bytes_mapped()
            && self.pools_in_use() + self.pools_empty == self.pools_total
    }
}

impl<S: PageSource> Core<S> {
    /// Walks every arena and pool under all locks into a fragmentation snapshot. Allocates
    /// nothing while the locks are held.
    pub fn fragmentation(&self) -> Fragmentation {
        let mut f = Fragmentation::new();
        let locks = self.lock_all();
        for ao in locks.arenas.iter_all() {
            // SAFETY: `all` links headers of this core's mapped arenas (A1) and we hold the arena
            // lock, which guards them.
            let a = unsafe { &*ao };
            let mut arena = ArenaFrag {
                address: a.address,
                kind: a.kind,
                // A pool a purge pass has claimed is empty too, off the count while it goes.
                pools_empty: a.nfreepools + a.claimed.count_ones() as usize,
                ..ArenaFrag::default()
            };
            for pool in a.committed_pools() {
                // A core-held pool is guarded by its class's lock, an empty one by the arena
                // lock, and we hold them all; an owned pool's counts are atomics (O1).
                // SAFETY: committed carved pools of a mapped arena have initialised headers
                // (A1, P1).
                let p = unsafe { &*pool };
                let Some(class) = p.class() else {
                    continue;
                };
                // An owned pool's class and count are stored by its owner without our locks:
                // an instant's view may pair a count with the class before, kept in range.
                let out = p.out().min(class.blocks_per_pool());
                walk_pool(&mut f, &mut arena, pool as usize, class, out);
            }
            if arena.pools_in_use() == 1 {
                for p in f.pools.as_mut_slice() {
                    if p.address & ARENA_ADDR_MASK == a.address {
                        p.alone_in_arena = true;
                    }
                }
            }
            f.arenas_mapped += 1;
            f.arenas_wholly_empty += usize::from(arena.wholly_empty());
            f.arenas_could_go_back += usize::from(arena.could_go_back());
            f.pools_empty += arena.pools_empty;
            f.pools_total += a.ntotalpools;
            f.bytes_empty_pools += arena.pools_empty * a.kind.pool_size();
            f.back_by_kind[a.kind as usize] +=
                usize::from(arena.wholly_empty() || arena.could_go_back());
            f.arenas.offer(arena, nearer_release);
        }
        f.bytes_warm = locks.arenas.warm_bytes();
        let next_at = locks.arenas.schedule.next_at;
        f.purge_in_ms = (next_at != 0).then(|| next_at.saturating_sub(self.source.now_ms()));
        drop(locks);
        f
    }
}

/// Counts one pool in use, with `out` blocks out, into its class, its arena and the top pools.
fn walk_pool(f: &mut Fragmentation, arena: &mut ArenaFrag, addr: usize, class: Class, out: usize) {
    let c = &mut f.classes[class.index()];
    let band = Band::of(out, c.capacity);
    let idle = c.pool_size.saturating_sub(out * c.block_size);
    c.pools[band.index()] += 1;
    c.blocks_out += out;
    arena.blocks_out += out;
    if band.is_sparse() {
        c.blocks_out_sparse += out;
        arena.pools_sparse += 1;
    }
    if band == Band::Full {
        // A full pool wastes only its header and tail: not idle, and not a wasteful pool.
        arena.pools_full += 1;
        return;
    }
    arena.pools_used += 1;
    c.bytes_idle += idle;
    let pool = PoolFrag {
        address: addr,
        class: class.index(),
        block_size: c.block_size,
        blocks_out: out,
        capacity: c.capacity,
        bytes_idle: idle,
        alone_in_arena: false,
    };
    f.pools.offer(pool, more_wasteful);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_split_at_the_configured_percentages() {
        let cap = 1000;
        assert_eq!(Band::of(1, cap), Band::One);
        assert_eq!(Band::of(2, cap), Band::Sparse);
        assert_eq!(Band::of(cap * FRAG_SPARSE_PERCENT / 100, cap), Band::Sparse);
        assert_eq!(
            Band::of(cap * FRAG_SPARSE_PERCENT / 100 + 1, cap),
            Band::Half
        );
        assert_eq!(Band::of(cap * FRAG_HALF_PERCENT / 100, cap), Band::Half);
        assert_eq!(Band::of(cap * FRAG_HALF_PERCENT / 100 + 1, cap), Band::Most);
        assert_eq!(Band::of(cap - 1, cap), Band::Most);
        assert_eq!(Band::of(cap, cap), Band::Full);
        // A one-block pool is full, not "one block".
        assert_eq!(Band::of(1, 1), Band::Full);
        assert!(Band::One.is_sparse() && Band::Sparse.is_sparse() && !Band::Half.is_sparse());
    }

    #[test]
    fn top_keeps_the_best_in_order() {
        let mut top: Top<usize, 3> = Top::new();
        for x in [5, 1, 9, 3, 7, 9, 0] {
            top.offer(x, |a, b| a > b);
        }
        assert_eq!(top.as_slice(), &[9, 9, 7]);
        let mut few: Top<usize, 4> = Top::new();
        few.offer(2, |a, b| a < b);
        few.offer(1, |a, b| a < b);
        assert_eq!(few.as_slice(), &[1, 2]);
    }
}
