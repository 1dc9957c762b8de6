//! Size classes: the table built once at compile time, and the request → class mapping.

use crate::config::{
    CARVE_BYTES, GRAIN, GRAIN_SHIFT, MAX_SMALL_ALIGN, NB_SMALL_SIZE_CLASSES, POOL_OVERHEAD,
    POOL_SIZE, SMALL_REQUEST_THRESHOLD,
};

/// A size class: index `i` serves blocks of `(i + 1) * GRAIN` bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class(u8);

impl Class {
    /// The class with index `index`, if there is one.
    pub const fn new(index: usize) -> Option<Class> {
        if index < NB_SMALL_SIZE_CLASSES {
            Some(Class(index as u8))
        } else {
            None
        }
    }

    /// The class index, 0 to `NB_SMALL_SIZE_CLASSES - 1`.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every class, smallest first.
    pub fn all() -> impl Iterator<Item = Class> {
        (0..NB_SMALL_SIZE_CLASSES).map(|i| Class(i as u8))
    }

    /// Bytes in one block of the class.
    #[inline(always)]
    pub const fn block_size(self) -> usize {
        CLASS_TABLE[self.index()].block_size
    }

    /// Blocks one pool of the class holds.
    pub const fn blocks_per_pool(self) -> usize {
        CLASS_TABLE[self.index()].blocks_per_pool
    }

    /// Fresh blocks a thread carves from its pool at a time.
    #[inline]
    pub const fn carve(self) -> usize {
        CLASS_TABLE[self.index()].carve
    }
}

/// What the allocator needs to know about one class, computed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassInfo {
    /// Bytes in one block.
    pub block_size: usize,
    /// Blocks one pool holds.
    pub blocks_per_pool: usize,
    /// Bytes of a pool that no block can use: `(POOL_SIZE - POOL_OVERHEAD) % block_size`.
    pub pool_tail_waste: usize,
    /// Fresh blocks a thread carves from its pool at a time (`CARVE_BYTES` worth, at least one).
    pub carve: usize,
}

const fn class_info(index: usize) -> ClassInfo {
    let block_size = (index + 1) * GRAIN;
    let usable = POOL_SIZE - POOL_OVERHEAD;
    let blocks_per_pool = usable / block_size;
    let mut carve = CARVE_BYTES / block_size;
    if carve == 0 {
        carve = 1;
    }
    if carve > blocks_per_pool {
        carve = blocks_per_pool;
    }
    ClassInfo {
        block_size,
        blocks_per_pool,
        pool_tail_waste: usable % block_size,
        carve,
    }
}

const fn build_table() -> [ClassInfo; NB_SMALL_SIZE_CLASSES] {
    let mut table = [class_info(0); NB_SMALL_SIZE_CLASSES];
    let mut i = 0;
    while i < NB_SMALL_SIZE_CLASSES {
        table[i] = class_info(i);
        i += 1;
    }
    table
}

/// The size-class table, built at compile time.
pub const CLASS_TABLE: [ClassInfo; NB_SMALL_SIZE_CLASSES] = build_table();

/// `log2(SMALL_REQUEST_THRESHOLD / MAX_SMALL_ALIGN)`: shifting `align - 1` left by this puts any
/// alignment above MAX_SMALL_ALIGN at or past the threshold (see `class_of`).
const ALIGN_SHIFT: u32 =
    SMALL_REQUEST_THRESHOLD.trailing_zeros() - MAX_SMALL_ALIGN.trailing_zeros();
const _: () = assert!(SMALL_REQUEST_THRESHOLD.is_power_of_two());
const _: () = assert!((MAX_SMALL_ALIGN - 1) << ALIGN_SHIFT < SMALL_REQUEST_THRESHOLD);
const _: () = assert!((2 * MAX_SMALL_ALIGN - 1) << ALIGN_SHIFT >= SMALL_REQUEST_THRESHOLD);

