//! Criterion benches over the throughput workloads, for every allocator of the table:
//! `cargo bench -p poolmalloc-benches` writes criterion's HTML report (with its plots) to
//! `target/criterion/report/index.html`. Filter as usual: `cargo bench -p poolmalloc-benches --
//! pair/64`.
//!
//! Each benchmark is `<case>/<allocator>`; criterion's iteration count drives the workload's own
//! op count (`iter_custom`), and the throughput is in ops (see each workload's definition of an
//! op), so the report's "elements/s" are ops per second.

use std::alloc::GlobalAlloc;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use poolmalloc_workloads::{
    churn, cores, larson, pair, params, prodcons, rptest, scratch, trees, AllocatorId, Scale,
    Sizes, Timing, WithAllocator,
};

/// Runs one workload `iters` times its unit and returns the total time; a failed check stops
/// the benches (a wrong allocator has no speed).
fn timed(case: &str, id: AllocatorId, r: poolmalloc_workloads::Result<Timing>) -> Timing {
    r.unwrap_or_else(|e| panic!("{case} on {id}: {e}"))
}

/// One case of a group for one allocator.
struct Bench<'g, 'c> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    case: Case,
}

#[derive(Clone, Copy)]
enum Case {
    Pair(usize),
    Churn(usize),
    Larson,
    ProdCons1,
    ProdCons64,
    Scratch,
    Thrash,
    Rptest,
    Xmalloc,
    Trees,
}

impl Case {
    fn name(self) -> String {
        match self {
            Case::Pair(size) => format!("pair/{size}"),
            Case::Churn(t) => format!("churn/{t}t"),
            Case::Larson => format!("larson/{}t", params::larson(FULL).threads),
            Case::ProdCons1 => "prodcons/1".into(),
            Case::ProdCons64 => "prodcons/64".into(),
            Case::Scratch => format!("cache-scratch/{}t", scratch_params().threads),
            Case::Thrash => format!("cache-thrash/{}t", scratch_params().threads),
            Case::Rptest => format!("rptest/{}t", rptest_params().threads),
            Case::Xmalloc => {
                let p = xmalloc_params();
                format!("xmalloc/{}t", p.producers + p.consumers)
            }
            Case::Trees => format!("binary-trees/d{}", TREE_DEPTH),
        }
    }

    /// Ops per criterion iteration.
    fn ops_per_iter(self) -> u64 {
        match self {
            Case::Pair(_) => 1,
            Case::Churn(t) => (t * churn::BLOCKS) as u64,
            Case::Larson => {
                let p = larson_params();
                (p.threads * p.replaces) as u64
            }
            Case::ProdCons1 | Case::ProdCons64 => {
                let p = prodcons_params();
                (p.pairs * p.blocks) as u64
            }
            Case::Scratch | Case::Thrash => {
                let p = scratch_params();
                (p.threads * p.iterations) as u64
            }
            // Counted by a run on the system allocator: see `group`.
            Case::Rptest | Case::Xmalloc | Case::Trees => 0,
        }
    }

    /// One run of the case (for `Pair`, one op: criterion drives its count).
    fn once<A: GlobalAlloc + Sync>(self, a: &A) -> poolmalloc_workloads::Result<Timing> {
        match self {
            Case::Pair(size) => pair::pair(a, size, 1),
            Case::Churn(threads) => churn::churn(a, threads, churn::BLOCKS, Sizes::SMALL, 1),
            Case::Larson => larson::larson(a, larson_params()),
            Case::ProdCons1 => prodcons::prodcons::<A, 1>(a, prodcons_params()),
            Case::ProdCons64 => prodcons::prodcons::<A, 64>(a, prodcons_params()),
            Case::Scratch => scratch::cache_scratch(a, scratch_params()),
            Case::Thrash => scratch::cache_thrash(a, scratch_params()),
            Case::Rptest => rptest::rptest(a, rptest_params()),
            Case::Xmalloc => prodcons::xmalloc(a, xmalloc_params()),
            Case::Trees => trees::binary_trees(a, TREE_DEPTH),
        }
    }
}

const FULL: Scale = Scale { quick: false };
const TREE_DEPTH: u32 = 14;

fn larson_params() -> larson::Params {
    larson::Params {
        rounds: 1,
        replaces: 20_000,
        ..params::larson(FULL)
    }
}

fn prodcons_params() -> prodcons::Params {
    prodcons::Params {
        blocks: 64 * 500,
        ..params::prodcons(FULL)
    }
}

fn scratch_params() -> scratch::Params {
    scratch::Params {
        iterations: 20_000,
        ..params::scratch(FULL)
    }
}

fn rptest_params() -> rptest::Params {
    rptest::Params {
        rounds: 50,
        ..params::rptest(FULL)
    }
}

fn xmalloc_params() -> prodcons::XmallocParams {
    prodcons::XmallocParams {
        blocks: 20_000,
        ..params::xmalloc(FULL, cores().max(2))
    }
}

impl WithAllocator for Bench<'_, '_> {
    type Output = ();

    fn run<A: GlobalAlloc + Sync + 'static>(self, id: AllocatorId, a: &'static A) {
        let case = self.case;
        let name = case.name();
        self.group.bench_function(id.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                let rounds = if matches!(case, Case::Pair(_)) {
                    1
                } else {
                    iters
                };
                for _ in 0..rounds {
                    let t = match case {
                        Case::Pair(size) => pair::pair(a, size, iters),
                        _ => case.once(a),
                    };
                    total += timed(&name, id, t).elapsed;
                }
                total
            })
        });
    }
}

fn group(c: &mut Criterion, case: Case) {
    let mut group = c.benchmark_group(case.name());
    let ops = match case.ops_per_iter() {
        0 => {
            timed(
                &case.name(),
                AllocatorId::System,
                case.once(&std::alloc::System),
            )
            .ops
        }
        n => n,
    };
    group.throughput(Throughput::Elements(ops));
    if !matches!(case, Case::Pair(_)) {
        // Each iteration is a whole run of milliseconds: fewer, longer samples.
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(3));
    }
    for &id in AllocatorId::TABLE {
        id.with(Bench {
            group: &mut group,
            case,
        });
    }
    group.finish();
}

fn benches(c: &mut Criterion) {
    for size in pair::SIZES {
        group(c, Case::Pair(size));
    }
    group(c, Case::Churn(1));
    if cores() > 1 {
        group(c, Case::Churn(cores()));
    }
    group(c, Case::Larson);
    group(c, Case::ProdCons1);
    group(c, Case::ProdCons64);
    group(c, Case::Scratch);
    group(c, Case::Thrash);
    group(c, Case::Rptest);
    group(c, Case::Xmalloc);
    group(c, Case::Trees);
}

criterion_group!(workloads, benches);
criterion_main!(workloads);
