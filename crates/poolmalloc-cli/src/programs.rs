//! `poolmalloc compare -- CMD [ARGS..]`: a whole program under every allocator, side by side.
//!
//! The program runs with each allocator's shared library preloaded (`LD_PRELOAD`): poolmalloc's
//! C library, every peer's library found on the machine, any `--lib NAME=PATH`, and the system
//! allocator with nothing preloaded. One untimed warm-up run per allocator, then `--reps`
//! interleaved repetitions (the allocators' order rotating, as for the workloads). Each run's
//! wall time, user and system CPU time and peak RSS come from `wait4`'s rusage. The system
//! allocator's warm-up is the reference: a run whose exit status (or, with `--check-output`,
//! standard output) differs from it has failed and is not timed, and a command that fails under
//! the system allocator fails everywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use poolmalloc_workloads::Unit;
use serde_json::{json, Value};

use poolmalloc_cli::launch;

use crate::args::{CompareArgs, ProgramArgs};
use crate::column::{Column, Preload, SYSTEM};
use crate::compare::progress;
use crate::report::{Failure, Outcome};
use crate::summary::summarize;

/// A peer looked for on the machine: its library's file names, most usual first, and the
/// packages that install it.
struct Peer {
    name: &'static str,
    files: &'static [&'static str],
    packages: &'static str,
}

const PEERS: &[Peer] = &[
    Peer {
        name: "jemalloc",
        files: &["libjemalloc.so.2", "libjemalloc.so"],
        packages: "libjemalloc2 on Debian/Ubuntu, jemalloc on Fedora",
    },
    Peer {
        name: "mimalloc",
        files: &["libmimalloc.so.2", "libmimalloc.so"],
        packages: "libmimalloc2.0 on Debian/Ubuntu, mimalloc on Fedora",
    },
    Peer {
        name: "tcmalloc",
        files: &[
            "libtcmalloc_minimal.so.4",
            "libtcmalloc.so.4",
            "libtcmalloc_minimal.so",
        ],
        packages: "libtcmalloc-minimal4 on Debian/Ubuntu, gperftools-libs on Fedora",
    },
];

/// Overrides the directories searched for peers' libraries (colon-separated), for a machine
/// that keeps them elsewhere and for tests.
pub const LIB_DIRS_ENV: &str = "POOLMALLOC_LIB_DIRS";

/// Where Debian/Ubuntu (multiarch), Fedora (lib64) and local builds put shared libraries.
fn lib_dirs() -> Vec<PathBuf> {
    if let Some(dirs) = std::env::var_os(LIB_DIRS_ENV) {
        return std::env::split_paths(&dirs).collect();
    }
    let multiarch = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("/usr/lib/{multiarch}"),
        format!("/lib/{multiarch}"),
        "/usr/lib64".into(),
        "/usr/lib".into(),
        "/usr/local/lib".into(),
    ]
    .into_iter()
    .map(PathBuf::from)
    .collect()
}

/// A fatal problem: a configuration error (exit 2) or a program that cannot be run (exit 127).
#[derive(Debug, PartialEq, Eq)]
pub enum Fatal {
    Config(String),
    CannotRun(String),
}

/// The allocators to run under, in table order (poolmalloc, system, the peers found, then the
/// `--lib` ones not named before), and a note for each peer that is not installed.
pub fn allocators(libs: &[(String, PathBuf)]) -> Result<(Vec<Preload>, Vec<String>), Fatal> {
    for (name, path) in libs {
        if !path.is_file() {
            return Err(Fatal::Config(format!(
                "--lib {name}={}: {} does not exist (or is not a file)",
                path.display(),
                path.display()
            )));
        }
    }
    let given = |name: &str| libs.iter().find(|(n, _)| n == name).map(|(_, p)| p.clone());
    let ours = match given("poolmalloc") {
        Some(p) => p,
        None => crate::run::library().map_err(Fatal::Config)?,
    };
    let mut list = vec![
        Preload {
            name: "poolmalloc".into(),
            lib: Some(ours),
        },
        Preload {
            name: SYSTEM.into(),
            lib: None,
        },
    ];
    let mut notes = Vec::new();
    let dirs = lib_dirs();
    for peer in PEERS {
        let found = given(peer.name).or_else(|| {
            peer.files
                .iter()
                .flat_map(|f| dirs.iter().map(move |d| d.join(f)))
                .find(|p| p.is_file())
        });
        match found {
            Some(lib) => list.push(Preload {
                name: peer.name.into(),
                lib: Some(lib),
            }),
            None => notes.push(format!(
                "(not installed: {} — package {}; or --lib {}=PATH)",
                peer.name, peer.packages, peer.name
            )),
        }
    }
    for (name, path) in libs {
        if !list.iter().any(|p| p.name == *name) {
            list.push(Preload {
                name: name.clone(),
                lib: Some(path.clone()),
            });
        }
    }
    Ok((list, notes))
}

