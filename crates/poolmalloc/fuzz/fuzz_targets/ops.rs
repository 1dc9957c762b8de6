//! Random operation sequences against a shadow model: allocations of 0..=1 MiB aligned 1..=2 MiB
//! from the global allocator and from a `Heap`, frees in any order, reallocs, hand-offs of
//! blocks to another thread (which checks and frees them, and hands back blocks of its own), and
//! collects. The model checks every block's alignment, that no two live blocks overlap, that
//! each block's bytes are what was written, zeroing, and — after each input — the allocators'
//! invariants and that the heap's stats count exactly the blocks the model holds. It runs with
//! the hardening on (secure mode, the double-free check), and with the `debug` feature in debug
//! mode: a false report of either aborts.
#![no_main]

use std::alloc::{GlobalAlloc, Layout};
use std::collections::BTreeMap;
use std::sync::LazyLock;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use poolmalloc::{Heap, PoolMalloc};
/// The class a request lands in, in this build: debug mode adds a header and pads.
#[cfg(feature = "debug")]
use poolmalloc::debug::{class_for as class_of, medium_class_for as medium_class_of};
use poolmalloc_core::config::MEDIUM_REQUEST_THRESHOLD;
#[cfg(not(feature = "debug"))]
use poolmalloc_core::{class_of, medium_class_of};

#[global_allocator]
static GLOBAL: PoolMalloc = PoolMalloc;

/// One heap for every input, so state carries over as it would in a long-running program.
static HEAP: LazyLock<Heap> = LazyLock::new(Heap::new);

const MAX_SIZE: u32 = 1 << 20;
/// Alignments 2^0 ..= 2^21 (2 MiB).
const ALIGN_SHIFTS: u8 = 22;
/// Bytes checked in full; beyond, the first and last of them and every 4 KiB in between.
const FULL_CHECK: usize = 64 * 1024;
/// Most blocks the other thread allocates and hands back in one sync.
const MAX_RETURNED: u8 = 16;

#[derive(Arbitrary, Debug)]
enum Op {
    Alloc {
        size: Size,
        align_shift: u8,
        zeroed: bool,
        heap: bool,
    },
    Free {
        index: u16,
    },
    Realloc {
        index: u16,
        size: Size,
    },
    HandOff {
        index: u16,
    },
    Sync {
        returned: u8,
        size: Size,
    },
    Collect,
}

/// Small or medium (the pools' ranges), sometimes anything up to 1 MiB.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Size {
    Small(u16),
    Medium(u16),
    Any(u32),
}

impl Size {
    fn bytes(self) -> usize {
        match self {
            Size::Small(s) => (s % 600) as usize,
            Size::Medium(s) => 500 + (s as usize) % (MEDIUM_REQUEST_THRESHOLD - 400),
            Size::Any(s) => (s % (MAX_SIZE + 1)) as usize,
        }
    }
}

#[derive(Debug)]
struct Block {
    ptr: *mut u8,
    layout: Layout,
    heap: bool,
    seed: u8,
}

// SAFETY: a block is plain memory owned by whoever holds the record; allocators allow freeing it
// from any thread.
unsafe impl Send for Block {}

fn allocator(heap: bool) -> &'static dyn GlobalAlloc {
    if heap {
        &*HEAP
    } else {
        &GLOBAL
    }
}

fn pattern(seed: u8, i: usize) -> u8 {
    seed ^ (i as u8) ^ ((i >> 8) as u8)
}

fn offsets(len: usize) -> Box<dyn Iterator<Item = usize>> {
    if len <= FULL_CHECK {
        Box::new(0..len)
    } else {
        let edge = 4096;
        Box::new(
            (0..edge)
                .chain((edge..len - edge).step_by(4096))
                .chain(len - edge..len),
        )
    }
}

impl Block {
    fn new(size: usize, align_shift: u8, zeroed: bool, heap: bool, seed: u8) -> Option<Block> {
        let layout = Layout::from_size_align(size, 1 << (align_shift % ALIGN_SHIFTS)).ok()?;
        let a = allocator(heap);
        // SAFETY: a valid layout (size 0 is served by the smallest class, as the core's essay says).
        let ptr = unsafe {
            if zeroed {
                a.alloc_zeroed(layout)
            } else {
                a.alloc(layout)
            }
        };
        assert!(!ptr.is_null(), "out of memory for {layout:?}");
        assert_eq!(
            ptr as usize % layout.align(),
            0,
            "misaligned for {layout:?}"
        );
        if zeroed {
            for i in offsets(size) {
                // SAFETY: inside the block.
                assert_eq!(unsafe { ptr.add(i).read() }, 0, "alloc_zeroed byte {i}");
            }
        }
        let block = Block {
            ptr,
            layout,
            heap,
            seed,
        };
        block.fill(0);
        Some(block)
    }

    fn fill(&self, from: usize) {
        for i in from..self.layout.size() {
            // SAFETY: inside the block, which the model owns.
            unsafe { self.ptr.add(i).write(pattern(self.seed, i)) };
        }
    }

    fn check(&self, len: usize) {
        for i in offsets(len) {
            // SAFETY: inside the block.
            let got = unsafe { self.ptr.add(i).read() };
            assert_eq!(got, pattern(self.seed, i), "byte {i} of {:?}", self.layout);
        }
    }

    fn free(self) {
        self.check(self.layout.size());
        // SAFETY: allocated by this allocator with this layout, and the model lets go of it.
        unsafe { allocator(self.heap).dealloc(self.ptr, self.layout) };
    }

