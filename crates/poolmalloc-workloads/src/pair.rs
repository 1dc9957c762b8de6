//! pair: allocate one block and free it again, in a loop, with `LIVE` other blocks live.
//!
//! The tightest loop an allocator sees: the thread cache (or tcache, or mimalloc's page free
//! list) serves the same block back and forth. One op = one alloc + one free.
//!
//! pair-alone is the same loop with no other block live: every free leaves the block's pool
//! (or page, or span) empty, so an allocator that gives an empty pool back at once pays for it
//! on every pair.

use std::alloc::GlobalAlloc;
use std::hint::black_box;
use std::time::Instant;

use crate::blocks::{alloc_tagged, check_and_free_all, layout_for, tag, Fault, Result};
use crate::Timing;

/// Blocks kept live around the loop (pair; pair-alone keeps none).
pub const LIVE: usize = 1024;

/// The sizes the compare table and the benches run.
pub const SIZES: [usize; 3] = [16, 64, 256];

/// `iters` alloc/free pairs of `size` bytes with `LIVE` tagged blocks of the same size live.
pub fn pair<A: GlobalAlloc + ?Sized>(a: &A, size: usize, iters: u64) -> Result<Timing> {
    pair_with_live(a, size, LIVE, iters)
}

/// `iters` alloc/free pairs of `size` bytes with `live_blocks` tagged blocks of the same size live
/// (`LIVE` for pair, 0 for pair-alone).
/// Checks: every block non-null and aligned, and the live blocks intact afterwards (the loop
/// writes its counter into each block it gets, so handing out a live block shows).
pub fn pair_with_live<A: GlobalAlloc + ?Sized>(
    a: &A,
    size: usize,
    live_blocks: usize,
    iters: u64,
) -> Result<Timing> {
    let layout = layout_for(size);
    let mut live = Vec::with_capacity(live_blocks);
    for i in 0..live_blocks {
        match alloc_tagged(a, size, tag(i as u64)) {
            Ok(b) => live.push(b),
            Err(e) => {
                check_and_free_all(a, live)?;
                return Err(e);
            }
        }
    }
    let align_mask = layout.align() - 1;
    let mut bad = 0usize;
    let start = Instant::now();
    for i in 0..iters {
        // SAFETY: `layout_for` never makes a zero-sized layout.
        let p = unsafe { a.alloc(black_box(layout)) };
        if p.is_null() || p as usize & align_mask != 0 {
            bad = p as usize | 1;
            break;
        }
        // SAFETY: `p` is a live block of at least 8 bytes (every pair size is), aligned to 8;
        // it is freed with the layout it was allocated with.
        unsafe {
            p.cast::<u64>().write(black_box(i));
            a.dealloc(black_box(p), layout);
        }
    }
    let elapsed = start.elapsed();
    check_and_free_all(a, live)?;
    if bad != 0 {
        return Err(Fault(format!(
            "pair {size}: allocator returned {:#x}, null or not aligned to {}",
            bad & !1,
            layout.align()
        )));
    }
    Ok(Timing {
        ops: iters,
        elapsed,
    })
}
