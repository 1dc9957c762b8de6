//! The memory and seed workloads, in a test binary of their own: they read the process's RSS,
//! which other tests running beside them would disturb.

use std::alloc::GlobalAlloc;

use poolmalloc_workloads::{memory, seed, AllocatorId, Sizes, WithAllocator};

struct Memory;

impl WithAllocator for Memory {
    type Output = ();
    fn run<A: GlobalAlloc + Sync + 'static>(self, id: AllocatorId, a: &'static A) {
        let r = memory::memory(a, 40_000, Sizes::SMALL, || id.trim())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        // Every byte asked for is written (the tags cover each block's ends and blocks are at
        // most 512 bytes), so at the peak at least the requested bytes, less page rounding at
        // the edges, are resident.
        assert!(
            r.peak >= r.baseline + r.requested * 3 / 4,
            "{id}: peak {} baseline {} requested {}",
            r.peak,
            r.baseline,
            r.requested
        );
        assert!(r.requested >= 40_000 * 8 && r.requested <= 40_000 * 512);

        let k = 20;
        let s = seed::seed(a, k, || id.pools_in_use(), || id.trim())
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        assert!(s.peak >= s.baseline, "{id}");
        match s.pools_pinned {
            // Each survivor pins at most one pool, and at least one pool is pinned.
            Some(p) => assert!(
                id.is_poolmalloc() && (1..=k).contains(&p),
                "{id}: {p} pools"
            ),
            None => assert!(!id.is_poolmalloc(), "{id} reports no pools"),
        }
    }
}

#[test]
fn memory_and_seed_run_and_measure_on_every_allocator() {
    for &id in AllocatorId::TABLE {
        id.with(Memory);
    }
}
