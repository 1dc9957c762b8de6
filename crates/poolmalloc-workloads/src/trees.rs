//! binary-trees (the Computer Language Benchmarks Game's shape) on rayon: build complete binary
//! trees of 16-byte nodes and drop them, many at a time in parallel, plus one long-lived tree.
//! Rayon's work stealing moves subtrees between threads, so nodes are often freed by a thread
//! that did not allocate them. One op = one node allocated and freed.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use rayon::prelude::*;

use crate::blocks::{Fault, Result};
use crate::Timing;

#[repr(C)]
struct Node {
    left: *mut Node,
    right: *mut Node,
}

const NODE: Layout = Layout::new::<Node>();

/// A tree of depth `depth` (2^(depth+1) - 1 nodes), or null if any allocation failed (in which
/// case what was built is freed again).
fn build<A: GlobalAlloc + ?Sized>(a: &A, depth: u32) -> *mut Node {
    // SAFETY: `Node` is not zero-sized.
    let node = unsafe { a.alloc(NODE) }.cast::<Node>();
    if node.is_null() {
        return node;
    }
    let (left, right) = if depth == 0 {
        (std::ptr::null_mut(), std::ptr::null_mut())
    } else {
        let l = build(a, depth - 1);
        let r = build(a, depth - 1);
        if l.is_null() || r.is_null() {
            free_count(a, l);
            free_count(a, r);
            // SAFETY: `node` was allocated above and holds no children.
            unsafe { a.dealloc(node.cast(), NODE) };
            return std::ptr::null_mut();
        }
        (l, r)
    };
    // SAFETY: `node` is a live, aligned block of `size_of::<Node>()` bytes.
    unsafe { node.write(Node { left, right }) };
    node
}

/// Frees a tree built by `build`, returning its node count.
fn free_count<A: GlobalAlloc + ?Sized>(a: &A, node: *mut Node) -> u64 {
    if node.is_null() {
        return 0;
    }
    // SAFETY: `node` is a node of a tree built by `build`, not yet freed; each node is
    // reachable from exactly one parent, so it is read and freed once.
    let Node { left, right } = unsafe { node.read() };
    let count = 1 + free_count(a, left) + free_count(a, right);
    // SAFETY: `node` came from `a.alloc(NODE)` in `build`, is reached once (one parent) and
    // was read above, so it is freed once and not used after.
    unsafe { a.dealloc(node.cast(), NODE) };
    count
}

fn nodes(depth: u32) -> u64 {
    (1u64 << (depth + 1)) - 1
}

/// Builds a stretch tree of `max_depth + 1`, a long-lived tree of `max_depth`, and for each
/// depth 4, 6, .. max_depth, `2^(max_depth - depth + 4)` trees in parallel. Checks: the node count
/// of every tree.
pub fn binary_trees<A: GlobalAlloc + Sync + ?Sized>(a: &A, max_depth: u32) -> Result<Timing> {
    let max_depth = max_depth.max(6);
    let check = |depth: u32, got: u64, trees: u64| -> Result<()> {
        if got == nodes(depth) * trees {
            Ok(())
        } else {
            Err(Fault(format!(
                "binary-trees: {trees} trees of depth {depth} freed {got} nodes, expected {}",
                nodes(depth) * trees
            )))
        }
    };
    let nulls = AtomicUsize::new(0);
    let build_checked = |depth: u32| {
        let t = build(a, depth);
        if t.is_null() {
            nulls.fetch_add(1, Ordering::Relaxed);
        }
        t
    };
    let start = Instant::now();
    let mut total = 0;
    let stretch = free_count(a, build_checked(max_depth + 1));
    total += stretch;
    let long_lived = build_checked(max_depth);
    let mut fault = Ok(());
    for depth in (4..=max_depth).step_by(2) {
        let trees = 1u64 << (max_depth - depth + 4);
        let got: u64 = (0..trees)
            .into_par_iter()
            .map(|_| free_count(a, build_checked(depth)))
            .sum();
        total += got;
        fault = fault.and(check(depth, got, trees));
    }
    let kept = free_count(a, long_lived);
    total += kept;
    let elapsed = start.elapsed();
    let failed = nulls.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(Fault(format!(
            "binary-trees: allocator returned null while building {failed} trees"
        )));
    }
    fault?;
    check(max_depth + 1, stretch, 1)?;
    check(max_depth, kept, 1)?;
    Ok(Timing {
        ops: total,
        elapsed,
    })
}

/// [`binary_trees`] on a rayon pool of its own with `threads` threads (made before the timing
/// starts).
pub fn binary_trees_on<A: GlobalAlloc + Sync + ?Sized>(
    a: &A,
    max_depth: u32,
    threads: usize,
) -> Result<Timing> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.max(1))
        .build()
        .map_err(|e| Fault(format!("binary-trees: no thread pool of {threads}: {e}")))?;
    pool.install(|| binary_trees(a, max_depth))
}
