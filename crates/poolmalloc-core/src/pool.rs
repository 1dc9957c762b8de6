//! Pools: lazy carving, the free-block list and the remote-free chain, the owner's notices, the
//! steps of a pool's state transitions.
//!
//! A pool serves one size class at a time. Its header (`layout::PoolHeader`) holds the count of
//! blocks out, the head of the free-block list, the chain of blocks other threads freed, the
//! links of whichever list the pool is on, its arena, owner and class, and the offset of the next
//! never-used block: blocks are carved lazily, a page's worth at a time (`CARVE_BYTES`), never
//! threaded up front, so a fresh pool touches only the pages its blocks reach.
//!
//! The steps on a core-held or empty pool are `unsafe fn`s whose precondition is the lock that
//! guards it (P1); the steps on an owned pool are `OwnedPool`'s, whose precondition is that the
//! calling thread owns it (O1).

use core::ptr;

use crate::config::{Kind, POOL_OVERHEAD, REUSE_FREED_BYTES};
use crate::layout::{
    chain_end, chain_len, chain_of, chain_word, is_chain, link_key, FreeBlock, PoolHeader,
    CORE_HELD, FILED, FILED_ID, NOTIFYING,
};
use crate::size_class::Class;
use crate::sync::atomic::{AtomicU32, AtomicU8, AtomicUsize, Ordering};
use crate::sync::const_fn_unless_loom;

/// A chain of free blocks linked through their first word.
#[derive(Debug)]
pub struct Batch {
    /// The first block of the chain (null when `count` is 0).
    pub head: *mut FreeBlock,
    /// Blocks in the chain.
    pub count: usize,
}

/// A thread cache's notices: the pools it filed full that a remote free reached since, each
/// pushed once by that free (`pool::push_remote`) and linked through `next_notice`; the owner
/// takes them whole (`take`). A cache's id is the address of its notices (`owner_notices`).
pub struct Notices {
    pub(crate) head: AtomicUsize,
}

impl Default for Notices {
    fn default() -> Self {
        Notices::new()
    }
}

impl Notices {
    const_fn_unless_loom! {
        /// No notices.
        pub fn new() -> Notices {
            Notices { head: AtomicUsize::new(0) }
        }
    }

    /// True when no notice waits (a Relaxed load: `take` says which).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.head.load(Ordering::Relaxed) == 0
    }

    /// Takes the notices waiting and hands each pool still filed to `each`, newest first, its
    /// link read before (a notice for a pool unfiled since is passed over). Acquire: each
    /// sender wrote its pool's link first.
    ///
    /// # Safety
    /// These are the calling thread's cache's notices, and it has given up none of its pools
    /// since it last took them (a given-up pool's link may be another owner's now).
    pub unsafe fn take(&self, mut each: impl FnMut(OwnedPool)) {
        let mut pool = self.head.swap(0, Ordering::Acquire) as *mut PoolHeader;
        while !pool.is_null() {
            // SAFETY: a pool on our notices is ours (precondition), its header mapped.
            let next = unsafe { (*pool).next_notice.load(Ordering::Relaxed) } as *mut PoolHeader;
            #[cfg(feature = "planted-fault")]
            let every = crate::planted_fault::on(&crate::planted_fault::EVERY_NOTICE);
            #[cfg(not(feature = "planted-fault"))]
            let every = false;
            // SAFETY: as above.
            if every || unsafe { (*pool).is_filed() } {
                each(OwnedPool(pool));
            }
            pool = next;
        }
    }

    /// Forgets the notices without reading them (a drained cache, whose pools are all given up:
    /// the links of those it would read may be another owner's now).
    pub fn forget(&self) {
        self.head.store(0, Ordering::Relaxed);
    }

    /// Pushes `pool` (Release: its link is written first).
    ///
    /// # Safety
    /// The caller is sending `pool`'s notice: it set the pool's `remote` to `NOTIFYING` (O5).
    pub(crate) unsafe fn push(&self, pool: *mut PoolHeader) {
        let mut head = self.head.load(Ordering::Relaxed);
        loop {
            // SAFETY: the pool's header is mapped while a block of it is out (the sender's).
            unsafe { (*pool).next_notice.store(head, Ordering::Relaxed) };
            match self.head.compare_exchange_weak(
                head,
                pool as usize,
                Ordering::Release,
                Ordering::Relaxed,
            ) {
                Ok(_) => return,
                Err(now) => head = now,
            }
        }
    }
}

