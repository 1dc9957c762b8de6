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
    std::panic::set_hook(Box::new(|info| {
        eprintln!("planted_purge: the model panicked: {info}")
    }));
    static SEEN: loom_tests::Seen = loom_tests::Seen::new();
    poolmalloc_core::__private::planted_fault::UNCLAIMED_PURGE.store(true, Ordering::Relaxed);
    let Err(panic) = std::panic::catch_unwind(|| purge::purge_racing_an_allocation(&SEEN)) else {
        println!(
            "planted_purge: every interleaving passed with the bug planted: 0 passed, 1 failed"
        );
        std::process::exit(1);
    };
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("");
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
    if REPORTS.iter().any(|r| message.contains(r)) {
        println!("planted_purge: the planted bug was reported: 1 passed, 0 failed");
        std::process::exit(0);
    }
    println!("planted_purge: the model failed, but not with the bug's report ({message}): 0 passed, 1 failed");
    std::process::exit(1);
}
