//! Valgrind memcheck and AddressSanitizer see a use-after-free inside an arena (features
//! `valgrind`, `asan`). Each test runs this binary again as a child that plants the fault — a
//! read of a freed 64-byte block that sits in the thread cache, in a pool, in an arena — and
//! checks the tool's report.
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
        assert!(poolmalloc::raw::core().owns(p), "the block is in an arena");
        PoolMalloc.dealloc(p, layout);
        p.add(32).read_volatile()
    };
    println!("read {seen} from a freed block");
}

fn run_child(wrapper: Option<&[&str]>) -> Output {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match wrapper {
        Some(args) => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.args([
        "--exact",
        "use_after_free_child",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(CHILD, "1")
    .output()
    .expect("run the child")
}

#[cfg(feature = "valgrind")]
#[test]
fn valgrind_memcheck_reports_use_after_free_in_an_arena() {
    let out = run_child(Some(&[
        "valgrind",
        "--tool=memcheck",
        "--error-exitcode=97",
    ]));
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
    let out = run_child(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ERROR: AddressSanitizer: use-after-poison"),
        "{stderr}"
    );
}
