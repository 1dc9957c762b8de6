//! The filed-pool models can fail: with the `NO_NOTICE` bug switched on, a remote free into a filed
//! pool sends the owner no notice, so the owner never learns that the pool has a free block; it
//! takes a new pool instead, and the model's check that the filed pool comes back fails. loom finds
//! the interleaving.
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
    use poolmalloc_core::__private::planted_fault::NO_NOTICE;
    filed::planted("planted_notice", &NO_NOTICE, filed::notice_reaches_owner)
}
