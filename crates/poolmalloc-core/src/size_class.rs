//! Size classes: the table built once at compile time, and the request → class mapping.
//!
//! Small classes (index below `NB_SMALL_SIZE_CLASSES`) are pymalloc's: every multiple of the
//! grain up to `SMALL_REQUEST_THRESHOLD`, in `POOL_SIZE` pools. Medium classes follow: four per
//! doubling up to `MEDIUM_REQUEST_THRESHOLD` (640, 768, 896, 1024, 1280, ... 32768 bytes), in
//! `MEDIUM_POOL_SIZE` pools (`Kind::Medium`).

use crate::config::{
    Kind, CARVE_BYTES, GRAIN, GRAIN_SHIFT, MAX_MEDIUM_ALIGN, MAX_SMALL_ALIGN,
    MEDIUM_CLASSES_PER_DOUBLING, MEDIUM_REQUEST_THRESHOLD, NB_SIZE_CLASSES, NB_SMALL_SIZE_CLASSES,
    POOL_OVERHEAD, POOL_SIZE, SMALL_REQUEST_THRESHOLD,
};

/// A size class: index `i` below `NB_SMALL_SIZE_CLASSES` serves blocks of `(i + 1) * GRAIN`
/// bytes; the medium classes follow (`medium_class_of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Class(u8);

impl Class {
    /// The class with index `index`, if there is one.
    pub const fn new(index: usize) -> Option<Class> {
        if index < NB_SIZE_CLASSES {
            Some(Class(index as u8))
        } else {
            None
        }
    }

    /// The class index, 0 to `NB_SIZE_CLASSES - 1`.
    #[inline(always)]
    pub const fn index(self) -> usize {
        self.0 as usize
    }

    /// Every class, smallest first.
    pub fn all() -> impl Iterator<Item = Class> {
        (0..NB_SIZE_CLASSES).map(|i| Class(i as u8))
    }

    /// The kind of pool the class is served from.
    #[inline(always)]
    pub const fn kind(self) -> Kind {
        if self.index() < NB_SMALL_SIZE_CLASSES {
            Kind::Small
        } else {
            Kind::Medium
        }
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

    /// Fresh blocks a thread carves from its pool at a time, at most.
    #[inline]
    pub const fn carve(self) -> usize {
        CLASS_TABLE[self.index()].carve
    }

    /// Fresh blocks a carve at byte `offset` of a pool hands out (the pool's room aside): at
    /// most `carve()`, and no block past the `CARVE_BYTES` boundary that follows the first one
    /// — a carve that ran past it by a block would touch a page for that block alone (the first
    /// carve of every small pool did, by the header's 64 bytes).
    #[inline]
    pub const fn carve_at(self, offset: usize) -> usize {
        let size = self.block_size();
        let end = (offset + size).next_multiple_of(CARVE_BYTES);
        let fit = (end - offset) / size;
        if fit < self.carve() {
            fit
        } else {
            self.carve()
        }
    }
}

/// What the allocator needs to know about one class, computed once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClassInfo {
    /// Bytes in one block.
    pub block_size: usize,
    /// Blocks one pool holds.
    pub blocks_per_pool: usize,
    /// Bytes of one pool of the class (its kind's pool size).
    pub pool_size: usize,
    /// Bytes of a pool that no block can use: `(pool_size - POOL_OVERHEAD) % block_size`.
    pub pool_tail_waste: usize,
    /// Fresh blocks a thread carves from its pool at a time (`CARVE_BYTES` worth, at least
    /// one).
    pub carve: usize,
}

/// Bytes in one block of medium class `m` (counted from the first medium class): the
/// doubling's base times 5/4, 6/4, 7/4, 8/4.
const fn medium_block_size(m: usize) -> usize {
    let quarter = (SMALL_REQUEST_THRESHOLD / MEDIUM_CLASSES_PER_DOUBLING)
        << (m / MEDIUM_CLASSES_PER_DOUBLING);
    (MEDIUM_CLASSES_PER_DOUBLING + 1 + m % MEDIUM_CLASSES_PER_DOUBLING) * quarter
}

const fn class_info(index: usize) -> ClassInfo {
    let (block_size, pool_size) = if index < NB_SMALL_SIZE_CLASSES {
        ((index + 1) * GRAIN, POOL_SIZE)
    } else {
        (
            medium_block_size(index - NB_SMALL_SIZE_CLASSES),
            Kind::Medium.pool_size(),
        )
    };
    let usable = pool_size - POOL_OVERHEAD;
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
        pool_size,
        blocks_per_pool,
        pool_tail_waste: usable % block_size,
        carve,
    }
}

