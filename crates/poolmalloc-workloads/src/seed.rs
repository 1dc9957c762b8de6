//! The seed scenario: allocate 512·k one-byte objects, free 511 of each 512. The k survivors are
//! spread one per 512 objects, so in a pool allocator each pins a pool (or more) that is
//! otherwise empty: how much memory stays resident, and how many pools stay in use, is what this
//! measures. Then the survivors are freed and the allocator's trim runs. Run it in a fresh process.

use std::alloc::GlobalAlloc;

use crate::blocks::{alloc_tagged, check_and_free, check_and_free_all, tag, Block, Result};
use crate::rss::rss_bytes;

pub const GROUP: usize = 512;

/// Resident bytes at each step (absolute) and, where the allocator can tell, its pools in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeedReport {
    pub baseline: usize,
    pub peak: usize,
    /// After freeing 511 of each 512.
    pub held: usize,
    /// After freeing the survivors too, and the trim.
    pub after_trim: usize,
    /// Pools in use after freeing 511 of each 512 (poolmalloc only).
    pub pools_pinned: Option<usize>,
}

/// Checks: every object's tag (its one byte) when it is freed.
pub fn seed<A: GlobalAlloc + ?Sized>(
    a: &A,
    k: usize,
    pools_in_use: impl Fn() -> Option<usize>,
    trim: impl FnOnce(),
) -> Result<SeedReport> {
    let n = GROUP * k;
    let mut objects = Vec::with_capacity(n);
    let mut survivors = vec![Block::EMPTY; k];
    objects.resize(n, Block::EMPTY);
    let baseline = rss_bytes();
    for i in 0..n {
        match alloc_tagged(a, 1, tag(i as u64)) {
            Ok(b) => objects[i] = b,
            Err(e) => {
                check_and_free_all(a, objects[..i].iter().copied())?;
                return Err(e);
            }
        }
    }
    let peak = rss_bytes();
    for (i, &b) in objects.iter().enumerate() {
        if i % GROUP == 0 {
            survivors[i / GROUP] = b;
        } else {
            check_and_free(a, b)?;
        }
    }
    let held = rss_bytes();
    let pools_pinned = pools_in_use();
    check_and_free_all(a, survivors)?;
    trim();
    Ok(SeedReport {
        baseline,
        peak,
        held,
        after_trim: rss_bytes(),
        pools_pinned,
    })
}
