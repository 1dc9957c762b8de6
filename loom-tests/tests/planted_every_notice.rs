//! The filed-pool models can fail: with the `EVERY_NOTICE` bug switched on, the owner takes a notice for a pool it has unfiled since as if it were still filed, and unlinks it from the filed list it is not on: the used list loses or repeats the pool. loom finds the
//! interleaving.
//!
//! Without the test harness, as `planted_fault`: `main` runs the model under `catch_unwind`,
//! passes when the model reports the bug, fails when every interleaving passes.

#[cfg(not(poolmalloc_loom))]
fn main() {}

#[cfg(poolmalloc_loom)]
#[path = "filed.rs"]
#[allow(dead_code)]
mod filed;

#[cfg(poolmalloc_loom)]
fn main() {
    use std::sync::atomic::Ordering;
    static SEEN: loom_tests::Seen = loom_tests::Seen::new();
    poolmalloc_core::__private::planted_fault::EVERY_NOTICE.store(true, Ordering::Relaxed);
    loom_tests::expect_planted_fault("planted_every_notice", &REPORTS, || {
        filed::local_free_races_notice(&SEEN)
    })
}

/// How the bug shows.
#[cfg(poolmalloc_loom)]
const REPORTS: [&str; 8] = [
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
