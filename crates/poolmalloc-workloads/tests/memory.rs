//! The memory and seed workloads, in a test binary of their own: they read the process's RSS,
//! which other tests running beside them would disturb.

use std::alloc::GlobalAlloc;
use std::time::{Duration, Instant};

use poolmalloc_workloads::rss::rss_bytes;
use poolmalloc_workloads::{memory, seed, AllocatorId, Sizes, WithAllocator};

/// How long the tests wait for memory to be given back (compare waits 2 s).
const LIMIT: Duration = Duration::from_millis(50);

struct Memory;

impl WithAllocator for Memory {
    type Output = ();
    fn run<A: GlobalAlloc + Sync + 'static>(self, id: AllocatorId, a: &'static A) {
        let r = memory::memory(a, 40_000, Sizes::SMALL, LIMIT, || id.trim())
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
        // Given back only if what is left is within 1 % of the peak; the wait is the limit's.
        if let Some(after) = r.released {
            assert!(after < LIMIT + Duration::from_secs(1), "{id}: {after:?}");
        }

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

        // After seed, whose pool count would include the blocks another thread freed here.
        let t =
            memory::memory_two_threads(a, 40_000, LIMIT).unwrap_or_else(|e| panic!("{id}: {e}"));
        // (Its peak is not checked: what memory and seed left in the allocator serves it.)
        if let Some(after) = t.released {
            assert!(after < LIMIT + Duration::from_secs(1), "{id}: 2t {after:?}");
        }
    }
}

/// The release poll sees 64 MiB the system allocator unmaps at once, and waits out its limit
/// for memory that stays.
fn release_poll() {
    let baseline = rss_bytes();
    let touched = vec![1u8; 64 << 20];
    let peak = rss_bytes();
    assert!(peak >= baseline + (48 << 20), "{baseline} -> {peak}");
    drop(touched);
    let after = memory::time_to_release(Instant::now(), baseline, peak, 5, Duration::from_secs(1));
    assert!(after.is_some(), "64 MiB unmapped, not seen within 1 s");

    let kept = vec![1u8; 64 << 20];
    let peak = rss_bytes();
    let start = Instant::now();
    let never = memory::time_to_release(start, baseline, peak, 5, LIMIT);
    assert_eq!(never, None, "64 MiB still held");
    assert!(start.elapsed() >= LIMIT);
    drop(kept);
}

#[test]
fn memory_and_seed_run_and_measure_on_every_allocator() {
    // One test in this binary: the release poll must not see another test's pages.
    release_poll();
    for &id in AllocatorId::TABLE {
        id.with(Memory);
    }
}
