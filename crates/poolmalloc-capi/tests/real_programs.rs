//! Real programs under the preloaded library, each compared with the same run without it:
//! CPython running some of its own test-suite modules with every object from the C allocator
//! (`PYTHONMALLOC=malloc`), and git on a scratch repository. poolmalloc's JSON stats, printed at
//! exit, prove it served them.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

// Each test program uses part of the shared helpers (this one: the library's path).
#[allow(dead_code)]
mod common {
    include!("common/library.rs");
}
use common::library;

/// Runs `cmd`, with the library preloaded and its JSON stats requested when `preload` is set.
fn run(cmd: &mut Command, preload: bool) -> (Output, Duration) {
    if preload {
        cmd.env("LD_PRELOAD", library())
            .env("POOLMALLOC_STATS", "json");
    }
    let start = Instant::now();
    let out = cmd.output().expect("run the program");
    (out, start.elapsed())
}

/// The `"key":N` numbers of the JSON stats line a preloaded process printed at exit.
fn served(stderr: &[u8], key: &str) -> i64 {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"classes\":"))
        .unwrap_or_else(|| panic!("no poolmalloc stats in stderr:\n{text}"));
    let pattern = format!("\"{key}\":");
    let at = line.find(&pattern).expect("key in stats") + pattern.len();
    line[at..]
        .split([',', '}'])
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn cpython_test_modules_pass_under_poolmalloc() {
    let modules = [
        "test_dict",
        "test_list",
        "test_set",
        "test_json",
        "test_unicode",
    ];
    // Only the top process reports: the variable is dropped before the test suite starts the
    // subprocesses it compares output with (they still run under poolmalloc, preloaded).
    let runner = "import os, runpy, sys\n\
                  os.environ.pop('POOLMALLOC_STATS', None)\n\
                  sys.argv = ['test', '-q'] + sys.argv[1:]\n\
                  runpy.run_module('test', run_name='__main__')";
    let python = |preload| {
        let mut cmd = Command::new("python3");
        cmd.args(["-c", runner])
            .args(modules)
            .env("PYTHONMALLOC", "malloc");
        run(&mut cmd, preload)
    };
    let (plain, plain_time) = python(false);
    let (pooled, pooled_time) = python(true);
    let tail = |o: &Output| {
        String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap_or("")
            .to_string()
    };
    assert!(
        plain.status.success(),
        "CPython's own run failed: {}",
        tail(&plain)
    );
    assert!(
        pooled.status.success(),
        "under poolmalloc: {}",
        tail(&pooled)
    );
    assert_eq!(tail(&plain), tail(&pooled), "the two runs disagree");
    assert!(
        served(&pooled.stderr, "mapped_ever") >= 1,
        "poolmalloc mapped no arena"
    );
    assert!(served(&pooled.stderr, "allocs_total") >= 1);
    println!(
        "CPython {modules:?}: {plain_time:.1?} plain, {pooled_time:.1?} with poolmalloc (debug build); {}",
        tail(&pooled)
    );
}

#[test]
fn git_on_a_scratch_repository() {
    let dir = std::env::temp_dir().join(format!("poolmalloc-git-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The same history twice, with and without poolmalloc: fixed names and dates make the
    // commit ids a checksum of everything git did.
    let history = |preload: bool| -> (String, Duration) {
        let repo = dir.join(if preload { "pooled" } else { "plain" });
        std::fs::create_dir_all(&repo).unwrap();
        for i in 0..300 {
            let body = format!("file {i}\n").repeat(i % 50 + 1);
            std::fs::write(repo.join(format!("f{i}.txt")), body).unwrap();
        }
        let git = |args: &[&str]| {
            let mut cmd = Command::new("git");
            cmd.args(args)
                .current_dir(&repo)
                .env("GIT_CONFIG_NOSYSTEM", "1");
            cmd.env("HOME", &repo)
                .env("GIT_AUTHOR_NAME", "t")
                .env("GIT_AUTHOR_EMAIL", "t@t");
            cmd.env("GIT_COMMITTER_NAME", "t")
                .env("GIT_COMMITTER_EMAIL", "t@t");
            cmd.env("GIT_AUTHOR_DATE", "2026-01-01T00:00:00Z");
            cmd.env("GIT_COMMITTER_DATE", "2026-01-01T00:00:00Z");
            let (out, time) = run(&mut cmd, preload);
            assert!(
                out.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            if preload {
                assert!(
                    served(&out.stderr, "mapped_ever") >= 1,
                    "git {args:?} not served"
                );
            }
            (String::from_utf8_lossy(&out.stdout).to_string(), time)
        };
        let mut total = Duration::ZERO;
        for args in [
            &["init", "-q", "-b", "main"][..],
            &["add", "."],
            &["commit", "-q", "-m", "one"],
        ] {
            total += git(args).1;
        }
        std::fs::write(repo.join("f7.txt"), "changed\n").unwrap();
        total += git(&["commit", "-q", "-am", "two"]).1;
        total += git(&["gc", "-q"]).1;
        total += git(&["fsck", "--no-progress"]).1;
        let (log, t) = git(&["log", "--format=%H %s", "--stat"]);
        (log, total + t)
    };
    let (plain, plain_time) = history(false);
    let (pooled, pooled_time) = history(true);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        plain, pooled,
        "git under poolmalloc wrote a different history"
    );
    assert!(plain.contains("300 files changed"));
    println!("git: {plain_time:.1?} plain, {pooled_time:.1?} with poolmalloc (debug build)");
}
