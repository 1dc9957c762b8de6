//! The table of allocators every workload runs against, and what each one's "trim" is.
//!
//! A binary has one `#[global_allocator]`, so workloads take the allocator as a value
//! (`&A where A: GlobalAlloc`) and the table names one value per allocator, as talc's benches do.
//! [`AllocatorId::with`] hands the value to generic code with its concrete type, so each workload
//! is compiled once per allocator and the allocator's fast path can be inlined into the loop.
//!
//! jemalloc, mimalloc, snmalloc and rpmalloc are benchmark peers only: none is a dependency of the
//! allocator crates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{LazyLock, OnceLock};

use mimalloc::MiMalloc;
use poolmalloc::{Heap, PoolMalloc};
use rpmalloc::RpMalloc;
use snmalloc_rs::SnMalloc;
use tikv_jemallocator::Jemalloc;

/// One allocator of the table (and the hidden loop-cost allocator, [`AllocatorId::Bump`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AllocatorId {
    /// `poolmalloc::PoolMalloc`, the global-allocator type, called as a value: the process-wide
    /// core and this thread's cache (the measuring process's own global allocator is System).
    PoolMalloc,
    /// One `poolmalloc::Heap`: its own core and its own per-thread caches.
    PoolMallocHeap,
    /// The C library's malloc, through `std::alloc::System`.
    System,
    /// jemalloc 5 through `tikv-jemallocator` (symbols prefixed, so it replaces nothing).
    Jemalloc,
    /// mimalloc through the `mimalloc` crate (no `override`, so it replaces nothing).
    Mimalloc,
    /// snmalloc through `snmalloc-rs`, built by the `cc` crate (its `sn_rust_*` entry points
    /// only, so it replaces nothing).
    Snmalloc,
    /// rpmalloc through the `rpmalloc` crate (its `rp*` entry points; the crate's "preload"
    /// build only wraps thread start and exit to set up rpmalloc's thread heaps).
    Rpmalloc,
    /// Not a real allocator: a bump pointer whose free does nothing. Its figures are the cost of
    /// a workload's own loop (indexing, tagging, checking); not in [`AllocatorId::TABLE`].
    Bump,
}

impl AllocatorId {
    /// The allocators `compare`, the benches and the tests run, in table order.
    pub const TABLE: &'static [AllocatorId] = &[
        AllocatorId::PoolMalloc,
        AllocatorId::PoolMallocHeap,
        AllocatorId::System,
        AllocatorId::Jemalloc,
        AllocatorId::Mimalloc,
        AllocatorId::Snmalloc,
        AllocatorId::Rpmalloc,
    ];

    pub fn name(self) -> &'static str {
        match self {
            AllocatorId::PoolMalloc => "poolmalloc",
            AllocatorId::PoolMallocHeap => "poolmalloc-heap",
            AllocatorId::System => "system",
            AllocatorId::Jemalloc => "jemalloc",
            AllocatorId::Mimalloc => "mimalloc",
            AllocatorId::Snmalloc => "snmalloc",
            AllocatorId::Rpmalloc => "rpmalloc",
            AllocatorId::Bump => "bump",
        }
    }

    /// Any name of the table, or `bump`.
    pub fn parse(name: &str) -> Option<AllocatorId> {
        AllocatorId::TABLE
            .iter()
            .chain(&[AllocatorId::Bump])
            .copied()
            .find(|a| a.name() == name)
    }

    /// The names `parse` accepts from the table, comma-separated (for error messages).
    pub fn table_names() -> String {
        let names: Vec<&str> = AllocatorId::TABLE.iter().map(|a| a.name()).collect();
        names.join(", ")
    }

    /// poolmalloc's own entries; every other entry of the table is a peer.
    pub fn is_poolmalloc(self) -> bool {
        matches!(self, AllocatorId::PoolMalloc | AllocatorId::PoolMallocHeap)
    }

    /// Calls `w.run` with this allocator's value, as its own type.
    pub fn with<W: WithAllocator>(self, w: W) -> W::Output {
        match self {
            AllocatorId::PoolMalloc => w.run(self, &POOLMALLOC),
            AllocatorId::PoolMallocHeap => w.run(self, &*HEAP),
            AllocatorId::System => w.run(self, &SYSTEM),
            AllocatorId::Jemalloc => w.run(self, &JEMALLOC),
            AllocatorId::Mimalloc => w.run(self, &MIMALLOC),
            AllocatorId::Snmalloc => w.run(self, &SNMALLOC),
            AllocatorId::Rpmalloc => w.run(self, &RPMALLOC),
            AllocatorId::Bump => w.run(self, &BUMP),
        }
    }

    /// Asks the allocator to give back to the OS what it can: poolmalloc's `collect`,
    /// `mi_collect(true)`, jemalloc's tcache flush and purge of every arena, glibc's `malloc_trim`,
    /// and nothing for snmalloc and rpmalloc, whose crates have no such call.
    pub fn trim(self) {
        match self {
            AllocatorId::PoolMalloc => {
                poolmalloc::collect();
            }
            AllocatorId::PoolMallocHeap => {
                HEAP.collect();
            }
            // SAFETY: `malloc_trim` may be called at any time; glibc takes its own locks.
            AllocatorId::System => unsafe {
                libc::malloc_trim(0);
            },
            AllocatorId::Jemalloc => {
                jemalloc_void_ctl(b"thread.tcache.flush\0");
                jemalloc_void_ctl(b"arena.4096.purge\0"); // 4096 = MALLCTL_ARENAS_ALL
            }
            // SAFETY: `mi_collect` may be called at any time from any thread.
            AllocatorId::Mimalloc => unsafe { libmimalloc_sys::mi_collect(true) },
            // Neither crate exposes a trim (rpmalloc's `rpmalloc_thread_collect` is empty).
            AllocatorId::Snmalloc | AllocatorId::Rpmalloc | AllocatorId::Bump => {}
        }
    }

    /// Pools the allocator has in use, where it can tell (poolmalloc's stats).
    pub fn pools_in_use(self) -> Option<usize> {
        match self {
            AllocatorId::PoolMalloc => Some(poolmalloc::stats().pools_in_use()),
            AllocatorId::PoolMallocHeap => Some(HEAP.stats().pools_in_use()),
            _ => None,
        }
    }

    /// What `trim` calls, for reports.
    pub fn trim_name(self) -> &'static str {
        match self {
            AllocatorId::PoolMalloc => "poolmalloc::collect()",
            AllocatorId::PoolMallocHeap => "Heap::collect()",
            AllocatorId::System => "malloc_trim(0)",
            AllocatorId::Jemalloc => "mallctl thread.tcache.flush + arena.<all>.purge",
            AllocatorId::Mimalloc => "mi_collect(true)",
            AllocatorId::Snmalloc | AllocatorId::Rpmalloc => "nothing (the crate has no trim)",
            AllocatorId::Bump => "nothing",
        }
    }
}