/// The notices of the cache whose id is `owner`.
///
/// # Safety
/// `owner` is a pool's owner word naming a live cache (its `Notices`' address, `FILED_ID` aside),
/// which O5 keeps alive while the caller sends a notice.
pub(crate) unsafe fn owner_notices<'a>(owner: usize) -> &'a Notices {
    // SAFETY: forwarded precondition.
    unsafe { &*((owner & !FILED_ID) as *const Notices) }
}

/// Makes the empty `pool` serve `class`, held by `owner` (a cache id) or, when `owner` is 0, by
/// the core. Every atomic of the header is written afresh (under loom a never-carved pool has
/// none yet).
///
/// # Safety
/// `pool` is a pool of `class`'s kind, aligned to its size, inside a mapped arena, empty (no block out, so nobody
/// reads or pushes to it but walks under the arena lock), and the caller holds the arena lock.
pub(crate) unsafe fn init(pool: *mut PoolHeader, class: Class, owner: usize) {
    // A pool that served another class may hold freed blocks the tools see as no-access; the
    // new class's links fall anywhere in it.
    #[cfg(any(feature = "valgrind", feature = "asan"))]
    // SAFETY: the pool's block area is ours and empty (precondition).
    unsafe {
        crate::tools::mark_reusable(
            pool.cast::<u8>().add(POOL_OVERHEAD),
            class.kind().pool_size() - POOL_OVERHEAD,
        )
    };
    crate::layout::init_link_key();
    // SAFETY: the pool is ours and empty, and the arena lock keeps walks out (precondition).
    unsafe {
        ptr::addr_of_mut!((*pool).freeblock).write(chain_end(pool));
        ptr::addr_of_mut!((*pool).nextpool).write(ptr::null_mut());
        ptr::addr_of_mut!((*pool).prevpool).write(ptr::null_mut());
        ptr::addr_of_mut!((*pool).next_notice).write(AtomicUsize::new(0));
        ptr::addr_of_mut!((*pool).owner).write(AtomicUsize::new(owner));
        let remote = if owner == 0 { CORE_HELD } else { 0 };
        ptr::addr_of_mut!((*pool).remote).write(AtomicUsize::new(remote));
        ptr::addr_of_mut!((*pool).ref_count).write(AtomicU32::new(0));
        ptr::addr_of_mut!((*pool).nextoffset).write(AtomicU32::new(POOL_OVERHEAD as u32));
        ptr::addr_of_mut!((*pool).maxnextoffset).write(max_next_offset(class));
        ptr::addr_of_mut!((*pool).class_tag).write(AtomicU8::new(class.index() as u8 + 1));
    }
}

/// Makes the empty `pool`, which served `class` when it was given back and is still as it was
/// then (committed; every carved block on its free list), serve `class` again for `owner` (0:
/// the core), keeping its free list and carving: nothing is re-carved, no new page touched.
///
/// # Safety
/// As for `init`, and `pool` is as said: its header was written by `init` for `class`, and
/// nothing changed it but the steps of P2 and `mark_empty`.
pub(crate) unsafe fn resume(pool: *mut PoolHeader, class: Class, owner: usize) {
    // SAFETY: the pool is ours and empty, and the arena lock keeps walks out (precondition);
    // its atomics exist (written by `init`).
    unsafe {
        debug_assert_eq!((*pool).out(), 0);
        (*pool).nextpool = ptr::null_mut();
        (*pool).prevpool = ptr::null_mut();
        (*pool).owner.store(owner, Ordering::Relaxed);
        let remote = if owner == 0 { CORE_HELD } else { 0 };
        (*pool).remote.store(remote, Ordering::Relaxed);
        (*pool)
            .class_tag
            .store(class.index() as u8 + 1, Ordering::Relaxed);
    }
}

/// The offset of the last block a pool of `class` can carve.
fn max_next_offset(class: Class) -> u32 {
    (class.kind().pool_size() - class.block_size()) as u32
}

/// The kind of a pool that serves a class.
///
/// # Safety
/// `pool` serves a class (its tag is stable while the caller holds it or a block of it is out).
unsafe fn kind_of(pool: *mut PoolHeader) -> Kind {
    // SAFETY: precondition.
    unsafe { (*pool).class() }.map_or(Kind::Small, Class::kind)
}

