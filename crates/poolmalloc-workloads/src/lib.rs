//! # poolmalloc-workloads: the benchmark and stress workloads
//!
//! Each workload is written once, generic over the allocator (`&A where A: GlobalAlloc`), and
//! shared by the criterion benches (`benches/`), the tests and `poolmalloc compare`. Each
//! returns the time per operation (a [`Timing`]) and checks its own results: every block it
//! allocates is tagged and the tag is checked when the block is freed ([`blocks`]), so an
//! allocator that hands out overlapping or live blocks fails the run instead of timing it.
//!
//! | case                | what it stresses                                            | op |
//! |---------------------|-------------------------------------------------------------|----|
//! | `pair/16,64,256`    | one alloc+free in a loop, 1024 blocks live: the fast path   | alloc+free |
//! | `pair-alone/16,64,256` | the same with no other block live: each free empties a pool | alloc+free |
//! | `churn/1t`, `/Nt`   | 100k random sizes 8..=512, random-order free: refill/flush  | alloc+free |
//! | `medium/1t`, `/Nt`  | the same with 4k random sizes 513 B..=32 KiB                | alloc+free |
//! | `larson/Nt`         | slot arrays passed to new threads each round: remote frees  | replacement |
//! | `prodcons/1`, `/64` | blocks sent over channels, freed by the consumer            | block |
//! | `cache-scratch/Nt`  | small objects written hard by several threads: false sharing| alloc+writes+free |
//! | `cache-thrash/Nt`   | the same without the hand-off: active false sharing         | alloc+writes+free |
//! | `rptest/Nt`         | 16 B..16 KiB working sets, blocks handed around a ring      | block |
//! | `xmalloc/Nt`        | many producers, many consumers on one channel               | block |
//! | `binary-trees`      | rayon builds and drops binary trees of 16-byte nodes        | node |
//! | `memory/*`          | RSS (MiB above baseline) at peak, after free, round 2, trim | — |
//! | `memory/released-ms`| ms from the last free until RSS is ≤ 1 % of the peak's (no allocator call meanwhile) | — |
//! | `memory-medium/*`   | the same with 16k medium blocks (513 B..=32 KiB)           | — |
//! | `memory-2t/*`       | freed by a second thread, which exits: peak, after free, released-ms (≤ 2 %) | — |
//! | `seed/*`            | 512·k one-byte objects, 511 of each 512 freed: RSS and pools held | — |
//! | `global/*`          | pair and churn through `#[global_allocator]` (child binaries) | alloc+free |
//! | `service/*`         | a tokio + hyper + serde_json server per allocator (its `#[global_allocator]`) under 32 keep-alive connections: µs per request, p99 latency, peak and idle RSS | request |
//!
//! `N` is the machine's core count, or each count of `compare --threads` (one row per count, the
//! case named with its threads). Each multi-threaded row (`churn` to `binary-trees`) has a
//! `…/peak-rss` row beside it: the process's peak resident MiB while the row ran, above its
//! resident set when the run started (`compare` runs these workloads in a fresh process each).
//! Allocators come from [`AllocatorId::TABLE`]; sizes and counts from [`Scale`] (`quick` is the
//! smoke-test size).
//!
//! ## Modules, bottom-up
//! - `rng`, `rss`: a deterministic generator; the process's resident memory.
//! - `allocators`: the table of allocators a workload runs on.
//! - `blocks`: tagged blocks, allocated and checked when freed.
//! - the workloads, each on `blocks` (and `rng`, `rss`): `pair`, `churn`, `larson`, `prodcons`,
//!   `scratch`, `rptest`, `trees`, `memory`, `seed`; `global` runs pair and churn in child
//!   binaries; `service` drives a server binary (`crates/poolmalloc-service`) over loopback.
//! - this file: the cases, `Timing`, `Scale`, and the runner the CLI and benches call.

pub mod allocators;
pub mod blocks;
pub mod churn;
pub mod global;
pub mod larson;
pub mod memory;
pub mod pair;
pub mod prodcons;
pub mod rng;
pub mod rptest;
pub mod rss;
pub mod scratch;
pub mod seed;
pub mod service;
pub mod trees;

use std::alloc::GlobalAlloc;
use std::fmt;
use std::path::Path;
use std::time::Duration;

