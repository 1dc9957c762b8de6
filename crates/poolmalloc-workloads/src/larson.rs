//! larson: the server shape of Larson and Krishnan's benchmark. Each thread owns an array of
//! slots holding blocks of random size, and replaces random slots (free the old block, allocate a
//! new one). When a round ends its threads exit and the next round's new threads take over the
//! arrays, each from a different thread than before: most frees are of blocks another (by now
//! exited) thread allocated, and every round exercises thread start and thread exit.
//! One op = one replacement (a free and an alloc); time is wall time over all threads.

use std::alloc::GlobalAlloc;
use std::time::Instant;

use crate::blocks::{alloc_tagged, check_and_free, check_and_free_all, tag, Block, Result};
use crate::rng::Rng;
use crate::Timing;

pub const SLOTS: usize = 1000;
pub const MIN_SIZE: usize = 16;
pub const MAX_SIZE: usize = 512;

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub threads: usize,
    pub slots: usize,
    /// Replacements per thread per round.
    pub replaces: usize,
    pub rounds: usize,
}

fn replace_slots<A: GlobalAlloc + ?Sized>(
    a: &A,
    slots: &mut [Block],
    replaces: usize,
    seed: u64,
) -> Result<()> {
    let mut rng = Rng::new(seed);
    for i in 0..replaces {
        let j = rng.range(0, slots.len() - 1);
        check_and_free(a, slots[j])?;
        let size = rng.range(MIN_SIZE, MAX_SIZE);
        match alloc_tagged(a, size, tag(seed ^ i as u64)) {
            Ok(b) => slots[j] = b,
            Err(e) => {
                slots[j] = Block::EMPTY;
                return Err(e);
            }
        }
    }
    Ok(())
}

/// Checks: every block's tag when it is replaced, and every slot at the end.
pub fn larson<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: Params) -> Result<Timing> {
    let threads = p.threads.max(1);
    let mut rng = Rng::new(0x1A25);
    let mut arrays: Vec<Vec<Block>> = Vec::with_capacity(threads);
    let mut fault = None;
    for t in 0..threads {
        let mut slots = Vec::with_capacity(p.slots);
        for s in 0..p.slots {
            match alloc_tagged(
                a,
                rng.range(MIN_SIZE, MAX_SIZE),
                tag((t * p.slots + s) as u64),
            ) {
                Ok(b) => slots.push(b),
                Err(e) => fault = fault.or(Some(e)),
            }
        }
        arrays.push(slots);
    }
    let start = Instant::now();
    for round in 0..p.rounds {
        if fault.is_some() {
            break;
        }
        let results: Vec<(Vec<Block>, Result<()>)> = std::thread::scope(|s| {
            let handles: Vec<_> = arrays
                .drain(..)
                .enumerate()
                .map(|(t, mut slots)| {
                    let seed = (round as u64) << 32 | t as u64;
                    s.spawn(move || {
                        let r = replace_slots(a, &mut slots, p.replaces, seed);
                        (slots, r)
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("larson worker panicked"))
                .collect()
        });
        for (slots, r) in results {
            arrays.push(slots);
            if let Err(e) = r {
                fault = fault.or(Some(e));
            }
        }
        // Hand each array to a different thread next round.
        arrays.rotate_left(1);
    }
    let elapsed = start.elapsed();
    // A slot left EMPTY by a failed allocation is not freed.
    let rest = arrays.into_iter().flatten().filter(|b| b.addr() != 0);
    let freed = check_and_free_all(a, rest);
    if let Some(e) = fault {
        return Err(e);
    }
    freed?;
    Ok(Timing {
        ops: (threads * p.replaces * p.rounds) as u64,
        elapsed,
    })
}