/// Takes one block: the head of the free list, else the next never-used block; its first word
/// cleared, as every block handed out has (`FreeBlock`).
///
/// # Safety
/// The caller holds the pool's class lock, the core holds the pool, and `(*pool).has_free()`.
#[inline]
pub(crate) unsafe fn take_block(pool: *mut PoolHeader) -> *mut FreeBlock {
    // SAFETY: the header is ours under the class lock (precondition); a free-list head is a block
    // of this pool whose first word is its link (P2).
    unsafe {
        let p = &mut *pool;
        p.set_out(p.out() + 1);
        let head = p.freeblock;
        let block = if FreeBlock::is_end(head) {
            debug_assert!(p.has_free(), "P3: a used pool has a free block");
            let offset = p.next_offset();
            p.nextoffset
                .store((offset + p.block_size()) as u32, Ordering::Relaxed);
            (pool as *mut u8).add(offset).cast()
        } else {
            p.freeblock = FreeBlock::next(head);
            head
        };
        block.cast::<usize>().write(0);
        block
    }
}

/// Gives `block` back to the pool's free list.
///
/// # Safety
/// The caller holds the pool's class lock and the core holds the pool; `block` is a carved block
/// of `pool` that is out.
#[inline]
pub(crate) unsafe fn put_block(pool: *mut PoolHeader, block: *mut FreeBlock) {
    // SAFETY: the header is ours under the class lock; the block is ours to link (precondition).
    unsafe {
        let p = &mut *pool;
        debug_assert!(p.out() > 0);
        FreeBlock::set_next(block, p.freeblock);
        p.freeblock = block;
        p.set_out(p.out() - 1);
    }
}

/// True when `block` is on the free list of a core-held pool: the double-free check's
/// confirming walk (`FreeBlock::looks_free`).
///
/// # Safety
/// The caller holds the pool's class lock and the core holds the pool; `block` lies in it.
pub(crate) unsafe fn holds_free(pool: *mut PoolHeader, block: *mut FreeBlock) -> bool {
    // SAFETY: the free list is the lock holder's (precondition, P1); a core-held pool serves a
    // class.
    unsafe { FreeBlock::chain_holds((*pool).freeblock, block, kind_of(pool)) }
}

/// Marks the pool empty (→ empty: the caller gives it to its arena).
///
/// # Safety
/// The caller holds the pool (its class lock, or it owns it) and the arena lock, and no block of
/// the pool is out.
pub(crate) unsafe fn mark_empty(pool: *mut PoolHeader) {
    // SAFETY: the pool's header is mapped and held by the caller (precondition); the tag and
    // owner are atomic for the lock-free readers.
    unsafe {
        debug_assert_eq!((*pool).out(), 0);
        (*pool).class_tag.store(0, Ordering::Relaxed);
        (*pool).owner.store(0, Ordering::Relaxed);
        (*pool).remote.store(CORE_HELD, Ordering::Relaxed);
    }
}

/// Counts a chain of blocks and finds its last block.
///
/// # Safety
/// `head` starts a null-terminated chain of free blocks the caller holds.
unsafe fn walk(head: *mut FreeBlock) -> (usize, *mut FreeBlock) {
    let (mut count, mut last) = (0, ptr::null_mut());
    let key = link_key();
    let mut b = head;
    while !FreeBlock::is_end(b) {
        count += 1;
        last = b;
        // SAFETY: a block of the chain (precondition).
        b = unsafe { FreeBlock::next_with(b, key) };
    }
    (count, last)
}

/// Takes a pool's remote chain whole, if it has one: a load first, and a compare-and-swap only
/// when there is a chain to take, leaving `NOTIFYING` if it is set (an empty chain or `FILED`
/// stays as it is: a filed pool still asks for its notice). Acquire: the blocks' links were
/// written before their pushes (Release).
///
/// # Safety
/// The caller owns the pool, or borrows the chain (`borrow_remote`; O1, O2).
unsafe fn take_chain(pool: *mut PoolHeader) -> Batch {
    // SAFETY: the header is mapped while the pool is held (precondition).
    let remote = unsafe { &(*pool).remote };
    let mut word = remote.load(Ordering::Relaxed);
    loop {
        if !is_chain(word) {
            return Batch {
                head: ptr::null_mut(),
                count: 0,
            };
        }
        match remote.compare_exchange_weak(
            word,
            word & NOTIFYING,
            Ordering::Acquire,
            Ordering::Relaxed,
        ) {
            Ok(_) => break,
            Err(now) => word = now,
        }
    }
    Batch {
        head: chain_of(word),
        count: chain_len(word),
    }
}

