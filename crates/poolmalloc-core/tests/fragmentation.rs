//! The fragmentation snapshot: the seed scenario's pinned pools counted exactly, its totals equal
//! to the stats report's after every step of a random workload (and its per-pool view equal to a
//! shadow model's), its prediction of what freeing gives back checked by freeing, the walk free
//! of allocation, and walks running while other threads allocate and free.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use poolmalloc_core::config::{
    ARENA_ADDR_MASK, FRAG_TOP_ARENAS, FRAG_TOP_POOLS, MEDIUM_REQUEST_THRESHOLD, NB_SIZE_CLASSES,
    NB_SMALL_SIZE_CLASSES, POOLS_PER_ARENA, POOL_ADDR_MASK, POOL_OVERHEAD, POOL_SIZE,
    RESERVE_ARENAS,
};
use poolmalloc_core::{
    class_of, pool_class_of, Band, Class, Core, CoreStats, Fragmentation, FreeBlock, Kind,
    MemPages, CLASS_TABLE,
};
use proptest::prelude::*;

/// Counts this thread's allocations, so a test can see that the walk makes none.
struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to System; the counter is a const-initialised thread-local without destructor.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// The snapshot's totals equal the stats report's, class by class.
fn assert_matches_stats(f: &Fragmentation, s: &CoreStats) {
    assert!(s.identity_holds(), "stats identity:\n{s}");
    assert!(f.identity_holds(), "fragmentation identity:\n{f}");
    assert_eq!(f.arenas_mapped, s.arenas.mapped);
    assert_eq!(f.arenas_wholly_empty, s.arenas.wholly_empty);
    assert_eq!(f.pools_empty, s.pools_empty.iter().sum::<usize>());
    assert_eq!(f.pools_in_use(), s.pools_in_use());
    assert_eq!(f.bytes_mapped(), s.bytes_mapped());
    assert_eq!(f.bytes_in_blocks_out(), s.bytes_in_blocks_out());
    for (i, (fc, sc)) in f.classes.iter().zip(&s.classes).enumerate() {
        assert_eq!(fc.block_size, sc.block_size, "class {i}");
        assert_eq!(fc.pools_in_use(), sc.pools(), "class {i} pools");
        assert_eq!(fc.pools_full(), sc.pools_full, "class {i} full pools");
        assert_eq!(fc.blocks_out, sc.blocks_out, "class {i} blocks out");
        // Idle bytes of partly-used pools = their free blocks + their headers and tails.
        let per_pool_overhead = POOL_OVERHEAD + CLASS_TABLE[i].pool_tail_waste;
        assert_eq!(
            fc.bytes_idle,
            sc.free_in_pools * sc.block_size + sc.pools_used * per_pool_overhead,
            "class {i} idle bytes"
        );
    }
}

fn pool_of(addr: usize) -> usize {
    addr & POOL_ADDR_MASK
}

/// The pool of a block of `class`, of either kind.
fn pool_of_class(addr: usize, class: Class) -> usize {
    addr & class.kind().pool_mask()
}

const K: usize = 600;

