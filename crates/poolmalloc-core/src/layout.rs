//! The shared data types, laid out in memory: the free-block link, the pool header at the start of
//! every pool, and the arena header in every registry slot. `pool`, `arena` and `registry` each
//! work on these; none of them needs another to name them.

use crate::config::{Kind, ADDRESS_BITS, GRAIN, MEDIUM_POOL_SIZE, POOL_OVERHEAD, POOL_SIZE};
use crate::size_class::Class;
use crate::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use crate::sync::unmodelled;

/// The first word of a free block: the link to the next free block of its chain (the pool's
/// free list, an allocation list, a remote chain), stored XOR the process's link key. A chain
/// ends with a link to its pool's header (`chain_end`: offset 0 in the pool, where no block
/// lies), so every free block's link decodes to an address in its own pool.
///
/// That is what lets a free tell, from the block alone, that the block may be free already —
/// the cheap half of the double-free check, for every class, even 8-byte blocks that have no
/// second word for glibc's tcache key: a block handed out has its first word cleared
/// (`note_alloc`, `pool::take_block`), which decodes to the key itself, whose top bit no
/// user-space address has. A block the program frees whose first word decodes into its own pool
/// (`looks_free`: one compare) is free already or holds a value the program could only have
/// copied out of a freed block; the confirming walk of the lists it would be on tells which
/// (`chain_holds`).
#[repr(C)]
pub struct FreeBlock {
    link: usize,
}

/// The process's link key: drawn once, when the first pool is carved or a thread cache is put in
/// service (`link_key`), before any link is stored; its top bit is set. Std's atomic even under loom: set outside every
/// model's interleavings that matter, never changed (`sync::unmodelled`).
static LINK_KEY: unmodelled::AtomicUsize = unmodelled::AtomicUsize::new(0);

/// The link key; 0 until the first pool is carved (no link exists before).
#[inline(always)]
pub(crate) fn link_key() -> usize {
    LINK_KEY.load(Ordering::Relaxed)
}

/// The link key, drawn first if need be. A thread cache keeps a copy (`ThreadCache`), since its
/// fast path reaches its own fields in one load and another crate's static in two (through
/// the GOT).
pub fn link_key_for_cache() -> usize {
    init_link_key();
    link_key()
}