/// True when `class_of(size, align)` is a class (`align` a power of two): its test split in two,
/// as `s | a << ALIGN_SHIFT` is below the power-of-two threshold exactly when both parts are.
/// Two plain comparisons let the compiler fold the alignment test away where it knows the
/// alignment (a `dealloc` whose layout the caller just built), which it did not do with the
/// combined test.
#[inline(always)]
pub const fn is_small(size: usize, align: usize) -> bool {
    size <= SMALL_REQUEST_THRESHOLD && align <= MAX_SMALL_ALIGN
}

/// The class serving a request of `size` bytes aligned to `align` (a power of two), or `None`
/// when the request belongs to the large path (too big, or an alignment no class honours).
/// A zero-size request gets the smallest class.
///
/// This is on every allocation's fast path, so it is branch-light arithmetic: with
/// `s = size - 1` and `a = align - 1`, the request is small exactly when `s | a << ALIGN_SHIFT`
/// stays below the threshold (both fit in its bits), and `(s | a | (GRAIN - 1)) >> GRAIN_SHIFT` is
/// the class: one below the size rounded up to the grain, or to 16 for 16-byte alignment.
#[inline(always)]
pub const fn class_of(size: usize, align: usize) -> Option<Class> {
    let s = size.saturating_sub(1);
    let a = align.wrapping_sub(1);
    if (s | a << ALIGN_SHIFT) >= SMALL_REQUEST_THRESHOLD {
        return None;
    }
    Some(Class(((s | a | (GRAIN - 1)) >> GRAIN_SHIFT) as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_size_and_alignment_gets_the_smallest_fitting_aligned_class() {
        let mut align = 1;
        while align <= 4096 {
            for size in 0..=SMALL_REQUEST_THRESHOLD + 1 {
                let got = class_of(size, align);
                if size > SMALL_REQUEST_THRESHOLD || align > MAX_SMALL_ALIGN {
                    assert_eq!(
                        got, None,
                        "size {size} align {align} must take the large path"
                    );
                    continue;
                }
                let class = got.unwrap_or_else(|| panic!("size {size} align {align}: no class"));
                let block = class.block_size();
                assert!(
                    block >= size.max(1),
                    "size {size} align {align}: block {block}"
                );
                assert_eq!(block % align, 0, "size {size} align {align}: block {block}");
                // Blocks start at POOL_OVERHEAD + k * block in a POOL_SIZE-aligned pool.
                assert_eq!((POOL_OVERHEAD + block) % align, 0);
                let smaller = Class::all()
                    .find(|c| c.block_size() >= size.max(1) && c.block_size() % align == 0)
                    .unwrap();
                assert_eq!(
                    smaller, class,
                    "size {size} align {align}: not the smallest"
                );
            }
            align *= 2;
        }
    }

    #[test]
    fn is_small_agrees_with_class_of() {
        let mut align = 1;
        while align <= 4096 {
            for size in 0..=4 * SMALL_REQUEST_THRESHOLD {
                assert_eq!(
                    is_small(size, align),
                    class_of(size, align).is_some(),
                    "size {size}, align {align}"
                );
            }
            align *= 2;
        }
    }

    #[test]
    fn table_is_consistent() {
        for class in Class::all() {
            let info = CLASS_TABLE[class.index()];
            assert_eq!(info.block_size, (class.index() + 1) * GRAIN);
            assert!(info.blocks_per_pool >= 1);
            assert_eq!(
                POOL_OVERHEAD + info.blocks_per_pool * info.block_size + info.pool_tail_waste,
                POOL_SIZE
            );
            assert!(info.carve >= 1 && info.carve <= info.blocks_per_pool);
            assert!(info.carve * info.block_size <= CARVE_BYTES.max(info.block_size));
        }
        assert_eq!(Class::new(NB_SMALL_SIZE_CLASSES), None);
    }

    /// Prints the table (`cargo test -p poolmalloc-core print_size_class_table -- --nocapture`).
    #[test]
    fn print_size_class_table() {
        println!("class  block  blocks/pool  tail waste  carve");
        for class in Class::all() {
            let info = CLASS_TABLE[class.index()];
            println!(
                "{:>5}  {:>5}  {:>11}  {:>10}  {:>5}",
                class.index(),
                info.block_size,
                info.blocks_per_pool,
                info.pool_tail_waste,
                info.carve
            );
        }
    }
}