#[test]
fn seed_scenario_pins_exactly_the_survivors_pools() {
    let core = Core::new(MemPages::new(16));
    let one = Layout::from_size_align(1, 1).unwrap();
    let class = class_of(1, 1).unwrap();
    let per_pool = class.blocks_per_pool();
    let blocks: Vec<*mut u8> = (0..512 * K).map(|_| core.alloc(one)).collect();
    assert!(blocks.iter().all(|p| !p.is_null()));

    // After allocating: every pool full but the last, nothing sparse unless the last is.
    let f = core.fragmentation();
    assert_matches_stats(&f, &core.stats());
    let pools_at_peak = (512 * K).div_ceil(per_pool);
    let c = f.classes[class.index()];
    assert_eq!(c.pools_in_use(), pools_at_peak);
    let in_last = 512 * K - (pools_at_peak - 1) * per_pool;
    let full = pools_at_peak - 1 + usize::from(in_last == per_pool);
    assert_eq!(c.pools_full(), full);
    assert_eq!(
        c.pools_sparse(),
        usize::from(Band::of(in_last, per_pool).is_sparse())
    );
    // Full pools are not "wasteful": only a partly-used last pool can be listed.
    assert_eq!(f.wasteful_pools().len(), usize::from(in_last < per_pool));

    // Free 511 of each 512: survivor i is block 512·i.
    let mut survivors = vec![];
    for (i, &p) in blocks.iter().enumerate() {
        if i % 512 == 0 {
            survivors.push(p);
        } else {
            // SAFETY: each block came from `alloc(one)` and is freed once.
            unsafe { core.dealloc(p, one).unwrap() };
        }
    }
    let mut per_pool_survivors: BTreeMap<usize, usize> = BTreeMap::new();
    for &p in &survivors {
        *per_pool_survivors.entry(pool_of(p as usize)).or_default() += 1;
    }
    let pinned = per_pool_survivors.len();
    let arenas: BTreeSet<usize> = per_pool_survivors
        .keys()
        .map(|p| p & ARENA_ADDR_MASK)
        .collect();

    let s = core.stats();
    let f = core.fragmentation();
    assert_matches_stats(&f, &s);
    let c = f.classes[class.index()];
    // Every pool holding a survivor is pinned, and nothing else is.
    assert_eq!(c.pools_sparse(), pinned);
    assert_eq!(f.pools_sparse(), pinned);
    assert_eq!(f.pools_in_use(), pinned);
    assert_eq!(pinned, s.classes[class.index()].pools());
    assert_eq!(f.bytes_pinned(), pinned * POOL_SIZE);
    assert_eq!(
        f.bytes_pinned(),
        s.classes[class.index()].pools() * POOL_SIZE
    );
    assert_eq!(f.blocks_out_sparse(), K);
    assert_eq!(f.bytes_out_sparse(), K * class.block_size());
    assert_eq!(c.bytes_idle, pinned * POOL_SIZE - K * class.block_size());
    // Survivors sit 512 blocks apart, so a pool holds at most ceil(per_pool / 512) of them.
    let most = per_pool.div_ceil(512);
    assert!(per_pool_survivors.values().all(|&n| n <= most));
    let one_block = per_pool_survivors.values().filter(|&&n| n == 1).count();
    assert_eq!(c.pools[Band::One.index()], one_block);
    assert_eq!(c.pools[Band::Sparse.index()], pinned - one_block);
    // Every arena is held only by sparse pools: all could go back, all but the reserve would.
    assert_eq!(f.arenas_mapped, arenas.len());
    assert_eq!(f.arenas_could_go_back, arenas.len());
    assert_eq!(f.arenas_wholly_empty, 0);
    assert_eq!(
        f.arenas_back_if_sparse_emptied(),
        arenas.len() - RESERVE_ARENAS
    );
    let listed: Vec<usize> = f.arenas().iter().map(|a| a.address).collect();
    assert_eq!(listed.len(), arenas.len().min(FRAG_TOP_ARENAS));
    for a in f.arenas() {
        assert!(arenas.contains(&a.address) && a.could_go_back());
        let pools = per_pool_survivors
            .keys()
            .filter(|&&p| p & ARENA_ADDR_MASK == a.address)
            .count();
        assert_eq!((a.pools_used, a.pools_sparse), (pools, pools));
        assert_eq!(a.pools_empty, POOLS_PER_ARENA - pools);
    }
    // The most wasteful pools are those with the fewest survivors, lowest address first.
    let mut expected: Vec<(usize, usize)> =
        per_pool_survivors.iter().map(|(&p, &n)| (n, p)).collect();
    expected.sort();
    expected.truncate(FRAG_TOP_POOLS);
    let top: Vec<(usize, usize)> = f
        .wasteful_pools()
        .iter()
        .map(|p| (p.blocks_out, p.address))
        .collect();
    assert_eq!(top, expected);
    let text = f.to_string();
    assert!(text.contains("sparse pools keep"), "{text}");

    // Free the survivors: exactly the predicted arenas go back.
    let predicted = f.bytes_back_if_sparse_emptied();
    for p in survivors {
        // SAFETY: each survivor came from `alloc(one)` and is freed once.
        unsafe { core.dealloc(p, one).unwrap() };
    }
    let after = core.fragmentation();
    assert_matches_stats(&after, &core.stats());
    assert_eq!(f.bytes_mapped() - after.bytes_mapped(), predicted);
    assert_eq!(after.pools_in_use(), 0);
    assert_eq!(after.arenas_mapped, RESERVE_ARENAS);
    assert_eq!(after.arenas_wholly_empty, RESERVE_ARENAS);
    assert_eq!(after.wasteful_pools(), &[]);
    core.check_invariants().unwrap();
}