pub use allocators::{AllocatorId, WithAllocator};
pub use blocks::{Fault, Result, Sizes};

use rss::MIB;

/// What a throughput workload measured: `ops` operations in `elapsed` wall time.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    pub ops: u64,
    pub elapsed: Duration,
}

impl Timing {
    pub fn ns_per_op(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.ops.max(1) as f64
    }
}

/// How big a run is: `quick` is the smoke test (every workload, small counts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scale {
    pub quick: bool,
}

impl Scale {
    fn pick<T>(self, quick: T, full: T) -> T {
        if self.quick {
            quick
        } else {
            full
        }
    }
}

/// Threads for the "all cores" cases.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The workloads, as `compare --workloads` names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    Pair,
    PairAlone,
    Churn,
    Medium,
    Larson,
    ProdCons,
    CacheScratch,
    CacheThrash,
    Rptest,
    Xmalloc,
    BinaryTrees,
    Memory,
    Memory2t,
    MemoryMedium,
    Seed,
    Global,
    Service,
}

/// Where a workload must run for its figures to mean something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Where {
    /// In the measuring process, with the allocator passed as a value.
    InProcess,
    /// In a fresh child process per run (RSS figures must not see other allocators' memory, nor
    /// an allocator its own of the run before).
    FreshProcess,
    /// In a child binary that installs the allocator as its `#[global_allocator]`.
    GlobalAllocator,
    /// Against a server binary that installs the allocator as its `#[global_allocator]`, driven
    /// from this process over loopback ([`run_service`]).
    Server,
}

impl Workload {
    pub const ALL: &'static [Workload] = &[
        Workload::Pair,
        Workload::PairAlone,
        Workload::Churn,
        Workload::Medium,
        Workload::Larson,
        Workload::ProdCons,
        Workload::CacheScratch,
        Workload::CacheThrash,
        Workload::Rptest,
        Workload::Xmalloc,
        Workload::BinaryTrees,
        Workload::Memory,
        Workload::Memory2t,
        Workload::MemoryMedium,
        Workload::Seed,
        Workload::Global,
        Workload::Service,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Workload::Pair => "pair",
            Workload::PairAlone => "pair-alone",
            Workload::Churn => "churn",
            Workload::Medium => "medium",
            Workload::Larson => "larson",
            Workload::ProdCons => "prodcons",
            Workload::CacheScratch => "cache-scratch",
            Workload::CacheThrash => "cache-thrash",
            Workload::Rptest => "rptest",
            Workload::Xmalloc => "xmalloc",
            Workload::BinaryTrees => "binary-trees",
            Workload::Memory => "memory",
            Workload::Memory2t => "memory-2t",
            Workload::MemoryMedium => "memory-medium",
            Workload::Seed => "seed",
            Workload::Global => "global",
            Workload::Service => "service",
        }
    }

    pub fn parse(name: &str) -> Option<Workload> {
        Workload::ALL.iter().copied().find(|w| w.name() == name)
    }

    pub fn names() -> String {
        let names: Vec<&str> = Workload::ALL.iter().map(|w| w.name()).collect();
        names.join(", ")
    }

    pub fn place(self) -> Where {
        match self {
            Workload::Memory | Workload::Memory2t | Workload::MemoryMedium | Workload::Seed => {
                Where::FreshProcess
            }
            Workload::Global => Where::GlobalAllocator,
            Workload::Service => Where::Server,
            Workload::Pair | Workload::PairAlone => Where::InProcess,
            // Their peak RSS is measured beside their time, and every allocator starts them
            // with nothing of its own resident — none warm from its last repetition while
            // another, which gave its memory back between them, starts cold.
            _ => Where::FreshProcess,
        }
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// The unit of a figure. Lower is better for every unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Unit {
    NsPerOp,
    /// Resident MiB above the run's baseline (service: the server's whole resident set).
    MiB,
    /// Pools in use (poolmalloc only).
    Pools,
    /// Seconds of wall or CPU time (a whole program's run).
    Seconds,
    /// Milliseconds until something happened; infinite: it did not within the workload's limit
    /// (the table prints "never").
    Ms,
    /// Microseconds (service: wall time per request, latency).
    Us,
}

