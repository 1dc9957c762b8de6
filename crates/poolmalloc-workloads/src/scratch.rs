//! cache-scratch (from Hoard's benchmark suite): the main thread allocates one small object per
//! worker, back to back, and hands them out; each worker frees its object, then repeatedly
//! allocates an object of the same size, writes it many times and frees it. An allocator that
//! gives two threads blocks on the same cache line makes their writes fight over that line
//! (passive false sharing): the time per op then grows with the thread count.
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

fn worker<A: GlobalAlloc + ?Sized>(a: &A, handed: Block, p: Params) -> Result<()> {
    check_and_free(a, handed)?;
    let layout = layout_for(OBJECT_SIZE);
    for _ in 0..p.iterations {
        // SAFETY: non-zero layout.
        let obj = unsafe { a.alloc(layout) }.cast::<u64>();
        if obj.is_null() {
            return Err(Fault("cache-scratch: allocator returned null".into()));
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
                "cache-scratch: object {obj:p} read {last} after {} writes (shared with a live block?)",
                p.writes
            )));
        }
    }
    Ok(())
}

/// Checks: the handed objects' tags, and each object's count after its writes.
pub fn cache_scratch<A: GlobalAlloc + Sync + ?Sized>(a: &A, p: Params) -> Result<Timing> {
    let threads = p.threads.max(1);
    let mut handed = Vec::with_capacity(threads);
    for t in 0..threads {
        handed.push(alloc_tagged(a, OBJECT_SIZE, tag(t as u64))?);
    }
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
