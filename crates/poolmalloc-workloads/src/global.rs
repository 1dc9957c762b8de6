//! Workloads through the process's `#[global_allocator]`, for the child binaries of
//! `poolmalloc compare` (one binary per allocator, each installing it as the global allocator).
//!
//! [`StdGlobal`] forwards to `std::alloc::{alloc, dealloc}`, which is what `Box`, `Vec` and
//! every Rust program reach; the workloads' own bookkeeping (vectors, channels, threads) goes
//! through the same allocator, as it would in a real program.

use std::alloc::{GlobalAlloc, Layout};
use std::io::Write;

use crate::{run_global, Scale};

/// The process's global allocator, as a value.
pub struct StdGlobal;

// SAFETY: forwards to `std::alloc`, which upholds `GlobalAlloc`'s contract (it calls the
// registered `#[global_allocator]`).
unsafe impl GlobalAlloc for StdGlobal {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller passes a non-zero layout (`GlobalAlloc::alloc`'s contract).
        unsafe { std::alloc::alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller passes a block from `alloc` with its layout.
        unsafe { std::alloc::dealloc(ptr, layout) }
    }
}

/// The whole `main` of a child binary: `<binary> [--quick]` runs the global-allocator cases and
/// prints one `RESULT\t<case>\t<unit>\t<value>` line per figure, or `FAULT\t<message>` and exits
/// with status 1.
pub fn child_main(allocator: &str) -> ! {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => false,
        ["--quick"] => true,
        _ => {
            eprintln!("poolmalloc-global-{allocator}: usage: [--quick] (got {args:?})");
            std::process::exit(2)
        }
    };
    let mut out = std::io::stdout().lock();
    match run_global(Scale { quick }) {
        Ok(samples) => {
            for s in samples {
                let _ = writeln!(out, "{}", s.to_line());
            }
            std::process::exit(0)
        }
        Err(e) => {
            let _ = writeln!(out, "FAULT\t{e}");
            std::process::exit(1)
        }
    }
}
