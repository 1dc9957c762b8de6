//! Measures the current POOL_SIZE / ARENA_SIZE on the core alone (no thread cache), to choose
//! them: a churn of random 8..512-byte blocks freed in random order (ns per alloc+free, arenas
//! mapped), and the seed scenario (bytes still mapped when one object in 512 survives).
//! Change `config::POOL_BITS` / `ARENA_BITS` and run again to compare.
//!
//! `cargo run --release -p poolmalloc-core --example geometry`

use std::alloc::Layout;
use std::time::Instant;

use poolmalloc_core::config::{ARENA_SIZE, POOL_SIZE};
use poolmalloc_core::{Core, OsPages};

fn churn(core: &Core<OsPages>, n: usize, rounds: usize) -> f64 {
    let mut rng = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(n);
    let start = Instant::now();
    for _ in 0..rounds {
        for _ in 0..n {
            let layout = Layout::from_size_align(8 + (next() % 505) as usize, 8).unwrap();
            live.push((core.alloc(layout), layout));
        }
        for i in (1..live.len()).rev() {
            live.swap(i, (next() % (i as u64 + 1)) as usize);
        }
        for (p, layout) in live.drain(..) {
            // SAFETY: each came from `alloc(layout)` and is freed once.
            unsafe { core.dealloc(p, layout).unwrap() };
        }
    }
    start.elapsed().as_nanos() as f64 / (n * rounds) as f64
}

fn main() {
    println!(
        "POOL_SIZE {} KiB, ARENA_SIZE {} KiB",
        POOL_SIZE / 1024,
        ARENA_SIZE / 1024
    );
    let core = Core::new(OsPages);
    let ns = churn(&core, 200_000, 5);
    let s = core.stats();
    println!(
        "churn 200k x5: {ns:.1} ns per alloc+free, arenas mapped ever {}, high water {} ({} KiB)",
        s.arenas.mapped_ever,
        s.arenas.high_water,
        s.arenas.high_water * ARENA_SIZE / 1024
    );

    let seed = Core::new(OsPages);
    let one = Layout::from_size_align(1, 1).unwrap();
    let k = 2000;
    let blocks: Vec<*mut u8> = (0..512 * k).map(|_| seed.alloc(one)).collect();
    for (i, &p) in blocks.iter().enumerate() {
        if i % 512 != 0 {
            // SAFETY: freed once.
            unsafe { seed.dealloc(p, one).unwrap() };
        }
    }
    let s = seed.stats();
    println!(
        "seed k={k}: {} pools pinned, {} KiB mapped for {} bytes of survivors",
        s.pools_in_use(),
        s.bytes_mapped() / 1024,
        s.bytes_in_blocks_out()
    );
}