/// One survivor per pool: every pool in the "1 block" band.
#[test]
fn one_survivor_per_pool_is_the_one_block_band() {
    let core = Core::new(MemPages::new(16));
    let class = Class::new(0).unwrap();
    let per_pool = class.blocks_per_pool();
    // One arena's worth and a few more: the second arena holds the last few pools.
    let extra = 6;
    let pools = POOLS_PER_ARENA + extra;
    let blocks: Vec<*mut u8> = (0..per_pool * pools)
        .map(|_| core.alloc_block(class).unwrap().as_ptr())
        .collect();
    for (i, &p) in blocks.iter().enumerate() {
        if i % per_pool != 0 {
            // SAFETY: freed once.
            unsafe { core.free_block(p).unwrap() };
        }
    }
    let f = core.fragmentation();
    assert_matches_stats(&f, &core.stats());
    let c = f.classes[0];
    assert_eq!(c.pools, {
        let mut b = [0; poolmalloc_core::BANDS];
        b[Band::One.index()] = pools;
        b
    });
    assert!(f
        .wasteful_pools()
        .iter()
        .all(|p| p.blocks_out == 1 && p.bytes_idle == POOL_SIZE - class.block_size()));
    assert_eq!(f.arenas_mapped, 2);
    assert_eq!(f.arenas_could_go_back, 2);
    let listed: Vec<(usize, usize)> = f
        .arenas()
        .iter()
        .map(|a| (a.pools_used, a.blocks_out))
        .collect();
    assert_eq!(
        listed,
        [(extra, extra), (POOLS_PER_ARENA, POOLS_PER_ARENA)],
        "fewest blocks out first"
    );
}

#[test]
fn the_walk_allocates_nothing() {
    // A pool of every class: one small arena, and a medium arena per four medium classes.
    use poolmalloc_core::config::{MEDIUM_POOLS_PER_ARENA, NB_MEDIUM_SIZE_CLASSES};
    let arenas = 1 + NB_MEDIUM_SIZE_CLASSES.div_ceil(MEDIUM_POOLS_PER_ARENA);
    let core = Core::new(MemPages::new(arenas));
    let blocks: Vec<*mut u8> = Class::all()
        .map(|c| core.alloc_block(c).unwrap().as_ptr())
        .collect();
    let before = ALLOCS.with(Cell::get);
    let f = core.fragmentation();
    let after = ALLOCS.with(Cell::get);
    assert_eq!(after, before, "the walk allocated");
    assert_eq!(f.pools_in_use(), NB_SIZE_CLASSES);
    // The JSON writer allocates nothing either (into a fixed buffer).
    struct Buf([u8; 64 * 1024], usize);
    impl core::fmt::Write for Buf {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let end = self.1 + s.len();
            self.0
                .get_mut(self.1..end)
                .ok_or(core::fmt::Error)?
                .copy_from_slice(s.as_bytes());
            self.1 = end;
            Ok(())
        }
    }
    let mut buf = Buf([0; 64 * 1024], 0);
    let before = ALLOCS.with(Cell::get);
    f.write_json(&mut buf).unwrap();
    assert_eq!(ALLOCS.with(Cell::get), before, "write_json allocated");
    let json = std::str::from_utf8(&buf.0[..buf.1]).unwrap();
    assert!(json.ends_with("\"identity_holds\":true}"), "{json}");
    assert_eq!(
        json.matches(['{', '[']).count(),
        json.matches(['}', ']']).count()
    );
    for p in blocks {
        // SAFETY: each block is out and freed once.
        unsafe { core.free_block(p).unwrap() };
    }
}

