//! The filed-pool models can fail: with the `UNWAITED_HANDOVER` bug switched on, handing a pool to
//! the core does not wait for a notice being sent (O5), so the sender writes the notices of a cache
//! that has given the pool up (after its thread exited, memory that may be gone). loom finds the
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
    use poolmalloc_core::__private::planted_fault::UNWAITED_HANDOVER;
    filed::planted(
        "planted_handover",
        &UNWAITED_HANDOVER,
        filed::exit_races_notice,
    )
}