impl Unit {
    pub fn name(self) -> &'static str {
        match self {
            Unit::NsPerOp => "ns/op",
            Unit::MiB => "MiB",
            Unit::Pools => "pools",
            Unit::Seconds => "s",
            Unit::Ms => "ms",
            Unit::Us => "µs",
        }
    }

    pub const ALL: [Unit; 6] = [
        Unit::NsPerOp,
        Unit::MiB,
        Unit::Pools,
        Unit::Seconds,
        Unit::Ms,
        Unit::Us,
    ];

    pub fn parse(name: &str) -> Option<Unit> {
        Unit::ALL.into_iter().find(|u| u.name() == name)
    }
}

/// One figure of one run: the case (a workload and its variant), its unit and value.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub case: String,
    pub unit: Unit,
    pub value: f64,
}

impl Sample {
    fn new(case: impl Into<String>, unit: Unit, value: f64) -> Sample {
        Sample {
            case: case.into(),
            unit,
            value,
        }
    }

    fn time(case: impl Into<String>, t: Timing) -> Sample {
        Sample::new(case, Unit::NsPerOp, t.ns_per_op())
    }

    fn mib(case: impl Into<String>, bytes: usize, baseline: usize) -> Sample {
        Sample::new(case, Unit::MiB, bytes.saturating_sub(baseline) as f64 / MIB)
    }

    /// Milliseconds until the memory was given back; infinite for `None` ("never").
    fn released(case: impl Into<String>, after: Option<Duration>) -> Sample {
        let ms = after.map_or(f64::INFINITY, |d| d.as_secs_f64() * 1e3);
        Sample::new(case, Unit::Ms, ms)
    }

    /// The line child processes print: `RESULT\t<case>\t<unit>\t<value>` (an infinite value
    /// is `inf`).
    pub fn to_line(&self) -> String {
        format!(
            "RESULT\t{}\t{}\t{}",
            self.case,
            self.unit.name(),
            self.value
        )
    }

    /// Reads a line printed by `to_line`.
    pub fn from_line(line: &str) -> Option<Sample> {
        let mut f = line.split('\t');
        if f.next()? != "RESULT" {
            return None;
        }
        let case = f.next()?.to_string();
        let unit = Unit::parse(f.next()?)?;
        let value = f.next()?.parse().ok()?;
        f.next().is_none().then_some(Sample { case, unit, value })
    }
}

/// The parameters of every workload at a scale (shared with the benches).
pub mod params {
    use std::time::Duration;

    use super::{cores, Scale};
    use crate::{larson, prodcons, rptest, scratch, service};

    pub fn pair_iters(s: Scale) -> u64 {
        s.pick(300_000, 3_000_000)
    }
    pub fn churn_rounds(s: Scale) -> u32 {
        s.pick(2, 10)
    }
    pub fn larson(s: Scale) -> larson::Params {
        larson::Params {
            threads: cores().max(2),
            slots: larson::SLOTS,
            replaces: s.pick(20_000, 100_000),
            rounds: s.pick(3, 10),
        }
    }
    pub fn prodcons(s: Scale) -> prodcons::Params {
        prodcons::Params {
            pairs: (cores() / 2).max(1),
            blocks: s.pick(64 * 1_600, 64 * 16_000),
        }
    }
    pub fn scratch(s: Scale) -> scratch::Params {
        scratch::Params {
            threads: cores(),
            iterations: s.pick(20_000, 200_000),
            writes: 100,
        }
    }
    pub fn rptest(s: Scale) -> rptest::Params {
        rptest::Params {
            threads: cores(),
            working_set: s.pick(500, 2_000),
            rounds: s.pick(40, 400),
            replaces: 200,
            handed: 50,
        }
    }
    /// xmalloc's threads: half of `threads` produce, the rest consume (at least one of each).
    pub fn xmalloc(s: Scale, threads: usize) -> prodcons::XmallocParams {
        let producers = (threads / 2).max(1);
        prodcons::XmallocParams {
            producers,
            consumers: threads.saturating_sub(producers).max(1),
            blocks: s.pick(20_000, 200_000),
        }
    }
    pub fn tree_depth(s: Scale) -> u32 {
        s.pick(12, 16)
    }
    pub fn memory_blocks(s: Scale) -> usize {
        s.pick(200_000, 1_000_000)
    }
    /// As many medium blocks as `memory_blocks` small ones in bytes (about 64 times larger).
    pub fn memory_medium_blocks(s: Scale) -> usize {
        memory_blocks(s) / 64
    }
    pub fn seed_k(s: Scale) -> usize {
        s.pick(200, 1000)
    }
    /// quick: about a second in all.
    pub fn service(s: Scale) -> service::Params {
        service::Params {
            steady: s.pick(Duration::from_millis(500), Duration::from_secs(5)),
            spike: s.pick(64, 320),
            idle: s.pick(Duration::from_millis(250), Duration::from_secs(1)),
        }
    }
    /// How long the memory workloads wait for their memory to be given back.
    pub fn release_limit(s: Scale) -> Duration {
        s.pick(Duration::from_millis(200), Duration::from_secs(2))
    }
}

