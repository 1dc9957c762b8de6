//! PoolMalloc as the process's global allocator, under stress. No test harness: `main` runs each
//! scenario once to warm up one-time lazy statics, takes the allocator's counts, runs it again and
//! checks that every block came back — from exited threads' caches too.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;

use poolmalloc::PoolMalloc;
use poolmalloc_core::config::{POOL_SIZE, RESERVE_ARENAS};
use poolmalloc_core::CoreStats;

#[global_allocator]
static A: PoolMalloc = PoolMalloc;

/// xorshift: deterministic per thread.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A block whose words hold `cookie ^ index`, its first word its size (mimalloc's test-stress).
fn alloc_items(rng: &mut Rng, corrupt: &AtomicUsize) -> *mut u8 {
    let words = match rng.below(200) {
        0 => 4096 + rng.below(4000),   // large path now and then (past 32 KiB)
        1..=6 => 64 + rng.below(4000), // medium: up to 32 KiB
        7..=20 => 16 + rng.below(48),  // up to 512 bytes
        _ => 1 + rng.below(15),
    };
    let layout = Layout::array::<u64>(words).unwrap();
    // SAFETY: non-zero size.
    let p = unsafe { A.alloc(layout) }.cast::<u64>();
    if p.is_null() {
        corrupt.fetch_add(1, Ordering::Relaxed);
        return p.cast();
    }
    let cookie = p as u64 ^ 0x5A5A_5A5A_5A5A_5A5A;
    // SAFETY: the block holds `words` words.
    unsafe {
        p.write(words as u64);
        for i in 1..words {
            p.add(i).write(cookie ^ i as u64);
        }
    }
    p.cast()
}

