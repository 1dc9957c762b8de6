//! Full pools stay with their owner (O5): a used-up pool is *filed* on its owner's lists, and
//! the first remote free into it sends the owner a notice (`Notices`), so the pool comes back
//! into use without ever leaving its thread.
//! - `notice_reaches_owner`: a remote free into a filed pool races the owner's allocations;
//!   once it is done, the owner's next pools include the filed one (planted: `NO_NOTICE`).
//! - `local_free_races_notice`: the owner frees into its filed pool (a local free that unfiles
//!   it) while another thread's free sends the notice; both blocks come back to the owner
//!   once each, and the notice for the pool unfiled meanwhile is passed over (planted:
//!   `EVERY_NOTICE`).
//! - `exit_races_notice`: the owner exits while a free sends the notice; the hand-over waits
//!   for it, so the block is taken in, nothing is lost, and no notice reaches the cache once it
//!   has given its pools up (planted: `UNWAITED_HANDOVER`).
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, Kind, MemPages, OwnedPool};

/// Class 31: 256-byte blocks, three per 1 KiB pool, carved one at a time.
const CLASS: usize = 31;

pub const NOTICE_BEFORE: usize = 0;
pub const NOTICE_AFTER: usize = 1;

/// Each model's start: a new core, and `cache`, activated, with its first pool filed: that
/// pool's three blocks, and the first block of the next pool. (The cache is the caller's: its
/// id is its address.)
fn filed_pool(cache: &ThreadCache) -> (Arc<TestCore>, [*mut u8; 3], *mut u8) {
    let core = Arc::new(Core::new(MemPages::new(2)));
    cache.activate();
    let c = class(CLASS);
    assert_eq!((c.blocks_per_pool(), c.carve()), (3, 1));
    let p = [0, 1, 2].map(|i| {
        let b = take(cache, &core, c);
        stamp(b, i + 1);
        b
    });
    let q = take(cache, &core, c);
    stamp(q, 9);
    assert_eq!(
        class_snapshot(&core, c).pools_full,
        1,
        "a used-up pool is filed"
    );
    (core, p, q)
}

fn pool(b: *mut u8) -> OwnedPool {
    OwnedPool::of(b, Kind::Small)
}

pub fn notice_reaches_owner(seen: &'static Seen) {
    model("filed/notice", move || {
        let cache = ThreadCache::new();
        let (core, p, q) = filed_pool(&cache);
        let c = class(CLASS);
        let filed = pool(p[0]);
        let addr = p[0] as usize;
        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            let b = addr as *mut u8;
            check_held(&freer_core, b, 1);
            // SAFETY: a block of this core, out, handed to this thread and freed once.
            let how = unsafe { free(&freer_core, &cache, b) };
            assert_eq!(how, Freed::Pushed, "a filed pool is its owner's");
            cache.retire(&freer_core);
        });
        // The owner uses its second pool up and takes a third: the filed one, if the notice
        // came in time.
        // The freer may go first: loom explores from there (the owner's reads of its notices,
        // empty, are loads, which loom does not go back to once the freer's push follows).
        thread::yield_now();
        let mut mine: Vec<*mut u8> = (0..3).map(|_| take(&cache, &core, c)).collect();
        freer.join().unwrap();
        if pool(mine[2]) == filed {
            seen.mark(NOTICE_BEFORE);
        } else {
            // The notice is in: once the current pool is used up, the filed one comes next.
            let back = (0..3).map(|_| take(&cache, &core, c)).find(|&b| {
                mine.push(b);
                pool(b) == filed
            });
            assert!(back.is_some(), "the notice never reached the owner");
            seen.mark(NOTICE_AFTER);
        }
        for (i, &b) in p.iter().enumerate().skip(1) {
            check_held(&core, b, i as u64 + 1);
        }
        for b in mine.into_iter().chain(p.into_iter().skip(1)).chain([q]) {
            // SAFETY: blocks this thread took, each freed once.
            unsafe { free(&core, &cache, b) };
        }
        cache.retire(&core);
        assert_quiescent(&core);
    });
}

