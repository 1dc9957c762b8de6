//! Known bugs, compiled in only with the `planted-fault` feature and switched on at run time by
//! one loom model each, to show that the models catch a broken protocol:
//! - `ON`: handing an owned pool to the core reads the remote chain and then *stores*
//!   `CORE_HELD` over it, instead of swapping (O3). A remote free that lands between the two is
//!   lost: its block is never freed, its pool never empties, and its arena never goes back.
//!   `pool::hand_to_core` calls `swap_racily` while it is set.
//! - `UNCLAIMED_PURGE`: a purge pass gives pools back without claiming them — they stay on
//!   their arena's free bitmap while their pages go, so an allocation can take a pool whose
//!   pages are being decommitted (`arena::Arenas::begin_purge`).

use crate::layout::{PoolHeader, CORE_HELD};
use crate::sync::atomic::Ordering;
use crate::sync::unmodelled::AtomicBool;

/// Switches the bug on for this process. std's atomic even under loom: the test sets it before
/// the model runs (`sync::unmodelled`).
pub static ON: AtomicBool = AtomicBool::new(false);

/// Switches the unclaimed purge on for this process (std's atomic, as `ON`).
pub static UNCLAIMED_PURGE: AtomicBool = AtomicBool::new(false);

/// True while the unclaimed purge is switched on.
pub(crate) fn unclaimed_purge() -> bool {
    UNCLAIMED_PURGE.load(Ordering::Relaxed)
}

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