/// The pool's remote word once no notice is being sent into it (`NOTIFYING` clear; the owner
/// waits for a sender, never a sender for anyone). Acquire, as `take_chain`.
fn settled(remote: &AtomicUsize) -> usize {
    loop {
        let word = remote.load(Ordering::Acquire);
        if word & NOTIFYING == 0 {
            return word;
        }
        crate::sync::wait_a_moment();
    }
}

/// Seizes an owned pool's remote chain for the core (O3): the word becomes `CORE_HELD`, once no
/// notice is being sent (O5), and the chain it held (if any) is returned. Acquire, as
/// `take_chain`.
///
/// # Safety
/// The caller owns the pool and holds its class lock.
unsafe fn seize(pool: *mut PoolHeader) -> Batch {
    #[cfg(feature = "planted-fault")]
    if crate::planted_fault::ON.load(Ordering::Relaxed) {
        // SAFETY: forwarded precondition.
        let word = unsafe { crate::planted_fault::swap_racily(pool) };
        return Batch {
            head: chain_of(word),
            count: chain_len(word),
        };
    }
    // SAFETY: the header is mapped while the pool is held (precondition).
    let remote = unsafe { &(*pool).remote };
    #[cfg(feature = "planted-fault")]
    let wait = !crate::planted_fault::on(&crate::planted_fault::UNWAITED_HANDOVER);
    #[cfg(not(feature = "planted-fault"))]
    let wait = true;
    let word = loop {
        let word = if wait {
            settled(remote)
        } else {
            remote.load(Ordering::Relaxed)
        };
        debug_assert_ne!(word, CORE_HELD, "O1: an owned pool is never CORE_HELD");
        if remote
            .compare_exchange_weak(word, CORE_HELD, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            break word;
        }
    };
    // (`FILED`, like `NOTIFYING` alone, reads as no chain.)
    Batch {
        head: chain_of(word),
        count: chain_len(word),
    }
}

/// Pushes the chain `first ..= last` of `count` given-up blocks of `pool` onto its remote chain
/// (the word's length grows by `count`), unless
/// the core holds the pool (false: nothing pushed, and `last` ends the chain again, for the
/// caller to free it under the class lock). One compare-and-swap, retried while other threads
/// push; Release, so the owner that swaps the chain out sees each block's link. Into a `FILED`
/// pool, the push sends the owner its notice (O5): the chain goes in with `NOTIFYING` beside
/// it, the pool onto the owner's notices, and then the bit is cleared. No free waits for
/// another.
///
/// Inlined into every remote free (a consumer thread's every free); the notice is out of line.
///
/// # Safety
/// The blocks lie in `pool`, which serves a class, are out, and are given up (or borrowed).
#[inline]
unsafe fn push_chain(
    pool: *mut PoolHeader,
    first: *mut FreeBlock,
    last: *mut FreeBlock,
    count: usize,
) -> bool {
    // SAFETY: the pool serves a class (precondition), so its header is initialised.
    let remote = unsafe { &(*pool).remote };
    #[cfg(feature = "planted-fault")]
    let notice = !crate::planted_fault::on(&crate::planted_fault::NO_NOTICE);
    #[cfg(not(feature = "planted-fault"))]
    let notice = true;
    let mut head = remote.load(Ordering::Relaxed);
    loop {
        if head == CORE_HELD {
            // SAFETY: the blocks are the caller's (precondition).
            unsafe { FreeBlock::set_next(last, chain_end(pool)) };
            return false;
        }
        let next = if is_chain(head) {
            chain_of(head)
        } else {
            chain_end(pool)
        };
        // SAFETY: the blocks are the caller's (precondition): `last`'s first word is its link.
        unsafe { FreeBlock::set_next(last, next) };
        let sends = head == FILED && notice;
        let flags = if sends { NOTIFYING } else { head & NOTIFYING };
        let word = chain_word(first, chain_len(head) + count, flags);
        // Acquire too when sending: the owner's filing published its id (Release).
        let order = if sends {
            Ordering::AcqRel
        } else {
            Ordering::Release
        };
        match remote.compare_exchange_weak(head, word, order, Ordering::Relaxed) {
            Ok(_) if sends => break,
            Ok(_) => return true,
            Err(now) => head = now,
        }
    }
    // SAFETY: our push set `NOTIFYING` into the filed pool (forwarded precondition).
    unsafe { send_notice(pool) };
    true
}

