//! Blocks with a tag: how every workload checks its results.
//!
//! Each block a workload allocates gets a 64-bit tag written into its first and last bytes
//! (whole words where the block has room). Before the block is freed the tag is read back: a block
//! that two live allocations share, a block handed out while still live, or a block the allocator
//! wrote into shows up as a wrong tag. Null returns and misaligned blocks are caught at once.

use std::alloc::{GlobalAlloc, Layout};
use std::fmt;

/// A failed check: the workload stops and reports this instead of a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault(pub String);

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Fault {}

pub type Result<T> = std::result::Result<T, Fault>;

/// The layout workloads use for a request of `size` bytes: the alignment Rust gives a struct of
/// that size made of words (8), or 1 for the byte-sized objects of the seed scenario.
pub fn layout_for(size: usize) -> Layout {
    let align = if size >= 8 { 8 } else { 1 };
    // `size` is at most a few KiB and `align` a power of two, so the layout is valid.
    Layout::from_size_align(size.max(1), align).expect("workload sizes make valid layouts")
}

/// The range of request sizes a workload draws from, uniformly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sizes {
    pub min: usize,
    pub max: usize,
}

impl Sizes {
    /// The small requests poolmalloc's pools serve: 8..=512 bytes.
    pub const SMALL: Sizes = Sizes { min: 8, max: 512 };
    /// The medium requests of buffers, vectors and messages: 513 B..=32 KiB.
    pub const MEDIUM: Sizes = Sizes {
        min: 513,
        max: 32 * 1024,
    };

    /// `n` sizes drawn from the range (each fits a `u16`).
    pub fn draw(self, rng: &mut crate::rng::Rng, n: usize) -> Vec<u16> {
        debug_assert!(self.max <= u16::MAX as usize);
        (0..n)
            .map(|_| rng.range(self.min, self.max) as u16)
            .collect()
    }
}

/// A tag no allocator writes by accident: a constant high half and a per-block low half.
pub fn tag(n: u64) -> u64 {
    0xA110_C8ED_0000_0000 ^ n.wrapping_mul(0x9E37_79B9)
}

/// A live block with its tag. Owns its allocation: whoever holds the `Block` frees it.
#[derive(Clone, Copy, Debug)]
pub struct Block {
    ptr: *mut u8,
    size: u32,
    tag: u64,
}

// SAFETY: a `Block` is the only handle to its allocation (workloads never copy one and keep both
// copies), and every allocator in the table allows a block to be freed by any thread.
unsafe impl Send for Block {}

impl Block {
    /// A placeholder for arrays that are filled before use; never freed.
    pub const EMPTY: Block = Block {
        ptr: std::ptr::null_mut(),
        size: 0,
        tag: 0,
    };

    pub fn addr(&self) -> usize {
        self.ptr as usize
    }

    pub fn size(&self) -> usize {
        self.size as usize
    }
}

/// Allocates `size` bytes from `a`, checks the result and writes the tag. Always inlined, as
/// `check_and_free` is: whether LLVM inlines them into a workload's loop must not depend on the
/// allocator's code size, or a benchmark's own call overhead comes and goes with it.
#[inline(always)]
pub fn alloc_tagged<A: GlobalAlloc + ?Sized>(a: &A, size: usize, tag: u64) -> Result<Block> {
    let layout = layout_for(size);
    // SAFETY: `layout_for` never makes a zero-sized layout.
    let ptr = unsafe { a.alloc(layout) };
    if ptr.is_null() {
        return Err(Fault(format!("allocator returned null for {size} bytes")));
    }
    if ptr as usize & (layout.align() - 1) != 0 {
        return Err(Fault(format!(
            "block {ptr:p} of {size} bytes is not aligned to {}",
            layout.align()
        )));
    }
    // SAFETY: `ptr` is a fresh, non-null, aligned block of `layout.size()` bytes.
    unsafe { write_tag(ptr, layout.size(), tag) };
    Ok(Block {
        ptr,
        size: layout.size() as u32,
        tag,
    })
}

