//! The C library from C: programs under `tests/c/` are compiled with the system compiler against
//! the system malloc and run with `libpoolmalloc_capi.so` preloaded; each prints its own
//! "N passed, N failed" line and exits non-zero on a failed check.

use std::path::PathBuf;
use std::process::Command;

mod common {
    include!("common/library.rs");
}
use common::library;

/// Compiles `tests/c/<name>.c` into the target directory.
fn compile(name: &str) -> PathBuf {
    common::compile(name, false, &[])
}

fn run_preloaded(name: &str) {
    run_compiled(name, &compile(name), &[], &[]);
}

/// Runs the compiled `exe` (of `tests/c/<name>.c`) with `args` and `env`, preloaded; it must
/// exit 0 and print a summary with no failure.
fn run_compiled(name: &str, exe: &std::path::Path, args: &[&str], env: &[(&str, &str)]) {
    let out = Command::new(exe)
        .args(args)
        .env("LD_PRELOAD", library())
        .envs(env.iter().copied())
        .output()
        .expect("run the test program");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    assert!(
        out.status.success(),
        "{name} {args:?} failed ({})",
        out.status
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "{name} {args:?} printed no summary"
    );
}

#[test]
fn bad_input_gets_documented_answers() {
    run_preloaded("bad_input");
}

#[test]
fn medium_blocks_from_our_pools() {
    run_preloaded("medium");
}

#[test]
fn pthread_stress_with_cross_thread_frees() {
    run_preloaded("stress");
}

#[test]
fn fork_from_a_multithreaded_parent() {
    run_preloaded("fork");
}

#[test]
fn thread_create_exit_loop_leaks_nothing() {
    run_preloaded("thread_churn");
}

/// Runs `tests/c/purge.c` in `mode` with `env` set, preloaded; its checks must all pass.
fn run_purge(mode: &str, env: &[(&str, &str)]) {
    // Compiled once: the tests run in parallel, and one must not rewrite the program while
    // another starts it.
    static EXE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    run_compiled("purge", EXE.get_or_init(|| compile("purge")), &[mode], env);
}

#[test]
fn freed_memory_goes_back_with_no_call_by_the_purger_thread() {
    run_purge("release", &[]);
}

#[test]
fn a_forked_child_starts_its_own_purger() {
    run_purge("fork", &[]);
}

#[test]
fn purger_calls_starts_no_thread_and_purges_in_later_calls() {
    run_purge(
        "calls",
        &[
            ("POOLMALLOC_PURGER", "calls"),
            ("POOLMALLOC_PURGE_DELAY_MS", "300"),
        ],
    );
}

/// `unshare(CLONE_NEWUSER)` needs a single-threaded process: the preloaded library must not
/// have started a thread by then, whatever glibc's answer is.
#[test]
fn unshare_user_namespace_answers_as_under_glibc() {
    let run = |preload: bool| {
        let mut cmd = Command::new("unshare");
        cmd.args(["--user", "--map-root-user", "true"]);
        if preload {
            cmd.env("LD_PRELOAD", library());
        }
        cmd.output().map(|o| o.status.code())
    };
    let Ok(glibc) = run(false) else {
        eprintln!("unshare not found: skipped");
        return;
    };
    assert_eq!(run(true).expect("run unshare"), glibc);
}

#[test]
fn purge_settings_reject_bad_values_in_one_line() {
    let out = Command::new("true")
        .env("LD_PRELOAD", library())
        .env("POOLMALLOC_PURGE_DELAY_MS", "soon")
        .env("POOLMALLOC_PURGER", "daemon")
        .output()
        .expect("run true");
    assert!(
        out.status.success(),
        "a bad value must not crash the program"
    );
    let warning = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = warning.lines().collect();
    assert_eq!(lines.len(), 2, "{warning}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("POOLMALLOC_PURGE_DELAY_MS=soon")
                && l.contains("0 (at once) to 3600000")),
        "{warning}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("POOLMALLOC_PURGER=daemon") && l.contains("one of thread, calls")),
        "{warning}"
    );
}

#[test]
fn stats_env_prints_report_and_rejects_bad_values() {
    let run = |value: &str| {
        Command::new("true")
            .env("LD_PRELOAD", library())
            .env("POOLMALLOC_STATS", value)
            .output()
            .expect("run true")
    };
    let text = run("1");
    assert!(text.status.success());
    let report = String::from_utf8_lossy(&text.stderr);
    assert!(report.contains("Small block threshold = 512"), "{report}");
    let json = run("json");
    let json = String::from_utf8_lossy(&json.stderr);
    assert!(json.trim_start().starts_with("{\"classes\":"), "{json}");
    assert!(json.trim_end().ends_with('}'));
    let bad = run("yes please");
    assert!(
        bad.status.success(),
        "a bad value must not crash the program"
    );
    let warning = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(warning.lines().count(), 1, "{warning}");
    assert!(warning.contains("POOLMALLOC_STATS=yes please") && warning.contains("1, json"));
}

/// Debug mode (`POOLMALLOC_DEBUG=1`): fills and pads, then each planted fault reported on one
/// line naming address and class, then an abort. Without it the same library runs as usual and
/// an overflow into the block's slack goes unseen.
#[test]
fn debug_mode_reports_each_planted_fault_and_aborts() {
    use std::os::unix::process::ExitStatusExt;
    let exe = compile("debug_mode");
    let run = |what: &str, debug: bool| {
        let mut cmd = Command::new(&exe);
        cmd.arg(what).env("LD_PRELOAD", library());
        if debug {
            cmd.env("POOLMALLOC_DEBUG", "1");
        }
        cmd.output().expect("run debug_mode")
    };
    let fill = run("fill", true);
    let stdout = String::from_utf8_lossy(&fill.stdout);
    eprint!("{}", String::from_utf8_lossy(&fill.stderr));
    assert!(
        fill.status.success() && stdout.contains(" passed, 0 failed"),
        "{stdout}"
    );
    // What was planted, what the line must say, and which block it must name.
    let faults = [
        ("double", "double free of 0x", "class "),
        ("interior", "not the start of a block (class ", "class "),
        (
            "overflow",
            "forbidden byte at offset 40 after the 40-byte block",
            "class ",
        ),
        (
            "underflow",
            "forbidden byte at offset -1 before the 40-byte block",
            "class ",
        ),
        ("large-double", "double free of 0x", "large block"),
        (
            "large-overflow",
            "forbidden byte at offset 100000 after the 100000-byte block",
            "large block",
        ),
        ("foreign", ": not a poolmalloc block", "free of 0x"),
    ];
    for (what, expected, block) in faults {
        let out = run(what, true);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{what}: {stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: {stderr}");
        assert!(lines[0].starts_with("poolmalloc: "), "{what}: {stderr}");
        assert!(lines[0].contains(expected), "{what}: {stderr}");
        assert!(lines[0].contains(block), "{what}: {stderr}");
    }
    let plain = run("overflow", false);
    assert!(String::from_utf8_lossy(&plain.stdout).contains("survived overflow"));
}