/// How a run ended, as shells report it: the exit code, or 128 + the signal that ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Status(pub i32);

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            n if n > 128 => write!(f, "killed by signal {}", n - 128),
            n => write!(f, "exit status {n}"),
        }
    }
}

/// One run of the program.
struct Run {
    status: Status,
    wall: Duration,
    user: Duration,
    sys: Duration,
    /// Peak resident set, bytes (the largest of the process and the children it waited for).
    peak_rss: u64,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs the program once under `alloc`, through the launcher (`poolmalloc-exec`).
fn run_once(
    launcher: &Path,
    p: &ProgramArgs,
    alloc: &Preload,
    extra_env: &[(&str, &str)],
) -> Result<Run, Fatal> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static RUNS: AtomicUsize = AtomicUsize::new(0);
    let report = std::env::temp_dir().join(format!(
        "poolmalloc-compare-{}-{}",
        std::process::id(),
        RUNS.fetch_add(1, Ordering::Relaxed)
    ));
    let lib = alloc
        .lib
        .as_ref()
        .map_or(launch::NO_LIBRARY.into(), |l| l.display().to_string());
    let out = Command::new(launcher)
        .arg(&report)
        .arg(lib)
        .arg("--")
        .args(&p.command)
        .envs(p.env.iter().map(|(k, v)| (k, v)))
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Fatal::CannotRun(format!("cannot start {}: {e}", launcher.display())))?;
    let figures = std::fs::read_to_string(&report)
        .ok()
        .and_then(|line| launch::Report::from_line(&line));
    let _ = std::fs::remove_file(&report);
    let Some(r) = figures else {
        return Err(Fatal::CannotRun(
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ));
    };
    Ok(Run {
        status: Status(r.code),
        wall: r.wall,
        user: r.user,
        sys: r.sys,
        peak_rss: r.peak_rss,
        stdout: out.stdout,
        stderr: out.stderr,
    })
}

/// The launcher, beside this program. `cargo run` builds only the binary it runs: started by
/// cargo, this builds the launcher too when it is missing.
fn launcher() -> Result<PathBuf, Fatal> {
    let dir = crate::compare::exe_dir();
    let path = dir.join(launch::LAUNCHER);
    if !path.is_file() {
        crate::compare::cargo_build_bins("poolmalloc-cli", &dir, false);
    }
    if path.is_file() {
        Ok(path)
    } else {
        Err(Fatal::Config(format!(
            "{} not found beside this program; build it with `cargo build [--release] -p \
             poolmalloc-cli --bins`",
            launch::LAUNCHER
        )))
    }
}

/// Why `run` does not count, judged against the system allocator's warm-up run.
fn verdict(run: &Run, reference: &Run, check_output: bool, is_system: bool) -> Option<String> {
    let last_err = String::from_utf8_lossy(&run.stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| format!(" (last line of its stderr: {})", l.trim()))
        .unwrap_or_default();
    if reference.status != Status(0) {
        return Some(if is_system {
            format!(
                "{}{last_err}: the command must succeed under the system allocator to be compared",
                run.status
            )
        } else {
            format!(
                "{}{last_err}; the command fails under the system allocator too ({})",
                run.status, reference.status
            )
        });
    }
    if run.status != reference.status {
        return Some(format!(
            "{}{last_err} where the system allocator's run gave {}",
            run.status, reference.status
        ));
    }
    if check_output && run.stdout != reference.stdout {
        return Some(format!(
            "standard output differs from the system allocator's ({} bytes against {})",
            run.stdout.len(),
            reference.stdout.len()
        ));
    }
    None
}

