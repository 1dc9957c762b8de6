//! The models can fail: with the `planted-fault` bug switched on, handing an owned pool to the
//! core reads its remote chain and then *stores* `CORE_HELD` over it instead of swapping (O3). A
//! remote free that lands between the load and the store is lost: its block is never freed, so
//! once every block is freed and every cache retired the pool still counts a block out and its
//! arena is not released. loom finds the interleaving; the count of blocks out at the end
//! reports it.
//!
//! The model is `thread_exit`'s second: the owner drains its cache (gives every pool to the core)
//! and allocates again while a thread without a cache frees one of its blocks into its pool.
//!
//! Without the test harness: `main` runs the model under `catch_unwind`, passes when the model
//! reports the bug, fails when every interleaving passes. (With the harness, its final
//! `take_hook` blocks on the panic-hook lock that loom's aborted execution leaves taken, so
//! `#[should_panic]` would hang.)

#[cfg(not(poolmalloc_loom))]
fn main() {}

#[cfg(poolmalloc_loom)]
fn main() {
    loom_tests::expect_planted_fault(
        "planted_fault",
        &model::REPORTS,
        model::planted_fault_is_caught,
    )
}

#[cfg(poolmalloc_loom)]
mod model {
    use std::sync::atomic::Ordering;

    use loom::sync::Arc;
    use loom::thread;
    use loom_tests::*;
    use poolmalloc::internal::ThreadCache;
    use poolmalloc_core::__private::planted_fault;
    use poolmalloc_core::{Core, MemPages};

    /// Class 31: three blocks per pool.
    const CLASS: usize = 31;

    /// How the lost block shows: as a block still out at the end; or, first, as a broken
    /// invariant (loom orders the planted plain store of `CORE_HELD` only loosely against the
    /// push's compare-and-swap, so a walk may read the pushed block in the chain instead).
    pub const REPORTS: [&str; 3] = [
        "a remote free was lost",
        "blocks still out",
        "invariant broken",
    ];

    pub fn planted_fault_is_caught() {
        planted_fault::ON.store(true, Ordering::Relaxed);
        model("planted_fault", || {
            let core = Arc::new(Core::new(MemPages::new(2)));
            let c = class(CLASS);
            let cache = ThreadCache::new();
            cache.activate();
            let given = take(&cache, &core, c);
            let kept = take(&cache, &core, c);
            stamp(given, 1);
            let addr = given as usize;
            let freer_core = core.clone();
            let freer = thread::spawn(move || {
                let p = addr as *mut u8;
                check_held(&freer_core, p, 1);
                // SAFETY: a block of this core, out, handed to this thread and freed once.
                unsafe { free_uncached(&freer_core, p) };
            });
            // The owner gives its pool to the core, racing the free above, and allocates again.
            cache.drain(&core);
            let again = take(&cache, &core, c);
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, kept) };
            freer.join().unwrap();
            // SAFETY: a block this thread took and frees once.
            unsafe { free(&core, &cache, again) };
            cache.retire(&core);
            // Every block is freed and every pool given back, remote chains taken in.
            let out = class_snapshot(&core, c).blocks_out;
            assert_eq!(out, 0, "a remote free was lost: {out} blocks still out");
            assert_quiescent(&core);
        });
    }
}
