//! What valgrind memcheck and AddressSanitizer need to see inside our arenas (features
//! `valgrind` and `asan`). Without these a pool is one big mapping to them: a use-after-free of a
//! block that sits in a cache or a pool is a read of memory they think is fine.
//!
//! A freed block keeps its first `keep` bytes accessible: the free-list link (and in debug mode
//! the state word) that the cache and the core read and write while the block is free. Any
//! other access to a free block is reported.
//!
//! Valgrind's client requests are written out by hand (the instruction sequence `valgrind.h`
//! documents as stable ABI for amd64) rather than through the `crabgrind` crate: crabgrind
//! compiles a C shim against the valgrind headers at build time, and when they are missing its
//! requests panic at runtime — a panic inside an allocator may not unwind (DESIGN §6).

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
    // SAFETY: the rotations of rdi add up to 128 bits (rdi is unchanged) and `xchg rbx, rbx`
    // changes nothing: natively this is a no-op that leaves rdx = 0. Under valgrind it is the
    // client-request marker, which reads the six words at rax and writes its answer to rdx.
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
    let _ = len;
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
}
