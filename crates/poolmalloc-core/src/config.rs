//! Tunable settings, then the values derived from them, then the invariants the compiler checks.
//!
//! Every size the allocator depends on lives here ("constants in one module").
//!
//! ## How POOL_SIZE and ARENA_SIZE were chosen
//! Measured with `cargo run --release -p poolmalloc-core --example geometry`, editing `POOL_BITS`
//! and `ARENA_BITS` between runs (2-core x86-64 dev machine, 2026-11-24, two runs each). The churn
//! allocates 200k random 8..512-byte blocks on the core alone and frees them in random order, five
//! rounds; its time is dominated by page faults on freshly mapped arenas, so it rewards fewer
//! map/unmap calls.
//!
//! | pool / arena     | churn ns per alloc+free | arenas mapped (5 rounds) | peak mapped |
//! |------------------|-------------------------|--------------------------|-------------|
//! | 4 KiB / 256 KiB  | 269, 309                | 1059                     | 54.5 MiB    |
//! | 4 KiB / 1 MiB    | 325, 261                | 264                      | 55.3 MiB    |
//! | 16 KiB / 256 KiB | 249, 251                | 1026                     | 51.5 MiB    |
//! | 16 KiB / 1 MiB   | 259, 240                | 256                      | 52.0 MiB    |
//! | 16 KiB / 4 MiB   | 262, 277                | 61                       | 52.0 MiB    |
//!
//! In the seed scenario (512·2000 one-byte objects, free 511 of each 512) every geometry keeps all
//! 8 MiB mapped: with 4 KiB pools each pool holds one survivor, with 16 KiB pools four.
//!
//! 16 KiB pools serve the 512-byte class with 31 blocks instead of 7 (less header and tail
//! waste: 1.4 % instead of 12.5 % for that class) and refills touch a new pool four times less
//! often; 1 MiB arenas quarter the mmap/munmap traffic and the registry's size. The price is that
//! one surviving block pins 16 KiB instead of 4 KiB, which the fragmentation report makes visible.
//! Modern CPython made the same choice (16 KiB pools, 1 MiB arenas since 3.10).
//!
//! Under `cfg(poolmalloc_loom)` the geometry shrinks (1 KiB pools, four per arena) so that the
//! loom models reach every pool state with a handful of blocks.

/// log2 of the size-class granularity: classes are multiples of 8 bytes (the seed's 64 classes).
pub const GRAIN_SHIFT: u32 = 3;
/// Size-class granularity in bytes.
pub const GRAIN: usize = 1 << GRAIN_SHIFT;
/// Requests larger than this go to the large path (the system allocator).
pub const SMALL_REQUEST_THRESHOLD: usize = 512;
/// The largest alignment a size class honours; larger alignments go to the large path.
/// 16 is x86-64's `max_align_t`: alignment-16 requests are served by classes that are multiples
/// of 16, whose blocks all start 16-byte aligned because pools and their headers are.
pub const MAX_SMALL_ALIGN: usize = 16;

/// log2 of the pool size.
#[cfg(not(poolmalloc_loom))]
pub const POOL_BITS: u32 = 14;
/// log2 of the pool size (loom geometry).
#[cfg(poolmalloc_loom)]
pub const POOL_BITS: u32 = 10;

/// log2 of the arena size.
#[cfg(not(poolmalloc_loom))]
pub const ARENA_BITS: u32 = 20;
/// log2 of the arena size (loom geometry).
#[cfg(poolmalloc_loom)]
pub const ARENA_BITS: u32 = 12;

/// Medium requests (above `SMALL_REQUEST_THRESHOLD`) up to this many bytes are served from
/// pools too: medium pools, `MEDIUM_POOL_SIZE` bytes each, in arenas of their own (`Kind`).
#[cfg(not(poolmalloc_loom))]
pub const MEDIUM_REQUEST_THRESHOLD: usize = 32 * 1024;
/// Medium requests (loom geometry: one doubling, four classes).
#[cfg(poolmalloc_loom)]
pub const MEDIUM_REQUEST_THRESHOLD: usize = 2 * SMALL_REQUEST_THRESHOLD;
/// Medium classes per doubling of the block size, as the peers space them (jemalloc's four
/// per doubling): rounding a request up wastes at most 20 % of the block, 10 % on average.
pub const MEDIUM_CLASSES_PER_DOUBLING: usize = 4;

