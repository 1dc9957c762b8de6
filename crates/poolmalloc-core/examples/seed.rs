//! The seed's scenario on the core, printed step by step with the stats report:
//! allocate 512·k one-byte objects, free 511 of each 512, then free the survivors.
//!
//! `cargo run --release -p poolmalloc-core --example seed [k]`

use std::alloc::Layout;

use poolmalloc_core::{Core, OsPages};

fn main() {
    let k: usize = match std::env::args().nth(1) {
        None => 1000,
        Some(arg) => arg.parse().unwrap_or_else(|_| {
            eprintln!("seed: k must be a whole number of 512-object groups, got '{arg}'");
            std::process::exit(2)
        }),
    };
    let core = Core::new(OsPages);
    let one = Layout::from_size_align(1, 1).expect("layout");
    let blocks: Vec<*mut u8> = (0..512 * k).map(|_| core.alloc(one)).collect();
    if blocks.iter().any(|p| p.is_null()) {
        eprintln!("seed: out of memory");
        std::process::exit(1);
    }
    println!(
        "== after allocating {} one-byte objects ==\n{}",
        512 * k,
        core.stats()
    );

    let mut survivors = Vec::with_capacity(k);
    for (i, &p) in blocks.iter().enumerate() {
        if i % 512 == 0 {
            survivors.push(p);
        } else {
            // SAFETY: each block came from `alloc(one)` and is freed once.
            unsafe { core.dealloc(p, one).expect("our own block") };
        }
    }
    let s = core.stats();
    println!(
        "== after freeing 511 of each 512: {k} survivors pin {} pools ({} bytes mapped) ==\n{s}",
        s.pools_in_use(),
        s.bytes_mapped()
    );

    for p in survivors {
        // SAFETY: each survivor came from `alloc(one)` and is freed once.
        unsafe { core.dealloc(p, one).expect("our own block") };
    }
    core.collect();
    println!(
        "== after freeing the survivors and collect() ==\n{}",
        core.stats()
    );
}
