//! churn: allocate `blocks` blocks of random size (8..=512: `churn`; 513 B..=32 KiB: `medium`),
//! free them in random order, repeat; on one thread or on several at once (each with its own
//! blocks).
//!
//! Sizes spread over every size class and the random free order scatter frees across pools, so
//! this measures the batch refill / flush paths and the core, not only the thread cache.
//! One op = one alloc + one free; with several threads the time is wall time over all threads' ops.

use std::alloc::GlobalAlloc;
use std::sync::Barrier;
use std::time::Instant;

use crate::blocks::{alloc_tagged, check_and_free, check_and_free_all, tag, Block, Result, Sizes};
use crate::rng::Rng;
use crate::Timing;

/// Blocks live at the peak of each round, per thread, of the small sizes (about 26 MB).
pub const BLOCKS: usize = 100_000;
/// The same for the medium sizes: about 66 MB.
pub const MEDIUM_BLOCKS: usize = 4_000;

/// One thread's requests: sizes in allocation order and the order of the frees.
struct Plan {
    sizes: Vec<u16>,
    order: Vec<u32>,
}

impl Plan {
    fn new(blocks: usize, sizes: Sizes, seed: u64) -> Plan {
        let mut rng = Rng::new(seed);
        let sizes = sizes.draw(&mut rng, blocks);
        Plan {
            sizes,
            order: rng.permutation(blocks),
        }
    }
}

/// One round: allocate every block of the plan, then free them in the plan's order.
fn round<A: GlobalAlloc + ?Sized>(a: &A, plan: &Plan, live: &mut [Block], salt: u64) -> Result<()> {
    for (i, (&size, slot)) in plan.sizes.iter().zip(live.iter_mut()).enumerate() {
        match alloc_tagged(a, size as usize, tag(salt + i as u64)) {
            Ok(b) => *slot = b,
            Err(e) => {
                check_and_free_all(a, live[..i].iter().copied())?;
                return Err(e);
            }
        }
    }
    for &j in &plan.order {
        check_and_free(a, live[j as usize])?;
    }
    Ok(())
}

/// `rounds` rounds of `blocks` blocks of `sizes` on each of `threads` threads (after one untimed
/// warm-up round each). Checks: every block's tag when it is freed.
pub fn churn<A: GlobalAlloc + Sync + ?Sized>(
    a: &A,
    threads: usize,
    blocks: usize,
    sizes: Sizes,
    rounds: u32,
) -> Result<Timing> {
    let threads = threads.max(1);
    let ready = Barrier::new(threads + 1);
    let done = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (ready, done) = (&ready, &done);
                s.spawn(move || {
                    let plan = Plan::new(blocks, sizes, 0xC4u64 << 32 | t as u64);
                    let mut live = vec![Block::EMPTY; blocks];
                    let salt = (t as u64) << 40;
                    let warm = round(a, &plan, &mut live, salt);
                    ready.wait();
                    let mut result = warm;
                    for r in 0..rounds {
                        if result.is_err() {
                            break;
                        }
                        result = round(a, &plan, &mut live, salt + (r as u64 + 1) * blocks as u64);
                    }
                    done.wait();
                    result
                })
            })
            .collect();
        ready.wait();
        let start = Instant::now();
        done.wait();
        let elapsed = start.elapsed();
        for w in workers {
            w.join().expect("churn worker panicked")?;
        }
        Ok(Timing {
            ops: threads as u64 * blocks as u64 * rounds as u64,
            elapsed,
        })
    })
}
