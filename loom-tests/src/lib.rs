//! Helpers shared by the loom models in `tests/`: running a model and counting the interleavings
//! it explored, and driving blocks through a `ThreadCache` bound to a model's own core the way
//! the front end does (`take`: pop, else refill; `free`: local, else remote push or adoption).
//!
//! Every model builds a fresh core over the in-memory page source inside `loom::model` (loom's
//! mutexes cannot live in a static), with the loom geometry of `poolmalloc_core::config`: 1 KiB
//! pools, four per arena, a refill carving `CARVE_BYTES` (128) worth of blocks, at least one.
#![cfg(poolmalloc_loom)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use poolmalloc::internal::{LocalFree, ThreadCache};
use poolmalloc_core::{Class, ClassStats, Core, Kind, MemPages, OwnedPool, RemoteFree};

pub type TestCore = Core<MemPages>;

/// Runs `body` under loom (preemption bound from `LOOM_MAX_PREEMPTIONS`, default 3) and prints
/// how many interleavings it explored and how long that took — also when an interleaving fails,
/// as the panic unwinds out of here.
pub fn model(name: &str, body: impl Fn() + Sync + Send + 'static) -> usize {
    let mut builder = loom::model::Builder::new();
    if builder.preemption_bound.is_none() {
        builder.preemption_bound = Some(3);
    }
    // Branch points of one execution: every atomic access and lock of the core and the caches a
    // model drives, and each snapshot or invariant walk takes all 65 of the core's locks. Past
    // loom's default of 1000 in the longer models; the bound only stops a runaway execution.
    builder.max_branches = 20_000;
    let report = Report {
        name,
        bound: builder.preemption_bound,
        runs: Arc::new(AtomicUsize::new(0)),
        start: Instant::now(),
    };
    let counter = report.runs.clone();
    let body = Arc::new(body);
    builder.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        // A model's own frame holds a core and thread caches, over loom's 32 KiB coroutine
        // stack with the medium classes' locks and lists: it runs on a thread with room.
        let body = body.clone();
        loom::thread::Builder::new()
            .stack_size(MODEL_STACK)
            .spawn(move || body())
            .expect("the model's thread")
            .join()
            .expect("the model's body");
    });
    report.runs.load(Ordering::Relaxed)
}

/// Stack of the thread a model's body runs on.
const MODEL_STACK: usize = 256 * 1024;

/// Prints a model's count of interleavings when it is done, passed or failed.
struct Report<'a> {
    name: &'a str,
    bound: Option<usize>,
    runs: Arc<AtomicUsize>,
    start: Instant,
}

impl Drop for Report<'_> {
    fn drop(&mut self) {
        let explored = self.runs.load(Ordering::Relaxed);
        let outcome = if std::thread::panicking() {
            format!("FAILED in interleaving {explored}")
        } else {
            format!("{explored} interleavings")
        };
        println!(
            "loom model {}: {outcome}, preemption bound {}, {:.1?}",
            self.name,
            self.bound.map_or("none".to_string(), |b| b.to_string()),
            self.start.elapsed()
        );
    }
}

pub fn class(index: usize) -> Class {
    Class::new(index).expect("a size class")
}

/// The base address of the arena holding `block`.
pub fn arena_of(block: *mut u8) -> usize {
    block as usize & poolmalloc_core::config::ARENA_ADDR_MASK
}

/// Writes `stamp` into a block this thread holds.
pub fn stamp(block: *mut u8, stamp: u64) {
    // SAFETY: the caller holds the block, at least 8 bytes.
    unsafe { block.cast::<u64>().write(stamp) }
}

/// The stamp a block holds: had another thread been handed the same block, its stamp would show.
pub fn read_stamp(block: *mut u8) -> u64 {
    // SAFETY: the caller holds the block, at least 8 bytes.
    unsafe { block.cast::<u64>().read() }
}

