//! # poolmalloc-capi: poolmalloc as a C library
//!
//! `libpoolmalloc_capi.so` exports the malloc family with glibc's contract, for `LD_PRELOAD` or
//! linking; `include/poolmalloc.h` declares it with poolmalloc's own calls. It is a thin adaptor
//! over the `poolmalloc` crate's front end with the global home (the same core and per-thread
//! caches as `PoolMalloc`, through `poolmalloc::internal::capi`), behind a layout-free
//! interface; what is left here is C's contract: `errno`, argument checks, the exported names.
//!
//! - Ownership of a pointer comes from the arena registry, never from reading memory we might
//!   not own. Ours go back to the caches; everything else — the large path's blocks and blocks
//!   allocated before us or by another allocator — goes to the C library's `free`.
//! - The large path and this library's own Rust allocations use glibc's `__libc_*` entry points,
//!   which no preloaded library interposes: calling `malloc` from inside `malloc` would come
//!   straight back here.
//! - Thread-local state is `const`-initialised; requests made while a thread is inside the
//!   allocator (its first-use setup registering the thread-exit flush, which glibc does with
//!   `calloc`) are served from the bootstrap region (see `poolmalloc`'s `global` module).
//!   Each entry point finds the thread's state through an initial-exec word (`poolmalloc`'s
//!   `thread_slot`): the library must be preloaded or linked, and `dlopen` refuses it (no
//!   static TLS is left for it after start-up), which `tests/lifecycle.rs` checks.
//! - `fork` takes every allocator lock first (`pthread_atfork`), so a child of a multi-threaded
//!   parent can allocate.
//!
//! ## Modules, bottom-up
//! - `mode`: the checks the library runs with (`POOLMALLOC_DEBUG`, `POOLMALLOC_SECURE`).
//! - `init`: what runs when the library is loaded (fork handlers, the front end's start-up,
//!   the mode, `POOLMALLOC_STATS`) and the stats reports.
//! - `exports`: the exported C functions.

#![warn(missing_docs)]

mod exports;
mod init;
mod mode;

use core::alloc::{GlobalAlloc, Layout};

use poolmalloc_core::os::large;

/// This library's own Rust allocations (formatting the stats report) go to the C library
/// directly, never through the interposed `malloc`.
struct LibcAlloc;

// SAFETY: forwards to the C library's allocator through `os::large`, which honours the layout.
unsafe impl GlobalAlloc for LibcAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        large::alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        large::alloc_zeroed(layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `alloc` with `layout` (GlobalAlloc's contract).
        unsafe { large::realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `alloc` (GlobalAlloc's contract).
        unsafe { large::free(ptr) }
    }
}

#[global_allocator]
static RUST_ALLOCATIONS: LibcAlloc = LibcAlloc;
