//! One thread-local word with the initial-exec TLS model, for the C library: it holds this
//! thread's state (`global`'s `ThreadState`) once the thread has found it.
//!
//! Rust's `thread_local!` has the model rustc picks, and in a shared library that is
//! general-dynamic: every access is a call to `__tls_get_addr` (in `benches/c_pair.c`, two a
//! pair, 22 of its 133 instructions). jemalloc and mimalloc build their C libraries with
//! `tls_model("initial-exec")`, which stable Rust cannot ask for; this module declares the word
//! in assembly instead, and reads it as the initial-exec model does: its offset from the thread
//! pointer through the GOT, then one load relative to `fs`.
//!
//! An initial-exec word lives in the static TLS block, which exists for the libraries loaded at
//! start-up (preloaded or linked). A library `dlopen`ed later gets static TLS only from glibc's
//! small reserve, and this library's thread-locals do not fit it: `dlopen` fails with glibc's
//! "cannot allocate memory in static TLS block" — the clear answer the README promises (a
//! test checks it) rather than a crash.
//!
//! x86-64 Linux only (the module is not built elsewhere): other targets reach the state through
//! the thread-local itself.

use core::ffi::c_void;

core::arch::global_asm!(
    ".pushsection .tbss,\"awT\",@nobits",
    ".p2align 3",
    ".globl poolmalloc_thread_slot",
    ".hidden poolmalloc_thread_slot",
    ".type poolmalloc_thread_slot,@object",
    ".size poolmalloc_thread_slot,8",
    "poolmalloc_thread_slot:",
    ".zero 8",
    ".popsection",
);

/// The word's value on this thread: null until `set`.
#[inline(always)]
pub(crate) fn get() -> *const c_void {
    let value: *const c_void;
    // SAFETY: the GOT entry holds the word's offset from the thread pointer (`fs`'s base), where
    // every thread has its own copy of the word, zero at the thread's start; the two loads touch
    // nothing else.
    unsafe {
        core::arch::asm!(
            "mov {v}, qword ptr [rip + poolmalloc_thread_slot@GOTTPOFF]",
            "mov {v}, qword ptr fs:[{v}]",
            v = out(reg) value,
            options(nostack, readonly, preserves_flags),
        );
    }
    value
}

/// Sets the word on this thread.
#[inline]
pub(crate) fn set(value: *const c_void) {
    // SAFETY: as for `get`; the store writes this thread's copy of the word alone.
    unsafe {
        core::arch::asm!(
            "mov {t}, qword ptr [rip + poolmalloc_thread_slot@GOTTPOFF]",
            "mov qword ptr fs:[{t}], {v}",
            t = out(reg) _,
            v = in(reg) value,
            options(nostack, preserves_flags),
        );
    }
}