/// A block from `cache`: its allocation list, else a refill from `core` (the front end's alloc),
/// every link checked (secure mode's check: a link a race corrupted would show).
pub fn take(cache: &ThreadCache, core: &TestCore, class: Class) -> *mut u8 {
    let p = cache
        .pop(class, class.kind(), true)
        .expect("a free-list link left its pool");
    if !p.is_null() {
        return p;
    }
    let p = cache
        .refill(core, class, true)
        .expect("a free-list link left its pool");
    assert!(!p.is_null(), "the model's page source ran out");
    p
}

/// The kind of pool `block` lies in, from the registry (as the C library's free asks it).
pub fn kind_of(core: &TestCore, block: *mut u8) -> Kind {
    core.kind_of(block).expect("a block of the model's core")
}

/// How `free` freed a block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freed {
    /// Onto its pool's own free list: the pool is this cache's.
    Local,
    /// As `Local`, and that emptied the pool.
    Emptied,
    /// As `Local`, into a pool the cache had filed full: it is on the used list again.
    Unfiled,
    /// Pushed onto the remote chain of a pool another cache owns.
    Pushed,
    /// Under the class lock into a core-held pool (a thread without a cache).
    Core,
    /// The pool was core-held: this cache adopted it, then freed the block locally.
    Adopted,
}

/// Frees `block` as the front end does: onto its pool's own free list when `cache` owns the pool
/// (keeping or giving up the pool if that emptied it), else through the core: pushed onto the
/// owner's remote chain, or, into a core-held pool, adopted by `cache` and then freed locally.
///
/// # Safety
/// `block` is a block of `core` that is out and is given up here.
pub unsafe fn free(core: &TestCore, cache: &ThreadCache, block: *mut u8) -> Freed {
    let kind = kind_of(core, block);
    // SAFETY: the block lies in one of `core`'s pools and is given up (precondition).
    match unsafe { cache.free_local(block, kind) } {
        LocalFree::Freed => Freed::Local,
        LocalFree::DoubleFree => panic!("a block freed once was found free already"),
        LocalFree::Unfiled => Freed::Unfiled,
        LocalFree::Emptied => {
            // SAFETY: the free emptied a pool this cache owns: none of its blocks is out.
            unsafe { cache.pool_emptied(core, OwnedPool::of(block, kind)) };
            Freed::Emptied
        }
        // SAFETY: the pool is not this cache's; the block is out and given up (precondition).
        LocalFree::NotOwned => match unsafe { core.free_remote(block, kind, cache.id()) }
            .expect("a block freed once was refused")
        {
            RemoteFree::Adopted(pool) => {
                // SAFETY: the core just made the pool this cache's and it is on no list; the
                // block is still out and given up, and its pool is ours now.
                let local = unsafe {
                    cache.adopted(pool);
                    free(core, cache, block)
                };
                assert!(
                    matches!(local, Freed::Local | Freed::Emptied | Freed::Unfiled),
                    "an adopted pool's block was not freed locally: {local:?}"
                );
                Freed::Adopted
            }
            RemoteFree::Pushed => Freed::Pushed,
            RemoteFree::Freed => Freed::Core,
            RemoteFree::LeftAlone => panic!("a block freed once was left alone"),
        },
    }
}

/// Frees `block` from a thread without a cache: pushed onto the owner's remote chain, or freed
/// under the class lock into a core-held pool (never adopted).
///
/// # Safety
/// As for `free`.
pub unsafe fn free_uncached(core: &TestCore, block: *mut u8) -> Freed {
    // SAFETY: no cache has id 0, so the pool is not the caller's; the block is out and given up
    // (precondition).
    match unsafe { core.free_remote(block, kind_of(core, block), 0) }
        .expect("a block freed once was refused")
    {
        RemoteFree::Pushed => Freed::Pushed,
        RemoteFree::Freed => Freed::Core,
        RemoteFree::Adopted(_) => panic!("a thread without a cache adopted a pool"),
        RemoteFree::LeftAlone => panic!("a block freed once was left alone"),
    }
}

/// Checks a block this thread holds before it gives it up: its arena is still this core's
/// (never unmapped while a block of it is out) and it holds the stamp this thread wrote (no
/// other thread was handed it meanwhile).
pub fn check_held(core: &TestCore, block: *mut u8, expect: u64) {
    assert!(
        core.owns(block),
        "the arena of block {block:p}, still out, was unmapped"
    );
    assert_eq!(
        read_stamp(block),
        expect,
        "block {block:p} was handed out twice"
    );
}

