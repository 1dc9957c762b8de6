//! The filed-pool models can fail: with the `UNWAITED_HANDOVER` bug switched on, handing a pool to the core does not wait for a notice being sent (O5), so the sender writes the notices of a cache that has given the pool up (after its thread
//! exited, memory that may be gone). loom finds the
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
    poolmalloc_core::__private::planted_fault::UNWAITED_HANDOVER.store(true, Ordering::Relaxed);
    loom_tests::expect_planted_fault("planted_handover", &REPORTS, || {
        filed::exit_races_notice(&SEEN)
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
