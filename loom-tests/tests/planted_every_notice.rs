//! The filed-pool models can fail: with the `EVERY_NOTICE` bug switched on, the owner takes a
//! notice for a pool it has unfiled since as if it were still filed, and unlinks it from the filed
//! list it is not on: the used list loses or repeats the pool. loom finds the interleaving.
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
    use poolmalloc_core::__private::planted_fault::EVERY_NOTICE;
    filed::planted(
        "planted_every_notice",
        &EVERY_NOTICE,
        filed::local_free_races_notice,
    )
}
