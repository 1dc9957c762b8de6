//! `poolmalloc run [--stats|--json] -- CMD ARGS..`: runs CMD with poolmalloc's C library
//! preloaded (`LD_PRELOAD`), so every `malloc` of CMD and its children is served by poolmalloc,
//! and has each process print its stats report to stderr when it exits. CMD's exit status is
//! passed through (128 + N when a signal N ended it, as shells do).

use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Command;

/// The library's file name, as cargo builds it from `crates/poolmalloc-capi`.
const LIBRARY: &str = "libpoolmalloc_capi.so";

/// Which report the preloaded library prints at exit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Report {
    Text,
    Json,
}

/// The C library: `POOLMALLOC_LIB` if set, else beside this executable (cargo puts both in the
/// same target directory), else an error saying how to build it.
pub fn library() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("POOLMALLOC_LIB") {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!("POOLMALLOC_LIB={} is not a file", path.display()))
        };
    }
    let exe = std::env::current_exe().map_err(|e| format!("cannot locate this program: {e}"))?;
    let dir = exe.parent().ok_or("this program has no directory")?;
    // Beside the binary, or one level up for test binaries in target/<profile>/deps.
    for candidate in [dir.join(LIBRARY), dir.join("..").join(LIBRARY)] {
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(format!(
        "{LIBRARY} not found beside {}; build it with `cargo build --release -p poolmalloc-capi` \
         (or set POOLMALLOC_LIB to its path)",
        exe.display()
    ))
}

/// Runs the command and returns the exit code to pass on.
pub fn run(report: Report, command: &[String]) -> Result<i32, String> {
    let (program, args) = command
        .split_first()
        .ok_or("run needs a command after `--`")?;
    let lib = library()?;
    let mut preload = lib.into_os_string();
    if let Some(existing) = std::env::var_os("LD_PRELOAD").filter(|v| !v.is_empty()) {
        preload.push(":");
        preload.push(existing);
    }
    let status = Command::new(program)
        .args(args)
        .env("LD_PRELOAD", preload)
        .env(
            "POOLMALLOC_STATS",
            match report {
                Report::Text => "1",
                Report::Json => "json",
            },
        )
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    Ok(status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
}