/// log2 of the medium pool size: 256 KiB holds seven blocks of the largest class (32 KiB: 12.5 %
/// of the pool is tail, where 128 KiB pools held three, 25 %) and 409 of the smallest (640 B);
/// four pools make an arena. Against 128 KiB pools, the rptest mix ran 9 % fewer instructions
/// (fewer pools filled, handed to the core and adopted; callgrind over `poolmalloc compare
/// --workloads rptest --allocators poolmalloc --reps 1`), its time and the memory rows within
/// their noise.
#[cfg(not(poolmalloc_loom))]
pub const MEDIUM_POOL_BITS: u32 = 18;
/// log2 of the medium pool size (loom geometry: two pools per arena).
#[cfg(poolmalloc_loom)]
pub const MEDIUM_POOL_BITS: u32 = 11;

/// Wholly empty arenas kept mapped to stop map/unmap thrashing (CPython bpo-37257).
pub const RESERVE_ARENAS: usize = 1;

/// Milliseconds an empty pool stays committed, and a wholly empty arena mapped, before a purge
/// pass gives them back (the default of `PoolMalloc`, `Heap` and the C library). A pass gives
/// back what was already empty at the pass before, so memory goes back one to two delays after
/// the program stopped using it; a pool emptied and taken again within a delay is never given
/// back, so a program that frees and allocates again in a steady loop takes no page fault.
pub const PURGE_DELAY_MS: u64 = 20;

/// Bytes of empty small pools a thread keeps for its classes' next pools, beside the pools it
/// allocates from: a service's request empties the pools of a score of classes and takes them
/// again on the next one. With one kept small pool, 33 pools a request went through the class
/// and arena locks (uprobes on the `service` workload's server); with 16 (256 KiB) and two
/// medium ones, 0.26 (0.11 with 64 small pools), and the service ran 1.01x jemalloc, 0.86x
/// mimalloc (`compare --workloads service --allocators poolmalloc,mimalloc,jemalloc --reps 5`).
/// What an idle thread keeps no purge pass reaches: this, and `KEPT_MEDIUM_POOLS`; so no more
/// than that (the `--quick` memory row, a 51 MiB peak, waits for 1 % of it).
pub const KEPT_SMALL_BYTES: usize = 16 * POOL_SIZE;

/// Empty medium pools a thread keeps (256 KiB each, of which the pages its blocks touched are
/// resident): with one, 3.5 medium pools a service request still went to their arena and back;
/// with two, 0.13, and the service ran 1.05x -> 1.00x jemalloc, its idle RSS 0.80x -> 0.78x
/// the best peer's (the same commands).
pub const KEPT_MEDIUM_POOLS: usize = 2;

/// Bytes of used-up pools a thread keeps filed full (its own, so that its frees into them are
/// local and remote frees reach it by a notice); a pool used up beyond them goes to the core,
/// where the first free into it adopts it. A thread that stops calling the allocator never
/// takes its notices: the filed pools other threads empty stay its own, out of the purger's
/// reach — so no more than this, beside the pools it keeps empty (`memory-2t`'s allocating
/// thread stays idle while another frees everything).
pub const FILED_BYTES: usize = 2 << 20;

/// The longest purge delay a setting may ask for (an hour).
pub const MAX_PURGE_DELAY_MS: u64 = 3_600_000;

/// Bytes of pools given back (since the last purge pass) before the purger thread is started:
/// a short program that frees a few pools never gets a thread (a process with a second thread
/// cannot `unshare(CLONE_NEWUSER)`), and keeps what it freed warm, at most this much.
pub const PURGER_START_BYTES: usize = ARENA_SIZE;

/// Stack of the purger thread (`poolmalloc`'s `purger`): it calls the core's purge and sleeps,
/// nothing deeper; glibc adds the process's static TLS on top.
pub const PURGER_STACK_BYTES: usize = 64 * 1024;

/// Runs of pools (and arenas) one purge pass claims before it gives them back and starts
/// another: its work list is a fixed array, as the pass runs inside the allocator.
pub const PURGE_BATCH: usize = 64;

