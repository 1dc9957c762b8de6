//! Thread and process lifecycle under every order the C library allows: `tests/c/lifecycle.c`
//! runs each order (fork handlers of an earlier-loaded library that allocate, a thread whose
//! first allocator call is in a pthread key destructor, C++ thread-local destructors, atexit
//! handlers and ELF destructors after `main`, threads ending while another forks, a fork from a
//! thread, `pthread_exit` from a key destructor, dlopen and dlclose of a library that allocates
//! in its constructor and destructor). Each must give the same output and exit status under the
//! preloaded library as under glibc's malloc, within a time limit, so a hang fails the test
//! rather than CI's clock. Under poolmalloc the program also checks, through the stats, that no
//! ended thread is still counted.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

mod common {
    include!("common/library.rs");
}
use common::library;

/// How long one run may take: the slowest order takes well under a second.
const LIMIT: Duration = Duration::from_secs(60);

/// The program, linked against `libatfork_lib.so`, and the directory of the libraries.
fn program() -> &'static (PathBuf, PathBuf) {
    static BUILT: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BUILT.get_or_init(|| {
        let atfork = common::compile("atfork_lib", true, &[]);
        common::compile("ctor_lib", true, &[]);
        let dir = atfork.parent().unwrap().to_path_buf();
        let rpath = format!("-Wl,-rpath,{}", dir.display());
        let link_dir = format!("-L{}", dir.display());
        let extra: [&OsStr; 3] = [link_dir.as_ref(), "-latfork_lib".as_ref(), rpath.as_ref()];
        (common::compile("lifecycle", false, &extra), dir)
    })
}

/// Runs one order, preloaded or not, with `env`: its exit status (None for a signal) and stdout.
fn run(order: &str, preload: bool, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (exe, dir) = program();
    let mut cmd = Command::new(exe);
    cmd.arg(order)
        .arg(dir)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if preload {
        cmd.env("LD_PRELOAD", library());
    }
    let mut child = cmd.spawn().expect("run lifecycle");
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("wait for lifecycle") {
            let out = child.wait_with_output().expect("lifecycle's output");
            return (
                status.code(),
                String::from_utf8_lossy(&out.stdout).into_owned(),
            );
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "lifecycle {order} {env:?} hung for {LIMIT:?} ({})",
                if preload { "preloaded" } else { "glibc" }
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The order gives the same output and status preloaded as under glibc, and succeeds.
fn same_as_glibc(order: &str, env: &[(&str, &str)]) {
    let glibc = run(order, false, env);
    let ours = run(order, true, env);
    print!("{}", ours.1);
    assert_eq!(
        glibc.0,
        Some(0),
        "{order} fails under glibc itself: {}",
        glibc.1
    );
    assert_eq!(ours, glibc, "{order} {env:?}: preloaded vs glibc");
}

#[test]
fn fork_handlers_of_an_earlier_library_that_allocate_in_prepare() {
    same_as_glibc("fork-handlers", &[("ATFORK_ALLOC", "prepare")]);
}

#[test]
fn fork_handlers_of_an_earlier_library_that_allocate_in_child_and_parent() {
    same_as_glibc("fork-handlers", &[("ATFORK_ALLOC", "child,parent")]);
}

#[test]
fn first_allocator_call_in_a_key_destructor() {
    same_as_glibc("key-destructor", &[]);
}

#[test]
fn allocation_in_thread_local_destructors() {
    same_as_glibc("tls-destructor", &[]);
}

#[test]
fn allocation_in_atexit_handlers_and_destructors_after_main() {
    same_as_glibc("after-main", &[]);
}

#[test]
fn threads_ending_while_another_forks() {
    same_as_glibc("exit-while-fork", &[]);
}

#[test]
fn fork_from_a_thread_that_is_not_main() {
    same_as_glibc("fork-from-thread", &[]);
}

#[test]
fn pthread_exit_from_a_key_destructor() {
    same_as_glibc("pthread-exit-in-destructor", &[]);
}

#[test]
fn dlopen_and_dlclose_of_a_library_that_allocates() {
    same_as_glibc("dlopen", &[]);
}

/// A program that `dlopen`s the library itself, not preloaded, gets glibc's clear refusal: the
/// library's thread-local word is initial-exec (`thread_slot`), and a library loaded after
/// start-up has no static TLS for it. Elsewhere it may be served instead; never a crash.
#[test]
fn dlopen_of_the_library_itself_is_refused_clearly() {
    let (exe, _) = program();
    let out = Command::new(exe)
        .arg("dlopen-self")
        .arg(library())
        .output()
        .expect("run lifecycle dlopen-self");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "dlopen-self: {text}");
    if cfg!(all(target_arch = "x86_64", target_os = "linux")) {
        assert!(
            text.starts_with("dlopen-self: refused: ") && text.contains("static TLS"),
            "dlopen-self: {text}"
        );
    } else {
        assert!(
            text.starts_with("dlopen-self: served 1000")
                || text.starts_with("dlopen-self: refused: "),
            "dlopen-self: {text}"
        );
    }
}

/// Every order again in debug mode (`POOLMALLOC_DEBUG=1`): blocks laid out and checked, large
/// blocks in its table, whose lock the fork window passes through too.
#[test]
fn every_order_in_debug_mode() {
    let orders: [(&str, &str); 8] = [
        ("fork-handlers", "prepare,child,parent"),
        ("key-destructor", ""),
        ("tls-destructor", ""),
        ("after-main", ""),
        ("exit-while-fork", ""),
        ("fork-from-thread", ""),
        ("pthread-exit-in-destructor", ""),
        ("dlopen", ""),
    ];
    for (order, atfork) in orders {
        same_as_glibc(
            order,
            &[("ATFORK_ALLOC", atfork), ("POOLMALLOC_DEBUG", "1")],
        );
    }
}