/// The JSON reports poolmalloc's library printed at exit (`POOLMALLOC_STATS=json`), one per
/// process; the one that mapped the most arenas is the program's own.
fn poolmalloc_report(stderr: &[u8]) -> Option<Value> {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| l.starts_with("{\"classes\":"))
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .max_by_key(|v| v["arenas"]["mapped_ever"].as_u64().unwrap_or(0))
}

/// What the report says poolmalloc served, for the table's notes.
fn served_note(report: Option<&Value>) -> String {
    match report {
        Some(r) => {
            let blocks: u64 = r["classes"]
                .as_array()
                .map(|cs| cs.iter().filter_map(|c| c["blocks_out"].as_u64()).sum())
                .unwrap_or(0);
            format!(
                "(poolmalloc served the warm-up run: arenas mapped {}, high water {}; blocks out \
                 of pools at exit {}; large allocations {}; stats identity holds: {})",
                r["arenas"]["mapped_ever"],
                r["arenas"]["high_water"],
                blocks,
                r["large"]["allocs_total"],
                r["identity_holds"]
            )
        }
        None => "(poolmalloc printed no stats report in the warm-up run: was it preloaded?)".into(),
    }
}

/// The label of the program in the table's cases: its file name.
fn label(command: &[String]) -> String {
    Path::new(&command[0])
        .file_name()
        .map_or_else(|| command[0].clone(), |n| n.to_string_lossy().into_owned())
}

/// The command as a shell would take it back: words with anything but plain characters quoted.
fn shell_words(command: &[String]) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c);
    let words: Vec<String> = command
        .iter()
        .map(|w| {
            if !w.is_empty() && w.chars().all(plain) {
                w.clone()
            } else {
                format!("'{}'", w.replace('\'', "'\\''"))
            }
        })
        .collect();
    words.join(" ")
}