/// An arena with this many pools in use or fewer gives the pages of its empty pools back to the
/// system (`PageSource::decommit`), keeping them mapped: a few live pools — an idle thread's
/// current pools, say — then pin their own pages and not their whole arenas. Arenas fuller
/// than this keep their empty pools' pages for the pools they will carve next.
pub const PURGE_AT_POOLS_IN_USE: usize = POOLS_PER_ARENA / 16;

/// User-space address bits the arena registry covers (x86-64 and AArch64 with 4-level tables).
pub const ADDRESS_BITS: u32 = 48;
/// log2 of the number of arena slots in one registry leaf.
#[cfg(not(poolmalloc_loom))]
pub const REGISTRY_LEAF_BITS: u32 = 14;
/// log2 of the number of arena slots in one registry leaf (loom geometry).
#[cfg(poolmalloc_loom)]
pub const REGISTRY_LEAF_BITS: u32 = 20;

/// Bytes of fresh blocks a thread carves from its pool at a time, when the pool has no freed
/// block to hand out (mimalloc extends a page's free list by up to 4 KiB at a time), and at
/// least one. Carving lazily, a page's worth at a time, touches only the pages that blocks
/// reach: a medium block of a page or more is carved alone (carving four of them, as before,
/// wrote a link into three more pages per pool that a thread which used one never needed —
/// fresh blocks of that size cost a page fault each, beside which the slow path is cheap).
#[cfg(not(poolmalloc_loom))]
pub const CARVE_BYTES: usize = 4096;
/// Loom models carve one or two blocks at a time, so a few operations cross every pool state.
#[cfg(poolmalloc_loom)]
pub const CARVE_BYTES: usize = 128;

/// Of each kind (`Kind::ALL` order), the bytes of freed blocks from which a pool's owner reuses
/// them before it carves fresh ones (`OwnedPool::detach`). A small pool never holds a pool's
/// size: it carves to its end first, fresh blocks in front of the freed ones, so a loop that
/// frees its one block refills once per pool's worth (`benches/instructions.sh`: pair-256 22.0
/// net instructions, 26.6 with a carve's worth). A medium pool reuses a page's worth: a fresh
/// medium block is a page touched (a page fault) where a freed one is warm, and a thread that
/// frees and allocates one large medium block at a time (a growing buffer) touched four.
pub const REUSE_FREED_BYTES: [usize; KINDS] = [POOL_SIZE, CARVE_BYTES];

/// Bytes of the static region that serves requests made while a thread is already inside the
/// allocator's slow path (the lock library setting up its per-thread data, the TLS destructor
/// registration): they must not re-enter the core. Blocks from it are never reused.
pub const BOOTSTRAP_BYTES: usize = 64 * 1024;

/// Debug mode (`poolmalloc`'s `debug` feature), after CPython's `PYTHONMALLOC=debug`: a block
/// starts with a header of two words — the requested size (the free-list link once freed) and
/// the block's state — then `DEBUG_PAD` forbidden bytes, the caller's bytes, and forbidden bytes
/// to the block's end (at least `DEBUG_PAD`).
pub const DEBUG_HEADER: usize = 2 * core::mem::size_of::<usize>();
/// Debug mode: forbidden bytes on each side of the caller's bytes (at least).
pub const DEBUG_PAD: usize = 16;
/// Fresh memory (CPython's CLEANBYTE), freed memory (DEADBYTE), pads (FORBIDDENBYTE).
pub const DEBUG_FRESH_BYTE: u8 = 0xCD;
/// See `DEBUG_FRESH_BYTE`.
pub const DEBUG_DEAD_BYTE: u8 = 0xDD;
/// See `DEBUG_FRESH_BYTE`.
pub const DEBUG_FORBIDDEN_BYTE: u8 = 0xFD;
/// The state word of a block the program holds, and of one it has freed.
pub const DEBUG_LIVE: usize = 0x6c69_7665_b10c_0001;
/// See `DEBUG_LIVE`.
pub const DEBUG_FREED: usize = 0x6465_6164_b10c_0002;
/// Debug mode's table of live large blocks: slots in its first mapping (it doubles when half
/// full), and how many recent large frees it remembers to tell a double free from a foreign
/// pointer.
pub const DEBUG_LARGE_MIN_SLOTS: usize = 1024;
/// See `DEBUG_LARGE_MIN_SLOTS`.
pub const DEBUG_RECENT_FREES: usize = 4096;

