//! The core is `Sync`: threads take and give batches of every class at once; afterwards every
//! count and the invariants agree, and the blocks were never shared.

mod common;

use poolmalloc_core::config::{NB_SMALL_SIZE_CLASSES, RESERVE_ARENAS};
use poolmalloc_core::{Class, Core, FreeBlock, MemPages};
use rayon::prelude::*;

fn chain(head: *mut FreeBlock, count: usize) -> Vec<*mut FreeBlock> {
    let mut out = Vec::with_capacity(count);
    let mut b = head;
    for _ in 0..count {
        out.push(b);
        // SAFETY: the chain holds `count` blocks.
        b = unsafe { common::link(b) };
    }
    out
}

#[test]
fn threads_take_and_give_batches_concurrently() {
    let core = Core::new(MemPages::new(64));
    (0..8u64).into_par_iter().for_each(|t| {
        let mut rng = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut held: Vec<(Class, Vec<*mut FreeBlock>)> = vec![];
        for _ in 0..3000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            if held.len() < 24 && rng % 3 != 0 {
                let class = Class::new((rng >> 8) as usize % NB_SMALL_SIZE_CLASSES).unwrap();
                let batch = common::take_chain(&core, class, 1 + (rng >> 20) as usize % 32);
                let blocks = chain(batch.head, batch.count);
                for &b in &blocks {
                    // Stamp each block with its owner; checked before it goes back.
                    // SAFETY: the block is ours and at least 8 bytes.
                    unsafe { b.cast::<u64>().write(t ^ b as u64) };
                }
                held.push((class, blocks));
            } else if !held.is_empty() {
                let (_, blocks) = held.swap_remove((rng >> 4) as usize % held.len());
                let mut head: *mut FreeBlock = std::ptr::null_mut();
                for &b in &blocks {
                    // SAFETY: ours until given back.
                    unsafe {
                        assert_eq!(b.cast::<u64>().read(), t ^ b as u64, "block shared");
                        common::set_link(b, head);
                    }
                    head = b;
                }
                // SAFETY: the chain holds blocks taken for `class`, each once.
                unsafe { common::give_chain(&core, head, blocks.len()) };
            }
        }
        for (_, blocks) in held {
            for w in blocks.windows(2) {
                // SAFETY: relink the chain before giving it back.
                unsafe { common::set_link(w[0], w[1]) };
            }
            // SAFETY: the chain, just relinked, holds blocks taken for `class`, each once.
            unsafe { common::give_chain(&core, blocks[0], blocks.len()) };
        }
    });
    core.check_invariants().unwrap();
    let s = core.stats();
    assert_eq!(s.bytes_in_blocks_out(), 0);
    assert_eq!(s.pools_in_use(), 0);
    assert!(s.identity_holds());
    assert_eq!(s.arenas.mapped, RESERVE_ARENAS);
    assert!(s.arenas.mapped_ever >= 1);
}
