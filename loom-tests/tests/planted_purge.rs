//! The purge model can fail: with the `UNCLAIMED_PURGE` bug switched on, a pass decommits the
//! pools it gives back while they stay on their arena's free bitmap, so the allocation of
//! `purge`'s model can take a pool whose pages the pass then zeroes: the block loses its stamp,
//! or the pool its header, or a pool in use is marked decommitted. loom finds the interleaving.
//!
//! Without the test harness, as `planted_fault`: `main` runs the model under `catch_unwind`,
//! passes when the model reports the bug, fails when every interleaving passes.

#[cfg(not(poolmalloc_loom))]
fn main() {}

#[cfg(poolmalloc_loom)]
#[path = "purge.rs"]
#[allow(dead_code)]
mod purge;

#[cfg(poolmalloc_loom)]
fn main() {
    use std::sync::atomic::Ordering;
    static SEEN: loom_tests::Seen = loom_tests::Seen::new();
    poolmalloc_core::__private::planted_fault::UNCLAIMED_PURGE.store(true, Ordering::Relaxed);
    // How a pool taken while its pages went shows: the block's stamp gone (`check_held`), a
    // pool in use marked decommitted or otherwise broken books (`check_invariants`), a pool
    // whose zeroed header no longer names its owner (its free is refused, its links leave it),
    // or a pool resumed as it was whose header's atomics the zeroing destroyed (loom's own
    // report of an atomic it no longer knows).
    const REPORTS: [&str; 8] = [
        "failed to get object for ref",
        "handed out twice",
        "A2:",
        "P2:",
        "P4:",
        "refused",
        "link left its pool",
        "blocks still out",
    ];
    loom_tests::expect_planted_fault("planted_purge", &REPORTS, || {
        purge::purge_racing_an_allocation(&SEEN)
    })
}
