//! `poolmalloc compare`: every workload × allocator, several interleaved repetitions.
//!
//! Workloads take the allocator as a value (this process's own `#[global_allocator]` is System,
//! so bookkeeping is the same for everyone). `pair` and `pair-alone` run in this process; the
//! multi-threaded workloads and the memory figures (`memory`, `seed`) run each in a fresh child
//! process per repetition (`poolmalloc __child ..`), so no allocator sees another's resident
//! pages or starts warm from its own last repetition, and a peak RSS read there is its own.
//! The `global` workload runs in one child binary per allocator, which installs it as
//! `#[global_allocator]` (built with fat LTO for a release `poolmalloc`, so the allocator can
//! be inlined into the workload); the `service` workload drives one server binary per
//! allocator (`crates/poolmalloc-service`, built the same way) from this process over
//! loopback. Repetitions are interleaved: every repetition runs every job once, and the
//! allocators' order rotates between repetitions, so a noisy moment of the machine is spread
//! over all of them rather than landing on one.

use std::path::{Path, PathBuf};
use std::process::{Command as Process, Stdio};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use poolmalloc_workloads::{run, run_service, AllocatorId, Sample, Scale, Unit, Where, Workload};
use serde_json::json;

use crate::args::CompareArgs;
use crate::report::{Failure, Outcome};
use crate::summary::{summarize, Row};

/// One workload on one allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Job {
    pub workload: Workload,
    pub allocator: AllocatorId,
}

/// The allocators that can be installed as `#[global_allocator]` (a `Heap` cannot be built in a
/// `static`), each with its child binaries.
pub fn has_global_binary(a: AllocatorId) -> bool {
    a != AllocatorId::PoolMallocHeap
}

/// A set of child binaries, one per allocator that can be a `#[global_allocator]`: the package
/// that builds them and their names' prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Children {
    package: &'static str,
    prefix: &'static str,
}

/// The `global` workload's children (`crates/poolmalloc-cli/src/bin`).
const GLOBAL: Children = Children {
    package: "poolmalloc-cli",
    prefix: "poolmalloc-global-",
};
/// The `service` workload's servers (`crates/poolmalloc-service/src/bin`).
const SERVICE: Children = Children {
    package: "poolmalloc-service",
    prefix: "poolmalloc-service-",
};

impl Children {
    /// The children of the workloads that run in one.
    fn of(w: Workload) -> Option<Children> {
        match w.place() {
            Where::GlobalAllocator => Some(GLOBAL),
            Where::Server => Some(SERVICE),
            Where::InProcess | Where::FreshProcess => None,
        }
    }

    fn binary(self, a: AllocatorId) -> String {
        format!("{}{}", self.prefix, a.name())
    }
}

pub fn exe_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_default()
}

/// Where the global-allocator child binaries (and the service's servers) are. A release
/// `poolmalloc` uses children built
/// with fat LTO and one codegen unit in their own target directory (`<target>/global-lto`), so the
/// allocator can be inlined through Rust's `__rust_alloc` shim into the workload, as in a program
/// built that way; the workspace's release profile is left alone. Any other build uses the
/// children beside itself (`cargo test` builds them).
fn global_binaries_dir() -> PathBuf {
    let dir = exe_dir();
    match (dir.file_name().and_then(|n| n.to_str()), dir.parent()) {
        (Some("release"), Some(target)) => target.join(GLOBAL_LTO_DIR).join("release"),
        _ => dir,
    }
}

