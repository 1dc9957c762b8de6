//! Debug mode (feature `debug`): fills, pads and every detection, each planted and its report
//! checked through a replaced misuse hook; and the default hook's one line and abort.
//! `cargo test -p poolmalloc --features debug --test debug_mode`
#![cfg(feature = "debug")]

use std::alloc::{GlobalAlloc, Layout};
use std::process::Command;
use std::sync::Mutex;

use poolmalloc::{debug, Misuse, PoolMalloc};
use poolmalloc_core::config::{DEBUG_FORBIDDEN_BYTE, DEBUG_PAD};
use poolmalloc_core::{Class, FreeError, FreeErrorKind};

static REPORTS: Mutex<Vec<Misuse>> = Mutex::new(Vec::new());

fn record(m: &Misuse) {
    REPORTS.lock().unwrap().push(*m);
}

/// Plants one fault through `plant` and returns the one report it caused.
fn report_of(plant: impl FnOnce()) -> Misuse {
    REPORTS.lock().unwrap().clear();
    plant();
    let reports = std::mem::take(&mut *REPORTS.lock().unwrap());
    assert_eq!(reports.len(), 1, "{reports:?}");
    reports[0]
}

fn class_of_request(size: usize) -> Class {
    debug::class_for(size, 8).unwrap()
}

/// Reads `len` bytes at `p` (the tests read pads and freed blocks, which stay mapped in pools).
fn bytes(p: *const u8, len: usize) -> Vec<u8> {
    // SAFETY: callers pass ranges inside blocks of our pools, which stay mapped.
    unsafe { std::slice::from_raw_parts(p, len).to_vec() }
}

#[test]
fn fresh_memory_pads_and_freed_memory_are_filled() {
    let layout = Layout::from_size_align(24, 8).unwrap();
    // SAFETY: a non-zero layout.
    let p = unsafe { PoolMalloc.alloc(layout) };
    assert!(!p.is_null());
    assert_eq!(bytes(p, 24), vec![0xCD; 24], "fresh memory is 0xCD");
    // SAFETY: the pads lie inside the same pool block.
    let (before, after) = unsafe { (p.sub(DEBUG_PAD), p.add(24)) };
    assert_eq!(
        bytes(before, DEBUG_PAD),
        vec![DEBUG_FORBIDDEN_BYTE; DEBUG_PAD]
    );
    assert_eq!(
        bytes(after, DEBUG_PAD),
        vec![DEBUG_FORBIDDEN_BYTE; DEBUG_PAD]
    );
    // SAFETY: the caller's 24 bytes.
    unsafe { p.write_bytes(7, 24) };
    // SAFETY: allocated above with this layout.
    unsafe { PoolMalloc.dealloc(p, layout) };
    // The block sits in this thread's cache: its pool is mapped, its bytes say it is dead.
    assert_eq!(bytes(p, 24), vec![0xDD; 24], "freed memory is 0xDD");
    // alloc_zeroed still zeroes; realloc keeps the bytes and pads the new size.
    // SAFETY: non-zero layout; realloc of the block just allocated.
    unsafe {
        let z = PoolMalloc.alloc_zeroed(layout);
        assert_eq!(bytes(z, 24), vec![0; 24]);
        let r = PoolMalloc.realloc(z, layout, 100);
        assert_eq!(bytes(r, 24), vec![0; 24]);
        assert_eq!(bytes(r.add(24), 76), vec![0xCD; 76]);
        assert_eq!(
            bytes(r.add(100), DEBUG_PAD),
            vec![DEBUG_FORBIDDEN_BYTE; DEBUG_PAD]
        );
        PoolMalloc.dealloc(r, Layout::from_size_align(100, 8).unwrap());
    }
    poolmalloc::check_invariants().unwrap();
}