/// Runs the comparison on the program and summarizes it.
pub fn compare(args: &CompareArgs, p: &ProgramArgs) -> Result<Outcome<Preload>, Fatal> {
    let (allocators, mut notes) = allocators(&p.libs)?;
    let launcher = launcher()?;
    let reps = args.reps();
    let n = allocators.len();
    let bar = progress(((reps + 1) * n) as u64);
    let mut failures: Vec<Failure<Preload>> = Vec::new();
    let what = label(&p.command);
    let fail = |failures: &mut Vec<Failure<Preload>>, a: &Preload, message: String| {
        bar.suspend(|| eprintln!("compare: {what} on {} FAILED: {message}", a.name));
        failures.push(Failure {
            what: what.clone(),
            allocator: a.clone(),
            message,
        });
    };

    // Warm-up: the system allocator first, as the reference; poolmalloc's run prints its stats.
    bar.set_message(format!("{what} on {SYSTEM} (warm-up)"));
    let system = allocators
        .iter()
        .find(|a| a.name == SYSTEM)
        .expect("system is always listed");
    let reference = run_once(&launcher, p, system, &[])?;
    bar.inc(1);
    let mut report = None;
    for a in &allocators {
        let run = if a.name == SYSTEM {
            None
        } else {
            bar.set_message(format!("{what} on {} (warm-up)", a.name));
            let stats: &[(&str, &str)] = if a.is_poolmalloc() {
                &[("POOLMALLOC_STATS", "json")]
            } else {
                &[]
            };
            let run = run_once(&launcher, p, a, stats)?;
            bar.inc(1);
            if a.is_poolmalloc() {
                report = poolmalloc_report(&run.stderr);
            }
            Some(run)
        };
        let run = run.as_ref().unwrap_or(&reference);
        if let Some(why) = verdict(run, &reference, p.check_output, a.name == SYSTEM) {
            fail(&mut failures, a, why);
        }
    }

    let started = Instant::now();
    let mut runs: Vec<Vec<Run>> = allocators.iter().map(|_| Vec::new()).collect();
    for rep in 0..reps {
        for i in 0..n {
            let k = (i + rep) % n;
            let a = &allocators[k];
            if failures.iter().any(|f| f.allocator == *a) {
                bar.inc(1);
                continue; // failed once: its figures would mean nothing
            }
            bar.set_message(format!(
                "{what} on {} (repetition {}/{reps})",
                a.name,
                rep + 1
            ));
            let run = run_once(&launcher, p, a, &[])?;
            bar.inc(1);
            match verdict(&run, &reference, p.check_output, a.name == SYSTEM) {
                Some(why) => fail(&mut failures, a, why),
                None => runs[k].push(run),
            }
        }
    }
    bar.finish_and_clear();
    let elapsed = started.elapsed();

    type Figure = fn(&Run) -> f64;
    let figures: [(&str, Unit, Figure); 4] = [
        ("wall", Unit::Seconds, |r| r.wall.as_secs_f64()),
        ("user", Unit::Seconds, |r| r.user.as_secs_f64()),
        ("sys", Unit::Seconds, |r| r.sys.as_secs_f64()),
        ("peak-rss", Unit::MiB, |r| {
            r.peak_rss as f64 / (1 << 20) as f64
        }),
    ];
    let rows = figures
        .iter()
        .map(|&(name, unit, figure)| {
            let samples = allocators
                .iter()
                .zip(&runs)
                .filter(|(a, _)| !failures.iter().any(|f| f.allocator == **a))
                .map(|(a, rs)| (a.clone(), rs.iter().map(figure).collect()))
                .collect();
            summarize(&format!("{what}/{name}"), unit, samples)
        })
        .filter(|row| !row.cells.is_empty())
        .collect();
    if failures.iter().all(|f| !f.allocator.is_poolmalloc()) {
        notes.push(served_note(report.as_ref()));
    }
    let mut extra = serde_json::Map::new();
    extra.insert(
        "program".into(),
        json!({
            "command": p.command,
            "env": p.env.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
            "check_output": p.check_output,
            "exit_status_under_system": reference.status.0,
        }),
    );
    extra.insert(
        "libraries".into(),
        allocators
            .iter()
            .map(|a| {
                let lib = a.lib.as_ref().map(|l| l.display().to_string());
                (a.name.clone(), json!(lib))
            })
            .collect::<serde_json::Map<_, _>>()
            .into(),
    );
    extra.insert("poolmalloc_stats".into(), report.unwrap_or(Value::Null));
    Ok(Outcome {
        command: format!(
            "poolmalloc compare{} -- {}",
            if args.quick { " --quick" } else { "" },
            shell_words(&p.command)
        ),
        allocators,
        rows,
        failures,
        reps,
        elapsed,
        notes,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_shown_as_a_shell_reads_them() {
        let words = |w: &[&str]| shell_words(&w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(words(&["sh", "-c", "exit 3"]), "sh -c 'exit 3'");
        assert_eq!(words(&["echo", "it's", ""]), "echo 'it'\\''s' ''");
        assert_eq!(words(&["python3", "-X", "dev=1"]), "python3 -X dev=1");
    }

    #[test]
    fn a_run_fails_when_its_status_or_output_differs_from_the_system_run() {
        let run = |code: i32, out: &str| Run {
            status: Status(code),
            wall: Duration::ZERO,
            user: Duration::ZERO,
            sys: Duration::ZERO,
            peak_rss: 0,
            stdout: out.into(),
            stderr: b"some error\n".to_vec(),
        };
        let ok = run(0, "x");
        assert_eq!(verdict(&run(0, "x"), &ok, true, false), None);
        let why = verdict(&run(139, "x"), &ok, false, false).unwrap();
        assert!(
            why.contains("killed by signal 11") && why.contains("some error"),
            "{why}"
        );
        assert_eq!(verdict(&run(0, "y"), &ok, false, false), None);
        let why = verdict(&run(0, "y"), &ok, true, false).unwrap();
        assert!(why.contains("standard output differs"), "{why}");
        let failing = run(3, "");
        let why = verdict(&failing, &failing, false, true).unwrap();
        assert!(
            why.contains("must succeed under the system allocator"),
            "{why}"
        );
        let why = verdict(&run(3, ""), &failing, false, false).unwrap();
        assert!(
            why.contains("fails under the system allocator too"),
            "{why}"
        );
    }
}