/// Draws the link key if it has not been yet: from `getrandom`, else from the clock and an
/// address (a weaker key, but still one per process). Allocates nothing.
pub(crate) fn init_link_key() {
    if link_key() != 0 {
        return;
    }
    let mut key = 0usize;
    // SAFETY: getrandom writes at most `size_of::<usize>()` bytes into `key`.
    let got = unsafe {
        libc::getrandom(
            (&mut key as *mut usize).cast(),
            core::mem::size_of::<usize>(),
            libc::GRND_NONBLOCK,
        )
    };
    if got != core::mem::size_of::<usize>() as isize {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes the timespec it is given.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
        key = (now.tv_nsec as usize ^ (now.tv_sec as usize).rotate_left(32))
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (&key as *const usize as usize);
    }
    // Two cores carving their first pools at once keep whichever key was stored first.
    let _ = LINK_KEY.compare_exchange(
        0,
        key | 1 << (usize::BITS - 1),
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
}

/// The end of a chain of free blocks of `pool`: the pool's header, which is no block.
#[inline(always)]
pub(crate) fn chain_end(pool: *mut PoolHeader) -> *mut FreeBlock {
    pool.cast()
}

impl FreeBlock {
    /// True when `p` ends a chain: a pool's header (`chain_end`), or null (an empty list). For
    /// both kinds of pool: a pool's header is the one address of it at a multiple of
    /// `POOL_SIZE` (`size_class` checks that no block starts at one).
    #[inline(always)]
    pub fn is_end(p: *mut FreeBlock) -> bool {
        p as usize & (POOL_SIZE - 1) == 0
    }

    /// The next block of the chain, or its end (`is_end`).
    ///
    /// # Safety
    /// `this` is a free block on a chain the caller may read (it holds the chain).
    #[inline(always)]
    pub unsafe fn next(this: *mut FreeBlock) -> *mut FreeBlock {
        // SAFETY: forwarded precondition.
        unsafe { Self::next_with(this, link_key()) }
    }

    /// `next`, with the link key the caller keeps (`link_key_for_cache`).
    ///
    /// # Safety
    /// As for `next`; `key` is the link key.
    #[inline(always)]
    pub unsafe fn next_with(this: *mut FreeBlock, key: usize) -> *mut FreeBlock {
        // SAFETY: the block is mapped and its first word is its link (precondition).
        (unsafe { (*this).link } ^ key) as *mut FreeBlock
    }

    /// Links `this` to `next`: a block of the same pool, or the pool's `chain_end`.
    ///
    /// # Safety
    /// `this` is a block of a carved pool the caller may write (a free block it holds, or one
    /// the program gave up).
    #[inline(always)]
    pub unsafe fn set_next(this: *mut FreeBlock, next: *mut FreeBlock) {
        // SAFETY: forwarded precondition.
        unsafe { Self::set_next_with(this, next, link_key()) }
    }

    /// `set_next`, with the link key the caller holds (loaded once for a loop).
    ///
    /// # Safety
    /// As for `set_next`; `key` is the link key.
    #[inline(always)]
    pub unsafe fn set_next_with(this: *mut FreeBlock, next: *mut FreeBlock, key: usize) {
        // SAFETY: the caller may write the block (precondition).
        unsafe { (*this).link = next as usize ^ key };
    }

    /// The double-free check's cheap half: true when the first word of `this`, a block the
    /// program is freeing, decodes to an address in its pool, as every free block's does and
    /// no block handed out does until the program stores such a value.
    ///
    /// # Safety
    /// `this` lies in a carved pool of ours of `kind` (its first word is mapped).
    #[inline(always)]
    pub unsafe fn looks_free(this: *mut FreeBlock, kind: Kind) -> bool {
        // SAFETY: mapped (precondition); the program gives the block up, so reading it races
        // with nobody but a second free of the same block, which is what this detects.
        unsafe { Self::same_pool(Self::next(this), this, kind) }
    }

    /// True when `next`, a link read from `block`, stays in `block`'s pool (of `kind`), as every
    /// link does unless the program wrote to a free block (secure mode's check).
    #[inline(always)]
    pub fn same_pool(next: *mut FreeBlock, block: *mut FreeBlock, kind: Kind) -> bool {
        (next as usize ^ block as usize) < kind.pool_size()
    }

    /// True when the chain from `head` holds `block`. The walk stops at a link that leaves
    /// `block`'s pool (a chain never does, unless the program overwrote a free block), and after
    /// as many links as a pool has blocks, so a corrupt chain is never followed far.
    ///
    /// # Safety
    /// The caller holds the chain, whose blocks lie in `block`'s pool, of `kind`.
    pub unsafe fn chain_holds(head: *mut FreeBlock, block: *mut FreeBlock, kind: Kind) -> bool {
        let mut b = head;
        for _ in 0..kind.pool_size() / GRAIN {
            if b == block {
                return true;
            }
            if FreeBlock::is_end(b) || !FreeBlock::same_pool(b, block, kind) {
                return false;
            }
            // SAFETY: a block of the chain, in `block`'s pool (checked above).
            b = unsafe { FreeBlock::next(b) };
        }
        false
    }
}

/// Header at the start of every carved pool: one cache line (`config::POOL_OVERHEAD`).
///
/// Who may touch what depends on who holds the pool (the essay's "Pools" and "Threads own
/// their pools"): the owning thread alone, without a lock, while `owner` names its cache; the
/// class lock's holder while the core holds it; the arena lock's holder while it is empty.
/// Other threads only read `owner` and the class tag, and push onto `remote`, and a notice's sender writes `next_notice` (O1–O5).
#[repr(C)]
pub(crate) struct PoolHeader {
    /// The owning thread cache's id (its address) while a thread owns the pool; 0 while the
    /// core holds it or it is empty in its arena.
    pub owner: AtomicUsize,
    /// Blocks freed by threads other than the owner, as a chain (`FreeBlock` links) and its
    /// length (`chain_len`) the owner takes whole with one swap; or `CORE_HELD` while the core
    /// holds the pool, when frees go through the class lock instead.
    pub remote: AtomicUsize,
    /// Head of the free-block list (blocks given back by the holder), ending at `chain_end`;
    /// carving comes after it.
    pub freeblock: *mut FreeBlock,
    /// Links in `usedpools[class]` (core-held pools) or the owner's used list (owned pools).
    pub nextpool: *mut PoolHeader,
    pub prevpool: *mut PoolHeader,
    /// The next pool on the owner's notices (`Notices`), written by the remote free that
    /// pushed this one there. (Its arena's header is found through the registry.)
    pub next_notice: AtomicUsize,
    /// Blocks out of the pool: held by the program, or freed onto `remote` and not yet taken
    /// back. (Blocks on the owner's allocation list are free blocks of the pool.) Atomic, as
    /// stats read it while the owner writes it (plain loads and stores).
    pub ref_count: AtomicU32,
    /// Offset of the next never-used block; carving is possible while it is `<= maxnextoffset`.
    pub nextoffset: AtomicU32,
    pub maxnextoffset: u32,
    /// `class index + 1` while the pool serves a class; 0 while it is empty in its arena or was
    /// never carved, which is what zero-filled arena memory says. Atomic because frees read it
    /// before taking any lock. One byte, so a table indexed by it needs no bounds check,
    /// whatever a misused pointer's "header" holds.
    pub class_tag: AtomicU8,
}

const _: () = assert!(core::mem::size_of::<PoolHeader>() <= POOL_OVERHEAD);

/// `PoolHeader::remote` while the core holds the pool. Blocks are GRAIN-aligned, so no chain
/// head has this bit, `FILED`'s or `NOTIFYING`'s.
pub(crate) const CORE_HELD: usize = 1;

/// `PoolHeader::remote` of an owned pool its owner filed full, with no remote free since: the
/// next remote free sends the owner a notice (`pool::push_remote`). The owner may leave it set
/// after the pool has free blocks again (it then reads as an empty chain).
pub(crate) const FILED: usize = 2;

/// The bit of `PoolHeader::remote` set beside the chain while the remote free that found the
/// pool `FILED` sends its notice (its block already heads the chain): the owner does not hand
/// the pool over until it is clear (O5). Other frees push past it, keeping it.
pub(crate) const NOTIFYING: usize = 4;

/// A `remote` word counts the blocks of its chain in the bits above the address (blocks lie
/// below `1 << ADDRESS_BITS`), so the owner that takes the chain knows how many came back
/// without walking blocks another thread wrote last: in a producer's pool, that walk was a
/// cache miss per block, one after the other.
const CHAIN_LEN_SHIFT: u32 = ADDRESS_BITS;

/// The address bits of a `remote` word's chain head.
const CHAIN_HEAD_MASK: usize = ((1 << ADDRESS_BITS) - 1) & !(GRAIN - 1);

// Every block of a pool fits the count.
const _: () = assert!(
    POOL_SIZE / GRAIN < 1 << (usize::BITS - ADDRESS_BITS)
        && MEDIUM_POOL_SIZE / GRAIN < 1 << (usize::BITS - ADDRESS_BITS)
);

/// True when a `remote` word holds a chain of blocks (rather than being empty or a sentinel).
#[inline(always)]
pub(crate) fn is_chain(remote: usize) -> bool {
    remote & CHAIN_HEAD_MASK != 0
}

/// The first block of the chain a `remote` word holds (null if none).
#[inline(always)]
pub(crate) fn chain_of(remote: usize) -> *mut FreeBlock {
    (remote & CHAIN_HEAD_MASK) as *mut FreeBlock
}

/// The number of blocks on the chain a `remote` word holds.
#[inline(always)]
pub(crate) fn chain_len(remote: usize) -> usize {
    remote >> CHAIN_LEN_SHIFT
}

/// The `remote` word of a chain of `len` blocks headed by `head`, with `flags` (`NOTIFYING`).
#[inline(always)]
pub(crate) fn chain_word(head: *mut FreeBlock, len: usize, flags: usize) -> usize {
    debug_assert_eq!(head as usize & !CHAIN_HEAD_MASK, 0);
    head as usize | len << CHAIN_LEN_SHIFT | flags
}

/// The bit of `PoolHeader::owner` set while the pool is on its owner's filed list (full): the
/// owner's fast path, which compares the word with its id, sends its free into the pool to the
/// slow step (`ThreadCache::free_local`), with no test of its own. Cache ids are addresses of
/// `Notices`, so this bit of an id is clear.
pub const FILED_ID: usize = 1;

/// The pool of `kind` holding `addr` (the essay's "Pools": `addr & !(pool size - 1)`).
#[inline(always)]
pub(crate) fn pool_of(addr: *const u8, kind: Kind) -> *mut PoolHeader {
    ((addr as usize) & kind.pool_mask()) as *mut PoolHeader
}

/// The class tag of the pool holding `block`: 0 when the pool serves no class, else the class
/// index + 1.
///
/// # Safety
/// `block` lies in one of our arenas of `kind` (in a pool block, or in a bootstrap region laid
/// out like small pools), so its pool header is mapped.
#[inline(always)]
pub unsafe fn class_tag(block: *const u8, kind: Kind) -> u8 {
    // SAFETY: the header is mapped (precondition); the tag is atomic, so reading it without the
    // pool's lock (P1) is no data race.
    unsafe { (*pool_of(block, kind)).class_tag.load(Ordering::Relaxed) }
}

/// The id of the thread cache that owns the pool holding `block` (0 when none does): a cache
/// whose id this is may free the block with `free_to_own_pool`.
///
/// # Safety
/// As for `class_tag`.
#[inline(always)]
pub unsafe fn pool_owner(block: *const u8, kind: Kind) -> usize {
    // SAFETY: the header is mapped (precondition); `owner` is atomic (O1).
    unsafe { (*pool_of(block, kind)).owner.load(Ordering::Relaxed) }
}

/// The owner hands out `block`, a free block of its pool from its allocation list whose link it
/// has read: one more block out, and its first word cleared so it no longer looks free
/// (`FreeBlock::looks_free`).
///
/// # Safety
/// `pool_owner(block, kind)` is the calling thread's cache id (O1), and the block is the
/// owner's to hand out.
#[inline(always)]
pub unsafe fn note_alloc(block: *mut u8, kind: Kind) {
    let pool = pool_of(block, kind);
    // SAFETY: this thread owns the pool (precondition), so its counts are its alone (O1); the
    // block is its to hand out.
    unsafe {
        block.cast::<usize>().write(0);
        let out = (*pool).ref_count.load(Ordering::Relaxed) + 1;
        (*pool).ref_count.store(out, Ordering::Relaxed);
    }
}

/// A local free (the owner's fast path): pushes `block` onto its pool's free list, unless its
/// first word says it may be free already (`FreeBlock::looks_free`: `None`, nothing done; the
/// caller confirms, then frees with `push_to_own_pool` if it was not). `Some(true)` when the
/// free emptied the pool, which the owner must then take off its lists (`OwnedPool`'s slow
/// steps).
///
/// # Safety
/// `pool_owner(block, kind)` is the calling thread's cache id (O1: the pool's free list and
/// counts are its alone), `block` is a block of the pool that the program gives up, and `key`
/// is the link key.
#[inline(always)]
pub unsafe fn free_to_own_pool(block: *mut u8, key: usize, kind: Kind) -> Option<bool> {
    // SAFETY: a block of a carved pool (precondition).
    let next = unsafe { block.cast::<usize>().read() } ^ key;
    if FreeBlock::same_pool(next as *mut FreeBlock, block.cast(), kind) {
        return None;
    }
    // SAFETY: forwarded precondition; the key is the one just read.
    Some(unsafe { push(block, key, kind) })
}

/// `free_to_own_pool` without the double-free check, for a block the caller confirmed is out.
///
/// # Safety
/// As for `free_to_own_pool`, and the block is out.
pub unsafe fn push_to_own_pool(block: *mut u8, kind: Kind) -> bool {
    // SAFETY: forwarded precondition.
    unsafe { push(block, link_key(), kind) }
}

/// Pushes `block` onto its pool's free list with its link encoded by `key`.
///
/// # Safety
/// As for `push_to_own_pool`; `key` is the link key.
#[inline(always)]
unsafe fn push(block: *mut u8, key: usize, kind: Kind) -> bool {
    let pool = pool_of(block, kind);
    // SAFETY: this thread owns the pool (precondition), so the free list is its alone (O1); the
    // block is given up, so its first word is ours for the link.
    unsafe {
        block
            .cast::<usize>()
            .write((*pool).freeblock as usize ^ key);
        (*pool).freeblock = block.cast();
        let out = (*pool).ref_count.load(Ordering::Relaxed) - 1;
        (*pool).ref_count.store(out, Ordering::Relaxed);
        out == 0
    }
}

impl PoolHeader {
    /// The class the pool serves, or `None` when it is empty or never carved.
    #[inline]
    pub fn class(&self) -> Option<Class> {
        match self.class_tag.load(Ordering::Relaxed) {
            0 => None,
            tag => Class::new(tag as usize - 1),
        }
    }

    #[inline]
    pub fn block_size(&self) -> usize {
        // A pool with blocks out always has a class; callers only ask such pools.
        self.class().map_or(0, Class::block_size)
    }

    /// Blocks out of the pool.
    #[inline]
    pub fn out(&self) -> usize {
        self.ref_count.load(Ordering::Relaxed) as usize
    }

    /// True while the pool is on its owner's filed list.
    #[inline]
    pub fn is_filed(&self) -> bool {
        self.owner.load(Ordering::Relaxed) & FILED_ID != 0
    }

    #[inline]
    pub fn set_out(&self, out: usize) {
        self.ref_count.store(out as u32, Ordering::Relaxed);
    }

    #[inline]
    pub fn next_offset(&self) -> usize {
        self.nextoffset.load(Ordering::Relaxed) as usize
    }

    /// Blocks carved so far (handed out at least once).
    pub fn carved(&self) -> usize {
        match self.class() {
            Some(c) => (self.next_offset() - POOL_OVERHEAD) / c.block_size(),
            None => 0,
        }
    }

    /// True while a block can be taken (free list or carving room).
    #[inline]
    pub fn has_free(&self) -> bool {
        !FreeBlock::is_end(self.freeblock) || self.next_offset() <= self.maxnextoffset as usize
    }

    /// True when `addr` is the start of a block this pool has carved.
    pub fn is_block_start(&self, addr: usize) -> bool {
        let base = self as *const Self as usize + POOL_OVERHEAD;
        let end = self as *const Self as usize + self.next_offset();
        let size = self.block_size();
        size != 0 && addr >= base && addr < end && (addr - base) % size == 0
    }
}

impl ArenaHeader {
    /// The arena's carved pools whose pages are committed (walks read their headers; an empty
    /// pool whose pages went back is zeroed memory, and one a purge has claimed is being made
    /// so: both are skipped).
    pub fn committed_pools(&self) -> impl Iterator<Item = *mut PoolHeader> + '_ {
        let size = self.kind.pool_size();
        let skip = self.decommitted | self.claimed;
        (0..self.carved())
            .filter(move |&i| skip & (1 << i) == 0)
            .map(move |i| (self.address + i * size) as *mut PoolHeader)
    }

    /// Pools carved so far (from the front).
    pub fn carved(&self) -> usize {
        (self.pool_address - self.address) / self.kind.pool_size()
    }
}

