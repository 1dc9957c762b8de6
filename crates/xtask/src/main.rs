//! `cargo xtask test`: every check the project has, in the order a failure is cheapest to see:
//! formatting, clippy, the workspace's tests, the debug- and secure-mode tests, the release C
//! library's tests, the core's and cache's tests under ASan, the quick compare, then the loom
//! models.
//! CI (`.ci/run`) calls exactly this.

use std::process::{exit, Command};
use std::time::Instant;

/// One step: a name and the cargo arguments that run it, with extra environment.
struct Step {
    name: &'static str,
    args: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
}

const STEPS: &[Step] = &[
    Step {
        name: "format",
        args: &["fmt", "--all", "--", "--check"],
        env: &[],
    },
    Step {
        name: "clippy",
        args: &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
    },
    // `cargo test` does not build a cdylib: the C programs and `poolmalloc run` need the
    // library in target/debug beside the test binaries.
    Step {
        name: "C library",
        args: &["build", "-p", "poolmalloc-capi"],
        env: &[],
    },
    Step {
        name: "tests",
        args: &["test", "--workspace"],
        env: &[],
    },
    // The checked builds (debug mode, the tool features) compile code the plain build leaves
    // out: clippy and the debug-mode tests, Rust and C, in a target directory of their own.
    Step {
        name: "clippy (debug, valgrind features)",
        args: &[
            "clippy",
            "--target-dir",
            "target/checked",
            "-p",
            "poolmalloc-core",
            "-p",
            "poolmalloc",
            "-p",
            "poolmalloc-capi",
            "--all-targets",
            "--features",
            "poolmalloc/debug,poolmalloc/valgrind",
            "--",
            "-D",
            "warnings",
        ],
        env: &[],
    },
    Step {
        name: "debug mode",
        args: &[
            "test",
            "--target-dir",
            "target/debug-mode",
            "-p",
            "poolmalloc",
            "--features",
            "debug",
            "--lib",
            "--test",
            "debug_mode",
            "--test",
            "misuse",
            "--test",
            "heap",
            "--test",
            "fragmentation",
            "--test",
            "global_collections",
        ],
        env: &[],
    },
    // `PoolMalloc` and `Heap` with secure mode compiled in (feature `secure`).
    Step {
        name: "secure mode",
        args: &[
            "test",
            "--target-dir",
            "target/debug-mode",
            "-p",
            "poolmalloc",
            "--features",
            "secure",
            "--test",
            "misuse",
            "--test",
            "heap",
        ],
        env: &[],
    },
    // The library users run: the release build, its misuse reports, its debug and secure modes
    // switched on by the environment, and its lifecycle orders.
    Step {
        name: "C library (release)",
        args: &["build", "--release", "-p", "poolmalloc-capi"],
        env: &[],
    },
    Step {
        name: "C programs with the release library",
        args: &[
            "test",
            "--release",
            "-p",
            "poolmalloc-capi",
            "--test",
            "misuse",
            "--test",
            "c_programs",
            "--test",
            "lifecycle",
        ],
        env: &[],
    },
    // The core's and the cache's tests under AddressSanitizer, with poolmalloc's `asan`
    // feature poisoning free blocks in caches and pools (about two minutes on 2 cores; the
    // valgrind and Miri runs are in crates/xtask/sanitizers.sh). Nightly, through
    // the rustup proxy; --target keeps build scripts uninstrumented. LeakSanitizer is on:
    // arenas are LSan root regions while mapped, so a large block (C malloc) referenced from a
    // pool block is live, and a leaked large block is reported. Blocks from our pools are not
    // LSan allocations: a leaked small block is not reported.
    Step {
        name: "tests under ASan (core, cache)",
        args: &[
            "+nightly",
            "test",
            "--target",
            "x86_64-unknown-linux-gnu",
            "--target-dir",
            "target/asan",
            "-p",
            "poolmalloc-core",
            "-p",
            "poolmalloc",
            "--features",
            "poolmalloc/asan",
            "--lib",
            "--tests",
        ],
        env: &[("RUSTFLAGS", "-Zsanitizer=address")],
    },
    // Smoke test of the main job: every workload × allocator completes and passes its own
    // checks (release build; `--quick` runs in well under a minute on 2 cores).
    Step {
        name: "compare --quick",
        args: &[
            "run",
            "--release",
            "--quiet",
            "-p",
            "poolmalloc-cli",
            "--bin",
            "poolmalloc",
            "--",
            "compare",
            "--quick",
        ],
        env: &[],
    },
    // The loom models: their own workspace and target directory, built with the loom cfg.
    Step {
        name: "loom format",
        args: &[
            "fmt",
            "--manifest-path",
            "loom-tests/Cargo.toml",
            "--",
            "--check",
        ],
        env: &[],
    },
    Step {
        name: "loom clippy",
        args: &[
            "clippy",
            "--release",
            "--manifest-path",
            "loom-tests/Cargo.toml",
            "--target-dir",
            "target/loom",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
        env: &[("RUSTFLAGS", LOOM_RUSTFLAGS)],
    },
    Step {
        name: "loom models",
        args: &[
            "test",
            "--release",
            "--manifest-path",
            "loom-tests/Cargo.toml",
            "--target-dir",
            "target/loom",
            "--",
            "--nocapture",
        ],
        env: &[("RUSTFLAGS", LOOM_RUSTFLAGS), ("LOOM_MAX_PREEMPTIONS", "3")],
    },
];

/// Swaps every crate's `sync` primitives for loom's (see poolmalloc-core's `sync` module).
const LOOM_RUSTFLAGS: &str = "--cfg poolmalloc_loom";

fn usage() -> ! {
    eprintln!(
        "usage: cargo xtask test\n  test  run format checks, clippy, every test, `compare --quick` and the loom models"
    );
    exit(2);
}

fn main() {
    let mut args = std::env::args().skip(1);
    match (args.next().as_deref(), args.next()) {
        (Some("test"), None) => {}
        (Some(other), _) if other != "test" => {
            eprintln!("xtask: unknown task '{other}' (allowed: test)");
            usage();
        }
        _ => usage(),
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    // Steps name paths from the workspace root, wherever `cargo xtask` was started.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let started = Instant::now();
    for step in STEPS {
        eprintln!(
            "==> xtask test: {} (cargo {})",
            step.name,
            step.args.join(" ")
        );
        let t = Instant::now();
        // A `+toolchain` argument is the rustup proxy's (plain `cargo`), not $CARGO's.
        let program = match step.args.first() {
            Some(a) if a.starts_with('+') => "cargo",
            _ => cargo.as_str(),
        };
        let status = Command::new(program)
            .current_dir(&root)
            .args(step.args)
            .envs(step.env.iter().copied())
            .status()
            .unwrap_or_else(|e| {
                eprintln!("xtask: could not run cargo: {e}");
                exit(1)
            });
        if !status.success() {
            eprintln!("xtask: step '{}' failed ({status})", step.name);
            exit(1);
        }
        eprintln!("==> {} done in {:.1?}", step.name, t.elapsed());
    }
    eprintln!("xtask test: all steps passed in {:.1?}", started.elapsed());
}