/// The push that found `pool` `FILED` and set `NOTIFYING`: the pool goes onto its owner's
/// notices, and then the bit is cleared.
///
/// # Safety
/// This thread's push set `NOTIFYING` into `pool`'s remote word, and nothing has cleared it.
#[cold]
#[inline(never)]
unsafe fn send_notice(pool: *mut PoolHeader) {
    // SAFETY: the pool serves a class while our block is on its chain (precondition).
    let remote = unsafe { &(*pool).remote };
    // SAFETY: until `NOTIFYING` is cleared the owner keeps the pool, and so its cache lives (O5).
    unsafe { owner_notices((*pool).owner.load(Ordering::Relaxed)).push(pool) };
    // Sent: the bit goes, whatever pushes and the owner's takes did to the chain meanwhile.
    let mut word = remote.load(Ordering::Relaxed);
    while let Err(now) = remote.compare_exchange_weak(
        word,
        word & !NOTIFYING,
        Ordering::Release,
        Ordering::Relaxed,
    ) {
        word = now;
    }
}

/// A remote free: pushes `block` onto its pool's remote chain (`push_chain`: a notice to the
/// owner first if it filed the pool full), unless the core holds the pool (then the caller
/// frees it under the class lock).
///
/// # Safety
/// `block` lies in a pool serving a class, is out, and is given up.
#[inline]
pub(crate) unsafe fn push_remote(pool: *mut PoolHeader, block: *mut FreeBlock) -> bool {
    // SAFETY: forwarded precondition.
    if unsafe { push_chain(pool, block, block, 1) } {
        return true;
    }
    // The block was linked: cleared, it looks given up, not free, to the free under the class
    // lock that follows (`FreeBlock::looks_free`).
    // SAFETY: the block is given up (precondition): its first word is ours.
    unsafe { block.cast::<usize>().write(0) };
    false
}

/// Borrows an owned pool's remote chain whole, for the double-free check of a thread that does
/// not own the pool (O2): one compare-and-swap leaves an empty chain, as the owner's swap would;
/// the blocks stay counted out, so the pool cannot empty meanwhile (O4). `None` when the chain is
/// empty or the core holds the pool. The borrower gives the chain back whole (`return_remote`).
///
/// # Safety
/// `pool` serves a class and has a block out (the caller's suspect keeps it so, or is on it).
pub(crate) unsafe fn borrow_remote(pool: *mut PoolHeader) -> Option<*mut FreeBlock> {
    // SAFETY: the pool serves a class (precondition), so its header is initialised; a borrower
    // may swap the chain out as its owner would (O2).
    let chain = unsafe { take_chain(pool) };
    (chain.count > 0).then_some(chain.head)
}

/// Gives a borrowed chain back whole: pushed in front of whatever was freed meanwhile, as a
/// remote free would be (`push_chain`). False, with nothing done, when the core took the pool
/// meanwhile (the caller then frees the chain's blocks under the class lock).
///
/// # Safety
/// `chain` was borrowed from `pool` (`borrow_remote`) and is the caller's until given back.
pub(crate) unsafe fn return_remote(pool: *mut PoolHeader, chain: *mut FreeBlock) -> bool {
    // SAFETY: the chain is the caller's (precondition); its blocks are out, so the pool still
    // serves its class and its header is initialised (O4).
    unsafe {
        let (count, last) = walk(chain);
        push_chain(pool, chain, last, count)
    }
}

/// Hands an owned pool to the core (O3): the remote chain is swapped for `CORE_HELD` (once no
/// notice is being sent, O5), so later remote frees take the class lock, and its blocks go on
/// the free list; filed or not, it is the core's now. Returns the pool's blocks out afterwards.
///
/// # Safety
/// The caller owns the pool and holds its class lock; the pool is on none of the owner's lists.
pub(crate) unsafe fn hand_to_core(pool: *mut PoolHeader) -> usize {
    // SAFETY: owned by the caller, under the class lock (precondition).
    unsafe {
        let chain = seize(pool);
        (*pool).owner.store(0, Ordering::Relaxed);
        let mut b = chain.head;
        while !FreeBlock::is_end(b) {
            let next = FreeBlock::next(b);
            put_block(pool, b);
            b = next;
        }
        (*pool).out()
    }
}