// ---- random workload against a shadow model ----

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_shift: u32 },
    Free { pick: usize },
    TakeBatch { class: usize, n: usize },
    GiveBatch { class: usize, n: usize },
    FreeSparse,
    Collect,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (1usize..=512, 0u32..=4).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        2 => (513usize..=MEDIUM_REQUEST_THRESHOLD, 0u32..=6).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        5 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        3 => (0..NB_SIZE_CLASSES, 1usize..=80).prop_map(|(class, n)| Op::TakeBatch { class, n }),
        3 => (0..NB_SIZE_CLASSES, 1usize..=80).prop_map(|(class, n)| Op::GiveBatch { class, n }),
        1 => Just(Op::FreeSparse),
        1 => Just(Op::Collect),
    ]
}

struct Model {
    core: Core<MemPages>,
    /// Blocks out, by address, with their class.
    live: BTreeMap<usize, Class>,
}

impl Model {
    /// Pools in use: (class, blocks out) by pool address.
    fn pools(&self) -> BTreeMap<usize, (Class, usize)> {
        let mut pools = BTreeMap::new();
        for (&a, &c) in &self.live {
            pools.entry(pool_of_class(a, c)).or_insert((c, 0)).1 += 1;
        }
        pools
    }

    fn free(&mut self, addr: usize) {
        self.live.remove(&addr).expect("model knows the block");
        // SAFETY: the block is out and not used again.
        unsafe { self.core.free_block(addr as *mut u8).unwrap() };
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Alloc { size, align_shift } => {
                let layout = Layout::from_size_align(size, 1 << align_shift).unwrap();
                let class = pool_class_of(size, layout.align()).unwrap();
                let p = self.core.alloc(layout);
                assert!(!p.is_null());
                assert!(self.live.insert(p as usize, class).is_none());
            }
            Op::Free { pick } => {
                if let Some(&a) = self.live.keys().nth(pick % self.live.len().max(1)) {
                    self.free(a);
                }
            }
            Op::TakeBatch { class, n } => {
                let class = Class::new(class).unwrap();
                let batch = common::take_chain(&self.core, class, n);
                let mut b = batch.head;
                for _ in 0..batch.count {
                    assert!(self.live.insert(b as usize, class).is_none());
                    // SAFETY: the chain holds `count` blocks.
                    b = unsafe { common::link(b) };
                }
            }
            Op::GiveBatch { class, n } => {
                let class = Class::new(class).unwrap();
                let chosen: Vec<usize> = self
                    .live
                    .iter()
                    .filter(|(_, &c)| c == class)
                    .map(|(&a, _)| a)
                    .take(n)
                    .collect();
                let mut head: *mut FreeBlock = std::ptr::null_mut();
                for &a in &chosen {
                    self.live.remove(&a);
                    let block = a as *mut FreeBlock;
                    // SAFETY: the block is out and ours; we link the chain through it.
                    unsafe { common::set_link(block, head) };
                    head = block;
                }
                // SAFETY: the chain holds distinct blocks of `class`, each out.
                unsafe { common::give_chain(&self.core, head, chosen.len()) };
            }
            Op::FreeSparse => {
                // The snapshot's prediction, checked by doing what it supposes.
                let f = self.core.fragmentation();
                let sparse: Vec<usize> = self
                    .pools()
                    .into_iter()
                    .filter(|(_, (c, n))| Band::of(*n, c.blocks_per_pool()).is_sparse())
                    .map(|(p, _)| p)
                    .collect();
                let doomed: Vec<usize> = self
                    .live
                    .iter()
                    .filter(|(&a, &c)| sparse.contains(&pool_of_class(a, c)))
                    .map(|(&a, _)| a)
                    .collect();
                for a in doomed {
                    self.free(a);
                }
                let after = self.core.fragmentation();
                assert_eq!(
                    f.bytes_mapped() - after.bytes_mapped(),
                    f.bytes_back_if_sparse_emptied(),
                    "prediction:\n{f}\nafter:\n{after}"
                );
                assert_eq!(after.pools_sparse(), 0);
            }
            Op::Collect => {
                self.core.collect();
            }
        }
    }

    /// The snapshot's per-pool and per-arena view equals the model's.
    fn check(&self, f: &Fragmentation) {
        let pools = self.pools();
        let mut bands = [[0usize; poolmalloc_core::BANDS]; NB_SIZE_CLASSES];
        let mut arenas: BTreeMap<usize, (usize, usize, usize, usize)> = BTreeMap::new();
        for (&p, &(c, n)) in &pools {
            let band = Band::of(n, c.blocks_per_pool());
            bands[c.index()][band.index()] += 1;
            let a = arenas.entry(p & ARENA_ADDR_MASK).or_default();
            a.0 += 1;
            a.1 += usize::from(band == Band::Full);
            a.2 += usize::from(band.is_sparse());
            a.3 += n;
        }
        for (i, c) in f.classes.iter().enumerate() {
            assert_eq!(c.pools, bands[i], "class {i} bands");
        }
        let could = arenas.values().filter(|a| a.0 == a.2).count();
        assert_eq!(f.arenas_could_go_back, could);
        assert_eq!(f.arenas_mapped, arenas.len() + f.arenas_wholly_empty);

        // Listed arenas: the wholly empty ones (blocks out 0) first, then by blocks out, address.
        let mut expected: Vec<(usize, usize)> = arenas.iter().map(|(&a, v)| (v.3, a)).collect();
        expected.sort();
        let listed = f.arenas();
        let empty_listed = f.arenas_wholly_empty.min(FRAG_TOP_ARENAS);
        assert_eq!(listed.len(), f.arenas_mapped.min(FRAG_TOP_ARENAS));
        assert!(listed[..empty_listed].iter().all(|a| a.wholly_empty()));
        for (a, &(out, addr)) in listed[empty_listed..].iter().zip(&expected) {
            let (in_use, full, sparse, _) = arenas[&addr];
            assert_eq!(a.address, addr);
            assert_eq!(a.blocks_out, out);
            assert_eq!(
                (a.pools_used, a.pools_full, a.pools_sparse),
                (in_use - full, full, sparse)
            );
            assert_eq!(a.pools_empty, a.kind.pools_per_arena() - in_use);
        }

        // Most wasteful partly-used pools: most idle bytes first, then lowest address.
        let mut waste: Vec<(std::cmp::Reverse<usize>, usize, usize, bool)> = pools
            .iter()
            .filter(|(_, &(c, n))| n < c.blocks_per_pool())
            .map(|(&p, &(c, n))| {
                let alone = arenas[&(p & ARENA_ADDR_MASK)].0 == 1;
                (
                    std::cmp::Reverse(c.kind().pool_size() - n * c.block_size()),
                    p,
                    n,
                    alone,
                )
            })
            .collect();
        waste.sort();
        waste.truncate(FRAG_TOP_POOLS);
        let top: Vec<_> = f
            .wasteful_pools()
            .iter()
            .map(|p| {
                (
                    std::cmp::Reverse(p.bytes_idle),
                    p.address,
                    p.blocks_out,
                    p.alone_in_arena,
                )
            })
            .collect();
        assert_eq!(top, waste);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn snapshot_totals_equal_stats_at_every_step(ops in proptest::collection::vec(op(), 1..160)) {
        let mut m = Model { core: Core::new(MemPages::new(64)), live: BTreeMap::new() };
        for op in ops {
            m.step(op);
            let s = m.core.stats();
            let f = m.core.fragmentation();
            assert_matches_stats(&f, &s);
            m.check(&f);
        }
        m.core.check_invariants().unwrap();
        m.step(Op::FreeSparse);
        while let Some(&a) = m.live.keys().next() {
            m.free(a);
        }
        let f = m.core.fragmentation();
        assert_matches_stats(&f, &m.core.stats());
        prop_assert_eq!(f.pools_in_use(), 0);
        // Each kind keeps its reserve at most (A3).
        for kind in Kind::ALL {
            prop_assert!(f.arenas().iter().filter(|a| a.kind == kind).count() <= RESERVE_ARENAS);
        }
    }
}