pub fn local_free_races_notice(seen: &'static Seen) {
    model("filed/local", move || {
        let cache = ThreadCache::new();
        let (core, p, q) = filed_pool(&cache);
        let c = class(CLASS);
        let filed = pool(p[0]);
        let addr = p[0] as usize;
        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let b = addr as *mut u8;
            check_held(&freer_core, b, 1);
            // SAFETY: a block of this core, out, handed to this thread and freed once.
            let how = unsafe { free_uncached(&freer_core, b) };
            assert_eq!(how, Freed::Pushed, "a filed pool is its owner's");
        });
        thread::yield_now();
        check_held(&core, p[1], 2);
        // SAFETY: a block this thread took and frees once.
        let how = unsafe { free(&core, &cache, p[1]) };
        assert_eq!(how, Freed::Unfiled, "a local free unfiles its pool");
        freer.join().unwrap();
        // Both blocks come back to the owner, once each, once its current pool is used up.
        let mine: Vec<*mut u8> = (0..4).map(|_| take(&cache, &core, c)).collect();
        let back: Vec<_> = mine.iter().filter(|&&b| pool(b) == filed).collect();
        assert_eq!(back.len(), 2, "the filed pool's two free blocks come back");
        assert_ne!(back[0], back[1], "a block handed out twice");
        seen.mark(NOTICE_BEFORE);
        check_held(&core, p[2], 3);
        for b in mine.into_iter().chain([p[2], q]) {
            // SAFETY: blocks this thread took, each freed once.
            unsafe { free(&core, &cache, b) };
        }
        cache.retire(&core);
        assert_quiescent(&core);
    });
}

pub const PUSHED: usize = 0;
pub const THROUGH_CORE: usize = 1;

pub fn exit_races_notice(seen: &'static Seen) {
    model("filed/exit", move || {
        let cache = ThreadCache::new();
        let (core, p, q) = filed_pool(&cache);
        let addr = p[0] as usize;
        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let b = addr as *mut u8;
            check_held(&freer_core, b, 1);
            // SAFETY: a block of this core, out, handed to this thread and freed once.
            match unsafe { free_uncached(&freer_core, b) } {
                Freed::Pushed => seen.mark(PUSHED),
                Freed::Core => seen.mark(THROUGH_CORE),
                other => panic!("freed without a cache as {other:?}"),
            }
        });
        // The owner exits: its filed pool goes to the core, with whatever was freed into it.
        cache.retire(&core);
        freer.join().unwrap();
        assert!(
            !cache.notices_waiting(),
            "a notice reached a cache that had given up the pool"
        );
        for (i, &b) in p.iter().enumerate().skip(1) {
            check_held(&core, b, i as u64 + 1);
            // SAFETY: a block of this core, out, freed once.
            unsafe { free_uncached(&core, b) };
        }
        // SAFETY: as above.
        unsafe { free_uncached(&core, q) };
        let out = class_snapshot(&core, class(CLASS)).blocks_out;
        assert_eq!(out, 0, "a remote free was lost: {out} blocks still out");
        assert_quiescent(&core);
    });
}

/// How a bug planted in these models shows (the `planted_*` tests').
const PLANTED_REPORTS: [&str; 8] = [
    "never reached the owner",
    "blocks still out",
    "a remote free was lost",
    "handed out twice",
    "come back",
    "invariant broken",
    "reached a cache that had given up",
    // loom's own report of an atomic reached through a list the bug broke.
    "failed to get object for ref",
];

/// The whole `main` of a planted test: switches `bug` on and runs `model`, which must fail with
/// one of `PLANTED_REPORTS` (`expect_planted_fault`).
pub fn planted(name: &str, bug: &std::sync::atomic::AtomicBool, model: fn(&'static Seen)) -> ! {
    static SEEN: Seen = Seen::new();
    bug.store(true, std::sync::atomic::Ordering::Relaxed);
    expect_planted_fault(name, &PLANTED_REPORTS, || model(&SEEN))
}

#[test]
fn a_notice_reaches_the_owner() {
    static SEEN: Seen = Seen::new();
    notice_reaches_owner(&SEEN);
    SEEN.require(
        "filed/notice",
        &[
            "the notice before the owner's refill",
            "the notice after it",
        ],
    );
}

#[test]
fn a_local_free_races_a_notice() {
    static SEEN: Seen = Seen::new();
    local_free_races_notice(&SEEN);
    SEEN.require("filed/local", &["both blocks back"]);
}

#[test]
fn exit_races_a_notice() {
    static SEEN: Seen = Seen::new();
    exit_races_notice(&SEEN);
    SEEN.require(
        "filed/exit",
        &[
            "free pushed before the hand-over",
            "free under the class lock after it",
        ],
    );
}
