//! Blocks handed between threads: producer threads allocate blocks and send them over crossbeam
//! channels; consumer threads free them. Every block is freed by a thread that did not allocate
//! it, so a thread cache sees only allocations on one side and only frees on the other: the flush
//! of the consumer's cache and the refill of the producer's carry the whole load.
//!
//! - prodcons: producer/consumer pairs, each pair with its own channel; messages carry 1 or 64
//!   blocks.
//! - xmalloc (after the xmalloc-test's description: many threads allocate, many others free):
//!   several producers and several consumers share one channel, so any consumer frees any
//!   producer's blocks, in batches of [`XMALLOC_BATCH`].
//!
//! One op = one block allocated, sent and freed; time is wall time.

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
    exchange::<A, N>(
        a,
        Shape {
            groups: p.pairs.max(1),
            producers: 1,
            consumers: 1,
        },
        p.blocks,
    )
}

/// Blocks per message in xmalloc.
pub const XMALLOC_BATCH: usize = 16;

#[derive(Clone, Copy, Debug)]
pub struct XmallocParams {
    pub producers: usize,
    pub consumers: usize,
    /// Blocks each producer sends.
    pub blocks: usize,
}

/// xmalloc: every producer and consumer on one channel. Checks: every block's tag at the
/// consumer, and that the consumers together received every block the producers sent.
pub fn xmalloc<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: XmallocParams) -> Result<Timing> {
    exchange::<A, XMALLOC_BATCH>(
        a,
        Shape {
            groups: 1,
            producers: p.producers.max(1),
            consumers: p.consumers.max(1),
        },
        p.blocks,
    )
}

/// Channels, and the producers and consumers on each.
#[derive(Clone, Copy, Debug)]
struct Shape {
    groups: usize,
    producers: usize,
    consumers: usize,
}

/// Each producer sends `blocks` blocks (rounded down to whole messages of `N`) on its group's
/// channel; the group's consumers free them.
fn exchange<A: GlobalAlloc + Sync + ?Sized, const N: usize>(
    a: &A,
    shape: Shape,
    blocks: usize,
) -> Result<Timing> {
    let messages = blocks / N;
    let start = Instant::now();
    let (sent, freed) = std::thread::scope(|s| {
        let mut consumers = Vec::with_capacity(shape.groups);
        let mut producers = Vec::with_capacity(shape.groups * shape.producers);
        for g in 0..shape.groups {
            let (tx, rx) = bounded::<[Block; N]>((IN_FLIGHT / N).max(1));
            for t in 0..shape.producers {
                let tx = tx.clone();
                let seed = 0x9C << 32 | (g * shape.producers + t) as u64;
                producers.push(s.spawn(move || -> Result<()> {
                    let mut rng = Rng::new(seed);
                    for m in 0..messages {
                        let mut msg = [Block::EMPTY; N];
                        for (k, slot) in msg.iter_mut().enumerate() {
                            let size = rng.range(MIN_SIZE, MAX_SIZE);
                            match alloc_tagged(a, size, tag(seed ^ (m * N + k) as u64)) {
                                Ok(b) => *slot = b,
                                Err(e) => {
                                    // Hand over what was allocated so a consumer frees it.
                                    let _ = tx.send(msg);
                                    return Err(e);
                                }
                            }
                        }
                        if tx.send(msg).is_err() {
                            break; // the consumers stopped on a fault and report it
                        }
                    }
                    Ok(())
                }));
            }
            // The group's consumers stop when its producers' senders are all gone.
            drop(tx);
            let group: Vec<_> = (0..shape.consumers)
                .map(|_| {
                    let rx = rx.clone();
                    s.spawn(move || -> Result<usize> {
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
                    })
                })
                .collect();
            consumers.push(group);
        }
        let sent: Vec<Result<()>> = producers
            .into_iter()
            .map(|h| h.join().expect("producer panicked"))
            .collect();
        let freed: Vec<Vec<Result<usize>>> = consumers
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|h| h.join().expect("consumer panicked"))
                    .collect()
            })
            .collect();
        (sent, freed)
    });
    let elapsed = start.elapsed();
    for r in sent {
        r?;
    }
    let expected = shape.producers * messages * N;
    for group in freed {
        let mut got = 0;
        for r in group {
            got += r?;
        }
        if got != expected {
            return Err(Fault(format!(
                "{} consumer(s) freed {got} blocks, their {} producer(s) sent {expected}",
                shape.consumers, shape.producers
            )));
        }
    }
    Ok(Timing {
        ops: (shape.groups * expected) as u64,
        elapsed,
    })
}