/// Fragmentation report: a pool with at most this percent of its blocks out is *sparse* — few
/// blocks pin a whole pool. The report predicts what emptying every sparse pool gives back.
pub const FRAG_SPARSE_PERCENT: usize = 10;
/// Upper edge of the report's middle occupancy band (bands: 1 block, ≤ sparse, ≤ half, < 100 %,
/// full).
pub const FRAG_HALF_PERCENT: usize = 50;
/// Most wasteful pools the fragmentation snapshot names. A fixed array: the walk runs under
/// every core lock and may not allocate (the allocator it inspects may be the global one).
pub const FRAG_TOP_POOLS: usize = 8;
/// Arenas the snapshot lists one by one (those fewest live blocks away from going back); its
/// totals cover every arena.
pub const FRAG_TOP_ARENAS: usize = 16;

// ---- derived values ----

/// Pool size in bytes.
pub const POOL_SIZE: usize = 1 << POOL_BITS;
/// `addr & POOL_ADDR_MASK` is the pool a block lives in.
pub const POOL_ADDR_MASK: usize = !(POOL_SIZE - 1);
/// Arena size in bytes.
pub const ARENA_SIZE: usize = 1 << ARENA_BITS;
/// `addr & ARENA_ADDR_MASK` is the arena an address lies in.
pub const ARENA_ADDR_MASK: usize = !(ARENA_SIZE - 1);
/// Pools in one arena.
pub const POOLS_PER_ARENA: usize = ARENA_SIZE / POOL_SIZE;
/// Number of small size classes: class `i` serves blocks of `(i + 1) * GRAIN` bytes.
pub const NB_SMALL_SIZE_CLASSES: usize = SMALL_REQUEST_THRESHOLD / GRAIN;
/// Medium pool size in bytes.
pub const MEDIUM_POOL_SIZE: usize = 1 << MEDIUM_POOL_BITS;
/// Medium pools in one arena.
pub const MEDIUM_POOLS_PER_ARENA: usize = ARENA_SIZE / MEDIUM_POOL_SIZE;
/// Doublings from `SMALL_REQUEST_THRESHOLD` to `MEDIUM_REQUEST_THRESHOLD`.
pub const MEDIUM_DOUBLINGS: usize =
    (MEDIUM_REQUEST_THRESHOLD.trailing_zeros() - SMALL_REQUEST_THRESHOLD.trailing_zeros()) as usize;
/// Number of medium size classes; their indexes follow the small classes'.
pub const NB_MEDIUM_SIZE_CLASSES: usize = MEDIUM_CLASSES_PER_DOUBLING * MEDIUM_DOUBLINGS;
/// The largest alignment a medium class honours: a medium block starts at `POOL_OVERHEAD`
/// plus a multiple of its size (a multiple of 128, `size_class`) in a pool-aligned pool, so as
/// aligned as the header's size is, up to a cache line.
pub const MAX_MEDIUM_ALIGN: usize = {
    let a = 1 << POOL_OVERHEAD.trailing_zeros();
    if a < CACHE_LINE {
        a
    } else {
        CACHE_LINE
    }
};
/// Of each kind (`Kind::ALL` order), the empty pools a thread keeps (`KEPT_SMALL_BYTES`).
pub const KEPT_POOLS: [usize; KINDS] = [KEPT_SMALL_BYTES / POOL_SIZE, KEPT_MEDIUM_POOLS];
/// Number of size classes, small and medium.
pub const NB_SIZE_CLASSES: usize = NB_SMALL_SIZE_CLASSES + NB_MEDIUM_SIZE_CLASSES;
/// Arena slots in one registry leaf.
pub const REGISTRY_LEAF_LEN: usize = 1 << REGISTRY_LEAF_BITS;
/// log2 of the registry's top-level length: the address bits above the leaf index.
pub const REGISTRY_TOP_BITS: u32 = ADDRESS_BITS - ARENA_BITS - REGISTRY_LEAF_BITS;
/// Leaves the registry's top level can point to.
pub const REGISTRY_TOP_LEN: usize = 1 << REGISTRY_TOP_BITS;
/// Debug mode: bytes before the caller's (header and front pad).
pub const DEBUG_PREFIX: usize = DEBUG_HEADER + DEBUG_PAD;
/// Debug mode: the least a block adds to the caller's bytes (prefix and back pad).
pub const DEBUG_EXTRA: usize = DEBUG_PREFIX + DEBUG_PAD;