const fn build_table() -> [ClassInfo; NB_SIZE_CLASSES] {
    let mut table = [class_info(0); NB_SIZE_CLASSES];
    let mut i = 0;
    while i < NB_SIZE_CLASSES {
        table[i] = class_info(i);
        i += 1;
    }
    table
}

/// The size-class table, built at compile time.
pub const CLASS_TABLE: [ClassInfo; NB_SIZE_CLASSES] = build_table();

/// True when no block of any class starts at a multiple of `POOL_SIZE` in its pool: a chain's
/// end, its pool's header, is the one address of a pool at offset 0 modulo `POOL_SIZE`
/// (`FreeBlock::is_end`), for both kinds of pool.
const fn no_block_at_small_pool_boundary() -> bool {
    let mut i = 0;
    while i < NB_SIZE_CLASSES {
        let c = CLASS_TABLE[i];
        let mut k = 0;
        while k < c.blocks_per_pool {
            if (POOL_OVERHEAD + k * c.block_size) % POOL_SIZE == 0 {
                return false;
            }
            k += 1;
        }
        i += 1;
    }
    true
}
const _: () = assert!(no_block_at_small_pool_boundary());
// Every medium class fits a block in its pool, and a medium block is a multiple of 128 bytes
// (so aligned as `MAX_MEDIUM_ALIGN` says) larger than any small block.
const _: () = {
    let mut i = NB_SMALL_SIZE_CLASSES;
    while i < NB_SIZE_CLASSES {
        assert!(CLASS_TABLE[i].blocks_per_pool >= 1);
        assert!(CLASS_TABLE[i].block_size % (2 * MAX_MEDIUM_ALIGN) == 0);
        assert!(CLASS_TABLE[i].block_size > SMALL_REQUEST_THRESHOLD);
        i += 1;
    }
    assert!(CLASS_TABLE[NB_SIZE_CLASSES - 1].block_size == MEDIUM_REQUEST_THRESHOLD);
};

/// The medium class serving a request of `size` bytes aligned to `align` (a power of two) that
/// `class_of` sends elsewhere, or `None` when it belongs to the large path: too big, or aligned
/// above `MAX_MEDIUM_ALIGN`. Off the small fast path: with `s = size - 1` and `e` its top bit,
/// the class is the doubling (`e`) and the quarter of it (`s`'s next two bits) that `s` falls in.
#[inline]
pub const fn medium_class_of(size: usize, align: usize) -> Option<Class> {
    if size > MEDIUM_REQUEST_THRESHOLD || align > MAX_MEDIUM_ALIGN {
        return None;
    }
    // A small size with an alignment no small class honours gets the smallest medium class.
    let s = if size <= SMALL_REQUEST_THRESHOLD {
        SMALL_REQUEST_THRESHOLD
    } else {
        size - 1
    };
    let e = usize::BITS - 1 - s.leading_zeros();
    let base = SMALL_REQUEST_THRESHOLD.trailing_zeros();
    let doubling = (e - base) as usize;
    let quarter = (s >> (e - 2)) & (MEDIUM_CLASSES_PER_DOUBLING - 1);
    Some(Class(
        (NB_SMALL_SIZE_CLASSES + doubling * MEDIUM_CLASSES_PER_DOUBLING + quarter) as u8,
    ))
}
const _: () = assert!(MEDIUM_CLASSES_PER_DOUBLING == 4);

