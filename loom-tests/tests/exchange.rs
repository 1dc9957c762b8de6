//! Two owners free into each other's pools while both allocate: each thread allocates a block
//! from a pool of its own, publishes it, takes the block the other published (if it is there
//! yet) and frees it — a remote push onto the other's pool, or, once the other has exited and
//! abandoned that pool to the core, an adoption by the free, or a local free into the pool this
//! side's allocation adopted — then allocates again (the block the other freed, if it is on
//! this side's remote chain by then: a pool's remote frees come before a fresh block) and exits
//! with its own
//! published block maybe still out. The main thread frees what is left. Every block is handed
//! out once, every arena is still mapped while a block of it is out, and everything ends
//! quiescent.
#![cfg(poolmalloc_loom)]

use loom::sync::atomic::{AtomicUsize, Ordering};
use loom::sync::Arc;
use loom::thread;
use loom_tests::*;
use poolmalloc::internal::ThreadCache;
use poolmalloc_core::{Core, MemPages};

/// Class 47: 384-byte blocks, two per 1 KiB pool, carved one at a time.
const CLASS: usize = 47;

static SEEN: Seen = Seen::new();
const PUSHED: usize = 0;
const ADOPTED: usize = 1;
const NOT_YET_THERE: usize = 2;
const LEFT_FOR_MAIN: usize = 3;
const ADOPTED_BY_ALLOCATION: usize = 4;
const REUSED: usize = 5;

/// One side: `id` stamps its blocks; publishes into `mine`, takes from `theirs`.
fn side(core: &TestCore, id: u64, mine: &AtomicUsize, theirs: &AtomicUsize) {
    let c = class(CLASS);
    let cache = ThreadCache::new();
    cache.activate();
    let a = take(&cache, core, c);
    stamp(a, id);
    // Release: the stamp is written before the block is published. A swap, not a store: loom
    // orders a plain store after a concurrent read-modify-write of the same atomic only loosely,
    // and would let the main thread's swap below read the other side's earlier swap instead.
    let was = mine.swap(a as usize, Ordering::Release);
    assert_eq!(was, 0);
    match theirs.swap(0, Ordering::Acquire) {
        0 => SEEN.mark(NOT_YET_THERE),
        b => {
            let b = b as *mut u8;
            check_held(core, b, 3 - id);
            // SAFETY: a block of this core the other side published and gave up; taken from
            // the slot by this swap alone, so freed once.
            match unsafe { free(core, &cache, b) } {
                Freed::Pushed => SEEN.mark(PUSHED),
                Freed::Adopted => SEEN.mark(ADOPTED),
                // The other side exited first, and this side's allocation adopted its pool.
                Freed::Local | Freed::Emptied => SEEN.mark(ADOPTED_BY_ALLOCATION),
                how @ (Freed::Core | Freed::Unfiled) => {
                    panic!("a thread with a cache freed the other side's block as {how:?}")
                }
            }
        }
    }
    let again = take(&cache, core, c);
    if again == a {
        // The other side took it and freed it onto this pool's remote chain, which comes
        // before a fresh block: never while it is still published (the other side takes it
        // from the slot before it frees it).
        assert_eq!(
            mine.load(Ordering::Acquire),
            0,
            "a published block handed out again"
        );
        SEEN.mark(REUSED);
    }
    stamp(again, 10 + id);
    check_held(core, again, 10 + id);
    // SAFETY: a block this thread took and frees once.
    unsafe { free(core, &cache, again) };
    cache.retire(core);
}

#[test]
fn two_owners_free_into_each_others_pools() {
    model("exchange", || {
        let core = Arc::new(Core::new(MemPages::new(2)));
        let slots = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let (other_core, other_slots) = (core.clone(), slots.clone());
        let other = thread::spawn(move || side(&other_core, 2, &other_slots[1], &other_slots[0]));
        side(&core, 1, &slots[0], &slots[1]);
        other.join().unwrap();
        // What neither side took: out of a pool its owner abandoned at exit.
        let cache = ThreadCache::new();
        cache.activate();
        for (i, slot) in slots.iter().enumerate() {
            let p = slot.swap(0, Ordering::Acquire);
            if p != 0 {
                SEEN.mark(LEFT_FOR_MAIN);
                check_held(&core, p as *mut u8, i as u64 + 1);
                // SAFETY: a block of this core published and never taken: out, freed once.
                unsafe { free(&core, &cache, p as *mut u8) };
            }
        }
        cache.retire(&core);
        assert_quiescent(&core);
    });
    SEEN.require(
        "exchange",
        &[
            "a free pushed onto the other's pool",
            "a free adopting the pool the other abandoned",
            "the other's block not yet published",
            "a block left for the main thread",
            "the other's pool adopted by an allocation, its block then freed locally",
            "a block the other freed handed out again, before a fresh one",
        ],
    );
}
