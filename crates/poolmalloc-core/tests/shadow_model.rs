//! Random operation sequences against a shadow model (rlsf's habit): no two live blocks overlap,
//! each is aligned and big enough, its bytes are intact when freed, the invariants hold after
//! every step, and once everything is freed and collected only each kind's reserve arena is mapped.

mod common;

use std::alloc::Layout;
use std::collections::BTreeMap;

use poolmalloc_core::config::{
    ARENA_SIZE, KINDS, MEDIUM_REQUEST_THRESHOLD, NB_SIZE_CLASSES, RESERVE_ARENAS,
};
use poolmalloc_core::{Class, Core, FreeBlock, MemPages};
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_shift: u32 },
    Free { pick: usize },
    TakeBatch { class: usize, n: usize },
    GiveBatch { pick: usize },
    Collect,
    OsFails(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0usize..=700, 0u32..=6).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        2 => (0usize..=MEDIUM_REQUEST_THRESHOLD + 1024, 0u32..=7).prop_map(|(size, align_shift)| Op::Alloc { size, align_shift }),
        4 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        2 => (0..NB_SIZE_CLASSES, 1usize..=40).prop_map(|(class, n)| Op::TakeBatch { class, n }),
        2 => any::<usize>().prop_map(|pick| Op::GiveBatch { pick }),
        1 => Just(Op::Collect),
        1 => any::<bool>().prop_map(Op::OsFails),
    ]
}

struct Live {
    layout: Layout,
    fill: u8,
}

struct Model {
    core: Core<MemPages>,
    /// Live blocks by address (the model of what the core handed out).
    live: BTreeMap<usize, Live>,
    batches: Vec<(Class, Vec<usize>)>,
    next_fill: u8,
}

impl Model {
    fn claim(&mut self, addr: usize, layout: Layout) {
        assert_eq!(
            addr % layout.align(),
            0,
            "block {addr:#x} misaligned for {layout:?}"
        );
        let end = addr + layout.size().max(1);
        if let Some((&prev, p)) = self.live.range(..=addr).next_back() {
            assert!(
                prev + p.layout.size().max(1) <= addr,
                "block {addr:#x} overlaps {prev:#x}"
            );
        }
        if let Some((&next, _)) = self.live.range(addr + 1..).next() {
            assert!(end <= next, "block {addr:#x} overlaps {next:#x}");
        }
        self.next_fill = self.next_fill.wrapping_add(1);
        let fill = self.next_fill;
        // SAFETY: the block is ours, at least `size` bytes long.
        unsafe { std::ptr::write_bytes(addr as *mut u8, fill, layout.size()) };
        self.live.insert(addr, Live { layout, fill });
    }

    fn release(&mut self, addr: usize) -> Layout {
        let live = self.live.remove(&addr).expect("model knows the block");
        // SAFETY: the block is ours until we give it back below.
        let bytes = unsafe { std::slice::from_raw_parts(addr as *const u8, live.layout.size()) };
        assert!(
            bytes.iter().all(|&b| b == live.fill),
            "block {addr:#x} was overwritten"
        );
        live.layout
    }

    fn step(&mut self, op: Op) {
        match op {
            Op::Alloc { size, align_shift } => {
                let layout = Layout::from_size_align(size.max(1), 1 << align_shift).unwrap();
                let p = self.core.alloc(layout);
                if !p.is_null() {
                    self.claim(p as usize, layout);
                }
            }
            Op::Free { pick } => {
                if self.live.is_empty() {
                    return;
                }
                let single: Vec<usize> = self
                    .live
                    .keys()
                    .copied()
                    .filter(|a| !self.batches.iter().any(|(_, b)| b.contains(a)))
                    .collect();
                if single.is_empty() {
                    return;
                }
                let addr = single[pick % single.len()];
                let layout = self.release(addr);
                // SAFETY: the block came from `alloc(layout)` and is not used again.
                unsafe { self.core.dealloc(addr as *mut u8, layout).unwrap() };
            }
            Op::TakeBatch { class, n } => {
                let class = Class::new(class).unwrap();
                let batch = common::take_chain(&self.core, class, n);
                assert!(batch.count <= n);
                let mut addrs = vec![];
                let mut b = batch.head;
                for _ in 0..batch.count {
                    addrs.push(b as usize);
                    // SAFETY: the chain holds `count` blocks.
                    b = unsafe { common::link(b) };
                }
                assert!(b.is_null(), "chain longer than its count");
                let layout = Layout::from_size_align(class.block_size(), 8).unwrap();
                for &a in &addrs {
                    self.claim(a, layout);
                }
                self.batches.push((class, addrs));
            }
            Op::GiveBatch { pick } => {
                if self.batches.is_empty() {
                    return;
                }
                let (_, addrs) = self.batches.swap_remove(pick % self.batches.len());
                let mut head: *mut FreeBlock = std::ptr::null_mut();
                for &a in addrs.iter().rev() {
                    self.release(a);
                    let block = a as *mut FreeBlock;
                    // SAFETY: the block is ours; we link the chain through its first word.
                    unsafe { common::set_link(block, head) };
                    head = block;
                }
                // SAFETY: the chain holds the blocks taken for `class`, each once.
                unsafe { common::give_chain(&self.core, head, addrs.len()) };
            }
            Op::Collect => {
                self.core.collect();
            }
            Op::OsFails(fail) => self.core.source().set_failing(fail),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 192, ..ProptestConfig::default() })]

    #[test]
    fn random_operations_keep_the_model(ops in proptest::collection::vec(op(), 1..300)) {
        let mut m = Model {
            core: Core::new(MemPages::new(3)),
            live: BTreeMap::new(),
            batches: vec![],
            next_fill: 0,
        };
        for op in ops {
            m.step(op);
            m.core.check_invariants().unwrap();
            let s = m.core.stats();
            prop_assert!(s.identity_holds(), "accounting identity broken:\n{}", s);
        }
        m.core.source().set_failing(false);
        while !m.batches.is_empty() {
            m.step(Op::GiveBatch { pick: 0 });
        }
        while !m.live.is_empty() {
            m.step(Op::Free { pick: 0 });
        }
        m.core.collect();
        m.core.check_invariants().unwrap();
        let s = m.core.stats();
        // Each kind keeps its reserve at most (A3).
        prop_assert!(s.arenas_of_kind.iter().all(|&n| n <= RESERVE_ARENAS));
        prop_assert!(s.arenas.mapped <= KINDS * RESERVE_ARENAS);
        prop_assert_eq!(s.bytes_in_blocks_out(), 0);
        prop_assert_eq!(s.large.live, 0);
        prop_assert_eq!(m.core.source().mapped_now(), s.arenas.mapped);
        prop_assert_eq!(s.bytes_mapped(), s.arenas.mapped * ARENA_SIZE);
    }
}
