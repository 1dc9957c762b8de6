//! Why a pointer could not be freed: the core reports, the faces decide to abort or ignore.

use core::fmt;

use crate::config::Kind;
use crate::size_class::Class;

/// Why a pointer could not be freed. The core reports; the faces decide to abort or ignore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FreeError {
    /// The address given to free.
    pub addr: usize,
    /// What is wrong with it.
    pub kind: FreeErrorKind,
}

/// What is wrong with a pointer given to free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeErrorKind {
    /// Not inside any arena of this core (it may belong to another allocator).
    Foreign,
    /// Inside one of our arenas but in a pool that serves no class: freed twice or never handed
    /// out.
    PoolNotInUse,
    /// Not the start of a block handed out by its pool.
    NotBlockStart {
        /// The class the pool serves.
        class: Class,
    },
    /// The block is already free.
    DoubleFree {
        /// The class the pool serves.
        class: Class,
    },
}

impl FreeError {
    /// The error for a confirmed double free of `block` (the double-free check's report, made
    /// once for the owner's and the core's confirmations).
    ///
    /// # Safety
    /// `block` is a free block of a pool of ours of `kind`, which therefore serves a class.
    pub unsafe fn double_free(block: *mut u8, kind: Kind) -> FreeError {
        // SAFETY: the pool's header is mapped and its tag names its class (precondition).
        let class = unsafe { (*crate::layout::pool_of(block, kind)).class() }
            .expect("a pool with a free block serves a class");
        FreeError {
            addr: block as usize,
            kind: FreeErrorKind::DoubleFree { class },
        }
    }
}

impl fmt::Display for FreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addr = self.addr;
        match self.kind {
            FreeErrorKind::Foreign => write!(f, "free of {addr:#x}: not a poolmalloc block"),
            FreeErrorKind::PoolNotInUse => {
                write!(
                    f,
                    "free of {addr:#x}: its pool serves no class (double free?)"
                )
            }
            FreeErrorKind::NotBlockStart { class } => write!(
                f,
                "free of {addr:#x}: not the start of a block (class {}, {}-byte blocks)",
                class.index(),
                class.block_size()
            ),
            FreeErrorKind::DoubleFree { class } => write!(
                f,
                "double free of {addr:#x} (class {}, {}-byte blocks)",
                class.index(),
                class.block_size()
            ),
        }
    }
}
