//! The models can fail: with the `planted-fault` bug switched on (a flush that republishes a full
//! pool on `usedpools` and drops the class lock before the block is back on the pool's free list),
//! a thread allocating in that gap finds a "used" pool with nothing free and carves past its end.
//! loom finds the interleaving; the invariant walk (or, in debug builds, an assertion) reports it.
//!
//! Without the test harness: `main` runs the model under `catch_unwind`, passes when the model
//! reports the bug, fails when every interleaving passes.

#[cfg(not(poolmalloc_loom))]
fn main() {}

#[cfg(poolmalloc_loom)]
fn main() {
    let caught = std::panic::catch_unwind(model::planted_fault_is_caught).is_err();
    if caught {
        println!("planted_fault: the planted bug was reported: 1 passed, 0 failed");
        std::process::exit(0);
    }
    println!("planted_fault: every interleaving passed with the bug planted: 0 passed, 1 failed");
    std::process::exit(1);
}

#[cfg(poolmalloc_loom)]
mod model {
    use std::sync::atomic::Ordering;

    use loom::sync::Arc;
    use loom::thread;
    use loom_tests::*;
    use poolmalloc_core::__private::planted_fault;
    use poolmalloc_core::{Core, MemPages};

    /// Class 31: three blocks per pool.
    const CLASS: usize = 31;

    pub fn planted_fault_is_caught() {
        planted_fault::ON.store(true, Ordering::Relaxed);
        model("planted_fault", || {
            let core = Arc::new(Core::new(MemPages::new(2)));
            let c = class(CLASS);
            let batch = core.take_batch(c, 3);
            assert_eq!(batch.count, 3);
            let full = batch.head;
            // SAFETY: the chain holds three blocks; keep the other two out.
            let rest = unsafe { (*full).next };
            let freer = core.clone();
            let first = full as usize;
            let t = thread::spawn(move || {
                // SAFETY: one block of `c`, out, given back once.
                unsafe { freer.give_batch(c, first as *mut _, 1) };
            });
            let p = core.alloc_block(c).unwrap().as_ptr();
            t.join().unwrap();
            core.check_invariants().unwrap_or_else(|v| panic!("{v}"));
            // SAFETY: each block is out and freed once.
            unsafe {
                core.free_block(p).unwrap();
                core.give_batch(c, rest, 2);
            }
            assert_quiescent(&core);
        });
    }
}
