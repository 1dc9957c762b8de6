//! The bootstrap region: a static area that serves small requests made while the thread is
//! already inside the allocator's slow path (the lock library creating its per-thread data while
//! a core lock is contended, the thread-exit registration). Such requests must not re-enter the
//! core, whose lock this very thread may hold.
//!
//! The region is laid out like pools: each POOL_SIZE chunk starts with POOL_OVERHEAD bytes that
//! stay zero, so a block's pool reads class tag 0 and its free falls to the slow path, which
//! recognises the region and ignores the free. Blocks are bump-allocated and never reused; the
//! requests that land here are a handful per thread. Each block is preceded by a 16-byte prefix
//! holding its size, for `malloc_usable_size` and `realloc` in the C ABI.

use core::cell::UnsafeCell;
use std::sync::atomic::{AtomicUsize, Ordering};

use poolmalloc_core::config::{
    BOOTSTRAP_BYTES, MAX_SMALL_ALIGN, POOL_ADDR_MASK, POOL_OVERHEAD, POOL_SIZE,
};

/// The static area: `BOOTSTRAP_BYTES` of pool-aligned chunks lie inside it, found at run time
/// (`base`), since an alignment attribute cannot follow `POOL_SIZE`.
struct Region(UnsafeCell<[u8; BOOTSTRAP_BYTES + POOL_SIZE]>);

// SAFETY: bytes of the region are handed out once each (the bump offset only grows, by CAS), and
// the header bytes of each chunk are never handed out.
unsafe impl Sync for Region {}

static REGION: Region = Region(UnsafeCell::new([0; BOOTSTRAP_BYTES + POOL_SIZE]));

/// The region's first pool-aligned byte.
#[inline]
fn base() -> *mut u8 {
    let start = REGION.0.get().cast::<u8>();
    let offset = (start as usize + POOL_SIZE - 1) & POOL_ADDR_MASK;
    start.wrapping_add(offset - start as usize)
}
/// Offset of the next free byte.
static NEXT: AtomicUsize = AtomicUsize::new(POOL_OVERHEAD);

/// Bytes before each block: its size.
const PREFIX: usize = MAX_SMALL_ALIGN;

/// `size` bytes aligned to MAX_SMALL_ALIGN, or null when the region is used up or a block of
/// `size` would not fit in one chunk (a medium request: the caller asks the core instead).
pub(crate) fn alloc(size: usize) -> *mut u8 {
    let block = size.max(1).next_multiple_of(MAX_SMALL_ALIGN);
    let size = PREFIX + block;
    if size > POOL_SIZE - POOL_OVERHEAD {
        return core::ptr::null_mut();
    }
    let mut current = NEXT.load(Ordering::Relaxed);
    loop {
        let mut start = current;
        if start % POOL_SIZE + size > POOL_SIZE {
            // Not enough left in this chunk: skip to the next chunk's first block.
            start = (start / POOL_SIZE + 1) * POOL_SIZE + POOL_OVERHEAD;
        }
        if start + size > BOOTSTRAP_BYTES {
            return core::ptr::null_mut();
        }
        match NEXT.compare_exchange_weak(
            current,
            start + size,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            // SAFETY: `start + size` is within the BOOTSTRAP_BYTES past `base`, which lie inside
            // the region (its POOL_SIZE spare bytes cover the rounding up), and was handed to
            // nobody before the CAS; the prefix is aligned for a usize.
            Ok(_) => unsafe {
                let p = base().add(start);
                p.cast::<usize>().write(block);
                return p.add(PREFIX);
            },
            Err(seen) => current = seen,
        }
    }
}

/// The size of a block of the region.
///
/// # Safety
/// `ptr` came from `alloc`.
pub(crate) unsafe fn size_of(ptr: *const u8) -> usize {
    // SAFETY: `alloc` wrote the size just before the block.
    unsafe { ptr.sub(PREFIX).cast::<usize>().read() }
}

/// True when `ptr` lies in the region.
#[inline]
pub(crate) fn contains(ptr: *const u8) -> bool {
    let base = base() as usize;
    (base..base + BOOTSTRAP_BYTES).contains(&(ptr as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_skip_chunk_headers_and_read_tag_zero() {
        // A block no chunk can hold is refused, not laid across a chunk's header.
        assert!(alloc(POOL_SIZE - POOL_OVERHEAD).is_null());
        let mut seen = vec![];
        loop {
            let p = alloc(500);
            if p.is_null() {
                break;
            }
            assert!(contains(p));
            assert_eq!(p as usize % MAX_SMALL_ALIGN, 0);
            assert!(
                p as usize % POOL_SIZE >= POOL_OVERHEAD,
                "block inside a chunk header"
            );
            assert!(
                p as usize % POOL_SIZE + 500 <= POOL_SIZE,
                "block crosses a chunk"
            );
            // SAFETY: the block is in the region, whose headers are all zero.
            let tag = unsafe { poolmalloc_core::class_tag(p, poolmalloc_core::Kind::Small) };
            assert_eq!(tag, 0);
            seen.push(p as usize);
        }
        assert!(seen.len() >= BOOTSTRAP_BYTES / POOL_SIZE * 29);
        seen.sort();
        assert!(
            seen.windows(2).all(|w| w[1] - w[0] >= 500),
            "blocks overlap"
        );
    }
}