/// Makes a core-held pool `owner`'s (O3): `CORE_HELD` gives way to an empty remote chain.
///
/// # Safety
/// The caller holds the pool's class lock, the core holds the pool, and it is on no list.
pub(crate) unsafe fn adopt(pool: *mut PoolHeader, owner: usize) {
    // SAFETY: core-held, under the class lock (precondition).
    unsafe {
        (*pool).owner.store(owner, Ordering::Relaxed);
        let was = (*pool).remote.swap(0, Ordering::Acquire);
        debug_assert_eq!(was, CORE_HELD);
    }
}

/// A pool a thread owns, as the thread's cache sees it: the handle of its slow steps. Every
/// method's precondition is that the calling thread owns the pool (O1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnedPool(pub(crate) *mut PoolHeader);

impl OwnedPool {
    /// No pool.
    pub const NONE: OwnedPool = OwnedPool(ptr::null_mut());

    /// True for `NONE`.
    #[inline]
    pub fn is_none(self) -> bool {
        self.0.is_null()
    }

    /// The pool of `kind` holding `block`.
    pub fn of(block: *mut u8, kind: Kind) -> OwnedPool {
        OwnedPool(crate::layout::pool_of(block, kind))
    }

    /// The class it serves.
    ///
    /// # Safety
    /// The calling thread owns the pool.
    pub unsafe fn class(self) -> Class {
        // SAFETY: an owned pool serves a class (O1, precondition).
        unsafe { (*self.0).class() }.expect("an owned pool serves a class")
    }

    /// Blocks out of the pool (to the program, on the owner's list, on the remote chain).
    ///
    /// # Safety
    /// The calling thread owns the pool.
    pub unsafe fn out(self) -> usize {
        // SAFETY: owned by the caller (precondition).
        unsafe { (*self.0).out() }
    }

    /// True while the pool is on the owner's filed list (`file`).
    ///
    /// # Safety
    /// The calling thread owns the pool.
    pub unsafe fn is_filed(self) -> bool {
        // SAFETY: owned by the caller (precondition).
        unsafe { (*self.0).is_filed() }
    }

