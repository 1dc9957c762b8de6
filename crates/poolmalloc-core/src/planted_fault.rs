//! A known bug, compiled in only with the `planted-fault` feature and switched on at run time by
//! one loom model, to show that the models catch a broken ownership protocol: handing an owned
//! pool to the core reads the remote chain and then *stores* `CORE_HELD` over it, instead of
//! swapping (O3). A remote free that lands between the two is lost: its block is never freed, its
//! pool never empties, and its arena never goes back. `pool::hand_to_core` calls it while `ON`
//! is set.

use crate::layout::{PoolHeader, CORE_HELD};
use crate::sync::atomic::Ordering;
use crate::sync::unmodelled::AtomicBool;

/// Switches the bug on for this process. std's atomic even under loom: the test sets it before
/// the model runs (`sync::unmodelled`).
pub static ON: AtomicBool = AtomicBool::new(false);

/// The broken swap: a load, then a store.
///
/// # Safety
/// As for `pool::hand_to_core`: the caller owns the pool and holds its class lock.
pub(crate) unsafe fn swap_racily(pool: *mut PoolHeader) -> usize {
    // SAFETY: the header is mapped while the caller holds the pool (precondition).
    unsafe {
        let head = (*pool).remote.load(Ordering::Acquire);
        (*pool).remote.store(CORE_HELD, Ordering::Release);
        head
    }
}