/// Runs one workload on one allocator in this process and returns its figures. `threads`: the
/// thread counts for the multi-threaded workloads, one row each, named with the count; empty:
/// each workload's own (see the table above).
/// (`compare` runs `Memory` and `Seed` through here too, but in a fresh child process.)
pub fn run(w: Workload, id: AllocatorId, scale: Scale, threads: &[usize]) -> Result<Vec<Sample>> {
    let baseline = rss::rss_bytes();
    id.with(RunCase {
        w,
        scale,
        threads,
        baseline,
    })
}

struct RunCase<'t> {
    w: Workload,
    scale: Scale,
    threads: &'t [usize],
    /// Resident bytes when the run started (the peak-RSS rows' baseline).
    baseline: usize,
}

impl RunCase<'_> {
    /// Runs `one` for each thread count (`--threads`, or `default`), each row named
    /// `<case>/<threads>t` — or `default_name` alone when no counts were asked for and the
    /// workload's own count needs no name — with its `<row>/peak-rss` (where `/proc` tells).
    /// Thread counts that come to the same row run once.
    fn scaled(
        &self,
        case: &str,
        default: &[usize],
        default_name: Option<&str>,
        mut one: impl FnMut(usize) -> Result<(usize, Timing)>,
    ) -> Result<Vec<Sample>> {
        let counts = if self.threads.is_empty() {
            default
        } else {
            self.threads
        };
        let mut out: Vec<Sample> = Vec::new();
        for &t in counts {
            let peak_known = rss::reset_peak();
            let (real, timing) = one(t)?;
            let peak = rss::peak_bytes().filter(|_| peak_known);
            let name = match default_name {
                Some(n) if self.threads.is_empty() => n.to_string(),
                _ => format!("{case}/{real}t"),
            };
            if !out.iter().any(|s| s.case == name) {
                out.push(Sample::time(name.clone(), timing));
                if let Some(peak) = peak {
                    out.push(Sample::mib(format!("{name}/peak-rss"), peak, self.baseline));
                }
            }
        }
        Ok(out)
    }
}

