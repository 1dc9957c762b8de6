//! Misuse reports (ARCHITECTURE.md, "Misuse and failure"): a detected misuse prints one line naming the address, the class
//! and the fault, then aborts — through a hook that tests can replace. Nothing unwinds out of the
//! allocator. If a replaced hook returns, the allocator leaves the offending block alone.

use core::fmt::{self, Write};
use std::sync::atomic::{AtomicUsize, Ordering};

use poolmalloc_core::{Class, FreeError};

/// A misuse the allocator detected. Non-exhaustive: debug mode adds kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Misuse {
    /// `dealloc` with a layout that maps to another class than the block's (checked in debug
    /// builds; release builds free the block to its own class, so no list is corrupted).
    LayoutMismatch {
        /// The block's address.
        addr: usize,
        /// The class the layout maps to.
        layout_class: Class,
        /// The class of the block's pool.
        block_class: Class,
    },
    /// A free the core refused: foreign pointer, not a block start, double free.
    BadFree(FreeError),
    /// Secure mode: the free-list link in the first word of a free block of `class` at `addr`
    /// leads out of the block's pool — the block was written after it was freed. The link is
    /// not followed: the rest of that list is abandoned.
    CorruptLink {
        /// The free block whose link was overwritten.
        addr: usize,
        /// Its class.
        class: Class,
    },
    /// Debug mode: a forbidden byte around a block was overwritten (seen when it was freed).
    /// `offset` is from the block's first byte: negative before it, `size` or more after it.
    PadOverwritten {
        /// The pointer the program freed.
        addr: usize,
        /// The block's kind.
        block: DebugBlock,
        /// The size the program asked for.
        size: usize,
        /// Where the first overwritten byte is, from the block's first byte.
        offset: isize,
        /// What it holds.
        byte: u8,
    },
    /// Debug mode: the block's header (requested size, state) was overwritten.
    HeaderOverwritten {
        /// The pointer the program freed.
        addr: usize,
        /// The block's kind.
        block: DebugBlock,
    },
    /// Debug mode: a large block freed again (it is among the recent large frees).
    LargeDoubleFree {
        /// The pointer the program freed.
        addr: usize,
        /// The size it was allocated with.
        size: usize,
    },
    /// Debug mode: a large block freed with a layout of another size than it was allocated
    /// with (it is still freed, by its own size).
    LargeSizeMismatch {
        /// The pointer the program freed.
        addr: usize,
        /// The size the layout says.
        layout_size: usize,
        /// The size the block was allocated with.
        block_size: usize,
    },
}

/// Debug mode: what kind of block a report is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DebugBlock {
    /// A block of a size class, from our pools.
    Class(Class),
    /// A block of the large path (the system allocator's, laid out by debug mode).
    Large,
}

impl fmt::Display for DebugBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DebugBlock::Class(class) => write!(
                f,
                "class {}, {}-byte blocks",
                class.index(),
                class.block_size()
            ),
            DebugBlock::Large => f.write_str("large block"),
        }
    }
}

impl Misuse {
    /// The free of a pointer that is none of the allocator's blocks.
    pub(crate) fn foreign(addr: usize) -> Misuse {
        let kind = poolmalloc_core::FreeErrorKind::Foreign;
        Misuse::BadFree(FreeError { addr, kind })
    }
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Misuse::LayoutMismatch {
                addr,
                layout_class,
                block_class,
            } => write!(
                f,
                "dealloc of {addr:#x} with a layout of class {} ({}-byte blocks), but the block \
                 is of class {} ({}-byte blocks)",
                layout_class.index(),
                layout_class.block_size(),
                block_class.index(),
                block_class.block_size()
            ),
            Misuse::BadFree(e) => e.fmt(f),
            Misuse::CorruptLink { addr, class } => write!(
                f,
                "free block {addr:#x} (class {}, {}-byte blocks) was written after it was freed: \
                 its free-list link is corrupt",
                class.index(),
                class.block_size()
            ),
            Misuse::PadOverwritten {
                addr,
                block,
                size,
                offset,
                byte,
            } => write!(
                f,
                "free of {addr:#x} ({block}): forbidden byte at offset {offset} {} the \
                 {size}-byte block overwritten with {byte:#04x}",
                if offset < 0 { "before" } else { "after" }
            ),
            Misuse::HeaderOverwritten { addr, block } => write!(
                f,
                "free of {addr:#x} ({block}): the block's debug header was overwritten"
            ),
            Misuse::LargeDoubleFree { addr, size } => write!(
                f,
                "double free of {addr:#x} (large block, {size} bytes requested)"
            ),
            Misuse::LargeSizeMismatch {
                addr,
                layout_size,
                block_size,
            } => write!(
                f,
                "dealloc of {addr:#x} with a layout of {layout_size} bytes, but the block \
                 (large block) was allocated with {block_size}"
            ),
        }
    }
}

/// What a misuse hook is given.
pub type MisuseHook = fn(&Misuse);

/// 0 means the default hook.
static HOOK: AtomicUsize = AtomicUsize::new(0);

/// Replaces the misuse hook (`None` restores the default: print one line, abort).
pub fn set_misuse_hook(hook: Option<MisuseHook>) {
    HOOK.store(hook.map_or(0, |h| h as usize), Ordering::SeqCst);
}

/// Reports a misuse through the hook.
#[cold]
#[inline(never)]
pub(crate) fn report(misuse: Misuse) {
    let hook = HOOK.load(Ordering::SeqCst);
    if hook == 0 {
        default_hook(&misuse);
    } else {
        // SAFETY: non-zero values of HOOK are only ever stored from a `MisuseHook`.
        let hook: MisuseHook = unsafe { core::mem::transmute::<usize, MisuseHook>(hook) };
        hook(&misuse);
    }
}

/// A line on the stack: the default hook must not allocate (it runs inside the allocator).
struct Line {
    buf: [u8; 256],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let n = s.len().min(self.buf.len() - self.len);
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

fn default_hook(misuse: &Misuse) {
    let mut line = Line {
        buf: [0; 256],
        len: 0,
    };
    let _ = writeln!(line, "poolmalloc: {misuse}");
    // SAFETY: writes `len` initialised bytes of our own buffer to stderr.
    unsafe { libc::write(2, line.buf.as_ptr().cast(), line.len) };
    std::process::abort();
}