// ---- walks while other threads allocate and free ----

#[test]
fn walks_run_while_threads_allocate_and_free() {
    let core = Arc::new(Core::new(MemPages::new(64)));
    let (done_tx, done_rx) = mpsc::channel();
    let runner = {
        let core = Arc::clone(&core);
        std::thread::spawn(move || {
            let stop = Arc::new(AtomicBool::new(false));
            let walker = {
                let (core, stop) = (Arc::clone(&core), Arc::clone(&stop));
                std::thread::spawn(move || {
                    let mut walks = 0usize;
                    while !stop.load(Ordering::Relaxed) || walks == 0 {
                        let f = core.fragmentation();
                        // Each snapshot is taken under every lock, so it adds up on its own.
                        assert!(f.identity_holds(), "{f}");
                        let blocks: usize = f.arenas().iter().map(|a| a.blocks_out).sum();
                        if f.arenas_mapped <= FRAG_TOP_ARENAS {
                            assert_eq!(blocks, f.blocks_out());
                        }
                        walks += 1;
                    }
                    walks
                })
            };
            let workers: Vec<_> = (0..3u64)
                .map(|t| {
                    let core = Arc::clone(&core);
                    std::thread::spawn(move || worker(&core, t))
                })
                .collect();
            for w in workers {
                w.join().unwrap();
            }
            stop.store(true, Ordering::Relaxed);
            let walks = walker.join().unwrap();
            done_tx.send(walks).unwrap();
        })
    };
    let walks = done_rx
        .recv_timeout(Duration::from_secs(120))
        .expect("walk and workers finished (no deadlock)");
    runner.join().unwrap();
    assert!(walks > 0);
    let f = core.fragmentation();
    assert_matches_stats(&f, &core.stats());
    assert_eq!(f.pools_in_use(), 0, "every thread gave its blocks back");
    core.check_invariants().unwrap();
}