impl WithAllocator for RunCase<'_> {
    type Output = Result<Vec<Sample>>;

    fn run<A: GlobalAlloc + Sync + 'static>(self, id: AllocatorId, a: &'static A) -> Self::Output {
        let s = self.scale;
        let n = cores();
        Ok(match self.w {
            Workload::Pair | Workload::PairAlone => {
                let live = match self.w {
                    Workload::Pair => pair::LIVE,
                    _ => 0,
                };
                let mut out = Vec::new();
                for size in pair::SIZES {
                    let t = pair::pair_with_live(a, size, live, params::pair_iters(s))?;
                    out.push(Sample::time(format!("{}/{size}", self.w.name()), t));
                }
                out
            }
            Workload::Churn => {
                let rounds = params::churn_rounds(s);
                self.scaled("churn", &[1, n], None, |t| {
                    Ok((t, churn::churn(a, t, churn::BLOCKS, Sizes::SMALL, rounds)?))
                })?
            }
            Workload::Medium => {
                let rounds = params::churn_rounds(s);
                self.scaled("medium", &[1, n], None, |t| {
                    let blocks = churn::MEDIUM_BLOCKS;
                    Ok((t, churn::churn(a, t, blocks, Sizes::MEDIUM, rounds)?))
                })?
            }
            Workload::Larson => {
                let p = params::larson(s);
                self.scaled("larson", &[p.threads], None, |threads| {
                    Ok((threads, larson::larson(a, larson::Params { threads, ..p })?))
                })?
            }
            Workload::ProdCons => {
                // A thread count t runs t / 2 producer/consumer pairs (at least one).
                let p = params::prodcons(s);
                let mut out = Vec::new();
                for (n, case) in [(1, "prodcons/1"), (64, "prodcons/64")] {
                    out.extend(self.scaled(case, &[2 * p.pairs], Some(case), |t| {
                        let p = prodcons::Params {
                            pairs: (t / 2).max(1),
                            ..p
                        };
                        let timing = match n {
                            1 => prodcons::prodcons::<A, 1>(a, p)?,
                            _ => prodcons::prodcons::<A, 64>(a, p)?,
                        };
                        Ok((2 * p.pairs, timing))
                    })?);
                }
                out
            }
            Workload::CacheScratch | Workload::CacheThrash => {
                let p = params::scratch(s);
                let run = match self.w {
                    Workload::CacheScratch => scratch::cache_scratch::<A>,
                    _ => scratch::cache_thrash::<A>,
                };
                self.scaled(self.w.name(), &[p.threads], None, |threads| {
                    Ok((threads, run(a, scratch::Params { threads, ..p })?))
                })?
            }
            Workload::Rptest => {
                let p = params::rptest(s);
                self.scaled("rptest", &[p.threads], None, |threads| {
                    Ok((threads, rptest::rptest(a, rptest::Params { threads, ..p })?))
                })?
            }
            Workload::Xmalloc => self.scaled("xmalloc", &[n.max(2)], None, |t| {
                let p = params::xmalloc(s, t);
                Ok((p.producers + p.consumers, prodcons::xmalloc(a, p)?))
            })?,
            Workload::BinaryTrees => {
                let depth = params::tree_depth(s);
                let case = format!("binary-trees/d{depth}");
                self.scaled(&case, &[n], Some(&case), |t| {
                    Ok((t, trees::binary_trees_on(a, depth, t)?))
                })?
            }
            Workload::Memory | Workload::MemoryMedium => {
                let (blocks, sizes) = match self.w {
                    Workload::Memory => (params::memory_blocks(s), Sizes::SMALL),
                    _ => (params::memory_medium_blocks(s), Sizes::MEDIUM),
                };
                let limit = params::release_limit(s);
                let r = memory::memory(a, blocks, sizes, limit, || id.trim())?;
                let (name, b) = (self.w.name(), r.baseline);
                vec![
                    Sample::mib(format!("{name}/peak"), r.peak, b),
                    Sample::mib(format!("{name}/after-free"), r.after_free, b),
                    Sample::released(format!("{name}/released-ms"), r.released),
                    Sample::mib(format!("{name}/after-round-2"), r.after_round2, b),
                    Sample::mib(format!("{name}/after-trim"), r.after_trim, b),
                ]
            }
            Workload::Memory2t => {
                let limit = params::release_limit(s);
                let r = memory::memory_two_threads(a, params::memory_blocks(s), limit)?;
                let b = r.baseline;
                vec![
                    Sample::mib("memory-2t/peak", r.peak, b),
                    Sample::mib("memory-2t/after-free", r.after_free, b),
                    Sample::released("memory-2t/released-ms", r.released),
                ]
            }
            Workload::Seed => {
                let r = seed::seed(a, params::seed_k(s), || id.pools_in_use(), || id.trim())?;
                let b = r.baseline;
                let mut out = vec![
                    Sample::mib("seed/peak", r.peak, b),
                    Sample::mib("seed/held", r.held, b),
                    Sample::mib("seed/after-trim", r.after_trim, b),
                ];
                if let Some(pools) = r.pools_pinned {
                    out.push(Sample::new("seed/pools-pinned", Unit::Pools, pools as f64));
                }
                out
            }
            Workload::Global => {
                return Err(Fault(
                    "the global workload runs only in a global-allocator child binary".into(),
                ))
            }
            Workload::Service => {
                return Err(Fault(
                    "the service workload runs only against a server binary (run_service)".into(),
                ))
            }
        })
    }
}

