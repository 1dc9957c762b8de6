//! Known bugs, compiled in only with the `planted-fault` feature and switched on at run time by
//! one loom model each, to show that the models catch a broken protocol:
//! - `ON`: handing an owned pool to the core reads the remote chain and then *stores*
//!   `CORE_HELD` over it, instead of swapping (O3). A remote free that lands between the two is
//!   lost: its block is never freed, its pool never empties, and its arena never goes back.
//!   `pool::hand_to_core` calls `swap_racily` while it is set.
//! - `UNCLAIMED_PURGE`: a purge pass gives pools back without claiming them — they stay on
//!   their arena's free bitmap while their pages go, so an allocation can take a pool whose
//!   pages are being decommitted (`arena::Arenas::begin_purge`).
//! - `NO_NOTICE`: a remote free into a filed pool pushes its block as into any owned pool and
//!   sends the owner no notice: the owner never learns that the pool has a free block
//!   (`pool::push_chain`).
//! - `UNWAITED_HANDOVER`: handing an owned pool to the core does not wait for a notice being
//!   sent (O5): the sender then pushes onto the notices of a cache that gave the pool up
//!   (`pool::seize`).
//! - `EVERY_NOTICE`: the owner takes a notice for a pool it has unfiled since as if it were
//!   still filed (`Notices::take`), and moves it off a list it is not on.

use crate::layout::{PoolHeader, CORE_HELD};
use crate::sync::atomic::Ordering;
use crate::sync::unmodelled::AtomicBool;

/// Switches the bug on for this process. std's atomic even under loom: the test sets it before
/// the model runs (`sync::unmodelled`).
pub static ON: AtomicBool = AtomicBool::new(false);

/// Switches the unclaimed purge on for this process (std's atomic, as `ON`).
pub static UNCLAIMED_PURGE: AtomicBool = AtomicBool::new(false);

/// Switches the notice left out on (std's atomic, as `ON`).
pub static NO_NOTICE: AtomicBool = AtomicBool::new(false);

/// Switches the handover that does not wait for a notice on (std's atomic, as `ON`).
pub static UNWAITED_HANDOVER: AtomicBool = AtomicBool::new(false);

/// Switches the notice taken for an unfiled pool on (std's atomic, as `ON`).
pub static EVERY_NOTICE: AtomicBool = AtomicBool::new(false);

/// True while `switch` is on.
pub(crate) fn on(switch: &AtomicBool) -> bool {
    switch.load(Ordering::Relaxed)
}

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