const GLOBAL_LTO_DIR: &str = "global-lto";
const LTO_ENV: [(&str, &str); 2] = [
    ("CARGO_PROFILE_RELEASE_LTO", "fat"),
    ("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "1"),
];

/// Makes sure `children` are built and current. When started by cargo
/// (`cargo run`, which builds only the binary it runs) this runs `cargo build` for them — a
/// no-op when they are up to date, a few minutes the first time for the LTO build; otherwise
/// they must exist already, and the error says how to build them.
fn ensure_binaries(children: Children, allocators: &[AllocatorId]) -> Result<PathBuf, String> {
    let dir = global_binaries_dir();
    let lto = dir != exe_dir();
    let package = children.package;
    let missing: Vec<String> = allocators
        .iter()
        .filter(|&&a| has_global_binary(a))
        .map(|&a| children.binary(a))
        .filter(|name| !dir.join(name).exists())
        .collect();
    let hint = if lto {
        let target = dir.parent().unwrap_or(&dir).display().to_string();
        format!(
            "missing {} in {}; build them with `CARGO_TARGET_DIR={target} {} cargo build \
             --release -p {package} --bins`",
            missing.join(", "),
            dir.display(),
            LTO_ENV.map(|(k, v)| format!("{k}={v}")).join(" ")
        )
    } else {
        format!(
            "missing {} in {}; build them with `cargo build -p {package} --bins`",
            missing.join(", "),
            dir.display()
        )
    };
    // Under `cargo test` the debug children are built and current, and the build directory is
    // locked by the running `cargo test`: only the separate LTO directory is built from here.
    let build = match std::env::var_os("CARGO") {
        Some(_) if lto => true,
        Some(_) => !missing.is_empty(),
        None => false,
    };
    if !build {
        return if missing.is_empty() {
            Ok(dir)
        } else {
            Err(hint)
        };
    }
    if !missing.is_empty() {
        eprintln!(
            "compare: building {package}'s #[global_allocator] binaries{} (once)",
            if lto {
                " with fat LTO in target/global-lto"
            } else {
                ""
            }
        );
    }
    if !cargo_build_bins(package, &dir, lto) {
        return Err(format!("building the child binaries failed; {hint}"));
    }
    let still_missing = allocators
        .iter()
        .filter(|&&a| has_global_binary(a))
        .any(|&a| !dir.join(children.binary(a)).exists());
    if still_missing {
        Err(hint)
    } else {
        Ok(dir)
    }
}

/// Builds `package`'s binaries into `dir` (a `<target>/<profile>` directory; `lto`: the
/// fat-LTO build of `global_binaries_dir`) with the cargo that started this program. False when
/// no cargo started it, or the build failed.
pub fn cargo_build_bins(package: &str, dir: &Path, lto: bool) -> bool {
    let Ok(cargo) = std::env::var("CARGO") else {
        return false;
    };
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
    let mut cmd = Process::new(cargo);
    cmd.args(["build", "--quiet", "--manifest-path", manifest])
        .args(["-p", package, "--bins"]);
    if lto {
        let target = dir.parent().unwrap_or(dir);
        cmd.arg("--release")
            .env("CARGO_TARGET_DIR", target)
            .envs(LTO_ENV);
    } else if let Some(profile) = dir.file_name().and_then(|n| n.to_str()) {
        if profile != "debug" {
            cmd.args(["--profile", profile]);
        }
    }
    matches!(cmd.status(), Ok(s) if s.success())
}

/// Runs a child and reads its `RESULT` lines.
fn run_child(program: &Path, args: &[&str]) -> Result<Vec<Sample>, String> {
    let out = Process::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not start {}: {e}", program.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(fault) = stdout.lines().find_map(|l| l.strip_prefix("FAULT\t")) {
        return Err(fault.to_string());
    }
    if !out.status.success() {
        return Err(format!(
            "{} {} exited with {}: {}",
            program.display(),
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    let samples: Vec<Sample> = stdout.lines().filter_map(Sample::from_line).collect();
    if samples.is_empty() {
        return Err(format!("{} printed no results", program.display()));
    }
    Ok(samples)
}

fn run_job(
    job: Job,
    scale: Scale,
    threads: &[usize],
    children_dir: &Path,
) -> Result<Vec<Sample>, String> {
    let quick = if scale.quick { &["--quick"][..] } else { &[] };
    match job.workload.place() {
        Where::InProcess => run(job.workload, job.allocator, scale, threads).map_err(|f| f.0),
        Where::FreshProcess => {
            let exe = std::env::current_exe().map_err(|e| e.to_string())?;
            let counts: Vec<String> = threads.iter().map(usize::to_string).collect();
            let counts = counts.join(",");
            let mut args = vec!["__child", job.workload.name(), job.allocator.name()];
            args.extend_from_slice(quick);
            if !threads.is_empty() {
                args.extend_from_slice(&["--threads", &counts]);
            }
            run_child(&exe, &args)
        }
        Where::GlobalAllocator => {
            run_child(&children_dir.join(GLOBAL.binary(job.allocator)), quick)
        }
        Where::Server => {
            let server = children_dir.join(SERVICE.binary(job.allocator));
            run_service(&server, scale).map_err(|f| f.0)
        }
    }
}

/// The bar `compare` shows while it runs (on stderr; hidden when that is not a terminal).
pub fn progress(total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template("{elapsed:>4} [{bar:30}] {pos}/{len} {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// Whether `job` has failed already.
fn failed(failures: &[Failure<AllocatorId>], workload: Workload, allocator: AllocatorId) -> bool {
    failures
        .iter()
        .any(|f| f.what == workload.name() && f.allocator == allocator)
}

/// Runs the comparison and summarizes it.
pub fn compare(args: &CompareArgs) -> Outcome<AllocatorId> {
    let scale = Scale { quick: args.quick };
    let reps = args.reps();
    let mut notes = Vec::new();
    let mut failures: Vec<Failure<AllocatorId>> = Vec::new();
    let mut children_dir = exe_dir();

    // The jobs of one repetition, grouped by workload.
    let mut groups: Vec<Vec<Job>> = Vec::new();
    for &workload in &args.workloads {
        let mut group = Vec::new();
        for &allocator in &args.allocators {
            let job = Job {
                workload,
                allocator,
            };
            if Children::of(workload).is_some() && !has_global_binary(allocator) {
                notes.push(format!(
                    "(not run: {workload} on {allocator}: a Heap cannot be a #[global_allocator] \
                     static)"
                ));
            } else if workload == Workload::Service && allocator == AllocatorId::Rpmalloc {
                // Seen in every full run (5 s of load), never in --quick: the peer's own crash.
                notes.push(format!(
                    "(not run: {workload} on {allocator}: the rpmalloc crate's server dies of \
                     SIGSEGV under tokio's load)"
                ));
            } else {
                group.push(job);
            }
        }
        if let Some(children) = Children::of(workload).filter(|_| !group.is_empty()) {
            let allocators: Vec<AllocatorId> = group.iter().map(|j| j.allocator).collect();
            match ensure_binaries(children, &allocators) {
                Ok(dir) => children_dir = dir,
                Err(e) => {
                    for job in group.drain(..) {
                        failures.push(Failure {
                            what: workload.name().into(),
                            allocator: job.allocator,
                            message: e.clone(),
                        });
                    }
                }
            }
        }
        if !group.is_empty() {
            groups.push(group);
        }
    }

    // The runs' time, not the child binaries' build.
    let started = Instant::now();
    let total: usize = groups.iter().map(Vec::len).sum::<usize>() * reps;
    let bar = progress(total as u64);
    // (job, samples of every repetition), in table order.
    let mut results: Vec<(Job, Vec<Sample>)> = Vec::new();
    for rep in 0..reps {
        for group in &groups {
            let n = group.len();
            for i in 0..n {
                let job = group[(i + rep) % n];
                if failed(&failures, job.workload, job.allocator) {
                    bar.inc(1);
                    continue; // failed once: its figures would mean nothing
                }
                bar.set_message(format!(
                    "{} on {} (repetition {}/{reps})",
                    job.workload,
                    job.allocator,
                    rep + 1
                ));
                match run_job(job, scale, &args.threads, &children_dir) {
                    Ok(samples) => match results.iter_mut().find(|(j, _)| *j == job) {
                        Some((_, all)) => all.extend(samples),
                        None => results.push((job, samples)),
                    },
                    Err(message) => {
                        bar.suspend(|| {
                            eprintln!(
                                "compare: {} on {} FAILED: {message}",
                                job.workload, job.allocator
                            )
                        });
                        failures.push(Failure {
                            what: job.workload.name().into(),
                            allocator: job.allocator,
                            message,
                        });
                    }
                }
                bar.inc(1);
            }
        }
    }
    bar.finish_and_clear();

    let trim = args
        .allocators
        .iter()
        .map(|a| (a.name().to_string(), json!(a.trim_name())))
        .collect::<serde_json::Map<_, _>>();
    Outcome {
        command: format!(
            "poolmalloc compare{}",
            if args.quick { " --quick" } else { "" }
        ),
        allocators: args.allocators.clone(),
        rows: rows(&args.workloads, &args.allocators, &results, &failures),
        failures,
        reps,
        elapsed: started.elapsed(),
        notes,
        extra: [("trim".to_string(), trim.into())].into_iter().collect(),
    }
}

/// One row per case, in workload order then in the order the workload reports its cases.
fn rows(
    workloads: &[Workload],
    allocators: &[AllocatorId],
    results: &[(Job, Vec<Sample>)],
    failures: &[Failure<AllocatorId>],
) -> Vec<Row<AllocatorId>> {
    let mut rows = Vec::new();
    for &w in workloads {
        let mut cases: Vec<(String, Unit)> = Vec::new();
        for (job, samples) in results.iter().filter(|(j, _)| j.workload == w) {
            if failed(failures, w, job.allocator) {
                continue;
            }
            for s in samples {
                if !cases.iter().any(|(c, _)| *c == s.case) {
                    cases.push((s.case.clone(), s.unit));
                }
            }
        }
        for (case, unit) in cases {
            let per_allocator = allocators
                .iter()
                .map(|&a| {
                    let values = results
                        .iter()
                        .filter(|(j, _)| j.workload == w && j.allocator == a)
                        .filter(|_| !failed(failures, w, a))
                        .flat_map(|(_, s)| s.iter().filter(|s| s.case == case).map(|s| s.value))
                        .collect();
                    (a, values)
                })
                .collect();
            rows.push(summarize(&case, unit, per_allocator));
        }
    }
    rows
}