/// Random batches and single blocks of every class, all given back at the end.
fn worker(core: &Core<MemPages>, t: u64) {
    let mut rng = (t + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut held: Vec<(Class, *mut FreeBlock)> = vec![];
    for _ in 0..4000 {
        let r = next();
        let class = Class::new((r >> 8) as usize % NB_SMALL_SIZE_CLASSES).unwrap();
        if held.len() < 3000 && r % 3 != 0 {
            if r % 2 == 0 {
                let batch = common::take_chain(core, class, 1 + (r >> 20) as usize % 32);
                let mut b = batch.head;
                for _ in 0..batch.count {
                    held.push((class, b));
                    // SAFETY: the chain holds `count` blocks.
                    b = unsafe { common::link(b) };
                }
            } else {
                let p = core.alloc_block(class).unwrap().as_ptr();
                held.push((class, p.cast()));
            }
        } else {
            for _ in 0..1 + (r >> 24) as usize % 16 {
                if held.is_empty() {
                    break;
                }
                let (_, b) = held.swap_remove((next() as usize) % held.len());
                // SAFETY: the block is out and ours; freed once.
                unsafe { core.free_block(b.cast()).unwrap() };
            }
        }
    }
    for (_, b) in held {
        // SAFETY: the block is out and ours, taken for `class` and freed once, as a one-block
        // chain of its class.
        unsafe {
            common::set_link(b, std::ptr::null_mut());
            common::give_chain(core, b, 1);
        }
    }
}
