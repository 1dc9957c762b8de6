//! memory: does freed memory go back to the OS? `blocks` blocks of random size (8..=512:
//! `memory`; 513 B..=32 KiB: `memory-medium`) are allocated, then freed in random order; then a second round does the same; then the
//! allocator's own trim runs. The resident set size is read before, at the peak, right after the
//! first free, after the second round, and after the trim. Run it in a fresh process: what other
//! allocators (or earlier runs) left resident would otherwise count.
//!
//! Between the first free and the second round, the process makes no allocator call and polls
//! its resident set ([`time_to_release`]): how long after its last free the allocator took to
//! give the memory back (an allocator that returns empty pages from a background thread, after
//! a delay, does it then; one that returns them only from its own calls never does).

use std::alloc::GlobalAlloc;
use std::time::{Duration, Instant};

use crate::blocks::{alloc_tagged, check_and_free, check_and_free_all, tag, Block, Result, Sizes};
use crate::rng::Rng;
use crate::rss::rss_bytes;

/// How often [`time_to_release`] reads the resident set.
pub const POLL: Duration = Duration::from_millis(5);
/// memory and memory-medium count their memory as given back when what is resident above the
/// baseline is at most this percentage of the peak's.
pub const RELEASED_PERCENT: usize = 1;
/// The same for memory-2t, whose second thread's stack and cache are gone by then too.
pub const RELEASED_PERCENT_2T: usize = 2;

/// Waits, calling no allocator, until the resident set above `baseline` is at most `percent` %
/// of `peak`'s above it, reading it every [`POLL`] for up to `limit` after `freed`. Returns the
/// time from `freed` to the first read that found it so, or `None` (not within `limit`).
pub fn time_to_release(
    freed: Instant,
    baseline: usize,
    peak: usize,
    percent: usize,
    limit: Duration,
) -> Option<Duration> {
    let allowed = peak.saturating_sub(baseline) / 100 * percent;
    loop {
        let held = rss_bytes().saturating_sub(baseline);
        let elapsed = freed.elapsed();
        if held <= allowed {
            return Some(elapsed);
        }
        if elapsed >= limit {
            return None;
        }
        // Sleeping allocates nothing.
        std::thread::sleep(POLL.min(limit - elapsed));
    }
}

/// Resident bytes at each step (absolute; subtract `baseline` for what the workload holds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    pub baseline: usize,
    pub peak: usize,
    pub after_free: usize,
    /// From the first round's last free until the memory was given back ([`time_to_release`],
    /// [`RELEASED_PERCENT`] of the first round's peak); `None`: not within the limit.
    pub released: Option<Duration>,
    pub after_round2: usize,
    pub after_trim: usize,
    /// Bytes the program asked for at the peak.
    pub requested: usize,
}

/// `blocks` blocks of `sizes`; `release_limit`: how long to wait for the memory to be given
/// back after the first round. Checks: every block's tag when it is freed.
pub fn memory<A: GlobalAlloc + ?Sized>(
    a: &A,
    blocks: usize,
    sizes: Sizes,
    release_limit: Duration,
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
    let freed = Instant::now();
    let after_free = rss_bytes();
    let released = time_to_release(freed, baseline, peak, RELEASED_PERCENT, release_limit);
    let mut peak2 = 0;
    round(&mut live, blocks as u64, &mut peak2)?;
    let after_round2 = rss_bytes();
    trim();
    let after_trim = rss_bytes();
    Ok(MemoryReport {
        baseline,
        peak: peak.max(peak2),
        after_free,
        released,
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
    /// From the second thread's last free until the memory was given back
    /// ([`RELEASED_PERCENT_2T`] of the peak); `None`: not within the limit.
    pub released: Option<Duration>,
}

/// memory-2t: the calling thread allocates `blocks` blocks of random size 8..=512 and stays
/// alive; a second thread frees every one of them, in random order, and exits; the resident set
/// is read before, at the peak and once the second thread is gone (no `trim`), then polled for
/// up to `release_limit` as `memory` does. Run it in a fresh process, as `memory`. Checks: every
/// block's tag when it is freed.
pub fn memory_two_threads<A: GlobalAlloc + Sync + ?Sized>(
    a: &A,
    blocks: usize,
    release_limit: Duration,
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
    let freed = std::thread::scope(|s| {
        s.spawn(|| -> Result<Instant> {
            for &j in &order {
                if let Some(b) = slots[j as usize].take() {
                    check_and_free(a, b)?;
                }
            }
            Ok(Instant::now())
        })
        .join()
        .expect("the freeing thread does not panic")
    })?;
    let after_free = rss_bytes();
    let released = time_to_release(freed, baseline, peak, RELEASED_PERCENT_2T, release_limit);
    Ok(TwoThreadReport {
        baseline,
        peak,
        after_free,
        released,
    })
}
