//! Double frees by a thread that does not own the block's pool, racing the owner. The check
//! borrows the pool's remote chain whole and gives it back whole (O2, `pool::borrow_remote`);
//! while it holds the chain the owner may take the chain itself or hand the pool to the core.
//! Whatever the order: the second free never frees the block again (it is reported, or left
//! alone when only the owner's lists could confirm it), no block is lost and none is counted
//! twice (everything freed and retired: quiescent).
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, FreeErrorKind, Kind, MemPages, OwnedPool, RemoteFree};

/// Class 47: 384-byte blocks, two per 1 KiB pool, carved one at a time.
const CLASS: usize = 47;

type Outcomes = (Freed, Result<RemoteFree, FreeErrorKind>);

/// Fills a pool of `cache`'s (two blocks, the second kept) and starts a thread that frees the
/// first block twice (`free_twice`). The cache stays in the model's frame: moved around, its
/// few KiB overflow a loom thread's stack.
fn fill_and_free_twice(
    core: &Arc<TestCore>,
    cache: &ThreadCache,
) -> (*mut u8, thread::JoinHandle<Outcomes>) {
    let c = class(CLASS);
    cache.activate();
    let given = take(cache, core, c);
    let kept = take(cache, core, c);
    assert_eq!(
        OwnedPool::of(given, Kind::Small),
        OwnedPool::of(kept, Kind::Small)
    );
    stamp(given, 1);
    let addr = given as usize;
    let freer_core = core.clone();
    let freer = thread::spawn(move || free_twice(&freer_core, addr));
    (kept, freer)
}

/// The freeing thread: frees `block` (no cache: pushed, or under the class lock) and frees it
/// again, which must be refused or left alone. Returns both outcomes.
fn free_twice(core: &TestCore, block: usize) -> Outcomes {
    let p = block as *mut u8;
    check_held(core, p, 1);
    // SAFETY: a block of this core, out, handed to this thread and freed once.
    let first = unsafe { free_uncached(core, p) };
    // SAFETY: the misuse under test: the core validates before it changes anything.
    let second = unsafe { core.free_remote(p, Kind::Small, 0) }.map_err(|e| e.kind);
    (first, second)
}

static HAND_BACK_SEEN: Seen = Seen::new();
const FIRST_PUSHED: usize = 0;
const FIRST_UNDER_LOCK: usize = 1;

/// The owner hands its pool to the core (`drain`) while the other thread frees a block of it
/// twice. Before the hand-back the block is on the remote chain (the borrow finds it, and gives
/// the chain back to the core under the class lock if the hand-back came meanwhile); after it,
/// on the core-held pool's free list. Either way the second free is a reported double free.
#[test]
fn second_free_races_the_owners_hand_back() {
    model("double_free/hand_back", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let cache = ThreadCache::new();
        let (kept, freer) = fill_and_free_twice(&core, &cache);
        let c = class(CLASS);
        cache.drain(&core);
        let (first, second) = freer.join().unwrap();
        let kind = FreeErrorKind::DoubleFree { class: c };
        assert_eq!(second, Err(kind), "the second free was not refused");
        match first {
            Freed::Pushed => HAND_BACK_SEEN.mark(FIRST_PUSHED),
            Freed::Core => HAND_BACK_SEEN.mark(FIRST_UNDER_LOCK),
            other => panic!("a thread without a cache freed by {other:?}"),
        }
        assert_eq!(
            class_snapshot(&core, c).blocks_out,
            1,
            "freed twice, or lost"
        );
        // SAFETY: `kept` is out, given up once: its pool is the core's now.
        unsafe { free_uncached(&core, kept) };
        cache.retire(&core);
        assert_quiescent(&core);
    });
    HAND_BACK_SEEN.require(
        "double_free/hand_back",
        &["first free pushed", "first free under the lock"],
    );
}

static TAKE_SEEN: Seen = Seen::new();
const REPORTED: usize = 0;
const LEFT_ALONE: usize = 1;

/// The owner takes its pool's remote chain back (what `collect` and its own confirming walk do)
/// while the other thread frees a block of the pool twice. If the borrow comes first it finds
/// the block: reported. If the owner's swap comes first the block is on the owner's free list,
/// which only the owner may walk: the second free is left alone. Never both, never neither.
#[test]
fn second_free_races_the_owner_taking_its_chain() {
    model("double_free/take_back", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let cache = ThreadCache::new();
        let (kept, freer) = fill_and_free_twice(&core, &cache);
        let c = class(CLASS);
        let pool = OwnedPool::of(kept, Kind::Small);
        // The freer may go first: loom explores from there (the owner's take is a load while
        // the chain is empty, which loom does not go back to once the freer's pushes follow).
        thread::yield_now();
        // SAFETY: this thread owns the pool.
        unsafe { pool.take_remote() };
        let (_, second) = freer.join().unwrap();
        match second {
            Err(FreeErrorKind::DoubleFree { .. }) => TAKE_SEEN.mark(REPORTED),
            Ok(RemoteFree::LeftAlone) => TAKE_SEEN.mark(LEFT_ALONE),
            other => panic!("the second free went through: {other:?}"),
        }
        // Whichever it was, the block is free exactly once: one block out, `kept`.
        // SAFETY: this thread owns the pool.
        unsafe { pool.take_remote() };
        assert_eq!(class_snapshot(&core, c).blocks_out, 1);
        // SAFETY: `kept` is out and this thread's to free.
        unsafe { free(&core, &cache, kept) };
        cache.retire(&core);
        assert_quiescent(&core);
    });
    TAKE_SEEN.require("double_free/take_back", &["reported", "left alone"]);
}
