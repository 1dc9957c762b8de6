//! Model 1: remote frees racing the owner's refills. The owner fills a pool; another thread frees
//! both blocks (pushes onto the pool's remote chain: the owner owns it, filed full or not) while
//! the owner allocates two more: each refill swaps the remote chain out (O2), or finds the pool
//! used up and files it, and a free into the filed pool sends the owner a notice (O5). No block
//! is lost (everything freed and retired: quiescent) and none is handed out twice (stamps).
#![cfg(poolmalloc_loom)]

use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::config::NB_SMALL_SIZE_CLASSES;
use poolmalloc_core::{Core, MemPages, OwnedPool};

/// Class 47: 384-byte blocks, two per 1 KiB pool, carved one at a time.
const CLASS: usize = 47;
/// The second medium class: 768-byte blocks, two per 2 KiB medium pool, carved one at a time.
const MEDIUM_CLASS: usize = NB_SMALL_SIZE_CLASSES + 1;

static SEEN: Seen = Seen::new();
static MEDIUM_SEEN: Seen = Seen::new();
const PUSHED: usize = 0;
const REUSED: usize = 1;
const FRESH_POOL: usize = 2;

#[test]
fn remote_push_races_the_owners_swap() {
    remote_push_race("cross_thread", &SEEN, CLASS);
}

/// The same race on a medium pool (`Kind::Medium`: 2 KiB pools in the loom geometry), whose
/// pool the front end finds with the medium mask and the registry's kind: the protocol is the
/// same, per pool.
#[test]
fn remote_push_races_the_owners_swap_on_a_medium_pool() {
    remote_push_race("cross_thread/medium", &MEDIUM_SEEN, MEDIUM_CLASS);
}

fn remote_push_race(name: &'static str, seen: &'static Seen, index: usize) {
    model(name, move || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(index);
        let kind = c.kind();
        assert_eq!((c.blocks_per_pool(), c.carve()), (2, 1));
        let cache = ThreadCache::new();
        cache.activate();
        let given = [take(&cache, &core, c), take(&cache, &core, c)];
        let pool = OwnedPool::of(given[0], kind);
        assert_eq!(
            OwnedPool::of(given[1], kind),
            pool,
            "both blocks fill one pool"
        );
        for &p in &given {
            stamp(p, 1);
        }
        let addrs = given.map(|p| p as usize);

        let freer_core = core.clone();
        let freer = thread::spawn(move || {
            let cache = ThreadCache::new();
            cache.activate();
            for p in addrs {
                let p = p as *mut u8;
                check_held(&freer_core, p, 1);
                // SAFETY: a block of this core, out, handed to this thread and freed once.
                match unsafe { free(&freer_core, &cache, p) } {
                    Freed::Pushed => seen.mark(PUSHED),
                    other => panic!("a block of a pool its owner keeps freed as {other:?}"),
                }
            }
            cache.retire(&freer_core);
        });

        // The owner keeps allocating: its pool is full, so each refill takes back the remote
        // chain, or hands the used-up pool to the core and moves on.
        let mine = [take(&cache, &core, c), take(&cache, &core, c)];
        assert_ne!(mine[0], mine[1], "the owner was handed one block twice");
        for (i, &p) in mine.iter().enumerate() {
            stamp(p, 2 + i as u64);
            if addrs.contains(&(p as usize)) {
                seen.mark(REUSED);
            }
            if OwnedPool::of(p, kind) != pool {
                seen.mark(FRESH_POOL);
            }
        }
        freer.join().unwrap();
        for (i, &p) in mine.iter().enumerate() {
            check_held(&core, p, 2 + i as u64);
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, p) };
        }
        cache.retire(&core);
        assert_quiescent(&core);
    });
    seen.require(
        name,
        &[
            "remote push",
            "a remote-freed block handed out again",
            "a fresh pool",
        ],
    );
}

static TWO_SEEN: Seen = Seen::new();
const BOTH_PUSHED: usize = 0;
const BOTH_TAKEN_BACK: usize = 1;

/// Two threads without a cache free one block each into the owner's full pool at once (two
/// pushes onto one chain, each compare-and-swap retried past the other, the first into a filed
/// pool sending the notice while the other waits) while the owner refills: its swap takes the
/// chain with none, one or both blocks on it, or finds the pool used up and files it. The pool
/// stays the owner's throughout: both frees are pushes.
#[test]
fn two_remote_pushes_race_the_owners_swap() {
    model("cross_thread/two_freers", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let c = class(CLASS);
        let cache = ThreadCache::new();
        cache.activate();
        let given = [take(&cache, &core, c), take(&cache, &core, c)];
        let freers: Vec<_> = given
            .iter()
            .map(|&p| {
                stamp(p, 1);
                let addr = p as usize;
                let core = core.clone();
                thread::spawn(move || {
                    let p = addr as *mut u8;
                    check_held(&core, p, 1);
                    // SAFETY: a block of this core, out, handed to this thread and freed once.
                    unsafe { free_uncached(&core, p) }
                })
            })
            .collect();
        let mine = take(&cache, &core, c);
        stamp(mine, 2);
        let hows: Vec<Freed> = freers.into_iter().map(|t| t.join().unwrap()).collect();
        TWO_SEEN.mark(match hows[..] {
            [Freed::Pushed, Freed::Pushed] => BOTH_PUSHED,
            _ => panic!("a free into a pool its owner keeps not pushed: {hows:?}"),
        });
        // The refill took the chain with both blocks: one handed out, the other on the owner's
        // allocation list, handed out next.
        let next = take(&cache, &core, c);
        if given.contains(&mine) && given.contains(&next) {
            TWO_SEEN.mark(BOTH_TAKEN_BACK);
        }
        assert_ne!(next, mine, "a block handed out twice");
        stamp(next, 3);
        for (p, s) in [(mine, 2), (next, 3)] {
            check_held(&core, p, s);
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, p) };
        }
        cache.retire(&core);
        assert_quiescent(&core);
    });
    TWO_SEEN.require(
        "cross_thread/two_freers",
        &[
            "both frees pushed",
            "both pushed blocks taken back by one swap",
        ],
    );
}
