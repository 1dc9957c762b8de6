//! What valgrind memcheck and AddressSanitizer need to see inside our arenas (features
//! `valgrind` and `asan`). Without these a pool is one big mapping to them: a use-after-free of a
//! block that sits in a cache or a pool is a read of memory they think is fine.
//!
//! A freed block keeps its first `keep` bytes accessible: the free-list link (and in debug mode
//! the state word) that the cache and the core read and write while the block is free. Any
//! other access to a free block is reported. Without the features every function here is a no-op.
//!
//! LeakSanitizer (feature `asan`) scans its own heap, globals, stacks and thread-local storage
//! for pointers, but not anonymous mappings like our arenas: a large-path block (the C library's
//! malloc, which ASan intercepts) whose only reference lives in a pool block would be reported as
//! leaked. Every arena is therefore a root region while it is mapped. Blocks handed out from our
//! pools are not LSan allocations, so a leaked small block is never reported; a leaked large block
//! is. The whole arena is scanned, free blocks and never-carved pools included, so a stale pointer
//! left in a freed pool block can hide a leak (a leak missed, never one made up).
//!
//! Valgrind's client requests are written out by hand (the instruction sequence `valgrind.h`
//! documents as stable ABI for amd64) rather than through the `crabgrind` crate: crabgrind
//! compiles a C shim against the valgrind headers at build time, and when they are missing its
//! requests panic at runtime — a panic inside an allocator may not unwind (ARCHITECTURE.md, "Misuse and failure").

/// True when a tool is told anything: callers skip the work of preparing a call (finding a
/// block's class, telling a bootstrap block apart) that would otherwise stay on the fast path.
pub const ENABLED: bool = cfg!(any(feature = "valgrind", feature = "asan"));

/// Valgrind's request codes (`valgrind.h`, `memcheck.h`).
#[cfg(feature = "valgrind")]
mod request {
    pub const MALLOCLIKE_BLOCK: usize = 0x1301;
    pub const FREELIKE_BLOCK: usize = 0x1302;
    const MEMCHECK_BASE: usize = ((b'M' as usize) << 24) | ((b'C' as usize) << 16);
    pub const MAKE_MEM_DEFINED: usize = MEMCHECK_BASE + 2;
}

/// Issues a valgrind client request; a no-op (returns 0) when not running under valgrind.
#[cfg(all(feature = "valgrind", target_arch = "x86_64"))]
#[inline(always)]
fn client_request(request: usize, a1: usize, a2: usize, a3: usize, a4: usize) -> usize {
    let args: [usize; 6] = [request, a1, a2, a3, a4, 0];
    let result: usize;
    // Under valgrind this sequence is the client-request marker: it reads the six words at rax
    // and writes its answer to rdx.
    // SAFETY: the rotations of rdi add up to 128 bits and `xchg rbx, rbx` changes nothing, so
    // natively this is a no-op that leaves rdx = 0; it touches no memory but `args`.
    unsafe {
        core::arch::asm!(
            "rol rdi, 3", "rol rdi, 13", "rol rdi, 61", "rol rdi, 51",
            "xchg rbx, rbx",
            in("rax") args.as_ptr(),
            inout("rdx") 0usize => result,
            options(nostack),
        );
    }
    result
}

#[cfg(all(feature = "valgrind", not(target_arch = "x86_64")))]
compile_error!("the `valgrind` feature's client requests are written for x86-64 only");

#[cfg(feature = "asan")]
extern "C" {
    fn __asan_poison_memory_region(addr: *const u8, size: usize);
    fn __asan_unpoison_memory_region(addr: *const u8, size: usize);
    fn __lsan_register_root_region(p: *const core::ffi::c_void, size: usize);
    fn __lsan_unregister_root_region(p: *const core::ffi::c_void, size: usize);
}

/// A region just mapped (an arena): LeakSanitizer scans `[start, start + len)` for pointers to
/// its allocations at every leak check until `unregister_root_region` withdraws it.
///
/// LSan only records the range; at a leak check it scans the part of it that is then mapped
/// readable. Pair each call with one `unregister_root_region` of the same range before the
/// memory goes, or LSan would scan whatever is mapped there later.
#[inline]
pub fn register_root_region(start: *const u8, len: usize) {
    #[cfg(feature = "asan")]
    // SAFETY: the call only adds the range to LSan's list of root regions; LSan reads it only
    // while scanning, and then only where /proc/self/maps shows it mapped and readable.
    unsafe {
        __lsan_register_root_region(start.cast(), len)
    };
    let _ = (start, len);
}

/// A region about to be unmapped: LeakSanitizer stops scanning it. `[start, start + len)` must
/// be a range given to `register_root_region` and not withdrawn since — LSan aborts the process
/// on any other (a report, not undefined behaviour).
#[inline]
pub fn unregister_root_region(start: *const u8, len: usize) {
    #[cfg(feature = "asan")]
    // SAFETY: the call only removes the range from LSan's list of root regions (or reports a
    // range that was never registered and aborts); it touches no memory of ours.
    unsafe {
        __lsan_unregister_root_region(start.cast(), len)
    };
    let _ = (start, len);
}

/// A block handed to the program: `len` bytes at `block` become addressable (memcheck: a
/// malloc-like block, contents undefined).
///
/// # Safety
/// `[block, block + len)` is a block of ours the caller is handing out.
#[inline]
pub unsafe fn mark_live(block: *mut u8, len: usize) {
    #[cfg(feature = "valgrind")]
    client_request(request::MALLOCLIKE_BLOCK, block as usize, len, 0, 0);
    #[cfg(feature = "asan")]
    // SAFETY: the range is ours (precondition); unpoisoning only changes ASan's shadow.
    unsafe {
        __asan_unpoison_memory_region(block, len)
    };
    let _ = (block, len);
}

/// A block the program gave back: everything past its first `keep` bytes becomes no-access.
///
/// # Safety
/// `[block, block + len)` is a block of ours that `mark_live` handed out, with `keep <= len`.
#[inline]
pub unsafe fn mark_freed(block: *mut u8, len: usize, keep: usize) {
    #[cfg(feature = "valgrind")]
    {
        client_request(request::FREELIKE_BLOCK, block as usize, 0, 0, 0);
        client_request(request::MAKE_MEM_DEFINED, block as usize, keep, 0, 0);
    }
    #[cfg(feature = "asan")]
    // SAFETY: the range is ours (precondition); poisoning only changes ASan's shadow.
    unsafe {
        __asan_poison_memory_region(block.add(keep), len - keep)
    };
    // Valgrind frees the whole block by its address; only ASan needs the length.
    let _ = (block, len, keep);
}

/// A region of an empty pool about to serve a new class: accessible again, contents defined.
///
/// # Safety
/// `[start, start + len)` is ours and holds no block the program has.
#[inline]
pub unsafe fn mark_reusable(start: *mut u8, len: usize) {
    #[cfg(feature = "valgrind")]
    client_request(request::MAKE_MEM_DEFINED, start as usize, len, 0, 0);
    #[cfg(feature = "asan")]
    // SAFETY: the range is ours (precondition).
    unsafe {
        __asan_unpoison_memory_region(start, len)
    };
    let _ = (start, len);
}