/// `n` rounded up to a multiple of `align` (a power of two).
#[cfg(poolmalloc_loom)]
const fn round_up(n: usize, align: usize) -> usize {
    (n + align - 1) & !(align - 1)
}
/// Bytes of a cache line (x86-64, AArch64).
pub const CACHE_LINE: usize = 64;

/// Bytes reserved at the start of every pool for its header (`layout::PoolHeader`): one cache
/// line, 0.4 % of a pool. Other threads read its owner and push onto its remote chain on the line
/// its owner writes on every allocation and free (mimalloc's page header shares a line the same
/// way). Splitting the header over more lines was measured (`poolmalloc compare --workloads
/// prodcons,xmalloc,memory --reps 9`, ratios to mimalloc in the same run, each of prodcons/1,
/// prodcons/64, xmalloc/2t, then the peak of `memory` over the 247.9 MiB requested):
///
/// | header | prodcons/1 | prodcons/64 | xmalloc | memory peak |
/// |--------|------------|-------------|---------|-------------|
/// | 64 B, one line | 1.04× | 0.90× | 1.07× | 1.028× |
/// | 80 B, holder's words on the first block's line | 0.92× | 0.84× | 1.07× | 1.031× |
/// | 128 B, two lines | 0.86–0.93× | 0.78–1.03× | 0.90–0.99× | 1.033× |
/// | 192 B, three lines | 1.16× (5 reps) | 1.05× | 1.07× | 1.036× |
///
/// The cross-thread rows move by ±20 % from run to run; the peak does not, and only one line
/// keeps it within 1.03 × requested. A multiple of `MAX_SMALL_ALIGN`, so the first block is
/// aligned.
#[cfg(not(poolmalloc_loom))]
pub const POOL_OVERHEAD: usize = CACHE_LINE;
/// Loom geometry: the header's fields without the padding (loom's atomics are larger, and the
/// models have no caches).
#[cfg(poolmalloc_loom)]
pub const POOL_OVERHEAD: usize = round_up(
    {
        use crate::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize};
        const fn after<T>(offset: usize) -> usize {
            round_up(offset, core::mem::align_of::<T>()) + core::mem::size_of::<T>()
        }
        let owner = after::<AtomicUsize>(0);
        let tag = after::<AtomicU8>(owner);
        let ptrs =
            round_up(tag, core::mem::align_of::<usize>()) + 3 * core::mem::size_of::<usize>();
        let counts = after::<AtomicU32>(after::<AtomicU32>(ptrs)) + 4;
        after::<AtomicUsize>(after::<AtomicUsize>(counts))
    },
    MAX_SMALL_ALIGN,
);

/// The two pool geometries. A small pool and a medium pool never share an arena: an arena's
/// kind, in its registry slot, says how to find the pool of any address in it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
pub enum Kind {
    /// `POOL_SIZE` pools, classes up to `SMALL_REQUEST_THRESHOLD`.
    #[default]
    Small = 0,
    /// `MEDIUM_POOL_SIZE` pools, classes up to `MEDIUM_REQUEST_THRESHOLD`.
    Medium = 1,
}

/// Number of kinds (arrays indexed by `Kind as usize`).
pub const KINDS: usize = 2;

impl Kind {
    /// Both kinds, small first (the order their arena lists are locked in).
    pub const ALL: [Kind; KINDS] = [Kind::Small, Kind::Medium];

    /// Bytes of one pool of this kind.
    #[inline(always)]
    pub const fn pool_size(self) -> usize {
        match self {
            Kind::Small => POOL_SIZE,
            Kind::Medium => MEDIUM_POOL_SIZE,
        }
    }

    /// `addr & pool_mask()` is the pool of this kind an address lies in.
    #[inline(always)]
    pub const fn pool_mask(self) -> usize {
        !(self.pool_size() - 1)
    }

