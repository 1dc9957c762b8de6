//! Misuse under the preloaded library (`tests/c/misuse.c`), as a user runs it: every double free
//! below is reported on one line naming the block, then SIGABRT; what is not a double free runs
//! clean; secure mode reports a write into a free block's link. `cargo xtask test` runs these
//! with the release library too.

use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output};

mod common {
    include!("common/library.rs");
}
use common::library;

fn run(what: &str, env: &[(&str, &str)]) -> Output {
    // Compiled once: the tests run in parallel.
    static EXE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let exe = EXE.get_or_init(|| common::compile("misuse", false, &[]));
    Command::new(exe)
        .arg(what)
        .env("LD_PRELOAD", library())
        .envs(env.iter().copied())
        .output()
        .expect("run misuse")
}

/// The scenario ends in one report line that contains `expected` and the address the program
/// printed, then SIGABRT.
fn reported(what: &str, env: &[(&str, &str)], expected: &str) {
    let out = run(what, env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let block = stdout
        .lines()
        .find_map(|l| l.strip_prefix("block "))
        .unwrap_or_else(|| panic!("{what}: no block printed: {stdout}"));
    assert!(!stdout.contains("survived"), "{what}: {stdout}{stderr}");
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{what}: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{what}: {stderr}");
    assert!(lines[0].starts_with("poolmalloc: "), "{what}: {stderr}");
    assert!(lines[0].contains(expected), "{what}: {stderr}");
    assert!(lines[0].contains(block), "{what}: {block} not in {stderr}");
}

#[test]
fn double_free_in_the_same_thread() {
    reported("same", &[], "double free of 0x");
    // 40 bytes: C's alignment for 16 bytes and more puts them in the 48-byte class.
    reported("same", &[], "(class 5, 48-byte blocks)");
}

#[test]
fn double_free_of_an_8_byte_block() {
    reported("tiny", &[], "(class 0, 8-byte blocks)");
}

#[test]
fn double_free_after_another_thread_freed_the_block() {
    reported("thread", &[], "double free of 0x");
}

#[test]
fn double_free_by_a_thread_that_does_not_own_the_block() {
    reported("thread-twice", &[], "double free of 0x");
}

#[test]
fn double_free_after_the_pool_went_back_to_the_core() {
    reported("flush", &[], "double free of 0x");
}

#[test]
fn double_frees_in_secure_and_debug_mode_too() {
    reported("same", &[("POOLMALLOC_SECURE", "1")], "double free of 0x");
    reported("thread", &[("POOLMALLOC_SECURE", "1")], "double free of 0x");
    reported("same", &[("POOLMALLOC_DEBUG", "1")], "double free of 0x");
}

/// A block that holds a freed block's first word is not accused; a second free that cannot be
/// confirmed changes nothing; no block is handed out twice.
#[test]
fn what_is_not_a_confirmed_double_free_runs_clean() {
    for env in [[("POOLMALLOC_SECURE", "0")], [("POOLMALLOC_SECURE", "1")]] {
        let out = run("clean", &env);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
        assert!(stderr.is_empty(), "{stderr}");
    }
}

#[test]
fn secure_mode_reports_a_write_into_a_free_block() {
    reported(
        "overwrite",
        &[("POOLMALLOC_SECURE", "1")],
        "was written after it was freed",
    );
}

#[test]
fn unknown_mode_values_are_named_in_one_warning_each() {
    for name in ["POOLMALLOC_DEBUG", "POOLMALLOC_SECURE"] {
        let out = Command::new("true")
            .env("LD_PRELOAD", library())
            .env(name, "yes")
            .output()
            .expect("run true");
        assert!(
            out.status.success(),
            "a bad value must not crash the program"
        );
        let warning = String::from_utf8_lossy(&out.stderr);
        assert_eq!(warning.lines().count(), 1, "{warning}");
        assert!(
            warning.contains(&format!("{name}=yes")) && warning.contains("1, 0"),
            "{warning}"
        );
    }
}