/// Reads the tag back and frees the block; a wrong tag frees nothing (the memory is suspect).
#[inline(always)]
pub fn check_and_free<A: GlobalAlloc + ?Sized>(a: &A, block: Block) -> Result<()> {
    let size = block.size();
    // SAFETY: `block` came from `alloc_tagged` (the only constructor besides EMPTY, which
    // workloads never free) with this size and has not been freed: whoever holds it owns it.
    let found = unsafe { read_tag(block.ptr, size) };
    let expected = tag_words(block.tag, size);
    if found != expected {
        return Err(Fault(format!(
            "block {:p} ({size} bytes) changed while live: first/last {:#x}/{:#x} expected, \
             {:#x}/{:#x} found (two live blocks overlap, or the allocator wrote into a live block)",
            block.ptr, expected[0], expected[1], found[0], found[1]
        )));
    }
    // SAFETY: `block` came from `a` with `layout_for(size)` (the layout it was allocated with)
    // and is freed once, here; nobody uses it afterwards.
    unsafe { a.dealloc(block.ptr, layout_for(size)) };
    Ok(())
}

/// Frees every block, checking each; reports the first fault after freeing what it can.
pub fn check_and_free_all<A: GlobalAlloc + ?Sized>(
    a: &A,
    blocks: impl IntoIterator<Item = Block>,
) -> Result<()> {
    let mut first = Ok(());
    for b in blocks {
        if let Err(e) = check_and_free(a, b) {
            if first.is_ok() {
                first = Err(e);
            }
        }
    }
    first
}

/// What `read_tag` returns for an intact block of `size` bytes.
fn tag_words(tag: u64, size: usize) -> [u64; 2] {
    match size {
        16.. => [tag, tag],
        8..=15 => [tag, tag >> 56],
        _ => [tag & 0xFF, tag & 0xFF],
    }
}

/// Writes the tag: as whole words at both ends of blocks of 16 bytes or more; as the first word
/// and the tag's top byte in the last byte for 8..=15 (for 8 bytes that byte is the word's own
/// top byte, little-endian); as the low byte at both ends below 8.
///
/// # Safety
/// `ptr` is valid for writes of `size` bytes, `size >= 1`.
#[inline]
unsafe fn write_tag(ptr: *mut u8, size: usize, tag: u64) {
    let [first, last] = tag_words(tag, size);
    // Words only when `size >= 8`; the two words (`size >= 16`) or the word and the byte
    // (`8..=15`) overlap only where they agree.
    // SAFETY: every (unaligned) access lies within the `size` bytes the caller owns.
    unsafe {
        match size {
            16.. => {
                ptr.cast::<u64>().write_unaligned(first);
                ptr.add(size - 8).cast::<u64>().write_unaligned(last);
            }
            8..=15 => {
                ptr.cast::<u64>().write_unaligned(first);
                ptr.add(size - 1).write(last as u8);
            }
            _ => {
                ptr.write(first as u8);
                ptr.add(size - 1).write(last as u8);
            }
        }
    }
}

/// The first and last word (or byte) of a block, as `write_tag` wrote them.
///
/// # Safety
/// `ptr` is valid for reads of `size` bytes, `size >= 1`.
#[inline]
unsafe fn read_tag(ptr: *const u8, size: usize) -> [u64; 2] {
    // SAFETY: the same accesses as `write_tag`'s, within the block (caller).
    unsafe {
        match size {
            16.. => [
                ptr.cast::<u64>().read_unaligned(),
                ptr.add(size - 8).cast::<u64>().read_unaligned(),
            ],
            8..=15 => [
                ptr.cast::<u64>().read_unaligned(),
                ptr.add(size - 1).read() as u64,
            ],
            _ => [ptr.read() as u64, ptr.add(size - 1).read() as u64],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::System;

    #[test]
    fn intact_blocks_pass_for_every_size_kind() {
        for size in [1, 3, 7, 8, 9, 15, 16, 17, 64, 512] {
            let b = alloc_tagged(&System, size, tag(size as u64)).unwrap();
            check_and_free(&System, b).unwrap();
        }
    }

    #[test]
    fn a_scribbled_block_is_reported_and_names_the_address() {
        for size in [1, 8, 12, 100] {
            let b = alloc_tagged(&System, size, tag(1)).unwrap();
            // SAFETY: the block is live and `size` bytes long.
            unsafe { b.ptr.add(size - 1).write(0x5A) };
            let err = check_and_free(&System, b).unwrap_err();
            assert!(err.0.contains(&format!("{:p}", b.ptr)), "{err}");
            // The faulty block was not freed; free it here.
            // SAFETY: allocated above with this layout, not freed by the failed check.
            unsafe { System.dealloc(b.ptr, layout_for(size)) };
        }
    }
}