    /// Pools of this kind in one arena.
    #[inline(always)]
    pub const fn pools_per_arena(self) -> usize {
        ARENA_SIZE / self.pool_size()
    }

    /// An arena of this kind with this many pools in use or fewer gives the pages of its empty
    /// pools back (see `PURGE_AT_POOLS_IN_USE`). A medium pool is 256 KiB, so one left empty
    /// is given back whenever its arena is half empty.
    #[inline(always)]
    pub const fn purge_at_pools_in_use(self) -> usize {
        match self {
            Kind::Small => PURGE_AT_POOLS_IN_USE,
            Kind::Medium => MEDIUM_POOLS_PER_ARENA / 2,
        }
    }

    /// Its name in reports: "small" or "medium".
    pub const fn name(self) -> &'static str {
        match self {
            Kind::Small => "small",
            Kind::Medium => "medium",
        }
    }
}

// ---- invariants checked at compile time ----

const _: () = assert!(GRAIN.is_power_of_two() && GRAIN >= core::mem::size_of::<usize>());
const _: () = assert!(SMALL_REQUEST_THRESHOLD % GRAIN == 0);
const _: () = assert!(MAX_SMALL_ALIGN.is_power_of_two() && MAX_SMALL_ALIGN >= GRAIN);
const _: () = assert!(POOL_OVERHEAD % MAX_SMALL_ALIGN == 0);
// Every class, even the largest, fits at least one block in a pool.
const _: () = assert!(POOL_SIZE - POOL_OVERHEAD >= SMALL_REQUEST_THRESHOLD);
const _: () = assert!(ARENA_BITS > POOL_BITS && POOLS_PER_ARENA >= 2);
// An arena's empty pools are a bitmap in one word (`layout::ArenaHeader::free_pools`).
const _: () = assert!(POOLS_PER_ARENA <= 64);
const _: () = assert!(MEDIUM_POOL_BITS > POOL_BITS && ARENA_BITS > MEDIUM_POOL_BITS);
const _: () = assert!(MEDIUM_REQUEST_THRESHOLD.is_power_of_two());
const _: () = assert!(KEPT_SMALL_BYTES >= POOL_SIZE && KEPT_MEDIUM_POOLS >= 1);
const _: () = assert!(MEDIUM_REQUEST_THRESHOLD > SMALL_REQUEST_THRESHOLD);
const _: () = assert!(MAX_MEDIUM_ALIGN.is_power_of_two() && MAX_MEDIUM_ALIGN >= MAX_SMALL_ALIGN);
// Pool block offsets and counts are stored as u32 in the pool header.
const _: () = assert!(POOL_SIZE <= u32::MAX as usize);
// A pool's class tag (class index + 1) is one byte.
const _: () = assert!(NB_SIZE_CLASSES < u8::MAX as usize);
// The top level of the registry is a static array: keep it small in production builds.
#[cfg(not(poolmalloc_loom))]
const _: () = assert!(REGISTRY_TOP_LEN * core::mem::size_of::<usize>() <= 256 * 1024);
const _: () = assert!(CARVE_BYTES >= GRAIN);
const _: () = assert!(BOOTSTRAP_BYTES % POOL_SIZE == 0);
const _: () = assert!(0 < FRAG_SPARSE_PERCENT && FRAG_SPARSE_PERCENT < FRAG_HALF_PERCENT);
const _: () = assert!(FRAG_HALF_PERCENT < 100);
const _: () = assert!(FRAG_TOP_POOLS >= 1 && FRAG_TOP_ARENAS >= 1);
// Debug mode keeps the caller's bytes as aligned as the block, and fits at least an empty request.
const _: () = assert!(DEBUG_PREFIX % MAX_SMALL_ALIGN == 0);
const _: () = assert!(DEBUG_EXTRA < SMALL_REQUEST_THRESHOLD);
// A large debug block's prefix is the larger of DEBUG_PREFIX and its alignment: a multiple of both.
const _: () = assert!(DEBUG_PREFIX.is_power_of_two());
const _: () = assert!(DEBUG_LARGE_MIN_SLOTS.is_power_of_two() && DEBUG_RECENT_FREES > 0);