    fn realloc(&mut self, new_size: usize) {
        // GlobalAlloc::realloc requires a non-zero new size.
        if new_size == 0 {
            return;
        }
        let Ok(new_layout) = Layout::from_size_align(new_size, self.layout.align()) else {
            return;
        };
        // SAFETY: the block's own allocator and layout; the new layout is valid.
        let p = unsafe { allocator(self.heap).realloc(self.ptr, self.layout, new_size) };
        assert!(!p.is_null(), "realloc to {new_layout:?} failed");
        assert_eq!(p as usize % new_layout.align(), 0);
        let old = self.layout.size();
        self.ptr = p;
        self.layout = new_layout;
        self.check(old.min(new_size));
        self.fill(old.min(new_size));
    }

    fn small(&self) -> bool {
        let (size, align) = (self.layout.size(), self.layout.align());
        class_of(size, align).or_else(|| medium_class_of(size, align)).is_some()
    }

    /// A zero-size request the large path serves gets a dangling pointer, not a block (debug
    /// mode lays out a real one).
    fn is_block(&self) -> bool {
        cfg!(feature = "debug") || self.small() || self.layout.size() > 0
    }
}

/// The blocks an input holds: on this thread, and handed off to the other one.
#[derive(Default)]
struct Model {
    blocks: Vec<Block>,
    handed_off: Vec<Block>,
    seed: u8,
}

impl Model {
    fn next_seed(&mut self) -> u8 {
        self.seed = self.seed.wrapping_add(0x9d);
        self.seed
    }

    fn add(&mut self, block: Block) {
        self.blocks.push(block);
    }

    fn take(&mut self, index: u16) -> Option<Block> {
        if self.blocks.is_empty() {
            return None;
        }
        let i = index as usize % self.blocks.len();
        Some(self.blocks.swap_remove(i))
    }

    fn check_disjoint(&self) {
        let mut ranges = BTreeMap::new();
        let blocks = self
            .blocks
            .iter()
            .chain(&self.handed_off)
            .filter(|b| b.is_block());
        for b in blocks.clone() {
            let start = b.ptr as usize;
            // Zero-size blocks still take a block: count one byte.
            ranges.insert(start, start + b.layout.size().max(1));
        }
        let mut end = 0;
        for (&start, &stop) in &ranges {
            assert!(start >= end, "blocks overlap at {start:#x}");
            end = stop;
        }
        assert_eq!(ranges.len(), blocks.count(), "two blocks share an address");
    }
}

/// Another thread checks and frees the handed-off blocks, then allocates `returned` blocks of
/// its own for this thread to free later. It exits, so its caches go back to the allocators.
fn sync(model: &mut Model, returned: u8, size: Size) {
    let handed = std::mem::take(&mut model.handed_off);
    let seeds: Vec<u8> = (0..returned % (MAX_RETURNED + 1))
        .map(|_| model.next_seed())
        .collect();
    let back = std::thread::spawn(move || {
        for b in handed {
            b.free();
        }
        seeds
            .into_iter()
            .enumerate()
            .filter_map(|(i, seed)| Block::new(size.bytes(), i as u8 % 5, false, i % 2 == 0, seed))
            .collect::<Vec<Block>>()
    })
    .join()
    .expect("the other thread");
    for b in back {
        b.check(b.layout.size());
        model.add(b);
    }
}

fn run(ops: Vec<Op>) {
    let mut model = Model::default();
    for op in ops {
        match op {
            Op::Alloc {
                size,
                align_shift,
                zeroed,
                heap,
            } => {
                let seed = model.next_seed();
                if let Some(b) = Block::new(size.bytes(), align_shift, zeroed, heap, seed) {
                    model.add(b);
                }
            }
            Op::Free { index } => {
                if let Some(b) = model.take(index) {
                    b.free();
                }
            }
            Op::Realloc { index, size } => {
                if let Some(mut b) = model.take(index) {
                    b.realloc(size.bytes());
                    model.add(b);
                }
            }
            Op::HandOff { index } => {
                if let Some(b) = model.take(index) {
                    model.handed_off.push(b);
                }
            }
            Op::Sync { returned, size } => sync(&mut model, returned, size),
            Op::Collect => {
                poolmalloc::collect();
                HEAP.collect();
                HEAP.check_invariants().expect("heap invariants");
            }
        }
        model.check_disjoint();
    }
    // The heap's stats count exactly the model's heap blocks once this thread has taken in the
    // frees other threads pushed onto its pools' remote chains (its only user is this thread,
    // and the other threads have exited, giving their pools back).
    HEAP.flush_thread_cache();
    let small = model
        .blocks
        .iter()
        .chain(&model.handed_off)
        .filter(|b| b.heap && b.small())
        .count();
    let large = model
        .blocks
        .iter()
        .chain(&model.handed_off)
        .filter(|b| b.heap && !b.small() && b.is_block())
        .count();
    let stats = HEAP.stats();
    let in_use: usize = stats.classes.iter().map(|c| c.blocks_out).sum();
    assert_eq!(in_use, small, "heap small blocks in use");
    assert_eq!(stats.large.live, large, "heap large blocks live");
    for b in model.blocks.drain(..).chain(model.handed_off.drain(..)) {
        b.free();
    }
    HEAP.check_invariants().expect("heap invariants");
    poolmalloc::check_invariants().expect("global invariants");
}

fuzz_target!(|ops: Vec<Op>| run(ops));
