//! Valgrind memcheck and AddressSanitizer see a use-after-free inside an arena (features
//! `valgrind`, `asan`), and LeakSanitizer sees through arenas (`asan`). Each test runs this
//! binary again as a child that plants the fault — a read of a freed 64-byte block that sits in
//! the thread cache, in a pool, in an arena; a large block whose only reference is in a pool
//! block, or that nothing references — and checks the tool's report.
//!
//! `cargo test -p poolmalloc --features valgrind --test tools`
//! `RUSTFLAGS=-Zsanitizer=address cargo +nightly test -p poolmalloc --features asan --test tools
//!  --target x86_64-unknown-linux-gnu`
#![cfg(any(feature = "valgrind", feature = "asan"))]

use std::alloc::{GlobalAlloc, Layout};
use std::process::{Command, Output};

use poolmalloc::PoolMalloc;

const CHILD: &str = "POOLMALLOC_TOOLS_CHILD";

/// The planted use-after-free, run only in the child.
#[test]
fn use_after_free_child() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let layout = Layout::from_size_align(64, 8).unwrap();
    // SAFETY: a fresh block, written, freed; then the planted fault: a read 32 bytes into it.
    let seen = unsafe {
        let p = PoolMalloc.alloc(layout);
        p.write_bytes(1, 64);
        assert!(poolmalloc::owns(p), "the block is in an arena");
        PoolMalloc.dealloc(p, layout);
        p.add(32).read_volatile()
    };
    println!("read {seen} from a freed block");
}

/// Runs `test` of this binary in a child, under `wrapper` if given, with `CHILD` set to `mode`
/// and `env` added to the environment.
fn run_child(wrapper: Option<&[&str]>, test: &str, mode: &str, env: &[(&str, &str)]) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrapper {
        Some(args) => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .envs(env.iter().copied())
        .output()
        .expect("run the child")
}

#[cfg(feature = "valgrind")]
#[test]
fn valgrind_memcheck_reports_use_after_free_in_an_arena() {
    let out = run_child(
        Some(&["valgrind", "--tool=memcheck", "--error-exitcode=97"]),
        "use_after_free_child",
        "1",
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(97), "{stderr}");
    assert!(stderr.contains("Invalid read of size 1"), "{stderr}");
    assert!(
        stderr.contains("32 bytes inside a block of size 64 free'd"),
        "{stderr}"
    );
}

#[cfg(feature = "asan")]
#[test]
fn address_sanitizer_reports_use_after_free_in_an_arena() {
    let out = run_child(None, "use_after_free_child", "1", &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ERROR: AddressSanitizer: use-after-poison"),
        "{stderr}"
    );
}

/// The large block of the leak tests: above the small threshold, so from the large path (under
/// `asan` the C library's `malloc`, which LeakSanitizer tracks).
#[cfg(feature = "asan")]
const LARGE: usize = 64 * 1024;

/// Plants a large block whose pointer is written into a pool block, in the clear (`hidden`
/// false: the pool block is its only reference) or masked (`hidden` true: nothing references
/// it). The pool block is never freed. Not inlined, so the pointer leaves no copy in a frame
/// that is still live when LeakSanitizer scans the stacks at exit.
#[cfg(feature = "asan")]
#[inline(never)]
fn plant_large_block_in_pool_block(hidden: bool) {
    let small = Layout::from_size_align(64, 8).unwrap();
    let large = Layout::from_size_align(LARGE, 8).unwrap();
    // SAFETY: two fresh blocks of the sizes asked for; the small one holds a word.
    unsafe {
        let holder = PoolMalloc.alloc(small).cast::<usize>();
        assert!(poolmalloc::owns(holder.cast()), "in an arena");
        let block = PoolMalloc.alloc(large);
        assert!(!block.is_null() && !poolmalloc::owns(block));
        block.write_bytes(7, LARGE);
        let mask = if hidden { usize::MAX } else { 0 };
        holder.write_volatile(block as usize ^ mask);
    }
}

/// The planted leak, run only in the child: `CHILD` is "kept" or "dropped".
#[cfg(feature = "asan")]
#[test]
fn large_block_leak_child() {
    match std::env::var(CHILD).as_deref() {
        Ok("kept") => plant_large_block_in_pool_block(false),
        Ok("dropped") => plant_large_block_in_pool_block(true),
        _ => {}
    }
}

/// The child with LeakSanitizer on whatever ASAN_OPTIONS the parent has (later options win).
#[cfg(feature = "asan")]
fn run_leak_child(mode: &str) -> (Output, String) {
    let options = std::env::var("ASAN_OPTIONS").unwrap_or_default();
    let options = format!("{options}:detect_leaks=1");
    let out = run_child(
        None,
        "large_block_leak_child",
        mode,
        &[("ASAN_OPTIONS", &options)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stderr)
}

/// Arenas are LSan root regions: a large block referenced only from a pool block is live.
#[cfg(feature = "asan")]
#[test]
fn leak_sanitizer_sees_a_large_block_referenced_from_a_pool_block() {
    let (out, stderr) = run_leak_child("kept");
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("LeakSanitizer"), "{stderr}");
}

/// …and LSan is on: the same block with its pointer masked is reported.
#[cfg(feature = "asan")]
#[test]
fn leak_sanitizer_reports_a_large_block_nothing_references() {
    let (out, stderr) = run_leak_child("dropped");
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ERROR: LeakSanitizer: detected memory leaks"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("Direct leak of {LARGE} byte(s) in 1 object(s)")),
        "{stderr}"
    );
}