/// An arena's header. It lives in the arena's registry slot, not in the arena; zeroed memory is
/// a valid (unmapped) header.
pub(crate) struct ArenaHeader {
    /// Base address of the arena; 0 while the slot holds no arena.
    pub address: usize,
    /// The kind of pool it is carved into (also in its registry slot, for lock-free readers).
    pub kind: Kind,
    /// Next never-carved pool: pools are carved from the front, lazily.
    pub pool_address: usize,
    /// Empty pools, carved or not.
    pub nfreepools: usize,
    pub ntotalpools: usize,
    /// Carved pools that are empty, one bit per pool (bit `i`: the pool at `address + i *
    /// pool size`); kept outside the pools so an empty pool's pages can all go back.
    pub free_pools: u64,
    /// Of `free_pools`, those whose pages went back to the system (decommitted).
    pub decommitted: u64,
    /// Of `free_pools`, the committed ones that were already empty at the last purge pass: the
    /// next pass gives them back (they have waited at least the purge delay). A pool taken
    /// leaves it; a pool given back joins it only at the next pass.
    pub old: u64,
    /// The purge pass that set `old` (`arena::Schedule::pass`).
    pub old_pass: u64,
    /// Empty pools a purge has claimed: off `free_pools` (and out of `nfreepools`) while their
    /// pages go back without the arena lock, so no allocation can take them meanwhile.
    pub claimed: u64,
    /// Of each pool on `free_pools`, the class tag it served when it was given back, its blocks
    /// all on its free list (0: none, or its pages went back since).
    pub last_class: [u8; 64],
    /// Links in `usable`.
    pub nextarena: *mut ArenaHeader,
    pub prevarena: *mut ArenaHeader,
    /// Links in the list of all this core's arenas (for walks and for dropping the core).
    pub next_all: *mut ArenaHeader,
    pub prev_all: *mut ArenaHeader,
}