fn free_items(p: *mut u8, corrupt: &AtomicUsize) {
    if p.is_null() {
        return;
    }
    let p = p.cast::<u64>();
    // SAFETY: `p` came from `alloc_items`, which stored its size in the first word.
    unsafe {
        let words = p.read() as usize;
        if words == 0 || words > 8100 {
            corrupt.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let cookie = p as u64 ^ 0x5A5A_5A5A_5A5A_5A5A;
        for i in 1..words {
            if p.add(i).read() != cookie ^ i as u64 {
                corrupt.fetch_add(1, Ordering::Relaxed);
                break;
            }
        }
        A.dealloc(p.cast(), Layout::array::<u64>(words).unwrap());
    }
}

const THREADS: usize = 8;
const ROUNDS: usize = 10;
const SLOTS: usize = 4096;

/// mimalloc's test-stress, shortened: threads allocate cookie-filled blocks, free their own, and
/// swap blocks through a shared slot array so about a quarter of frees are cross-thread; all
/// threads end and new ones start every round.
fn stress() {
    let slots: Arc<Vec<AtomicPtr<u8>>> = Arc::new(
        (0..SLOTS)
            .map(|_| AtomicPtr::new(std::ptr::null_mut()))
            .collect(),
    );
    let corrupt = Arc::new(AtomicUsize::new(0));
    for round in 0..ROUNDS {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let (slots, corrupt) = (slots.clone(), corrupt.clone());
                thread::spawn(move || {
                    let mut rng = Rng((round * THREADS + t) as u64 * 0x9E37_79B9 + 1);
                    let mut mine: Vec<*mut u8> = Vec::with_capacity(512);
                    for _ in 0..25_000 {
                        match rng.below(8) {
                            0..=3 => mine.push(alloc_items(&mut rng, &corrupt)),
                            4 | 5 if !mine.is_empty() => {
                                let i = rng.below(mine.len());
                                free_items(mine.swap_remove(i), &corrupt);
                            }
                            _ if !mine.is_empty() => {
                                // Swap one of ours into a shared slot; what comes out was
                                // allocated by another thread and will be freed by this one.
                                let i = rng.below(mine.len());
                                let slot = &slots[rng.below(SLOTS)];
                                let theirs = slot.swap(mine.swap_remove(i), Ordering::AcqRel);
                                free_items(theirs, &corrupt);
                            }
                            _ => {}
                        }
                    }
                    for p in mine {
                        free_items(p, &corrupt);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    for slot in slots.iter() {
        free_items(slot.swap(std::ptr::null_mut(), Ordering::AcqRel), &corrupt);
    }
    assert_eq!(
        corrupt.load(Ordering::Relaxed),
        0,
        "corrupted or refused blocks"
    );
}

/// 200 threads each allocate and free, then exit.
fn thread_exit() {
    for wave in 0..10 {
        let handles: Vec<_> = (0..20)
            .map(|t| {
                thread::spawn(move || {
                    let mut rng = Rng((wave * 20 + t) as u64 + 7);
                    let mut v: Vec<Box<[u8]>> = Vec::new();
                    for _ in 0..2000 {
                        v.push(vec![7u8; 1 + rng.below(400)].into_boxed_slice());
                        if rng.below(3) == 0 {
                            let i = rng.below(v.len());
                            v.swap_remove(i);
                        }
                    }
                    v.iter().map(|b| b.len()).sum::<usize>()
                })
            })
            .collect();
        for h in handles {
            assert!(h.join().unwrap() > 0);
        }
    }
}

/// The seed scenario, on several threads: each allocates 512·k one-byte objects and frees 511 of
/// each 512; the survivors pin their pools until they go too.
fn seed() -> (usize, usize, CoreStats) {
    const K: usize = 400;
    let handles: Vec<_> = (0..4)
        .map(|_| {
            thread::spawn(|| {
                let objects: Vec<Box<u8>> = (0..512 * K).map(|i| Box::new(i as u8)).collect();
                let mut survivors = Vec::with_capacity(K);
                for (i, o) in objects.into_iter().enumerate() {
                    if i % 512 == 0 {
                        survivors.push(o);
                    }
                }
                survivors
            })
        })
        .collect();
    let survivors: Vec<Box<u8>> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    let mut pools: Vec<usize> = survivors
        .iter()
        .map(|b| &**b as *const u8 as usize & !(POOL_SIZE - 1))
        .collect();
    pools.sort_unstable();
    pools.dedup();
    poolmalloc::flush_thread_cache();
    let pinned = poolmalloc::stats();
    let n = survivors.len();
    drop(survivors);
    (n, pools.len(), pinned)
}

/// One thread allocates 64-byte blocks, another frees them.
fn producer_consumer() -> usize {
    let (tx, rx) = crossbeam_channel::bounded::<Box<[u8; 64]>>(1024);
    let producer = thread::spawn(move || {
        for i in 0..1_000_000u32 {
            tx.send(Box::new([i as u8; 64])).unwrap();
        }
    });
    let consumer = thread::spawn(move || {
        let mut max_mapped = 0;
        for (i, b) in rx.iter().enumerate() {
            assert_eq!(b[63], i as u8);
            drop(b);
            if i % 50_000 == 0 {
                max_mapped = max_mapped.max(poolmalloc::stats().arenas.mapped);
            }
        }
        max_mapped
    });
    producer.join().unwrap();
    consumer.join().unwrap()
}

fn settled() -> CoreStats {
    poolmalloc::collect();
    poolmalloc::check_invariants().unwrap_or_else(|v| panic!("{v}"));
    poolmalloc::stats()
}

/// Every block the scenario took came back.
fn assert_back_to(base: &CoreStats, name: &str) {
    let s = settled();
    assert!(s.identity_holds(), "{name}: identity broken\n{s}");
    assert_eq!(
        s.bytes_in_blocks_out(),
        base.bytes_in_blocks_out(),
        "{name}: bytes in use differ\n{s}"
    );
    assert_eq!(s.large.live, base.large.live, "{name}: large blocks leaked");
    assert!(
        s.arenas.mapped <= base.arenas.mapped + RESERVE_ARENAS,
        "{name}: {} arenas still mapped, {} before\n{s}",
        s.arenas.mapped,
        base.arenas.mapped
    );
}

/// A `thread_local!` whose destructor allocates and frees, on threads that allocated before
/// and on threads whose first allocator call is in that destructor (after their other
/// thread-locals are gone, and before the thread's teardown drains its cache).
struct AllocatesOnDrop(u64);

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        let mut v: Vec<Box<[u64]>> = (0..200)
            .map(|i| vec![self.0 ^ i; 1 + (i as usize % 60)].into_boxed_slice())
            .collect();
        v.truncate(50);
        assert!(v.iter().enumerate().all(|(i, b)| b[0] == self.0 ^ i as u64));
    }
}

thread_local! {
    static ON_EXIT: std::cell::Cell<Option<AllocatesOnDrop>> = const { std::cell::Cell::new(None) };
}

fn thread_local_destructors() {
    for wave in 0..10u64 {
        let handles: Vec<_> = (0..16u64)
            .map(|t| {
                thread::spawn(move || {
                    if t % 2 == 0 {
                        drop(std::hint::black_box(vec![t; 100]));
                    }
                    ON_EXIT.with(|slot| slot.set(Some(AllocatesOnDrop(wave * 16 + t))));
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
}

fn main() {
    println!("global_stress: PoolMalloc as #[global_allocator]");
    let mut passed = 0;

    stress();
    let base = settled();
    let start = std::time::Instant::now();
    stress();
    assert_back_to(&base, "stress");
    println!(
        "stress: {THREADS} threads x {ROUNDS} rounds, no corruption ({:.1?})",
        start.elapsed()
    );
    passed += 1;

    thread_exit();
    let base = settled();
    thread_exit();
    assert_back_to(&base, "thread exit");
    println!("thread exit: 200 threads, every cached block returned");
    passed += 1;

    let _ = seed();
    let base = settled();
    let (survivors, pools, pinned) = seed();
    let class0 = pinned.classes[0];
    assert!(
        class0.pools() >= pools,
        "survivors sit in {pools} pools, stats say {}",
        class0.pools()
    );
    assert!(class0.pools() <= pools + base.classes[0].pools());
    assert!(class0.blocks_out >= survivors);
    assert_back_to(&base, "seed");
    println!(
        "seed: {survivors} survivors pinned {} pools ({} KiB) until freed",
        class0.pools(),
        class0.pools() * POOL_SIZE / 1024
    );
    passed += 1;

    let _ = producer_consumer();
    let base = settled();
    let max_mapped = producer_consumer();
    assert!(
        max_mapped <= base.arenas.mapped + 4,
        "producer/consumer mapped {max_mapped} arenas"
    );
    assert_back_to(&base, "producer/consumer");
    println!("producer/consumer: 1M blocks, at most {max_mapped} arenas mapped");
    passed += 1;

    thread_local_destructors();
    let base = settled();
    thread_local_destructors();
    assert_back_to(&base, "thread-local destructors");
    println!("thread-local destructors: 160 threads allocate in them, every block returned");
    passed += 1;

    println!("global_stress: {passed} passed, 0 failed");
}