    /// Files the pool full, when it is used up (its allocation list empty and `detach` gave
    /// nothing): its remote word becomes `FILED`, so the next remote free sends the owner a
    /// notice, and its owner word carries `FILED_ID`, so the owner's next free into it takes the
    /// slow step. False, with nothing done, when a remote free came meanwhile (`detach` takes it).
    /// `take_notices` runs between reading the word and filing: a pool is never filed while it
    /// is on the owner's notices (it would go there twice), and the Acquire read makes every
    /// notice that reached the word before visible to it.
    ///
    /// # Safety
    /// The calling thread owns the pool, which is used up and on no list; `take_notices` takes
    /// the owner's notices.
    pub unsafe fn file(self, take_notices: impl FnOnce()) -> bool {
        // SAFETY: owned by the caller (precondition).
        let p = unsafe { &*self.0 };
        // A notice being sent (the pool was `FILED`, and unfiled since) is waited out.
        let word = settled(&p.remote);
        if is_chain(word) {
            return false;
        }
        take_notices();
        // Release: a notice's sender reads the owner's id after it sees `FILED`.
        if word != FILED
            && p.remote
                .compare_exchange(0, FILED, Ordering::Release, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        let owner = p.owner.load(Ordering::Relaxed);
        p.owner.store(owner | FILED_ID, Ordering::Relaxed);
        true
    }

    /// Makes sure no notice is sent into the pool from now on, nor is being sent: a `FILED`
    /// word (a stale one: the pool is not filed) becomes an empty chain, and a notice being
    /// sent is waited out. Before the owner gives up a pool with blocks out, with its notices
    /// taken after (O5).
    ///
    /// # Safety
    /// The calling thread owns the pool, which is not filed.
    pub unsafe fn quiesce(self) {
        // SAFETY: owned by the caller (precondition).
        let remote = unsafe { &(*self.0).remote };
        while settled(remote) == FILED
            && remote
                .compare_exchange(FILED, 0, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {}
    }

    /// Takes the pool off the filed list's books (a free block came back to it): its owner word
    /// loses `FILED_ID`. Its remote word may stay `FILED`: a notice then comes to a pool that
    /// is not filed, and the owner passes over it.
    ///
    /// # Safety
    /// The calling thread owns the pool, which is filed.
    pub unsafe fn unfile(self) {
        // SAFETY: owned by the caller (precondition).
        let owner = unsafe { &(*self.0).owner };
        owner.store(owner.load(Ordering::Relaxed) & !FILED_ID, Ordering::Relaxed);
    }

    /// Free blocks of the pool, as a chain the owner allocates from (an end, `FreeBlock::is_end`,
    /// when the pool is full): the blocks freed locally alone when they hold `REUSE_FREED_BYTES`
    /// of its kind (a medium pool reuses its blocks before it touches new pages, as mimalloc
    /// extends a page only when its free list is used up); else the remote chain, if
    /// other threads freed any (its blocks stop counting as out; the local ones wait on the
    /// free list); else up to `carve` fresh blocks while the pool has room, in front of the
    /// blocks freed locally (a loop that frees its one block gets a long list, not a refill per
    /// block); once it has none, the blocks freed locally, then the remote chain. Remote frees
    /// come before fresh blocks: a pool that carved while its chain waited touched pages the
    /// program had no need of (at rptest's peak its 16 KiB classes had 2.3 times their live
    /// blocks out: on remote chains, or in flight between the threads). The chain's blocks stay
    /// free blocks of the pool: the owner counts each out as it hands it out (`note_alloc`).
    ///
    /// # Safety
    /// The calling thread owns the pool, and its allocation list is empty.
    pub unsafe fn detach(self) -> *mut FreeBlock {
        let pool = self.0;
        // SAFETY: owned by the caller (O1, precondition).
        unsafe {
            let p = &mut *pool;
            let local = p.freeblock;
            p.freeblock = chain_end(pool);
            let offset = p.next_offset();
            if offset <= p.maxnextoffset as usize {
                let class = p.class().expect("an owned pool serves a class");
                let size = class.block_size();
                // Carved blocks not out are on the free list (the allocation list is empty) —
                // but for those a forked child's gone threads held, still counted free: the
                // list itself must hold some.
                let freed_bytes = offset - POOL_OVERHEAD - p.out() * size;
                if freed_bytes >= REUSE_FREED_BYTES[class.kind() as usize]
                    && !FreeBlock::is_end(local)
                {
                    return local;
                }
                // (A thread that borrowed the chain to confirm a double free may have it: then
                // carve.)
                let remote = take_chain(pool);
                if remote.count > 0 {
                    p.set_out(p.out() - remote.count);
                    p.freeblock = local;
                    return remote.head;
                }
                let room = (p.maxnextoffset as usize + size - offset) / size;
                let count = room.min(class.carve_at(offset));
                let first = (pool as *mut u8).add(offset);
                let last = first.add((count - 1) * size);
                let key = link_key();
                let mut block = first;
                while block < last {
                    let next = block.add(size);
                    FreeBlock::set_next_with(block.cast(), next.cast(), key);
                    block = next;
                }
                FreeBlock::set_next_with(last.cast(), local, key);
                p.nextoffset
                    .store((offset + count * size) as u32, Ordering::Relaxed);
                return first.cast();
            }
            if !FreeBlock::is_end(local) {
                return local;
            }
            let remote = take_chain(pool);
            p.set_out(p.out() - remote.count);
            remote.head
        }
    }

    /// Puts a chain of its free blocks (the owner's unused allocation list) back on the free
    /// list.
    ///
    /// # Safety
    /// The calling thread owns the pool; the chain holds distinct free blocks of it that came
    /// from `detach` and were not handed out.
    pub unsafe fn give_back(self, head: *mut FreeBlock) {
        if FreeBlock::is_end(head) {
            return;
        }
        // SAFETY: owned by the caller; the chain is the caller's blocks of this pool.
        unsafe {
            let (_, last) = walk(head);
            let p = &mut *self.0;
            FreeBlock::set_next(last, p.freeblock);
            p.freeblock = head;
        }
    }

    /// Takes the remote chain onto the free list (what `collect` does for every owned pool).
    /// Returns the blocks out afterwards.
    ///
    /// # Safety
    /// The calling thread owns the pool.
    pub unsafe fn take_remote(self) -> usize {
        // SAFETY: owned by the caller (precondition).
        unsafe {
            let chain = take_chain(self.0);
            if chain.count > 0 {
                let (_, last) = walk(chain.head);
                let p = &mut *self.0;
                FreeBlock::set_next(last, p.freeblock);
                p.freeblock = chain.head;
                p.set_out(p.out() - chain.count);
            }
            self.out()
        }
    }

    /// True when `block` is on the pool's free list or its remote chain, which it first takes
    /// onto the free list: the owner's confirming walk of the double-free check (the owner
    /// walks its allocation list itself).
    ///
    /// # Safety
    /// The calling thread owns the pool; `block` lies in it.
    pub unsafe fn holds_free(self, block: *mut u8) -> bool {
        // SAFETY: owned by the caller (precondition): its lists are the caller's (O1, O2).
        unsafe {
            self.take_remote();
            FreeBlock::chain_holds((*self.0).freeblock, block.cast(), kind_of(self.0))
        }
    }

    /// Makes an empty pool the owner keeps serve `class`: as it is if it served `class` (every
    /// carved block on its free list), else fresh, nothing carved.
    ///
    /// # Safety
    /// The calling thread owns the pool, none of its blocks is out, and it is on no list.
    pub unsafe fn reuse(self, class: Class, owner: usize) {
        // SAFETY: owned by the caller (precondition).
        if !crate::tools::ENABLED && unsafe { (*self.0).class() } == Some(class) {
            return;
        }
        // SAFETY: forwarded precondition.
        unsafe { self.reformat(class, owner) }
    }

    /// Makes an empty pool the owner keeps carve afresh for `class`: its free list and any
    /// allocation list the owner held are dropped, in constant time (giving an allocation list
    /// back walks it). Blocks carved again for the class they served lie where they lay, so
    /// no page is touched that was not before.
    ///
    /// # Safety
    /// The calling thread owns the pool, none of its blocks is out, it is on no list, and the
    /// owner uses no block of its allocation list any more.
    pub unsafe fn reformat(self, class: Class, owner: usize) {
        let p = self.0;
        #[cfg(any(feature = "valgrind", feature = "asan"))]
        // SAFETY: the pool's block area is ours and empty (precondition).
        unsafe {
            crate::tools::mark_reusable(
                p.cast::<u8>().add(POOL_OVERHEAD),
                class.kind().pool_size() - POOL_OVERHEAD,
            )
        };
        // SAFETY: the pool is the caller's and empty; its atomics were written when it was
        // carved, so stores suffice (walks may read them).
        unsafe {
            debug_assert_eq!((*p).out(), 0);
            (*p).freeblock = chain_end(p);
            (*p).nextoffset
                .store(POOL_OVERHEAD as u32, Ordering::Relaxed);
            (*p).maxnextoffset = max_next_offset(class);
            (*p).class_tag
                .store(class.index() as u8 + 1, Ordering::Relaxed);
            (*p).owner.store(owner, Ordering::Relaxed);
        }
    }

    /// The next pool on the owner's list for the pool's class.
    ///
    /// # Safety
    /// The calling thread owns the pool.
    pub unsafe fn next(self) -> OwnedPool {
        // SAFETY: owned by the caller; its links are the owner's (O1).
        OwnedPool(unsafe { (*self.0).nextpool })
    }

    /// Links the pool in front of `head` on the owner's list; returns the new head.
    ///
    /// # Safety
    /// The calling thread owns the pool and every pool on the list from `head`; the pool is on
    /// no list.
    pub unsafe fn push_front(self, head: OwnedPool) -> OwnedPool {
        // SAFETY: the pools are the caller's (precondition).
        unsafe {
            (*self.0).prevpool = ptr::null_mut();
            (*self.0).nextpool = head.0;
            if !head.0.is_null() {
                (*head.0).prevpool = self.0;
            }
        }
        self
    }

    /// Unlinks the pool from the owner's list that starts at `head`; returns the new head.
    ///
    /// # Safety
    /// The calling thread owns the pool, which is on that list.
    pub unsafe fn unlink(self, head: OwnedPool) -> OwnedPool {
        // SAFETY: the pool and its neighbours are the caller's (precondition).
        unsafe {
            let p = &mut *self.0;
            let (prev, next) = (p.prevpool, p.nextpool);
            p.nextpool = ptr::null_mut();
            p.prevpool = ptr::null_mut();
            if !next.is_null() {
                (*next).prevpool = prev;
            }
            if prev.is_null() {
                OwnedPool(next)
            } else {
                (*prev).nextpool = next;
                head
            }
        }
    }
}
