//! Chains of blocks from the core-held pools, one block at a time (`alloc_block`, `free_block`):
//! what a caller without a thread cache does, as the tests drive the core.

use poolmalloc_core::{Batch, Class, Core, FreeBlock, MemPages};

/// The tests' own link in the first word of a block they hold: a plain pointer (a block handed
/// out is the program's, and the allocator's encoded links are not the tests' business).
///
/// # Safety
/// `block` is a block the test holds, linked by `set_link`.
pub unsafe fn link(block: *mut FreeBlock) -> *mut FreeBlock {
    // SAFETY: the block is the test's (precondition).
    unsafe { block.cast::<*mut FreeBlock>().read() }
}

/// Links `block`, which the test holds, to `next`.
///
/// # Safety
/// `block` is a block the test holds.
pub unsafe fn set_link(block: *mut FreeBlock, next: *mut FreeBlock) {
    // SAFETY: the block is the test's (precondition).
    unsafe { block.cast::<*mut FreeBlock>().write(next) }
}

/// Up to `n` blocks of `class` as a chain; fewer when the OS refuses memory.
pub fn take_chain(core: &Core<MemPages>, class: Class, n: usize) -> Batch {
    let mut head: *mut FreeBlock = std::ptr::null_mut();
    let mut count = 0;
    while count < n {
        let Some(block) = core.alloc_block(class) else {
            break;
        };
        let block = block.as_ptr().cast::<FreeBlock>();
        // SAFETY: the block was just taken and is ours: its first word links the chain.
        unsafe { set_link(block, head) };
        head = block;
        count += 1;
    }
    Batch { head, count }
}

/// Frees a chain of `count` blocks taken from `core`.
///
/// # Safety
/// The chain holds `count` distinct blocks of `core` that are out, linked through their first
/// word, and nobody uses them afterwards.
pub unsafe fn give_chain(core: &Core<MemPages>, head: *mut FreeBlock, count: usize) {
    let mut b = head;
    for _ in 0..count {
        // SAFETY: a block of the chain (precondition); read its link before freeing it.
        unsafe {
            let next = link(b);
            core.free_block(b.cast()).unwrap();
            b = next;
        }
    }
}