impl fmt::Display for AllocatorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// Generic code that wants an allocator of the table as its own type (see [`AllocatorId::with`]).
pub trait WithAllocator {
    type Output;
    fn run<A: GlobalAlloc + Sync + 'static>(self, id: AllocatorId, a: &'static A) -> Self::Output;
}

pub static POOLMALLOC: PoolMalloc = PoolMalloc;
/// The table's one `Heap`, made on first use.
pub static HEAP: LazyLock<Heap> = LazyLock::new(Heap::new);
pub static SYSTEM: System = System;
pub static JEMALLOC: Jemalloc = Jemalloc;
pub static MIMALLOC: MiMalloc = MiMalloc;
pub static SNMALLOC: SnMalloc = SnMalloc;
pub static RPMALLOC: RpMalloc = RpMalloc;
pub static BUMP: Bump = Bump {
    used: AtomicUsize::new(0),
};

/// A jemalloc control that neither reads nor writes a value ("void" in jemalloc's manual).
fn jemalloc_void_ctl(name: &[u8]) {
    debug_assert_eq!(name.last(), Some(&0));
    // SAFETY: `name` is NUL-terminated; a void control takes no old or new value, so every
    // pointer is null and the length 0, as jemalloc's manual describes.
    let rc = unsafe {
        tikv_jemalloc_sys::mallctl(
            name.as_ptr().cast(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            0,
        )
    };
    debug_assert_eq!(rc, 0, "mallctl {:?}", String::from_utf8_lossy(name));
}

/// The do-nothing allocator: bumps a pointer through one reserved, never-reused region and
/// frees nothing. A handful of instructions per request; the region is reserved with
/// `MAP_NORESERVE`, so only pages a workload touches cost memory. Meant for short runs (the
/// instruction counts); a request that does not fit returns null.
pub struct Bump {
    used: AtomicUsize,
}

/// Bytes of address space the bump allocator reserves.
const BUMP_RESERVE: usize = 4 << 30;

fn bump_region() -> usize {
    static REGION: OnceLock<usize> = OnceLock::new();
    *REGION.get_or_init(|| {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BUMP_RESERVE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            0
        } else {
            p as usize
        }
    })
}

// SAFETY: every block is a distinct, 16-byte-aligned range of the private region (the cursor
// only grows, by at least the rounded size), so blocks never overlap; alignments above 16 and
// requests past the region's end get null.
unsafe impl GlobalAlloc for Bump {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let base = bump_region();
        let size = (layout.size() + 15) & !15;
        if base == 0 || layout.align() > 16 {
            return std::ptr::null_mut();
        }
        let bumped = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(size).filter(|&end| end <= BUMP_RESERVE)
            });
        match bumped {
            Ok(offset) => (base + offset) as *mut u8,
            Err(_) => std::ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_back() {
        for &a in AllocatorId::TABLE.iter().chain(&[AllocatorId::Bump]) {
            assert_eq!(AllocatorId::parse(a.name()), Some(a));
        }
        assert_eq!(AllocatorId::parse("tcmalloc"), None);
        assert!(!AllocatorId::table_names().contains("bump"));
    }

    #[test]
    fn bump_blocks_are_distinct_and_aligned() {
        let l = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: non-zero layouts; the bump allocator's free does nothing.
        let (a, b) = unsafe { (BUMP.alloc(l), BUMP.alloc(l)) };
        assert!(!a.is_null() && !b.is_null());
        assert_eq!(a as usize % 16, 0);
        assert!((a as usize).abs_diff(b as usize) >= 32);
        let huge = Layout::from_size_align(BUMP_RESERVE + 1, 8).unwrap();
        // SAFETY: non-zero layout.
        assert!(unsafe { BUMP.alloc(huge) }.is_null());
    }

    #[test]
    fn every_trim_runs() {
        for &a in AllocatorId::TABLE {
            a.with(Touch);
            a.trim();
        }
    }

    struct Touch;
    impl WithAllocator for Touch {
        type Output = ();
        fn run<A: GlobalAlloc + Sync + 'static>(self, _: AllocatorId, a: &'static A) {
            let l = Layout::from_size_align(100, 8).unwrap();
            // SAFETY: non-zero layout; freed with the same layout.
            unsafe {
                let p = a.alloc(l);
                assert!(!p.is_null());
                a.dealloc(p, l);
            }
        }
    }
}
