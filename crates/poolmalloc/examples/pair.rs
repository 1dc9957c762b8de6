//! The fast path's cost: alloc + free of one 64-byte block in a loop, through PoolMalloc
//! installed as the global allocator. Run under callgrind to count instructions:
//!
//! `valgrind --tool=callgrind --callgrind-out-file=/tmp/pair.cg target/release/examples/pair 1000000`
//!
//! then take the difference of two runs' totals over the difference of their iteration counts.

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;

#[global_allocator]
static A: poolmalloc::PoolMalloc = poolmalloc::PoolMalloc;

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000_000);
    let layout = Layout::from_size_align(64, 8).unwrap();
    let start = std::time::Instant::now();
    for _ in 0..n {
        // SAFETY: a non-zero layout; the block is freed at once with the same layout.
        unsafe {
            let p = A.alloc(black_box(layout));
            black_box(p);
            A.dealloc(p, layout);
        }
    }
    let ns = start.elapsed().as_nanos() as f64 / n as f64;
    println!("pair 64 B: {ns:.2} ns per alloc+free ({n} iterations)");
}
