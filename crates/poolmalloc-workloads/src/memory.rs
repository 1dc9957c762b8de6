//! memory: does freed memory go back to the OS? `blocks` blocks of random size (8..=512:
//! `memory`; 513 B..=32 KiB: `memory-medium`) are allocated, then freed in random order; then a second round does the same; then the
//! allocator's own trim runs. The resident set size is read before, at the peak, right after the
//! first free, after the second round, and after the trim. Run it in a fresh process: what other
//! allocators (or earlier runs) left resident would otherwise count.

use std::alloc::GlobalAlloc;

use crate::blocks::{alloc_tagged, check_and_free, check_and_free_all, tag, Block, Result, Sizes};
use crate::rng::Rng;
use crate::rss::rss_bytes;

/// Resident bytes at each step (absolute; subtract `baseline` for what the workload holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    pub baseline: usize,
    pub peak: usize,
    pub after_free: usize,
    pub after_round2: usize,
    pub after_trim: usize,
    /// Bytes the program asked for at the peak.
    pub requested: usize,
}

/// `blocks` blocks of `sizes`. Checks: every block's tag when it is freed.
pub fn memory<A: GlobalAlloc + ?Sized>(
    a: &A,
    blocks: usize,
    sizes: Sizes,
    trim: impl FnOnce(),
) -> Result<MemoryReport> {
    let mut rng = Rng::new(0x3E30);
    let sizes = sizes.draw(&mut rng, blocks);
    let order = rng.permutation(blocks);
    // Written through now, so the bookkeeping is in the baseline.
    let mut live = vec![Block::EMPTY; blocks];
    let requested = sizes.iter().map(|&s| s as usize).sum();

    let round = |live: &mut Vec<Block>, salt: u64, peak: &mut usize| -> Result<()> {
        for (i, &size) in sizes.iter().enumerate() {
            match alloc_tagged(a, size as usize, tag(salt + i as u64)) {
                Ok(b) => live[i] = b,
                Err(e) => {
                    check_and_free_all(a, live[..i].iter().copied())?;
                    return Err(e);
                }
            }
        }
        *peak = rss_bytes();
        for &j in &order {
            check_and_free(a, live[j as usize])?;
        }
        Ok(())
    };

    let baseline = rss_bytes();
    let mut peak = 0;
    round(&mut live, 0, &mut peak)?;
    let after_free = rss_bytes();
    let mut peak2 = 0;
    round(&mut live, blocks as u64, &mut peak2)?;
    let after_round2 = rss_bytes();
    trim();
    let after_trim = rss_bytes();
    Ok(MemoryReport {
        baseline,
        peak: peak.max(peak2),
        after_free,
        after_round2,
        after_trim,
        requested,
    })
}

/// Resident bytes of the two-thread case (absolute; subtract `baseline`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TwoThreadReport {
    pub baseline: usize,
    pub peak: usize,
    pub after_free: usize,
}

/// memory-2t: the calling thread allocates `blocks` blocks of random size 8..=512 and stays
/// alive; a second thread frees every one of them, in random order, and exits; the resident set
/// is read before, at the peak and once the second thread is gone (no `trim`). Run it in a fresh
/// process, as `memory`. Checks: every block's tag when it is freed.
pub fn memory_two_threads<A: GlobalAlloc + Sync + ?Sized>(
    a: &A,
    blocks: usize,
) -> Result<TwoThreadReport> {
    let mut rng = Rng::new(0x3E31);
    let sizes = Sizes::SMALL.draw(&mut rng, blocks);
    let order = rng.permutation(blocks);
    // Written through now, so the bookkeeping is in the baseline.
    let mut slots: Vec<Option<Block>> = (0..blocks).map(|_| None).collect();
    let baseline = rss_bytes();
    for (i, &size) in sizes.iter().enumerate() {
        match alloc_tagged(a, size as usize, tag(i as u64)) {
            Ok(b) => slots[i] = Some(b),
            Err(e) => {
                check_and_free_all(a, slots.iter_mut().filter_map(Option::take))?;
                return Err(e);
            }
        }
    }
    let peak = rss_bytes();
    std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            for &j in &order {
                if let Some(b) = slots[j as usize].take() {
                    check_and_free(a, b)?;
                }
            }
            Ok(())
        })
        .join()
        .expect("the freeing thread does not panic")
    })?;
    let after_free = rss_bytes();
    Ok(TwoThreadReport {
        baseline,
        peak,
        after_free,
    })
}