/// The `global` cases, through the process's `#[global_allocator]`.
pub fn run_global(scale: Scale) -> Result<Vec<Sample>> {
    let a = &global::StdGlobal;
    let t = pair::pair(a, 64, params::pair_iters(scale))?;
    let c = churn::churn(
        a,
        1,
        churn::BLOCKS,
        Sizes::SMALL,
        params::churn_rounds(scale),
    )?;
    Ok(vec![
        Sample::time("global/pair-64", t),
        Sample::time("global/churn-1t", c),
    ])
}

/// The `service` cases against the server binary `program` (one of
/// `crates/poolmalloc-service`'s, with the allocator as its `#[global_allocator]`).
pub fn run_service(program: &Path, scale: Scale) -> Result<Vec<Sample>> {
    let r = service::service(program, params::service(scale))?;
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    Ok(vec![
        Sample::new("service/us-per-request", Unit::Us, us(r.per_request())),
        Sample::new("service/p99", Unit::Us, us(r.p99)),
        Sample::new("service/peak-rss", Unit::MiB, r.peak_rss as f64 / MIB),
        Sample::new("service/idle-rss", Unit::MiB, r.idle_rss as f64 / MIB),
    ])
}

/// For the instruction counts (`benches/instructions.sh`): runs `case` (one of
/// [`COUNTED_CASES`]: `pair-16/64/256`, `pair-alone-16/64/256`, `churn` or `medium`) for `n`
/// iterations (churn, medium: `n` rounds of `churn::BLOCKS`, `churn::MEDIUM_BLOCKS` on one
/// thread) and returns the operations done. Also what `perf stat -e page-faults` is run on.
pub fn run_counted(case: &str, id: AllocatorId, n: u64) -> Result<u64> {
    struct Counted<'a> {
        case: &'a str,
        n: u64,
    }
    impl WithAllocator for Counted<'_> {
        type Output = Result<u64>;
        fn run<A: GlobalAlloc + Sync + 'static>(
            self,
            _: AllocatorId,
            a: &'static A,
        ) -> Result<u64> {
            let run_pair = |size, live| pair::pair_with_live(a, size, live, self.n);
            let t = match self.case {
                "pair-16" => run_pair(16, pair::LIVE)?,
                "pair-64" => run_pair(64, pair::LIVE)?,
                "pair-256" => run_pair(256, pair::LIVE)?,
                "pair-alone-16" => run_pair(16, 0)?,
                "pair-alone-64" => run_pair(64, 0)?,
                "pair-alone-256" => run_pair(256, 0)?,
                "churn" => churn::churn(a, 1, churn::BLOCKS, Sizes::SMALL, self.n as u32)?,
                "medium" => churn::churn(a, 1, churn::MEDIUM_BLOCKS, Sizes::MEDIUM, self.n as u32)?,
                other => {
                    return Err(Fault(format!(
                        "unknown counted case '{other}' (allowed: {})",
                        COUNTED_CASES.join(", ")
                    )))
                }
            };
            Ok(t.ops)
        }
    }
    id.with(Counted { case, n })
}

pub const COUNTED_CASES: &[&str] = &[
    "pair-16",
    "pair-64",
    "pair-256",
    "pair-alone-16",
    "pair-alone-64",
    "pair-alone-256",
    "churn",
    "medium",
];

#[cfg(test)]
mod tests {
    use super::{Sample, Unit};
    use std::time::Duration;

    #[test]
    fn samples_round_trip_through_their_lines_never_included() {
        for s in [
            Sample::new("pair/64", Unit::NsPerOp, 2.5),
            Sample::released("memory/released-ms", Some(Duration::from_micros(12_500))),
            Sample::released("memory/released-ms", None),
        ] {
            assert_eq!(Sample::from_line(&s.to_line()), Some(s.clone()), "{s:?}");
        }
        assert_eq!(Sample::released("x", None).value, f64::INFINITY);
        assert_eq!(
            Sample::released("x", Some(Duration::from_millis(7))).value,
            7.0
        );
        for u in Unit::ALL {
            assert_eq!(Unit::parse(u.name()), Some(u));
        }
        assert_eq!(Sample::from_line("RESULT\tx\tms\tsoon"), None);
    }
}
