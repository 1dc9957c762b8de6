//! `poolmalloc`: compare poolmalloc with its peers, print its stats report, run a program on it.
//!
//! ```text
//! poolmalloc compare [--quick] [--workloads W,..] [--allocators A,..] [--threads T,..] [--reps N] [--out DIR]
//! poolmalloc compare [--quick] [--reps N] [--out DIR] [--lib NAME=PATH].. [--env K=V].. [--check-output] -- CMD [ARGS..]
//! poolmalloc stats [--json] [--fragmentation] [--k K]
//! poolmalloc run [--stats|--json] -- CMD [ARGS..]
//! ```
//! See `args::USAGE`, and README.md for how to read the table.
//!
//! The modules, bottom up: each uses only modules listed above it (there are no circles).
//!
//! - `poolmalloc_cli::launch` (library): the launcher's protocol; uses nothing here
//! - `run`: `poolmalloc run`, and finding poolmalloc's C library
//! - `column`: what a table column is (`Column`, `Preload`, `SYSTEM`)
//! - `stats`: `poolmalloc stats`
//! - `fragmentation`: `stats --fragmentation`; uses `stats`
//! - `summary`: samples to a row's figures; uses `column`
//! - `report`: the table, JSON and SVG of an outcome; uses `column`, `summary`
//! - `args`: the command line; uses `column`, `run`
//! - `compare`: `compare` on the workloads; uses `args`, `report`, `summary`
//! - `programs`: `compare -- CMD`; uses all above but `stats`, `fragmentation`

mod args;
mod column;
mod compare;
mod fragmentation;
mod programs;
mod report;
mod run;
mod stats;
mod summary;

use std::io::Write;
use std::process::exit;

use std::path::Path;

use args::{Command, UsageError, USAGE};
use column::Column;
use poolmalloc_workloads::{run, run_counted, Scale};
use programs::Fatal;
use report::Outcome;

/// Prints to stdout; a closed pipe (`poolmalloc compare | head`) is not an error worth a panic.
fn out(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Plays the seed scenario and prints it as JSON or text.
fn print_scenario(
    k: usize,
    json: bool,
    as_json: fn(usize, &[stats::Step]) -> serde_json::Value,
    as_text: fn(usize, &[stats::Step]) -> String,
) {
    match stats::scenario(k) {
        Ok(steps) if json => {
            let text = serde_json::to_string_pretty(&as_json(k, &steps))
                .expect("JSON of numbers and strings");
            out(&format!("{text}\n"));
        }
        Ok(steps) => out(&as_text(k, &steps)),
        Err(e) => {
            eprintln!("poolmalloc stats: {e}");
            exit(1)
        }
    }
}

/// Prints the table, writes the reports, and exits 1 if a run failed.
fn finish<K: Column>(outcome: &Outcome<K>, dir: &Path) {
    out(&report::table(outcome));
    match report::write_all(outcome, dir) {
        Ok(paths) => {
            let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
            out(&format!("wrote {}\n", names.join(", ")));
        }
        Err(e) => {
            eprintln!("poolmalloc: could not write the reports: {e}");
            exit(1)
        }
    }
    if !outcome.failures.is_empty() {
        eprintln!(
            "poolmalloc: {} run(s) failed (see FAILED above)",
            outcome.failures.len()
        );
        exit(1)
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let command = match args::parse(&argv) {
        Ok(c) => c,
        Err(UsageError(msg)) => {
            eprintln!("poolmalloc: {msg}\n\n{USAGE}");
            exit(2)
        }
    };
    match command {
        Command::Help => out(&format!("{USAGE}\n")),
        Command::Compare(a) => match &a.program {
            None => finish(&compare::compare(&a), &a.out),
            Some(p) => match programs::compare(&a, p) {
                Ok(outcome) => finish(&outcome, &a.out),
                Err(Fatal::Config(e)) => {
                    eprintln!("poolmalloc compare: {e}");
                    exit(2)
                }
                Err(Fatal::CannotRun(e)) => {
                    eprintln!("poolmalloc compare: {e}");
                    // What shells answer for a command that cannot be run.
                    exit(127)
                }
            },
        },
        Command::Stats { json, k } => print_scenario(k, json, stats::json, stats::text),
        Command::Fragmentation { json, k } => {
            print_scenario(k, json, fragmentation::json, fragmentation::text)
        }
        Command::Run { report, command } => match run::run(report, &command) {
            Ok(code) => exit(code),
            Err(e) => {
                eprintln!("poolmalloc run: {e}");
                // What shells answer for a command that cannot be run.
                exit(127)
            }
        },
        Command::Child {
            workload,
            allocator,
            quick,
            threads,
        } => {
            let mut out = std::io::stdout().lock();
            let status = match run(workload, allocator, Scale { quick }, &threads) {
                Ok(samples) => {
                    for s in samples {
                        let _ = writeln!(out, "{}", s.to_line());
                    }
                    0
                }
                Err(e) => {
                    let _ = writeln!(out, "FAULT\t{e}");
                    1
                }
            };
            let _ = out.flush();
            // The figures are out: leave without the exit handlers. Every peer is linked in,
            // and rpmalloc's finalizer, run at exit, races the thread exits of a rayon pool
            // still winding down (binary-trees on the system allocator died of SIGSEGV in
            // about one child in four).
            // SAFETY: `_exit` ends the process at once; stdout was flushed above.
            unsafe { libc::_exit(status) }
        }
        Command::Count { case, allocator, n } => match run_counted(&case, allocator, n) {
            Ok(ops) => out(&format!("{ops}\n")),
            Err(e) => {
                eprintln!("poolmalloc __count: {e}");
                exit(1)
            }
        },
    }
}
