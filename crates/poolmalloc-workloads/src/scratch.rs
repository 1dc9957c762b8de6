//! cache-scratch and cache-thrash (from Hoard's benchmark suite, after their descriptions): each
//! worker repeatedly allocates a small object, writes it many times and frees it. An allocator
//! that gives two threads blocks on the same cache line makes their writes fight over that line,
//! and the time per op then grows with the thread count.
//!
//! - cache-scratch (passive false sharing): the main thread first allocates one object per
//!   worker, back to back, and hands them out; each worker frees its object before it starts, so
//!   an allocator that reuses a freed block in the freeing thread puts the workers side by side.
//! - cache-thrash (active false sharing): no hand-off; the workers' own requests alone decide
//!   whether their objects share a line.
//!
//! One op = one alloc, `writes` read-modify-writes of the block, one free.

use std::alloc::GlobalAlloc;
use std::time::Instant;

use crate::blocks::{alloc_tagged, check_and_free, layout_for, tag, Block, Fault, Result};
use crate::Timing;

pub const OBJECT_SIZE: usize = 8;

#[derive(Clone, Copy, Debug)]
pub struct Params {
    pub threads: usize,
    /// Objects each worker allocates, writes and frees.
    pub iterations: usize,
    /// Writes per object.
    pub writes: usize,
}

fn worker<A: GlobalAlloc + ?Sized>(a: &A, handed: Option<Block>, p: Params) -> Result<()> {
    if let Some(b) = handed {
        check_and_free(a, b)?;
    }
    let layout = layout_for(OBJECT_SIZE);
    for _ in 0..p.iterations {
        // SAFETY: non-zero layout.
        let obj = unsafe { a.alloc(layout) }.cast::<u64>();
        if obj.is_null() {
            return Err(Fault("allocator returned null for an object".into()));
        }
        // SAFETY: `obj` is a live, 8-byte-aligned block of 8 bytes owned by this thread;
        // volatile so every write reaches the cache line; freed with its own layout.
        let last = unsafe {
            obj.write_volatile(0);
            for _ in 0..p.writes {
                obj.write_volatile(obj.read_volatile() + 1);
            }
            let last = obj.read_volatile();
            a.dealloc(obj.cast(), layout);
            last
        };
        if last != p.writes as u64 {
            return Err(Fault(format!(
                "object {obj:p} read {last} after {} writes (shared with a live block?)",
                p.writes
            )));
        }
    }
    Ok(())
}

/// cache-scratch. Checks: the handed objects' tags, and each object's count after its writes.
pub fn cache_scratch<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: Params) -> Result<Timing> {
    let threads = p.threads.max(1);
    let mut handed = Vec::with_capacity(threads);
    for t in 0..threads {
        handed.push(Some(alloc_tagged(a, OBJECT_SIZE, tag(t as u64))?));
    }
    workers(a, p, handed)
}

/// cache-thrash. Checks: each object's count after its writes.
pub fn cache_thrash<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: Params) -> Result<Timing> {
    workers(a, p, vec![None; p.threads.max(1)])
}

/// One worker per entry of `handed`, each freeing its handed block (if any) first.
fn workers<A: GlobalAlloc + Sync + ?Sized>(
    a: &A,
    p: Params,
    handed: Vec<Option<Block>>,
) -> Result<Timing> {
    let threads = handed.len();
    let start = Instant::now();
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let workers: Vec<_> = handed
            .into_iter()
            .map(|b| s.spawn(move || worker(a, b, p)))
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("cache-scratch worker panicked"))
            .collect()
    });
    let elapsed = start.elapsed();
    results.into_iter().collect::<Result<Vec<()>>>()?;
    Ok(Timing {
        ops: (threads * p.iterations) as u64,
        elapsed,
    })
}