/// The class serving a request, small or medium; `None` for the large path. Off the fast
/// paths, which ask `class_of` first and `medium_class_of` only when it says no.
#[inline]
pub const fn pool_class_of(size: usize, align: usize) -> Option<Class> {
    match class_of(size, align) {
        Some(class) => Some(class),
        None => medium_class_of(size, align),
    }
}

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
    let index = (s | a | (GRAIN - 1)) >> GRAIN_SHIFT;
    // SAFETY: `s` and `a << ALIGN_SHIFT` are below SMALL_REQUEST_THRESHOLD (just checked), so
    // `a` is too and `index` is below NB_SMALL_SIZE_CLASSES. Telling the compiler saves the
    // fast path a mask (the `u8` narrowing of an index it could not bound).
    unsafe { core::hint::assert_unchecked(index < NB_SMALL_SIZE_CLASSES) };
    Some(Class(index as u8))
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
    fn every_medium_size_and_alignment_gets_the_smallest_fitting_aligned_class() {
        let mut align = 1;
        while align <= 4096 {
            for size in 0..=MEDIUM_REQUEST_THRESHOLD + 1 {
                if class_of(size, align).is_some() {
                    continue;
                }
                let got = medium_class_of(size, align);
                if size > MEDIUM_REQUEST_THRESHOLD || align > MAX_MEDIUM_ALIGN {
                    assert_eq!(got, None, "size {size} align {align}: large path");
                    continue;
                }
                let class = got.unwrap_or_else(|| panic!("size {size} align {align}: no class"));
                assert_eq!(class.kind(), Kind::Medium);
                let block = class.block_size();
                assert!(block >= size, "size {size} align {align}: block {block}");
                // Blocks start at POOL_OVERHEAD + k * block in a pool-aligned pool.
                for k in 0..class.blocks_per_pool() {
                    assert_eq!((POOL_OVERHEAD + k * block) % align, 0, "{size} {align} {k}");
                }
                let smallest = Class::all()
                    .filter(|c| c.kind() == Kind::Medium)
                    .find(|c| c.block_size() >= size)
                    .unwrap();
                assert_eq!(
                    smallest, class,
                    "size {size} align {align}: not the smallest"
                );
                // Four classes per doubling: rounding up wastes at most a fifth of the block.
                if size > SMALL_REQUEST_THRESHOLD {
                    assert!((block - size) * 5 <= block, "size {size}: block {block}");
                }
            }
            align *= 2;
        }
    }

    #[test]
    fn table_is_consistent() {
        for class in Class::all() {
            let info = CLASS_TABLE[class.index()];
            if class.kind() == Kind::Small {
                assert_eq!(info.block_size, (class.index() + 1) * GRAIN);
            } else {
                let before = CLASS_TABLE[class.index() - 1].block_size;
                assert!(info.block_size > before);
            }
            assert_eq!(info.pool_size, class.kind().pool_size());
            assert!(info.blocks_per_pool >= 1);
            assert_eq!(
                POOL_OVERHEAD + info.blocks_per_pool * info.block_size + info.pool_tail_waste,
                info.pool_size
            );
            assert!(info.carve >= 1 && info.carve <= info.blocks_per_pool);
            let most = CARVE_BYTES.max(info.block_size);
            assert!(info.carve * info.block_size <= most);
        }
        assert_eq!(Class::new(NB_SIZE_CLASSES), None);
    }

    #[test]
    fn a_carve_ends_at_the_page_after_its_first_block() {
        let c256 = Class::new(31).unwrap();
        assert_eq!(c256.block_size(), 256);
        // The first carve, after the header: the page's rest, not a block into the next.
        assert_eq!(
            c256.carve_at(POOL_OVERHEAD),
            (CARVE_BYTES - POOL_OVERHEAD) / 256
        );
        // A carve that starts a block short of the boundary runs to the next one.
        let off = CARVE_BYTES - 192;
        assert_eq!(c256.carve_at(off), c256.carve());
        assert!(off + c256.carve() * 256 <= 2 * CARVE_BYTES);
        for class in Class::all() {
            for offset in [POOL_OVERHEAD, CARVE_BYTES + 8, 3 * CARVE_BYTES - 8] {
                let n = class.carve_at(offset);
                assert!(n >= 1 && n <= class.carve(), "{class:?} at {offset}");
                let size = class.block_size();
                let end = offset + n * size;
                // The last block ends in the page (CARVE_BYTES) where the first block ends,
                // or the first block is the whole carve.
                assert!(n == 1 || end <= (offset + size).next_multiple_of(CARVE_BYTES));
            }
        }
    }

    /// Prints the table (`cargo test -p poolmalloc-core print_size_class_table -- --nocapture`):
    /// every class, its pool size, blocks per pool and worst-case waste (the rounding of the
    /// smallest request it serves, and the pool's tail, per block).
    #[test]
    fn print_size_class_table() {
        println!("class  kind    block  pool KiB  blocks/pool  tail waste  carve  worst waste");
        let mut smallest_request = 1;
        for class in Class::all() {
            let info = CLASS_TABLE[class.index()];
            let per_block_tail = info.pool_tail_waste as f64 / info.blocks_per_pool as f64;
            let worst = (info.block_size - smallest_request) as f64 + per_block_tail;
            println!(
                "{:>5}  {:<6}  {:>5}  {:>8}  {:>11}  {:>10}  {:>5}  {:>10.1}%",
                class.index(),
                format!("{:?}", class.kind()),
                info.block_size,
                info.pool_size / 1024,
                info.blocks_per_pool,
                info.pool_tail_waste,
                info.carve,
                100.0 * worst / (info.block_size as f64 + per_block_tail),
            );
            smallest_request = info.block_size + 1;
        }
    }
}
