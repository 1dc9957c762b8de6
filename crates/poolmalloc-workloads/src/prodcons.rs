//! producer/consumer (xmalloc-style): producer threads allocate blocks and send them over
//! crossbeam channels; consumer threads free them. Every block is freed by a thread that did not
//! allocate it, so a thread cache sees only allocations on one side and only frees on the other:
//! the flush of the consumer's cache and the refill of the producer's carry the whole load.
//! Messages carry 1 or 64 blocks. One op = one block allocated, sent and freed; time is wall time.

use std::alloc::GlobalAlloc;
use std::time::Instant;

use crossbeam_channel::bounded;

use crate::blocks::{alloc_tagged, check_and_free, tag, Block, Fault, Result};
use crate::rng::Rng;
use crate::Timing;

pub const MIN_SIZE: usize = 8;
pub const MAX_SIZE: usize = 256;
/// Blocks in flight per channel at most (the channel holds this many / blocks per message).
pub const IN_FLIGHT: usize = 1024;

#[derive(Clone, Copy, Debug)]
pub struct Params {
    /// Producer/consumer pairs, each with its own channel.
    pub pairs: usize,
    /// Blocks each producer sends.
    pub blocks: usize,
}

/// Runs `Params` with `N` blocks per message (1 and 64 in the table). Checks: every block's tag
/// at the consumer, and that each consumer received exactly the blocks its producer sent.
pub fn prodcons<A: GlobalAlloc + Sync + ?Sized, const N: usize>(
    a: &A,
    p: Params,
) -> Result<Timing> {
    let pairs = p.pairs.max(1);
    let messages = p.blocks / N;
    let start = Instant::now();
    let (sent, freed) = std::thread::scope(|s| {
        let mut consumers = Vec::with_capacity(pairs);
        let mut producers = Vec::with_capacity(pairs);
        for t in 0..pairs {
            let (tx, rx) = bounded::<[Block; N]>((IN_FLIGHT / N).max(1));
            producers.push(s.spawn(move || -> Result<()> {
                let mut rng = Rng::new(0x9C << 32 | t as u64);
                for m in 0..messages {
                    let mut msg = [Block::EMPTY; N];
                    for (k, slot) in msg.iter_mut().enumerate() {
                        let size = rng.range(MIN_SIZE, MAX_SIZE);
                        match alloc_tagged(a, size, tag((m * N + k) as u64)) {
                            Ok(b) => *slot = b,
                            Err(e) => {
                                // Hand over what was allocated so the consumer frees it.
                                let _ = tx.send(msg);
                                return Err(e);
                            }
                        }
                    }
                    if tx.send(msg).is_err() {
                        break; // the consumer stopped on a fault and reports it
                    }
                }
                Ok(())
            }));
            consumers.push(s.spawn(move || -> Result<usize> {
                let mut received = 0;
                let mut first = Ok(());
                for msg in rx {
                    for b in msg {
                        if b.addr() == 0 {
                            continue;
                        }
                        received += 1;
                        if first.is_ok() {
                            first = check_and_free(a, b);
                        }
                    }
                    if first.is_err() {
                        break;
                    }
                }
                first.map(|()| received)
            }));
        }
        let sent: Vec<Result<()>> = producers
            .into_iter()
            .map(|h| h.join().expect("producer panicked"))
            .collect();
        let freed: Vec<Result<usize>> = consumers
            .into_iter()
            .map(|h| h.join().expect("consumer panicked"))
            .collect();
        (sent, freed)
    });
    let elapsed = start.elapsed();
    for r in sent {
        r?;
    }
    for r in freed {
        let got = r?;
        if got != messages * N {
            return Err(Fault(format!(
                "prodcons: a consumer freed {got} blocks, its producer sent {}",
                messages * N
            )));
        }
    }
    Ok(Timing {
        ops: (pairs * messages * N) as u64,
        elapsed,
    })
}
