//! rptest-style mix (after the description of rpmalloc's benchmark): every thread keeps a
//! working set of blocks of random sizes from 16 B to 16 KiB, log-uniform, so small requests
//! dominate but the large path (past poolmalloc's 512 bytes) is timed too. Each round a thread
//! replaces random blocks of its set, and hands some of its blocks to the next thread of a ring,
//! which frees them: cross-thread frees of every size.
//! One op = one block allocated and freed (the working sets included); time is wall time.

use std::alloc::GlobalAlloc;
use std::time::Instant;

use crossbeam_channel::{unbounded, Receiver, Sender};

use crate::blocks::{alloc_tagged, check_and_free, check_and_free_all, tag, Block, Result};
use crate::rng::Rng;
use crate::Timing;

pub const MIN_SIZE: usize = 16;
pub const MAX_SIZE: usize = 16 << 10;

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub threads: usize,
    /// Blocks each thread holds.
    pub working_set: usize,
    pub rounds: usize,
    /// Blocks of its set a thread replaces each round.
    pub replaces: usize,
    /// Blocks a thread hands to the next one each round (and replaces in its set).
    pub handed: usize,
}

/// A size of `MIN_SIZE..MAX_SIZE`: a power of two drawn uniformly, then a size within it.
fn size(rng: &mut Rng) -> usize {
    let bits = rng.range(
        MIN_SIZE.trailing_zeros() as usize,
        MAX_SIZE.trailing_zeros() as usize - 1,
    );
    rng.range(1 << bits, (2 << bits) - 1)
}

struct Worker<'a, A: ?Sized> {
    a: &'a A,
    rng: Rng,
    seed: u64,
    made: u64,
}

impl<A: GlobalAlloc + ?Sized> Worker<'_, A> {
    fn alloc(&mut self) -> Result<Block> {
        let size = size(&mut self.rng);
        self.made += 1;
        alloc_tagged(self.a, size, tag(self.seed ^ self.made))
    }

    /// Swaps a random block of `set` for a new one and returns the old one.
    fn swap_out(&mut self, set: &mut [Block]) -> Result<Block> {
        let j = self.rng.range(0, set.len() - 1);
        let fresh = self.alloc()?;
        Ok(std::mem::replace(&mut set[j], fresh))
    }

    /// Frees every block another thread handed over so far.
    fn free_handed(&self, rx: &Receiver<Vec<Block>>) -> Result<()> {
        for batch in rx.try_iter() {
            check_and_free_all(self.a, batch)?;
        }
        Ok(())
    }

    fn run(
        &mut self,
        p: Params,
        set: &mut Vec<Block>,
        tx: &Sender<Vec<Block>>,
        rx: &Receiver<Vec<Block>>,
    ) -> Result<()> {
        for _ in 0..p.working_set.max(1) {
            let b = self.alloc()?;
            set.push(b);
        }
        for _ in 0..p.rounds {
            self.free_handed(rx)?;
            for _ in 0..p.replaces {
                let old = self.swap_out(set)?;
                check_and_free(self.a, old)?;
            }
            let mut batch = Vec::with_capacity(p.handed);
            for _ in 0..p.handed {
                match self.swap_out(set) {
                    Ok(old) => batch.push(old),
                    Err(e) => {
                        check_and_free_all(self.a, batch)?;
                        return Err(e);
                    }
                }
            }
            // The next thread is gone only after a fault of its own: free the batch here.
            if let Err(unsent) = tx.send(batch) {
                check_and_free_all(self.a, unsent.0)?;
            }
        }
        Ok(())
    }
}

/// Checks: every block's tag when it is freed, by its own thread or by the next.
pub fn rptest<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: Params) -> Result<Timing> {
    let threads = p.threads.max(1);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..threads).map(|_| unbounded()).unzip();
    let start = Instant::now();
    let results: Vec<Result<u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = rxs
            .into_iter()
            .enumerate()
            .map(|(t, rx)| {
                // Thread t sends to thread t + 1 (and to itself when alone).
                let tx = txs[(t + 1) % threads].clone();
                s.spawn(move || {
                    let seed = 0x4D1C << 32 | t as u64;
                    let mut w = Worker {
                        a,
                        rng: Rng::new(seed),
                        seed: seed << 20,
                        made: 0,
                    };
                    let mut set = Vec::with_capacity(p.working_set.max(1));
                    let worked = w.run(p, &mut set, &tx, &rx);
                    drop(tx);
                    let own = check_and_free_all(a, set);
                    // The previous thread's last batches, until it has dropped its sender.
                    let handed = rx.iter().try_for_each(|batch| check_and_free_all(a, batch));
                    worked.and(own).and(handed).map(|()| w.made)
                })
            })
            .collect();
        drop(txs);
        handles
            .into_iter()
            .map(|h| h.join().expect("rptest worker panicked"))
            .collect()
    });
    let elapsed = start.elapsed();
    let mut ops = 0;
    for r in results {
        ops += r?;
    }
    Ok(Timing { ops, elapsed })
}