/// One class's counts in a snapshot of `core` (`Core::stats`: the core's books and the owned
/// pools' headers).
///
/// Not inlined, here and in `assert_quiescent`: a model thread runs on a loom coroutine's 32 KiB
/// stack, and a whole `CoreStats` (a few KiB) in the model's own frame overflows it.
#[inline(never)]
pub fn class_snapshot(core: &TestCore, class: Class) -> ClassStats {
    core.stats().classes[class.index()]
}

/// After every thread is joined: the invariants hold, the counters agree with the walk and the
/// accounting identity, and nothing is out.
#[inline(never)]
pub fn assert_quiescent(core: &TestCore) {
    core.check_invariants().unwrap_or_else(|v| panic!("{v}"));
    let s = core.stats();
    assert!(s.identity_holds(), "accounting identity broken:\n{s}");
    assert_eq!(s.bytes_in_blocks_out(), 0, "blocks still out:\n{s}");
    assert_eq!(s.pools_in_use(), 0);
    assert_eq!(
        core.source().mapped_now(),
        s.arenas.mapped,
        "page source disagrees"
    );
    assert!(s.arenas.mapped <= poolmalloc_core::config::RESERVE_ARENAS);
}

/// Which outcomes some execution of a model reached, as bits: a model marks what each execution
/// saw, and the test asserts afterwards that the exploration reached every outcome it is meant
/// to race (a model that never reaches the race it is about proves nothing). Not a loom atomic:
/// it outlives the executions.
pub struct Seen(AtomicUsize);

impl Default for Seen {
    fn default() -> Self {
        Seen::new()
    }
}

impl Seen {
    pub const fn new() -> Seen {
        Seen(AtomicUsize::new(0))
    }

    /// Marks outcome `what` (a bit index below `usize::BITS`).
    pub fn mark(&self, what: usize) {
        self.0.fetch_or(1 << what, Ordering::Relaxed);
    }

    /// Asserts that every outcome in `names` (bit `i` named `names[i]`) was reached.
    pub fn require(&self, model: &str, names: &[&str]) {
        let seen = self.0.load(Ordering::Relaxed);
        let missing: Vec<&str> = names
            .iter()
            .enumerate()
            .filter(|(i, _)| seen & (1 << i) == 0)
            .map(|(_, n)| *n)
            .collect();
        assert!(
            missing.is_empty(),
            "model {model}: no interleaving reached {missing:?}"
        );
        println!("loom model {model}: reached {names:?}");
    }
}

/// The whole `main` of a planted-fault test (run without the test harness): runs `model` with
/// its bug planted, under `catch_unwind`, and exits 0 when it failed with one of `reports` (the
/// ways the bug shows), 1 when every interleaving passed or it failed some other way. Its last
/// line is the "N passed, N failed" summary.
pub fn expect_planted_fault(
    name: &str,
    reports: &[&str],
    model: impl FnOnce() + std::panic::UnwindSafe,
) -> ! {
    // The report without a backtrace: with `RUST_BACKTRACE` set, the default hook captures one on
    // the model thread's small coroutine stack, which overflows it.
    let hook_name = name.to_string();
    std::panic::set_hook(Box::new(move |info| {
        eprintln!("{hook_name}: the model panicked: {info}")
    }));
    let Err(panic) = std::panic::catch_unwind(model) else {
        println!("{name}: every interleaving passed with the bug planted: 0 passed, 1 failed");
        std::process::exit(1);
    };
    // Only the model's own report of the bug counts: not a coroutine's stack overflow, nor any
    // other panic.
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("");
    if reports.iter().any(|r| message.contains(r)) {
        println!("{name}: the planted bug was reported: 1 passed, 0 failed");
        std::process::exit(0);
    }
    println!(
        "{name}: the model failed, but not with the bug's report ({message}): 0 passed, 1 failed"
    );
    std::process::exit(1);
}