#[test]
fn every_detection_is_reported_with_address_and_class() {
    poolmalloc::set_misuse_hook(Some(record));
    let layout = Layout::from_size_align(40, 8).unwrap();
    let class = class_of_request(40);
    let alloc = || {
        // SAFETY: a non-zero layout.
        let p = unsafe { PoolMalloc.alloc(layout) };
        assert!(!p.is_null());
        p
    };
    let text_has = |m: &Misuse, addr: *mut u8| {
        let text = m.to_string();
        assert!(text.contains(&format!("{:#x}", addr as usize)), "{text}");
        assert!(text.contains(&format!("class {}", class.index())), "{text}");
    };

    // Double free: the state word says freed.
    let p = alloc();
    // SAFETY: the first free is legitimate; the second is the planted fault.
    let m = report_of(|| unsafe {
        PoolMalloc.dealloc(p, layout);
        PoolMalloc.dealloc(p, layout);
    });
    let kind = FreeErrorKind::DoubleFree { class };
    assert_eq!(
        m,
        Misuse::BadFree(FreeError {
            addr: p as usize,
            kind
        })
    );
    text_has(&m, p);

    // A pointer into the block, not its start.
    let p = alloc();
    // SAFETY: planted fault: an interior pointer (reported, nothing freed).
    let inner = unsafe { p.add(8) };
    // SAFETY: as above.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(inner, layout) });
    let kind = FreeErrorKind::NotBlockStart { class };
    assert_eq!(
        m,
        Misuse::BadFree(FreeError {
            addr: inner as usize,
            kind
        })
    );
    text_has(&m, inner);

    // One byte past the end: the pad after.
    // SAFETY: planted fault: the first forbidden byte after the 40 requested (inside the block).
    let m = report_of(|| unsafe {
        p.add(40).write(0x41);
        PoolMalloc.dealloc(p, layout);
    });
    let expected = Misuse::PadOverwritten {
        addr: p as usize,
        class,
        size: 40,
        offset: 40,
        byte: 0x41,
    };
    assert_eq!(m, expected);
    text_has(&m, p);
    assert!(m.to_string().contains("after"), "{m}");

    // One byte before the start: the pad before.
    let p = alloc();
    // SAFETY: planted fault: the last forbidden byte before the block (inside the pool block).
    let m = report_of(|| unsafe {
        p.sub(1).write(0);
        PoolMalloc.dealloc(p, layout);
    });
    let expected = Misuse::PadOverwritten {
        addr: p as usize,
        class,
        size: 40,
        offset: -1,
        byte: 0,
    };
    assert_eq!(m, expected);
    assert!(m.to_string().contains("before"), "{m}");

    // An underflow past the pad, into the header.
    let p = alloc();
    // SAFETY: planted fault: the state word, DEBUG_PAD + 8 bytes before the block.
    let m = report_of(|| unsafe {
        p.sub(DEBUG_PAD + 8).write_bytes(0, 8);
        PoolMalloc.dealloc(p, layout);
    });
    let addr = p as usize;
    assert_eq!(m, Misuse::HeaderOverwritten { addr, class });
    text_has(&m, p);

    // A pointer that is not ours at all.
    let mut local = [0u64; 8];
    let foreign = local.as_mut_ptr().cast::<u8>();
    // SAFETY: planted fault: a stack address (checked against the registry, never read).
    let m = report_of(|| unsafe { PoolMalloc.dealloc(foreign, layout) });
    let kind = FreeErrorKind::Foreign;
    let addr = foreign as usize;
    assert_eq!(m, Misuse::BadFree(FreeError { addr, kind }));

    // A layout that maps to another class: reported, and the block still goes back.
    let p = alloc();
    let small = Layout::from_size_align(1, 1).unwrap();
    // SAFETY: planted fault: the wrong layout for this block.
    let m = report_of(|| unsafe { PoolMalloc.dealloc(p, small) });
    let expected = Misuse::LayoutMismatch {
        addr: p as usize,
        layout_class: class_of_request(1),
        block_class: class,
    };
    assert_eq!(m, expected);
    poolmalloc::set_misuse_hook(None);
    poolmalloc::check_invariants().unwrap();
}

/// Run by `default_hook_prints_one_line_and_aborts` in a child process.
#[test]
fn default_hook_child() {
    if std::env::var_os("POOLMALLOC_DEBUG_CHILD").is_none() {
        return;
    }
    let layout = Layout::from_size_align(16, 8).unwrap();
    // SAFETY: planted fault: a double free, which the default hook reports and aborts on.
    unsafe {
        let p = PoolMalloc.alloc(layout);
        PoolMalloc.dealloc(p, layout);
        PoolMalloc.dealloc(p, layout);
    }
    unreachable!("the default hook returned");
}

#[test]
fn default_hook_prints_one_line_and_aborts() {
    use std::os::unix::process::ExitStatusExt;
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "default_hook_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("POOLMALLOC_DEBUG_CHILD", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.signal(), Some(libc::SIGABRT), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("poolmalloc:"))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].starts_with("poolmalloc: double free of 0x"),
        "{stderr}"
    );
    assert!(lines[0].contains("(class "), "{stderr}");
}
